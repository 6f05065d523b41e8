//! The HTTP responder of `server --metrics ADDR`: one thread that serves
//! `GET /metrics`, `GET /healthz` and `GET /peers` (and HEAD) on one port.
//! What each page says is the caller's ([`Page`] in, [`Response`] out;
//! the metrics text itself is rendered by the pure `metrics` module); this
//! module is the I/O.
//!
//! Bounded, and no client can hold the others up: the thread waits in
//! poll(2) on the listener, a wake-up socket and up to [`MAX_CLIENTS`]
//! connections at once, each non-blocking and driven a step at a time. A
//! request head must arrive whole within [`REQUEST_TIMEOUT`] (1 s) and
//! [`MAX_HEAD`] bytes, or it gets 408 or 431; a response must be taken
//! within [`WRITE_TIMEOUT`]. A silent, slow or flooding client therefore
//! costs one of the slots for a bounded time, while scrapes on the other
//! connections are answered at once. With every slot taken, new connections
//! wait in the kernel's backlog until one frees. No thread per connection.
//! The daemon stops the thread at once by dropping the [`Stop`] handle.
//!
//! No HTTP crate: tiny_http, the obvious small synchronous one, starts an
//! accept thread plus a pool of connection threads (not one thread), and
//! reads request heads without a size limit (its issue #56, open since 2015),
//! which is the one property a metrics port on a small device most needs.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The longest request head (request line and headers) accepted; longer
/// gets 431. A scrape's head is a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// How long a client has to send its whole request head after connecting.
/// A scraper sends it at once; a client still silent after this gets 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a client has to take the whole response (a long /peers list
/// to a slow reader) before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once. More wait in the listen backlog.
pub const MAX_CLIENTS: usize = 16;

/// After a response, how long to wait for the client to close, reading
/// and dropping what it still sends.
const LINGER: Duration = Duration::from_secs(1);
/// At most this many bytes are read and dropped after a response.
const MAX_DRAIN: usize = 256 * 1024;

/// The pages served.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Page {
    /// `/metrics`: Prometheus's text format.
    Metrics,
    /// `/healthz`: 200 while the server runs, 503 otherwise.
    Healthz,
    /// `/peers`: the list as a JSON array.
    Peers,
}

/// What a page says: status line (e.g. `200 OK`), content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// What to answer to a request head.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Reply {
    /// A page (`body` false for HEAD).
    Page { page: Page, body: bool },
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
/// LF, up to the first empty one): GET or HEAD of `/metrics`, `/healthz`
/// or `/peers` (with any query string) gets that page; another path 404,
/// another method 405, anything that is not HTTP/1.x 400.
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
    let page = match path {
        "/metrics" => Page::Metrics,
        "/healthz" => Page::Healthz,
        "/peers" => Page::Peers,
        _ => return Reply::Error(Status::NotFound),
    };
    Reply::Page { page, body }
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

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &str, with_body: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        body.len(),
        if with_body { body } else { "" }
    )
}

/// The bytes to send for `reply`, asking `respond` for a page.
fn answer(reply: Reply, respond: &impl Fn(Page) -> Response) -> Vec<u8> {
    match reply {
        Reply::Page { page, body } => {
            let r = respond(page);
            response(r.status, r.content_type, &r.body, body)
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
    }
    .into_bytes()
}

/// A bound listener, not yet served.
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

    /// The thread's loop: answers requests with `respond` until the
    /// [`Stop`] handle is dropped.
    pub fn serve(self, respond: impl Fn(Page) -> Response) {
        serve(self.listener, self.addr, self.stopped, respond)
    }
}

/// Where a connection is in its exchange.
enum Step {
    /// Reading the request head.
    Reading,
    /// Sending `out` from `sent` on.
    Writing { out: Vec<u8>, sent: usize },
    /// Response sent and our side shut: reading and dropping what the
    /// client still sends until it closes, so that closing with unread
    /// bytes does not reset the connection before it read the response.
    Draining { drained: usize },
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    step: Step,
    buf: Vec<u8>,
    /// When the current step gives up.
    deadline: Instant,
}

/// What a step left the connection in.
enum Next {
    Open,
    Close,
}

impl Client {
    /// Makes progress when the socket is ready (or the deadline passed).
    fn advance(&mut self, respond: &impl Fn(Page) -> Response, now: Instant) -> io::Result<Next> {
        let mut chunk = [0u8; 4096];
        loop {
            match &mut self.step {
                Step::Reading => {
                    let reply = if let Some(end) = head_end(&self.buf) {
                        Some(parse_head(&self.buf[..end]))
                    } else if self.buf.len() > MAX_HEAD {
                        Some(Reply::Error(Status::HeadTooLarge))
                    } else if now >= self.deadline {
                        Some(Reply::Error(Status::RequestTimeout))
                    } else {
                        None
                    };
                    if let Some(reply) = reply {
                        self.buf = Vec::new();
                        self.step = Step::Writing {
                            out: answer(reply, respond),
                            sent: 0,
                        };
                        self.deadline = now + WRITE_TIMEOUT;
                        continue;
                    }
                    match self.stream.read(&mut chunk) {
                        Ok(0) => return Ok(Next::Close), // the client went away
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Open),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Step::Writing { out, sent } => {
                    if *sent == out.len() {
                        self.stream.shutdown(Shutdown::Write)?;
                        self.step = Step::Draining { drained: 0 };
                        self.deadline = now + LINGER;
                        continue;
                    }
                    if now >= self.deadline {
                        return Ok(Next::Close);
                    }
                    match self.stream.write(&out[*sent..]) {
                        Ok(0) => return Ok(Next::Close),
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Open),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Step::Draining { drained } => {
                    if now >= self.deadline || *drained >= MAX_DRAIN {
                        return Ok(Next::Close);
                    }
                    match self.stream.read(&mut chunk) {
                        Ok(0) => return Ok(Next::Close),
                        Ok(n) => *drained += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Open),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Ok(Next::Close),
                    }
                }
            }
        }
    }

    /// The poll(2) events this connection waits for.
    fn events(&self) -> libc::c_short {
        match self.step {
            Step::Writing { .. } => libc::POLLOUT,
            Step::Reading | Step::Draining { .. } => libc::POLLIN,
        }
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// poll(2) on `fds` for at most `timeout` (`None`: no limit). Errors
/// (EINTR, ENOMEM) count as a timeout: the caller loops.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) {
    // Rounded up, so that a deadline 0.4 ms away is not a busy loop.
    let ms = timeout.map_or(-1, |t| {
        ((t.as_micros() + 999) / 1000).min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        for p in fds.iter_mut() {
            p.revents = 0;
        }
    }
}

fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    wake: UnixStream,
    respond: impl Fn(Page) -> Response,
) {
    let mut clients: Vec<Client> = Vec::with_capacity(MAX_CLIENTS);
    // Until this instant, accept nothing (after an accept error such as
    // EMFILE, instead of spinning on it).
    let mut accept_after: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let accepting = clients.len() < MAX_CLIENTS && accept_after.map_or(true, |t| now >= t);
        let mut fds = Vec::with_capacity(2 + clients.len());
        fds.push(pollfd(wake.as_raw_fd(), libc::POLLIN));
        // With every slot taken, new connections wait in the backlog.
        fds.push(pollfd(
            listener.as_raw_fd(),
            if accepting { libc::POLLIN } else { 0 },
        ));
        fds.extend(
            clients
                .iter()
                .map(|c| pollfd(c.stream.as_raw_fd(), c.events())),
        );
        let next = clients
            .iter()
            .map(|c| c.deadline)
            .chain(accept_after.filter(|_| clients.len() < MAX_CLIENTS))
            .min();
        poll(&mut fds, next.map(|t| t.saturating_duration_since(now)));
        if fds[0].revents != 0 {
            return;
        }
        let now = Instant::now();
        if accept_after.is_some_and(|t| now >= t) {
            accept_after = None;
        }
        // Step the connections that are ready or out of time; drop the
        // finished ones.
        let mut i = 0;
        clients.retain_mut(|c| {
            let ready = fds[2 + i].revents != 0 || now >= c.deadline;
            i += 1;
            if !ready {
                return true;
            }
            match c.advance(&respond, now) {
                Ok(Next::Open) => true,
                Ok(Next::Close) => false,
                Err(e) => {
                    log::debug!("metrics port: request from {}: {e}", c.peer);
                    false
                }
            }
        });
        if fds[1].revents != 0 {
            while clients.len() < MAX_CLIENTS {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        if let Err(e) = stream.set_nonblocking(true) {
                            log::debug!("metrics port: connection from {peer}: {e}");
                            continue;
                        }
                        clients.push(Client {
                            stream,
                            peer,
                            step: Step::Reading,
                            buf: Vec::new(),
                            deadline: now + REQUEST_TIMEOUT,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("metrics port: accept on {addr}: {e}");
                        accept_after = Some(now + Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A responder for the tests: each page's name and a fixed body.
    fn pages(page: Page) -> Response {
        let (status, body) = match page {
            Page::Metrics => ("200 OK", "metrics body\n"),
            Page::Healthz => ("503 Service Unavailable", "stopped\n"),
            Page::Peers => ("200 OK", "[\"a\"]\n"),
        };
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }

    #[test]
    fn replies_to_request_heads() {
        use Reply::*;
        use Status::*;
        let metrics = Page {
            page: self::Page::Metrics,
            body: true,
        };
        let cases: &[(&str, Reply)] = &[
            ("GET /metrics HTTP/1.1", metrics),
            ("GET /metrics HTTP/1.1\r\n\r\n", metrics),
            ("GET /metrics HTTP/1.0\nHost: x\n\n", metrics),
            ("GET / HTTP/1.1\r\n\r\nbody", Error(NotFound)),
            (
                "GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: text/plain",
                metrics,
            ),
            ("GET /metrics?x=1 HTTP/1.1", metrics),
            (
                "HEAD /metrics HTTP/1.1",
                Page {
                    page: self::Page::Metrics,
                    body: false,
                },
            ),
            (
                "GET /healthz HTTP/1.1",
                Page {
                    page: self::Page::Healthz,
                    body: true,
                },
            ),
            (
                "HEAD /peers?pretty HTTP/1.0",
                Page {
                    page: self::Page::Peers,
                    body: false,
                },
            ),
            ("GET / HTTP/1.1", Error(NotFound)),
            ("GET /metricsx HTTP/1.1", Error(NotFound)),
            ("GET /peers/ HTTP/1.1", Error(NotFound)),
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
        let thread = std::thread::spawn(move || listener.serve(pages));
        let get = |path: &str| exchange(addr, format!("GET {path} HTTP/1.1\r\n\r\n").into_bytes());

        let reply = get("/metrics");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "metrics body\n");
        let reply = get("/healthz");
        assert!(reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(reply.ends_with("\r\n\r\nstopped\n"), "{reply}");
        assert!(get("/peers").ends_with("\r\n\r\n[\"a\"]\n"));

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
        // Clients that never finish their heads, more than there are
        // slots: a scrape is still answered (it waits for a slot at most
        // REQUEST_TIMEOUT), and each silent one gets 408.
        let silent: Vec<TcpStream> = (0..MAX_CLIENTS + 2)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                (&s).write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        assert!(get("/metrics").starts_with("HTTP/1.1 200 OK"));
        for s in &silent {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut reply = String::new();
            let _ = (&*s).read_to_string(&mut reply);
            assert_eq!(status(&reply), "HTTP/1.1 408 Request Timeout");
        }

        // Dropping the Stop handle ends the thread, even with a client
        // connected and silent.
        let idle = TcpStream::connect(addr).unwrap();
        drop(stop);
        thread.join().unwrap();
        drop(idle);
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }

    #[test]
    fn a_silent_client_does_not_hold_up_a_scrape() {
        let (listener, stop) = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.addr();
        let thread = std::thread::spawn(move || listener.serve(pages));
        // A client connects first and stays silent; a scrape comes next.
        // Served one after the other, the scrape would be answered only
        // after the silent one's 408 (REQUEST_TIMEOUT later); served side
        // by side, the scrape's answer comes while the silent one still
        // waits. An order, not a speed: a round is inconclusive only if
        // this machine stalled for a whole REQUEST_TIMEOUT, so up to five.
        let side_by_side = (0..5).any(|_| {
            let silent = TcpStream::connect(addr).unwrap();
            let reply = exchange(addr, b"GET /peers HTTP/1.1\r\n\r\n".to_vec());
            assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
            silent.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            matches!((&silent).read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        });
        assert!(side_by_side, "every scrape waited for the silent client");
        drop(stop);
        thread.join().unwrap();
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
        let ct = "text/plain; version=0.0.4; charset=utf-8";
        let r = response("200 OK", ct, "abc", true);
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        // HEAD: the length of the body it would have had, no body.
        assert!(response("200 OK", ct, "abc", false)
            .ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
}
