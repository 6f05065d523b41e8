//! Creating and dropping hundreds of servers, clients and subscribers leaves
//! no thread and no file descriptor behind.
//!
//! This binary holds a single test so that nothing else runs in the process
//! while it counts `/proc/self/task` and `/proc/self/fd`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nng_discovery::{Client, Server, Subscriber};

/// What the open file descriptors are, counted by kind ("socket",
/// "anon_inode:[eventfd]", a path...), for a failure message.
fn fd_kinds() -> String {
    let mut kinds = std::collections::BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        for entry in entries.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            let kind = match target.find(":[") {
                Some(i) if !target.starts_with("anon_inode") => target[..i].to_owned(),
                _ => target,
            };
            *kinds.entry(kind).or_insert(0usize) += 1;
        }
    }
    format!("{kinds:?}")
}

/// URLs for a server over transport number `kind`: TCP, IPC or inproc.
fn urls(kind: usize) -> (String, String) {
    match kind % 3 {
        0 => ("tcp://127.0.0.1:0".into(), "tcp://127.0.0.1:0".into()),
        1 => (ipc_url("res-s"), ipc_url("res-p")),
        _ => (inproc_url("res-s"), inproc_url("res-p")),
    }
}

/// Options with the fast heartbeat and a watch URL over transport number
/// `kind`, like [`urls`].
fn watch_options(kind: usize) -> nng_discovery::Options {
    let watch = match kind % 3 {
        0 => "tcp://127.0.0.1:0".to_owned(),
        1 => ipc_url("res-w"),
        _ => inproc_url("res-w"),
    };
    fast_options().watch_url(watch)
}

/// One server with a plain client, a client with a subscription, a
/// subscriber, a client following the watch URL and a watcher, all
/// connected (the lists prove it), then all dropped.
/// Returns how many objects it made.
fn connected_round(kind: usize, round: usize) -> usize {
    let (s, p) = urls(kind);
    let server = Server::new(&s, &p, watch_options(kind)).expect("server");
    let watch_url = server.watch_url().expect("a watch URL").to_owned();
    let plain_name = format!("plain-{round}");
    let sub_name = format!("sub-{round}");
    let plain = Client::new(server.survey_url(), &plain_name).expect("client");
    let with_sub = Client::with_subscription(server.survey_url(), server.publish_url(), &sub_name)
        .expect("client with subscription");
    let subscriber = Subscriber::new(server.publish_url()).expect("subscriber");
    let watch_name = format!("watch-{round}");
    let with_watch = Client::with_watch(server.survey_url(), &watch_url, &watch_name)
        .expect("client with watch");
    let watcher = Subscriber::watch(&watch_url).expect("watcher");
    let mut want = vec![plain_name, sub_name, watch_name];
    want.sort();
    wait_for(&subscriber.changes(), |l| l == want.as_slice(), patience());
    wait_for(&watcher.changes(), |l| l == want.as_slice(), patience());
    wait_for(
        &with_watch.peers().expect("watch"),
        |l| l == want.as_slice(),
        patience(),
    );
    wait_for(
        &with_sub.peers().expect("subscription"),
        |l| l == want.as_slice(),
        patience(),
    );
    drop((watcher, with_watch));
    // Vary the order in which they go.
    match round % 3 {
        0 => {
            drop(plain);
            drop(with_sub);
            drop(subscriber);
            drop(server);
        }
        1 => {
            server.shutdown();
            subscriber.shutdown();
            with_sub.shutdown();
            plain.shutdown();
        }
        _ => {
            drop(subscriber);
            server.shutdown();
            drop(plain);
            with_sub.shutdown();
        }
    }
    6
}

/// Clients and subscribers made and dropped at once, while still dialing,
/// some of them towards nothing at all.
fn hasty_round(kind: usize, server: &Server) -> usize {
    let (nowhere_s, nowhere_p) = urls(kind);
    let nowhere_s = if nowhere_s.ends_with(":0") {
        "tcp://127.0.0.1:1".to_owned()
    } else {
        nowhere_s
    };
    let nowhere_p = if nowhere_p.ends_with(":0") {
        "tcp://127.0.0.1:1".to_owned()
    } else {
        nowhere_p
    };
    drop(Client::new(server.survey_url(), "hasty").expect("client"));
    drop(
        Client::with_subscription(server.survey_url(), server.publish_url(), "hasty-sub")
            .expect("client with subscription"),
    );
    drop(Subscriber::new(server.publish_url()).expect("subscriber"));
    drop(Client::new(&nowhere_s, "lonely").expect("client dialing nothing"));
    drop(
        Client::with_subscription(&nowhere_s, &nowhere_p, "lonely-sub")
            .expect("client with subscription dialing nothing"),
    );
    drop(Subscriber::new(&nowhere_p).expect("subscriber dialing nothing"));
    // Several servers, one of them absent (issue 17).
    drop(
        Client::with_subscription(
            [server.survey_url(), nowhere_s.as_str()],
            [server.publish_url(), nowhere_p.as_str()],
            "multi-sub",
        )
        .expect("client of two servers"),
    );
    drop(
        Subscriber::new([nowhere_p.as_str(), server.publish_url()])
            .expect("subscriber of two servers"),
    );
    // Watchers (issue 14), of the server and of nowhere (the publish URL
    // of nowhere is as absent as a watch URL would be).
    let watch_url = server.watch_url().expect("a watch URL");
    drop(Subscriber::watch(watch_url).expect("watcher"));
    drop(Subscriber::watch(&nowhere_p).expect("watcher of nothing"));
    drop(
        Client::with_watch(
            [server.survey_url(), nowhere_s.as_str()],
            [watch_url, nowhere_p.as_str()],
            "multi-watch",
        )
        .expect("client watching two servers"),
    );
    11
}

fn warm_up() {
    for kind in 0..3 {
        connected_round(kind, 0);
    }
}

#[test]
fn no_threads_or_descriptors_leak() {
    warm_up();
    let (threads_before, fds_before) = settled_counts();

    // The churn runs on its own thread so that a hang (a drop that never
    // returns) fails the test instead of stalling it.
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let (progress_tx, progress_rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("churn".into())
        .spawn(move || {
            let mut made = 0;
            for round in 0..90 {
                made += connected_round(round, round);
                let _ = progress_tx.send(format!("connected round {round}"));
            }
            for kind in 0..3 {
                let (s, p) = urls(kind);
                let server = Server::new(&s, &p, watch_options(kind)).expect("server");
                let _keep = Client::new(server.survey_url(), "anchor").expect("client");
                wait_for_list(&server.changes(), &["anchor"]);
                for i in 0..15 {
                    made += hasty_round(kind, &server);
                    let _ = progress_tx.send(format!("hasty round {i} on transport {kind}"));
                }
                made += 2;
            }
            let _ = done_tx.send(made);
        })
        .expect("spawn the churn thread");
    // Each step takes well under a second; one that takes 30 s (300 s
    // under qemu) is stuck.
    let mut last = None;
    let made = loop {
        if let Ok(made) = done_rx.try_recv() {
            break made;
        }
        match progress_rx.recv_timeout(slow(Duration::from_secs(30))) {
            Ok(step) => last = Some(step),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => match done_rx.try_recv() {
                Ok(made) => break made,
                Err(_) => panic!("the churn thread panicked after {last:?}"),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                panic!(
                    "the churn is stuck: nothing for {:?} after {last:?}",
                    slow(Duration::from_secs(30))
                )
            }
        }
    };
    // The churn thread itself has ended: wait until it is gone from /proc.
    assert!(made >= 500, "only {made} objects made");

    // Everything is gone: wait for NNG to finish closing connections.
    let deadline = Instant::now() + patience();
    let mut now = counts();
    while (now.0 > threads_before || now.1 > fds_before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = counts();
    }
    assert!(
        now.0 <= threads_before && now.1 <= fds_before,
        "after making and dropping {made} objects: {} threads (baseline {threads_before}), \
         {} open file descriptors (baseline {fds_before}); descriptors now: {}",
        now.0,
        now.1,
        fd_kinds()
    );
}
