//! The discovery server: surveys the clients, publishes the list.

pub mod admission;
mod early;
pub mod membership;
pub(crate) mod schedule;
pub(crate) mod stats;
pub(crate) mod watch_server;

use std::collections::HashSet;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use nng::options::{Options as _, RecvBufferSize};
use nng::{Message, Pipe, PipeEvent, Protocol, RawSocket, Socket};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::nng::receiver::{self, Receiver as NngReceiver, Stopper};
use crate::nng::transport;
use crate::options::Options;
use crate::server::early::Early;
use crate::server::membership::{AnswerOutcome, Membership};
use crate::server::schedule::{Action, Behind, RecentAnswers, Schedule, Verdict};
use crate::server::stats::Stats;
use crate::subscriber::mailbox::Mailbox;
use crate::watch::history::{Names, SharedList};
use crate::wire::{self, MAX_NAME_LEN};
use admission::{Gate, Origin, SharedGate};
use watch_server::{WatchCore, WatchHandle};

/// The largest answer the server reads. Names up to this size are read and
/// refused with a warning; anything larger closes that peer's connection
/// inside NNG before it is buffered whole.
const MAX_ANSWER_BYTES: usize = 2 * MAX_NAME_LEN + 64;

/// Answers queued between the reading thread and the server thread. When
/// full, the reader waits, and NNG holds further answers in its own queue
/// and then in the connections (backpressure, never loss).
const ANSWER_QUEUE: usize = 4096;

/// NNG's largest receive queue: raw surveyors queue answers here.
const NNG_RECV_QUEUE: i32 = 8192;

/// Survey ids are 31 bits wide.
const SEQ_MASK: u32 = 0x7fff_ffff;

/// Answers carrying one of the last this-many survey ids are accepted; older
/// or unknown ids are ignored (announcements aside: see
/// [`wire::ANNOUNCE_ID`]).
const SEQ_WINDOW: u32 = 1024;

/// Events handed from NNG's pipe callbacks (and from `shutdown`) to the
/// server thread. The callbacks only send these: they never touch a socket.
#[derive(Debug)]
enum Control {
    PipeAdded(Pipe),
    PipeRemoved(Pipe),
    SubscriberAdded(Pipe),
    SubscriberRemoved(Pipe),
    Stop,
}

/// A discovery server.
///
/// It listens on two URLs: a survey URL, where clients connect and answer
/// heartbeat surveys with their service names, and a publish URL, where it
/// publishes the list of live names whenever it changes. With the default
/// [`Options`], joins and leaves are seen within milliseconds: a
/// [`Client`](crate::Client) announces its name on a new connection unasked
/// and is listed as soon as that answer arrives, with no survey; a peer
/// that does not announce (the Go original, nngcat, pynng) is surveyed
/// 5 ms after it connects ([`Options::announce_grace`]; sooner if a survey
/// goes out anyway; later when thousands connect at once and the surveys'
/// budget holds it back, or up to 50 ms while announcements arrive late);
/// a closed connection removes its names at once; and heartbeat surveys
/// catch peers that hang with their connection open. An announcement is
/// taken exactly like an answer (name checks, `max_peers`,
/// `require_peer_host`); the protocol is in `docs/PROTOCOL.md` ("Join announcement").
///
/// Every new subscriber receives the current list as soon as it connects,
/// and the unchanged list is republished every
/// [`republish_interval`](Options::republish_interval). The one wait is at
/// start: no list goes out before
/// [`first_publish_delay`](Options::first_publish_delay) (by default twice
/// the clients' longest redial wait plus one survey time: 3 s), so that
/// after a server restart subscribers are not told that everyone left while
/// the clients are still reconnecting. And a server that resumes after a
/// stall (its process stopped, or starved of CPU) surveys again and takes
/// in the connections that closed meanwhile before it publishes anything.
/// A heartbeat round in which the server could not have read every answer
/// in time (its thread woke late, or answers were left unread) charges no
/// misses: it is counted in [`Stats::rounds_not_counted`] instead, so a
/// server short of CPU does not drop peers that keep answering.
///
/// With [`Options::watch_url`], it also listens there for watchers (the
/// watch protocol, see `docs/PROTOCOL.md`): each watcher is sent only what changed
/// since the revision it holds, at the moment the list is published.
///
/// With [`Options::watch_broadcast_url`] as well, each change goes out
/// once on a PUB socket there to every follower (watchers that can follow
/// it learn the URL from the watch URL), with no extra thread.
///
/// Threads: two (one reads answers, one keeps the membership and does all
/// sending), three with a watch URL (one more reads watch requests), plus
/// NNG's shared pool. [`shutdown`](Server::shutdown) or `Drop` closes the
/// sockets and joins the threads.
///
/// ```
/// # fn main() -> Result<(), nng_discovery::Error> {
/// use nng_discovery::{Options, Server};
///
/// let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", Options::default())?;
/// // Port 0 asked the kernel for a free port; this is the one it chose.
/// assert!(server.survey_url().starts_with("tcp://127.0.0.1:"));
/// assert!(!server.survey_url().ends_with(":0"));
/// assert!(server.peers().is_empty());
/// server.shutdown();
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a Server shuts it down at once"]
pub struct Server {
    survey_url: String,
    publish_url: String,
    surveyor: Socket,
    publisher: Socket,
    stopper: Stopper,
    control: Sender<Control>,
    /// The list last published, shared with the server thread (which
    /// replaces it; [`Server::peers`] copies it).
    peers: Arc<Mutex<SharedList>>,
    stats: Arc<Mutex<Stats>>,
    gate: SharedGate,
    changes: Receiver<Vec<String>>,
    threads: Vec<JoinHandle<()>>,
    watch: Option<WatchHandle>,
}

impl Server {
    /// Starts a server listening on `survey_url` for clients and on
    /// `publish_url` for subscribers.
    ///
    /// URLs take NNG's forms: `tcp://HOST:PORT` (port 0 picks a free port;
    /// read it back with [`survey_url`](Server::survey_url)),
    /// `ipc:///path/to/socket` or `inproc://name`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for nonsense options (named in the message);
    /// [`Error::InvalidUrl`] for a malformed URL; [`Error::AddressInUse`] if
    /// something already listens there; [`Error::Listen`] for other refusals;
    /// [`Error::Setup`] if NNG cannot open a socket or a thread cannot start.
    pub fn new(survey_url: &str, publish_url: &str, options: Options) -> Result<Server> {
        let options = options.server_settings()?;
        let (control_tx, control_rx) = unbounded();

        let surveyor = RawSocket::new(Protocol::Surveyor0)
            .map_err(Error::nng("open a raw SURVEYOR socket"))?
            .socket;
        transport::limit(&surveyor, MAX_ANSWER_BYTES)?;
        surveyor
            .set_opt::<RecvBufferSize>(NNG_RECV_QUEUE)
            .map_err(Error::nng("set the surveyor's receive queue"))?;
        // Every socket the server listens with passes its new connections
        // through one gate (allow_from, max_connections); only admitted
        // ones reach the handlers below.
        let gate: SharedGate = Arc::new(Mutex::new(Gate::new(
            crate::cidr::parse_networks(&options.allow_from)?,
            options.max_connections,
        )));
        forward_pipe_events(
            &surveyor,
            &gate,
            "survey",
            &control_tx,
            Control::PipeAdded,
            Control::PipeRemoved,
        )?;

        let publisher = Socket::new(Protocol::Pub0).map_err(Error::nng("open a PUB socket"))?;
        transport::limit(&publisher, 64)?;
        forward_pipe_events(
            &publisher,
            &gate,
            "publish",
            &control_tx,
            Control::SubscriberAdded,
            Control::SubscriberRemoved,
        )?;

        // The peers' SP protocol numbers: respondent v0 and subscriber v0.
        let (_survey_listener, bound_survey) = transport::listen(
            &surveyor,
            survey_url,
            0x63,
            options.tls.as_ref(),
            options.ipc_permissions,
        )?;
        let (_publish_listener, bound_publish) = transport::listen(
            &publisher,
            publish_url,
            0x21,
            options.tls.as_ref(),
            options.ipc_permissions,
        )?;

        let (mailbox, changes) = Mailbox::new();
        let peers = Arc::new(Mutex::new(SharedList::default()));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (answers_tx, answers_rx) = bounded(ANSWER_QUEUE);

        let (watch, watch_core) = match &options.watch_url {
            Some(url) => {
                let (handle, core) = watch_server::start(url, &options, Arc::clone(&gate))?;
                (Some(handle), Some(core))
            }
            None => (None, None),
        };
        let (stopper, answers) = receiver::receiver(&surveyor)?;
        let (recv_fd, reader_busy) = (answers.recv_fd(), answers.busy());
        let reader = std::thread::Builder::new()
            .name("nng-discovery-reader".into())
            .spawn(move || read_answers(answers, answers_tx))
            .map_err(Error::spawn)?;
        let core = Core {
            membership: Membership::new(
                options.miss_threshold,
                options.max_peers,
                options.event_driven,
            ),
            schedule: Schedule::new(&options, Instant::now()),
            early: Early::new(),
            event_driven: options.event_driven,
            surveyor: surveyor.clone(),
            publisher: publisher.clone(),
            seq: initial_seq(),
            encoded: Vec::new(),
            encoded_stale: true,
            subscriber_pipes: HashSet::new(),
            dirty: true,
            peers: Arc::clone(&peers),
            mailbox,
            stats: Stats::default(),
            shared_stats: Arc::clone(&stats),
            round_seq: None,
            round_answers: 0,
            round_recent: RecentAnswers::default(),
            watch: watch_core,
            peer_host: options.require_peer_host.then(|| Arc::clone(&gate)),
            started: Instant::now(),
            recv_fd,
            reader_busy,
            behind_warned: None,
            behind_unwarned: 0,
        };
        let server_thread = std::thread::Builder::new()
            .name("nng-discovery-server".into())
            .spawn(move || core.run(control_rx, answers_rx));
        let server_thread = match server_thread {
            Ok(t) => t,
            Err(e) => {
                stopper.stop();
                let _ = reader.join();
                return Err(Error::spawn(e));
            }
        };
        log::info!("discovery server surveying on {bound_survey}, publishing on {bound_publish}");
        Ok(Server {
            survey_url: bound_survey,
            publish_url: bound_publish,
            surveyor,
            publisher,
            stopper,
            control: control_tx,
            peers,
            stats,
            gate,
            changes,
            threads: vec![server_thread, reader],
            watch,
        })
    }

    /// The survey URL actually bound: for `tcp://…:0` it carries the port
    /// the kernel chose. Clients dial this.
    pub fn survey_url(&self) -> &str {
        &self.survey_url
    }

    /// The publish URL actually bound. Subscribers dial this.
    pub fn publish_url(&self) -> &str {
        &self.publish_url
    }

    /// The watch URL actually bound, if the server was started with
    /// [`Options::watch_url`] (for `tcp://…:0` it carries the port the
    /// kernel chose). Watchers dial this.
    pub fn watch_url(&self) -> Option<&str> {
        self.watch.as_ref().map(WatchHandle::url)
    }

    /// The watch broadcast URL actually bound, if the server was started
    /// with [`Options::watch_broadcast_url`] (for `tcp://…:0` it carries
    /// the port the kernel chose). Followers learn it from the watch URL
    /// (an offer) and dial it.
    pub fn watch_broadcast_url(&self) -> Option<&str> {
        self.watch.as_ref().and_then(WatchHandle::broadcast_url)
    }

    /// The list of live services as last published: sorted, no duplicates.
    pub fn peers(&self) -> Vec<String> {
        let list = Arc::clone(&self.peers.lock());
        list.to_strings()
    }

    /// A snapshot of the server's counters: peers, connections, surveys,
    /// answers taken and refused, publishes.
    pub fn stats(&self) -> Stats {
        let mut stats = *self.stats.lock();
        let gate = self.gate.lock();
        stats.refused_network = gate.refused_network();
        stats.refused_connections = gate.refused_full();
        stats
    }

    /// Whether the server's threads are all still running: `false` once
    /// one has ended, which before [`shutdown`](Server::shutdown) means it
    /// panicked and the server no longer surveys or publishes. For health
    /// checks (the daemon's `GET /healthz`).
    pub fn is_running(&self) -> bool {
        !self.threads.is_empty() && self.threads.iter().all(|t| !t.is_finished())
    }

    /// A channel on which the server's own lists arrive, with the same
    /// behaviour as [`Subscriber::changes`](crate::Subscriber::changes): the
    /// current list first (even if empty), then each change; latest wins.
    pub fn changes(&self) -> Receiver<Vec<String>> {
        self.changes.clone()
    }

    /// Stops the server: closes both sockets (clients and subscribers see
    /// the connections close and start redialing) and joins the threads.
    /// Dropping the server does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Stop both threads, then close the sockets: NNG 1.4 must not close
        // a socket that a thread may be entering a receive on (see
        // receiver), and after the join nothing sends on them either.
        let _ = self.control.send(Control::Stop);
        self.stopper.stop();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a discovery server thread panicked");
            }
        }
        self.surveyor.close();
        self.publisher.close();
        if let Some(watch) = &mut self.watch {
            watch.stop();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A starting survey id that differs between runs, so a restarted server's
/// ids do not match answers meant for its predecessor. It is the id "last
/// sent": the first survey carries the next one ([`wire::next_survey_id`],
/// never [`wire::ANNOUNCE_ID`]).
fn initial_seq() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    nanos & SEQ_MASK
}

/// The reading thread: hands every answer to the server thread.
fn read_answers(mut incoming: NngReceiver, answers: Sender<Message>) {
    while let Some(msg) = incoming.next("receiving answers") {
        if answers.send(msg).is_err() {
            return; // the server thread is gone
        }
    }
}

/// The server thread's state.
struct Core {
    membership: Membership<Pipe>,
    schedule: Schedule<Pipe>,
    /// Announcements taken before their connection's arrival.
    early: Early<Pipe, Message>,
    event_driven: bool,
    surveyor: Socket,
    publisher: Socket,
    /// The id of the last survey sent.
    seq: u32,
    /// The list as last encoded for publishing.
    encoded: Vec<u8>,
    /// Whether `encoded` is older than the published list: it is encoded
    /// only when there is a subscriber to send it to.
    encoded_stale: bool,
    /// The subscribers' connections, as NNG added them.
    subscriber_pipes: HashSet<Pipe>,
    /// Whether the membership changed since `encoded` and `peers` were made.
    dirty: bool,
    peers: Arc<Mutex<SharedList>>,
    mailbox: Mailbox<Vec<String>, Names>,
    stats: Stats,
    shared_stats: Arc<Mutex<Stats>>,
    /// The id of the heartbeat round under way, until it ends.
    round_seq: Option<u32>,
    /// Answers to `round_seq` so far.
    round_answers: u64,
    /// When the latest answers to `round_seq` were taken.
    round_recent: RecentAnswers,
    /// The watch protocol's state, with a watch URL.
    watch: Option<WatchCore>,
    /// With `require_peer_host`: the gate, which knows each connection's
    /// address.
    peer_host: Option<SharedGate>,
    /// When the server started (for the log line of its first publish).
    started: Instant,
    /// The surveyor's receive descriptor: readable while answers wait in
    /// NNG's queue.
    recv_fd: RawFd,
    /// Whether the reading thread may hold an answer it has not handed on.
    reader_busy: Arc<AtomicBool>,
    /// When "server behind" was last logged, and rounds not counted since.
    behind_warned: Option<Instant>,
    behind_unwarned: u64,
}

/// "server behind: round not counted" is logged at most this often.
const BEHIND_WARN_EVERY: Duration = Duration::from_secs(10);

/// How many queued answers the server thread takes in one go before it
/// looks at its clock again.
const ANSWER_BATCH: usize = 256;

/// The published list as the `changes()` channel carries it. A list the
/// reader never took is taken back and reused: its names are moved into
/// the new one, and only names that joined are copied.
fn owned_names(list: &Names, taken_back: Option<Vec<String>>) -> Vec<String> {
    let Some(old) = taken_back else {
        return list.to_strings();
    };
    // Both sorted: one pass.
    let mut old = old.into_iter().peekable();
    let mut names = Vec::with_capacity(list.len());
    for name in list.iter() {
        while old.next_if(|o| o.as_str() < &**name).is_some() {}
        match old.next_if(|o| o.as_str() == &**name) {
            Some(kept) => names.push(kept),
            None => names.push(String::from(&**name)),
        }
    }
    names
}

impl Core {
    fn run(mut self, control: Receiver<Control>, answers: Receiver<Message>) {
        let (watch_requests, watch_pipes) = match &self.watch {
            Some(w) => (w.requests(), w.pipe_changes()),
            None => (crossbeam_channel::never(), crossbeam_channel::never()),
        };
        loop {
            // Take in what is waiting before acting on timers that came due
            // meanwhile: a connection that closed while this thread was not
            // running must not be published as still there.
            for event in control.try_iter() {
                match event {
                    Control::Stop => return,
                    event => self.on_control(event),
                }
            }
            for msg in answers.try_iter().take(ANSWER_BATCH) {
                self.on_answer(msg);
            }
            self.after_change();
            let now = Instant::now();
            if let Some(watch) = &mut self.watch {
                watch.on_deadline(now);
            }
            // More answers queued than one batch: the server is behind, and
            // an extra survey would only add to the queue.
            self.schedule
                .set_answer_backlog(answers.len() > ANSWER_BATCH);
            while let Some(action) = self.schedule.due(now) {
                if let Some(late) = self.schedule.take_stall() {
                    log::warn!(
                        "the server thread ran {late:?} late (process stopped or starved): surveying again before publishing"
                    );
                }
                self.stats.rounds_not_counted += self.schedule.take_dropped_rounds();
                self.act(action, now, &answers);
            }
            // Before waiting (which may last until the next heartbeat):
            // `stats()` shows everything done so far, publishes included.
            self.stats.peers = self.membership.len();
            self.stats.connections = self.membership.pipe_count();
            let mut wakeup = self.schedule.next_wakeup();
            if let Some(check) = self.schedule.next_check() {
                wakeup = wakeup.min(check);
            }
            if let Some(watch) = &self.watch {
                watch.fill_stats(&mut self.stats);
                wakeup = watch.next_deadline().map_or(wakeup, |d| d.min(wakeup));
            }
            *self.shared_stats.lock() = self.stats;
            let timeout = wakeup.saturating_duration_since(Instant::now());
            select! {
                recv(control) -> event => match event {
                    Ok(Control::Stop) | Err(_) => return,
                    Ok(event) => self.on_control(event),
                },
                recv(answers) -> msg => match msg {
                    Ok(msg) => self.on_answer(msg),
                    Err(_) => return, // the reader stopped: the socket is closed
                },
                // Without a watch URL these two are `never()`.
                recv(watch_requests) -> msg => match (msg, &mut self.watch) {
                    (Ok(msg), Some(watch)) => {
                        let now = Instant::now();
                        watch.on_request(msg, now);
                        for msg in watch_requests.try_iter().take(watch_server::REQUEST_BATCH) {
                            watch.on_request(msg, now);
                        }
                    }
                    _ => return, // the watch reader stopped: the socket is closed
                },
                recv(watch_pipes) -> change => match (change, &mut self.watch) {
                    (Ok(change), Some(watch)) => watch.on_pipe(change),
                    _ => return, // the watch socket is closed
                },
                default(timeout) => {}
            }
        }
    }

    fn act(&mut self, action: Action, now: Instant, answers: &Receiver<Message>) {
        match action {
            Action::StartRound => {
                self.membership.start_round();
                self.send_survey();
                self.round_seq = Some(self.seq);
                self.round_answers = 0;
                self.round_recent.reset();
            }
            Action::Survey => self.send_survey(),
            Action::EndRound => {
                // Answers already queued may be this round's: take them
                // all before judging it.
                for msg in answers.try_iter().take(ANSWER_QUEUE) {
                    self.on_answer(msg);
                }
                let unread = self.answers_unread(answers);
                let verdict = self
                    .schedule
                    .close_round(unread, self.round_recent.burst_since());
                self.end_round(verdict, now);
            }
            Action::Publish => self.publish(),
        }
    }

    /// Whether answers are still on their way to this thread: held by the
    /// reading thread, queued in NNG, or in the channel. The order matters:
    /// the reader marks itself busy before it takes a message from NNG and
    /// stays so until it finds NNG's queue empty, so a message is seen in
    /// one of the places checked, wherever it moves meanwhile.
    fn answers_unread(&self, answers: &Receiver<Message>) -> bool {
        let busy = || self.reader_busy.load(Ordering::SeqCst);
        busy()
            || receiver::readable(self.recv_fd)
            || !answers.is_empty()
            || busy()
            || !answers.is_empty()
    }

    /// Ends the heartbeat round under way: charges misses if `verdict`
    /// says the server kept up, and nobody anything otherwise.
    fn end_round(&mut self, verdict: Verdict, now: Instant) {
        self.round_seq = None;
        self.stats.rounds += 1;
        self.stats.answers_last_round = self.round_answers;
        match verdict {
            Verdict::Counted => {
                for name in self.membership.end_round() {
                    log::info!("left: {name} (stopped answering surveys)");
                }
            }
            Verdict::NotCounted(why) => self.round_not_counted(why, now),
        }
        self.after_change();
        if !self.event_driven && self.dirty {
            self.schedule.request_publish(now);
        }
    }

    /// Books a round not counted, and warns (at most every
    /// [`BEHIND_WARN_EVERY`]).
    fn round_not_counted(&mut self, why: Behind, now: Instant) {
        self.stats.rounds_not_counted += 1;
        self.behind_unwarned += 1;
        if self
            .behind_warned
            .is_some_and(|t| now.saturating_duration_since(t) < BEHIND_WARN_EVERY)
        {
            return;
        }
        let why = match why {
            Behind::Late(late) => format!("the server thread woke {late:?} late"),
            Behind::Unread => "answers were still queued unread".to_owned(),
            Behind::StillArriving => "its answers were still coming in at its end".to_owned(),
        };
        let since = match self.behind_unwarned {
            1 => String::new(),
            n => format!("; {n} rounds not counted since the last warning"),
        };
        log::warn!("server behind: round not counted ({why}): no miss charged{since}");
        self.behind_warned = Some(now);
        self.behind_unwarned = 0;
    }

    fn on_control(&mut self, event: Control) {
        let now = Instant::now();
        match event {
            Control::PipeAdded(pipe) => {
                self.membership.pipe_added(pipe);
                log::debug!(
                    "a client connected ({} connections)",
                    self.membership.pipe_count()
                );
                if self.event_driven {
                    let pipes = self.membership.pipe_count();
                    self.schedule.connection_added(now, pipe, pipes);
                }
                while let Some(msg) = self.early.take(now, &pipe) {
                    self.on_answer(msg);
                }
            }
            Control::PipeRemoved(pipe) => {
                for name in self.membership.pipe_removed(pipe) {
                    log::info!("left: {name} (connection closed)");
                }
                let pipes = self.membership.pipe_count();
                self.schedule.connection_removed(now, pipe, pipes);
            }
            Control::SubscriberRemoved(pipe) => {
                // NNG also reports the removal of a connection it never
                // added (refused by admission, or of the wrong protocol):
                // only those added count.
                self.subscriber_pipes.remove(&pipe);
                self.stats.subscribers = self.subscriber_pipes.len();
            }
            Control::SubscriberAdded(pipe) => {
                self.subscriber_pipes.insert(pipe);
                self.stats.subscribers = self.subscriber_pipes.len();
                log::debug!("a subscriber connected");
                if self.event_driven {
                    self.schedule.request_publish(now);
                }
            }
            Control::Stop => {}
        }
    }

    fn on_answer(&mut self, mut msg: Message) {
        let Some(pipe) = msg.pipe() else { return };
        let Some(id) = wire::answer_survey_id(msg.as_mut_header().as_slice()) else {
            log::warn!("ignoring an answer without a survey id");
            self.stats.refused_stale += 1;
            return;
        };
        if id == wire::ANNOUNCE_ID {
            // An announcement: "this connection's name is X", sent unasked.
            // Taken as an answer below; it spares the connection a survey.
            if !self.membership.has_pipe(pipe) {
                // Its connection's arrival is still on its way (see early).
                self.early.hold(Instant::now(), pipe, msg);
                return;
            }
            self.stats.announcements += 1;
            self.schedule.announced(Instant::now(), pipe);
        } else if self.seq.wrapping_sub(id) & SEQ_MASK >= SEQ_WINDOW {
            log::debug!("ignoring an answer to survey {id:#x}, not a recent one");
            self.stats.refused_stale += 1;
            return;
        }
        let name = match wire::parse_name(msg.as_slice()) {
            Ok(name) => name,
            Err(e) => {
                log::warn!(
                    "ignoring an invalid answer ({} bytes): {e}",
                    msg.as_slice().len()
                );
                self.stats.refused_invalid += 1;
                return;
            }
        };
        if let Some(gate) = &self.peer_host {
            // Over TCP only: ipc and inproc connections have no address.
            let origin = gate.lock().origin(pipe);
            if let Some(Origin::Ip(peer)) = origin {
                if let Err(e) = admission::check_peer_host(name, peer) {
                    log::warn!("refusing {name:?} from {peer}: {e}");
                    self.stats.refused_peer_host += 1;
                    return;
                }
            }
        }
        if self.round_seq == Some(id) {
            self.round_answers += 1;
            self.round_recent.record(Instant::now());
        }
        match self.membership.answer(pipe, name) {
            AnswerOutcome::Joined => {
                self.stats.answers += 1;
                log::info!("joined: {name}");
            }
            AnswerOutcome::Alive => self.stats.answers += 1,
            AnswerOutcome::Full => {
                self.stats.refused_full += 1;
                log::warn!(
                    "refusing {name:?}: the list already holds max_peers ({}) names",
                    self.membership.len()
                );
            }
            AnswerOutcome::UnknownPipe => {}
        }
    }

    /// Books a change of membership: the list is re-encoded at the next
    /// publish, which is asked for now when event-driven.
    fn after_change(&mut self) {
        if self.membership.take_changed() {
            self.dirty = true;
            if self.event_driven {
                self.schedule.request_publish(Instant::now());
            }
        }
    }

    fn send_survey(&mut self) {
        self.seq = wire::next_survey_id(self.seq);
        let mut msg = Message::new();
        msg.as_mut_header()
            .push_back(&wire::survey_header(self.seq));
        match self.surveyor.send(msg) {
            Ok(()) => self.stats.surveys_sent += 1,
            Err((_, e)) => log::warn!("sending a survey: {e}"),
        }
    }

    fn publish(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.encoded_stale = true;
            let list = self.membership.shared_names();
            if let Some(watch) = &mut self.watch {
                // The watchers' revision moves with each published change.
                watch.record(&list, Instant::now());
            }
            // The counters first: whoever sees the new list in `peers()`
            // or on a channel then finds `stats()` at least as new.
            self.stats.peers = self.membership.len();
            self.stats.connections = self.membership.pipe_count();
            *self.shared_stats.lock() = self.stats;
            // Shared, not copied: the old list is freed outside the lock.
            let old = std::mem::replace(&mut *self.peers.lock(), Arc::clone(&list));
            drop(old);
            self.mailbox.offer_as(list, owned_names);
        }
        if self.stats.subscribers == 0 && self.event_driven {
            // Nobody to send to. A subscriber that connects asks for a
            // publish (`SubscriberAdded`), which encodes and sends then.
            self.stats.publishes += 1;
            return;
        }
        if self.encoded_stale {
            self.encoded_stale = false;
            self.encoded.clear();
            wire::encode_list(self.membership.names(), &mut self.encoded);
        }
        // Sending to many subscribers is the costly part: space the next
        // publish by what this one costs, so bursts of changes coalesce.
        self.schedule
            .publish_cost(self.encoded.len(), self.stats.subscribers);
        if self.stats.publishes == 0 {
            log::info!(
                "first list published {:?} after start ({} names)",
                self.started.elapsed(),
                self.membership.len()
            );
        }
        match self.publisher.send(Message::from(&self.encoded[..])) {
            Ok(()) => {
                self.stats.publishes += 1;
                self.stats.bytes_published += self.encoded.len() as u64;
            }
            Err((_, e)) => log::warn!("publishing the list: {e}"),
        }
    }
}

// Compile-time checks of the promises in the docs.
#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Server>();
}

/// Admits `socket`'s connections through `gate` (see [`admission::watch`])
/// and hands each one NNG added or removed to the server thread as
/// `added(pipe)` or `removed(pipe)`. The callback runs on NNG's threads: it
/// only sends and returns.
fn forward_pipe_events(
    socket: &Socket,
    gate: &SharedGate,
    label: &'static str,
    control: &Sender<Control>,
    added: fn(Pipe) -> Control,
    removed: fn(Pipe) -> Control,
) -> Result<()> {
    let tx = control.clone();
    admission::watch(socket, Arc::clone(gate), label, move |pipe, event| {
        let _ = match event {
            PipeEvent::AddPost => tx.send(added(pipe)),
            PipeEvent::RemovePost => tx.send(removed(pipe)),
            _ => Ok(()),
        };
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_taken_back_is_reused_for_the_next() {
        let shared = |names: &[&str]| names.iter().map(|&n| Arc::from(n)).collect::<Names>();
        let strings = |names: &[&str]| names.iter().map(|&n| n.to_string()).collect::<Vec<_>>();
        let new = shared(&["b", "c", "e", "f"]);
        assert_eq!(owned_names(&new, None), strings(&["b", "c", "e", "f"]));
        let old = strings(&["a", "c", "d", "f", "g"]);
        let kept = old[1].as_ptr();
        let names = owned_names(&new, Some(old));
        assert_eq!(names, strings(&["b", "c", "e", "f"]));
        assert_eq!(names[1].as_ptr(), kept, "moved, not copied");
        assert_eq!(
            owned_names(&Names::default(), Some(strings(&["a"]))),
            Vec::<String>::new()
        );
        assert_eq!(
            owned_names(&new, Some(Vec::new())),
            strings(&["b", "c", "e", "f"])
        );
    }
}
