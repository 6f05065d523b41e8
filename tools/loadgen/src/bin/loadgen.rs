//! `loadgen`: plays thousands of discovery peers and subscribers from one
//! thread, speaking the Scalability Protocols wire format directly (no NNG).
//!
//! ```text
//! loadgen --survey tcp://127.0.0.1:PORT [--publish tcp://127.0.0.1:PORT]
//!         [--watch tcp://127.0.0.1:PORT] [--watchers 0]
//!         [--broadcast tcp://127.0.0.1:PORT]
//!         [--peers 1000] [--hung 0] [--subs 0]
//!         [--churn 0] [--churn-names new|same] [--churn-burst]
//!         [--churn-delay-ms 1000]
//!         [--inflight 64] [--connect-rate 0] [--report-ms 1000]
//!         [--duration-s 0] [--print-lists] [--track-joins] [--redial]
//!         [--announce] [--seed 1]
//! ```
//!
//! * `--peers N` respondents each answer every survey at once with their own
//!   name ([`peer_name`]`(slot, generation)`); `--hung H` more connect, read
//!   the surveys and never answer.
//! * `--announce`: each answering peer announces itself as soon as its SP
//!   handshake is done, before any survey: one answer it was not asked for,
//!   with request id `80 00 00 00` and its name as the body (see
//!   `docs/PROTOCOL.md`, "Join announcement"). Without it (the default) peers only answer
//!   surveys, as the Go original and nngcat do.
//! * `--subs M` raw SUB connections record each list's arrival and length.
//! * `--watchers W` REQ connections to the server's watch URL (`--watch`)
//!   play watchers of the watch protocol (README, "Watch protocol";
//!   [`nng_discovery_loadgen::watch`]): each keeps its own position (epoch,
//!   revision) and set of names, asks with `(0, 0)` first, sends its next
//!   request as soon as a reply arrives, applies snapshots (`S`), deltas
//!   (`D`) and keepalives (`K`); a delta or keepalive that does not apply
//!   is counted (`watch_refused`) and the next request asks for a snapshot
//!   with `(0, 0)`. A watcher keeps its position across a reconnection (a
//!   restarted server, whose epoch differs, answers it with a snapshot). It
//!   does not time out a silent server: only a closed connection redials.
//!   With `--broadcast URL` (the server's watch broadcast URL, as
//!   `nng-discovery server --watch-broadcast` prints it) each watcher is a
//!   broadcast **follower** instead (docs/PROTOCOL.md, "Watch broadcast"): it also
//!   opens a SUB (`0x21`) connection there, and once both connections are
//!   up asks for a snapshot with a plain `(0, 0)` request; then it applies
//!   each delta broadcast that starts at its revision, ignores those that
//!   end at or before it, and on anything else (a gap, a span across its
//!   revision, a keepalive ahead, another epoch, a delta that does not
//!   apply) sends a catch-up (a 17-byte follow request for its position,
//!   flags `0x01`, answered at once), buffering broadcasts (the last 64)
//!   until the reply. Nothing is held on the server between catch-ups. A
//!   lost SUB connection asks for a catch-up once it is back.
//!   Watchers count in the same outcome lines as subscribers (`full`,
//!   `all_full`, `change`, `change_lost`; see below), so one generator
//!   measures either kind, or both at once.
//! * `--churn K`: once every subscriber and watcher holds the full list, K answering
//!   peers per second close their connection and reconnect at once, under a
//!   new name (`--churn-names new`, the default) or the same one; spread
//!   evenly over each second, or all K at once with `--churn-burst`.
//! * `--track-joins`: for every peer, the time from its first connection
//!   (its TCP connect completing) until subscriber 0 first holds a list
//!   naming it; reported once every answering peer is listed (for a mass
//!   connect: all peers at once, then read the `joins` line).
//! * Connections are opened non-blocking, at most `--inflight` at a time
//!   between `connect` and the server's SP header (NNG listens with a
//!   backlog of 128), optionally also at most `--connect-rate` per second.
//!   Only loopback TCP addresses and `ipc://` paths are accepted.
//! * A connection that fails or that the server closes is dialed again
//!   after 100 ms. With `--redial`, after a wait like the library's clients
//!   (NNG's dialer with the default `reconnect_min` 100 ms and
//!   `reconnect_max` 1 s): drawn at random from `[0, bound)`, the bound
//!   doubling from 100 ms to 1 s with each failed dial and back to 100 ms
//!   once a connection completes its SP handshake ([`Backoff`]). Every
//!   peer and subscriber then redoes the handshake and answers (or
//!   receives) again, as a server restarted under real clients sees them.
//!
//! Lines on standard input: `hang K` (K answering peers stop answering but
//! keep their connection), `churn K` (K peers leave and rejoin now),
//! `rate R` (from now on R peers per second leave and rejoin, as `--churn`;
//! `rate 0` stops), `join K` (K new answering peers connect now, each a
//! `change kind=join`: a join with no leave before it), `tick` (a `tick`
//! line now), `mark` (a `marked` line at once, then a `delivered t=..
//! ms=.. subs=N` line once every ready subscriber received one more
//! message: the latency of the next message to all of them, from the
//! mark, and `first_ms` until the first subscriber received it; send it
//! only after `marked`), `quit`. End of input quits
//! too, unless `--duration-s` is set.
//!
//! Output, one line per event, `kind key=value ...`, `t` in seconds since
//! start:
//! * `start`, then `connected` once every peer, subscriber and watcher is
//!   connected;
//! * `full sub=I len=N` (`full watcher=I len=N`) the first time subscriber
//!   (watcher) I holds a list naming every answering peer, and `all_full
//!   subs=M watchers=W n=K` each time all of them hold such a list again
//!   (`n` counts these times; the first starts `--churn`). A connection
//!   that closes no longer counts as holding it until its next list;
//! * `churn_start`, then per change (a peer's leave or join) once every
//!   subscriber and watcher connected at the time holds a list reflecting
//!   it: `change kind=leave|join ms=LATENCY first_ms=FIRST subs=M watchers=W
//!   superseded=0|1` (`first_ms`: until the first of them held it); a change not delivered within 30 s is reported as
//!   `change_lost`;
//! * `joins n=N p50_ms=.. p99_ms=.. max_ms=.. hs_p50_ms=.. hs_p99_ms=..
//!   hs_max_ms=.. first_connect=T last_connect=T` with `--track-joins`, once
//!   subscriber 0 has listed every answering peer (times in seconds since
//!   start; the latencies are per peer, to the first list naming it: from
//!   its TCP connect completing, and `hs_` from the server's SP header
//!   arriving, i.e. from when NNG had accepted the connection);
//! * `hung names=A,B,...` after a `hang` command;
//! * `list sub=I len=N bytes=B` per list received, and `watch_reply
//!   watcher=I kind=S|D|K len=N` per watch reply, with `--print-lists`;
//! * `tick` every `--report-ms` with running totals, `end` at exit. Both
//!   carry `announcements` (sent, with `--announce`) and the watch
//!   counters: `watch_snapshots`, `watch_deltas`,
//!   `watch_keepalives` (replies applied by kind), `watch_refused` (deltas
//!   or keepalives that did not apply), `watch_smaller` (snapshots not
//!   asked for, sent because the delta would have been larger than the
//!   whole list, as the server's rule says), `watch_unasked` (snapshots
//!   neither asked for, with `(0, 0)`, another epoch or a future
//!   revision, nor smaller than the delta: only a watcher further behind
//!   than the server's history should get one), `watch_stale` (replies to a request no longer waited for),
//!   `follow_broadcasts` (broadcasts received by followers),
//!   `follow_catchups` (catch-up requests sent), `rx_follow_bytes`,
//!   and the bytes received per kind of connection (`rx_peer_bytes`,
//!   `rx_sub_bytes`, `rx_watch_bytes`: everything the server wrote to
//!   them, SP framing included), and `short_lists`: lists (or applied
//!   watch replies) that left a follower which had held a full list
//!   holding fewer names than peers answer (without churn or `hang`, a
//!   list lacking a live peer).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, BufWriter, Read, Stdout, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use nng_discovery_loadgen::watch::{self, Applied, Decoder, Kind, Watcher, Why};
use nng_discovery_loadgen::{peer_name, push_frame, Args, Backoff, ANNOUNCE_ID};

/// SP protocol numbers (RFC-style "SP over TCP" header, bytes 4-5).
const SURVEYOR: u16 = 0x0062;
const RESPONDENT: u16 = 0x0063;
const PUB: u16 = 0x0020;
const SUB: u16 = 0x0021;

const WAKER: Token = Token(usize::MAX);
/// Frames larger than this close the connection (a list of 10,000 names is
/// about 230 KB).
const MAX_FRAME: u64 = 64 << 20;
/// Wait before reconnecting a connection that failed or was closed.
const RETRY: Duration = Duration::from_millis(100);
/// A change not delivered to every subscriber by then is reported lost.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct list bodies remembered (to recognise a list already seen).
const BODY_CACHE: usize = 256;

fn main() {
    let args = Args::from_env();
    let survey = parse_url(args.required("survey"));
    let publish = args.str("publish").map(parse_url);
    let subs: u32 = args.get("subs", 0);
    if subs > 0 && publish.is_none() {
        eprintln!("--subs needs --publish");
        std::process::exit(2);
    }
    let watch = args.str("watch").map(parse_url);
    let watchers: u32 = args.get("watchers", 0);
    if watchers > 0 && watch.is_none() {
        eprintln!("--watchers needs --watch (the server's watch URL)");
        std::process::exit(2);
    }
    let broadcast = args.str("broadcast").map(parse_url);
    if broadcast.is_some() && watch.is_none() {
        eprintln!("--broadcast needs --watch (followers fetch snapshots there)");
        std::process::exit(2);
    }
    let config = Config {
        survey,
        publish,
        watch,
        broadcast,
        watchers,
        peers: args.get("peers", 1000),
        hung: args.get("hung", 0),
        subs,
        churn: args.get("churn", 0.0),
        churn_same_names: match args.str("churn-names").unwrap_or("new") {
            "new" => false,
            "same" => true,
            other => {
                eprintln!("--churn-names: new or same, not {other:?}");
                std::process::exit(2);
            }
        },
        churn_burst: args.str("churn-burst").is_some(),
        churn_delay: Duration::from_millis(args.get("churn-delay-ms", 1000)),
        inflight: args.get::<usize>("inflight", 64).max(1),
        connect_rate: args.get("connect-rate", 0.0),
        report: Duration::from_millis(args.get::<u64>("report-ms", 1000).max(10)),
        duration: match args.get("duration-s", 0.0) {
            d if d > 0.0 => Some(Duration::from_secs_f64(d)),
            _ => None,
        },
        print_lists: args.str("print-lists").is_some(),
        track_joins: args.str("track-joins").is_some(),
        redial: args.str("redial").is_some(),
        announce: args.str("announce").is_some(),
        seed: args.get("seed", 1u64),
    };
    if let Err(e) = Gen::new(config).and_then(Gen::run) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

/// Where to connect: a loopback TCP address or a Unix socket path.
#[derive(Debug, Clone)]
enum Endpoint {
    Tcp(SocketAddr),
    Ipc(PathBuf),
}

fn parse_url(url: &str) -> Endpoint {
    let fail = |why: &str| -> ! {
        eprintln!("{url}: {why}");
        std::process::exit(2);
    };
    if let Some(rest) = url.strip_prefix("tcp://") {
        let rest = rest.replace("localhost:", "127.0.0.1:");
        let addr: SocketAddr = rest
            .parse()
            .unwrap_or_else(|_| fail("expected tcp://IP:PORT"));
        if !addr.ip().is_loopback() {
            fail("only loopback addresses are allowed");
        }
        Endpoint::Tcp(addr)
    } else if let Some(path) = url.strip_prefix("ipc://") {
        Endpoint::Ipc(PathBuf::from(path))
    } else {
        fail("expected tcp:// or ipc://")
    }
}

impl Endpoint {
    /// Bytes before each message: TCP sends an 8-byte big-endian length,
    /// IPC a type byte (1) and then the length.
    fn frame_header(&self) -> usize {
        match self {
            Endpoint::Tcp(_) => 8,
            Endpoint::Ipc(_) => 9,
        }
    }

    fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect(*addr)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Endpoint::Ipc(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => registry.register(s, token, interest),
            Stream::Unix(s) => registry.register(s, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = match self {
            Stream::Tcp(s) => registry.deregister(s),
            Stream::Unix(s) => registry.deregister(s),
        };
    }

    /// Whether a non-blocking connect has completed (mio's recipe: after a
    /// writable event, `take_error`, then `peer_addr`).
    fn connected(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Stream::Tcp(s) => (s.take_error(), s.peer_addr().map(|_| ())),
            Stream::Unix(s) => (s.take_error(), s.peer_addr().map(|_| ())),
        };
        if let Some(e) = err? {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) if e.raw_os_error() == Some(115) => Ok(false), // EINPROGRESS
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Peer(u32),
    Sub(u32),
    Watch(u32),
    /// Watcher `w`'s SUB connection to the broadcast URL (`--broadcast`).
    Follow(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshake,
    Ready,
}

struct Conn {
    stream: Stream,
    role: Role,
    phase: Phase,
    /// Bytes received but not yet a whole frame.
    rbuf: Vec<u8>,
    /// Bytes to send once the socket is writable again.
    wbuf: Vec<u8>,
}

struct Slot {
    gen: u32,
    name: Vec<u8>,
    /// Reads surveys but never answers.
    hung: bool,
    conn: Option<usize>,
    ready: bool,
    /// When its first connection's TCP connect completed (`--track-joins`).
    connected_at: Option<Instant>,
    /// When the server's SP header arrived on its first connection: NNG
    /// had accepted it and the server learns of it about then.
    ready_at: Option<Instant>,
    /// Whether subscriber 0 has held a list naming it (`--track-joins`).
    listed: bool,
    /// Its redial waits (`--redial`).
    backoff: Backoff,
}

struct SubState {
    conn: Option<usize>,
    ready: bool,
    /// Holds a list naming every answering peer now.
    full: bool,
    /// Whether its `full` line was printed.
    announced: bool,
    /// Its redial waits (`--redial`).
    backoff: Backoff,
}

impl Default for SubState {
    fn default() -> SubState {
        SubState {
            conn: None,
            ready: false,
            full: false,
            announced: false,
            backoff: Backoff::LIBRARY,
        }
    }
}

/// One watcher of the watch protocol.
struct WatchSub {
    conn: Option<usize>,
    ready: bool,
    full: bool,
    /// Whether its `full` line was printed.
    announced: bool,
    /// Its redial waits (`--redial`).
    backoff: Backoff,
    /// Position and names held (kept across reconnections).
    state: Watcher,
    /// The id of the request it waits for a reply to, if any.
    waiting: Option<u32>,
    last_id: u32,
    /// `--broadcast`: its SUB connection, whether it is up, whether it
    /// waits for a snapshot or catch-up (broadcasts are then buffered),
    /// and the buffer.
    sub_conn: Option<usize>,
    sub_ready: bool,
    asking: bool,
    buffer: VecDeque<Vec<u8>>,
}

impl Default for WatchSub {
    fn default() -> WatchSub {
        WatchSub {
            conn: None,
            ready: false,
            full: false,
            announced: false,
            backoff: Backoff::LIBRARY,
            state: Watcher::default(),
            waiting: None,
            last_id: 0,
            sub_conn: None,
            sub_ready: false,
            asking: true,
            buffer: VecDeque::new(),
        }
    }
}

/// Broadcasts a follower keeps while it waits for a reply.
const FOLLOW_BUFFER: usize = 64;

/// A membership change waiting to reach every subscriber and watcher.
struct Change {
    at: Instant,
    name: Vec<u8>,
    /// `name` interned in the watchers' decoder: a watcher holds it if its
    /// bit is set.
    id: u32,
    join: bool,
    /// Per follower (subscribers, then watchers): holds a list reflecting
    /// the change (or was not connected when it happened).
    have: Vec<bool>,
    remaining: usize,
    subs: usize,
    watchers: usize,
    superseded: bool,
    /// When the first follower held it.
    first: Option<Instant>,
}

/// A distinct list body, recognised by hash and compared byte for byte.
struct Body {
    bytes: Vec<u8>,
    first_seen: Instant,
    last_seen: Instant,
    count: usize,
    names: Option<HashSet<Vec<u8>>>,
}

struct Config {
    survey: Endpoint,
    publish: Option<Endpoint>,
    watch: Option<Endpoint>,
    /// `--broadcast`: watchers follow the broadcast there.
    broadcast: Option<Endpoint>,
    watchers: u32,
    peers: u32,
    hung: u32,
    subs: u32,
    churn: f64,
    churn_same_names: bool,
    churn_burst: bool,
    churn_delay: Duration,
    inflight: usize,
    connect_rate: f64,
    report: Duration,
    duration: Option<Duration>,
    print_lists: bool,
    track_joins: bool,
    /// Redial like the library's clients instead of after a fixed 100 ms.
    redial: bool,
    /// Peers announce themselves on connecting (`--announce`).
    announce: bool,
    seed: u64,
}

#[derive(Default)]
struct Totals {
    surveys: u64,
    answers: u64,
    /// Announcements sent (`--announce`).
    announcements: u64,
    lists: u64,
    list_bytes: u64,
    reconnects: u64,
    connect_failures: u64,
    changes_done: u64,
    changes_lost: u64,
    watch_snapshots: u64,
    watch_deltas: u64,
    watch_keepalives: u64,
    watch_refused: u64,
    watch_smaller: u64,
    watch_unasked: u64,
    watch_stale: u64,
    rx_peer_bytes: u64,
    rx_sub_bytes: u64,
    rx_watch_bytes: u64,
    /// Lists (or applied watch replies) that left a follower, which had
    /// held a list naming every answering peer before, holding fewer names
    /// than peers answer: a live peer missing (without churn or hangs).
    short_lists: u64,
    follow_broadcasts: u64,
    follow_catchups: u64,
    rx_follow_bytes: u64,
}

struct Gen {
    cfg: Config,
    poll: Poll,
    start: Instant,
    out: BufWriter<Stdout>,
    commands: mpsc::Receiver<String>,
    _waker: std::sync::Arc<Waker>,

    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    slots: Vec<Slot>,
    subs: Vec<SubState>,
    watchers: Vec<WatchSub>,
    /// Interned names and the last snapshot decoded, for every watcher.
    dec: Decoder,
    queue: VecDeque<Role>,
    retry: Vec<(Instant, Role)>,
    inflight: usize,
    next_connect: Instant,

    ready_peers: usize,
    ready_subs: usize,
    ready_watchers: usize,
    /// Subscribers and watchers that hold a full list now.
    full_now: usize,
    announced_connected: bool,
    /// Whether every follower held a full list at the last count.
    all_full: bool,
    /// How many times every follower came to hold a full list.
    all_full_times: u64,
    /// Peers that answer (not hung).
    answering: usize,

    churn_next: Option<Instant>,
    churn_started: bool,
    /// Command `mark`: when the first list after it came.
    mark_first: Option<Instant>,
    /// Command `mark`: when it came, and the lists received by then; the
    /// `delivered` line comes once every ready subscriber got one more.
    mark: Option<(Instant, u64)>,
    pending: Vec<Change>,
    bodies: HashMap<u64, Body>,

    totals: Totals,
    next_tick: Instant,
    rng: u64,
    scratch: Vec<u8>,
    answer: Vec<u8>,

    /// `--track-joins`: each peer's first name, to find its slot in a list.
    name_slot: HashMap<Vec<u8>, u32>,
    /// `--track-joins`: per peer listed so far, connection to listing.
    join_ms: Vec<f64>,
    /// `--track-joins`: the same from the SP handshake to listing.
    ready_ms: Vec<f64>,
    joins_reported: bool,
}

impl Gen {
    fn new(cfg: Config) -> io::Result<Gen> {
        let poll = Poll::new()?;
        let waker = std::sync::Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, commands) = mpsc::channel();
        let stdin_waker = waker.clone();
        let quit_on_eof = cfg.duration.is_none();
        std::thread::Builder::new()
            .name("loadgen-stdin".into())
            .spawn(move || {
                for line in io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        return;
                    }
                    let _ = stdin_waker.wake();
                }
                if quit_on_eof {
                    let _ = tx.send("quit".into());
                    let _ = stdin_waker.wake();
                }
            })?;

        let start = Instant::now();
        let total_peers = cfg.peers + cfg.hung;
        let slots = (0..total_peers)
            .map(|slot| Slot {
                gen: 0,
                name: peer_name(slot, 0).into_bytes(),
                hung: slot >= cfg.peers,
                conn: None,
                ready: false,
                connected_at: None,
                ready_at: None,
                listed: false,
                backoff: Backoff::LIBRARY,
            })
            .collect();
        let subs = (0..cfg.subs).map(|_| SubState::default()).collect();
        let watchers = (0..cfg.watchers).map(|_| WatchSub::default()).collect();
        let name_slot = if cfg.track_joins {
            (0..cfg.peers)
                .map(|slot| (peer_name(slot, 0).into_bytes(), slot))
                .collect()
        } else {
            HashMap::new()
        };
        // Subscribers and watchers first, so they see the list grow; then
        // the peers.
        let queue = (0..cfg.subs)
            .map(Role::Sub)
            .chain(
                (0..cfg.watchers)
                    .filter(|_| cfg.broadcast.is_some())
                    .map(Role::Follow),
            )
            .chain((0..cfg.watchers).map(Role::Watch))
            .chain((0..total_peers).map(Role::Peer))
            .collect();
        Ok(Gen {
            answering: cfg.peers as usize,
            rng: cfg.seed.max(1),
            cfg,
            poll,
            start,
            out: BufWriter::with_capacity(1 << 16, io::stdout()),
            commands,
            _waker: waker,
            conns: Vec::new(),
            free: Vec::new(),
            slots,
            subs,
            watchers,
            dec: Decoder::default(),
            queue,
            retry: Vec::new(),
            inflight: 0,
            next_connect: start,
            ready_peers: 0,
            ready_subs: 0,
            ready_watchers: 0,
            full_now: 0,
            announced_connected: false,
            all_full: false,
            all_full_times: 0,
            churn_next: None,
            churn_started: false,
            mark: None,
            mark_first: None,
            pending: Vec::new(),
            bodies: HashMap::new(),
            totals: Totals::default(),
            next_tick: start,
            scratch: vec![0; 1 << 16],
            answer: Vec::with_capacity(2048),
            name_slot,
            join_ms: Vec::new(),
            ready_ms: Vec::new(),
            joins_reported: false,
        })
    }

    fn t(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    fn run(mut self) -> io::Result<()> {
        let c = &self.cfg;
        let line = format!(
            "start t=0 peers={} hung={} subs={} watchers={} churn={} churn_burst={} churn_names={} redial={} transport={}",
            c.peers,
            c.hung,
            c.subs,
            c.watchers,
            c.churn,
            c.churn_burst,
            if c.churn_same_names { "same" } else { "new" },
            c.redial,
            match c.survey {
                Endpoint::Tcp(_) => "tcp",
                Endpoint::Ipc(_) => "ipc",
            }
        );
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        let mut events = Events::with_capacity(4096);
        loop {
            let now = Instant::now();
            if self.timers(now)? {
                break;
            }
            self.start_connects(now);
            let timeout = self.next_wakeup(now).saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let mut quit = false;
            for event in events.iter() {
                if event.token() == WAKER {
                    quit |= self.commands()?;
                } else {
                    self.on_event(event.token().0, event);
                }
            }
            self.out.flush()?;
            if quit {
                break;
            }
        }
        self.end()
    }

    fn end(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let line = format!(
            "end t={:.6} surveys={} answers={} announcements={} lists={} list_bytes={} changes_done={} changes_lost={} reconnects={} {}",
            self.t(now),
            self.totals.surveys,
            self.totals.answers,
            self.totals.announcements,
            self.totals.lists,
            self.totals.list_bytes,
            self.totals.changes_done,
            self.totals.changes_lost,
            self.totals.reconnects,
            self.watch_fields(),
        );
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    /// Runs what is due; returns true when it is time to stop.
    fn timers(&mut self, now: Instant) -> io::Result<bool> {
        if self.cfg.duration.is_some_and(|d| now >= self.start + d) {
            return Ok(true);
        }
        if now >= self.next_tick {
            self.tick(now)?;
            self.next_tick = now + self.cfg.report;
        }
        // Reconnects whose wait is over go back in the connect queue.
        let mut i = 0;
        while i < self.retry.len() {
            if self.retry[i].0 <= now {
                let (_, role) = self.retry.swap_remove(i);
                self.queue.push_back(role);
            } else {
                i += 1;
            }
        }
        if let Some(mut next) = self.churn_next {
            let (step, per_step) = if self.cfg.churn_burst {
                (Duration::from_secs(1), self.cfg.churn.round() as usize)
            } else {
                (Duration::from_secs_f64(1.0 / self.cfg.churn), 1)
            };
            let mut steps = 0;
            while next <= now && steps < 100 {
                for _ in 0..per_step {
                    self.churn_step(now);
                }
                next += step;
                steps += 1;
            }
            if next <= now {
                next = now + step; // fell far behind: keep the rate, skip the backlog
            }
            self.churn_next = Some(next);
        }
        if self
            .pending
            .first()
            .is_some_and(|c| now - c.at > CHANGE_TIMEOUT)
        {
            let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|c| now - c.at > CHANGE_TIMEOUT);
            self.pending = kept;
            for c in lost {
                self.totals.changes_lost += 1;
                let line = format!(
                    "change_lost t={:.6} kind={} missing={} name={}",
                    self.t(now),
                    if c.join { "join" } else { "leave" },
                    c.remaining,
                    String::from_utf8_lossy(&c.name)
                );
                writeln!(self.out, "{line}")?;
            }
        }
        Ok(false)
    }

    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut next = self.next_tick;
        if let Some(d) = self.cfg.duration {
            next = next.min(self.start + d);
        }
        if let Some(c) = self.churn_next {
            next = next.min(c);
        }
        for (at, _) in &self.retry {
            next = next.min(*at);
        }
        if !self.queue.is_empty() && self.inflight < self.cfg.inflight {
            next = next.min(self.next_connect);
        }
        if let Some(c) = self.pending.first() {
            next = next.min(c.at + CHANGE_TIMEOUT);
        }
        next.max(now)
    }

    fn tick(&mut self, now: Instant) -> io::Result<()> {
        let hung = self.slots.len() - self.answering;
        let line = format!(
            "tick t={:.6} peers_ready={} answering={} hung={} subs_ready={} watchers_ready={} full={} surveys={} answers={} announcements={} lists={} list_bytes={} pending_changes={} reconnects={} connect_failures={} {}",
            self.t(now),
            self.ready_peers,
            self.answering,
            hung,
            self.ready_subs,
            self.ready_watchers,
            self.full_now,
            self.totals.surveys,
            self.totals.answers,
            self.totals.announcements,
            self.totals.lists,
            self.totals.list_bytes,
            self.pending.len(),
            self.totals.reconnects,
            self.totals.connect_failures,
            self.watch_fields(),
        );
        writeln!(self.out, "{line}")
    }

    /// The watch counters and received bytes, for `tick` and `end`.
    fn watch_fields(&self) -> String {
        let t = &self.totals;
        format!(
            "watch_snapshots={} watch_deltas={} watch_keepalives={} watch_refused={} watch_smaller={} watch_unasked={} watch_stale={} follow_broadcasts={} follow_catchups={} rx_peer_bytes={} rx_sub_bytes={} rx_watch_bytes={} rx_follow_bytes={} short_lists={}",
            t.watch_snapshots,
            t.watch_deltas,
            t.watch_keepalives,
            t.watch_refused,
            t.watch_smaller,
            t.watch_unasked,
            t.watch_stale,
            t.follow_broadcasts,
            t.follow_catchups,
            t.rx_peer_bytes,
            t.rx_sub_bytes,
            t.rx_watch_bytes,
            t.rx_follow_bytes,
            t.short_lists,
        )
    }

    /// Handles lines from standard input; returns true on `quit`.
    fn commands(&mut self) -> io::Result<bool> {
        while let Ok(line) = self.commands.try_recv() {
            let mut words = line.split_ascii_whitespace();
            let cmd = words.next().unwrap_or("");
            let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
            match cmd {
                "quit" => return Ok(true),
                "hang" => self.hang(n)?,
                "churn" => {
                    let now = Instant::now();
                    for _ in 0..n {
                        self.churn_step(now);
                    }
                }
                "join" => {
                    let now = Instant::now();
                    for _ in 0..n {
                        self.join_step(now);
                    }
                }
                "tick" => self.tick(Instant::now())?,
                // Times the next message to every subscriber: `delivered`.
                "mark" => {
                    let now = Instant::now();
                    self.mark = Some((now, self.totals.lists));
                    self.mark_first = None;
                    writeln!(self.out, "marked t={:.6}", self.t(now))?;
                }
                "rate" => {
                    let rate: f64 = line
                        .split_ascii_whitespace()
                        .nth(1)
                        .and_then(|w| w.parse().ok())
                        .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                        .unwrap_or(0.0);
                    let now = Instant::now();
                    self.cfg.churn = rate;
                    self.churn_started = true;
                    self.churn_next = (rate > 0.0).then_some(now);
                    let line = format!("churn_rate t={:.6} rate={rate}", self.t(now));
                    writeln!(self.out, "{line}")?;
                }
                "" => {}
                other => eprintln!("loadgen: unknown command {other:?}"),
            }
        }
        Ok(false)
    }

    /// Makes the `n` answering peers with the highest slots stop answering.
    fn hang(&mut self, n: usize) -> io::Result<()> {
        let mut names = Vec::new();
        for slot in self.slots.iter_mut().rev() {
            if names.len() == n {
                break;
            }
            if !slot.hung {
                slot.hung = true;
                names.push(String::from_utf8_lossy(&slot.name).into_owned());
            }
        }
        self.answering -= names.len();
        let line = format!(
            "hung t={:.6} count={} names={}",
            self.t(Instant::now()),
            names.len(),
            names.join(",")
        );
        writeln!(self.out, "{line}")
    }

    fn random(&mut self) -> u64 {
        // xorshift64: cheap and repeatable from --seed.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// One peer leaves (closes its connection) and rejoins (reconnects at
    /// once), under a new name or the same one.
    fn churn_step(&mut self, now: Instant) {
        let n = self.slots.len() as u64;
        if n == 0 {
            return;
        }
        let mut pick = None;
        for _ in 0..64 {
            let s = (self.random() % n) as usize;
            let slot = &self.slots[s];
            if !slot.hung && slot.ready {
                pick = Some(s);
                break;
            }
        }
        let Some(s) = pick else { return };
        let Some(idx) = self.slots[s].conn else {
            return;
        };
        let old = self.slots[s].name.clone();
        self.close(idx, false);
        self.record_change(old, false, now);
        let slot = &mut self.slots[s];
        if !self.cfg.churn_same_names {
            slot.gen += 1;
            slot.name = peer_name(s as u32, slot.gen).into_bytes();
        }
        let name = slot.name.clone();
        self.record_change(name, true, now);
        self.queue.push_front(Role::Peer(s as u32));
    }

    /// A new answering peer (the next slot, named as the `--peers` ones
    /// are) connects now: a change like a churned peer's rejoin, with no
    /// leave before it.
    fn join_step(&mut self, now: Instant) {
        let s = self.slots.len() as u32;
        let name = peer_name(s, 0).into_bytes();
        self.slots.push(Slot {
            gen: 0,
            name: name.clone(),
            hung: false,
            conn: None,
            ready: false,
            connected_at: None,
            ready_at: None,
            listed: false,
            backoff: Backoff::LIBRARY,
        });
        self.answering += 1;
        self.record_change(name, true, now);
        self.queue.push_front(Role::Peer(s));
    }

    fn record_change(&mut self, name: Vec<u8>, join: bool, at: Instant) {
        let ready = self.ready_subs + self.ready_watchers;
        if ready == 0 {
            return;
        }
        let have: Vec<bool> = self
            .subs
            .iter()
            .map(|s| !s.ready)
            .chain(self.watchers.iter().map(|w| !w.ready))
            .collect();
        let id = self.dec.names.intern(&name);
        self.pending.push(Change {
            at,
            id,
            name,
            join,
            remaining: ready,
            subs: self.ready_subs,
            watchers: self.ready_watchers,
            have,
            superseded: false,
            first: None,
        });
    }

    fn start_connects(&mut self, now: Instant) {
        while self.inflight < self.cfg.inflight && now >= self.next_connect {
            let Some(role) = self.queue.pop_front() else {
                return;
            };
            if self.cfg.connect_rate > 0.0 {
                self.next_connect = self.next_connect.max(now - Duration::from_millis(10))
                    + Duration::from_secs_f64(1.0 / self.cfg.connect_rate);
            }
            let endpoint = match role {
                Role::Peer(_) => &self.cfg.survey,
                Role::Sub(_) => self.cfg.publish.as_ref().expect("subs need --publish"),
                Role::Watch(_) => self.cfg.watch.as_ref().expect("watchers need --watch"),
                Role::Follow(_) => self
                    .cfg
                    .broadcast
                    .as_ref()
                    .expect("followers need --broadcast"),
            };
            let mut stream = match endpoint.connect() {
                Ok(s) => s,
                Err(_) => {
                    // Refused, or a Unix socket's backlog is full: later.
                    self.totals.connect_failures += 1;
                    let wait = self.retry_wait(role);
                    self.retry.push((now + wait, role));
                    continue;
                }
            };
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if stream.register(self.poll.registry(), Token(idx)).is_err() {
                self.free.push(idx);
                self.totals.connect_failures += 1;
                let wait = self.retry_wait(role);
                self.retry.push((now + wait, role));
                continue;
            }
            self.conns[idx] = Some(Conn {
                stream,
                role,
                phase: Phase::Connecting,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
            });
            match role {
                Role::Peer(s) => self.slots[s as usize].conn = Some(idx),
                Role::Sub(s) => self.subs[s as usize].conn = Some(idx),
                Role::Watch(w) => self.watchers[w as usize].conn = Some(idx),
                Role::Follow(w) => self.watchers[w as usize].sub_conn = Some(idx),
            }
            self.inflight += 1;
        }
    }

    fn on_event(&mut self, idx: usize, event: &mio::event::Event) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.phase == Phase::Connecting {
            match conn.stream.connected() {
                Ok(false) => return,
                Ok(true) => {
                    conn.phase = Phase::Handshake;
                    if let Role::Peer(s) = conn.role {
                        let slot = &mut self.slots[s as usize];
                        slot.connected_at.get_or_insert_with(Instant::now);
                    }
                    let proto = match conn.role {
                        Role::Peer(_) => RESPONDENT,
                        Role::Sub(_) => SUB,
                        Role::Watch(_) => watch::REQ,
                        Role::Follow(_) => SUB,
                    };
                    let [hi, lo] = proto.to_be_bytes();
                    if self.send(idx, &[0, b'S', b'P', 0, hi, lo, 0, 0]).is_err() {
                        self.close(idx, true);
                        return;
                    }
                }
                Err(_) => {
                    self.totals.connect_failures += 1;
                    self.close(idx, true);
                    return;
                }
            }
        }
        if event.is_writable() && self.flush(idx).is_err() {
            self.close(idx, true);
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(idx);
        }
    }

    /// Sends `bytes` now, or queues what the socket will not take yet.
    fn send(&mut self, idx: usize, bytes: &[u8]) -> io::Result<()> {
        let conn = self.conns[idx].as_mut().expect("live connection");
        if !conn.wbuf.is_empty() {
            conn.wbuf.extend_from_slice(bytes);
            return Ok(());
        }
        let mut done = 0;
        while done < bytes.len() {
            match conn.stream.write(&bytes[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        conn.wbuf.extend_from_slice(&bytes[done..]);
        Ok(())
    }

    fn flush(&mut self, idx: usize) -> io::Result<()> {
        let conn = self.conns[idx].as_mut().expect("live connection");
        let mut done = 0;
        while done < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        conn.wbuf.drain(..done);
        Ok(())
    }

    fn read(&mut self, idx: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(conn) = self.conns[idx].as_mut() {
            match conn.stream.read(&mut scratch) {
                Ok(0) => {
                    self.close(idx, true);
                    break;
                }
                Ok(n) => {
                    let counter = match conn.role {
                        Role::Peer(_) => &mut self.totals.rx_peer_bytes,
                        Role::Sub(_) => &mut self.totals.rx_sub_bytes,
                        Role::Watch(_) => &mut self.totals.rx_watch_bytes,
                        Role::Follow(_) => &mut self.totals.rx_follow_bytes,
                    };
                    *counter += n as u64;
                    if !self.ingest(idx, &scratch[..n]) {
                        self.close(idx, true);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(idx, true);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Takes received bytes: completes the handshake and handles every
    /// whole frame. Returns false when the connection must close.
    fn ingest(&mut self, idx: usize, data: &[u8]) -> bool {
        let conn = self.conns[idx].as_mut().expect("live connection");
        let mut buf = std::mem::take(&mut conn.rbuf);
        let ok;
        if buf.is_empty() {
            // Fast path: frames straight from the read buffer.
            let (used, good) = self.frames(idx, data);
            ok = good;
            buf.extend_from_slice(&data[used..]);
        } else {
            buf.extend_from_slice(data);
            let (used, good) = self.frames(idx, &buf);
            ok = good;
            buf.drain(..used);
        }
        // A buffer that held a big frame (a list, a snapshot) gives its
        // memory back once empty: thousands of connections each keeping
        // 100 KB add up.
        if buf.is_empty() && buf.capacity() > 1 << 16 {
            buf = Vec::new();
        }
        if let Some(conn) = self.conns[idx].as_mut() {
            conn.rbuf = buf;
        }
        ok
    }

    /// Handles the handshake and whole frames at the start of `src`;
    /// returns how many bytes it used and whether all was well.
    fn frames(&mut self, idx: usize, src: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        let Some(conn) = self.conns[idx].as_mut() else {
            return (0, false);
        };
        let role = conn.role;
        if conn.phase == Phase::Handshake {
            if src.len() < 8 {
                return (0, true);
            }
            let want = match role {
                Role::Peer(_) => SURVEYOR,
                Role::Sub(_) => PUB,
                Role::Watch(_) => watch::REP,
                Role::Follow(_) => PUB,
            };
            let [hi, lo] = want.to_be_bytes();
            if src[..8] != [0, b'S', b'P', 0, hi, lo, 0, 0] {
                eprintln!(
                    "loadgen: unexpected SP header {:02x?} (want protocol {want:#x})",
                    &src[..8]
                );
                return (0, false);
            }
            conn.phase = Phase::Ready;
            pos = 8;
            self.on_ready(role);
            if let Role::Peer(slot) = role {
                if self.cfg.announce && !self.announce(idx, slot) {
                    return (pos, false);
                }
            }
            // A follower asks once its SUB connection is up too.
            if let Role::Watch(w) = role {
                let ask = self.cfg.broadcast.is_none() || self.watchers[w as usize].sub_ready;
                if ask && self.send_watch_request(idx, w).is_err() {
                    return (pos, false);
                }
            }
            if let Role::Follow(w) = role {
                self.follow_sub_up(w);
            }
        }
        let hl = match role {
            Role::Peer(_) => self.cfg.survey.frame_header(),
            Role::Sub(_) => self.cfg.publish.as_ref().map_or(8, Endpoint::frame_header),
            Role::Watch(_) => self.cfg.watch.as_ref().map_or(8, Endpoint::frame_header),
            Role::Follow(_) => self
                .cfg
                .broadcast
                .as_ref()
                .map_or(8, Endpoint::frame_header),
        };
        loop {
            let avail = src.len() - pos;
            if avail < hl {
                break;
            }
            if hl == 9 && src[pos] != 1 {
                return (pos, false);
            }
            let mut len_bytes = [0u8; 8];
            len_bytes.copy_from_slice(&src[pos + hl - 8..pos + hl]);
            let len = u64::from_be_bytes(len_bytes);
            if len > MAX_FRAME {
                return (pos, false);
            }
            let len = len as usize;
            if avail < hl + len {
                break;
            }
            let payload = &src[pos + hl..pos + hl + len];
            let ok = match role {
                Role::Peer(slot) => self.on_survey(idx, slot, payload),
                Role::Sub(sub) => {
                    self.on_list(sub, payload);
                    true
                }
                Role::Watch(w) => self.on_watch_reply(idx, w, payload),
                Role::Follow(w) => self.on_broadcast(w, payload),
            };
            if !ok {
                return (pos, false);
            }
            pos += hl + len;
        }
        (pos, true)
    }

    fn on_ready(&mut self, role: Role) {
        self.inflight -= 1;
        match role {
            Role::Peer(s) => {
                let slot = &mut self.slots[s as usize];
                slot.ready = true;
                slot.ready_at.get_or_insert_with(Instant::now);
                slot.backoff.reset();
                self.ready_peers += 1;
            }
            Role::Sub(s) => {
                self.subs[s as usize].ready = true;
                self.subs[s as usize].backoff.reset();
                self.ready_subs += 1;
            }
            Role::Watch(w) => {
                let state = &mut self.watchers[w as usize];
                state.ready = true;
                state.backoff.reset();
                self.ready_watchers += 1;
            }
            Role::Follow(w) => {
                let state = &mut self.watchers[w as usize];
                state.sub_ready = true;
                state.backoff.reset();
            }
        }
        if !self.announced_connected
            && self.ready_peers == self.slots.len()
            && self.ready_subs == self.subs.len()
            && self.ready_watchers == self.watchers.len()
        {
            self.announced_connected = true;
            let now = Instant::now();
            let line = format!(
                "connected t={:.6} peers={} subs={} watchers={}",
                self.t(now),
                self.ready_peers,
                self.ready_subs,
                self.ready_watchers
            );
            let _ = writeln!(self.out, "{line}");
            if self.subs.is_empty() && self.watchers.is_empty() {
                self.start_churn(now);
            }
        }
    }

    fn start_churn(&mut self, now: Instant) {
        if self.cfg.churn > 0.0 && !self.churn_started {
            self.churn_started = true;
            let at = now + self.cfg.churn_delay;
            self.churn_next = Some(at);
            let line = format!("churn_start t={:.6} rate={}", self.t(at), self.cfg.churn);
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// `--announce`: peer `slot` tells the server its name on connection
    /// `idx` before any survey (a hung peer says nothing).
    fn announce(&mut self, idx: usize, slot: u32) -> bool {
        let slot = &self.slots[slot as usize];
        if slot.hung {
            return true;
        }
        self.answer.clear();
        let ipc = self.cfg.survey.frame_header() == 9;
        push_frame(&mut self.answer, ipc, &ANNOUNCE_ID, &slot.name);
        let announcement = std::mem::take(&mut self.answer);
        let ok = self.send(idx, &announcement).is_ok();
        self.answer = announcement;
        if ok {
            self.totals.announcements += 1;
        }
        ok
    }

    /// A survey: the payload is the backtrace (4-byte words, the last with
    /// its top bit set) and then the body. The answer repeats the backtrace
    /// and carries the name.
    fn on_survey(&mut self, idx: usize, slot: u32, payload: &[u8]) -> bool {
        self.totals.surveys += 1;
        let Some(end) = backtrace_len(payload) else {
            return true; // no request id: not a survey anyone can answer
        };
        let slot = &self.slots[slot as usize];
        if slot.hung {
            return true;
        }
        let header = &payload[..end];
        let len = (header.len() + slot.name.len()) as u64;
        self.answer.clear();
        if self.cfg.survey.frame_header() == 9 {
            self.answer.push(1);
        }
        self.answer.extend_from_slice(&len.to_be_bytes());
        self.answer.extend_from_slice(header);
        self.answer.extend_from_slice(&slot.name);
        let answer = std::mem::take(&mut self.answer);
        let ok = self.send(idx, &answer).is_ok();
        self.answer = answer;
        if ok {
            self.totals.answers += 1;
        }
        ok
    }

    fn on_list(&mut self, sub: u32, payload: &[u8]) {
        let now = Instant::now();
        self.totals.lists += 1;
        if let Some((at, lists)) = self.mark {
            let first = *self.mark_first.get_or_insert(now);
            if self.totals.lists - lists >= self.ready_subs as u64 {
                self.mark = None;
                let line = format!(
                    "delivered t={:.6} ms={:.3} first_ms={:.3} subs={}",
                    self.t(now),
                    (now - at).as_secs_f64() * 1e3,
                    (first - at).as_secs_f64() * 1e3,
                    self.ready_subs
                );
                let _ = writeln!(self.out, "{line}");
            }
        }
        self.totals.list_bytes += payload.len() as u64;
        let key = hash(payload);
        let known = self
            .bodies
            .get(&key)
            .is_some_and(|b| b.bytes.as_slice() == payload);
        if !known {
            if self.bodies.len() >= BODY_CACHE {
                let oldest = self
                    .bodies
                    .iter()
                    .min_by_key(|(_, b)| b.last_seen)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.bodies.remove(&k);
                }
            }
            let count = if payload.is_empty() {
                0
            } else {
                payload.iter().filter(|&&b| b == b'|').count() + 1
            };
            self.bodies.insert(
                key,
                Body {
                    bytes: payload.to_vec(),
                    first_seen: now,
                    last_seen: now,
                    count,
                    names: None,
                },
            );
        }
        let (count, first_seen) = {
            let body = self.bodies.get_mut(&key).expect("just inserted");
            body.last_seen = now;
            (body.count, body.first_seen)
        };
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        if self.cfg.print_lists {
            let _ = writeln!(
                self.out,
                "list t={t:.6} sub={sub} len={count} bytes={}",
                payload.len()
            );
        }
        let full = count == self.answering;
        let state = &mut self.subs[sub as usize];
        if state.announced && count < self.answering {
            self.totals.short_lists += 1;
        }
        let was_full = std::mem::replace(&mut state.full, full);
        let announce = full && !std::mem::replace(&mut state.announced, true);
        if announce {
            let _ = writeln!(self.out, "full t={t:.6} sub={sub} len={count}");
        }
        self.count_full(was_full, full, now);
        if sub == 0 && !known && self.cfg.track_joins && !self.joins_reported {
            self.track_joins(payload, now);
        }
        if self.pending.is_empty() {
            return;
        }
        let body = self.bodies.get_mut(&key).expect("just inserted");
        let names = body.names.get_or_insert_with(|| {
            if payload.is_empty() {
                HashSet::new()
            } else {
                payload.split(|&b| b == b'|').map(<[u8]>::to_vec).collect()
            }
        });
        mark_changes(&mut self.pending, sub as usize, first_seen, |c| {
            names.contains(&c.name)
        });
        self.finish_changes(now);
    }

    /// One follower's fullness moved from `was` to `now_full`: keeps the
    /// count and prints `all_full` each time every follower holds a full
    /// list (the first time also starts `--churn`).
    fn count_full(&mut self, was: bool, now_full: bool, now: Instant) {
        match (was, now_full) {
            (false, true) => self.full_now += 1,
            (true, false) => self.full_now -= 1,
            _ => {}
        }
        let all = self.full_now == self.subs.len() + self.watchers.len();
        if all && !self.all_full {
            self.all_full_times += 1;
            let line = format!(
                "all_full t={:.6} subs={} watchers={} n={}",
                self.t(now),
                self.subs.len(),
                self.watchers.len(),
                self.all_full_times
            );
            let _ = writeln!(self.out, "{line}");
            self.start_churn(now);
        }
        self.all_full = all;
    }

    /// Sends watcher `w`'s next request (its position) on connection
    /// `idx`, with a new request id.
    fn send_watch_request(&mut self, idx: usize, w: u32) -> io::Result<()> {
        let hl = self.cfg.watch.as_ref().map_or(8, Endpoint::frame_header);
        let state = &mut self.watchers[w as usize];
        let id = watch::next_request_id(state.last_id);
        state.last_id = id;
        state.waiting = Some(id);
        let mut frame = Vec::with_capacity(9 + 4 + watch::REQUEST_BODY);
        if hl == 9 {
            frame.push(1);
        }
        let at = state.state.request();
        // A follower's catch-up carries the follow flag (answered at once);
        // its snapshot request is a plain (0, 0).
        let follow = self.cfg.broadcast.is_some() && at.is_real();
        let len = 4 + watch::REQUEST_BODY + usize::from(follow);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        if follow {
            watch::encode_follow_request(id, at, &mut frame);
            self.totals.follow_catchups += 1;
        } else {
            watch::encode_request(id, at, &mut frame);
        }
        if self.cfg.broadcast.is_some() {
            self.watchers[w as usize].asking = true;
        }
        self.send(idx, &frame)
    }

    /// Follower `w` needs a snapshot or a catch-up: asks now if its REQ
    /// connection is up and no request is out, else when it comes up.
    fn follow_ask(&mut self, w: u32) -> io::Result<()> {
        let state = &mut self.watchers[w as usize];
        state.asking = true;
        match (state.conn, state.ready, state.sub_ready, state.waiting) {
            (Some(idx), true, true, None) => self.send_watch_request(idx, w),
            _ => Ok(()),
        }
    }

    /// Follower `w`'s SUB connection is up (again).
    fn follow_sub_up(&mut self, w: u32) {
        if self.follow_ask(w).is_err() {
            if let Some(idx) = self.watchers[w as usize].conn {
                self.close(idx, true);
            }
        }
    }

    /// A broadcast on follower `w`'s SUB connection. False closes it (not
    /// a broadcast).
    fn on_broadcast(&mut self, w: u32, payload: &[u8]) -> bool {
        self.totals.follow_broadcasts += 1;
        if let Err(e) = watch::parse_broadcast(payload) {
            eprintln!("loadgen: follower {w}: {e}");
            return false;
        }
        let state = &mut self.watchers[w as usize];
        if state.asking {
            if state.buffer.len() >= FOLLOW_BUFFER {
                state.buffer.pop_front();
            }
            state.buffer.push_back(payload.to_vec());
            return true;
        }
        let changed = self.follow_one(w, payload);
        if changed {
            self.watcher_changed(w, Instant::now());
        }
        true
    }

    /// Applies one broadcast to follower `w`, which holds a position:
    /// returns whether its names changed; asks for a catch-up (buffering
    /// `payload`) or a snapshot when it does not follow on.
    fn follow_one(&mut self, w: u32, payload: &[u8]) -> bool {
        let Ok(b) = watch::parse_broadcast(payload) else {
            return false;
        };
        let state = &mut self.watchers[w as usize];
        match watch::next_step(state.state.request(), &b) {
            watch::Next::Ignore => false,
            watch::Next::Apply => match state.state.apply_broadcast(&b, &mut self.dec) {
                Applied::Delta { .. } => true,
                _ => {
                    // Refused: the position is dropped, a snapshot asked.
                    self.totals.watch_refused += 1;
                    let _ = self.follow_ask(w);
                    false
                }
            },
            watch::Next::CatchUp => {
                state.buffer.push_back(payload.to_vec());
                let _ = self.follow_ask(w);
                false
            }
        }
    }

    /// After a reply to follower `w`: replays its buffer (those of another
    /// epoch, or ending at or before its revision, are dropped); returns
    /// whether its names changed. A gap among them asks again.
    fn follow_replay(&mut self, w: u32) -> bool {
        let state = &mut self.watchers[w as usize];
        state.asking = false;
        let epoch = state.state.request().epoch;
        let buffered = std::mem::take(&mut state.buffer);
        let mut changed = false;
        for msg in buffered {
            let state = &mut self.watchers[w as usize];
            if state.asking {
                state.buffer.push_back(msg);
                continue;
            }
            if watch::parse_broadcast(&msg).map_or(true, |b| b.epoch != epoch) {
                continue;
            }
            changed |= self.follow_one(w, &msg);
        }
        changed
    }

    /// A reply on watcher `w`'s connection `idx`: applies it, asks again at
    /// once, and books fullness and changes. False closes the connection
    /// (a reply that is not one).
    fn on_watch_reply(&mut self, idx: usize, w: u32, payload: &[u8]) -> bool {
        let now = Instant::now();
        let reply = match watch::parse_reply(payload) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loadgen: watcher {w}: {e}");
                return false;
            }
        };
        let state = &mut self.watchers[w as usize];
        if state.waiting != Some(reply.id) {
            // A reply to a request it no longer waits for: a REQ socket
            // drops it.
            self.totals.watch_stale += 1;
            return true;
        }
        state.waiting = None;
        let applied = state.state.apply(&reply, &mut self.dec);
        let count = state.state.names.len();
        let refused = matches!(applied, Applied::Refused(_));
        let mut changed = match applied {
            Applied::Snapshot { why } => {
                self.totals.watch_snapshots += 1;
                match why {
                    Why::Asked => {}
                    Why::Smaller => self.totals.watch_smaller += 1,
                    Why::Unasked => self.totals.watch_unasked += 1,
                }
                true
            }
            Applied::Delta { .. } => {
                self.totals.watch_deltas += 1;
                true
            }
            Applied::Keepalive => {
                self.totals.watch_keepalives += 1;
                false
            }
            Applied::Refused(_) => {
                self.totals.watch_refused += 1;
                false
            }
        };
        if self.cfg.broadcast.is_some() {
            // A follower asks again only when it must: a refused reply
            // wants a snapshot; otherwise the buffered broadcasts follow.
            if refused {
                if self.follow_ask(w).is_err() {
                    return false;
                }
            } else {
                changed |= self.follow_replay(w);
            }
        } else if self.send_watch_request(idx, w).is_err() {
            return false;
        }
        let t = self.t(now);
        if self.cfg.print_lists {
            let kind = match reply.kind {
                Kind::Snapshot => 'S',
                Kind::Delta => 'D',
                Kind::Keepalive => 'K',
            };
            let _ = writeln!(
                self.out,
                "watch_reply t={t:.6} watcher={w} kind={kind} len={count} revision={}",
                reply.at.revision
            );
        }
        if changed {
            self.watcher_changed(w, now);
        }
        true
    }

    /// Watcher `w`'s names changed: books its fullness and the changes
    /// it now reflects.
    fn watcher_changed(&mut self, w: u32, now: Instant) {
        let t = self.t(now);
        let count = self.watchers[w as usize].state.names.len();
        let full = count == self.answering;
        let state = &mut self.watchers[w as usize];
        if state.announced && count < self.answering {
            self.totals.short_lists += 1;
        }
        let was_full = std::mem::replace(&mut state.full, full);
        if full && !std::mem::replace(&mut state.announced, true) {
            let _ = writeln!(self.out, "full t={t:.6} watcher={w} len={count}");
        }
        self.count_full(was_full, full, now);
        if !self.pending.is_empty() {
            let f = self.subs.len() + w as usize;
            // A bit test per pending change: this runs for every update.
            let held = &self.watchers[w as usize].state.names;
            mark_changes(&mut self.pending, f, now, |c| held.contains(c.id));
            self.finish_changes(now);
        }
    }

    /// `--track-joins`: books the peers that `list` (a list body not seen
    /// before) names for the first time, and reports once all are listed.
    fn track_joins(&mut self, list: &[u8], now: Instant) {
        for name in list.split(|&b| b == b'|') {
            let Some(&s) = self.name_slot.get(name) else {
                continue;
            };
            let slot = &mut self.slots[s as usize];
            if slot.listed {
                continue;
            }
            slot.listed = true;
            let since = |at: Option<Instant>| at.map_or(0.0, |c| (now - c).as_secs_f64() * 1e3);
            self.join_ms.push(since(slot.connected_at));
            self.ready_ms.push(since(slot.ready_at));
        }
        if self.join_ms.len() < self.answering || self.join_ms.is_empty() {
            return;
        }
        self.joins_reported = true;
        let mut ms = std::mem::take(&mut self.join_ms);
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        let mut hs = std::mem::take(&mut self.ready_ms);
        hs.sort_by(f64::total_cmp);
        let hpct = |p: f64| hs[((p * hs.len() as f64).ceil() as usize).clamp(1, hs.len()) - 1];
        let connects = self.slots.iter().filter_map(|s| s.connected_at);
        let first = connects.clone().min().map_or(0.0, |c| self.t(c));
        let last = connects.max().map_or(0.0, |c| self.t(c));
        let line = format!(
            "joins t={:.6} n={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} hs_p50_ms={:.1} hs_p99_ms={:.1} hs_max_ms={:.1} first_connect={first:.6} last_connect={last:.6}",
            self.t(now),
            ms.len(),
            pct(0.50),
            pct(0.99),
            ms[ms.len() - 1],
            hpct(0.50),
            hpct(0.99),
            hs[hs.len() - 1],
        );
        let _ = writeln!(self.out, "{line}");
    }

    /// Reports and forgets the changes every subscriber now holds.
    fn finish_changes(&mut self, now: Instant) {
        if !self.pending.iter().any(|c| c.remaining == 0) {
            return;
        }
        let t = self.t(now);
        let mut kept = Vec::with_capacity(self.pending.len());
        for c in std::mem::take(&mut self.pending) {
            if c.remaining > 0 {
                kept.push(c);
                continue;
            }
            self.totals.changes_done += 1;
            let _ = writeln!(
                self.out,
                "change t={t:.6} kind={} ms={:.3} first_ms={:.3} subs={} watchers={} superseded={} name={}",
                if c.join { "join" } else { "leave" },
                (now - c.at).as_secs_f64() * 1e3,
                c.first.map_or(f64::NAN, |f| (f - c.at).as_secs_f64() * 1e3),
                c.subs,
                c.watchers,
                u8::from(c.superseded),
                String::from_utf8_lossy(&c.name),
            );
        }
        self.pending = kept;
    }

    /// Follower `f`'s connection closed: it no longer holds a full list
    /// (until its next one) nor holds changes up.
    fn follower_gone(&mut self, f: usize, was_full: bool) {
        let now = Instant::now();
        self.count_full(was_full, false, now);
        for c in &mut self.pending {
            if !c.have[f] {
                c.have[f] = true;
                c.remaining -= 1;
            }
        }
        self.finish_changes(now);
    }

    /// How long `role` waits before dialing again: [`RETRY`], or with
    /// `--redial` its next [`Backoff`] wait.
    fn retry_wait(&mut self, role: Role) -> Duration {
        if !self.cfg.redial {
            return RETRY;
        }
        let random = self.random();
        match role {
            Role::Peer(s) => self.slots[s as usize].backoff.next_wait(random),
            Role::Sub(s) => self.subs[s as usize].backoff.next_wait(random),
            Role::Watch(w) | Role::Follow(w) => self.watchers[w as usize].backoff.next_wait(random),
        }
    }

    /// Closes connection `idx`; `reconnect` queues its role again after a
    /// short wait (set for failures and closes by the server, not for churn,
    /// which reconnects at once itself).
    fn close(&mut self, idx: usize, reconnect: bool) {
        let Some(mut conn) = self.conns[idx].take() else {
            return;
        };
        conn.stream.deregister(self.poll.registry());
        drop(conn.stream);
        self.free.push(idx);
        if conn.phase != Phase::Ready {
            self.inflight -= 1;
        }
        let was_ready = conn.phase == Phase::Ready;
        match conn.role {
            Role::Peer(s) => {
                let slot = &mut self.slots[s as usize];
                slot.conn = None;
                if was_ready {
                    slot.ready = false;
                    self.ready_peers -= 1;
                }
            }
            Role::Sub(s) => {
                let state = &mut self.subs[s as usize];
                state.conn = None;
                let was_full = std::mem::replace(&mut state.full, false);
                if was_ready {
                    state.ready = false;
                    self.ready_subs -= 1;
                }
                self.follower_gone(s as usize, was_full);
            }
            Role::Watch(w) => {
                let state = &mut self.watchers[w as usize];
                state.conn = None;
                state.waiting = None;
                let was_full = std::mem::replace(&mut state.full, false);
                if was_ready {
                    state.ready = false;
                    self.ready_watchers -= 1;
                }
                self.follower_gone(self.subs.len() + w as usize, was_full);
            }
            Role::Follow(w) => {
                // Broadcasts may be lost until it is back: then catch up.
                let state = &mut self.watchers[w as usize];
                state.sub_conn = None;
                state.sub_ready = false;
                state.asking = true;
            }
        }
        if reconnect {
            if was_ready {
                self.totals.reconnects += 1;
            }
            let wait = self.retry_wait(conn.role);
            self.retry.push((Instant::now() + wait, conn.role));
        }
    }
}

/// Follower `f` (a subscriber index, or the number of subscribers plus a
/// watcher's index) holds a list in which `holds(change)` tells whether a
/// change's name is listed, received first at `first_seen`: marks the
/// pending changes it reflects. Any earlier change of the same name this follower
/// never saw was superseded by it.
fn mark_changes(
    pending: &mut [Change],
    f: usize,
    first_seen: Instant,
    holds: impl Fn(&Change) -> bool,
) {
    for j in 0..pending.len() {
        let c = &pending[j];
        if c.have[f] || first_seen < c.at || holds(c) != c.join {
            continue;
        }
        let (earlier, rest) = pending.split_at_mut(j);
        let c = &mut rest[0];
        c.have[f] = true;
        c.remaining -= 1;
        c.first.get_or_insert(first_seen);
        for e in earlier
            .iter_mut()
            .filter(|e| !e.have[f] && e.name == c.name)
        {
            e.have[f] = true;
            e.remaining -= 1;
            e.superseded = true;
            e.first.get_or_insert(first_seen);
        }
    }
}

/// The length of a message's backtrace: 4-byte words up to and including
/// the first with its top bit set (the survey id; words before it were
/// pushed by devices in between). `None` if there is no such word.
fn backtrace_len(payload: &[u8]) -> Option<usize> {
    payload
        .chunks_exact(4)
        .position(|word| word[0] & 0x80 != 0)
        .map(|i| 4 * (i + 1))
}

/// A fast hash of a list body (8 bytes per step); equal hashes are then
/// confirmed byte for byte.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces() {
        assert_eq!(backtrace_len(&[0x80, 0, 0, 1]), Some(4));
        assert_eq!(backtrace_len(&[0x80, 0, 0, 1, b'x']), Some(4));
        assert_eq!(backtrace_len(&[0, 0, 0, 7, 0x81, 2, 3, 4]), Some(8));
        assert_eq!(backtrace_len(&[0, 0, 0, 7]), None);
        assert_eq!(backtrace_len(&[0x80, 0, 0]), None);
        assert_eq!(backtrace_len(&[]), None);
    }

    #[test]
    fn hashes_tell_lists_apart() {
        let a = b"http://10.0.0.1:8080|http://10.0.0.2:8080".to_vec();
        let mut b = a.clone();
        b[20] = b'9';
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(b""), hash(b"x"));
        assert_eq!(hash(&a), hash(&a.clone()));
    }

    #[test]
    fn urls() {
        assert!(matches!(parse_url("tcp://127.0.0.1:5"), Endpoint::Tcp(_)));
        assert!(matches!(parse_url("tcp://[::1]:5"), Endpoint::Tcp(_)));
        assert!(matches!(parse_url("ipc:///tmp/x"), Endpoint::Ipc(_)));
        assert_eq!(parse_url("ipc:///tmp/x").frame_header(), 9);
        assert_eq!(parse_url("tcp://localhost:5").frame_header(), 8);
    }
}
