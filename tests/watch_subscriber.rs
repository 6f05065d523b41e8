//! The watch protocol's watcher side behind the public API (issue 14):
//! `Subscriber::watch`, `Client::with_watch`, against in-process servers,
//! `nng-discovery server --watch` children (one hung with SIGSTOP) and a
//! scripted fake server that sends deltas which do not apply.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{binary, slow_arg, Proc};
use common::{assert_quiet, patience, slow, wait_for_list};
use nng::options::{Options as _, RecvTimeout};
use nng::{Message, Protocol, Socket};
use nng_discovery::watch_wire::{self, Position};
use nng_discovery::{Client, Options, Server, Subscriber};

/// Options with the fast heartbeat, a watch URL on a free loopback port,
/// the given keepalive, and fast redials.
fn watch_options(keepalive: Duration) -> Options {
    common::fast_options()
        .watch_url("tcp://127.0.0.1:0")
        .watch_keepalive(keepalive)
        .reconnect_min(Duration::from_millis(10))
        .reconnect_max(slow(Duration::from_millis(100)))
}

/// A server on free loopback ports with a watch URL (keepalive 10 s: the
/// tests below do not depend on it).
fn server() -> Server {
    common::tcp_server_with(watch_options(Duration::from_secs(10)))
}

fn watch_url(server: &Server) -> &str {
    server.watch_url().expect("started with a watch URL")
}

#[test]
fn a_watcher_sees_joins_and_leaves() {
    let server = server();
    let watcher = Subscriber::watch(watch_url(&server)).expect("watcher");
    assert!(watcher.is_watching());
    assert_eq!(watcher.publish_urls(), [watch_url(&server)]);
    let changes = watcher.changes();
    // The first list arrives at once, even empty.
    wait_for_list(&changes, &[]);
    // Names long enough that a join or leave among others is a delta
    // (the server sends a snapshot when that is the smaller).
    let (na, nb, nc) = (
        "http://10.0.0.1:8080",
        "http://10.0.0.2:8080",
        "http://10.0.0.3:8080",
    );
    let c = Client::new(server.survey_url(), nc).expect("client");
    wait_for_list(&changes, &[nc]);
    let b = Client::new(server.survey_url(), nb).expect("client");
    wait_for_list(&changes, &[nb, nc]);
    let a = Client::new(server.survey_url(), na).expect("client");
    // Sorted, whatever the order of joining.
    wait_for_list(&changes, &[na, nb, nc]);
    b.shutdown();
    wait_for_list(&changes, &[na, nc]);
    a.shutdown();
    wait_for_list(&changes, &[nc]);
    // Only changes: nothing more while nothing changes.
    assert_quiet(&changes, slow(Duration::from_millis(300)));
    let s = server.stats();
    assert_eq!(s.subscribers, 0, "nothing on the publish URL: {s:?}");
    // [c] -> [b, c] -> [a, b, c] -> [a, c] went as deltas ([a, c] -> [c]
    // as a snapshot: "c" is shorter than "-a...").
    assert!(s.watch_deltas >= 3, "{s:?}");
    c.shutdown();
    wait_for_list(&changes, &[]);
    watcher.shutdown();
    // The channel disconnects once the watcher is gone.
    assert!(changes.recv_timeout(patience()).is_err());
}

#[test]
fn a_restarted_server_is_followed_again() {
    // Fixed URLs, so that the restarted server is where the old one was.
    let (survey, publish) = common::reserved_tcp_urls();
    let (watch, _) = common::reserved_tcp_urls();
    let o = watch_options(Duration::from_secs(10)).watch_url(watch.clone());
    let start = || Server::new(&survey, &publish, o.clone()).expect("server on fixed URLs");
    let server = start();
    let watcher = Subscriber::watch_with_options(watch.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    let x = Client::with_options(survey.as_str(), None, "x", &o).expect("client");
    wait_for_list(&changes, &["x"]);
    server.shutdown();
    let server = start();
    // x redials the new server; a new name proves that the watcher
    // follows the new server (another epoch) and not a memory of the old.
    let y = Client::with_options(survey.as_str(), None, "y", &o).expect("client");
    wait_for_list(&changes, &["x", "y"]);
    y.shutdown();
    wait_for_list(&changes, &["x"]);
    drop((x, server));
}

#[test]
fn a_watcher_of_two_servers_delivers_the_union() {
    let one = server();
    let two = server();
    let watcher =
        Subscriber::watch([watch_url(&one), watch_url(&two)]).expect("watcher of two servers");
    let changes = watcher.changes();
    let a = Client::new(one.survey_url(), "a").expect("client of one");
    let b = Client::new(two.survey_url(), "b").expect("client of two");
    let both = Client::new([one.survey_url(), two.survey_url()], "both").expect("client of both");
    wait_for_list(&changes, &["a", "b", "both"]);
    // Server one stops: its connection closes, its names that only it
    // lists go at once.
    one.shutdown();
    wait_for_list(&changes, &["b", "both"]);
    drop((a, b, both));
    wait_for_list(&changes, &[]);
}

#[test]
fn a_client_following_a_watch_url_is_listed_and_receives_lists() {
    let server = server();
    let o = watch_options(Duration::from_secs(10));
    let c = Client::with_watch(server.survey_url(), watch_url(&server), "c").expect("client");
    let c_peers = c.peers().expect("a client with a watch has peers");
    wait_for_list(&c_peers, &["c"]);
    let d = Client::builder(server.survey_url(), "d")
        .watch([watch_url(&server)])
        .options(o.clone())
        .build()
        .expect("client");
    let d_peers = d.peers().expect("peers");
    wait_for_list(&c_peers, &["c", "d"]);
    wait_for_list(&d_peers, &["c", "d"]);
    // It stays a client: unavailable, it leaves every list, and keeps
    // receiving them.
    c.set_available(false);
    wait_for_list(&c_peers, &["d"]);
    wait_for_list(&d_peers, &["d"]);
    d.shutdown();
    wait_for_list(&c_peers, &[]);
    assert!(Client::with_watch(server.survey_url(), Vec::<String>::new(), "e").is_err());
}

/// A server that hangs (SIGSTOP) with its connections open stops counting
/// once it has been silent for two keepalives: a client that leaves
/// meanwhile is dropped from the union (the other server dropped it at
/// once); the hung server counts again once it answers.
#[test]
fn a_hung_server_stops_counting_after_two_keepalives() {
    let Some(bin) = binary() else { return };
    let keepalive = Duration::from_millis(200);
    let start = || {
        let poll = slow_arg(Duration::from_secs(1));
        let survey_time = slow_arg(Duration::from_millis(100));
        let keepalive = slow_arg(keepalive);
        let p = Proc::start(
            bin,
            &[
                "server",
                "--survey",
                "tcp://127.0.0.1:0",
                "--publish",
                "tcp://127.0.0.1:0",
                "--watch",
                "tcp://127.0.0.1:0",
                "--watch-keepalive",
                &keepalive,
                "--poll-interval",
                &poll,
                "--survey-time",
                &survey_time,
            ],
        );
        let survey = p.next_url("survey");
        let _publish = p.next_url("publish");
        let watch = p.next_url("watch");
        (p, survey, watch)
    };
    let (hung, s0, w0) = start();
    let (_live, s1, w1) = start();
    let o = watch_options(slow(keepalive));
    let watcher = Subscriber::watch_with_options([&w0, &w1], &o).expect("watcher");
    let changes = watcher.changes();
    let a = Client::with_options([&s0, &s1], None, "a", &o).expect("client");
    let x = Client::with_options([&s0, &s1], None, "x", &o).expect("client");
    wait_for_list(&changes, &["a", "x"]);

    hung.signal(libc::SIGSTOP);
    let left = Instant::now();
    x.shutdown();
    // Two keepalives of silence (400 ms) and x is gone; the bound is over
    // 10x that, plus the usual patience.
    let silence = slow(keepalive) * 2;
    common::wait_for(&changes, |l| l == ["a"], silence * 10 + patience());
    eprintln!(
        "x gone {:?} after leaving, a server hung (silence limit {silence:?})",
        left.elapsed()
    );

    // The server resumes: it answers again and counts again. A name that
    // only it lists shows that.
    hung.signal(libc::SIGCONT);
    let only_hung = Client::with_options(s0.as_str(), None, "only-hung", &o).expect("client");
    // Every list on the way is printed: whether the resumed server's first
    // answers still name x (its stale state) shows here.
    let seen = std::cell::RefCell::new(Vec::new());
    let want = common::names(&["a", "only-hung"]);
    common::wait_for(
        &changes,
        |l| {
            seen.borrow_mut().push(l.to_vec());
            l == want.as_slice()
        },
        patience(),
    );
    let seen = seen.into_inner();
    eprintln!("lists after SIGCONT: {seen:?}");
    drop((a, only_hung, hung));
}

/// A scripted watch server: a cooked REP socket answering one request at a
/// time, driven by the test.
struct FakeServer {
    socket: Socket,
    url: String,
}

impl FakeServer {
    fn new() -> FakeServer {
        let socket = Socket::new(Protocol::Rep0).expect("REP socket");
        socket
            .set_opt::<RecvTimeout>(Some(patience()))
            .expect("RecvTimeout");
        let listener = nng::Listener::new(&socket, "tcp://127.0.0.1:0").expect("listen");
        let port = match listener
            .get_opt::<nng::options::LocalAddr>()
            .expect("local address")
        {
            // NNG gives the port in network byte order (see NOTES).
            nng::SocketAddr::Inet(a) => u16::from_be(a.port()),
            other => panic!("not an IPv4 address: {other:?}"),
        };
        // The listener (a handle) lives as long as the socket.
        let _ = listener;
        FakeServer {
            socket,
            url: format!("tcp://127.0.0.1:{port}"),
        }
    }

    /// Waits for the next request and returns the position it holds.
    fn request(&self) -> Position {
        let msg = self
            .socket
            .recv()
            .unwrap_or_else(|e| panic!("no watch request within {:?}: {e}", patience()));
        watch_wire::decode_request(msg.as_slice())
    }

    fn reply(&self, body: Vec<u8>) {
        self.socket
            .send(Message::from(&body[..]))
            .unwrap_or_else(|(_, e)| panic!("replying: {e}"));
    }

    fn snapshot(&self, at: Position, names: &[&str]) {
        let mut body = Vec::new();
        watch_wire::encode_snapshot(at, names.iter().copied(), &mut body);
        self.reply(body);
    }

    fn delta(&self, at: Position, joined: &[&str], left: &[&str]) {
        let mut body = Vec::new();
        watch_wire::encode_delta(at, joined.iter().copied(), left.iter().copied(), &mut body);
        self.reply(body);
    }
}

/// Deltas that do not apply (removing a name not held, adding one held,
/// another epoch) are never delivered: the watcher asks for a snapshot
/// with (0, 0) and delivers that.
#[test]
fn a_delta_that_does_not_apply_heals_through_a_snapshot() {
    let fake = FakeServer::new();
    // A long keepalive: the fake never sends one, and silence must not
    // interfere.
    let o = Options::default().watch_keepalive(Duration::from_secs(3600));
    let watcher = Subscriber::watch_with_options(fake.url.as_str(), &o).expect("watcher");
    let changes = watcher.changes();
    let epoch = 0x5eed;
    let at = |rev| Position::new(epoch, rev);
    // Long enough to see a wrong list that would be offered microseconds
    // after the watcher's next request (over 100x that, slower under qemu).
    let quiet = slow(Duration::from_millis(100));

    assert_eq!(fake.request(), Position::NOTHING);
    fake.snapshot(at(1), &["a"]);
    assert_eq!(fake.request(), at(1));
    wait_for_list(&changes, &["a"]);

    // Removes a name the watcher does not hold (and adds x): refused.
    fake.delta(at(2), &["x"], &["zzz"]);
    assert_eq!(fake.request(), Position::NOTHING, "asks for a snapshot");
    assert_quiet(&changes, quiet);
    fake.snapshot(at(3), &["a", "b"]);
    assert_eq!(fake.request(), at(3));
    wait_for_list(&changes, &["a", "b"]);

    // Adds a name it already holds: refused.
    fake.delta(at(4), &["a", "y"], &[]);
    assert_eq!(fake.request(), Position::NOTHING, "asks for a snapshot");
    assert_quiet(&changes, quiet);
    fake.snapshot(at(5), &["a", "b", "c"]);
    assert_eq!(fake.request(), at(5));
    wait_for_list(&changes, &["a", "b", "c"]);

    // A delta from another epoch: refused.
    fake.delta(Position::new(epoch + 1, 6), &["z"], &[]);
    assert_eq!(fake.request(), Position::NOTHING, "asks for a snapshot");
    assert_quiet(&changes, quiet);
    fake.snapshot(at(7), &["a", "b", "c", "d"]);
    assert_eq!(fake.request(), at(7));
    wait_for_list(&changes, &["a", "b", "c", "d"]);

    // A good delta applies.
    fake.delta(at(8), &["e"], &["a"]);
    assert_eq!(fake.request(), at(8));
    wait_for_list(&changes, &["b", "c", "d", "e"]);
}

/// One thread per watching subscriber whatever the number of watch URLs,
/// and no thread or descriptor left once it is dropped.
#[test]
fn threads_do_not_grow_with_the_number_of_watch_urls() {
    if !common::is_child() {
        return common::run_isolated("threads_do_not_grow_with_the_number_of_watch_urls");
    }
    let servers: Vec<Server> = (0..3).map(|_| server()).collect();
    let urls: Vec<&str> = servers.iter().map(watch_url).collect();
    let names = |n: usize| -> Vec<&str> { ["a", "b", "c"][..n].to_vec() };
    let clients: Vec<Client> = servers
        .iter()
        .zip(names(3))
        .map(|(s, n)| Client::new(s.survey_url(), n).expect("client"))
        .collect();
    // Warm NNG's shared pool up first.
    {
        let warm = Subscriber::watch(&urls[..]).expect("watcher");
        wait_for_list(&warm.changes(), &["a", "b", "c"]);
    }
    let (base_threads, base_fds) = common::settled_counts();

    let one = Subscriber::watch(urls[0]).expect("watcher of one");
    wait_for_list(&one.changes(), &["a"]);
    assert_eq!(common::settled_counts().0, base_threads + 1, "one URL");
    drop(one);
    let three = Subscriber::watch(&urls[..]).expect("watcher of three");
    wait_for_list(&three.changes(), &["a", "b", "c"]);
    assert_eq!(common::settled_counts().0, base_threads + 1, "three URLs");
    let client = Client::with_watch(servers[0].survey_url(), &urls[..], "d").expect("client");
    wait_for_list(&client.peers().expect("peers"), &["a", "b", "c", "d"]);
    assert_eq!(
        common::settled_counts().0,
        base_threads + 3,
        "and a client following three watch URLs"
    );
    drop((three, client));
    assert_eq!(
        common::settled_counts(),
        (base_threads, base_fds),
        "(threads, fds) once the watchers are gone"
    );
    drop(clients);
}
