//! The watch protocol's server side (issue 14), over real sockets: a
//! server with a watch URL, and watchers played by NNG REQ sockets (cooked,
//! as a watcher library would use; raw, to send what a cooked one cannot),
//! and by `nngcat`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{patience, slow, stats_until, wait_for_list, wait_until, NEVER};
use nng::options::{Options as _, RecvMaxSize, RecvTimeout};
use nng::{Message, Protocol, RawSocket, Socket};
use nng_discovery::watch_state::WatchState;
use nng_discovery::watch_wire::{decode_reply, encode_request, Position, Reply};
use nng_discovery::{Client, Server};

/// A server on free loopback ports with a watch URL, the fast heartbeat,
/// and the given keepalive.
fn server(keepalive: Duration) -> Server {
    common::tcp_server_with(
        common::fast_options()
            .watch_url("tcp://127.0.0.1:0")
            .watch_keepalive(keepalive),
    )
}

fn watch_url(server: &Server) -> &str {
    server.watch_url().expect("started with a watch URL")
}

/// A cooked REQ socket dialed to the watch URL, whose receives give up
/// after `patience()`.
fn watcher(url: &str) -> Socket {
    dialed(Socket::new(Protocol::Req0).expect("open a REQ socket"), url)
}

/// A raw REQ socket dialed to the watch URL: it sends whatever header and
/// body it is given.
fn raw_watcher(url: &str) -> Socket {
    let socket = RawSocket::new(Protocol::Req0)
        .expect("open a raw REQ socket")
        .socket;
    dialed(socket, url)
}

/// `socket` with receives that give up after `patience()`, no receive size
/// limit, dialed to `url`.
fn dialed(socket: Socket, url: &str) -> Socket {
    socket
        .set_opt::<RecvTimeout>(Some(patience()))
        .expect("set RecvTimeout");
    socket
        .set_opt::<RecvMaxSize>(0)
        .expect("no receive size limit");
    socket
        .dial(url)
        .unwrap_or_else(|e| panic!("dial {url}: {e}"));
    socket
}

/// Sends a request with `body` on a cooked REQ socket.
fn send(socket: &Socket, body: &[u8]) {
    socket
        .send(Message::from(body))
        .unwrap_or_else(|(_, e)| panic!("sending a watch request: {e}"));
}

/// Receives and decodes a reply (within `patience()`).
fn receive(socket: &Socket) -> Reply {
    let msg = socket
        .recv()
        .unwrap_or_else(|e| panic!("no watch reply within {:?}: {e}", patience()));
    decode_reply(msg.as_slice()).unwrap_or_else(|e| panic!("an invalid watch reply: {e}"))
}

/// One request and its reply.
fn ask(socket: &Socket, position: Position) -> Reply {
    send(socket, &encode_request(position));
    receive(socket)
}

/// A raw request: request id `id` (top bit set) in the header, `body` as
/// is.
fn raw_send(socket: &Socket, id: u32, body: &[u8]) {
    let mut msg = Message::from(body);
    msg.as_mut_header()
        .push_back(&(id | 0x8000_0000).to_be_bytes());
    socket
        .send(msg)
        .unwrap_or_else(|(_, e)| panic!("sending a raw watch request: {e}"));
}

/// A raw reply: the request id it answers and the decoded reply.
fn raw_receive(socket: &Socket) -> (u32, Reply) {
    let mut msg = socket
        .recv()
        .unwrap_or_else(|e| panic!("no raw watch reply within {:?}: {e}", patience()));
    let header = msg.as_mut_header().as_slice().to_vec();
    let id: [u8; 4] = header
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("a reply header of {} bytes, not 4", header.len()));
    let reply = decode_reply(msg.as_slice()).unwrap_or_else(|e| panic!("invalid reply: {e}"));
    (u32::from_be_bytes(id) & 0x7fff_ffff, reply)
}

fn snapshot(reply: &Reply) -> (Position, Vec<String>) {
    match reply {
        Reply::Snapshot { at, names } => (*at, names.clone()),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// A long name that tests keep listed, so that a delta of a short name or
/// two is smaller than the snapshot (the server sends whichever is smaller).
const ANCHOR: &str = "tcp://anchor.example.com:8080/a-name-longer-than-any-delta";

/// A client named [`ANCHOR`], once the server lists it.
fn anchor(server: &Server) -> Client {
    let changes = server.changes();
    let client = Client::new(server.survey_url(), ANCHOR).expect("client");
    wait_for_list(&changes, &[ANCHOR]);
    client
}

#[test]
fn nothing_held_gets_a_snapshot_and_the_url_is_resolved() {
    let server = server(NEVER);
    let url = watch_url(&server);
    assert!(
        url.starts_with("tcp://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let w = watcher(url);
    // Held until the server's first list (the first survey's end), then a
    // snapshot of the empty list at revision 1.
    let (at, names) = snapshot(&ask(&w, Position::NOTHING));
    assert_ne!(at.epoch, 0);
    assert_eq!(at.revision, 1);
    assert!(names.is_empty());
    // An empty body (and any other length) holds nothing too.
    for body in [&b""[..], b"x", &[0; 15], &[7; 17]] {
        assert_eq!(snapshot(&ask(&w, Position::NOTHING)).0, at);
        send(&w, body);
        assert_eq!(snapshot(&receive(&w)).0, at, "body {body:?}");
    }
    // The counters are copied when the server thread next waits.
    let s = stats_until(&server, "9 snapshots counted", |s| s.watch_snapshots >= 9);
    assert_eq!(s.watchers, 1);
    assert_eq!(s.watch_snapshots, 9);
    assert_eq!(s.watch_requests, 9);
    assert_eq!(
        (s.watch_deltas, s.watch_keepalives, s.watch_held),
        (0, 0, 0)
    );
    // Servers without a watch URL have none.
    let plain = common::tcp_server();
    assert_eq!(plain.watch_url(), None);
}

#[test]
fn a_join_and_a_leave_come_as_deltas() {
    let server = server(NEVER);
    let _anchor = anchor(&server);
    let changes = server.changes();
    let w = watcher(watch_url(&server));
    let mut state = WatchState::new();
    let first = ask(&w, Position::NOTHING);
    assert_eq!(state.apply(&first), Ok(Some(vec![ANCHOR.to_string()])));
    let start = first.at();

    let client = Client::new(server.survey_url(), "http://a:1").expect("client");
    wait_for_list(&changes, &["http://a:1", ANCHOR]);
    let reply = ask(&w, state.request());
    match &reply {
        Reply::Delta { at, joined, left } => {
            assert_eq!(at.epoch, start.epoch);
            assert_eq!(at.revision, start.revision + 1, "one publish, one revision");
            assert_eq!(
                (joined.as_slice(), left.as_slice()),
                (&["http://a:1".to_string()][..], &[][..])
            );
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    assert_eq!(
        state.apply(&reply),
        Ok(Some(vec!["http://a:1".to_string(), ANCHOR.to_string()]))
    );

    client.shutdown();
    wait_for_list(&changes, &[ANCHOR]);
    let reply = ask(&w, state.request());
    assert!(
        matches!(&reply, Reply::Delta { left, .. } if left == &["http://a:1"]),
        "{reply:?}"
    );
    assert_eq!(state.apply(&reply), Ok(Some(vec![ANCHOR.to_string()])));
    // From the start: the net change is nothing (an empty delta).
    let reply = ask(&w, start);
    assert!(
        matches!(&reply, Reply::Delta { joined, left, .. } if joined.is_empty() && left.is_empty()),
        "{reply:?}"
    );
    let s = stats_until(&server, "3 deltas counted", |s| s.watch_deltas >= 3);
    assert_eq!(s.watch_deltas, 3);
}

#[test]
fn a_current_request_is_held_until_the_next_change() {
    let server = server(NEVER);
    let _anchor = anchor(&server);
    let w = watcher(watch_url(&server));
    let (at, _) = snapshot(&ask(&w, Position::NOTHING));
    send(&w, &encode_request(at));
    stats_until(&server, "the request is held", |s| s.watch_held == 1);
    assert!(
        matches!(w.try_recv(), Err(nng::Error::TryAgain)),
        "a current request was answered before any change"
    );
    let _client = Client::new(server.survey_url(), "http://b:2").expect("client");
    // The join is published within milliseconds and the held request is
    // answered at that moment.
    match receive(&w) {
        Reply::Delta {
            at: new,
            joined,
            left,
        } => {
            assert_eq!(new, Position::new(at.epoch, at.revision + 1));
            assert_eq!(joined, ["http://b:2"]);
            assert!(left.is_empty());
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    stats_until(&server, "nothing held", |s| {
        s.watch_held == 0 && s.watch_deltas == 1
    });
}

#[test]
fn a_current_request_gets_a_keepalive_after_the_interval() {
    let keepalive = slow(Duration::from_millis(300));
    let server = server(keepalive);
    let w = watcher(watch_url(&server));
    let (at, _) = snapshot(&ask(&w, Position::NOTHING));
    let asked = std::time::Instant::now();
    assert_eq!(ask(&w, at), Reply::Keepalive { at });
    // Not before the interval: the reply comes at the keepalive deadline.
    assert!(
        asked.elapsed() >= keepalive,
        "a keepalive before the interval"
    );
    // And again: the watcher's next request is held as long.
    assert_eq!(ask(&w, at), Reply::Keepalive { at });
    let s = stats_until(&server, "2 keepalives counted", |s| s.watch_keepalives >= 2);
    assert_eq!(s.watch_keepalives, 2);
    assert_eq!(s.watch_held, 0);
}

#[test]
fn another_epoch_or_revision_gets_a_snapshot() {
    let server = server(NEVER);
    let w = watcher(watch_url(&server));
    let (at, _) = snapshot(&ask(&w, Position::NOTHING));
    let other_epoch = if at.epoch == 1 { 2 } else { at.epoch ^ 1 };
    for wrong in [
        Position::new(other_epoch, at.revision),
        Position::new(other_epoch, 0),
        Position::new(at.epoch, 0),
        Position::new(at.epoch, at.revision + 1),
        Position::new(at.epoch, u64::MAX),
        Position::new(u64::MAX, u64::MAX),
    ] {
        assert_eq!(snapshot(&ask(&w, wrong)).0, at, "{wrong}");
    }
}

#[test]
fn raw_requests_with_any_body_get_replies_carrying_their_id() {
    let server = server(NEVER);
    let raw = raw_watcher(watch_url(&server));
    let bodies: [&[u8]; 7] = [
        b"",
        b"\x00",
        &[0xff; 15],
        &[0xff; 16],
        &[0; 17],
        b"garbage!",
        &[0x80; 900],
    ];
    let mut at = None;
    for (i, body) in bodies.iter().enumerate() {
        let id = 1000 + i as u32;
        raw_send(&raw, id, body);
        let (got, reply) = raw_receive(&raw);
        assert_eq!(got, id, "the reply carries its request's id");
        // All of them hold nothing the server knows: snapshots.
        let (pos, _) = snapshot(&reply);
        assert_eq!(*at.get_or_insert(pos), pos);
    }
    // A request larger than the limit closes that connection (NNG), and
    // the server goes on serving others.
    raw_send(&raw, 1, &vec![b'x'; 64 * 1024]);
    let w = watcher(watch_url(&server));
    assert_eq!(snapshot(&ask(&w, Position::NOTHING)).0, at.unwrap());
    stats_until(&server, "the oversized request's connection closed", |s| {
        s.watchers == 1
    });
}

#[test]
fn a_flood_on_one_connection_holds_one_request() {
    const FLOOD: u32 = 2000;
    let server = server(NEVER);
    let _anchor = anchor(&server);
    let raw = raw_watcher(watch_url(&server));
    raw_send(&raw, 1, b"");
    let (_, first) = raw_receive(&raw);
    let (at, _) = snapshot(&first);
    let before = server.stats();
    for id in 2..=FLOOD + 1 {
        raw_send(&raw, id, &encode_request(at));
    }
    // Every request is taken, and never more than one is held.
    wait_until("the flood is taken", patience(), || {
        let s = server.stats();
        assert!(
            s.watch_held <= 1,
            "{} requests held for one connection",
            s.watch_held
        );
        if s.watch_requests >= before.watch_requests + u64::from(FLOOD) {
            Ok(())
        } else {
            Err(s.watch_requests)
        }
    });
    assert_eq!(server.stats().watch_held, 1);
    // A change answers the one held request: the newest.
    let _client = Client::new(server.survey_url(), "http://c:3").expect("client");
    let (id, reply) = raw_receive(&raw);
    assert_eq!(id, FLOOD + 1, "the newest request is the one answered");
    assert!(matches!(reply, Reply::Delta { .. }), "{reply:?}");
    let s = stats_until(&server, "the delta counted", |s| s.watch_deltas >= 1);
    assert_eq!(s.watch_deltas, 1, "only one reply for the flood");
    assert_eq!(s.watch_held, 0);
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

#[test]
fn a_watcher_that_never_reads_costs_bounded_memory_and_stalls_no_one() {
    // A list of 20 names of 1000 bytes: each snapshot is about 20 KB.
    const NAMES: usize = 20;
    const REQUESTS: u32 = 5000; // 100 MB of snapshots if all were kept
    let server = server(NEVER);
    let changes = server.changes();
    let names: Vec<String> = (0..NAMES)
        .map(|i| format!("{i:02}{}", "x".repeat(998)))
        .collect();
    let mut clients: Vec<Client> = names
        .iter()
        .map(|n| Client::new(server.survey_url(), n).expect("client"))
        .collect();
    common::wait_for(&changes, |l| l.len() == NAMES, patience());
    let w = watcher(watch_url(&server));
    let (at, listed) = snapshot(&ask(&w, Position::NOTHING));
    assert_eq!(listed.len(), NAMES);

    let rss_before = rss();
    let deaf = raw_watcher(watch_url(&server));
    let before = server.stats();
    for id in 1..=REQUESTS {
        raw_send(&deaf, id, b""); // holds nothing: a snapshot each
    }
    stats_until(&server, "the deaf watcher's requests are taken", |s| {
        s.watch_requests >= before.watch_requests + u64::from(REQUESTS)
    });
    // The others are still served: a held request gets its delta.
    send(&w, &encode_request(at));
    stats_until(&server, "the request is held", |s| s.watch_held == 1);
    // Only the first leaves; the others stay until the end of the test.
    drop(clients.remove(0));
    match receive(&w) {
        Reply::Delta { left, .. } => assert_eq!(left, [names[0].clone()]),
        other => panic!("expected a delta, got {other:?}"),
    }
    let grown = rss().saturating_sub(rss_before);
    eprintln!(
        "memory grew by {} KB for {REQUESTS} unread snapshots",
        grown >> 10
    );
    assert!(
        grown < 40 << 20,
        "memory grew by {} MB for one watcher that never reads",
        grown >> 20
    );
    drop(deaf);
    drop(clients);
}

#[test]
fn nngcat_fetches_the_list_with_a_bare_request() {
    if Command::new("nngcat")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("nngcat is needed under CI=true (apt-get install nng-utils)");
        }
        eprintln!("note: nngcat not found; skipping (apt-get install nng-utils)");
        return;
    }
    let server = server(NEVER);
    let changes = server.changes();
    let _a = Client::new(server.survey_url(), "http://a:1").expect("client");
    let _b = Client::new(server.survey_url(), "http://b:2").expect("client");
    wait_for_list(&changes, &["http://a:1", "http://b:2"]);
    let timeout = patience().as_secs().max(1).to_string();
    let url = watch_url(&server).to_owned();
    let output = common::within(patience() * 2, "nngcat --req0", move || {
        Command::new("nngcat")
            .args(["--req0", "--dial", &url, "--data", "", "--raw"])
            .args(["--recv-timeout", &timeout])
            .stdin(Stdio::null())
            .output()
            .expect("run nngcat")
    });
    assert!(output.status.success(), "nngcat failed: {output:?}");
    let reply = decode_reply(&output.stdout)
        .unwrap_or_else(|e| panic!("nngcat printed {:?}: {e}", output.stdout));
    let (_, names) = snapshot(&reply);
    assert_eq!(names, ["http://a:1", "http://b:2"]);
    // The list as text: the reply's bytes after the 17-byte header.
    assert_eq!(&output.stdout[17..], b"http://a:1|http://b:2");
}

#[test]
fn the_daemon_serves_watchers_with_watch() {
    let Some(bin) = common::daemon::binary() else {
        return;
    };
    let keepalive = common::daemon::slow_arg(Duration::from_millis(300));
    let (server, survey, _) = common::daemon::start_server_with(
        bin,
        &[
            "--watch",
            "tcp://127.0.0.1:0",
            "--watch-keepalive",
            &keepalive,
        ],
    );
    let url = server.next_url("watch");
    assert!(
        url.starts_with("tcp://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let _client = Client::new(&survey, "http://d:4").expect("client");
    let w = watcher(&url);
    let at = wait_until("the daemon lists the client", patience(), || {
        let (at, names) = snapshot(&ask(&w, Position::NOTHING));
        if names == ["http://d:4"] {
            Ok(at)
        } else {
            Err(names)
        }
    });
    // Nothing changes: a keepalive after --watch-keepalive.
    assert_eq!(ask(&w, at), Reply::Keepalive { at });
}

#[test]
fn a_closed_connection_releases_its_held_request() {
    let server = server(NEVER);
    let w = watcher(watch_url(&server));
    let (at, _) = snapshot(&ask(&w, Position::NOTHING));
    send(&w, &encode_request(at));
    stats_until(&server, "the request is held", |s| {
        s.watch_held == 1 && s.watchers == 1
    });
    w.close();
    stats_until(&server, "the closed watcher's request is dropped", |s| {
        s.watch_held == 0 && s.watchers == 0
    });
    // A change afterwards sends nothing to it.
    let _client = Client::new(server.survey_url(), "http://e:5").expect("client");
    wait_for_list(&server.changes(), &["http://e:5"]);
    let s = server.stats();
    assert_eq!((s.watch_deltas, s.watch_snapshots), (0, 1), "{s:?}");
}
