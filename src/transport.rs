//! Listening, dialing and socket options shared by the server, clients and
//! subscribers, with NNG's errors turned into ones that name the URL.

use std::time::Duration;

use nng::options::{Options as _, ReconnectMaxTime, ReconnectMinTime, RecvMaxSize, SendTimeout};
use nng::{Dialer, Listener, Socket};

use crate::error::{Error, Result};

/// A bound on every send, so no thread waits forever on a stuck peer.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(1);

fn url_error(url: &str, e: nng::Error) -> Option<Error> {
    match e {
        nng::Error::AddressInvalid | nng::Error::NotSupported | nng::Error::InvalidInput => {
            Some(Error::InvalidUrl {
                url: url.to_owned(),
                source: e,
            })
        }
        _ => None,
    }
}

/// Listens on `url` and returns the listener with the URL actually bound
/// (for `tcp://…:0`, the port the kernel chose).
pub(crate) fn listen(socket: &Socket, url: &str) -> Result<(Listener, String)> {
    let listener = Listener::new(socket, url).map_err(|e| match e {
        nng::Error::AddressInUse => Error::AddressInUse {
            url: url.to_owned(),
        },
        e => url_error(url, e).unwrap_or_else(|| Error::Listen {
            url: url.to_owned(),
            source: e,
        }),
    })?;
    let bound = bound_url(&listener, url);
    Ok((listener, bound))
}

fn bound_url(listener: &Listener, url: &str) -> String {
    use nng::options::LocalAddr;
    use nng::SocketAddr;
    match listener.get_opt::<LocalAddr>() {
        // NNG hands back the port in network byte order (see NOTES).
        Ok(SocketAddr::Inet(a)) => format!("tcp://{}:{}", a.ip(), u16::from_be(a.port())),
        Ok(SocketAddr::Inet6(a)) => format!("tcp://[{}]:{}", a.ip(), u16::from_be(a.port())),
        _ => url.to_owned(),
    }
}

/// Starts dialing `url` in the background: a malformed URL is an error now,
/// an absent server is retried until it appears, waiting from
/// `reconnect_min` up to `reconnect_max` between tries.
pub(crate) fn dial(socket: &Socket, url: &str, options: &crate::Options) -> Result<Dialer> {
    socket
        .set_opt::<ReconnectMinTime>(Some(options.get_reconnect_min()))
        .map_err(Error::nng("set the reconnect time"))?;
    socket
        .set_opt::<ReconnectMaxTime>(Some(options.get_reconnect_max()))
        .map_err(Error::nng("set the reconnect time"))?;
    Dialer::new(socket, url, true).map_err(|e| {
        url_error(url, e).unwrap_or_else(|| Error::Dial {
            url: url.to_owned(),
            source: e,
        })
    })
}

/// Sets the largest message the socket accepts and the send timeout.
pub(crate) fn limit(socket: &Socket, max_recv: usize) -> Result<()> {
    socket
        .set_opt::<RecvMaxSize>(max_recv)
        .map_err(Error::nng("set the receive size limit"))?;
    socket
        .set_opt::<SendTimeout>(Some(SEND_TIMEOUT))
        .map_err(Error::nng("set the send timeout"))
}

/// How long a background thread pauses after an unexpected receive error,
/// so a persistent error is logged at a bounded rate instead of spinning.
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(10);
