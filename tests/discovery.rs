//! The behaviour of servers, clients and subscribers together: every scenario
//! of the Go original's suite (gopherdiscovery's `server_test.go`), then the
//! promises this crate adds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nng_discovery::wire::MAX_NAME_LEN;
use nng_discovery::{Client, Error, Options, Server, Subscriber};

fn client(survey_url: &str, name: &str) -> Client {
    match Client::new(survey_url, name) {
        Ok(c) => c,
        Err(e) => panic!("Client::new({survey_url:?}, {name:?}): {e}"),
    }
}

fn client_sub(server: &Server, name: &str) -> Client {
    match Client::with_subscription(server.survey_url(), server.publish_url(), name) {
        Ok(c) => c,
        Err(e) => panic!("Client::with_subscription(.., {name:?}): {e}"),
    }
}

fn subscriber(publish_url: &str) -> Subscriber {
    match Subscriber::new(publish_url) {
        Ok(s) => s,
        Err(e) => panic!("Subscriber::new({publish_url:?}): {e}"),
    }
}

fn peers(client: &Client) -> crossbeam_channel::Receiver<Vec<String>> {
    match client.peers() {
        Ok(rx) => rx,
        Err(e) => panic!("client {} has no peers channel: {e}", client.service()),
    }
}

// ---------------------------------------------------------------------------
// The Go original's scenarios.
// ---------------------------------------------------------------------------

#[test]
fn server_shuts_down_cleanly() {
    // In a child process: NNG may abort the process here (see
    // servers_created_and_dropped_at_once_do_not_crash).
    if !is_child() {
        return run_isolated("server_shuts_down_cleanly");
    }
    let server = tcp_server();
    assert!(server.survey_url().starts_with("tcp://127.0.0.1:"));
    assert!(
        !server.survey_url().ends_with(":0"),
        "{}",
        server.survey_url()
    );
    assert!(
        !server.publish_url().ends_with(":0"),
        "{}",
        server.publish_url()
    );
    assert_ne!(server.survey_url(), server.publish_url());
    within(patience(), "Server::shutdown", move || server.shutdown());

    // Dropping does the same.
    let server = tcp_server();
    within(patience(), "dropping a server", move || drop(server));
}

#[test]
fn servers_created_and_dropped_at_once_do_not_crash() {
    if !is_child() {
        return run_isolated("servers_created_and_dropped_at_once_do_not_crash");
    }
    // Dropping a server right after creating it: its threads are still
    // starting and the first heartbeat survey is going out.
    for i in 0..60 {
        let (s, p) = match i % 3 {
            0 => (
                "tcp://127.0.0.1:0".to_owned(),
                "tcp://127.0.0.1:0".to_owned(),
            ),
            1 => (ipc_url("hasty-s"), ipc_url("hasty-p")),
            _ => (inproc_url("hasty-s"), inproc_url("hasty-p")),
        };
        let server = Server::new(&s, &p, Options::default()).expect("server");
        within(patience(), "dropping a new server", move || drop(server));
    }
    // Sends still pending in NNG time out after the 1 s send timeout: give
    // a crash that late the chance to show (an observation window, not a
    // synchronisation).
    std::thread::sleep(Duration::from_millis(1500));
    let server = tcp_server();
    let _c = client(server.survey_url(), "alive");
    wait_for_list(&server.changes(), &["alive"]);
}

#[test]
fn clients_and_subscribers_dropped_at_once_do_not_hang() {
    // Dropping right after creating: the background thread is just
    // starting its first receive as the socket closes.
    let server = tcp_server();
    let anchor = client(server.survey_url(), "anchor");
    wait_for_list(&server.changes(), &["anchor"]);
    for i in 0..100 {
        let (s, p) = (
            server.survey_url().to_owned(),
            server.publish_url().to_owned(),
        );
        within(
            patience(),
            &format!("dropping a new client (#{i})"),
            move || drop(Client::new(&s, "hasty").expect("client")),
        );
        let p2 = p.clone();
        within(
            patience(),
            &format!("dropping a new subscriber (#{i})"),
            move || drop(Subscriber::new(&p2).expect("subscriber")),
        );
        let s = server.survey_url().to_owned();
        within(
            patience(),
            &format!("dropping a new client with a subscription (#{i})"),
            move || drop(Client::with_subscription(&s, &p, "hasty-sub").expect("client")),
        );
    }
    drop(anchor);
    wait_for_list(&server.changes(), &[]);
}

#[test]
fn server_and_client_shut_down() {
    if !is_child() {
        return run_isolated("server_and_client_shut_down");
    }
    let server = tcp_server();
    let client = client_sub(&server, "client1");
    // As in the Go suite, the server goes first: the client must not hang
    // on a server that is gone.
    within(patience(), "Server::shutdown", move || server.shutdown());
    within(patience(), "Client::shutdown", move || client.shutdown());
}

#[test]
fn one_client_is_discovered() {
    let server = tcp_server();
    let client = client_sub(&server, "client1");
    let list = wait_for_list(&peers(&client), &["client1"]);
    assert_eq!(server.peers(), list);
    server.shutdown();
    client.shutdown();
}

#[test]
fn three_clients_each_see_all_three() {
    let server = tcp_server();
    let clients: Vec<Client> = ["client1", "client2", "client3"]
        .iter()
        .map(|n| client_sub(&server, n))
        .collect();
    for c in &clients {
        wait_for_list(&peers(c), &["client1", "client2", "client3"]);
    }
    assert_eq!(server.peers(), names(&["client1", "client2", "client3"]));
    server.shutdown();
    for c in clients {
        c.shutdown();
    }
}

#[test]
fn clients_added_one_by_one_appear() {
    let server = tcp_server();
    let one = client_sub(&server, "client1");
    let rx = peers(&one);
    wait_for_list(&rx, &["client1"]);

    let two = client_sub(&server, "client2");
    wait_for_list(&rx, &["client1", "client2"]);
    wait_for_list(&peers(&two), &["client1", "client2"]);

    let three = client_sub(&server, "client3");
    wait_for_list(&rx, &["client1", "client2", "client3"]);
    wait_for_list(&peers(&two), &["client1", "client2", "client3"]);
    wait_for_list(&peers(&three), &["client1", "client2", "client3"]);
    assert_eq!(server.peers(), names(&["client1", "client2", "client3"]));
}

#[test]
fn cancelled_clients_disappear_quickly() {
    // A heartbeat so slow (hourly) that only the connection closing can
    // explain a leave within `patience()`.
    let slow = Options::default()
        .poll_interval(NEVER)
        .survey_time(Duration::from_secs(1));
    let server = tcp_server_with(slow);
    let one = client_sub(&server, "client1");
    let two = client_sub(&server, "client2");
    let three = client_sub(&server, "client3");
    let rx = peers(&one);
    wait_for_list(&rx, &["client1", "client2", "client3"]);

    let start = Instant::now();
    three.shutdown();
    wait_for_list(&rx, &["client1", "client2"]);
    assert_eq!(server.peers(), names(&["client1", "client2"]));
    // Dropping is a cancel too.
    drop(two);
    wait_for_list(&rx, &["client1"]);
    assert_eq!(server.peers(), names(&["client1"]));
    // Both waits are bounded by `patience()`, far below the poll interval;
    // say so in case that ever changes.
    let elapsed = start.elapsed();
    assert!(
        elapsed < NEVER / 2,
        "leaving took {elapsed:?}: the connection close was not noticed"
    );
}

#[test]
fn nothing_is_published_while_nothing_changes() {
    let server = tcp_server();
    let clients: Vec<Client> = ["client1", "client2", "client3"]
        .iter()
        .map(|n| client_sub(&server, n))
        .collect();
    let sub = subscriber(server.publish_url());
    let server_rx = server.changes();
    for c in &clients {
        wait_for_list(&peers(c), &["client1", "client2", "client3"]);
    }
    wait_for_list(&sub.changes(), &["client1", "client2", "client3"]);
    wait_for_list(&server_rx, &["client1", "client2", "client3"]);

    // Five heartbeat rounds go by, every client answering every survey: no
    // list is news.
    assert_quiet(&peers(&clients[0]), poll() * 5);
    for c in &clients[1..] {
        assert_quiet(&peers(c), Duration::ZERO);
    }
    assert_quiet(&sub.changes(), Duration::ZERO);
    assert_quiet(&server_rx, Duration::ZERO);
}

#[test]
fn republishing_an_unchanged_list_delivers_nothing_new() {
    // The server republishes every 100 ms; subscribers must not hand the
    // same list to the application again.
    let options = fast_options()
        .republish_interval(Duration::from_millis(100))
        .publish_gap(Duration::from_millis(1));
    let server = tcp_server_with(options);
    let one = client_sub(&server, "client1");
    let sub = subscriber(server.publish_url());
    wait_for_list(&peers(&one), &["client1"]);
    wait_for_list(&sub.changes(), &["client1"]);
    assert_quiet(&sub.changes(), Duration::from_secs(1));
    assert_quiet(&peers(&one), Duration::ZERO);
}

#[test]
fn peers_without_subscription_is_an_error() {
    let server = tcp_server();
    let client = client(server.survey_url(), "client1");
    match client.peers() {
        Err(Error::NoSubscription) => {}
        other => panic!("expected Err(NoSubscription), got {other:?}"),
    }
    // It is still listed: it just cannot read the list.
    wait_for_list(&server.changes(), &["client1"]);
    let e = client.peers().expect_err("still no subscription");
    assert!(
        e.to_string().contains("with_subscription"),
        "unhelpful message: {e}"
    );
}

#[test]
fn independent_subscriber_sees_changes() {
    let server = tcp_server();
    let sub = subscriber(server.publish_url());
    let one = client(server.survey_url(), "client1");
    let rx = sub.changes();
    wait_for_list(&rx, &["client1"]);
    let two = client(server.survey_url(), "client2");
    wait_for_list(&rx, &["client1", "client2"]);
    one.shutdown();
    wait_for_list(&rx, &["client2"]);
    assert_eq!(server.peers(), names(&["client2"]));
    drop(two);
    wait_for_list(&rx, &[]);
    assert_eq!(server.peers(), Vec::<String>::new());
}

/// URLs NNG cannot use, starting with the one of the Go suite.
const BAD_URLS: &[&str] = &[
    "tcp://xxx",
    "tcp://:",
    "ipc://",
    "nosuch://127.0.0.1:4000",
    "not a url",
    "",
];

fn expect_invalid_url<T: std::fmt::Debug>(what: &str, result: Result<T, Error>, bad: &str) {
    match result {
        Err(Error::InvalidUrl { url, .. }) => {
            assert_eq!(url, bad, "{what}: the error names another URL");
            let e = Error::InvalidUrl {
                url,
                source: nng::Error::AddressInvalid,
            };
            assert!(e.to_string().contains(&format!("{bad:?}")));
        }
        other => panic!("{what} with {bad:?}: expected Err(InvalidUrl), got {other:?}"),
    }
}

#[test]
fn bad_survey_url_is_refused() {
    let good = tcp_server();
    for &bad in BAD_URLS {
        let bad_owned = bad.to_owned();
        let r = within(patience(), "Server::new with a bad URL", move || {
            Server::new(&bad_owned, "tcp://127.0.0.1:0", fast_options())
        });
        expect_invalid_url("Server::new", r, bad);
        if let Err(e) = Server::new(bad, "tcp://127.0.0.1:0", fast_options()) {
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        expect_invalid_url("Client::new", Client::new(bad, "client1"), bad);
        expect_invalid_url(
            "Client::with_subscription",
            Client::with_subscription(bad, good.publish_url(), "client1"),
            bad,
        );
    }
}

#[test]
fn bad_publish_url_is_refused() {
    let good = tcp_server();
    for &bad in BAD_URLS {
        let bad_owned = bad.to_owned();
        let r = within(patience(), "Server::new with a bad URL", move || {
            Server::new("tcp://127.0.0.1:0", &bad_owned, fast_options())
        });
        expect_invalid_url("Server::new", r, bad);
        expect_invalid_url(
            "Client::with_subscription",
            Client::with_subscription(good.survey_url(), bad, "client1"),
            bad,
        );
        expect_invalid_url("Subscriber::new", Subscriber::new(bad), bad);
    }
}

#[test]
fn out_of_range_port_is_refused_everywhere() {
    // Server::new refuses it; a client or subscriber given it would dial a
    // port that cannot exist, forever, without a word.
    let bad = "tcp://127.0.0.1:99999";
    expect_invalid_url(
        "Server::new",
        Server::new(bad, "tcp://127.0.0.1:0", fast_options()),
        bad,
    );
    expect_invalid_url(
        "Server::new",
        Server::new("tcp://127.0.0.1:0", bad, fast_options()),
        bad,
    );
    expect_invalid_url("Client::new", Client::new(bad, "client1"), bad);
    expect_invalid_url("Subscriber::new", Subscriber::new(bad), bad);
}

// ---------------------------------------------------------------------------
// Beyond the original.
// ---------------------------------------------------------------------------

#[test]
fn late_subscriber_gets_the_current_list_at_once() {
    // Nothing is republished for an hour: only the server noticing the new
    // subscriber can deliver the list within `patience()`.
    let options = fast_options().republish_interval(NEVER);
    let server = tcp_server_with(options);
    let _one = client(server.survey_url(), "client1");
    let _two = client(server.survey_url(), "client2");
    wait_for_list(&server.changes(), &["client1", "client2"]);

    let late = subscriber(server.publish_url());
    let start = Instant::now();
    let got = late
        .changes()
        .recv_timeout(patience())
        .expect("a late subscriber gets the current list without any change");
    assert_eq!(got, names(&["client1", "client2"]));
    assert!(start.elapsed() < NEVER);

    // A late client with a subscription too.
    let three = client_sub(&server, "client3");
    wait_for_list(&peers(&three), &["client1", "client2", "client3"]);
}

#[test]
fn server_channel_delivers_its_first_list_even_if_empty() {
    // Nobody connects: the server's own channel still gets the current
    // list, `[]`, once the first heartbeat round is over (not only at the
    // first republish, 30 s later).
    let server = tcp_server();
    let first = server
        .changes()
        .recv_timeout(patience())
        .expect("the server's first list, with nobody connected");
    assert_eq!(first, Vec::<String>::new());
}

#[test]
fn empty_list_is_delivered_as_empty() {
    let server = tcp_server();
    // A subscriber's first list is delivered even though it is empty.
    let sub = subscriber(server.publish_url());
    let rx = sub.changes();
    let first = rx
        .recv_timeout(patience())
        .expect("the subscriber's first list");
    assert_eq!(first, Vec::<String>::new(), "never [\"\"]");

    let one = client(server.survey_url(), "client1");
    wait_for_list(&rx, &["client1"]);
    let server_rx = server.changes();
    wait_for_list(&server_rx, &["client1"]);
    one.shutdown();
    let last = rx
        .recv_timeout(patience())
        .expect("the list after the last leave");
    assert_eq!(last, Vec::<String>::new(), "never [\"\"]");
    assert!(server.peers().is_empty());
    let server_last = server_rx
        .recv_timeout(patience())
        .expect("the server's list after the last leave");
    assert_eq!(server_last, Vec::<String>::new());
}

#[test]
fn bad_names_are_refused() {
    let server = tcp_server();
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let bad: Vec<&str> = vec![
        "a|b",
        "|",
        "",
        "line\nbreak",
        "nul\0",
        "tab\there",
        "bell\u{7}",
        "c1\u{85}",
        &long,
    ];
    for name in bad {
        for (what, result) in [
            ("Client::new", Client::new(server.survey_url(), name)),
            (
                "Client::with_subscription",
                Client::with_subscription(server.survey_url(), server.publish_url(), name),
            ),
        ] {
            match result {
                Err(e @ Error::InvalidName { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&format!("{name:?}")),
                        "{what}: message does not name {name:?}: {msg}"
                    );
                    match e {
                        Error::InvalidName { name: n, .. } => assert_eq!(n, name),
                        _ => unreachable!(),
                    }
                }
                other => panic!("{what}({name:?}): expected Err(InvalidName), got {other:?}"),
            }
        }
    }

    // The longest allowed name and non-ASCII names travel intact.
    let longest = "y".repeat(MAX_NAME_LEN);
    let _a = client(server.survey_url(), &longest);
    let _b = client(server.survey_url(), "ünïcødé ☃ http://[::1]:80/a?b=c");
    let mut want = vec![
        longest.clone(),
        "ünïcødé ☃ http://[::1]:80/a?b=c".to_owned(),
    ];
    want.sort();
    let got = wait_for(&server.changes(), |l| l == want.as_slice(), patience());
    assert_eq!(got, want);
    let sub = subscriber(server.publish_url());
    wait_for(&sub.changes(), |l| l == want.as_slice(), patience());
}

#[test]
fn client_started_before_server_ipc() {
    let survey = ipc_url("early-s");
    let publish = ipc_url("early-p");
    let early =
        Client::with_subscription(&survey, &publish, "early").expect("client before server");
    let plain = client(&survey, "plain");
    let sub = subscriber(&publish);
    let server = Server::new(&survey, &publish, fast_options()).expect("server after clients");
    wait_for_list(&peers(&early), &["early", "plain"]);
    wait_for_list(&sub.changes(), &["early", "plain"]);
    assert_eq!(server.peers(), names(&["early", "plain"]));
    drop(plain);
    wait_for_list(&peers(&early), &["early"]);
}

#[test]
fn client_started_before_server_tcp() {
    let (survey, publish) = reserved_tcp_urls();
    let early =
        Client::with_subscription(&survey, &publish, "early").expect("client before server");
    let sub = subscriber(&publish);
    let server = Server::new(&survey, &publish, fast_options()).expect("server on reserved ports");
    assert_eq!(server.survey_url(), survey);
    assert_eq!(server.publish_url(), publish);
    wait_for_list(&peers(&early), &["early"]);
    wait_for_list(&sub.changes(), &["early"]);
    assert_eq!(server.peers(), names(&["early"]));
}

#[test]
fn clients_and_subscribers_follow_a_restarted_server() {
    let survey = ipc_url("restart-s");
    let publish = ipc_url("restart-p");
    let first = Server::new(&survey, &publish, fast_options()).expect("first server");
    let one = Client::with_subscription(&survey, &publish, "client1").expect("client");
    let sub = subscriber(&publish);
    wait_for_list(&peers(&one), &["client1"]);
    wait_for_list(&sub.changes(), &["client1"]);
    first.shutdown();

    let second = Server::new(&survey, &publish, fast_options()).expect("second server");
    wait_for_list(&second.changes(), &["client1"]);
    // The subscriptions reconnected too: a change reaches them.
    let _two = client(&survey, "client2");
    wait_for_list(&peers(&one), &["client1", "client2"]);
    wait_for_list(&sub.changes(), &["client1", "client2"]);
}

#[test]
fn duplicate_names_are_listed_once_until_the_last_leaves() {
    let server = tcp_server();
    let sub = subscriber(server.publish_url());
    let rx = sub.changes();
    let a = client(server.survey_url(), "same");
    let b = client(server.survey_url(), "same");
    let other = client(server.survey_url(), "other");
    wait_for_list(&rx, &["other", "same"]);
    a.shutdown();
    // One connection still answers for "same": it stays. Prove the leave
    // was processed by making another change after it.
    other.shutdown();
    let list = wait_for(&rx, |l| !l.iter().any(|n| n == "other"), patience());
    assert_eq!(list, names(&["same"]));
    assert_eq!(server.peers(), names(&["same"]));
    b.shutdown();
    wait_for_list(&rx, &[]);
}

#[test]
fn slow_reader_server_channel_holds_only_the_newest() {
    let server = tcp_server();
    let slow = server.changes(); // never read until the end
    let sub = subscriber(server.publish_url());
    let fast = sub.changes();

    let mut clients = Vec::new();
    let mut want: Vec<String> = Vec::new();
    for i in 0..20 {
        let name = format!("client{i:02}");
        clients.push(client(server.survey_url(), &name));
        want.push(name);
        wait_for(&fast, |l| l == want.as_slice(), patience());
        assert!(slow.len() <= 1, "{} lists queued", slow.len());
    }
    // Half of them leave.
    for _ in 0..10 {
        drop(clients.remove(0));
        want.remove(0);
        wait_for(&fast, |l| l == want.as_slice(), patience());
        assert!(slow.len() <= 1, "{} lists queued", slow.len());
    }
    // The server hands a list to its own channel before it publishes it, so
    // the newest is already waiting, alone.
    assert_eq!(slow.len(), 1);
    assert_eq!(slow.try_recv().ok(), Some(want.clone()));
    assert_quiet(&slow, poll() * 3);
}

#[test]
fn slow_reader_subscriber_gets_the_newest_not_a_backlog() {
    let server = tcp_server();
    let slow_sub = subscriber(server.publish_url());
    let slow = slow_sub.changes(); // not read while the list changes
    let slow_client = client_sub(&server, "client00");
    let slow_peers = peers(&slow_client);
    let sync = server.changes();

    let mut clients = Vec::new();
    let mut want: Vec<String> = vec!["client00".into()];
    for i in 1..=30 {
        let name = format!("client{i:02}");
        clients.push(client(server.survey_url(), &name));
        want.push(name);
        wait_for(&sync, |l| l == want.as_slice(), patience());
        assert!(slow.len() <= 1, "{} lists queued", slow.len());
        assert!(slow_peers.len() <= 1, "{} lists queued", slow_peers.len());
    }
    // The newest list is out: a subscriber that reads has it. (The slow
    // ones may still be taking it in; what they read is checked below.)
    let witness = subscriber(server.publish_url());
    wait_for(&witness.changes(), |l| l == want.as_slice(), patience());
    // 31 lists were published while nobody read. What is read now is the
    // newest list, or at worst a list that the reader thread had not yet
    // replaced with the newest when we looked, then the newest: never a
    // backlog, never an older list after a newer one.
    for rx in [&slow, &slow_peers] {
        let mut read: Vec<Vec<String>> = Vec::new();
        let deadline = Instant::now() + patience();
        while read.last() != Some(&want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(list) => {
                    if let Some(prev) = read.last() {
                        assert!(list.len() > prev.len(), "{list:?} after {prev:?}");
                    }
                    read.push(list);
                }
                Err(e) => panic!("no newest list ({e}); read so far: {read:?}"),
            }
        }
        assert!(
            read.len() <= 3,
            "a slow reader read {} lists: {read:?}",
            read.len()
        );
        assert_quiet(rx, poll() * 2);
    }
}

#[test]
fn receivers_end_on_shutdown() {
    let server = tcp_server();
    let sub = subscriber(server.publish_url());
    let one = client_sub(&server, "client1");
    wait_for_list(&sub.changes(), &["client1"]);
    wait_for_list(&peers(&one), &["client1"]);

    let drain = |rx: crossbeam_channel::Receiver<Vec<String>>| {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            for list in rx {
                assert_sorted_valid(&list);
            }
            let _ = done_tx.send(());
        });
        done_rx
    };
    let server_done = drain(server.changes());
    let sub_done = drain(sub.changes());
    let client_done = drain(peers(&one));

    // Each channel ends with its owner, not before.
    assert!(sub_done.recv_timeout(Duration::from_millis(200)).is_err());
    server.shutdown();
    server_done
        .recv_timeout(patience())
        .expect("`for list in server.changes()` ends when the server shuts down");
    assert!(sub_done.recv_timeout(Duration::from_millis(200)).is_err());
    assert!(client_done.try_recv().is_err());

    sub.shutdown();
    sub_done
        .recv_timeout(patience())
        .expect("`for list in subscriber.changes()` ends when the subscriber shuts down");
    assert!(client_done.try_recv().is_err());
    drop(one);
    client_done
        .recv_timeout(patience())
        .expect("`for list in client.peers()?` ends when the client is dropped");
}

fn expect_in_use(result: Result<Server, Error>, in_use: &str) {
    match result {
        Err(e @ Error::AddressInUse { .. }) => {
            assert!(e.to_string().contains(in_use), "{e}");
            match e {
                Error::AddressInUse { url } => assert_eq!(url, in_use),
                _ => unreachable!(),
            }
        }
        other => panic!("expected Err(AddressInUse) for {in_use}, got {other:?}"),
    }
}

fn server_new_in_time(survey: &str, publish: &str) -> Result<Server, Error> {
    let (s, p) = (survey.to_owned(), publish.to_owned());
    within(patience(), "Server::new on an address in use", move || {
        Server::new(&s, &p, fast_options())
    })
}

#[test]
fn address_in_use_tcp() {
    let a = tcp_server();
    expect_in_use(
        server_new_in_time(a.survey_url(), "tcp://127.0.0.1:0"),
        a.survey_url(),
    );
    expect_in_use(
        server_new_in_time("tcp://127.0.0.1:0", a.publish_url()),
        a.publish_url(),
    );
    // The first server is unaffected.
    let sub = subscriber(a.publish_url());
    let _c = client(a.survey_url(), "client1");
    wait_for_list(&sub.changes(), &["client1"]);
}

/// A second server on the first one's URLs is refused; the refusal releases
/// whatever it had bound, and leaves the first server working.
fn address_in_use_on(survey: &str, publish: &str, spare: &str, free: &str) {
    let first = Server::new(survey, publish, fast_options()).expect("first server");
    expect_in_use(server_new_in_time(survey, spare), survey);
    // `spare` is bound for the survey socket before the publish URL is
    // refused: it must be released again.
    expect_in_use(server_new_in_time(spare, publish), publish);
    let other = Server::new(spare, free, fast_options())
        .expect("a refused Server::new releases what it bound");
    let sub = subscriber(first.publish_url());
    let _c = client(first.survey_url(), "client1");
    wait_for_list(&sub.changes(), &["client1"]);
    let other_sub = subscriber(other.publish_url());
    let _d = client(other.survey_url(), "client2");
    wait_for_list(&other_sub.changes(), &["client2"]);
}

#[test]
fn address_in_use_ipc() {
    address_in_use_on(
        &ipc_url("inuse-s"),
        &ipc_url("inuse-p"),
        &ipc_url("inuse-x"),
        &ipc_url("inuse-f"),
    );
}

#[test]
fn address_in_use_inproc() {
    address_in_use_on(
        &inproc_url("inuse-s"),
        &inproc_url("inuse-p"),
        &inproc_url("inuse-x"),
        &inproc_url("inuse-f"),
    );
}

#[test]
fn invalid_options_are_refused() {
    let ms = Duration::from_millis;
    let cases: Vec<(Options, &str)> = vec![
        (Options::default().survey_time(ms(0)), "survey_time"),
        (Options::default().poll_interval(ms(0)), "poll_interval"),
        (
            Options::default()
                .poll_interval(ms(100))
                .survey_time(ms(100)),
            "survey_time",
        ),
        (
            Options::default()
                .poll_interval(ms(100))
                .survey_time(ms(500)),
            "survey_time",
        ),
        (Options::default().miss_threshold(0), "miss_threshold"),
        (
            Options::default().republish_interval(ms(0)),
            "republish_interval",
        ),
        (
            Options::default()
                .republish_interval(ms(10))
                .publish_gap(ms(10)),
            "publish_gap",
        ),
        (Options::default().max_peers(0), "max_peers"),
    ];
    let survey = ipc_url("opt-s");
    let publish = ipc_url("opt-p");
    for (options, want) in cases {
        match Server::new(&survey, &publish, options.clone()) {
            Err(e @ Error::InvalidOption { .. }) => {
                assert!(e.to_string().contains(want), "{options:?}: {e}");
                match e {
                    Error::InvalidOption { option, .. } => {
                        assert_eq!(option, want, "{options:?}")
                    }
                    _ => unreachable!(),
                }
            }
            other => panic!("{options:?}: expected Err(InvalidOption({want})), got {other:?}"),
        }
    }
    // Nothing was bound by the refused servers.
    let server = Server::new(&survey, &publish, fast_options()).expect("valid options");
    let _c = client(server.survey_url(), "client1");
    wait_for_list(&server.changes(), &["client1"]);
}

#[test]
fn server_peers_agree_with_subscribers() {
    let server = tcp_server();
    let subs: Vec<Subscriber> = (0..3).map(|_| subscriber(server.publish_url())).collect();
    let mut clients = Vec::new();
    let mut want: Vec<String> = Vec::new();
    for i in 0..5 {
        let name = format!("http://10.0.0.{i}:8080");
        clients.push(client(server.survey_url(), &name));
        want.push(name);
        for s in &subs {
            wait_for(&s.changes(), |l| l == want.as_slice(), patience());
        }
        assert_eq!(server.peers(), want);
    }
    while !clients.is_empty() {
        clients.remove(2.min(clients.len() - 1)).shutdown();
        want.remove(2.min(want.len() - 1));
        for s in &subs {
            wait_for(&s.changes(), |l| l == want.as_slice(), patience());
        }
        assert_eq!(server.peers(), want);
    }
}
