//! The server process is killed with SIGKILL and a new one started on the
//! same URLs: every client registers again and every subscriber, pure or in
//! a client, follows the new server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{daemon, patience, slow};
use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Subscriber};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `nng-discovery server` and returns it with the URLs it bound,
/// read from its first two lines of output. Poll 1 s, survey 250 ms (times
/// the slowdown under qemu).
fn server(survey: &str, publish: &str) -> (Proc, String, String) {
    let poll = format!("{}ms", slow(Duration::from_secs(1)).as_millis());
    let survey_time = format!("{}ms", slow(Duration::from_millis(250)).as_millis());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nng-discovery"))
        .args(["server", "--survey", survey, "--publish", publish])
        .args(["--poll-interval", &poll, "--survey-time", &survey_time])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery server");
    let out = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    // Read the two URL lines on a thread so a silent server fails the test
    // by timeout instead of hanging it.
    let (tx, rx) = crossbeam_channel::bounded(2);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = rx
            .recv_timeout(patience())
            .expect("the server printed its URLs");
        if let Some((_, url)) = line.split_once(' ') {
            urls.push(url.to_owned());
        }
    }
    let publish_url = urls.pop().unwrap_or_default();
    let survey_url = urls.pop().unwrap_or_default();
    (proc, survey_url, publish_url)
}

fn wait_for(rx: &Receiver<Vec<String>>, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + patience();
    let mut last = None;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(list) if done(&list) => return,
            Ok(list) => last = Some(list),
            Err(_) => panic!("{what}: last list {last:?}"),
        }
    }
}

#[test]
fn a_server_killed_and_restarted_on_the_same_urls_gets_everyone_back() {
    let (first, survey, publish) = server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
    let options = Options::default()
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(500));
    let names = ["http://a:1", "http://b:1", "http://c:1"];
    let clients: Vec<Client> = names
        .iter()
        .map(|n| Client::with_options(&survey, Some(&publish), n, &options).unwrap())
        .collect();
    let sub = Subscriber::with_options(&publish, &options).unwrap();
    let mut receivers: Vec<Receiver<Vec<String>>> =
        clients.iter().map(|c| c.peers().unwrap()).collect();
    receivers.push(sub.changes());
    for rx in &receivers {
        wait_for(rx, "all three before the crash", |l| l == names);
    }

    let mut first = first;
    first.0.kill().expect("SIGKILL the server");
    let _ = first.0.wait();
    let restarted = Instant::now();
    let (_second, survey2, publish2) = server(&survey, &publish);
    assert_eq!(
        (survey2.as_str(), publish2.as_str()),
        (survey.as_str(), publish.as_str())
    );

    // A newcomer's view: the new server's first list is already complete.
    let fresh = Subscriber::new(&publish).unwrap();
    wait_for(&fresh.changes(), "complete list at the new server", |l| {
        l == names
    });
    eprintln!(
        "complete list again {:?} after the restart",
        restarted.elapsed()
    );

    // Every old receiver follows the new server: a fourth client shows up.
    let d = Client::new(&survey, "http://d:1").unwrap();
    for rx in &receivers {
        wait_for(rx, "the newcomer, seen through the new server", |l| {
            l == ["http://a:1", "http://b:1", "http://c:1", "http://d:1"]
        });
    }
    drop(d);
}

/// The daemon's `server` with the given URLs and the fast heartbeat of
/// `common::daemon::start_server` (poll 1 s, survey 100 ms), with `extra`
/// arguments; the first publish delay is the default (2 x the default
/// reconnect_max of 1 s + the survey time = 2.1 s).
fn daemon_server(bin: &str, survey: &str, publish: &str, extra: &[&str]) -> daemon::Proc {
    let (p, bound_survey, bound_publish) = daemon::start_server_on(bin, survey, publish, extra);
    assert_eq!(bound_survey, survey);
    assert_eq!(bound_publish, publish);
    p
}

/// Every list a raw SUB socket receives (every publish, repeats included,
/// unlike a `Subscriber`, which delivers changes only), with when it
/// arrived. The socket closes when the returned guard is dropped.
fn record_publishes(publish: &str) -> (nng::Socket, Receiver<(Instant, Vec<String>)>) {
    use nng::options::{protocol::pubsub::Subscribe, Options as _, RecvTimeout};
    let sub = nng::Socket::new(nng::Protocol::Sub0).expect("open a SUB socket");
    sub.set_opt::<Subscribe>(Vec::new())
        .expect("subscribe to all");
    sub.set_opt::<RecvTimeout>(Some(Duration::from_millis(50)))
        .expect("set a receive timeout");
    sub.dial_async(publish).expect("dial the publish URL");
    let (tx, rx) = crossbeam_channel::unbounded();
    let s = sub.clone();
    std::thread::spawn(move || loop {
        match s.recv() {
            Ok(msg) => {
                let body = String::from_utf8_lossy(msg.as_slice()).into_owned();
                let list: Vec<String> = if body.is_empty() {
                    Vec::new()
                } else {
                    body.split('|').map(String::from).collect()
                };
                if tx.send((Instant::now(), list)).is_err() {
                    return;
                }
            }
            Err(nng::Error::TimedOut) => {}
            Err(_) => return, // closed
        }
    });
    (sub, rx)
}

#[test]
fn a_restarted_server_publishes_no_list_without_its_returning_clients() {
    // Issue 17: a server killed and started again while its clients are
    // in their redial backoff must not publish a list that lacks them.
    let Some(bin) = daemon::binary() else { return };
    let first = daemon::start_server(bin);
    let (mut first, survey, publish) = first;
    // Clients and subscribers with the default redial timing (100 ms,
    // doubling up to 1 s): what the default first publish delay waits for.
    let names = ["http://a:1", "http://b:1", "http://c:1"];
    let clients: Vec<Client> = names
        .iter()
        .map(|n| Client::with_subscription(&survey, &publish, n).unwrap())
        .collect();
    let sub = Subscriber::new(&publish).unwrap();
    let mut receivers: Vec<Receiver<Vec<String>>> =
        clients.iter().map(|c| c.peers().unwrap()).collect();
    receivers.push(sub.changes());
    for rx in &receivers {
        wait_for(rx, "all three before the crash", |l| l == names);
    }

    first.signal(libc::SIGKILL);
    first.wait_exit();
    // The scenario, not a synchronisation: the server stays down long
    // enough for the clients' redial wait to grow to its longest (1 s).
    std::thread::sleep(Duration::from_secs(2));
    let restarted = Instant::now();
    let second = daemon_server(bin, &survey, &publish, &[]);

    // A newcomer subscribed before the new server's first publish: that
    // first list already holds everyone.
    let fresh = Subscriber::new(&publish).unwrap();
    let got = fresh
        .changes()
        .recv_timeout(patience())
        .expect("the restarted server's first list");
    let took = restarted.elapsed();
    assert_eq!(got, names, "the first list after the restart");
    eprintln!("first list {took:?} after the restart");
    second.wait_stderr("the first-publish log line", patience(), |e| {
        e.contains("first list published")
    });
    if let Some(line) = second
        .stderr()
        .lines()
        .find(|l| l.contains("first list published"))
    {
        eprintln!("server: {line}");
    }

    // The old receivers saw no list without all three: their next list is
    // the one with a newcomer, seen through the new server.
    let d = Client::new(&survey, "http://d:1").unwrap();
    for rx in &receivers {
        let next = rx.recv_timeout(patience()).expect("a list with d");
        assert_eq!(
            next,
            ["http://a:1", "http://b:1", "http://c:1", "http://d:1"],
            "the first list a receiver got after the restart"
        );
    }
    drop(d);
}

#[test]
fn a_server_resuming_after_a_stall_never_publishes_a_departed_client() {
    // Issue 17: a server stopped (SIGSTOP) while a client leaves, then
    // resumed (SIGCONT), republished the list it held before taking in the
    // closed connection. Republish every 200 ms, so republishes are overdue
    // when it resumes.
    let Some(bin) = daemon::binary() else { return };
    let republish = daemon::slow_arg(Duration::from_millis(200));
    let (server, survey, publish) =
        daemon::start_server_with(bin, &["--republish-interval", &republish]);
    let _a = Client::new(&survey, "http://a:1").unwrap();
    let mut b = daemon::Proc::start(bin, &["join", "--survey", &survey, "--name", "http://b:1"]);
    let (_sub, lists) = record_publishes(&publish);
    let both = ["http://a:1", "http://b:1"];
    let deadline = Instant::now() + patience();
    loop {
        match lists.recv_deadline(deadline) {
            Ok((_, l)) if l == both => break,
            Ok(_) => {}
            Err(e) => panic!("no list with a and b: {e}"),
        }
    }

    server.signal(libc::SIGSTOP);
    b.signal(libc::SIGKILL);
    b.wait_exit();
    // The scenario, not a synchronisation: stopped for a second (five
    // republish intervals, ten survey times; ten seconds under qemu, where
    // the republish interval is ten times longer too), so that a republish
    // is overdue and the stall is unmistakable; every list published before
    // the stop has arrived by then.
    std::thread::sleep(slow(Duration::from_secs(1)));
    let resumed = Instant::now();
    server.signal(libc::SIGCONT);

    // Every list published after the resume: none names b, up to the first
    // list without it and three republishes after that.
    let deadline = Instant::now() + patience();
    let mut after = Vec::new();
    let mut without_b = 0;
    while without_b < 4 {
        match lists.recv_deadline(deadline) {
            Ok((at, l)) if at >= resumed => {
                if l == ["http://a:1"] {
                    without_b += 1;
                }
                after.push((at - resumed, l));
            }
            Ok(_) => {} // published before the stop
            Err(e) => panic!("lists after the resume ({e}): {after:?}"),
        }
    }
    assert!(
        after
            .iter()
            .all(|(_, l)| !l.contains(&"http://b:1".to_owned())),
        "a list naming the departed b after the resume: {after:?}"
    );
    eprintln!("lists after the resume: {after:?}");
    assert!(
        server.stderr().contains("late"),
        "the stall was logged; stderr:\n{}",
        server.stderr()
    );
}
