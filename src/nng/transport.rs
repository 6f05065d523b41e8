//! Listening, dialing and socket options shared by the server, clients and
//! subscribers, with NNG's errors turned into ones that name the URL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use nng::options::{Options as _, ReconnectMaxTime, ReconnectMinTime, RecvMaxSize, SendTimeout};
use nng::{Dialer, Listener, Pipe, PipeEvent, Socket};

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
/// (for `tcp://…:0`, the port the kernel chose). `peer_protocol` is the SP
/// protocol number of the sockets that will connect (see [`ipc_in_use`]).
/// For an `ipc://` URL the socket file's mode
/// ([`Options::ipc_permissions`](crate::Options::ipc_permissions)), for a
/// `tls+tcp://` URL the TLS settings, are set before the listener starts.
pub(crate) fn listen(
    socket: &Socket,
    url: &str,
    peer_protocol: u16,
    options: &crate::Options,
) -> Result<(Listener, String)> {
    crate::nng::tls::check_url(url, options.get_tls())?;
    if ipc_in_use(url, peer_protocol) {
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
    if let Some(tls) = options.get_tls() {
        crate::nng::tls::configure_listener(&builder, tls, url)?;
    }
    if let (Some(mode), true) = (options.get_ipc_permissions(), url.starts_with("ipc://")) {
        builder
            .set_opt::<nng::options::transport::ipc::Permissions>(mode)
            .map_err(Error::nng("set the IPC socket file's permissions"))?;
    }
    let listener = builder.start().map_err(|(_, e)| listen_error(e))?;
    let bound = bound_url(&listener, url);
    Ok((listener, bound))
}

/// Whether a live server already listens on the `ipc://` path of `url`.
///
/// NNG 1.4 finds out itself by connecting to the path and closing the
/// connection at once, and an IPC listener whose connection closes before
/// the SP handshake stops accepting for good: a second server started on a
/// live path would deaf the first. So we look first, and complete the
/// handshake as a proper peer (`peer_protocol`) before closing.
fn ipc_in_use(url: &str, peer_protocol: u16) -> bool {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    let Some(path) = url.strip_prefix("ipc://") else {
        return false;
    };
    if !std::path::Path::new(path).exists() {
        return false;
    }
    let Ok(mut stream) = UnixStream::connect(path) else {
        return false; // stale: NNG removes it and listens
    };
    let [hi, lo] = peer_protocol.to_be_bytes();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&[0, b'S', b'P', 0, hi, lo, 0, 0]);
    let mut reply = [0u8; 8];
    let _ = stream.read_exact(&mut reply);
    true
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

/// Starts dialing `url` in the background: a malformed URL is an error now,
/// an absent server is retried until it appears, waiting from
/// `reconnect_min` up to `reconnect_max` between tries.
pub(crate) fn dial(socket: &Socket, url: &str, options: &crate::Options) -> Result<Dialer> {
    // NNG resolves a dialer's address in the background, so a port that
    // cannot exist would be retried forever instead of refused.
    check_tcp_port(url)?;
    crate::nng::tls::check_url(url, options.get_tls())?;
    socket
        .set_opt::<ReconnectMinTime>(Some(options.get_reconnect_min()))
        .map_err(Error::nng("set the reconnect time"))?;
    socket
        .set_opt::<ReconnectMaxTime>(Some(options.get_reconnect_max()))
        .map_err(Error::nng("set the reconnect time"))?;
    let builder = nng::DialerBuilder::new(socket, url).map_err(|e| dial_error(url, e))?;
    #[cfg(feature = "tls")]
    if let Some(tls) = options.get_tls() {
        crate::nng::tls::configure_dialer(&builder, tls, url)?;
    }
    builder.start(true).map_err(|(_, e)| dial_error(url, e))
}

/// Checks `url` as [`dial`] would, without starting a connection: NNG
/// creates a dialer for it, which is closed unstarted (so no connection
/// attempt can be left half-made, see [`Link`]).
pub(crate) fn check_dial_url(socket: &Socket, url: &str, options: &crate::Options) -> Result<()> {
    check_tcp_port(url)?;
    crate::nng::tls::check_url(url, options.get_tls())?;
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

/// The least a dialing object's shutdown waits for a connection attempt
/// in flight to finish (see [`Link`]); more where connections in this
/// process are slow ([`settle_time`]).
const SETTLE_LEAST: Duration = Duration::from_millis(30);

/// A dialing object younger than this, shut down before its dialer has
/// connected, waits for the attempt until it is this old (counted in
/// running time, see [`Settle`]), if that is longer than [`settle_time`]:
/// an object made and dropped at once on a loaded machine is the case that
/// leaks (measured: one socket in `tests/resources.rs` with a 30 ms wait,
/// three CI runs at once on two cores). An older one has had its first
/// attempt end long ago; at most a brief redial is in flight.
const YOUNG: Duration = Duration::from_millis(250);

/// How many times the typical time to a first connection in this process a
/// shutdown waits for one ([`settle_time`]).
const SETTLE_FACTOR: u32 = 8;

/// The longest a shutdown waits for a connection attempt, however slow the
/// connections in this process (unless the URL's own least wait is longer,
/// as for TLS).
const SETTLE_CAP: Duration = Duration::from_secs(1);

/// A first connection that took longer than this was waiting for its server
/// to be there, not connecting: it says nothing of how long a connection
/// attempt takes, and is not counted in [`ConnectTimes`].
const CONNECT_SAMPLE_MAX: Duration = Duration::from_secs(2);

/// The typical time from a watched socket's creation to a dialer's first
/// connection, in this process: a moving average (each new sample weighs
/// 1/8) of the times up to [`CONNECT_SAMPLE_MAX`], in microseconds; 0
/// before the first. A process that runs slowly (a loaded machine, an
/// emulator: code runs 10-50x slower under qemu-user) connects slowly, and
/// its shutdowns wait longer for an attempt in flight ([`settle_time`]).
#[derive(Debug)]
struct ConnectTimes(std::sync::atomic::AtomicU64);

static CONNECT_TIMES: ConnectTimes = ConnectTimes(std::sync::atomic::AtomicU64::new(0));

impl ConnectTimes {
    /// Counts a first connection that took `took`.
    fn record(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.0.fetch_update(Relaxed, Relaxed, |typical| {
            Some(next_typical(typical, took))
        });
    }

    /// The typical time to a first connection so far (zero before any).
    fn typical(&self) -> Duration {
        Duration::from_micros(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The moving average `typical` (microseconds, 0 for none yet) after a
/// first connection that took `took`; samples over [`CONNECT_SAMPLE_MAX`]
/// leave it as it is.
fn next_typical(typical: u64, took: Duration) -> u64 {
    if took > CONNECT_SAMPLE_MAX {
        return typical;
    }
    let sample = took.as_micros() as u64; // at most 2 s: fits
    if typical == 0 {
        sample.max(1)
    } else {
        ((typical * 7 + sample) / 8).max(1)
    }
}

/// How long a shutdown waits for a dialer's connection attempt in flight:
/// [`SETTLE_FACTOR`] times the `typical` first connection, at least `least`
/// (the URL's own least wait: [`SETTLE_LEAST`], or [`SETTLE_LEAST_TLS`]) and at
/// most [`SETTLE_CAP`] (or `least`, if longer). On a normal machine a
/// loopback connection takes a millisecond or two, and the wait is `least`.
fn settle_time(typical: Duration, least: Duration) -> Duration {
    typical
        .saturating_mul(SETTLE_FACTOR)
        .clamp(least, SETTLE_CAP.max(least))
}

/// The same for a `tls+tcp://` dialer: NNG 1.4 is worse off there. A TLS
/// dialer closed during its handshake leaves the process unable to
/// complete any later TLS connection (measured: every later client in the
/// process stays unconnected, while other processes connect fine), and a
/// mutual handshake takes tens of milliseconds (38 ms p50, 114 ms max on
/// a loaded loopback). So a TLS object that has never connected waits for
/// its first handshake up to this long.
const SETTLE_LEAST_TLS: Duration = Duration::from_secs(2);

/// The wait of [`Link::close`] for a connection attempt in flight, counted
/// in time the process was running: it sleeps in slices of at most
/// [`SETTLE_SLICE`], and a slice it wakes from late (the process was
/// descheduled: a loaded machine, qemu-user) counts only for its planned
/// length, because NNG's threads, which finish the attempt, were most
/// likely stalled too. The whole wait ends at the latest
/// [`SETTLE_STALLS_MAX`] past its budget, however many stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settle {
    /// Running time still to wait.
    left: Duration,
    /// When the wait ends in any case.
    until: Instant,
}

/// The longest slice of a [`Settle`] wait.
const SETTLE_SLICE: Duration = Duration::from_millis(5);

/// How much longer than its budget a [`Settle`] wait may last in all, for
/// the stalls it does not count.
const SETTLE_STALLS_MAX: Duration = Duration::from_secs(1);

impl Settle {
    /// A wait of `budget` running time, from `now`.
    fn new(now: Instant, budget: Duration) -> Settle {
        Settle {
            left: budget,
            until: now + budget + SETTLE_STALLS_MAX,
        }
    }

    /// When to wake next, asked at `now`; `None` once the wait is over.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        if self.left.is_zero() || now >= self.until {
            return None;
        }
        Some((now + self.left.min(SETTLE_SLICE)).min(self.until))
    }

    /// Woken at `now` from a sleep that began at `since` and was to end at
    /// `wake` (earlier if a connection came): counts the time slept, but
    /// not past `wake`.
    fn woke(&mut self, since: Instant, wake: Instant, now: Instant) {
        let slept = now.saturating_duration_since(since);
        let planned = wake.saturating_duration_since(since);
        self.left = self.left.saturating_sub(slept.min(planned));
    }
}

/// Which of a socket's dialers have ever connected, kept from its pipe
/// events.
///
/// NNG 1.4 leaks the file descriptor of a TCP connection that is still
/// connecting or negotiating when its dialer closes (the dialer's close
/// path closes that connection but never frees it; measured: 3 to 8 sockets
/// per 200 clients dropped right after creation). So before closing a
/// dialer that has never connected, its owner waits a little for its first
/// attempt to end ([`Link::close`]). A dialer that was connected and lost
/// its server is closed at once: its redials are brief moments between
/// long back-off pauses, and dropping thousands of objects after their
/// server went away must stay quick.
///
/// It is kept per dialer: a client or subscriber of several servers has a
/// dialer for each on one socket, some of which may connect and some not,
/// and a client made unavailable and available again closes its dialers
/// and makes new ones on the same socket.
#[derive(Debug)]
pub(crate) struct Link {
    /// The dialers that have made a connection, until closed.
    connected: Mutex<HashSet<Dialer>>,
    changed: Condvar,
    /// [`SETTLE_LEAST`], or [`SETTLE_LEAST_TLS`] for a `tls+tcp://` URL: the
    /// least a shutdown waits (see [`settle_time`]).
    settle_least: Duration,
    /// When it started watching: its dialers' first connections are timed
    /// from here ([`ConnectTimes`]).
    created: Instant,
}

impl Link {
    /// Watches `socket`'s connections, which dial `urls`, and also calls
    /// `also` on every pipe event (a socket has one pipe callback). The
    /// callback only records: it never touches a socket (closing one from
    /// a pipe callback deadlocks NNG); `also` runs on NNG's threads too,
    /// so it must be tiny and must not touch a socket either.
    pub(crate) fn watch_with(
        socket: &Socket,
        urls: &[String],
        also: impl Fn(Pipe, PipeEvent) + Send + Sync + 'static,
    ) -> Result<Arc<Link>> {
        let settle_least = if urls.iter().any(|u| crate::nng::tls::is_tls_url(u)) {
            SETTLE_LEAST_TLS
        } else {
            SETTLE_LEAST
        };
        let link = Arc::new(Link {
            connected: Mutex::new(HashSet::new()),
            changed: Condvar::new(),
            settle_least,
            created: Instant::now(),
        });
        let watched = Arc::clone(&link);
        socket
            .pipe_notify(move |pipe, event| {
                if event == PipeEvent::AddPost {
                    if let Some(dialer) = pipe.dialer() {
                        if watched.connected.lock().insert(dialer) {
                            CONNECT_TIMES.record(watched.created.elapsed());
                        }
                        watched.changed.notify_all();
                    }
                }
                also(pipe, event);
            })
            .map_err(Error::nng("watch the connection"))?;
        Ok(link)
    }

    /// Closes `dialers`, first waiting until each of them has connected
    /// once, or its settle time has passed ([`settle_time`]: at least
    /// [`SETTLE_LEAST`], [`SETTLE_LEAST_TLS`] for `tls+tcp://`, longer where
    /// connections in this process are slow; until it is [`YOUNG`] old, if
    /// longer; one wait for all of them).
    pub(crate) fn close(&self, dialers: impl IntoIterator<Item = Dialer>) {
        let dialers: Vec<Dialer> = dialers.into_iter().collect();
        let budget = settle_time(CONNECT_TIMES.typical(), self.settle_least)
            .max(YOUNG.saturating_sub(self.created.elapsed()));
        let mut settle = Settle::new(Instant::now(), budget);
        let mut connected = self.connected.lock();
        while !dialers.iter().all(|d| connected.contains(d)) {
            let since = Instant::now();
            let Some(wake) = settle.next_wake(since) else {
                break;
            };
            self.changed.wait_until(&mut connected, wake);
            settle.woke(since, wake, Instant::now());
        }
        for dialer in &dialers {
            connected.remove(dialer);
        }
        drop(connected);
        for dialer in dialers {
            dialer.close();
        }
    }
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
    use std::time::Duration;

    use super::{
        check_tcp_port, next_typical, settle_time, Settle, CONNECT_SAMPLE_MAX, SETTLE_CAP,
        SETTLE_LEAST, SETTLE_LEAST_TLS, SETTLE_SLICE, SETTLE_STALLS_MAX,
    };

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_settle_wait_on_time_lasts_its_budget_in_slices() {
        let t0 = std::time::Instant::now();
        let mut settle = Settle::new(t0, 12 * MS);
        let mut now = t0;
        let mut wakes = Vec::new();
        while let Some(wake) = settle.next_wake(now) {
            wakes.push(wake - t0);
            settle.woke(now, wake, wake);
            now = wake;
        }
        assert_eq!(wakes, [5 * MS, 10 * MS, 12 * MS]);
        assert_eq!(now - t0, 12 * MS);
    }

    #[test]
    fn a_settle_wait_does_not_count_stalls() {
        let t0 = std::time::Instant::now();
        let mut settle = Settle::new(t0, 30 * MS);
        // Woken 200 ms late: only the planned slice counts.
        let wake = settle.next_wake(t0).expect("a slice");
        assert_eq!(wake - t0, SETTLE_SLICE);
        let late = t0 + 200 * MS;
        settle.woke(t0, wake, late);
        assert_eq!(settle.left, 25 * MS);
        // Woken early (a connection came): the time slept counts.
        let wake = settle.next_wake(late).expect("a slice");
        settle.woke(late, wake, late + 2 * MS);
        assert_eq!(settle.left, 23 * MS);
        // Every slice woken 100 ms late: the 23 ms left take five slices
        // (5, 5, 5, 5, 3 ms), each counted for its planned length.
        let mut now = late + 2 * MS;
        let mut slices = 0;
        while let Some(wake) = settle.next_wake(now) {
            let woke = wake + 100 * MS;
            settle.woke(now, wake, woke);
            now = woke;
            slices += 1;
        }
        assert_eq!(slices, 5);
        assert_eq!(now - t0, 202 * MS + 23 * MS + 5 * 100 * MS);
        assert_eq!(settle.left, Duration::ZERO);
    }

    #[test]
    fn a_settle_wait_ends_at_its_budget_plus_the_stall_allowance() {
        let t0 = std::time::Instant::now();
        let mut settle = Settle::new(t0, 30 * MS);
        // Every slice woken 400 ms late: over once past 30 ms + 1 s.
        let mut now = t0;
        let mut slices = 0;
        while let Some(wake) = settle.next_wake(now) {
            let woke = wake + 400 * MS;
            settle.woke(now, wake, woke);
            now = woke;
            slices += 1;
        }
        assert_eq!(slices, 3);
        assert!(now - t0 >= 30 * MS + SETTLE_STALLS_MAX, "{:?}", now - t0);
        assert_eq!(settle.left, 15 * MS, "running time still owed");
    }

    #[test]
    fn a_zero_settle_wait_does_not_sleep() {
        let t0 = std::time::Instant::now();
        assert_eq!(Settle::new(t0, Duration::ZERO).next_wake(t0), None);
    }

    #[test]
    fn the_typical_connection_time_is_a_moving_average_of_plausible_samples() {
        // The first sample is taken as it is.
        assert_eq!(next_typical(0, 2 * MS), 2_000);
        // Then each weighs an eighth.
        assert_eq!(next_typical(2_000, 10 * MS), 3_000);
        assert_eq!(next_typical(8_000, Duration::ZERO), 7_000);
        // Never back to "none yet", even after instant connections.
        assert_eq!(next_typical(0, Duration::ZERO), 1);
        assert_eq!(next_typical(1, Duration::ZERO), 1);
        // A wait for an absent server is not a connection time.
        assert_eq!(next_typical(2_000, CONNECT_SAMPLE_MAX + MS), 2_000);
        assert_eq!(next_typical(0, Duration::from_secs(60)), 0);
        assert_eq!(next_typical(2_000, CONNECT_SAMPLE_MAX), 251_750);
        // A run of slow samples moves it most of the way in 16.
        let slow = (0..16).fold(1_000, |t, _| next_typical(t, 100 * MS));
        assert!((85_000..100_000).contains(&slow), "{slow}");
    }

    #[test]
    fn the_settle_time_follows_slow_connections_within_bounds() {
        // A normal machine: the least wait.
        assert_eq!(settle_time(Duration::ZERO, SETTLE_LEAST), SETTLE_LEAST);
        assert_eq!(settle_time(2 * MS, SETTLE_LEAST), SETTLE_LEAST);
        // A slow process (qemu, a loaded machine): eight typical connections.
        assert_eq!(settle_time(20 * MS, SETTLE_LEAST), 160 * MS);
        // Never past the cap, whatever the samples said.
        assert_eq!(settle_time(500 * MS, SETTLE_LEAST), SETTLE_CAP);
        assert_eq!(settle_time(Duration::MAX, SETTLE_LEAST), SETTLE_CAP);
        // TLS keeps its own, longer, least wait.
        assert_eq!(settle_time(MS, SETTLE_LEAST_TLS), SETTLE_LEAST_TLS);
        assert_eq!(
            settle_time(Duration::MAX, SETTLE_LEAST_TLS),
            SETTLE_LEAST_TLS
        );
    }

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
