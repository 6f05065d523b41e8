//! The watch broadcast (docs/PROTOCOL.md, "Watch broadcast"): a server with
//! `watch_broadcast_url` sends each change once on a PUB socket; our
//! watchers find it through the watch URL and follow it, and catch up over
//! REQ/REP when they miss something. Third-party REQ watchers, and our
//! watchers against servers without a broadcast, work as before.

mod common;

use std::time::Duration;

use common::daemon::{binary, Proc};
use common::{patience, slow, stats_until, wait_for_list};
use crossbeam_channel::Receiver;
use nng::options::protocol::pubsub::Subscribe;
use nng::options::{Options as _, RecvTimeout};
use nng::{Message, PipeEvent, Protocol, Socket};
use nng_discovery::watch_wire::{self, Broadcast, FollowReply, Position, Reply};
use nng_discovery::{Client, Options, Server, Subscriber};

/// Fast heartbeat, a watch URL and a broadcast URL on free loopback ports,
/// a keepalive long enough that silence plays no part, fast redials.
fn options() -> Options {
    common::fast_options()
        .watch_url("tcp://127.0.0.1:0")
        .watch_broadcast_url("tcp://127.0.0.1:0")
        .watch_keepalive(slow(Duration::from_secs(10)))
        .reconnect_min(Duration::from_millis(10))
        .reconnect_max(slow(Duration::from_millis(100)))
}

fn watch_url(server: &Server) -> &str {
    server.watch_url().expect("started with a watch URL")
}

const NA: &str = "http://10.0.0.1:8080";
const NB: &str = "http://10.0.0.2:8080";
const NC: &str = "http://10.0.0.3:8080";

#[test]
fn a_follower_gets_the_list_and_each_change_from_the_broadcast() {
    let server = common::tcp_server_with(options());
    assert!(server
        .watch_broadcast_url()
        .is_some_and(|u| u.starts_with("tcp://127.0.0.1:") && !u.ends_with(":0")));
    let watcher = Subscriber::watch(watch_url(&server)).expect("watcher");
    let changes = watcher.changes();
    wait_for_list(&changes, &[]);
    let s = stats_until(&server, "a follower", |s| {
        s.watch_followers == 1 && s.watch_offers == 1
    });
    let replies_at_start = s.watch_snapshots + s.watch_deltas + s.watch_keepalives;
    let c = Client::new(server.survey_url(), NC).expect("client");
    wait_for_list(&changes, &[NC]);
    let b = Client::new(server.survey_url(), NB).expect("client");
    wait_for_list(&changes, &[NB, NC]);
    let a = Client::new(server.survey_url(), NA).expect("client");
    wait_for_list(&changes, &[NA, NB, NC]);
    b.shutdown();
    wait_for_list(&changes, &[NA, NC]);
    // A follower that joins late starts from a snapshot and follows too.
    let late = Subscriber::watch(watch_url(&server)).expect("late watcher");
    let late_changes = late.changes();
    wait_for_list(&late_changes, &[NA, NC]);
    stats_until(&server, "two followers", |s| s.watch_followers == 2);
    a.shutdown();
    wait_for_list(&changes, &[NC]);
    wait_for_list(&late_changes, &[NC]);
    let s = server.stats();
    // Five changes, each delivered by a broadcast or, after a race or a
    // paced broadcast that coalesced two changes, by one of at most four
    // catch-up replies: the REQ side answered only those, and no request
    // waits on the server.
    assert_eq!(s.watch_held, 0, "{s:?}");
    let replies = s.watch_snapshots + s.watch_deltas + s.watch_keepalives - replies_at_start;
    assert!(replies <= 4, "a reply per change? {s:?}");
    assert!(s.watch_broadcasts + replies >= 5, "{s:?}");
    assert_eq!(s.subscribers, 0, "nothing on the publish URL: {s:?}");
    watcher.shutdown();
    // The channel disconnects once the watcher is gone (after the lists
    // it delivered before).
    while changes.recv_timeout(patience()).is_ok() {}
    drop((c, late));
}

#[test]
fn a_client_with_watch_follows_the_broadcast() {
    let server = common::tcp_server_with(options());
    let other = Client::new(server.survey_url(), NB).expect("client");
    let client = Client::with_watch(server.survey_url(), watch_url(&server), NA).expect("client");
    let peers = client.peers().expect("a client with a watch has peers()");
    wait_for_list(&peers, &[NA, NB]);
    stats_until(&server, "the client follows", |s| s.watch_followers == 1);
    other.shutdown();
    wait_for_list(&peers, &[NA]);
    client.shutdown();
}

#[test]
fn a_server_without_a_broadcast_serves_our_watcher_over_req_rep() {
    let o = options();
    let o = common::fast_options()
        .watch_url("tcp://127.0.0.1:0")
        .watch_keepalive(o.server_settings().expect("valid options").watch_keepalive);
    let server = common::tcp_server_with(o);
    assert_eq!(server.watch_broadcast_url(), None);
    let watcher = Subscriber::watch(watch_url(&server)).expect("watcher");
    let changes = watcher.changes();
    wait_for_list(&changes, &[]);
    let a = Client::new(server.survey_url(), NA).expect("client");
    wait_for_list(&changes, &[NA]);
    // Watching the classic way: one request held between changes.
    let s = stats_until(&server, "a held request", |s| s.watch_held == 1);
    assert_eq!(
        (s.watch_offers, s.watch_followers, s.watch_broadcasts),
        (0, 0, 0)
    );
    a.shutdown();
    wait_for_list(&changes, &[]);
}

#[test]
fn watch_follow_off_watches_over_req_rep_even_when_offered() {
    let server = common::tcp_server_with(options());
    let o = Options::default().watch_follow(false);
    let watcher = Subscriber::watch_with_options(watch_url(&server), &o).expect("watcher");
    let changes = watcher.changes();
    wait_for_list(&changes, &[]);
    let a = Client::new(server.survey_url(), NA).expect("client");
    wait_for_list(&changes, &[NA]);
    let s = stats_until(&server, "a held request", |s| s.watch_held == 1);
    assert_eq!((s.watch_offers, s.watch_followers), (0, 0), "{s:?}");
    a.shutdown();
}

/// A REQ peer that knows nothing of broadcasts (like `nngcat --req0`)
/// gets snapshots; one that sends the follow flag gets the offer; a bare
/// SUB on the broadcast URL reads each change as a delta broadcast.
#[test]
fn third_parties_get_snapshots_offers_and_broadcasts() {
    let server = common::tcp_server_with(options());
    let a = Client::new(server.survey_url(), NA).expect("client");
    let observer = Subscriber::new(server.publish_url()).expect("subscriber");
    wait_for_list(&observer.changes(), &[NA]);
    let req = Socket::new(Protocol::Req0).expect("REQ");
    req.set_opt::<RecvTimeout>(Some(patience()))
        .expect("timeout");
    req.dial(watch_url(&server)).expect("dial");
    let ask = |body: &[u8]| {
        req.send(Message::from(body)).expect("send");
        req.recv().expect("a reply").as_slice().to_vec()
    };
    // An empty body and (0, 0): snapshots, as ever.
    for body in [&b""[..], &watch_wire::encode_request(Position::NOTHING)[..]] {
        match watch_wire::decode_reply(&ask(body)) {
            Ok(Reply::Snapshot { names, .. }) => assert_eq!(names, [NA]),
            other => panic!("{other:?}"),
        }
    }
    // The follow flag: the offer, with the URL as bound.
    let offer = ask(&watch_wire::encode_follow_request(Position::NOTHING));
    let Ok(FollowReply::Offer { at, url }) = watch_wire::decode_follow_reply(&offer) else {
        panic!("not an offer: {offer:?}")
    };
    assert_eq!(Some(url.as_str()), server.watch_broadcast_url());
    assert!(at.revision >= 1, "{at}");
    // A catch-up from the current position: a keepalive, at once.
    match watch_wire::decode_reply(&ask(&watch_wire::encode_follow_request(at))) {
        Ok(Reply::Keepalive { at: k }) => assert_eq!(k, at),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().watch_held, 0);
    // A bare SUB: once its connection is up, the next change arrives as
    // a delta from the revision offered.
    let sub = Socket::new(Protocol::Sub0).expect("SUB");
    sub.set_opt::<Subscribe>(Vec::new()).expect("subscribe");
    sub.set_opt::<RecvTimeout>(Some(patience()))
        .expect("timeout");
    let (up_tx, up) = crossbeam_channel::unbounded();
    sub.pipe_notify(move |_, e| {
        if e == PipeEvent::AddPost {
            let _ = up_tx.send(());
        }
    })
    .expect("pipe_notify");
    sub.dial(&url).expect("dial");
    up.recv_timeout(patience()).expect("SUB connected");
    stats_until(&server, "the SUB counted", |s| s.watch_followers == 1);
    let b = Client::new(server.survey_url(), NB).expect("client");
    wait_for_list(&observer.changes(), &[NA, NB]);
    let broadcast = loop {
        let msg = sub.recv().expect("a broadcast");
        match watch_wire::decode_broadcast(msg.as_slice()).expect("valid") {
            Broadcast::Keepalive { .. } => continue,
            delta => break delta,
        }
    };
    assert_eq!(
        broadcast,
        Broadcast::Delta {
            epoch: at.epoch,
            from: at.revision,
            to: at.revision + 1,
            joined: vec![NB.to_string()],
            left: vec![],
        }
    );
    drop((a, b));
}

/// A scripted server (cooked REP + PUB, driven by the test) that loses,
/// skips and garbles broadcasts: the follower catches up over REQ and
/// never delivers a list the server did not have.
#[test]
fn a_follower_that_misses_broadcasts_catches_up_and_never_delivers_a_wrong_list() {
    let server = Scripted::new();
    let (publisher, sub_up) = publisher_telling_connections();
    let pub_url = listen(&publisher);
    // Offered with a wildcard host: the follower uses the watch URL's.
    let offered = pub_url.replace("127.0.0.1", "0.0.0.0");
    let o = Options::default().watch_keepalive(Duration::from_secs(3600));
    let watcher = Subscriber::watch_with_options(server.url.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    const E: u64 = 0xbead;
    let at = |r| Position::new(E, r);
    let request = || server.request();
    let reply = |body: Vec<u8>| server.reply(body);
    let broadcast = |b: Broadcast| {
        let mut body = Vec::new();
        watch_wire::encode_broadcast(&b, &mut body);
        publisher.send(Message::from(&body[..])).expect("publish");
    };
    let delta = |from, to, joined: &[&str], left: &[&str]| Broadcast::Delta {
        epoch: E,
        from,
        to,
        joined: joined.iter().map(|n| n.to_string()).collect(),
        left: left.iter().map(|n| n.to_string()).collect(),
    };
    // The probe, then a plain snapshot request.
    assert_eq!(request(), (Position::NOTHING, watch_wire::CAN_FOLLOW));
    let mut body = Vec::new();
    watch_wire::encode_offer(at(1), &offered, &mut body);
    reply(body);
    assert_eq!(request(), (Position::NOTHING, 0), "a plain (0, 0)");
    sub_up
        .recv_timeout(patience())
        .expect("the follower subscribed");
    let mut body = Vec::new();
    watch_wire::encode_snapshot(at(1), ["a"], &mut body);
    reply(body);
    expect(&changes, &["a"]);
    // The SUB connection came up while the snapshot was asked for: what
    // changed before it could carry broadcasts is asked for once.
    assert_eq!(request(), (at(1), watch_wire::CAN_FOLLOW), "a catch-up");
    server.reply_keepalive(at(1));
    // In sequence.
    broadcast(delta(1, 2, &["b"], &[]));
    expect(&changes, &["a", "b"]);
    // 2 -> 3 lost: 3 -> 4 is a gap, the follower asks from 2.
    broadcast(delta(3, 4, &["d"], &[]));
    assert_eq!(request(), (at(2), watch_wire::CAN_FOLLOW));
    let mut body = Vec::new();
    watch_wire::encode_delta(at(4), ["c", "d"], [], &mut body);
    reply(body);
    expect(&changes, &["a", "b", "c", "d"]);
    // A duplicate and an old one change nothing; a keepalive ahead asks.
    broadcast(delta(3, 4, &["d"], &[]));
    broadcast(Broadcast::Keepalive { at: at(5) });
    assert_eq!(request(), (at(4), watch_wire::CAN_FOLLOW));
    let mut body = Vec::new();
    watch_wire::encode_delta(at(5), [], ["a"], &mut body);
    reply(body);
    expect(&changes, &["b", "c", "d"]);
    // A delta that does not apply (removes a name not held): a snapshot.
    broadcast(delta(5, 6, &[], &["zz"]));
    assert_eq!(request(), (Position::NOTHING, 0));
    let mut body = Vec::new();
    watch_wire::encode_snapshot(at(6), ["b"], &mut body);
    reply(body);
    expect(&changes, &["b"]);
    // A coalesced delta spanning two revisions applies as one.
    broadcast(delta(6, 8, &["e"], &["b"]));
    expect(&changes, &["e"]);
    assert_eq!(
        server.rep.try_recv().err(),
        Some(nng::Error::TryAgain),
        "nothing held"
    );
    watcher.shutdown();
}

/// A watch server scripted by the test: a cooked REP socket on a free
/// loopback port, whose requests the test reads and answers by hand.
struct Scripted {
    rep: Socket,
    url: String,
}

impl Scripted {
    fn new() -> Scripted {
        let rep = Socket::new(Protocol::Rep0).expect("REP");
        rep.set_opt::<RecvTimeout>(Some(patience()))
            .expect("timeout");
        let url = listen(&rep);
        Scripted { rep, url }
    }

    /// The next request: its position and flags.
    fn request(&self) -> (Position, u8) {
        let msg = self.rep.recv().expect("a request");
        watch_wire::decode_request_flags(msg.as_slice())
    }

    fn reply(&self, body: Vec<u8>) {
        self.rep.send(Message::from(&body[..])).expect("reply");
    }

    fn reply_keepalive(&self, at: Position) {
        let mut body = Vec::new();
        watch_wire::encode_keepalive(at, &mut body);
        self.reply(body);
    }

    /// Answers the probe with an offer of `broadcast_url` and the plain
    /// `(0, 0)` that follows with a snapshot of `names` at `at`.
    fn offer_then_snapshot(&self, at: Position, broadcast_url: &str, names: &[&str]) {
        assert_eq!(self.request(), (Position::NOTHING, watch_wire::CAN_FOLLOW));
        let mut body = Vec::new();
        watch_wire::encode_offer(at, broadcast_url, &mut body);
        self.reply(body);
        assert_eq!(self.request(), (Position::NOTHING, 0), "a plain (0, 0)");
        let mut body = Vec::new();
        watch_wire::encode_snapshot(at, names.iter().copied(), &mut body);
        self.reply(body);
    }
}

/// A PUB socket, and a channel that gets a message per connection made
/// to it.
fn publisher_telling_connections() -> (Socket, Receiver<()>) {
    let publisher = Socket::new(Protocol::Pub0).expect("PUB");
    let (up_tx, up) = crossbeam_channel::unbounded();
    publisher
        .pipe_notify(move |_, e| {
            if e == PipeEvent::AddPost {
                let _ = up_tx.send(());
            }
        })
        .expect("pipe_notify");
    (publisher, up)
}

/// Binds `socket` on a free loopback port; returns its URL.
fn listen(socket: &Socket) -> String {
    let listener = nng::Listener::new(socket, "tcp://127.0.0.1:0").expect("listen");
    match listener
        .get_opt::<nng::options::LocalAddr>()
        .expect("local address")
    {
        // NNG gives the port in network byte order (see NOTES).
        nng::SocketAddr::Inet(a) => format!("tcp://127.0.0.1:{}", u16::from_be(a.port())),
        other => panic!("not an IPv4 address: {other:?}"),
    }
}

/// The next list must be `want`: every list the scripted server's follower
/// delivers is one the server had, in order.
fn expect(changes: &Receiver<Vec<String>>, want: &[&str]) {
    let got = changes
        .recv_timeout(patience())
        .unwrap_or_else(|e| panic!("no list within {:?} (wanted {want:?}): {e}", patience()));
    assert_eq!(got, want);
}

#[test]
fn the_daemon_prints_its_broadcast_url_and_serves_followers() {
    let Some(bin) = binary() else { return };
    let server = Proc::start(
        bin,
        &[
            "server",
            "--survey",
            "tcp://127.0.0.1:0",
            "--publish",
            "tcp://127.0.0.1:0",
            "--watch",
            "tcp://127.0.0.1:0",
            "--watch-broadcast",
            "tcp://0.0.0.0:0",
        ],
    );
    let survey = server.next_url("survey");
    let _publish = server.next_url("publish");
    let watch = server.next_url("watch");
    let broadcast = server.next_url("watch broadcast");
    assert!(broadcast.starts_with("tcp://0.0.0.0:"), "{broadcast}");
    let watcher = Subscriber::watch(watch.as_str()).expect("watcher");
    let a = Client::new(survey.as_str(), NA).expect("client");
    // The default first publish delay (3 s) passes first.
    common::wait_for(
        &watcher.changes(),
        |l| l == [NA],
        common::daemon::patience(),
    );
    drop(a);
}

#[test]
fn a_follower_of_a_restarted_server_follows_the_new_one() {
    // Fixed URLs, so that the restarted server is where the old one was.
    let (survey, publish) = common::reserved_tcp_urls();
    let (watch, broadcast) = common::reserved_tcp_urls();
    let o = options()
        .watch_url(watch.clone())
        .watch_broadcast_url(broadcast);
    let start = || Server::new(&survey, &publish, o.clone()).expect("server on fixed URLs");
    let server = start();
    let watcher = Subscriber::watch_with_options(watch.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    let x = Client::with_options(survey.as_str(), None, "x", &o).expect("client");
    wait_for_list(&changes, &["x"]);
    server.shutdown();
    let server = start();
    // A new name proves that the watcher follows the new server (another
    // epoch) and not a memory of the old.
    let y = Client::with_options(survey.as_str(), None, "y", &o).expect("client");
    wait_for_list(&changes, &["x", "y"]);
    stats_until(&server, "a follower again", |s| s.watch_followers == 1);
    y.shutdown();
    wait_for_list(&changes, &["x"]);
    drop((x, server));
}

/// An offered broadcast URL that does not connect: after one keepalive
/// interval the watcher watches over REQ/REP instead.
#[test]
fn an_unreachable_broadcast_falls_back_to_req_rep() {
    let server = Scripted::new();
    // A port nothing listens on: bound a moment ago, then closed.
    let (closed, _) = common::reserved_tcp_urls();
    let keepalive = slow(Duration::from_millis(500));
    let o = Options::default().watch_keepalive(keepalive);
    let watcher = Subscriber::watch_with_options(server.url.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    let at = Position::new(0xfeed, 3);
    server.offer_then_snapshot(at, &closed, &["a"]);
    expect(&changes, &["a"]);
    // Fallen back: a catch-up (answered at once, so that the silence
    // limit is not reached), then the classic loop from the position held.
    assert_eq!(server.request(), (at, watch_wire::CAN_FOLLOW), "a catch-up");
    server.reply_keepalive(at);
    assert_eq!(server.request(), (at, 0));
    // The server holds each plain request for a keepalive interval, as a
    // real one does: the watcher keeps watching, it never takes the
    // server for a silent one and starts over with a probe.
    for _ in 0..3 {
        std::thread::sleep(keepalive);
        server.reply_keepalive(at);
        assert_eq!(server.request(), (at, 0), "the classic loop goes on");
    }
    watcher.shutdown();
}

/// An offered broadcast URL that comes up only after the watcher fell
/// back to REQ/REP (a listener too busy to accept in time): once its
/// connection is up, the watcher follows the broadcast again, catching up
/// from the list it holds.
#[test]
fn a_broadcast_that_connects_late_is_followed_again() {
    let server = Scripted::new();
    // A port nothing listens on yet.
    let (late, _) = common::reserved_tcp_urls();
    let o = Options::default()
        .watch_keepalive(slow(Duration::from_millis(500)))
        .reconnect_max(Duration::from_millis(200));
    let watcher = Subscriber::watch_with_options(server.url.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    let at = Position::new(0xface, 3);
    server.offer_then_snapshot(at, &late, &["a"]);
    expect(&changes, &["a"]);
    // Fallen back: a catch-up, then the classic loop from the position
    // held.
    assert_eq!(server.request(), (at, watch_wire::CAN_FOLLOW), "a catch-up");
    server.reply_keepalive(at);
    assert_eq!(server.request(), (at, 0));
    // The broadcast comes up: the watcher connects and catches up.
    let (publisher, sub_up) = publisher_telling_connections();
    let _listener = nng::Listener::new(&publisher, &late).expect("listen on the offered URL");
    sub_up
        .recv_timeout(patience())
        .expect("the watcher connected");
    assert_eq!(server.request(), (at, watch_wire::CAN_FOLLOW), "a catch-up");
    server.reply_keepalive(at);
    // Following: a broadcast delta reaches the list.
    let mut body = Vec::new();
    watch_wire::encode_broadcast(
        &Broadcast::Delta {
            epoch: at.epoch,
            from: at.revision,
            to: at.revision + 1,
            joined: vec!["b".to_string()],
            left: vec![],
        },
        &mut body,
    );
    publisher.send(Message::from(&body[..])).expect("publish");
    expect(&changes, &["a", "b"]);
    watcher.shutdown();
}

/// A broadcast that falls silent (no keepalive either): the follower asks
/// for a catch-up after 1.5 keepalive intervals, and the keepalive reply
/// keeps the server counting: it never starts over with a probe.
#[test]
fn a_silent_broadcast_is_checked_with_catch_ups_not_taken_for_a_dead_server() {
    let server = Scripted::new();
    let publisher = Socket::new(Protocol::Pub0).expect("PUB");
    let pub_url = listen(&publisher);
    let o = Options::default().watch_keepalive(slow(Duration::from_millis(300)));
    let watcher = Subscriber::watch_with_options(server.url.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    let at = Position::new(0xc0de, 4);
    server.offer_then_snapshot(at, &pub_url, &["a"]);
    expect(&changes, &["a"]);
    for _ in 0..3 {
        assert_eq!(server.request(), (at, watch_wire::CAN_FOLLOW), "a catch-up");
        server.reply_keepalive(at);
    }
    common::assert_quiet(&changes, slow(Duration::from_millis(100)));
    watcher.shutdown();
}
