//! Redundant servers (issue 17), with real server processes: three
//! `nng-discovery server` children, killed with SIGKILL, hung with SIGSTOP
//! or restarted, while clients answer all three and subscribers merge all
//! three. Every list each receiver gets is recorded, and the tests assert
//! that no receiver ever sees a list other than the live set.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{self, binary, slow_arg, Proc};
use common::{patience, slow};
use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Subscriber};

/// A server on the given URLs (`tcp://127.0.0.1:0` for free ports), poll
/// 1 s, survey 100 ms, republish `republish` (times the slowdown under
/// qemu); returns it with the URLs it bound.
fn server_on(
    bin: &str,
    survey: &str,
    publish: &str,
    republish: Duration,
) -> (Proc, String, String) {
    let republish = slow_arg(republish);
    daemon::start_server_on(bin, survey, publish, &["--republish-interval", &republish])
}

/// Three servers on free ports.
struct Three {
    servers: Vec<Proc>,
    surveys: Vec<String>,
    publishes: Vec<String>,
}

fn three(bin: &str, republish: Duration) -> Three {
    let mut t = Three {
        servers: Vec::new(),
        surveys: Vec::new(),
        publishes: Vec::new(),
    };
    for _ in 0..3 {
        let (p, s, u) = server_on(bin, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", republish);
        t.servers.push(p);
        t.surveys.push(s);
        t.publishes.push(u);
    }
    t
}

/// Clients and subscribers redial fast, so a restarted server has them
/// back soon (the outcome is asserted, not the speed).
fn options() -> Options {
    Options::default()
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(slow(Duration::from_millis(200)))
}

/// Every list a receiver got, in order, taken by a thread as it arrives.
struct Recorder {
    what: String,
    lists: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Recorder {
    fn new(what: impl Into<String>, rx: Receiver<Vec<String>>) -> Recorder {
        let lists = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lists);
        std::thread::spawn(move || {
            for list in rx {
                sink.lock().unwrap().push(list);
            }
        });
        Recorder {
            what: what.into(),
            lists,
        }
    }

    fn len(&self) -> usize {
        self.lists.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<Vec<String>> {
        self.lists.lock().unwrap()[mark..].to_vec()
    }

    fn last(&self) -> Option<Vec<String>> {
        self.lists.lock().unwrap().last().cloned()
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits (at most `bound`) until every recorder's latest list is `want`.
fn wait_all(recorders: &[Recorder], want: &[&str], bound: Duration) {
    let want = names(want);
    let deadline = Instant::now() + bound;
    for r in recorders {
        while r.last().as_ref() != Some(&want) {
            assert!(
                Instant::now() < deadline,
                "{}: not {want:?} within {bound:?}; lists so far: {:?}",
                r.what,
                r.since(0)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Where each recorder stands now.
fn marks(recorders: &[Recorder]) -> Vec<usize> {
    recorders.iter().map(Recorder::len).collect()
}

/// Asserts that each recorder got exactly `want`, in order, since `marks`.
fn assert_got(recorders: &[Recorder], marks: &[usize], want: &[&[&str]]) {
    let want: Vec<Vec<String>> = want.iter().map(|l| names(l)).collect();
    for (r, &mark) in recorders.iter().zip(marks) {
        assert_eq!(
            r.since(mark),
            want,
            "{}: lists other than the live set (all lists: {:?})",
            r.what,
            r.since(0)
        );
    }
}

/// Two subscribers and the subscriptions of `clients`, all on all three
/// servers.
fn receivers(t: &Three, clients: &[Client], options: &Options) -> (Vec<Subscriber>, Vec<Recorder>) {
    let subs: Vec<Subscriber> = (0..2)
        .map(|_| Subscriber::with_options(&t.publishes, options).expect("subscriber"))
        .collect();
    let mut recorders: Vec<Recorder> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| Recorder::new(format!("subscriber {i}"), s.changes()))
        .collect();
    for c in clients {
        if let Ok(rx) = c.peers() {
            recorders.push(Recorder::new(format!("client {}", c.service()), rx));
        }
    }
    (subs, recorders)
}

fn client(t: &Three, name: &str, options: &Options) -> Client {
    Client::builder(&t.surveys, name)
        .subscribe(&t.publishes)
        .options(options.clone())
        .build()
        .expect("client")
}

#[test]
fn killing_one_then_two_servers_changes_no_list() {
    let Some(bin) = binary() else { return };
    let t = three(bin, Duration::from_secs(30));
    let o = options();
    let clients: Vec<Client> = ["a", "b", "c"].iter().map(|n| client(&t, n, &o)).collect();
    let (_subs, recorders) = receivers(&t, &clients, &o);
    wait_all(&recorders, &["a", "b", "c"], patience());

    // One server dies: nothing changes; a client joining now is listed.
    let m = marks(&recorders);
    t.servers[0].signal(libc::SIGKILL);
    let d = client(&t, "d", &o);
    wait_all(&recorders, &["a", "b", "c", "d"], patience());
    assert_got(&recorders, &m, &[&["a", "b", "c", "d"]]);

    // A second one dies; a client process joins, then dies: it is gone
    // (the one live server sees its connection close).
    let m = marks(&recorders);
    t.servers[1].signal(libc::SIGKILL);
    let mut args = vec!["join", "--name", "e"];
    for s in &t.surveys {
        args.extend(["--survey", s.as_str()]);
    }
    let mut e = Proc::start(bin, &args);
    wait_all(&recorders, &["a", "b", "c", "d", "e"], patience());
    e.signal(libc::SIGKILL);
    e.wait_exit();
    wait_all(&recorders, &["a", "b", "c", "d"], patience());
    assert_got(
        &recorders,
        &m,
        &[&["a", "b", "c", "d", "e"], &["a", "b", "c", "d"]],
    );
    drop(d);
}

#[test]
fn a_client_reaching_one_server_is_listed_by_subscribers_of_all() {
    let Some(bin) = binary() else { return };
    let t = three(bin, Duration::from_secs(30));
    let o = options();
    let only_first = Client::with_options(&t.surveys[0], None, "x", &o).expect("client");
    let (_subs, recorders) = receivers(&t, &[], &o);
    wait_all(&recorders, &["x"], patience());
    // A subscriber of the third server alone (what a Go or nngcat
    // subscriber sees: one server's view) never hears of x. Its first
    // list comes once that server's first survey has ended.
    let alone = Subscriber::with_options(t.publishes[2].as_str(), &o).expect("subscriber");
    let first = alone
        .changes()
        .recv_timeout(patience())
        .expect("a first list");
    assert_eq!(first, Vec::<String>::new());
    only_first.shutdown();
    wait_all(&recorders, &[], patience());
}

#[test]
fn a_server_whose_connection_closes_stops_counting_at_once() {
    let Some(bin) = binary() else { return };
    let t = three(bin, Duration::from_secs(30));
    // No silence timeout within the test's life: only the closed
    // connection can take x out.
    let o = options().silence_timeout(common::NEVER);
    let only_first = Client::with_options(&t.surveys[0], None, "x", &o).expect("client");
    let everywhere = Client::with_options(&t.surveys, None, "a", &o).expect("client");
    let (_subs, recorders) = receivers(&t, &[], &o);
    wait_all(&recorders, &["a", "x"], patience());
    let m = marks(&recorders);
    // Server 0, the only one listing x, dies: x is gone from the union at
    // once (well within the bound), while a stays.
    t.servers[0].signal(libc::SIGKILL);
    wait_all(&recorders, &["a"], patience());
    assert_got(&recorders, &m, &[&["a"]]);
    drop((only_first, everywhere));
}

#[test]
fn a_server_restarted_on_the_same_urls_changes_no_list() {
    let Some(bin) = binary() else { return };
    let mut t = three(bin, Duration::from_secs(30));
    let o = options();
    let clients: Vec<Client> = ["a", "b", "c"].iter().map(|n| client(&t, n, &o)).collect();
    let (_subs, recorders) = receivers(&t, &clients, &o);
    wait_all(&recorders, &["a", "b", "c"], patience());

    let m = marks(&recorders);
    t.servers[1].signal(libc::SIGKILL);
    t.servers[1].wait_exit();
    let (again, _, _) = server_on(bin, &t.surveys[1], &t.publishes[1], Duration::from_secs(30));
    t.servers[1] = again;
    // The restarted server gets every client back (its own view, alone).
    let alone = Subscriber::with_options(t.publishes[1].as_str(), &o).expect("subscriber");
    common::wait_for_list(&alone.changes(), &["a", "b", "c"]);
    // And a change after the restart is the next list every receiver gets.
    let d = client(&t, "d", &o);
    wait_all(&recorders, &["a", "b", "c", "d"], patience());
    assert_got(&recorders, &m, &[&["a", "b", "c", "d"]]);
    drop(d);
}

/// Needs the server side of issue 17 (a server resuming from a stall takes
/// in the connection events that queued up before it publishes): without
/// it, server 0 republishes its stale list (still naming x) right after
/// SIGCONT, and every receiver sees x come back for a moment (seen here:
/// `[a, x], [a], [a, x], [a], [a, y]`); with it, never.
#[test]
fn a_hung_server_stops_counting_after_the_silence_timeout() {
    let Some(bin) = binary() else { return };
    // Servers republish every 200 ms; receivers drop a server heard from
    // for 1 s (both times the slowdown under qemu).
    let t = three(bin, Duration::from_millis(200));
    let silence = slow(Duration::from_secs(1));
    let o = options().silence_timeout(silence);
    let a = client(&t, "a", &o);
    let x = Client::with_options(&t.surveys, None, "x", &o).expect("client");
    let (_subs, recorders) = receivers(&t, std::slice::from_ref(&a), &o);
    wait_all(&recorders, &["a", "x"], patience());
    let hung_view = Subscriber::with_options(t.publishes[0].as_str(), &o).expect("subscriber");
    common::wait_for_list(&hung_view.changes(), &["a", "x"]);

    // Server 0 hangs; x leaves. Servers 1 and 2 drop x at once, server 0
    // cannot: receivers drop x once server 0 has been silent for the
    // timeout (the bound is over 10x that).
    let m = marks(&recorders);
    t.servers[0].signal(libc::SIGSTOP);
    let left = Instant::now();
    x.shutdown();
    wait_all(&recorders, &["a"], silence * 10 + patience());
    let took = left.elapsed();
    eprintln!("x gone from every receiver {took:?} after leaving (silence timeout {silence:?})");

    // Server 0 resumes: it counts again, and nobody sees x again. Its own
    // subscriber shows when it has caught up; a join after that is the
    // next list every receiver gets.
    t.servers[0].signal(libc::SIGCONT);
    common::wait_for_list(&hung_view.changes(), &["a"]);
    let y = client(&t, "y", &o);
    wait_all(&recorders, &["a", "y"], patience());
    assert_got(&recorders, &m, &[&["a"], &["a", "y"]]);
    drop(y);
}

#[test]
fn the_daemon_joins_and_watches_several_servers() {
    let Some(bin) = binary() else { return };
    let t = three(bin, Duration::from_secs(30));
    let mut args = vec!["watch".to_string()];
    for p in &t.publishes {
        args.extend(["--publish".to_string(), p.clone()]);
    }
    let watch_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let watch = Proc::start(bin, &watch_args);
    let join = |name: &str, with_publish: bool| {
        let mut args = vec!["join".to_string(), "--name".into(), name.into()];
        for s in &t.surveys {
            args.extend(["--survey".to_string(), s.clone()]);
        }
        if with_publish {
            for p in &t.publishes {
                args.extend(["--publish".to_string(), p.clone()]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::start(bin, &args)
    };
    let n1 = join("n1", true);
    watch.expect("n1");
    n1.expect("n1");
    // A server dies: the next line either prints is the join after it.
    t.servers[0].signal(libc::SIGKILL);
    let mut n2 = join("n2", false);
    let line = watch.expect_line("after the kill", |l| !l.is_empty());
    assert_eq!(
        line, "n1 n2",
        "watch printed a list other than the live set"
    );
    assert_eq!(
        n1.expect_line("after the kill", |l| l != "n1"),
        "n1 n2",
        "join printed a list other than the live set"
    );
    n2.signal(libc::SIGTERM);
    n2.wait_exit();
    assert_eq!(watch.expect_line("after n2 left", |_| true), "n1");
}

#[test]
fn set_available_applies_to_every_server() {
    let servers = [common::tcp_server(), common::tcp_server()];
    let surveys = [servers[0].survey_url(), servers[1].survey_url()];
    let client = Client::new(surveys, "n").expect("client");
    assert_eq!(client.survey_urls(), surveys);
    assert_eq!(client.survey_url(), surveys[0]);
    let changes = [servers[0].changes(), servers[1].changes()];
    for rx in &changes {
        common::wait_for_list(rx, &["n"]);
    }
    client.set_available(false);
    assert!(!client.is_available());
    for rx in &changes {
        common::wait_for_list(rx, &[]);
    }
    client.set_available(true);
    assert!(client.is_available());
    for rx in &changes {
        common::wait_for_list(rx, &["n"]);
    }
}

/// One thread per subscriber and two per subscribed client, whatever the
/// number of servers.
#[test]
fn threads_do_not_grow_with_the_number_of_servers() {
    if !common::is_child() {
        return common::run_isolated("threads_do_not_grow_with_the_number_of_servers");
    }
    let urls: Vec<String> = (0..5)
        .map(|i| common::inproc_url(&format!("nobody-{i}")))
        .collect();
    // Warm NNG's shared pool up first.
    drop(Subscriber::new(&urls[0]).expect("subscriber"));
    let (base, _) = common::settled_counts();
    let one = Subscriber::new(&urls[0]).expect("subscriber");
    assert_eq!(common::settled_counts().0, base + 1, "one server");
    drop(one);
    let five = Subscriber::new(&urls).expect("subscriber");
    assert_eq!(common::settled_counts().0, base + 1, "five servers");
    let client = Client::with_subscription(&urls, &urls, "n").expect("client");
    assert_eq!(common::settled_counts().0, base + 3, "and a client of five");
    drop((five, client));
}
