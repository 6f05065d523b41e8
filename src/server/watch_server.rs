//! The server side of the watch protocol: the watch socket, its reading
//! thread, and the state the server thread keeps for it.
//!
//! The wire format is [`crate::watch::wire`], what to answer is
//! [`crate::watch::history`], and the requests waiting for a change are
//! [`crate::watch::held_requests`]; this module only moves messages between them
//! and the socket. [`start`] opens a REP v0 socket in **raw** mode (so that
//! many requests can wait at once and each be answered later, in any
//! order), listens on the watch URL and starts one thread that reads
//! requests and hands them to the server thread, which owns the returned
//! [`WatchCore`] and calls it from its loop:
//!
//! * [`WatchCore::on_request`] for each request: answered at once when the
//!   watcher is behind (a delta or a snapshot), held when it is current;
//! * [`WatchCore::on_pipe`] for each connection event: a closed
//!   connection's held request is dropped;
//! * [`WatchCore::record`] for each published list: the history grows by a
//!   revision and every held request gets its delta;
//! * [`WatchCore::on_deadline`] when [`WatchCore::next_deadline`] passes:
//!   held requests whose keepalive interval is over get a keepalive.
//!
//! With a broadcast URL ([`Options::watch_broadcast_url`](crate::Options::watch_broadcast_url)) it also opens a
//! PUB v0 socket there ([`Broadcaster`]): each recorded change is sent
//! once on it as a delta broadcast, a keepalive broadcast goes out once
//! per keepalive interval, and a request carrying the follow flag
//! ([`watch_wire::CAN_FOLLOW`]) is answered at once, never held: the
//! offer for `(0, 0)`, otherwise what brings it to the current list (a
//! keepalive when it is current). See `docs/PROTOCOL.md` ("Watch broadcast").
//!
//! A raw REP socket hands each request over with its *backtrace* in the
//! message header: the connection's id, then the request id the REQ peer
//! chose. The reply here is the request message itself with its body
//! replaced, so it carries that header back: NNG routes it to that
//! connection, and the peer's REQ socket matches the request id (and drops
//! a reply to a request it no longer waits for).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use nng::options::{Options as _, RecvBufferSize, SendBufferSize};
use nng::{Message, Pipe, PipeEvent, Protocol, RawSocket, Socket};

use crate::error::{Error, Result};
use crate::nng::receiver::{self, Receiver as NngReceiver, Stopper};
use crate::nng::transport;
use crate::options::ServerSettings;
use crate::server::admission::{self, SharedGate};
use crate::server::stats::Stats;
use crate::watch::held_requests::{HeldRequests, Released};
use crate::watch::history::{Answer, History, HistoryLimits, SharedList};
use crate::watch::wire::{self as watch_wire, Position};

/// The largest request read, backtrace included (a request is 16 bytes
/// plus 4 per hop, at most 8 hops). A larger one closes its connection
/// inside NNG before it is buffered whole.
pub(crate) const MAX_REQUEST_BYTES: usize = 1024;

/// Requests queued between the reading thread and the server thread. When
/// full, the reader waits and NNG holds further requests in its own queue,
/// then in the connections (backpressure).
const REQUEST_QUEUE: usize = 1024;

/// NNG's receive queue for the watch socket.
const NNG_RECV_QUEUE: i32 = 1024;

/// NNG's send queue for the watch socket (its largest). Replies to many
/// held requests go out at once after a change; without a queue each would
/// wait for a hand-off to NNG's threads (see NOTES: p99 946 ms → 16–42 ms
/// for 500 watchers).
const NNG_SEND_QUEUE: i32 = 8192;

/// How many requests the server thread takes in one go before it looks at
/// its other work again.
pub(crate) const REQUEST_BATCH: usize = 256;

/// How many recently closed connections are remembered, to drop requests
/// that were already queued when their connection closed.
const RECENTLY_CLOSED: usize = 4096;

/// A watch connection opened or closed, from NNG's pipe callback.
#[derive(Debug)]
pub(crate) enum PipeChange {
    /// A watcher connected.
    Added,
    /// A watcher's connection closed.
    Removed(Pipe),
}

/// What the [`crate::Server`] keeps to stop the watch socket: the bound
/// URL, the socket, and the reading thread.
#[derive(Debug)]
pub(crate) struct WatchHandle {
    url: String,
    socket: Socket,
    /// The broadcast URL bound and the PUB socket, with a broadcast URL.
    broadcast: Option<(String, Socket)>,
    stopper: Stopper,
    reader: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// The watch URL actually bound (port 0 resolved).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The broadcast URL actually bound, with a broadcast URL.
    pub(crate) fn broadcast_url(&self) -> Option<&str> {
        self.broadcast.as_ref().map(|(url, _)| url.as_str())
    }

    /// Stops and joins the reading thread, then closes the socket. Call it
    /// after the server thread has been joined (or is sure to stop: its
    /// [`WatchCore`] dropped), so nothing sends on the socket any more.
    /// Does nothing the second time.
    pub(crate) fn stop(&mut self) {
        if let Some(reader) = self.reader.take() {
            self.stopper.stop();
            if reader.join().is_err() {
                log::error!("the watch reading thread panicked");
            }
            self.socket.close();
            if let Some((_, socket)) = &self.broadcast {
                socket.close();
            }
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens the watch socket on `url`, starts its reading thread, and returns
/// the handle for the [`crate::Server`] and the state for the server
/// thread.
pub(crate) fn start(
    url: &str,
    options: &ServerSettings,
    gate: SharedGate,
) -> Result<(WatchHandle, WatchCore)> {
    let socket = RawSocket::new(Protocol::Rep0)
        .map_err(Error::nng("open a raw REP socket"))?
        .socket;
    transport::limit(&socket, MAX_REQUEST_BYTES)?;
    socket
        .set_opt::<RecvBufferSize>(NNG_RECV_QUEUE)
        .map_err(Error::nng("set the watch socket's receive queue"))?;
    socket
        .set_opt::<SendBufferSize>(NNG_SEND_QUEUE)
        .map_err(Error::nng("set the watch socket's send queue"))?;
    let (pipes_tx, pipes_rx) = unbounded();
    // Through the server's one gate (allow_from, max_connections), like
    // its other sockets: only admitted connections reach the handler.
    admission::watch(&socket, Arc::clone(&gate), "watch", move |pipe, event| {
        // Runs on NNG's threads: hand the event over and return.
        let _ = match event {
            PipeEvent::AddPost => pipes_tx.send(PipeChange::Added),
            PipeEvent::RemovePost => pipes_tx.send(PipeChange::Removed(pipe)),
            _ => Ok(()),
        };
    })?;
    // The watchers' SP protocol: REQ v0.
    let (_listener, bound) = transport::listen(
        &socket,
        url,
        0x30,
        options.tls.as_ref(),
        options.ipc_permissions,
    )?;
    let broadcaster = match &options.watch_broadcast_url {
        Some(url) => Some(Broadcaster::open(url, options, gate)?),
        None => None,
    };
    let (requests_tx, requests_rx) = bounded(REQUEST_QUEUE);
    let (stopper, incoming) = receiver::receiver(&socket)?;
    let reader = std::thread::Builder::new()
        .name("nng-discovery-watch".into())
        .spawn(move || read_requests(incoming, requests_tx))
        .map_err(Error::spawn)?;
    let core = WatchCore {
        socket: socket.clone(),
        requests: requests_rx,
        pipes: pipes_rx,
        epoch: random_epoch(),
        limits: options.watch_history,
        history: None,
        held: HeldRequests::new(options.watch_keepalive),
        closed: RecentlyClosed::new(RECENTLY_CLOSED),
        watchers: 0,
        counters: Counters::default(),
        body: Vec::new(),
        broadcast: broadcaster,
    };
    let handle = WatchHandle {
        url: bound,
        broadcast: core
            .broadcast
            .as_ref()
            .map(|b| (b.url.clone(), b.socket.clone())),
        socket,
        stopper,
        reader: Some(reader),
    };
    Ok((handle, core))
}

/// The reading thread: hands every request to the server thread.
fn read_requests(mut incoming: NngReceiver, requests: Sender<Message>) {
    while let Some(msg) = incoming.next("receiving watch requests") {
        if requests.send(msg).is_err() {
            return; // the server thread is gone
        }
    }
}

/// A random non-zero epoch: std's `RandomState` is seeded from the
/// operating system's randomness; the clock and the process id are mixed in
/// so that two servers started from one seed still differ.
fn random_epoch() -> NonZeroU64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    NonZeroU64::new(hasher.finish()).unwrap_or(NonZeroU64::MIN)
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    requests: u64,
    snapshots: u64,
    deltas: u64,
    keepalives: u64,
    offers: u64,
}

impl Counters {
    /// Counts a reply of kind `kind` sent.
    fn count(&mut self, kind: u8) {
        match kind {
            watch_wire::SNAPSHOT => self.snapshots += 1,
            watch_wire::DELTA => self.deltas += 1,
            watch_wire::OFFER => self.offers += 1,
            _ => self.keepalives += 1,
        }
    }
}

/// The watch state the server thread owns; see the [module](self).
#[derive(Debug)]
pub(crate) struct WatchCore {
    socket: Socket,
    requests: Receiver<Message>,
    pipes: Receiver<PipeChange>,
    epoch: NonZeroU64,
    limits: HistoryLimits,
    /// `None` until the server's first list: requests are held until then.
    history: Option<History>,
    /// Tickets are the request messages themselves: each reply is its
    /// request with the body replaced, which keeps the backtrace header.
    held: HeldRequests<Pipe, Message>,
    closed: RecentlyClosed<Pipe>,
    watchers: usize,
    counters: Counters,
    /// Scratch space for encoding a reply body.
    body: Vec<u8>,
    /// The broadcast side, with a broadcast URL.
    broadcast: Option<Broadcaster>,
}

/// The server CPU a broadcast may cost per follower, as a spacing: NNG
/// delivers one small message to one connection in 5.4–7.3 µs of CPU
/// (NOTES and docs/BENCHMARKS.md: the bare PUB floor at 5,000
/// connections, which moves from run to run), so broadcasts spaced by
/// 36 µs per follower keep deliveries at about a fifth of a core (15–20%)
/// however fast the list changes, leaving room for the peers' own churn.
/// Changes published meanwhile go out together.
const BROADCAST_SPACING_PER_FOLLOWER: Duration = Duration::from_micros(36);

/// The least spacing between two broadcasts once the burst is spent,
/// whatever the number of followers. Each broadcast costs every follower
/// a wake-up and a copy of the list, and followers may share a host: a
/// thousand `Client`s in one process, each copying a thousand names per
/// broadcast, keep up with about seven broadcasts a second on two cores,
/// and fall further behind the more often the list changes.
const MIN_BROADCAST_SPACING: Duration = Duration::from_millis(150);

/// The longest spacing between two broadcasts, whatever the number of
/// followers: the bound on the extra delay coalescing adds.
const MAX_BROADCAST_SPACING: Duration = Duration::from_millis(250);

/// The least time between two delta broadcasts once the burst is spent,
/// with `followers` connected: 36 µs per follower, between 150 and 250 ms,
/// and at least `publish_gap`.
fn broadcast_spacing(followers: usize, publish_gap: Duration) -> Duration {
    let followers = u32::try_from(followers).unwrap_or(u32::MAX);
    BROADCAST_SPACING_PER_FOLLOWER
        .saturating_mul(followers)
        .clamp(MIN_BROADCAST_SPACING, MAX_BROADCAST_SPACING)
        .max(publish_gap)
}

/// Deltas that may go out back to back after a quiet spell before the
/// spacing applies: an isolated leave and join (a peer restarting) reach
/// the followers without waiting.
const BROADCAST_BURST: f64 = 3.0;

/// A token bucket for delta broadcasts: [`BROADCAST_BURST`] of credit,
/// one spent per delta, one regained per spacing. Pure: the caller passes
/// the time and the spacing.
#[derive(Debug, Clone, Copy, Default)]
struct Pacer {
    /// Credit left after the last delta, at `at`.
    credit: f64,
    /// When the last delta went out; `None`: none yet (full credit).
    at: Option<Instant>,
}

impl Pacer {
    /// The credit at `now`.
    fn credit(&self, now: Instant, spacing: Duration) -> f64 {
        match self.at {
            None => BROADCAST_BURST,
            Some(_) if spacing.is_zero() => BROADCAST_BURST,
            Some(at) => {
                let regained =
                    now.saturating_duration_since(at).as_secs_f64() / spacing.as_secs_f64();
                (self.credit + regained).min(BROADCAST_BURST)
            }
        }
    }

    /// When a delta may go out: `now` if the credit allows, else when one
    /// unit of credit is back.
    fn due(&self, now: Instant, spacing: Duration) -> Instant {
        let credit = self.credit(now, spacing);
        if credit >= 1.0 {
            return now;
        }
        now.checked_add(spacing.mul_f64(1.0 - credit))
            .unwrap_or(now)
    }

    /// Spends one unit for a delta sent at `now` (call only when
    /// [`due`](Pacer::due) is not after `now`).
    fn spend(&mut self, now: Instant, spacing: Duration) {
        self.credit = (self.credit(now, spacing) - 1.0).max(0.0);
        self.at = Some(now);
    }
}

/// Changes recorded and not broadcast yet: the net change from revision
/// `from` to revision `to`.
#[derive(Debug)]
struct Pending {
    from: u64,
    to: u64,
    /// Each name whose presence differs from revision `from`: `true`
    /// joined, `false` left.
    changes: BTreeMap<Box<str>, bool>,
}

/// The broadcast side of the watch server: one PUB socket, on which each
/// change goes out once whatever the number of followers.
#[derive(Debug)]
struct Broadcaster {
    socket: Socket,
    /// The URL bound, as offered to followers.
    url: String,
    /// Open connections on the PUB socket, kept by the pipe callback.
    followers: Arc<AtomicUsize>,
    keepalive: Duration,
    /// The least spacing between two broadcasts ([`Options::publish_gap`](crate::Options::publish_gap)).
    min_spacing: Duration,
    /// When the next keepalive broadcast is due (each broadcast moves it).
    next_keepalive: Instant,
    /// Paces deltas (burst, then one per spacing).
    pacer: Pacer,
    pending: Option<Pending>,
    sent: u64,
    body: Vec<u8>,
}

impl Broadcaster {
    /// Opens the PUB socket and listens on `url`.
    fn open(url: &str, options: &ServerSettings, gate: SharedGate) -> Result<Broadcaster> {
        let socket = Socket::new(Protocol::Pub0).map_err(Error::nng("open a PUB socket"))?;
        // A PUB socket receives nothing: the limit only bounds junk.
        transport::limit(&socket, 64)?;
        let followers = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&followers);
        // Through the server's one gate, like its other sockets.
        admission::watch(&socket, gate, "broadcast", move |_, event| {
            // Runs on NNG's threads: count and return.
            match event {
                PipeEvent::AddPost => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                PipeEvent::RemovePost => {
                    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(1))
                    });
                }
                _ => {}
            }
        })?;
        // The followers' SP protocol: SUB v0.
        let bound = match transport::listen(
            &socket,
            url,
            0x21,
            options.tls.as_ref(),
            options.ipc_permissions,
        ) {
            Ok((_listener, bound)) => bound,
            Err(e) => {
                socket.close();
                return Err(e);
            }
        };
        let keepalive = options.watch_keepalive;
        Ok(Broadcaster {
            socket,
            url: bound,
            followers,
            keepalive,
            min_spacing: options.publish_gap,
            next_keepalive: Instant::now() + keepalive,
            pacer: Pacer::default(),
            pending: None,
            sent: 0,
            body: Vec::new(),
        })
    }

    /// The least time between two delta broadcasts now
    /// ([`broadcast_spacing`]).
    fn spacing(&self) -> Duration {
        broadcast_spacing(self.followers.load(Ordering::Relaxed), self.min_spacing)
    }

    /// When the pending change may go out, if one is pending: at once
    /// after a quiet spell (up to three deltas back to back), else one
    /// spacing after the last delta.
    fn due(&self) -> Option<Instant> {
        self.pending.as_ref()?;
        Some(self.pacer.due(Instant::now(), self.spacing()))
    }

    /// Takes the change from revision `from` to `to` (the one after the
    /// last taken): it joins the pending change, which goes out now if
    /// the spacing since the last delta allows, else at
    /// [`due`](Broadcaster::due).
    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        epoch: u64,
        from: u64,
        to: u64,
        joined: &[Box<str>],
        left: &[Box<str>],
        now: Instant,
    ) {
        let pending = self.pending.get_or_insert_with(|| Pending {
            from,
            to,
            changes: BTreeMap::new(),
        });
        pending.to = to;
        merge_change(&mut pending.changes, joined, left);
        self.flush_if_due(epoch, now);
    }

    /// Sends the pending change as one delta if its time has come.
    fn flush_if_due(&mut self, epoch: u64, now: Instant) {
        let spacing = self.spacing();
        if self.pending.is_none() || self.pacer.due(now, spacing) > now {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        self.body.clear();
        let joined = pending.changes.iter().filter(|(_, &j)| j);
        let left = pending.changes.iter().filter(|(_, &j)| !j);
        watch_wire::encode_broadcast_delta(
            epoch,
            pending.from,
            pending.to,
            joined.map(|(n, _)| &**n),
            left.map(|(n, _)| &**n),
            &mut self.body,
        );
        self.pacer.spend(now, spacing);
        self.send(now);
    }

    /// The revision the pending change starts at, if one is pending: the
    /// last revision broadcast.
    fn pending_from(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.from)
    }

    /// When this side next needs the server thread: the pending change's
    /// time, else the next keepalive.
    fn next_deadline(&self) -> Instant {
        self.due().unwrap_or(self.next_keepalive)
    }

    /// Broadcasts a keepalive for `at` if one is due at `now` and no
    /// change is pending (its delta will say more).
    fn keepalive_if_due(&mut self, at: Option<Position>, now: Instant) {
        if now < self.next_keepalive || self.pending.is_some() {
            return;
        }
        match at {
            Some(at) => {
                self.body.clear();
                watch_wire::encode_broadcast_keepalive(at, &mut self.body);
                self.send(now);
            }
            // No list yet: nothing to keep alive.
            None => self.next_keepalive = now + self.keepalive,
        }
    }

    /// Sends the encoded body once: PUB copies it to every follower's
    /// queue (dropping that queue's oldest when full) and never blocks.
    fn send(&mut self, now: Instant) {
        match self.socket.send(Message::from(&self.body[..])) {
            Ok(()) => self.sent += 1,
            Err((_, e)) => log::warn!("sending a watch broadcast: {e}"),
        }
        self.next_keepalive = now + self.keepalive;
    }
}

impl WatchCore {
    /// The channel of requests, for the server thread's `select!`.
    pub(crate) fn requests(&self) -> Receiver<Message> {
        self.requests.clone()
    }

    /// The channel of connection events, for the server thread's `select!`.
    pub(crate) fn pipe_changes(&self) -> Receiver<PipeChange> {
        self.pipes.clone()
    }

    /// Takes a connection event.
    pub(crate) fn on_pipe(&mut self, change: PipeChange) {
        match change {
            PipeChange::Added => {
                self.watchers += 1;
                log::debug!("a watcher connected ({} watchers)", self.watchers);
            }
            PipeChange::Removed(pipe) => {
                self.watchers = self.watchers.saturating_sub(1);
                self.closed.insert(pipe);
                // Its held request goes unanswered: nobody is left to read it.
                drop(self.held.pipe_closed(pipe));
            }
        }
    }

    /// Takes a request: answers it at once if the watcher is behind, holds
    /// it if it is current (or before the first list). A request replaces
    /// any held one from the same connection, which goes unanswered (its
    /// REQ peer no longer waits for it).
    pub(crate) fn on_request(&mut self, mut msg: Message, now: Instant) {
        self.counters.requests += 1;
        let Some(pipe) = msg.pipe() else { return };
        if self.closed.contains(&pipe) {
            return; // queued before its connection closed
        }
        drop(self.held.pipe_closed(pipe));
        let (position, flags) = watch_wire::decode_request_flags(msg.as_slice());
        if flags & watch_wire::CAN_FOLLOW != 0 && self.broadcast.is_some() {
            if position == Position::NOTHING || self.history.is_some() {
                self.answer_follower(msg, position);
            } else {
                // A catch-up before the first list (a follower of the
                // server's previous run): nothing to answer it with yet;
                // held until the first list, which answers it.
                self.respond(pipe, msg, position, now);
            }
            return;
        }
        // Any body but 16 bytes (a follow request included, without a
        // broadcast) holds nothing: a snapshot, as for older watchers.
        let position = watch_wire::decode_request(msg.as_slice());
        self.respond(pipe, msg, position, now);
    }

    /// Answers a follower's request at once, never holding it: the offer
    /// for `(0, 0)`, otherwise the delta or snapshot that brings it to the
    /// current list, or a keepalive when it is current. Called for a
    /// position other than `(0, 0)` only once the first list exists.
    fn answer_follower(&mut self, msg: Message, position: Position) {
        let Some(broadcast) = &self.broadcast else {
            return;
        };
        self.body.clear();
        match &self.history {
            // While a change waits for its broadcast, a catch-up goes only
            // as far as where that broadcast starts, so that it applies
            // when it comes (a follower taken past it would find the
            // broadcast spanning its position and ask again).
            Some(history) if position != Position::NOTHING => match broadcast.pending_from() {
                Some(from) => {
                    history.catch_up(position, from).encode(&mut self.body);
                }
                None => {
                    history.expire(position).encode(&mut self.body);
                }
            },
            history => {
                let revision = history.as_ref().map_or(0, |h| h.position().revision);
                let at = Position::new(self.epoch.get(), revision);
                watch_wire::encode_offer(at, &broadcast.url, &mut self.body);
            }
        }
        let kind = self.body[0];
        send_reply(&self.socket, msg, &self.body);
        self.counters.count(kind);
    }

    /// Makes `list` (sorted, unique, valid names: the server's published
    /// list, kept shared) the current one. If it differs from the last, the
    /// revision grows by one and every held request is answered (now with a
    /// delta). The first call starts the history at revision 1.
    pub(crate) fn record(&mut self, list: &SharedList, now: Instant) {
        match &mut self.history {
            Some(history) => {
                let from = history.position().revision;
                // The broadcast carries the change even where the history's
                // limits do not keep it.
                let Some((joined, left)) = history.record_sorted(Arc::clone(list)) else {
                    return;
                };
                if let Some(b) = &mut self.broadcast {
                    let to = history.position().revision;
                    b.change(self.epoch.get(), from, to, &joined, &left, now);
                }
            }
            None => self.history = Some(History::new(self.epoch, list.iter(), self.limits)),
        }
        let released = self.held.take_all();
        self.answer_all(released, now, false);
    }

    /// When the earliest held request's keepalive is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let held = self.held.next_deadline();
        match &self.broadcast {
            Some(b) => {
                let next = b.next_deadline();
                Some(held.map_or(next, |h| h.min(next)))
            }
            None => held,
        }
    }

    /// Answers the held requests whose keepalive is due at `now`.
    pub(crate) fn on_deadline(&mut self, now: Instant) {
        let due = self.held.take_due(now);
        self.answer_all(due, now, true);
        if let Some(b) = &mut self.broadcast {
            b.flush_if_due(self.epoch.get(), now);
            b.keepalive_if_due(self.history.as_ref().map(History::position), now);
        }
    }

    /// Copies the watch counters into `stats`.
    pub(crate) fn fill_stats(&self, stats: &mut Stats) {
        stats.watchers = self.watchers;
        stats.watch_held = self.held.len();
        stats.watch_requests = self.counters.requests;
        stats.watch_snapshots = self.counters.snapshots;
        stats.watch_deltas = self.counters.deltas;
        stats.watch_keepalives = self.counters.keepalives;
        stats.watch_offers = self.counters.offers;
        if let Some(b) = &self.broadcast {
            stats.watch_followers = b.followers.load(Ordering::Relaxed);
            stats.watch_broadcasts = b.sent;
        }
    }

    /// Answers released requests, encoding each distinct reply once (after
    /// a change, most watchers sent the same position).
    fn answer_all(&mut self, released: Vec<Released<Pipe, Message>>, now: Instant, expire: bool) {
        if released.is_empty() {
            return;
        }
        let Some(history) = &self.history else {
            // No list yet: keep them waiting (they are due again in a
            // keepalive interval; watchers tolerate two).
            for r in released {
                self.held.hold(r.pipe, r.ticket, r.position, now);
            }
            return;
        };
        let mut bodies: HashMap<Position, (u8, Vec<u8>)> = HashMap::new();
        for r in released {
            let (kind, body) = bodies.entry(r.position).or_insert_with(|| {
                let answer = if expire {
                    history.expire(r.position)
                } else {
                    history.answer(r.position)
                };
                let mut body = Vec::new();
                answer.encode(&mut body);
                (body.first().copied().unwrap_or(0), body)
            });
            if body.is_empty() {
                // Current (a hold): possible only if the request named the
                // new epoch's position; hold it again.
                self.held.hold(r.pipe, r.ticket, r.position, now);
                continue;
            }
            let kind = *kind;
            send_reply(&self.socket, r.ticket, body);
            self.counters.count(kind);
        }
    }

    /// Answers one request now, or holds it.
    fn respond(&mut self, pipe: Pipe, msg: Message, position: Position, now: Instant) {
        let Some(history) = &self.history else {
            self.held.hold(pipe, msg, position, now);
            return;
        };
        let answer = history.answer(position);
        if let Answer::Hold = answer {
            self.held.hold(pipe, msg, position, now);
            return;
        }
        self.body.clear();
        answer.encode(&mut self.body);
        let kind = self.body[0];
        send_reply(&self.socket, msg, &self.body);
        self.counters.count(kind);
    }
}

/// Adds the change `joined`/`left` to the net change `changes` (each name
/// whose presence differs: `true` joined, `false` left). A name that left
/// and came back, or joined and left, is no change at all.
fn merge_change(changes: &mut BTreeMap<Box<str>, bool>, joined: &[Box<str>], left: &[Box<str>]) {
    for (names, joins) in [(joined, true), (left, false)] {
        for name in names {
            if changes.remove(name).is_none() {
                changes.insert(name.clone(), joins);
            }
        }
    }
}

/// Sends `body` as the reply to `request`: the request's header (its
/// backtrace) stays, so NNG routes the reply to the requester and its REQ
/// socket matches it. A reply whose connection has closed is dropped by
/// NNG, as is one whose connection's queue is full (a watcher that does not
/// read); the send itself only waits for the socket's own queue.
fn send_reply(socket: &Socket, mut request: Message, body: &[u8]) {
    request.clear();
    request.push_back(body);
    if let Err((_, e)) = socket.send(request) {
        log::warn!("sending a watch reply: {e}");
    }
}

/// The last `capacity` items inserted, as a set: bounded memory.
#[derive(Debug)]
struct RecentlyClosed<P> {
    order: VecDeque<P>,
    set: HashSet<P>,
    capacity: usize,
}

impl<P: Copy + Eq + Hash> RecentlyClosed<P> {
    fn new(capacity: usize) -> Self {
        RecentlyClosed {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity,
        }
    }

    fn insert(&mut self, item: P) {
        if self.capacity == 0 || !self.set.insert(item) {
            return;
        }
        self.order.push_back(item);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, item: &P) -> bool {
        self.set.contains(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recently_closed_keeps_the_last_few() {
        let mut r = RecentlyClosed::new(3);
        for i in 0..5u32 {
            r.insert(i);
        }
        r.insert(4); // again: no effect
        assert!(!r.contains(&0) && !r.contains(&1));
        assert!(r.contains(&2) && r.contains(&3) && r.contains(&4));
        assert_eq!(r.order.len(), 3);
        assert_eq!(r.set.len(), 3);
        let mut none = RecentlyClosed::new(0);
        none.insert(1u8);
        assert!(!none.contains(&1));
    }

    #[test]
    fn deltas_go_out_in_a_burst_then_one_per_spacing() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let spacing = ms(100);
        let mut p = Pacer::default();
        for _ in 0..3 {
            assert_eq!(p.due(t0, spacing), t0);
            p.spend(t0, spacing);
        }
        // The burst is spent: the next one spacing later.
        assert_eq!(p.due(t0, spacing), t0 + spacing);
        assert_eq!(p.due(t0 + ms(40), spacing), t0 + spacing);
        p.spend(t0 + spacing, spacing);
        assert_eq!(p.due(t0 + spacing, spacing), t0 + 2 * spacing);
        // A quiet spell brings the whole burst back, no more.
        let later = t0 + ms(10_000);
        assert_eq!(p.credit(later, spacing), BROADCAST_BURST);
        // No spacing: never waits.
        let mut q = Pacer::default();
        for _ in 0..10 {
            q.spend(t0, Duration::ZERO);
        }
        assert_eq!(q.due(t0, Duration::ZERO), t0);
    }

    #[test]
    fn the_spacing_grows_with_the_followers_within_its_bounds() {
        let ms = Duration::from_millis;
        let gap = ms(2);
        assert_eq!(broadcast_spacing(0, gap), MIN_BROADCAST_SPACING);
        assert_eq!(broadcast_spacing(1_000, gap), MIN_BROADCAST_SPACING);
        assert_eq!(broadcast_spacing(5_000, gap), ms(180));
        assert_eq!(broadcast_spacing(6_000, gap), ms(216));
        assert_eq!(broadcast_spacing(100_000, gap), MAX_BROADCAST_SPACING);
        assert_eq!(broadcast_spacing(usize::MAX, gap), MAX_BROADCAST_SPACING);
        // A publish gap longer than that wins.
        assert_eq!(broadcast_spacing(10, ms(500)), ms(500));
    }

    #[test]
    fn coalesced_changes_are_the_net_change() {
        let names = |n: &[&str]| -> Vec<Box<str>> { n.iter().map(|&s| s.into()).collect() };
        let mut changes = BTreeMap::new();
        merge_change(&mut changes, &names(&["a", "b"]), &names(&["x"]));
        // b leaves again, x comes back, c joins, y leaves.
        merge_change(&mut changes, &names(&["x", "c"]), &names(&["b", "y"]));
        let net: Vec<(&str, bool)> = changes.iter().map(|(n, &j)| (&**n, j)).collect();
        assert_eq!(net, [("a", true), ("c", true), ("y", false)]);
    }

    #[test]
    fn epochs_are_non_zero_and_differ() {
        let a = random_epoch();
        let b = random_epoch();
        assert_ne!(a, b, "two epochs drawn in a row are equal");
    }
}
