//! `server --metrics ADDR`: the server's counters in the Prometheus text
//! exposition format, served at `GET /metrics` by one thread.
//!
//! [`render`] and [`parse_head`] are pure and unit-tested; [`serve`] is the
//! thread's loop: it waits in poll(2) on the listener and on a wake-up
//! socket, so the daemon stops it at once by dropping the [`Stop`] handle.
//! Connections are handled one at a time on that thread (a scrape is one
//! small request): a request must arrive whole within [`REQUEST_TIMEOUT`]
//! and [`MAX_HEAD`] bytes, or it gets 408 or 431 and the connection is
//! closed, so neither a silent nor a flooding client can hold the thread
//! for longer than that.
//!
//! No HTTP crate: tiny_http, the obvious small synchronous one, starts an
//! accept thread plus a pool of connection threads (not one thread), and
//! reads request heads without a size limit (its issue #56, open since 2015),
//! which is the one property a metrics port on a small device most needs.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nng_discovery::Stats;

/// The longest request head (request line and headers) accepted; longer
/// gets 431. A scrape's head is a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// How long a client has to send its whole request head, and to take the
/// response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The Content-Type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one metric family (HELP, TYPE, one sample per label set).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// `s` (and the daemon's `version`) in the Prometheus text exposition
/// format, version 0.0.4: gauges for the current values, counters (`_total`)
/// for the counts since the server started.
pub fn render(s: &Stats, version: &str) -> String {
    let mut out = String::with_capacity(2048);
    let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
        family(out, name, "gauge", help, &[("", value as u64)]);
    };
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        family(out, name, "counter", help, &[("", value)]);
    };
    let version = version.replace('\\', "\\\\").replace('"', "\\\"");
    family(
        &mut out,
        "nng_discovery_build_info",
        "gauge",
        "Always 1; the version label is the daemon's version.",
        &[(&format!("{{version=\"{version}\"}}"), 1)],
    );
    gauge(
        &mut out,
        "nng_discovery_peers",
        "Names currently listed.",
        s.peers,
    );
    gauge(
        &mut out,
        "nng_discovery_connections",
        "Open connections on the survey socket (clients).",
        s.connections,
    );
    gauge(
        &mut out,
        "nng_discovery_subscribers",
        "Open connections on the publish socket (subscribers).",
        s.subscribers,
    );
    family(
        &mut out,
        "nng_discovery_answers_last_round",
        "gauge",
        "Answers to the last completed heartbeat round received in time.",
        &[("", s.answers_last_round)],
    );
    counter(
        &mut out,
        "nng_discovery_surveys_total",
        "Surveys sent (heartbeat rounds and surveys of new connections).",
        s.surveys_sent,
    );
    counter(
        &mut out,
        "nng_discovery_rounds_total",
        "Heartbeat rounds completed.",
        s.rounds,
    );
    counter(
        &mut out,
        "nng_discovery_answers_total",
        "Valid answers taken.",
        s.answers,
    );
    family(
        &mut out,
        "nng_discovery_refused_answers_total",
        "counter",
        "Answers refused: invalid name, stale survey id, list full (max peers), or name not on the peer's host.",
        &[
            ("{reason=\"invalid\"}", s.refused_invalid),
            ("{reason=\"stale\"}", s.refused_stale),
            ("{reason=\"full\"}", s.refused_full),
            ("{reason=\"peer_host\"}", s.refused_peer_host),
        ],
    );
    family(
        &mut out,
        "nng_discovery_refused_connections_total",
        "counter",
        "Connections closed on arrival: address outside --allow-from, or --max-connections open.",
        &[
            ("{reason=\"network\"}", s.refused_network),
            ("{reason=\"limit\"}", s.refused_connections),
        ],
    );
    counter(
        &mut out,
        "nng_discovery_publishes_total",
        "Lists published (changes, new subscribers and republishes).",
        s.publishes,
    );
    counter(
        &mut out,
        "nng_discovery_published_bytes_total",
        "Bytes of list bodies published, once per publish.",
        s.bytes_published,
    );
    gauge(
        &mut out,
        "nng_discovery_watchers",
        "Open connections on the watch socket (watchers).",
        s.watchers,
    );
    gauge(
        &mut out,
        "nng_discovery_watch_held",
        "Watch requests held, waiting for a change or their keepalive.",
        s.watch_held,
    );
    counter(
        &mut out,
        "nng_discovery_watch_requests_total",
        "Watch requests received.",
        s.watch_requests,
    );
    family(
        &mut out,
        "nng_discovery_watch_replies_total",
        "counter",
        "Watch replies sent, by kind: snapshot, delta, keepalive or offer (of the broadcast URL).",
        &[
            ("{kind=\"snapshot\"}", s.watch_snapshots),
            ("{kind=\"delta\"}", s.watch_deltas),
            ("{kind=\"keepalive\"}", s.watch_keepalives),
            ("{kind=\"offer\"}", s.watch_offers),
        ],
    );
    gauge(
        &mut out,
        "nng_discovery_watch_followers",
        "Open connections on the watch broadcast socket (followers).",
        s.watch_followers,
    );
    counter(
        &mut out,
        "nng_discovery_watch_broadcasts_total",
        "Watch broadcasts sent (deltas and keepalives), once each whatever the number of followers.",
        s.watch_broadcasts,
    );
    out
}

/// What to answer to a request head.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Reply {
    /// 200 with the metrics (`body` false for HEAD).
    Metrics { body: bool },
    /// An error status.
    Error(Status),
}

/// The error statuses we send.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Decides the reply to a complete request head (lines ending in CRLF or
/// LF, up to the first empty one): `GET /metrics` (or HEAD, with any query
/// string) gets the metrics; another path 404, another method 405, anything
/// that is not HTTP/1.x 400.
pub fn parse_head(head: &[u8]) -> Reply {
    let Ok(head) = std::str::from_utf8(head) else {
        return Reply::Error(Status::BadRequest);
    };
    let mut lines = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Reply::Error(Status::BadRequest);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !token(target) || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Reply::Error(Status::BadRequest);
    }
    for header in lines {
        match header.split_once(':') {
            Some((name, _)) if token(name) => {}
            _ => return Reply::Error(Status::BadRequest),
        }
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Reply::Error(Status::MethodNotAllowed),
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path == "/metrics" {
        Reply::Metrics { body }
    } else {
        Reply::Error(Status::NotFound)
    }
}

/// The end of the request head in `buf` (the index after the empty line
/// that ends it: CRLF, or a bare LF as RFC 9112 allows), if it is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        let rest = &buf[i + 1..];
        match b {
            b'\n' if rest.starts_with(b"\n") => Some(i + 2),
            b'\n' if rest.starts_with(b"\r\n") => Some(i + 3),
            _ => None,
        }
    })
}

/// A bound metrics listener, not yet served.
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
    /// Readable (at end of file) once the [`Stop`] handle is dropped.
    stopped: UnixStream,
}

/// Stops [`Listener::serve`] when dropped.
pub struct Stop {
    _end: UnixStream,
}

impl Listener {
    /// Binds `addr`; the error names it. The [`Stop`] handle ends
    /// [`serve`](Listener::serve) when dropped.
    pub fn bind(addr: SocketAddr) -> Result<(Listener, Stop), String> {
        let fail = |e: io::Error| format!("cannot listen for --metrics on {addr}: {e}");
        let listener = TcpListener::bind(addr).map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let (end, stopped) = UnixStream::pair().map_err(fail)?;
        let listener = Listener {
            listener,
            addr,
            stopped,
        };
        Ok((listener, Stop { _end: end }))
    }

    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics thread's loop: answers requests with `stats()` until
    /// the [`Stop`] handle is dropped.
    pub fn serve(self, stats: impl Fn() -> Stats) {
        serve(self.listener, self.addr, self.stopped, stats)
    }
}

/// Waits until one of `fds` is readable (or hung up), at most `timeout`
/// (`None`: no limit). Returns which are ready.
fn poll_readable<const N: usize>(fds: [RawFd; N], timeout: Option<Duration>) -> [bool; N] {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: `pfds` is a valid array of N pollfd for the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms) };
    if rc <= 0 {
        // Timeout, or EINTR/ENOMEM: the callers loop and check their deadline.
        return [false; N];
    }
    pfds.map(|p| p.revents != 0)
}

fn serve(listener: TcpListener, addr: SocketAddr, wake: UnixStream, stats: impl Fn() -> Stats) {
    let fds = [listener.as_raw_fd(), wake.as_raw_fd()];
    loop {
        let [incoming, stop] = poll_readable(fds, None);
        if stop {
            return;
        }
        if !incoming {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = handle(stream, &wake, &stats) {
                    log::debug!("metrics: request from {peer}: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // E.g. EMFILE: wait a little rather than spin on it.
                log::warn!("metrics: accept on {addr}: {e}");
                if poll_readable([wake.as_raw_fd()], Some(Duration::from_millis(100)))[0] {
                    return;
                }
            }
        }
    }
}

/// Reads one request head from `stream` and answers it, then closes.
fn handle(mut stream: TcpStream, wake: &UnixStream, stats: &impl Fn() -> Stats) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let reply = loop {
        if let Some(end) = head_end(&buf) {
            break parse_head(&buf[..end]);
        }
        if buf.len() > MAX_HEAD {
            break Reply::Error(Status::HeadTooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Reply::Error(Status::RequestTimeout);
        }
        let [readable, stop] = poll_readable([stream.as_raw_fd(), wake.as_raw_fd()], Some(left));
        if stop {
            return Ok(());
        }
        if !readable {
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()), // the client went away
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let response = match reply {
        Reply::Metrics { body } => {
            let text = render(&stats(), env!("CARGO_PKG_VERSION"));
            response("200 OK", CONTENT_TYPE, &text, body)
        }
        Reply::Error(status) => {
            let mut r = response(
                status.line(),
                "text/plain; charset=utf-8",
                status.line(),
                true,
            );
            if status == Status::MethodNotAllowed {
                r = r.replacen("\r\n", "\r\nAllow: GET, HEAD\r\n", 1);
            }
            r
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    // Closed after every response. Closing with unread bytes (the rest of
    // an oversized head) would reset the connection and could discard the
    // response before the client reads it, so read and drop what is still
    // coming first, within bounds.
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_nonblocking(true)?;
    let linger = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < MAX_DRAIN {
        let left = linger.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let [readable, stop] = poll_readable([stream.as_raw_fd(), wake.as_raw_fd()], Some(left));
        if stop {
            break;
        }
        if !readable {
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// After a response, how long to wait for the client to close, reading
/// and dropping what it still sends.
const LINGER: Duration = Duration::from_secs(1);
/// At most this many bytes are read and dropped after a response.
const MAX_DRAIN: usize = 256 * 1024;

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &str, with_body: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        body.len(),
        if with_body { body } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        let mut s = Stats::default();
        s.peers = 1;
        s.connections = 2;
        s.subscribers = 3;
        s.surveys_sent = 4;
        s.rounds = 5;
        s.answers_last_round = 6;
        s.answers = 7;
        s.refused_invalid = 8;
        s.refused_stale = 9;
        s.refused_full = 10;
        s.publishes = 11;
        s.bytes_published = 12;
        s.watchers = 13;
        s.watch_held = 14;
        s.watch_requests = 15;
        s.watch_snapshots = 16;
        s.watch_deltas = 17;
        s.watch_keepalives = 18;
        s.watch_offers = 22;
        s.watch_followers = 23;
        s.watch_broadcasts = 24;
        s.refused_network = 19;
        s.refused_connections = 20;
        s.refused_peer_host = 21;
        s
    }

    #[test]
    fn renders_every_field_once_with_help_and_type() {
        let text = render(&stats(), "1.2.3");
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "nng_discovery_build_info{version=\"1.2.3\"} 1",
                "nng_discovery_peers 1",
                "nng_discovery_connections 2",
                "nng_discovery_subscribers 3",
                "nng_discovery_answers_last_round 6",
                "nng_discovery_surveys_total 4",
                "nng_discovery_rounds_total 5",
                "nng_discovery_answers_total 7",
                "nng_discovery_refused_answers_total{reason=\"invalid\"} 8",
                "nng_discovery_refused_answers_total{reason=\"stale\"} 9",
                "nng_discovery_refused_answers_total{reason=\"full\"} 10",
                "nng_discovery_refused_answers_total{reason=\"peer_host\"} 21",
                "nng_discovery_refused_connections_total{reason=\"network\"} 19",
                "nng_discovery_refused_connections_total{reason=\"limit\"} 20",
                "nng_discovery_publishes_total 11",
                "nng_discovery_published_bytes_total 12",
                "nng_discovery_watchers 13",
                "nng_discovery_watch_held 14",
                "nng_discovery_watch_requests_total 15",
                "nng_discovery_watch_replies_total{kind=\"snapshot\"} 16",
                "nng_discovery_watch_replies_total{kind=\"delta\"} 17",
                "nng_discovery_watch_replies_total{kind=\"keepalive\"} 18",
                "nng_discovery_watch_replies_total{kind=\"offer\"} 22",
                "nng_discovery_watch_followers 23",
                "nng_discovery_watch_broadcasts_total 24",
            ]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_family_has_help_then_type_before_its_samples() {
        let text = render(&stats(), "0.1.0");
        let lines: Vec<&str> = text.lines().collect();
        let mut families = 0;
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families += 1;
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(lines[i - 1].starts_with(&format!("# HELP {name} ")));
                // Prometheus naming: counters end in _total, gauges do not.
                match kind {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                    other => panic!("{name}: type {other}"),
                }
                assert!(name.starts_with("nng_discovery_"), "{name}");
                assert!(lines[i + 1].starts_with(name), "{name}: no sample");
            } else if !line.starts_with('#') {
                // Each sample belongs to the family declared above it.
                let declared = lines[..i]
                    .iter()
                    .rev()
                    .find_map(|l| l.strip_prefix("# TYPE "))
                    .unwrap();
                let family = declared.split(' ').next().unwrap();
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
            }
        }
        assert_eq!(families, 18);
    }

    #[test]
    fn a_version_with_quotes_is_escaped() {
        let text = render(&Stats::default(), "1\"2\\3");
        assert!(text.contains("nng_discovery_build_info{version=\"1\\\"2\\\\3\"} 1\n"));
    }

    #[test]
    fn replies_to_request_heads() {
        use Reply::*;
        use Status::*;
        let cases: &[(&str, Reply)] = &[
            ("GET /metrics HTTP/1.1", Metrics { body: true }),
            ("GET /metrics HTTP/1.1\r\n\r\n", Metrics { body: true }),
            ("GET /metrics HTTP/1.0\nHost: x\n\n", Metrics { body: true }),
            ("GET / HTTP/1.1\r\n\r\nbody", Error(NotFound)),
            (
                "GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: text/plain",
                Metrics { body: true },
            ),
            ("GET /metrics?x=1 HTTP/1.1", Metrics { body: true }),
            ("HEAD /metrics HTTP/1.1", Metrics { body: false }),
            ("GET / HTTP/1.1", Error(NotFound)),
            ("GET /metricsx HTTP/1.1", Error(NotFound)),
            ("POST /metrics HTTP/1.1", Error(MethodNotAllowed)),
            ("DELETE / HTTP/1.1", Error(MethodNotAllowed)),
            ("GET /metrics HTTP/2.0", Error(BadRequest)),
            ("GET /metrics", Error(BadRequest)),
            ("GET  /metrics HTTP/1.1", Error(BadRequest)),
            ("GET /metrics HTTP/1.1 x", Error(BadRequest)),
            ("", Error(BadRequest)),
            ("hello", Error(BadRequest)),
            ("GET /metrics HTTP/1.1\r\nno colon", Error(BadRequest)),
            ("GET /metrics HTTP/1.1\r\n: empty name", Error(BadRequest)),
            ("GET /m\u{e9}trics HTTP/1.1", Error(BadRequest)),
        ];
        for (head, want) in cases {
            assert_eq!(parse_head(head.as_bytes()), *want, "{head:?}");
        }
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nX: \xff"),
            Error(BadRequest)
        );
    }

    /// Sends `request` (from a thread, ignoring write errors: the server
    /// may close first) and returns what comes back until the server closes
    /// (empty if the connection was reset).
    fn exchange(addr: SocketAddr, request: Vec<u8>) -> String {
        let stream = TcpStream::connect(addr).unwrap();
        // Generous: answers take milliseconds; slow machines, many tests.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(&request);
        });
        let mut reply = Vec::new();
        let _ = (&stream).read_to_end(&mut reply);
        sender.join().unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    }

    #[test]
    fn serves_over_http_and_survives_bad_requests() {
        let (listener, stop) = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.addr();
        assert_ne!(addr.port(), 0);
        let thread = std::thread::spawn(move || listener.serve(stats));
        let scrape = || exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());

        let reply = scrape();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, render(&stats(), env!("CARGO_PKG_VERSION")));

        let status = |reply: &str| reply.lines().next().unwrap_or("").to_owned();
        let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n".to_vec());
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"));
        for (request, want) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"\x16\x03\x01\x02\x00\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ] {
            assert_eq!(status(&exchange(addr, request.to_vec())), want);
        }
        // A head over the limit, sent whole: 431.
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(4 * MAX_HEAD, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            status(&exchange(addr, big)),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // A flood (1 MiB, no end): 431 or a reset, and the server goes on.
        let flood = exchange(addr, vec![b'a'; 1 << 20]);
        assert!(
            flood.is_empty() || flood.starts_with("HTTP/1.1 431"),
            "{flood}"
        );
        // A client that never finishes its head gets 408 after
        // REQUEST_TIMEOUT, and the next scrape is answered.
        let silent = TcpStream::connect(addr).unwrap();
        (&silent).write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        assert!(scrape().starts_with("HTTP/1.1 200 OK"));
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut reply = String::new();
        let _ = (&silent).read_to_string(&mut reply);
        assert_eq!(status(&reply), "HTTP/1.1 408 Request Timeout");

        // Dropping the Stop handle ends the thread, even with a client
        // connected and silent.
        let idle = TcpStream::connect(addr).unwrap();
        drop(stop);
        thread.join().unwrap();
        drop(idle);
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }

    #[test]
    fn an_address_in_use_is_named() {
        let (listener, _stop) = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.addr();
        let Err(e) = Listener::bind(addr) else {
            panic!("bound {addr} twice")
        };
        assert!(
            e.starts_with(&format!("cannot listen for --metrics on {addr}: ")),
            "{e}"
        );
    }

    proptest::proptest! {
        #[test]
        // Half the bytes from the few that matter, so heads do end.
        fn any_bytes_get_a_reply_and_a_sound_head_end(bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                proptest::sample::select(b"\r\n :/GET".to_vec()),
            ],
            0..300,
        )) {
            let _ = parse_head(&bytes);
            if let Some(end) = head_end(&bytes) {
                proptest::prop_assert!(end <= bytes.len());
                let head = &bytes[..end];
                proptest::prop_assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
                // The first empty line: no earlier one.
                proptest::prop_assert_eq!(head_end(&head[..end - 1]), None);
            }
        }

        #[test]
        fn rendered_values_are_the_stats(v in proptest::prelude::any::<[u64; 24]>()) {
            let mut s = Stats::default();
            s.peers = v[0] as usize;
            s.connections = v[1] as usize;
            s.subscribers = v[2] as usize;
            s.surveys_sent = v[3];
            s.rounds = v[4];
            s.answers_last_round = v[5];
            s.answers = v[6];
            s.refused_invalid = v[7];
            s.refused_stale = v[8];
            s.refused_full = v[9];
            s.publishes = v[10];
            s.bytes_published = v[11];
            s.watchers = v[12] as usize;
            s.watch_held = v[13] as usize;
            s.watch_requests = v[14];
            s.watch_snapshots = v[15];
            s.watch_deltas = v[16];
            s.watch_keepalives = v[17];
            s.refused_network = v[18];
            s.refused_connections = v[19];
            s.refused_peer_host = v[20];
            s.watch_offers = v[21];
            s.watch_followers = v[22] as usize;
            s.watch_broadcasts = v[23];
            let text = render(&s, "0.1.0");
            let values: Vec<u64> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .skip(1) // build_info
                .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                .collect();
            let want = [
                s.peers as u64, s.connections as u64, s.subscribers as u64,
                s.answers_last_round, s.surveys_sent, s.rounds, s.answers,
                s.refused_invalid, s.refused_stale, s.refused_full,
                s.refused_peer_host, s.refused_network, s.refused_connections,
                s.publishes, s.bytes_published,
                s.watchers as u64, s.watch_held as u64, s.watch_requests,
                s.watch_snapshots, s.watch_deltas, s.watch_keepalives,
                s.watch_offers, s.watch_followers as u64, s.watch_broadcasts,
            ];
            proptest::prop_assert_eq!(values, want.to_vec());
        }
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\r\n\r\n"), Some(23));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn responses_carry_their_length_and_close() {
        let r = response("200 OK", CONTENT_TYPE, "abc", true);
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        // HEAD: the length of the body it would have had, no body.
        assert!(response("200 OK", CONTENT_TYPE, "abc", false)
            .ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
}
