//! A watcher that follows a server's broadcast when the server offers one:
//! one watch URL, driven by the subscriber's poll loop like
//! [`WatchSource`](crate::subscriber::watch_source::WatchSource).
//!
//! [`BroadcastSource`] owns two sockets for its server: a cooked REQ socket
//! dialing the watch URL, and a SUB socket (subscribed to everything) that
//! dials the broadcast URL once the server has offered it. Both exist from
//! the start, so the descriptors the loop polls never change. It goes
//! through these modes (the protocol: `docs/PROTOCOL.md` ("Watch broadcast")):
//!
//! * **probing**: the first request is a follow request for `(0, 0)` (17
//!   bytes, [`watch_wire::CAN_FOLLOW`]). A server with a broadcast URL
//!   answers with an offer; any other server (older, or without one) reads
//!   it as a plain `(0, 0)` and answers with a snapshot;
//! * **plain**, after a snapshot: the classic REQ/REP watch (each reply
//!   applied with a [`WatchState`], the next request sent at once), as
//!   [`WatchSource`](crate::subscriber::watch_source::WatchSource) does;
//! * **following**, after an offer: the SUB socket dials the offered URL (a
//!   wildcard host takes the watch URL's host, [`resolve_offer_url`]) and
//!   a plain `(0, 0)` request fetches the snapshot at once; from then on a
//!   [`Follower`] applies the broadcasts and asks, through follow requests
//!   that the server answers at once, for a catch-up whenever it finds a
//!   gap, and once when the SUB connection comes up (broadcasts sent
//!   before it could carry them are missed). Nothing is held on the server
//!   between catch-ups. If the SUB connection does not come up within one
//!   keepalive interval (a broadcast URL this host cannot reach, or a
//!   listener overwhelmed by connections), the source watches over plain
//!   REQ/REP meanwhile, from the list held; NNG keeps dialing, and once
//!   the connection comes up the source follows again, with a catch-up
//!   from the list held.
//!
//! Silence: any broadcast or reply is the server heard. With no broadcast
//! for 1.5 keepalive intervals while following, it asks for a catch-up
//! (answered at once: a keepalive if nothing was missed), which is heard
//! before the merge's 2-interval limit. Two intervals with nothing at all,
//! or the watch connection closing, is [`WatchEvent::Gone`]: everything is
//! forgotten and the source starts over with a probe (a restarted server
//! may offer another URL, or none). A lost SUB connection (NNG redials it)
//! asks for a catch-up once it is back, since broadcasts may have been
//! lost meanwhile.

use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nng::options::protocol::pubsub::Subscribe;
use nng::options::Options as _;
use nng::{Dialer, Message, Protocol, Socket};

use crate::error::{Error, Result};
use crate::nng::receiver;
use crate::nng::transport::{self, Link};
use crate::options::FollowSettings;
use crate::subscriber::watch_source::WatchEvent;
use crate::watch::follower::Follower;
use crate::watch::state::WatchState;
use crate::watch::wire::{self as watch_wire, resolve_offer_url, FollowReply, Position};
use crate::wire::MAX_LIST_BYTES;

/// How soon an unsent request is tried again when no connection event
/// comes to retry it.
const SEND_RETRY: Duration = Duration::from_millis(50);

/// Connection counters kept by a pipe callback.
#[derive(Debug, Default)]
struct Connections {
    added: AtomicU64,
    removed: AtomicU64,
}

impl Connections {
    fn load(&self) -> (u64, u64) {
        (
            self.added.load(Ordering::SeqCst),
            self.removed.load(Ordering::SeqCst),
        )
    }
}

/// A request body, by what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// A follow request for `(0, 0)`: "offer me your broadcast".
    Probe,
    /// A classic 16-byte request (a snapshot for `(0, 0)`).
    Plain(Position),
    /// A follow request for a catch-up from a position: answered at once.
    CatchUp(Position),
}

impl Request {
    fn encode(self) -> Vec<u8> {
        match self {
            Request::Probe => watch_wire::encode_follow_request(Position::NOTHING).to_vec(),
            Request::Plain(p) => watch_wire::encode_request(p).to_vec(),
            Request::CatchUp(p) => watch_wire::encode_follow_request(p).to_vec(),
        }
    }
}

/// The SUB side while following.
#[derive(Debug)]
struct Following {
    follower: Follower,
    /// The broadcast URL dialed.
    url: String,
    /// When the offer came: the SUB connection is given one keepalive
    /// interval to come up.
    offered: Instant,
    /// When a broadcast last came (or following started, or a catch-up was
    /// last asked for on silence).
    broadcast_heard: Instant,
}

/// What the source is doing; see the [module](self).
#[derive(Debug)]
enum Mode {
    Probing,
    Plain(WatchState),
    Following(Following),
}

/// One watch URL, followed through its server's broadcast when offered;
/// see the [module](self).
///
/// Sockets: one REQ and one SUB per watch URL; threads: none of its own
/// (the subscriber's one thread drives every source), plus NNG's shared
/// pool.
#[derive(Debug)]
pub(crate) struct BroadcastSource {
    url: String,
    options: FollowSettings,
    req: Socket,
    req_dialer: Option<Dialer>,
    req_link: Arc<Link>,
    req_fd: RawFd,
    req_conns: Arc<Connections>,
    req_seen: (u64, u64),
    sub: Socket,
    sub_dialer: Option<Dialer>,
    sub_link: Arc<Link>,
    sub_fd: RawFd,
    sub_conns: Arc<Connections>,
    sub_seen: (u64, u64),
    /// Read end of the socketpair both pipe callbacks write to.
    wake: UnixStream,
    mode: Mode,
    /// The request sent and not yet answered.
    outstanding: Option<Request>,
    /// The request waiting for the REQ socket to take it.
    unsent: Option<Request>,
    retry_at: Option<Instant>,
    /// When the server was last heard from (any reply or broadcast), or
    /// the source last started over.
    heard: Instant,
    /// Whether a `Gone` was reported and nothing heard since.
    gone: bool,
    /// The broadcast URL still dialed while watching over REQ/REP because
    /// its connection did not come up in time: once it does, following
    /// starts again.
    fallback_url: Option<String>,
    /// The SUB connection came up while a request was outstanding: its
    /// reply may predate the connection, so a catch-up follows it (unless
    /// a newer request replaces it first).
    catch_up_after_reply: bool,
}

impl BroadcastSource {
    /// The sockets for `url`, its URL checked, not dialing yet; [`start`]
    /// dials.
    ///
    /// [`start`]: BroadcastSource::start
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a malformed URL, [`Error::InvalidOption`]
    /// for nonsense options, [`Error::Setup`] if NNG refuses a socket.
    pub(crate) fn prepare(
        url: &str,
        options: &FollowSettings,
        now: Instant,
    ) -> Result<BroadcastSource> {
        let req = Socket::new(Protocol::Req0).map_err(Error::nng("open a REQ socket"))?;
        let sub = match Socket::new(Protocol::Sub0) {
            Ok(sub) => sub,
            Err(e) => {
                req.close();
                return Err(Error::nng("open a SUB socket")(e));
            }
        };
        match BroadcastSource::with_sockets(req.clone(), sub.clone(), url, options, now) {
            Ok(source) => Ok(source),
            Err(e) => {
                req.close();
                sub.close();
                Err(e)
            }
        }
    }

    fn with_sockets(
        req: Socket,
        sub: Socket,
        url: &str,
        options: &FollowSettings,
        now: Instant,
    ) -> Result<BroadcastSource> {
        transport::limit(&req, MAX_LIST_BYTES + watch_wire::REPLY_HEADER_LEN)?;
        // A delta broadcast names at most every name of the lists before
        // and after it.
        transport::limit(&sub, 2 * MAX_LIST_BYTES + watch_wire::BROADCAST_HEADER_LEN)?;
        sub.set_opt::<Subscribe>(Vec::new())
            .map_err(Error::nng("subscribe"))?;
        let req_fd = receiver::recv_fd(&req)?;
        let sub_fd = receiver::recv_fd(&sub)?;
        let (wake, notify) = UnixStream::pair().map_err(Error::spawn)?;
        wake.set_nonblocking(true).map_err(Error::spawn)?;
        notify.set_nonblocking(true).map_err(Error::spawn)?;
        let notify = Arc::new(notify);
        let watch = |socket: &Socket, conns: &Arc<Connections>| {
            let (counters, notify) = (Arc::clone(conns), Arc::clone(&notify));
            Link::watch_with(socket, &[url.to_owned()], move |_, event| {
                // Runs on NNG's threads: count, wake the owner, return.
                match event {
                    nng::PipeEvent::AddPost => counters.added.fetch_add(1, Ordering::SeqCst),
                    nng::PipeEvent::RemovePost => counters.removed.fetch_add(1, Ordering::SeqCst),
                    _ => return,
                };
                let _ = (&*notify).write(&[1]);
            })
        };
        let req_conns = Arc::new(Connections::default());
        let sub_conns = Arc::new(Connections::default());
        let req_link = watch(&req, &req_conns)?;
        let sub_link = watch(&sub, &sub_conns)?;
        transport::check_dial_url(&req, url, &options.dial)?;
        Ok(BroadcastSource {
            url: url.to_owned(),
            options: options.clone(),
            req,
            req_dialer: None,
            req_link,
            req_fd,
            req_conns,
            req_seen: (0, 0),
            sub,
            sub_dialer: None,
            sub_link,
            sub_fd,
            sub_conns,
            sub_seen: (0, 0),
            wake,
            mode: Mode::Probing,
            outstanding: None,
            unsent: Some(Request::Probe),
            retry_at: None,
            heard: now,
            gone: false,
            fallback_url: None,
            catch_up_after_reply: false,
        })
    }

    /// Starts dialing the watch URL (once) and queues the probe.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL NNG refuses to dial.
    pub(crate) fn start(&mut self) -> Result<()> {
        if self.req_dialer.is_none() {
            self.req_dialer = Some(transport::dial(&self.req, &self.url, &self.options.dial)?);
            self.try_send();
        }
        Ok(())
    }

    /// The descriptors to poll: the REQ and SUB receive descriptors and
    /// the connection-event socketpair.
    pub(crate) fn fds(&self) -> [RawFd; 3] {
        [self.req_fd, self.sub_fd, self.wake.as_raw_fd()]
    }

    fn keepalive(&self) -> Duration {
        self.options.watch_keepalive
    }

    fn silence_deadline(&self) -> Instant {
        let silence = self.keepalive().saturating_mul(2);
        self.heard.checked_add(silence).unwrap_or(self.heard)
    }

    /// When [`on_deadline`](BroadcastSource::on_deadline) is next due.
    pub(crate) fn next_deadline(&self) -> Instant {
        let mut next = self.silence_deadline();
        if let (Some(_), Some(retry)) = (self.unsent, self.retry_at) {
            next = next.min(retry);
        }
        if let Mode::Following(f) = &self.mode {
            next = next.min(self.follow_deadline(f));
        }
        next
    }

    /// While following: when to ask for a catch-up on broadcast silence,
    /// or (before the SUB connection is up) when to give up on it.
    fn follow_deadline(&self, f: &Following) -> Instant {
        let (at, after) = if self.sub_up() {
            (f.broadcast_heard, self.keepalive().saturating_mul(3) / 2)
        } else {
            (f.offered, self.keepalive())
        };
        at.checked_add(after).unwrap_or(at)
    }

    fn sub_up(&self) -> bool {
        self.sub_seen.0 > self.sub_seen.1
    }

    /// Takes connection events, replies and broadcasts; returns what they
    /// mean, in order.
    pub(crate) fn on_readable(&mut self, now: Instant) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        let mut bytes = [0u8; 64];
        while matches!((&self.wake).read(&mut bytes), Ok(n) if n > 0) {}
        let (added, removed) = self.req_conns.load();
        if removed != self.req_seen.1 {
            log::info!("watch connection to {} closed", self.url);
            self.start_over(now, &mut events);
        }
        let connected = added != self.req_seen.0;
        self.req_seen = (added, removed);
        let (sub_added, sub_removed) = self.sub_conns.load();
        let sub_lost = sub_removed != self.sub_seen.1;
        let sub_connected = sub_added != self.sub_seen.0;
        self.sub_seen = (sub_added, sub_removed);
        if sub_connected && self.sub_up() && matches!(self.mode, Mode::Plain(_)) {
            if let Some(url) = self.fallback_url.take() {
                log::info!(
                    "the broadcast {url} offered by {} connected: following it",
                    self.url
                );
                self.mode = match std::mem::replace(&mut self.mode, Mode::Probing) {
                    Mode::Plain(state) => {
                        self.catch_up_after_reply = false;
                        Mode::Following(Following {
                            // A catch-up from the position held.
                            follower: Follower::resume(state),
                            url,
                            offered: now,
                            broadcast_heard: now,
                        })
                    }
                    other => other,
                };
            }
        }
        if let Mode::Following(f) = &mut self.mode {
            if sub_lost {
                // Broadcasts may have been lost with it: once it is back
                // (NNG redials), ask what changed. It has one keepalive
                // interval to come back before the fallback.
                log::debug!("broadcast connection to {} closed", f.url);
                f.follower.catch_up();
                f.offered = now;
            }
            if sub_connected {
                // The list may have changed before this connection could
                // carry it: ask what changed since the list held, and once
                // more after the reply under way (computed, perhaps, before
                // the server's side of this connection was up).
                if f.follower.position() != Position::NOTHING {
                    f.follower.catch_up();
                }
                if self.outstanding.is_some() {
                    self.catch_up_after_reply = true;
                }
            }
        }
        self.take_replies(now, &mut events);
        self.take_broadcasts(now, &mut events);
        self.schedule_follow_request();
        if connected || self.unsent.is_some() {
            self.try_send();
        }
        events
    }

    fn take_replies(&mut self, now: Instant, events: &mut Vec<WatchEvent>) {
        loop {
            match self.req.try_recv() {
                Ok(msg) => self.on_reply(&msg, now, events),
                Err(nng::Error::TryAgain)
                | Err(nng::Error::IncorrectState)
                | Err(nng::Error::Closed) => return,
                Err(e) => {
                    log::warn!("receiving from {}: {e}", self.url);
                    return;
                }
            }
        }
    }

    /// Applies every broadcast waiting, then reports the list once: a
    /// follower that fell behind pays one copy of the list, not one per
    /// broadcast.
    fn take_broadcasts(&mut self, now: Instant, events: &mut Vec<WatchEvent>) {
        let mut heard = false;
        loop {
            let msg = match self.sub.try_recv() {
                Ok(msg) => msg,
                Err(nng::Error::TryAgain) | Err(nng::Error::Closed) => break,
                Err(e) => {
                    log::warn!("receiving broadcasts for {}: {e}", self.url);
                    break;
                }
            };
            // Left over from an earlier run: not ours to apply.
            let Mode::Following(f) = &mut self.mode else {
                continue;
            };
            match watch_wire::decode_broadcast(msg.as_slice()) {
                Ok(broadcast) => {
                    heard = true;
                    f.follower.take_broadcast(&broadcast);
                }
                Err(e) => log::warn!("ignoring an invalid broadcast from {}: {e}", f.url),
            }
        }
        let Mode::Following(f) = &mut self.mode else {
            return;
        };
        if heard {
            self.heard = now;
            self.gone = false;
            f.broadcast_heard = now;
            events.push(match f.follower.take_list() {
                Some(list) => WatchEvent::List(list),
                None => WatchEvent::Heard,
            });
        }
    }

    /// While following: queues the request the follower wants, unless it
    /// is the one outstanding. The snapshot is asked for at once; a
    /// catch-up only with the SUB connection up (it is asked for again
    /// when that connection comes up).
    fn schedule_follow_request(&mut self) {
        let Mode::Following(f) = &self.mode else {
            return;
        };
        if !self.sub_up() && f.follower.wants() != Some(Position::NOTHING) {
            return;
        }
        let wanted = f.follower.wants().map(|p| {
            if p == Position::NOTHING {
                Request::Plain(p)
            } else {
                Request::CatchUp(p)
            }
        });
        if wanted.is_some() && wanted != self.outstanding && wanted != self.unsent {
            self.unsent = wanted;
        }
    }

    /// Checks the deadlines: a catch-up on broadcast silence, the fallback
    /// when the SUB connection does not come up, the retry of an unsent
    /// request, and silence (`Some(Gone)` the first time: redial, start
    /// over).
    pub(crate) fn on_deadline(&mut self, now: Instant) -> Option<WatchEvent> {
        if now >= self.silence_deadline() {
            let silent = now.saturating_duration_since(self.heard);
            if self.req_seen.0 > self.req_seen.1 {
                log::warn!(
                    "nothing from {} for {silent:?} (two keepalive intervals): redialing",
                    self.url
                );
            } else {
                log::info!(
                    "no connection to {} for {silent:?}: dialing afresh",
                    self.url
                );
            }
            self.redial();
            let mut events = Vec::new();
            self.start_over(now, &mut events);
            return events.pop();
        }
        let due = match &self.mode {
            Mode::Following(f) => self.follow_deadline(f) <= now,
            _ => false,
        };
        let sub_up = self.sub_up();
        let mut fallback = false;
        if let (true, Mode::Following(f)) = (due, &mut self.mode) {
            if sub_up {
                log::debug!("no broadcast from {} lately: asking what changed", f.url);
                f.broadcast_heard = now;
                f.follower.catch_up();
            } else {
                log::warn!(
                    "the broadcast {} offered by {} is not connected: watching over REQ/REP until it is",
                    f.url,
                    self.url
                );
                fallback = true;
            }
        }
        if fallback {
            // NNG keeps dialing it: following resumes once it connects.
            // Meanwhile the classic loop goes on from the list held.
            // The first request is a catch-up, which the server answers at
            // once (a plain request for the position held would be held
            // for a keepalive interval, after one of silence already:
            // together, the silence limit); plain requests follow.
            if let Mode::Following(f) = std::mem::replace(&mut self.mode, Mode::Probing) {
                let state = f.follower.into_state();
                let position = state.request();
                self.unsent = Some(if position == Position::NOTHING {
                    Request::Plain(position)
                } else {
                    Request::CatchUp(position)
                });
                self.fallback_url = Some(f.url);
                self.mode = Mode::Plain(state);
            }
        }
        self.schedule_follow_request();
        if self.unsent.is_some() && self.retry_at.map_or(true, |t| t <= now) {
            self.try_send();
        }
        None
    }

    fn on_reply(&mut self, msg: &Message, now: Instant, events: &mut Vec<WatchEvent>) {
        self.heard = now;
        self.gone = false;
        self.outstanding = None;
        let event = match watch_wire::decode_follow_reply(msg.as_slice()) {
            Ok(FollowReply::Offer { at, url }) => self.on_offer(at, &url, now),
            Ok(FollowReply::Reply(reply)) => match &mut self.mode {
                Mode::Probing => {
                    // No broadcast offered: today's REQ/REP watching.
                    log::debug!("{} offers no broadcast: watching over REQ/REP", self.url);
                    let mut state = WatchState::new();
                    let event = apply_plain(&mut state, &reply, &self.url);
                    self.unsent = Some(Request::Plain(state.request()));
                    self.mode = Mode::Plain(state);
                    event
                }
                Mode::Plain(state) => {
                    let event = apply_plain(state, &reply, &self.url);
                    self.unsent = Some(Request::Plain(state.request()));
                    event
                }
                Mode::Following(f) => {
                    let list = f.follower.on_reply(&reply);
                    if std::mem::take(&mut self.catch_up_after_reply) {
                        f.follower.catch_up();
                    }
                    match list {
                        Some(list) => WatchEvent::List(list),
                        None => WatchEvent::Heard,
                    }
                }
            },
            Err(e) => {
                log::warn!("ignoring an invalid watch reply from {}: {e}", self.url);
                match &mut self.mode {
                    Mode::Probing => self.unsent = Some(Request::Probe),
                    Mode::Plain(state) => {
                        state.forget();
                        self.unsent = Some(Request::Plain(Position::NOTHING));
                    }
                    Mode::Following(f) => f.follower.forget(),
                }
                WatchEvent::Heard
            }
        };
        events.push(event);
        self.schedule_follow_request();
        self.try_send();
    }

    /// Takes an offer: dials the broadcast URL (unless already dialed)
    /// and starts following from a snapshot.
    fn on_offer(&mut self, at: Position, offered: &str, now: Instant) -> WatchEvent {
        let url = resolve_offer_url(offered, &self.url);
        let same =
            matches!(&self.mode, Mode::Following(f) if f.url == url) && self.sub_dialer.is_some();
        if !same {
            self.close_sub_dialer();
            match transport::dial(&self.sub, &url, &self.options.dial) {
                Ok(dialer) => self.sub_dialer = Some(dialer),
                Err(e) => {
                    log::warn!(
                        "{} offered the broadcast {offered} ({url}), which cannot be dialed ({e}): watching over REQ/REP",
                        self.url
                    );
                    self.mode = Mode::Plain(WatchState::new());
                    self.unsent = Some(Request::Plain(Position::NOTHING));
                    return WatchEvent::Heard;
                }
            }
            log::debug!("{} offers its broadcast at {url} ({at})", self.url);
        }
        self.catch_up_after_reply = false;
        self.mode = Mode::Following(Following {
            follower: Follower::new(),
            url,
            offered: now,
            broadcast_heard: now,
        });
        WatchEvent::Heard
    }

    fn close_sub_dialer(&mut self) {
        self.sub_link.close(self.sub_dialer.take());
    }

    fn redial(&mut self) {
        self.req_link.close(self.req_dialer.take());
        match transport::dial(&self.req, &self.url, &self.options.dial) {
            Ok(dialer) => self.req_dialer = Some(dialer),
            Err(e) => log::warn!("redialing {}: {e}", self.url),
        }
    }

    /// Forgets everything, probes again, and reports `Gone` unless already
    /// reported.
    fn start_over(&mut self, now: Instant, events: &mut Vec<WatchEvent>) {
        self.close_sub_dialer();
        self.fallback_url = None;
        self.catch_up_after_reply = false;
        self.mode = Mode::Probing;
        self.outstanding = None;
        self.unsent = Some(Request::Probe);
        self.heard = now;
        if !self.gone {
            self.gone = true;
            events.push(WatchEvent::Gone);
        }
        self.try_send();
    }

    /// Sends the unsent request if the REQ socket takes it now (a new
    /// request replaces the outstanding one); otherwise retries later.
    fn try_send(&mut self) {
        let Some(request) = self.unsent else { return };
        match self.req.try_send(Message::from(&request.encode()[..])) {
            Ok(()) => {
                // It replaces the outstanding request, whose reply REQ now
                // drops: this one's is computed after the send.
                self.catch_up_after_reply = false;
                self.outstanding = Some(request);
                self.unsent = None;
                self.retry_at = None;
                return;
            }
            Err((_, nng::Error::TryAgain)) | Err((_, nng::Error::TimedOut)) => {}
            Err((_, e)) => log::warn!("sending a watch request to {}: {e}", self.url),
        }
        self.retry_at = Some(Instant::now() + SEND_RETRY);
    }

    /// Closes both connections. Dropping the source does the same.
    pub(crate) fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Let connection attempts in flight finish first (see Link).
        self.req_link.close(self.req_dialer.take());
        self.sub_link.close(self.sub_dialer.take());
        self.req.close();
        self.sub.close();
    }
}

impl Drop for BroadcastSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Applies a classic reply to `state`: a changed list, or heard.
fn apply_plain(state: &mut WatchState, reply: &watch_wire::Reply, url: &str) -> WatchEvent {
    match state.apply(reply) {
        Ok(Some(list)) => WatchEvent::List(list),
        Ok(None) => WatchEvent::Heard,
        Err(e) => {
            log::warn!("{url} sent a reply that does not apply ({e}): asking for the list");
            WatchEvent::Heard
        }
    }
}
