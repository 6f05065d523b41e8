//! A watcher's connection to one watch URL, as a non-blocking source that a
//! thread polling several sources drives.
//!
//! [`WatchSource`] wraps one cooked REQ socket dialing one server's watch
//! URL and a [`WatchState`]. It never blocks: the owner polls its
//! descriptors ([`WatchSource::fds`]) with those of other sources, calls
//! [`WatchSource::on_readable`] when one is readable and
//! [`WatchSource::on_deadline`] when [`WatchSource::next_deadline`] has
//! passed, and gets [`WatchEvent`]s back:
//!
//! * a request for the position held goes out as soon as the socket has a
//!   connection, and the next one as soon as a reply arrives;
//! * a reply is applied with [`WatchState::apply`]: a changed list is a
//!   [`WatchEvent::List`]; a keepalive, an unchanged list or a reply that
//!   does not apply (the state then asks for a snapshot with `(0, 0)`) is
//!   [`WatchEvent::Heard`]: the server is alive;
//! * a closed connection, or no reply for two keepalive intervals (the
//!   server is gone or hung: logged, and the source redials), is
//!   [`WatchEvent::Gone`]: the state is forgotten and the source starts
//!   over with `(0, 0)`, so its next list is delivered even if it equals
//!   the last.
//!
//! The socket's connection events reach the owner's poll through a
//! socketpair written by NNG's pipe callback (which does nothing else: it
//! must not touch a socket).

use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nng::options::{Options as _, RecvFd};
use nng::{Dialer, Message, Protocol, Socket};

use crate::error::{Error, Result};
use crate::nng::transport::{self, Link};
use crate::options::FollowSettings;
use crate::watch::state::WatchState;
use crate::watch::wire::{self as watch_wire, Position};
use crate::wire::MAX_LIST_BYTES;

/// What a [`WatchSource`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// The server's list changed (or is the first since the source started
    /// or was last gone): sorted, unique.
    List(Vec<String>),
    /// The server answered without changing the list.
    Heard,
    /// The connection closed, or the server stayed silent for two
    /// keepalive intervals: the list from this server is no longer known.
    Gone,
}

/// Connection counters kept by the pipe callback.
#[derive(Debug, Default)]
struct Connections {
    added: AtomicU64,
    removed: AtomicU64,
}

/// How soon an unsent request is tried again when no connection event
/// comes to retry it.
const SEND_RETRY: Duration = Duration::from_millis(50);

/// One watch URL, driven by its owner's poll loop; see the [module](self).
#[derive(Debug)]
pub(crate) struct WatchSource {
    url: String,
    options: FollowSettings,
    socket: Socket,
    dialer: Option<Dialer>,
    /// Which dialers have connected: a dialer that never did is given a
    /// moment before it closes (an NNG 1.4 leak, see [`Link`]).
    link: Arc<Link>,
    recv_fd: RawFd,
    wake: UnixStream,
    connections: Arc<Connections>,
    /// `(added, removed)` as last seen.
    seen: (u64, u64),
    state: WatchState,
    /// The position whose request waits for a connection to go out.
    unsent: Option<Position>,
    /// While a request is unsent: when to try sending it again, whatever
    /// the connection events said (a connection reported added may not
    /// take a request yet, and no further event would come).
    retry_at: Option<Instant>,
    /// When the server was last heard from (or the source last started
    /// over): silence is measured from here.
    heard: Instant,
    /// Whether a `Gone` was reported and nothing heard since.
    gone: bool,
}

impl WatchSource {
    /// Dials `url` (in the background; the server may come later) and
    /// queues the first request. The silence limit is twice
    /// [`Options::watch_keepalive`]; redials follow
    /// [`Options::reconnect_min`]/[`Options::reconnect_max`].
    ///
    /// # Errors
    /// As [`prepare`](WatchSource::prepare), and errors of
    /// [`start`](WatchSource::start).
    #[cfg(test)]
    pub(crate) fn new(url: &str, options: &FollowSettings, now: Instant) -> Result<WatchSource> {
        let mut source = WatchSource::prepare(url, options, now)?;
        source.start()?;
        Ok(source)
    }

    /// The socket for `url`, its URL checked, not dialing yet: a source of
    /// several URLs checks them all before it dials any. [`start`] dials.
    ///
    /// [`start`]: WatchSource::start
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a malformed URL, [`Error::Setup`] if NNG
    /// refuses the socket.
    pub(crate) fn prepare(
        url: &str,
        options: &FollowSettings,
        now: Instant,
    ) -> Result<WatchSource> {
        let socket = Socket::new(Protocol::Req0).map_err(Error::nng("open a REQ socket"))?;
        match WatchSource::with_socket(socket.clone(), url, options, now) {
            Ok(source) => Ok(source),
            Err(e) => {
                socket.close();
                Err(e)
            }
        }
    }

    fn with_socket(
        socket: Socket,
        url: &str,
        options: &FollowSettings,
        now: Instant,
    ) -> Result<WatchSource> {
        transport::limit(&socket, MAX_LIST_BYTES + watch_wire::REPLY_HEADER_LEN)?;
        let recv_fd = socket
            .get_opt::<RecvFd>()
            .map_err(Error::nng("get the REQ socket's receive descriptor"))?;
        let (wake, notify) = UnixStream::pair().map_err(Error::spawn)?;
        wake.set_nonblocking(true).map_err(Error::spawn)?;
        notify.set_nonblocking(true).map_err(Error::spawn)?;
        let connections = Arc::new(Connections::default());
        let counters = Arc::clone(&connections);
        let link = Link::watch_with(&socket, &[url.to_owned()], move |_, event| {
            // Runs on NNG's threads: count, wake the owner, return.
            match event {
                nng::PipeEvent::AddPost => counters.added.fetch_add(1, Ordering::SeqCst),
                nng::PipeEvent::RemovePost => counters.removed.fetch_add(1, Ordering::SeqCst),
                _ => return,
            };
            let _ = (&notify).write(&[1]);
        })?;
        transport::check_dial_url(&socket, url, &options.dial)?;
        Ok(WatchSource {
            url: url.to_owned(),
            options: options.clone(),
            socket,
            dialer: None,
            link,
            recv_fd,
            wake,
            connections,
            seen: (0, 0),
            state: WatchState::new(),
            unsent: Some(Position::NOTHING),
            retry_at: None,
            heard: now,
            gone: false,
        })
    }

    /// Starts dialing (once; again does nothing) and queues the first
    /// request.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL NNG refuses to dial.
    pub(crate) fn start(&mut self) -> Result<()> {
        if self.dialer.is_none() {
            self.dialer = Some(transport::dial(
                &self.socket,
                &self.url,
                &self.options.dial,
            )?);
            self.try_send();
        }
        Ok(())
    }

    /// The watch URL.
    #[cfg(test)]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The descriptors to poll for reading: NNG's receive descriptor and
    /// the connection-event socketpair. When either is readable, call
    /// [`on_readable`](WatchSource::on_readable).
    pub(crate) fn fds(&self) -> [RawFd; 2] {
        [self.recv_fd, self.wake.as_raw_fd()]
    }

    /// When [`on_deadline`](WatchSource::on_deadline) is next due: two
    /// keepalive intervals after the server was last heard.
    pub(crate) fn next_deadline(&self) -> Instant {
        let silence = self.silence_deadline();
        match (self.unsent, self.retry_at) {
            (Some(_), Some(retry)) => retry.min(silence),
            _ => silence,
        }
    }

    /// Two keepalive intervals after the server was last heard.
    fn silence_deadline(&self) -> Instant {
        let silence = self.options.watch_keepalive.saturating_mul(2);
        self.heard.checked_add(silence).unwrap_or(self.heard)
    }

    /// Takes connection events and replies; returns what they mean, in
    /// order.
    pub(crate) fn on_readable(&mut self, now: Instant) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        let mut byte = [0u8; 64];
        while matches!((&self.wake).read(&mut byte), Ok(n) if n > 0) {}
        let added = self.connections.added.load(Ordering::SeqCst);
        let removed = self.connections.removed.load(Ordering::SeqCst);
        if removed != self.seen.1 {
            log::info!("watch connection to {} closed", self.url);
            self.start_over(now, &mut events);
        }
        let connected = added != self.seen.0;
        self.seen = (added, removed);
        if connected || self.unsent.is_some() {
            self.try_send();
        }
        loop {
            match self.socket.try_recv() {
                Ok(msg) => self.on_reply(&msg, now, &mut events),
                Err(nng::Error::TryAgain) => break,
                // No request outstanding (its send failed): none to wait for.
                Err(nng::Error::IncorrectState) => break,
                Err(nng::Error::Closed) => break,
                Err(e) => {
                    log::warn!("receiving from {}: {e}", self.url);
                    break;
                }
            }
        }
        events
    }

    /// Checks for silence: after two keepalive intervals without a reply,
    /// logs it, redials and starts over (`Some(Gone)` the first time).
    pub(crate) fn on_deadline(&mut self, now: Instant) -> Option<WatchEvent> {
        if now < self.silence_deadline() {
            if self.retry_at.is_some_and(|t| t <= now) {
                self.try_send();
            }
            return None;
        }
        let open = self.connections.added.load(Ordering::SeqCst)
            > self.connections.removed.load(Ordering::SeqCst);
        let silent = now.saturating_duration_since(self.heard);
        if open {
            log::warn!(
                "no reply from {} for {silent:?} (two keepalive intervals): redialing",
                self.url
            );
        } else {
            log::info!(
                "no connection to {} for {silent:?}: dialing afresh",
                self.url
            );
        }
        // Afresh in both cases: a dialer that never connects is replaced
        // too, not trusted to recover on its own.
        self.redial();
        let mut events = Vec::new();
        self.start_over(now, &mut events);
        events.pop()
    }

    /// Closes the connection. Dropping the source does the same.
    pub(crate) fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Let a connection attempt in flight finish first (see Link).
        self.link.close(self.dialer.take());
        self.socket.close();
    }

    fn redial(&mut self) {
        self.link.close(self.dialer.take());
        match transport::dial(&self.socket, &self.url, &self.options.dial) {
            Ok(dialer) => self.dialer = Some(dialer),
            Err(e) => log::warn!("redialing {}: {e}", self.url),
        }
    }

    /// Forgets the state, asks for a snapshot, and reports `Gone` unless
    /// already reported.
    fn start_over(&mut self, now: Instant, events: &mut Vec<WatchEvent>) {
        self.state.forget();
        self.unsent = Some(Position::NOTHING);
        self.heard = now;
        if !self.gone {
            self.gone = true;
            events.push(WatchEvent::Gone);
        }
        self.try_send();
    }

    fn on_reply(&mut self, msg: &Message, now: Instant, events: &mut Vec<WatchEvent>) {
        self.heard = now;
        self.gone = false;
        let event = match watch_wire::decode_reply(msg.as_slice()) {
            Ok(reply) => match self.state.apply(&reply) {
                Ok(Some(list)) => WatchEvent::List(list),
                Ok(None) => WatchEvent::Heard,
                Err(e) => {
                    log::warn!(
                        "{} sent a reply that does not apply ({e}): asking for the list",
                        self.url
                    );
                    WatchEvent::Heard
                }
            },
            Err(e) => {
                log::warn!("ignoring an invalid watch reply from {}: {e}", self.url);
                self.state.forget();
                WatchEvent::Heard
            }
        };
        events.push(event);
        self.unsent = Some(self.state.request());
        self.try_send();
    }

    /// Sends the unsent request if a connection can take it now; otherwise
    /// it waits for the next connection event.
    fn try_send(&mut self) {
        let Some(position) = self.unsent else { return };
        let body = watch_wire::encode_request(position);
        match self.socket.try_send(Message::from(&body[..])) {
            Ok(()) => {
                self.unsent = None;
                self.retry_at = None;
                return;
            }
            Err((_, nng::Error::TryAgain)) | Err((_, nng::Error::TimedOut)) => {}
            Err((_, e)) => log::warn!("sending a watch request to {}: {e}", self.url),
        }
        self.retry_at = Some(Instant::now() + SEND_RETRY);
    }
}

impl Drop for WatchSource {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use crate::{Client, Server};
    use std::time::Duration;

    /// `d`, times 10 under qemu (`.ci/cross.sh` sets the variable; code
    /// runs 10-50x slower there), as in tests/common.
    fn slow(d: Duration) -> Duration {
        if std::env::var_os("NNG_DISCOVERY_UNDER_QEMU").is_some() {
            d * 10
        } else {
            d
        }
    }

    /// Patience for outcomes that take milliseconds, or a few keepalives:
    /// 10 s (over 10x the slowest), slowed under qemu.
    fn patience() -> Duration {
        slow(Duration::from_secs(10))
    }

    fn options(keepalive: Duration) -> Options {
        Options::default()
            .poll_interval(slow(Duration::from_millis(200)))
            .survey_time(slow(Duration::from_millis(100)))
            .reconnect_min(Duration::from_millis(10))
            .reconnect_max(Duration::from_millis(50))
            .watch_keepalive(slow(keepalive))
    }

    /// A test loop like the one that will drive several sources: polls all
    /// their descriptors until the next deadline, feeds readiness and
    /// deadlines back, and collects `(source index, event)` until `done`
    /// says so or `patience()` passes.
    fn drive(
        sources: &mut [WatchSource],
        events: &mut Vec<(usize, WatchEvent)>,
        done: impl Fn(&[(usize, WatchEvent)]) -> bool,
    ) {
        let give_up = Instant::now() + patience();
        while !done(events) {
            let now = Instant::now();
            assert!(
                now < give_up,
                "not within {:?}; events: {events:?}",
                patience()
            );
            let next = sources
                .iter()
                .map(WatchSource::next_deadline)
                .min()
                .unwrap_or(give_up)
                .min(give_up);
            let mut fds: Vec<libc::pollfd> = sources
                .iter()
                .flat_map(|s| s.fds())
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let timeout = next.saturating_duration_since(now).as_millis().min(1000) as i32;
            // SAFETY: `fds` is a valid, initialised array of pollfd that
            // outlives the call, and its length is passed.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            let now = Instant::now();
            for (i, source) in sources.iter_mut().enumerate() {
                if fds[2 * i..2 * i + 2].iter().any(|p| p.revents != 0) {
                    events.extend(source.on_readable(now).into_iter().map(|e| (i, e)));
                }
                if let Some(e) = source.on_deadline(now) {
                    events.push((i, e));
                }
            }
        }
    }

    fn list(names: &[&str]) -> WatchEvent {
        WatchEvent::List(names.iter().map(|n| n.to_string()).collect())
    }

    /// Whether source `i`'s last event is `want`.
    fn last_is(events: &[(usize, WatchEvent)], i: usize, want: &WatchEvent) -> bool {
        events.iter().rev().find(|(j, _)| *j == i).map(|(_, e)| e) == Some(want)
    }

    #[test]
    fn follows_a_server_and_hears_keepalives() {
        // Silence would be 500 ms: a busy machine does not reach it.
        let o = options(Duration::from_millis(250)).watch_url("tcp://127.0.0.1:0");
        let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", o.clone()).unwrap();
        let url = server.watch_url().unwrap().to_owned();
        let mut sources = vec![
            WatchSource::new(&url, &o.follow_settings().unwrap(), Instant::now()).unwrap(),
            WatchSource::new(&url, &o.follow_settings().unwrap(), Instant::now()).unwrap(),
        ];
        assert_eq!(sources[0].url(), url);
        let mut events = Vec::new();
        drive(&mut sources, &mut events, |e| {
            last_is(e, 0, &list(&[])) && last_is(e, 1, &list(&[]))
        });
        let client = Client::new(server.survey_url(), "http://a:1").unwrap();
        drive(&mut sources, &mut events, |e| {
            last_is(e, 0, &list(&["http://a:1"])) && last_is(e, 1, &list(&["http://a:1"]))
        });
        // Nothing changes: keepalives every 250 ms, heard, never Gone.
        events.clear();
        drive(&mut sources, &mut events, |e| {
            e.iter()
                .filter(|(i, ev)| *i == 0 && *ev == WatchEvent::Heard)
                .count()
                >= 3
        });
        assert!(
            !events.iter().any(|(_, e)| *e == WatchEvent::Gone),
            "{events:?}"
        );
        client.shutdown();
        drive(&mut sources, &mut events, |e| {
            last_is(e, 0, &list(&[])) && last_is(e, 1, &list(&[]))
        });
        let s = server.stats();
        assert_eq!(s.watchers, 2);
        assert!(s.watch_keepalives >= 3, "{s:?}");
    }

    #[test]
    fn a_restarted_server_is_gone_then_followed_again() {
        let path =
            std::env::temp_dir().join(format!("nngd-watch-source-{}.ipc", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let url = format!("ipc://{}", path.display());
        let o = options(Duration::from_secs(5)).watch_url(url.clone());
        let start =
            |o: &Options| Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", o.clone()).unwrap();
        let server = start(&o);
        let mut sources =
            vec![WatchSource::new(&url, &o.follow_settings().unwrap(), Instant::now()).unwrap()];
        let mut events = Vec::new();
        drive(&mut sources, &mut events, |e| last_is(e, 0, &list(&[])));
        server.shutdown();
        drive(&mut sources, &mut events, |e| {
            last_is(e, 0, &WatchEvent::Gone)
        });
        let server = start(&o);
        // The same (empty) list again: delivered, the source counts again.
        drive(&mut sources, &mut events, |e| last_is(e, 0, &list(&[])));
        let gone = events
            .iter()
            .filter(|(_, e)| *e == WatchEvent::Gone)
            .count();
        assert_eq!(gone, 1, "{events:?}");
        server.shutdown();
    }

    #[test]
    fn a_silent_server_is_gone_after_two_keepalives_and_redialed() {
        // A REP socket that takes requests and never answers: a hung server.
        let hung = HungServer::new();
        let o = options(Duration::from_millis(100));
        let mut sources =
            vec![
                WatchSource::new(&hung.url, &o.follow_settings().unwrap(), Instant::now()).unwrap(),
            ];
        let mut events = Vec::new();
        drive(&mut sources, &mut events, |e| {
            last_is(e, 0, &WatchEvent::Gone)
        });
        // It redialed: a second connection reaches the silent server (NNG
        // dials in the background; the counter has no channel to wait on).
        let give_up = Instant::now() + patience();
        while hung.connections.load(Ordering::SeqCst) < 2 {
            assert!(
                Instant::now() < give_up,
                "no redial within {:?}",
                patience()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A listening REP socket that never replies, counting connections.
    struct HungServer {
        url: String,
        _socket: Socket,
        connections: Arc<AtomicU64>,
    }

    impl HungServer {
        fn new() -> HungServer {
            let socket = Socket::new(Protocol::Rep0).unwrap();
            let connections = Arc::new(AtomicU64::new(0));
            let count = Arc::clone(&connections);
            socket
                .pipe_notify(move |_, event| {
                    if matches!(event, nng::PipeEvent::AddPost) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .unwrap();
            // The listener lives as long as the socket.
            let (_listener, url) =
                transport::listen(&socket, "tcp://127.0.0.1:0", 0x30, None, None).unwrap();
            HungServer {
                url,
                _socket: socket,
                connections,
            }
        }
    }
}
