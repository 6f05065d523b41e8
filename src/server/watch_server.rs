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
//! A raw REP socket hands each request over with its *backtrace* in the
//! message header: the connection's id, then the request id the REQ peer
//! chose. The reply here is the request message itself with its body
//! replaced, so it carries that header back: NNG routes it to that
//! connection, and the peer's REQ socket matches the request id (and drops
//! a reply to a request it no longer waits for).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::num::NonZeroU64;
use std::thread::JoinHandle;
use std::time::Instant;

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
use crate::watch::history::{Answer, History, HistoryLimits};
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
    stopper: Stopper,
    reader: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// The watch URL actually bound (port 0 resolved).
    pub(crate) fn url(&self) -> &str {
        &self.url
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
    admission::watch(&socket, gate, "watch", move |pipe, event| {
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
    };
    let handle = WatchHandle {
        url: bound,
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
}

impl Counters {
    /// Counts a reply of kind `kind` sent.
    fn count(&mut self, kind: u8) {
        match kind {
            watch_wire::SNAPSHOT => self.snapshots += 1,
            watch_wire::DELTA => self.deltas += 1,
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
        let position = watch_wire::decode_request(msg.as_slice());
        self.respond(pipe, msg, position, now);
    }

    /// Makes `list` (sorted, unique, valid names: the server's published
    /// list) the current one. If it differs from the last, the revision
    /// grows by one and every held request is answered (now with a delta).
    /// The first call starts the history at revision 1.
    pub(crate) fn record(&mut self, list: &[String], now: Instant) {
        match &mut self.history {
            Some(history) => {
                if !history.record(list) {
                    return;
                }
            }
            None => self.history = Some(History::new(self.epoch, list, self.limits)),
        }
        let released = self.held.take_all();
        self.answer_all(released, now, false);
    }

    /// When the earliest held request's keepalive is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.held.next_deadline()
    }

    /// Answers the held requests whose keepalive is due at `now`.
    pub(crate) fn on_deadline(&mut self, now: Instant) {
        let due = self.held.take_due(now);
        self.answer_all(due, now, true);
    }

    /// Copies the watch counters into `stats`.
    pub(crate) fn fill_stats(&self, stats: &mut Stats) {
        stats.watchers = self.watchers;
        stats.watch_held = self.held.len();
        stats.watch_requests = self.counters.requests;
        stats.watch_snapshots = self.counters.snapshots;
        stats.watch_deltas = self.counters.deltas;
        stats.watch_keepalives = self.counters.keepalives;
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
    fn epochs_are_non_zero_and_differ() {
        let a = random_epoch();
        let b = random_epoch();
        assert_ne!(a, b, "two epochs drawn in a row are equal");
    }
}
