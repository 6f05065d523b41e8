//! Fast membership with real client processes: a crashed process leaves at
//! once, a stopped one after `miss_threshold` missed surveys (and comes back
//! when it resumes), all without waiting for a slow poll.
//!
//! The child processes run this crate's own `nng-discovery join` sidecar.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{patience, slow, NEVER};
use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Server, Subscriber};

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn join_process(survey_url: &str, name: &str) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_nng-discovery"))
        .args(["join", "--survey", survey_url, "--name", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery join");
    ChildGuard(child)
}

fn signal(child: &ChildGuard, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} failed");
}

/// Receives lists until `done` holds; panics with the last list after
/// `timeout`.
fn wait_for(
    rx: &Receiver<Vec<String>>,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(list) if done(&list) => return list,
            Ok(list) => last = Some(list),
            Err(_) => panic!("{what}: not within {timeout:?}; last list {last:?}"),
        }
    }
}

/// A server whose heartbeat and republish come once an hour ([`NEVER`]):
/// whatever a test sees within `patience()` (10 s, 100 s under qemu) came
/// from connection events.
fn slow_server() -> Server {
    let options = Options::default()
        .poll_interval(NEVER)
        .republish_interval(NEVER)
        .survey_time(Duration::from_secs(1));
    Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("server")
}

#[test]
fn a_killed_process_leaves_long_before_the_next_poll() {
    let server = slow_server();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let rx = sub.changes();
    let child = join_process(server.survey_url(), "http://victim:1");
    let stays = Client::new(server.survey_url(), "http://survivor:1").unwrap();
    wait_for(&rx, patience(), "both joined", |l| l.len() == 2);

    let killed = Instant::now();
    signal(&child, "-KILL");
    let list = wait_for(&rx, patience(), "victim removed", |l| {
        !l.iter().any(|n| n == "http://victim:1")
    });
    assert_eq!(list, ["http://survivor:1"]);
    assert!(killed.elapsed() < NEVER);
    assert_eq!(server.peers(), ["http://survivor:1"]);
    drop(stays);
}

#[test]
fn a_stopped_process_leaves_after_the_miss_threshold_and_returns_on_resume() {
    let poll = slow(Duration::from_millis(300));
    let options = Options::default()
        .poll_interval(poll)
        .survey_time(slow(Duration::from_millis(100)))
        .miss_threshold(2);
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).unwrap();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let rx = sub.changes();
    let child = join_process(server.survey_url(), "http://hung:1");
    wait_for(&rx, patience(), "joined", |l| l == ["http://hung:1"]);

    let stopped = Instant::now();
    signal(&child, "-STOP");
    wait_for(&rx, patience(), "evicted", |l| l.is_empty());
    let took = stopped.elapsed();
    // Two misses need two round ends, one poll interval apart: never sooner.
    assert!(
        took >= poll,
        "evicted after {took:?}, before two missed surveys"
    );

    signal(&child, "-CONT");
    wait_for(&rx, patience(), "rejoined", |l| l == ["http://hung:1"]);
}

#[test]
fn a_slow_poll_still_sees_joins_and_leaves_at_once() {
    let server = slow_server();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let rx = sub.changes();
    wait_for(&rx, patience(), "first list", |l| l.is_empty());
    for i in 0..5 {
        let name = format!("http://quick:{i}");
        let client = Client::new(server.survey_url(), &name).unwrap();
        wait_for(&rx, patience(), "joined", |l| l == [name.clone()]);
        client.shutdown();
        wait_for(&rx, patience(), "left", |l| l.is_empty());
    }
}

#[test]
fn a_graceful_process_exit_is_seen_at_once() {
    let server = slow_server();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let rx = sub.changes();
    let child = join_process(server.survey_url(), "http://polite:1");
    wait_for(&rx, patience(), "joined", |l| l == ["http://polite:1"]);
    signal(&child, "-TERM");
    wait_for(&rx, patience(), "left", |l| l.is_empty());
}

#[test]
fn a_new_subscriber_gets_the_list_without_waiting_for_a_change() {
    let server = slow_server();
    let client = Client::new(server.survey_url(), "http://a:1").unwrap();
    let first = Subscriber::new(server.publish_url()).unwrap();
    wait_for(&first.changes(), patience(), "joined", |l| {
        l == ["http://a:1"]
    });
    // Nothing changes from here on; republish is 30 s away.
    for _ in 0..3 {
        let late = Subscriber::new(server.publish_url()).unwrap();
        wait_for(&late.changes(), patience(), "late subscriber", |l| {
            l == ["http://a:1"]
        });
    }
    drop(client);
}
