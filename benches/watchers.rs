//! Many clients in one process that all follow the list: `Client::with_watch`
//! against a server with a watch broadcast URL (the broadcast), against one
//! without (REQ/REP watch), and `Client::with_subscription` (classic), same
//! server options, same run.
//!
//! For each kind and count N: the time from creating the first of N clients
//! until every client's `peers()` holds all N names ("all listed"), and
//! the time from dropping the first until an observer sees the empty list
//! ("all dropped"). Prints one row per case.
//!
//! `cargo bench --bench watchers` (N = 200 for every kind, then 1,000 for
//! the broadcast only; `CLASSIC_MAX=1000` and `WATCH_MAX=1000` run the
//! classic and REQ/REP 1,000 too, which take minutes).
//!
//! `ONLY_N=N` runs the rows of that N only (any N). Per run it also prints
//! the time the drop loop itself took with the slowest single drop, and
//! the server's publish and watch counters, on standard error.
//!
//! The observer's lists are read as they come: a latest-wins channel left
//! unread holds only a list that differs from the last one read, and the
//! final empty list equals the first.

use std::time::{Duration, Instant};

use nng_discovery::{Client, Options, Server, Subscriber};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Broadcast,
    Watch,
    Classic,
}

fn run(kind: Kind, n: usize) -> (Duration, Duration) {
    let options = Options::default()
        .poll_interval(Duration::from_secs(5))
        .survey_time(Duration::from_millis(500))
        .watch_url("tcp://127.0.0.1:0");
    let options = match kind {
        Kind::Broadcast => options.watch_broadcast_url("tcp://127.0.0.1:0"),
        Kind::Watch | Kind::Classic => options,
    };
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("server");
    let watch = server.watch_url().expect("watch URL").to_owned();
    let observer = Subscriber::watch(&watch).expect("observer");
    let changes = observer.changes();
    // The server's first list (after its first survey) is out.
    while !changes
        .recv_timeout(Duration::from_secs(60))
        .expect("first list")
        .is_empty()
    {}
    // From here on the observer's lists are read as they come, each with
    // the time it was read. (Left unread, a channel holds only the newest
    // list, and only if it differs from the last one read: the final empty
    // list equals the first one, so it would never show.)
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let reading = std::thread::spawn(move || {
        for list in changes {
            if seen_tx.send((Instant::now(), list.len())).is_err() {
                return;
            }
        }
    });

    let t0 = Instant::now();
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            let name = format!("http://10.0.{}.{}:8080", i / 250, i % 250);
            match kind {
                Kind::Broadcast | Kind::Watch => {
                    Client::with_watch(server.survey_url(), &watch, &name)
                }
                Kind::Classic => {
                    Client::with_subscription(server.survey_url(), server.publish_url(), &name)
                }
            }
            .expect("client")
        })
        .collect();
    eprintln!("  creating {n} clients took {:.2?}", t0.elapsed());
    let peers: Vec<_> = clients.iter().map(|c| c.peers().expect("peers")).collect();
    let mut full = vec![false; n];
    let give_up = t0 + Duration::from_secs(600);
    while full.iter().any(|f| !f) {
        assert!(Instant::now() < give_up, "not all listed within 600 s");
        for (rx, f) in peers.iter().zip(full.iter_mut()) {
            if let Some(last) = rx.try_iter().last() {
                *f = last.len() == n;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let listed = t0.elapsed();

    let t1 = Instant::now();
    drop(peers);
    let mut worst = Duration::ZERO;
    for client in clients {
        let t = Instant::now();
        drop(client);
        worst = worst.max(t.elapsed());
    }
    eprintln!(
        "  dropping {n} clients took {:.2?} (worst single drop {worst:.2?})",
        t1.elapsed()
    );
    let dropped = loop {
        let (at, len) = seen
            .recv_timeout(Duration::from_secs(120))
            .expect("the empty list");
        if len == 0 && at > t1 {
            break at - t1;
        }
    };
    let s = server.stats();
    eprintln!(
        "  server: {} publishes, {} bytes published, {} announcements, {} surveys; watch: {} snapshots, {} deltas, {} broadcasts, {} offers",
        s.publishes,
        s.bytes_published,
        s.announcements,
        s.surveys_sent,
        s.watch_snapshots,
        s.watch_deltas,
        s.watch_broadcasts,
        s.watch_offers
    );
    drop(observer);
    reading.join().expect("the observer's reader");
    (listed, dropped)
}

fn main() {
    let _ = env_logger::try_init();
    let classic_max: usize = std::env::var("CLASSIC_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let watch_max: usize = std::env::var("WATCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let only: Option<usize> = std::env::var("ONLY_N").ok().and_then(|v| v.parse().ok());
    println!("| clients following the list | N | all listed | all dropped |");
    println!("|---|---|---|---|");
    let sizes = match only {
        Some(n) => vec![n],
        None => vec![200, 1000],
    };
    let cases = sizes
        .into_iter()
        .flat_map(|n| [(Kind::Broadcast, n), (Kind::Watch, n), (Kind::Classic, n)]);
    for (kind, n) in cases {
        if (kind == Kind::Classic && n > classic_max) || (kind == Kind::Watch && n > watch_max) {
            continue;
        }
        let (listed, dropped) = run(kind, n);
        let what = match kind {
            Kind::Broadcast => "`Client::with_watch`, broadcast",
            Kind::Watch => "`Client::with_watch`, REQ/REP",
            Kind::Classic => "`Client::with_subscription`",
        };
        println!("| {what} | {n} | {listed:.2?} | {dropped:.2?} |");
    }
}
