//! `Client::set_available`: a client taken out of the list and put back,
//! over real TCP connections, with its threads and subscription untouched.

mod common;

use std::time::Duration;

use common::*;
use nng_discovery::{Client, Options, Subscriber};

/// A client with a subscription toggled 100 times: each leave and each
/// return reaches an independent subscriber and the client's own
/// subscription, and afterwards the process has no more threads or file
/// descriptors than before. Runs in a child process, so that no other test
/// starts threads while it counts.
#[test]
fn a_client_toggled_a_hundred_times_is_seen_every_time_and_leaves_nothing_behind() {
    if !is_child() {
        return run_isolated(
            "a_client_toggled_a_hundred_times_is_seen_every_time_and_leaves_nothing_behind",
        );
    }
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let stable = Client::new(server.survey_url(), "http://stable").expect("client");
    let client =
        Client::with_subscription(server.survey_url(), server.publish_url(), "http://toggled")
            .expect("client");
    let own = client.peers().expect("subscription");
    let both = ["http://stable", "http://toggled"];
    wait_for_list(&lists, &both);
    wait_for_list(&own, &both);
    assert!(client.is_available());

    let toggle = |available: bool| {
        client.set_available(available);
        // Setting the same value again does nothing.
        client.set_available(available);
        assert_eq!(client.is_available(), available);
        let want: &[&str] = if available { &both } else { &["http://stable"] };
        // patience() (10 s, more under qemu) is thousands of times what this takes (ms).
        wait_for_list(&lists, want);
        wait_for_list(&own, want);
    };
    // Warm up (NNG's pool, allocator arenas), then take the levels.
    for _ in 0..5 {
        toggle(false);
        toggle(true);
    }
    let before = settled_counts();
    for _ in 0..100 {
        toggle(false);
        toggle(true);
    }
    let after = settled_counts();
    eprintln!("threads and fds: {before:?} -> {after:?}");
    assert!(
        after.0 <= before.0,
        "threads left behind: {before:?} -> {after:?}"
    );
    assert!(
        after.1 <= before.1,
        "file descriptors left behind: {before:?} -> {after:?}"
    );
    // Unavailable, the threads are the same too: nothing stops or starts.
    toggle(false);
    let unavailable = settled_counts();
    assert!(
        unavailable.0 == after.0,
        "threads changed while unavailable: {after:?} -> {unavailable:?}"
    );
    let stats = server.stats();
    assert_eq!((stats.peers, stats.connections), (1, 1), "{stats:?}");
    drop(stable);
    wait_for_list(&own, &[]);
    client.shutdown();
}

#[test]
fn a_client_can_start_unavailable() {
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let stable = Client::new(server.survey_url(), "http://stable").expect("client");
    let warming = Client::with_options(
        server.survey_url(),
        Some(server.publish_url()),
        "http://warming",
        &Options::default().available(false),
    )
    .expect("client");
    assert!(!warming.is_available());
    // Its subscription works while it is not listed.
    wait_for_list(&warming.peers().expect("subscription"), &["http://stable"]);
    wait_for_list(&lists, &["http://stable"]);
    warming.set_available(true);
    wait_for_list(&lists, &["http://stable", "http://warming"]);
    drop(stable);
    wait_for_list(&lists, &["http://warming"]);
}

#[test]
fn an_unavailable_client_still_refuses_a_bad_url() {
    let options = Options::default().available(false);
    assert!(Client::with_options("tcp://127.0.0.1:99999", None, "x", &options).is_err());
    assert!(Client::with_options("nope://x", None, "x", &options).is_err());
}

/// Several threads set the availability at once; the last value set wins,
/// and the list follows it.
#[test]
fn concurrent_calls_end_in_the_last_value_set() {
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let client = Client::new(server.survey_url(), "http://busy").expect("client");
    wait_for_list(&lists, &["http://busy"]);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let client = &client;
            scope.spawn(move || {
                for i in 0..50 {
                    client.set_available((i + t) % 3 != 0);
                }
            });
        }
    });
    client.set_available(false);
    wait_for_list(&lists, &[]);
    assert!(!client.is_available());
    client.set_available(true);
    wait_for_list(&lists, &["http://busy"]);
    assert!(client.is_available());
}

/// With no server, going unavailable and back is quick and harmless: the
/// client keeps redialing once available, and is listed once a server
/// appears.
#[test]
fn toggling_without_a_server_then_the_server_comes() {
    let (survey, publish) = reserved_tcp_urls();
    let options = Options::default().reconnect_max(Duration::from_millis(100));
    let client = Client::with_options(&survey, None, "http://early", &options).expect("client");
    for _ in 0..5 {
        client.set_available(false);
        client.set_available(true);
    }
    let server = match nng_discovery::Server::new(&survey, &publish, fast_options()) {
        Ok(server) => server,
        // The reserved port was taken meanwhile by someone else: nothing to
        // learn from this run.
        Err(nng_discovery::Error::AddressInUse { .. }) => return,
        Err(e) => panic!("server on {survey}: {e}"),
    };
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    wait_for_list(&sub.changes(), &["http://early"]);
}

/// Leaving and coming back works the same over IPC and inproc as over TCP.
#[test]
fn toggling_over_every_transport() {
    for (survey, publish) in [
        (ipc_url("avail-s"), ipc_url("avail-p")),
        (inproc_url("avail-s"), inproc_url("avail-p")),
    ] {
        let server = nng_discovery::Server::new(&survey, &publish, fast_options()).expect("server");
        let sub = Subscriber::new(server.publish_url()).expect("subscriber");
        let lists = sub.changes();
        let client = Client::new(server.survey_url(), "http://t").expect("client");
        wait_for_list(&lists, &["http://t"]);
        for _ in 0..10 {
            client.set_available(false);
            wait_for_list(&lists, &[]);
            client.set_available(true);
            wait_for_list(&lists, &["http://t"]);
        }
    }
}
