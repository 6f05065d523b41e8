//! Listening, dialing and socket options shared by the server, clients and
//! subscribers, with NNG's errors turned into ones that name the URL.

use std::time::Duration;

use nng::options::{Options as _, ReconnectMaxTime, ReconnectMinTime, RecvMaxSize, SendTimeout};
use nng::{Dialer, Listener, Socket};

use crate::error::{Error, Result};
use crate::nng::tls::Tls;
/// Dialing objects close their dialers through it (see [`workarounds`](crate::nng::workarounds)).
pub(crate) use crate::nng::workarounds::Link;

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

/// How clients and subscribers dial servers, validated: part of
/// [`ClientSettings`](crate::ClientSettings) and
/// [`FollowSettings`](crate::FollowSettings).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialSettings {
    /// See [`Options::reconnect_min`](crate::Options::reconnect_min).
    pub reconnect_min: Duration,
    /// See [`Options::reconnect_max`](crate::Options::reconnect_max).
    pub reconnect_max: Duration,
    /// See [`Options::tls`](crate::Options::tls).
    pub tls: Option<crate::Tls>,
}

/// Listens on `url` and returns the listener with the URL actually bound
/// (for `tcp://…:0`, the port the kernel chose). `peer_protocol` is the SP
/// protocol number of the sockets that will connect (see [`ipc_in_use`](crate::nng::workarounds::ipc_in_use)).
/// For an `ipc://` URL the socket file's mode
/// (`ipc_permissions`, see [`Options::ipc_permissions`](crate::Options::ipc_permissions)),
/// for a `tls+tcp://` URL the TLS settings, are set before the listener starts.
pub(crate) fn listen(
    socket: &Socket,
    url: &str,
    peer_protocol: u16,
    tls: Option<&Tls>,
    ipc_permissions: Option<u32>,
) -> Result<(Listener, String)> {
    crate::nng::tls::check_url(url, tls)?;
    if crate::nng::workarounds::ipc_in_use(url, peer_protocol) {
        return Err(Error::AddressInUse {
            url: url.to_owned(),
        });
    }
    let listen_error = |e| match e {
        nng::Error::AddressInUse => Error::AddressInUse {
            url: url.to_owned(),
        },
        e => url_error(url, e).unwrap_or_else(|| Error::Listen {
            url: url.to_owned(),
            source: e,
        }),
    };
    let builder = nng::ListenerBuilder::new(socket, url).map_err(listen_error)?;
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        crate::nng::tls::configure_listener(&builder, tls, url)?;
    }
    if let (Some(mode), true) = (ipc_permissions, url.starts_with("ipc://")) {
        builder
            .set_opt::<nng::options::transport::ipc::Permissions>(mode)
            .map_err(Error::nng("set the IPC socket file's permissions"))?;
    }
    let listener = builder.start().map_err(|(_, e)| listen_error(e))?;
    if let (Some(mode), Some(path)) = (ipc_permissions, url.strip_prefix("ipc://")) {
        exact_mode(&listener, path, mode)?;
    }
    let bound = bound_url(&listener, url);
    if let Some(addr) = bound_tcp_addr(&listener) {
        if !crate::nng::workarounds::raise_backlog(addr) {
            log::debug!("could not raise the listen backlog of {bound}");
        }
    }
    Ok((listener, bound))
}

/// Sets the socket file at `path` to exactly `mode`. NNG 1.4 creates the
/// file with bind(2), which applies the process's umask, and its
/// `ipc:permissions` option did not undo that: 0o660 came out 0o640 under
/// umask 022 (the default for root and systemd services). chmod(2) ignores
/// the umask. On failure the listener is closed: a socket file with another
/// mode than asked is a security setting silently not applied.
fn exact_mode(listener: &Listener, path: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        listener.close();
        Error::Setup {
            what: "set the IPC socket file's mode",
            source: crate::error::SetupError::Io(e),
        }
    })
}

fn bound_url(listener: &Listener, url: &str) -> String {
    use nng::options::LocalAddr;
    use nng::SocketAddr;
    let scheme = if url.starts_with("tls+") {
        "tls+tcp"
    } else {
        "tcp"
    };
    match listener.get_opt::<LocalAddr>() {
        // NNG hands back the port in network byte order (see NOTES).
        Ok(SocketAddr::Inet(a)) => format!("{scheme}://{}:{}", a.ip(), u16::from_be(a.port())),
        Ok(SocketAddr::Inet6(a)) => format!("{scheme}://[{}]:{}", a.ip(), u16::from_be(a.port())),
        _ => url.to_owned(),
    }
}

/// The TCP address `listener` is bound to, if it is a TCP listener.
fn bound_tcp_addr(listener: &Listener) -> Option<std::net::SocketAddr> {
    use nng::options::LocalAddr;
    use nng::SocketAddr;
    // NNG hands back the port in network byte order (see NOTES).
    match listener.get_opt::<LocalAddr>().ok()? {
        SocketAddr::Inet(a) => Some(std::net::SocketAddr::new(
            (*a.ip()).into(),
            u16::from_be(a.port()),
        )),
        SocketAddr::Inet6(a) => Some(std::net::SocketAddr::new(
            (*a.ip()).into(),
            u16::from_be(a.port()),
        )),
        _ => None,
    }
}

/// Starts dialing `url` in the background: a malformed URL is an error now,
/// an absent server is retried until it appears, waiting from
/// `reconnect_min` up to `reconnect_max` between tries.
pub(crate) fn dial(socket: &Socket, url: &str, options: &DialSettings) -> Result<Dialer> {
    // NNG resolves a dialer's address in the background, so a port that
    // cannot exist would be retried forever instead of refused.
    check_tcp_port(url)?;
    crate::nng::tls::check_url(url, options.tls.as_ref())?;
    socket
        .set_opt::<ReconnectMinTime>(Some(options.reconnect_min))
        .map_err(Error::nng("set the reconnect time"))?;
    socket
        .set_opt::<ReconnectMaxTime>(Some(options.reconnect_max))
        .map_err(Error::nng("set the reconnect time"))?;
    let builder = nng::DialerBuilder::new(socket, url).map_err(|e| dial_error(url, e))?;
    #[cfg(feature = "tls")]
    if let Some(tls) = &options.tls {
        crate::nng::tls::configure_dialer(&builder, tls, url)?;
    }
    builder.start(true).map_err(|(_, e)| dial_error(url, e))
}

/// Checks `url` as [`dial`] would, without starting a connection: NNG
/// creates a dialer for it, which is closed unstarted (so no connection
/// attempt can be left half-made, see [`Link`]).
pub(crate) fn check_dial_url(socket: &Socket, url: &str, options: &DialSettings) -> Result<()> {
    check_tcp_port(url)?;
    crate::nng::tls::check_url(url, options.tls.as_ref())?;
    let unstarted = nng::DialerBuilder::new(socket, url).map_err(|e| dial_error(url, e))?;
    drop(unstarted); // closes it
    Ok(())
}

fn dial_error(url: &str, e: nng::Error) -> Error {
    url_error(url, e).unwrap_or_else(|| Error::Dial {
        url: url.to_owned(),
        source: e,
    })
}

/// Refuses a `tcp://` URL whose port is not a number from 0 to 65535.
fn check_tcp_port(url: &str) -> Result<()> {
    let Some(rest) = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("tls+tcp://"))
    else {
        return Ok(());
    };
    let port = rest.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(Error::InvalidUrl {
            url: url.to_owned(),
            source: nng::Error::AddressInvalid,
        }),
    }
}

/// NNG's id of `pipe`, which a raw RESPONDENT socket takes from the first
/// header word of a message to pick the connection it goes to.
pub(crate) fn pipe_id(pipe: nng::Pipe) -> u32 {
    // SAFETY: nng_pipe_id only reads the id out of the handle, by value;
    // it returns -1 for a handle that was never set, which a pipe given to
    // a callback is not.
    let id = unsafe { nng_sys::nng_pipe_id(pipe.nng_pipe()) };
    id as u32
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

#[cfg(test)]
mod tests {
    use super::check_tcp_port;

    #[test]
    fn tcp_ports_must_fit_in_16_bits() {
        for ok in [
            "tcp://127.0.0.1:0",
            "tcp://h:65535",
            "tcp://[::1]:80",
            "ipc:///x",
            "inproc://a",
        ] {
            assert!(check_tcp_port(ok).is_ok(), "{ok}");
        }
        for bad in [
            "tcp://127.0.0.1:99999",
            "tcp://h:-1",
            "tcp://h:x",
            "tcp://h",
            "tcp://[::1]",
        ] {
            assert!(check_tcp_port(bad).is_err(), "{bad}");
        }
    }
}
