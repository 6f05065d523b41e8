//! Every workaround for a bug or trap of NNG 1.4.0, the version the `nng`
//! crate bundles, in one place: what goes wrong, what it costs us, and
//! whether and where NNG fixed it. The code of the first two lives here;
//! the others are a choice of socket mode or a rule, named with where it
//! is kept.
//!
//! | NNG 1.4 bug or trap | what this crate does | its cost | upstream |
//! |---|---|---|---|
//! | A TCP dialer closed while its connection is still connecting or negotiating leaks that connection's file descriptor (measured: 3 to 8 sockets per 200 clients dropped right after creation). | [`Link::close`] waits for an attempt in flight before it closes a dialer that has never connected: 8 × the process's typical first-connection time, 30 ms to 1 s, counted in running time, and until the object is 250 ms old. | Dropping a client or subscriber whose server is unreachable takes about 250 ms when it is younger than that, 30 ms otherwise. | Not found fixed upstream. |
//! | A TLS dialer closed during its handshake leaves the process unable to complete any later TLS connection. | The same wait, at least 2 s for `tls+tcp://` ([`SETTLE_LEAST_TLS`]). | A TLS client dropped before its first handshake waits up to 2 s. | Not found fixed upstream. |
//! | An IPC listener whose connection closes before the SP handshake stops accepting for good; NNG's own "address in use" probe does exactly that to a live server. | [`ipc_in_use`] probes the path itself and completes the handshake before closing; a server refuses to start on a live path. | None; a local process can still deafen an IPC listener, so `tcp://` is advised (the test `tests/hostile.rs` shows it, ignored). | Fixed after NNG 1.5.2 (upstream pull request 1519). |
//! | A thread entering a blocking receive while another closes the socket waits forever, or touches a freed queue when its timeout fires. | Background threads wait in `poll(2)` on the receive descriptor and take messages without blocking; the owner closes a socket only after joining its thread (`nng::receiver`). | One descriptor pair per receiving thread. | — |
//! | Closing a socket (or dropping its last handle) inside a pipe callback deadlocks: the callback runs on the thread that closing waits for. | Pipe callbacks only send an event on a channel (`server`, `client`, `Link::watch_with`); refusing a connection closes the *pipe* in the add-pre event, the documented way (`server::admission`). | — | Documented behaviour (upstream issues 1247 and 1665). |
//! | A cooked SURVEYOR queues at most 128 answers per survey and drops the rest; it keeps one survey outstanding, and a new one cancels the old one's late answers. | The server's surveyor is raw: it stamps survey ids itself, owns the deadline, and its receive queue (8,192) applies backpressure (`server`). | Our own id window and deadlines. | Unchanged in NNG 1.x. |
//! | A cooked RESPONDENT can touch a freed connection when one closes with a survey pending (a crash under churn). | The client's respondent is raw: it queues messages, not connections, and routes each answer by its header (`client`). | None. | Fixed in December 2024 (upstream pull request 1955). |
//! | An IPC listener's file mode is masked by the process's umask (`0o660` becomes `0o640` under umask 022). | The socket file is set to the mode asked for after the listener binds (`transport::listen`). | A brief window at bind in which the umask's mode applies. | — |
//! | The listener's `LocalAddr` reports a TCP port in network byte order. | `u16::from_be` when reporting the bound URL (`transport`). | None. | — |
//! | A TCP listener listens with a backlog of 128: connections arriving faster than NNG accepts them (a thousand peers reconnecting at once to a busy server) overflow it, and the kernel drops their SYNs, which are retried 1, 3 and 7 s later. | [`raise_backlog`] finds the listening socket by its address and listens again with a backlog of [`BACKLOG`] (the kernel caps it at `net.core.somaxconn`). | One scan of the process's descriptors per TCP listener started. | The backlog is still 128 in NNG 1.x. |

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nng::{Dialer, Pipe, PipeEvent, Socket};
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

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

/// Whether a live server already listens on the `ipc://` path of `url`.
///
/// NNG 1.4 finds out itself by connecting to the path and closing the
/// connection at once, and an IPC listener whose connection closes before
/// the SP handshake stops accepting for good: a second server started on a
/// live path would deaf the first. So we look first, and complete the
/// handshake as a proper peer (`peer_protocol`) before closing.
pub(crate) fn ipc_in_use(url: &str, peer_protocol: u16) -> bool {
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

/// The listen backlog [`raise_backlog`] asks for; Linux caps it at
/// `net.core.somaxconn` (4,096 by default since Linux 5.4).
pub(crate) const BACKLOG: i32 = 4096;

/// Raises the listen backlog of the TCP listening socket bound to `addr`
/// (NNG listens with 128, see the table above) by listening on it again,
/// which Linux allows. The socket is found among the process's descriptors
/// as the one that listens on exactly `addr`. Returns whether it was
/// found; failing changes nothing but the backlog.
pub(crate) fn raise_backlog(addr: std::net::SocketAddr) -> bool {
    use std::os::unix::io::RawFd;
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    let fds = fds.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok());
    for fd in fds {
        if listening_address(fd) == Some(addr) {
            // SAFETY: listen(2) on a descriptor only changes that socket's
            // backlog when it already listens; it touches no memory.
            return unsafe { libc::listen(fd, BACKLOG) } == 0;
        }
    }
    false
}

/// The address `fd` listens on, if it is a listening TCP socket.
fn listening_address(fd: std::os::unix::io::RawFd) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`; on a
    // descriptor that is not a socket it fails and writes nothing.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || accepting == 0 {
        return None;
    }
    // SAFETY: sockaddr_storage is plain old data, valid when zeroed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `storage`.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                0,
                0,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{
        next_typical, settle_time, Settle, CONNECT_SAMPLE_MAX, SETTLE_CAP, SETTLE_LEAST,
        SETTLE_LEAST_TLS, SETTLE_SLICE, SETTLE_STALLS_MAX,
    };

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_backlog_of_a_listening_socket_is_raised_and_nothing_else_is_touched() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(super::raise_backlog(addr), "{addr} listens");
        // Connected (not listening) sockets on that port are not chosen.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let _served = listener.accept().unwrap();
        assert!(!super::raise_backlog(client.local_addr().unwrap()));
        drop(listener);
        assert!(!super::raise_backlog(addr), "nothing listens once closed");
    }

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
}
