//! A server starved of CPU must not evict peers that keep answering.
//!
//! The daemon runs as a child process; the test stops and continues it
//! (SIGSTOP / SIGCONT) in short slices, so that it runs a small fraction
//! of the time, while in-process `Client`s keep their connections and
//! answer every survey and `Subscriber`s record every list. No list may
//! lack a live peer, during the starvation or after it, and once the
//! server runs freely again every subscriber holds the whole list.
//!
//! The stop/continue duty cycle is the stimulus and is timed with sleeps;
//! every outcome is waited for on channels (or by scraping the metrics)
//! with generous bounds.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::daemon::{binary, patience, slow_arg, Proc};
use common::slow;
use crossbeam_channel::unbounded;
use nng_discovery::{Client, Subscriber};

/// Peers answering throughout.
const PEERS: usize = 150;
/// Subscribers following the list.
const FOLLOWERS: usize = 3;

/// `GET /metrics` on `addr`: the samples by name (labels included).
fn scrape(addr: &str) -> HashMap<String, u64> {
    let mut stream = TcpStream::connect(addr).expect("connecting to the metrics port");
    stream.set_read_timeout(Some(patience())).expect("timeout");
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("sending the request");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let (_, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Scrapes until `done` holds, at most `patience()`.
fn scrape_until(addr: &str, what: &str, done: impl Fn(&HashMap<String, u64>) -> bool) {
    let deadline = Instant::now() + patience();
    loop {
        let m = scrape(addr);
        if done(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not reached; {m:?}");
        // No event to wait on: the pause spares the CPU, the deadline bounds.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops and continues `server` for `total`: stopped for `stopped`, then
/// running for `running`, again and again. Ends with it running.
fn starve(server: &Proc, total: Duration, running: Duration, stopped: Duration) {
    let end = Instant::now() + total;
    while Instant::now() < end {
        server.signal(libc::SIGSTOP);
        std::thread::sleep(stopped);
        server.signal(libc::SIGCONT);
        std::thread::sleep(running);
    }
    server.signal(libc::SIGCONT);
}

#[test]
fn a_starved_server_never_drops_a_peer_that_keeps_answering() {
    let Some(bin) = binary() else { return };
    // A fast heartbeat, so that many rounds end during the starvation, and
    // a miss threshold of 1, so that a single miss wrongly counted evicts.
    let poll = slow_arg(Duration::from_millis(200));
    let survey = slow_arg(Duration::from_millis(100));
    let republish = slow_arg(Duration::from_millis(500));
    let server = Proc::start(
        bin,
        &[
            "server",
            "--survey",
            "tcp://127.0.0.1:0",
            "--publish",
            "tcp://127.0.0.1:0",
            "--poll-interval",
            &poll,
            "--survey-time",
            &survey,
            "--republish-interval",
            &republish,
            "--miss-threshold",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let survey_url = server.next_url("survey");
    let publish_url = server.next_url("publish");
    let metrics = server.next_url("metrics");
    let metrics = metrics
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("metrics URL {metrics:?}"))
        .to_owned();

    let names: Vec<String> = (0..PEERS)
        .map(|i| format!("http://peer-{i:03}:1"))
        .collect();
    let (lists_tx, lists) = unbounded::<(usize, Vec<String>)>();
    let followers: Vec<Subscriber> = (0..FOLLOWERS)
        .map(|i| {
            let sub = Subscriber::new(&publish_url).expect("subscriber");
            let changes = sub.changes();
            let tx = lists_tx.clone();
            std::thread::spawn(move || {
                for list in changes.iter() {
                    if tx.send((i, list)).is_err() {
                        return;
                    }
                }
            });
            sub
        })
        .collect();
    let clients: Vec<Client> = names
        .iter()
        .map(|n| Client::new(&survey_url, n).expect("client"))
        .collect();

    // Every follower holds the whole list.
    let mut last: Vec<Vec<String>> = vec![Vec::new(); FOLLOWERS];
    let all_hold = |last: &[Vec<String>]| last.iter().all(|l| *l == names);
    let deadline = Instant::now() + patience();
    while !all_hold(&last) {
        match lists.recv_deadline(deadline) {
            Ok((i, list)) => last[i] = list,
            Err(e) => panic!("not every follower got all {PEERS} names: {e}; last lists: {last:?}"),
        }
    }

    // From now on, every list must name every peer: they all stay
    // connected and answer every survey.
    let mut wrong: Vec<(usize, usize)> = Vec::new();
    let record = |i: usize, list: Vec<String>, last: &mut [Vec<String>], wrong: &mut Vec<_>| {
        if list != names {
            wrong.push((i, list.len()));
        }
        last[i] = list;
    };

    // Starve it: running 2 ms out of every 50 (slower under qemu).
    starve(
        &server,
        slow(Duration::from_secs(4)),
        slow(Duration::from_millis(2)),
        slow(Duration::from_millis(48)),
    );
    let released = scrape(&metrics);
    let rounds_at_release = released
        .get("nng_discovery_rounds_total")
        .copied()
        .unwrap_or(0);
    for (i, list) in lists.try_iter() {
        record(i, list, &mut last, &mut wrong);
    }

    // Free again: a few heartbeat rounds end, then every follower must
    // still (or again) hold the whole list.
    scrape_until(&metrics, "three rounds after the release", |m| {
        m.get("nng_discovery_rounds_total").copied().unwrap_or(0) >= rounds_at_release + 3
    });
    for (i, list) in lists.try_iter() {
        record(i, list, &mut last, &mut wrong);
    }
    let deadline = Instant::now() + patience();
    while !all_hold(&last) {
        match lists.recv_deadline(deadline) {
            Ok((i, list)) => record(i, list, &mut last, &mut wrong),
            Err(e) => panic!("after the release, not every follower holds all {PEERS} names: {e}; lengths {:?}; wrong lists (follower, length): {wrong:?}", last.iter().map(Vec::len).collect::<Vec<_>>()),
        }
    }
    assert!(
        wrong.is_empty(),
        "lists lacking a live peer (follower, length): {wrong:?}; server stderr:\n{}",
        server.stderr()
    );
    // The stimulus took: the server saw itself behind and said so.
    let m = scrape(&metrics);
    let not_counted = m
        .get("nng_discovery_rounds_not_counted_total")
        .copied()
        .unwrap_or(0);
    assert!(not_counted > 0, "no round went uncounted: {m:?}");
    drop(clients);
    drop(followers);
}
