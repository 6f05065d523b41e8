//! `nng-discovery server --metrics ADDR`, driven as a child process: the
//! scrape over real HTTP reflects the live state, hostile requests get an
//! error or a closed connection without harming the server, and the
//! flag's errors exit 1 or 2 with one line.
//!
//! Nothing here sleeps to synchronise: lines and lists arrive on channels
//! waited on with generous bounds.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::daemon::{binary, patience, server_args, start_server_with, Proc};
use crossbeam_channel::Receiver;
use nng_discovery::{Client, Subscriber};

/// Sends `request` (from a thread: a large one may not be read in full)
/// and returns the reply until the server closes; empty after a reset.
fn exchange(addr: &str, request: Vec<u8>) -> String {
    let stream = TcpStream::connect(addr).expect("connecting to the metrics port");
    stream.set_read_timeout(Some(patience())).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut reply = Vec::new();
    let _ = (&stream).read_to_end(&mut reply);
    sender.join().expect("sender thread");
    String::from_utf8_lossy(&reply).into_owned()
}

/// Scrapes `GET /metrics` and returns the samples by name (with labels).
fn scrape(addr: &str) -> HashMap<String, u64> {
    let reply = exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
    );
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("NAME VALUE");
            (name.to_owned(), value.parse().expect("a whole number"))
        })
        .collect()
}

/// Scrapes until `done` holds (at most `patience()`), for figures the server
/// updates a moment after the event the test waited for.
fn scrape_until(addr: &str, done: impl Fn(&HashMap<String, u64>) -> bool) -> HashMap<String, u64> {
    let deadline = Instant::now() + patience();
    loop {
        let m = scrape(addr);
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "figures never reached: {m:?}");
        // Polling an outcome that has no event to wait on; the pause only
        // spares the CPU, the deadline above is the bound.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

/// Waits for a published list of exactly `n` names.
fn wait_for_list(lists: &Receiver<Vec<String>>, n: usize) -> Vec<String> {
    let deadline = Instant::now() + patience();
    loop {
        match lists.recv_deadline(deadline) {
            Ok(list) if list.len() == n => return list,
            Ok(_) => {}
            Err(e) => panic!("no list of {n} names: {e}"),
        }
    }
}

#[test]
fn a_scrape_shows_the_live_state_and_bad_requests_do_no_harm() {
    let Some(bin) = binary() else { return };
    let (mut server, survey, publish) = start_server_with(bin, &["--metrics", "127.0.0.1:0"]);
    let url = server.next_url("metrics");
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("metrics URL {url:?}"))
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let subscriber = Subscriber::new(&publish).expect("subscriber");
    let lists = subscriber.changes();
    let a = Client::new(&survey, "a").expect("client a");
    let b = Client::new(&survey, "b").expect("client b");
    wait_for_list(&lists, 2);

    // The server copies its counters for `stats()` once per pass of its
    // loop, and completes its first round after a poll interval (1 s):
    // scrape until the figures show the publish of "a|b" (3 bytes) and a
    // round. (Waiting for "some publish" once let a scrape taken before
    // that publish through: publishes 2, bytes 0, under qemu.)
    let m = scrape_until(&addr, |m| {
        m["nng_discovery_published_bytes_total"] >= 3
            && m["nng_discovery_answers_total"] >= 2
            && m["nng_discovery_rounds_total"] > 0
    });
    assert_eq!(m["nng_discovery_peers"], 2, "{m:?}");
    assert_eq!(m["nng_discovery_connections"], 2, "{m:?}");
    assert!(m["nng_discovery_subscribers"] >= 1, "{m:?}");
    for counter in [
        "nng_discovery_surveys_total",
        "nng_discovery_rounds_total",
        "nng_discovery_answers_total",
        "nng_discovery_publishes_total",
        "nng_discovery_published_bytes_total",
    ] {
        assert!(m[counter] > 0, "{counter}: {m:?}");
    }
    assert!(m["nng_discovery_answers_total"] >= 2, "{m:?}");
    // "a|b": the list body published.
    assert!(m["nng_discovery_published_bytes_total"] >= 3, "{m:?}");
    assert!(
        m.contains_key("nng_discovery_rounds_not_counted_total"),
        "{m:?}"
    );
    for reason in ["invalid", "stale", "full"] {
        let refused = format!("nng_discovery_refused_answers_total{{reason=\"{reason}\"}}");
        assert!(m.contains_key(&refused), "{refused}: {m:?}");
    }
    let build = format!(
        "nng_discovery_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m.get(&build), Some(&1), "{m:?}");

    // Malformed, wrong path, wrong method: error statuses.
    for (request, want) in [
        (&b"\x00\x01garbage\r\n\r\n"[..], "HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"PUT /metrics HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
    ] {
        assert_eq!(status_line(&exchange(&addr, request.to_vec())), want);
    }
    // A huge head (1 MiB, never ending): 431, or a reset connection.
    let huge = exchange(&addr, {
        let mut r = b"GET /metrics HTTP/1.1\r\nX-Huge: ".to_vec();
        r.resize(1 << 20, b'x');
        r
    });
    assert!(
        huge.is_empty() || status_line(&huge).starts_with("HTTP/1.1 431"),
        "{huge}"
    );
    // A request that never finishes: the next scrape is still answered,
    // and the silent one gets 408 (after the daemon's 1 s request timeout).
    let silent = TcpStream::connect(&addr).expect("connect");
    (&silent)
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .expect("write");
    assert_eq!(scrape(&addr)["nng_discovery_peers"], 2);
    silent.set_read_timeout(Some(patience())).expect("timeout");
    let mut reply = String::new();
    let _ = (&silent).read_to_string(&mut reply);
    assert_eq!(status_line(&reply), "HTTP/1.1 408 Request Timeout");

    // /healthz: 200 while the server runs. /peers: the list as JSON.
    let health = exchange(&addr, b"GET /healthz HTTP/1.1\r\n\r\n".to_vec());
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let quoted = Client::new(&survey, r#"q"\x"#).expect("client with a quote");
    assert_eq!(wait_for_list(&lists, 3), ["a", "b", r#"q"\x"#]);
    let peers = exchange(&addr, b"GET /peers HTTP/1.1\r\n\r\n".to_vec());
    let (head, body) = peers.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert_eq!(body, "[\"a\",\"b\",\"q\\\"\\\\x\"]\n");
    quoted.shutdown();
    wait_for_list(&lists, 2);

    // Discovery goes on, and the figures follow.
    let c = Client::new(&survey, "c").expect("client c");
    assert_eq!(wait_for_list(&lists, 3), ["a", "b", "c"]);
    let m = scrape_until(&addr, |m| m["nng_discovery_peers"] == 3);
    assert_eq!(m["nng_discovery_connections"], 3, "{m:?}");

    for client in [a, b, c] {
        client.shutdown();
    }
    subscriber.shutdown();
    // SIGTERM stops the daemon, metrics thread included, with status 0.
    server.signal(libc::SIGTERM);
    let status = server.wait_exit();
    let stderr = server.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        TcpStream::connect(&addr).is_err(),
        "metrics port still open"
    );
}

#[test]
fn a_metrics_address_in_use_exits_1_naming_it() {
    let Some(bin) = binary() else { return };
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut server = Proc::start(bin, &server_args(&["--metrics", &addr]));
    let status = server.wait_exit();
    let stderr = server.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("nng-discovery: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "nng-discovery: cannot listen for --metrics on {addr}: "
        )),
        "{stderr}"
    );
}

#[test]
fn an_unparsable_metrics_address_is_a_usage_error() {
    let Some(bin) = binary() else { return };
    let mut server = Proc::start(bin, &server_args(&["--metrics", "localhost"]));
    let status = server.wait_exit();
    let stderr = server.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("nng-discovery: invalid --metrics \"localhost\": expected IP:PORT"),
        "{stderr}"
    );
}

/// A client that connects and sends nothing does not hold up a scrape:
/// the daemon serves connections side by side, so the scrape is answered
/// while the silent client still waits for its 408. Served one after the
/// other, the 408 would always come first. An order, not a speed: a round
/// is inconclusive only if the machine stalled for the whole 1 s request
/// timeout, so up to five rounds.
#[test]
fn a_silent_connection_does_not_hold_up_a_scrape() {
    let Some(bin) = binary() else { return };
    let (mut server, _, _) = start_server_with(bin, &["--metrics", "127.0.0.1:0"]);
    let url = server.next_url("metrics");
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("metrics URL {url:?}"))
        .to_owned();
    let side_by_side = (0..5).any(|_| {
        let silent: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(&addr).expect("connect"))
            .collect();
        let started = Instant::now();
        let m = scrape(&addr);
        assert!(m.contains_key("nng_discovery_peers"), "{m:?}");
        // A generous bound as well: never near the 3 x 1 s of a serial
        // server, far above a scrape's milliseconds.
        assert!(
            started.elapsed() < patience(),
            "scrape took {:?}",
            started.elapsed()
        );
        silent.iter().any(|s| {
            s.set_nonblocking(true).expect("non-blocking");
            let mut byte = [0u8; 1];
            matches!((&*s).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
    });
    assert!(side_by_side, "every scrape waited for the silent clients");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
}
