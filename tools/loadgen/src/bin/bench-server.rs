//! `bench-server`: runs an `nng_discovery::Server` with options from its
//! arguments and prints its counters, for the scale benchmark.
//!
//! ```text
//! bench-server [--survey tcp://127.0.0.1:0] [--publish tcp://127.0.0.1:0]
//!              [--poll-ms 5000] [--survey-ms 1000] [--threshold 2]
//!              [--republish-ms 30000] [--gap-ms 2] [--event-driven true]
//!              [--sample-ms 100] [--stats-ms 1000] [--first-publish-ms 0]
//!              [--watch tcp://127.0.0.1:0] [--watch-keepalive-ms 10000]
//!              [--watch-broadcast tcp://127.0.0.1:0]
//! ```
//!
//! `--watch-broadcast URL` (with `--watch`) also broadcasts each change
//! there (`Options::watch_broadcast_url`) and prints `broadcast=URL` on
//! the `ready` line.
//!
//! `--watch URL` also serves the watch protocol there (`Options::watch_url`),
//! with `--watch-keepalive-ms` as `Options::watch_keepalive` (the library's
//! default, 10 s, unless given).
//!
//! `--first-publish-ms` is the server's first publish delay: 0 (the first
//! list when the first heartbeat round ends) unless given, so that the
//! rows measured before the delay existed stay comparable; `default` leaves
//! the library's default (2 × `reconnect_max` + `survey_time`).
//!
//! Prints `ready survey=URL publish=URL first_publish_ms=D` (and
//! `watch=URL`, the bound watch URL, with `--watch`); `first_list
//! t=S len=N` when the server publishes its first list (`t` in seconds
//! from just before the server was created, as its changes receiver sees
//! it); then, sampling the counters every
//! 100 ms, a `round n=.. answers=..` line for every heartbeat round that
//! ended (`missed=K` if K rounds ended unseen between two samples) and a
//! `stats` line with every counter once a second (`--stats-ms`; the
//! library's `Stats` line, watch counters included: `watchers`,
//! `watch_held`, `watch_requests`, `watch_snapshots`, `watch_deltas`,
//! `watch_keepalives`). Stops at the end of standard input.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nng_discovery::{Options, Server, Stats};
use nng_discovery_loadgen::Args;

fn main() {
    let args = Args::from_env();
    let ms = |key: &str, default: u64| Duration::from_millis(args.get(key, default));
    let options = Options::default()
        .poll_interval(ms("poll-ms", 5000))
        .survey_time(ms("survey-ms", 1000))
        .miss_threshold(args.get("threshold", 2))
        .republish_interval(ms("republish-ms", 30_000))
        .publish_gap(ms("gap-ms", 2))
        .event_driven(args.get("event-driven", true));
    let options = match args.str("first-publish-ms") {
        Some("default") => options,
        _ => options.first_publish_delay(ms("first-publish-ms", 0)),
    };
    let options = match args.str("watch") {
        Some(url) => options.watch_url(url),
        None => options,
    };
    let options = match args.str("watch-broadcast") {
        Some(url) => options.watch_broadcast_url(url),
        None => options,
    };
    let options = match args.str("watch-keepalive-ms") {
        Some(_) => options.watch_keepalive(ms("watch-keepalive-ms", 10_000)),
        None => options,
    };
    let first_publish = match options.server_settings() {
        Ok(settings) => settings.first_publish_delay,
        Err(e) => {
            eprintln!("bench-server: {}", e.report());
            std::process::exit(2);
        }
    };
    let created = Instant::now();
    let server = Server::new(
        args.str("survey").unwrap_or("tcp://127.0.0.1:0"),
        args.str("publish").unwrap_or("tcp://127.0.0.1:0"),
        options,
    )
    .unwrap_or_else(|e| {
        eprintln!("bench-server: {e}");
        std::process::exit(1);
    });

    let (stop_tx, stop) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.map_or(true, |l| l.trim() == "quit") {
                break;
            }
        }
        let _ = stop_tx.send(());
    });

    let mut out = std::io::stdout().lock();
    let watch = server
        .watch_url()
        .map_or(String::new(), |url| format!(" watch={url}"))
        + &server
            .watch_broadcast_url()
            .map_or(String::new(), |url| format!(" broadcast={url}"));
    let _ = writeln!(
        out,
        "ready survey={} publish={} first_publish_ms={}{watch}",
        server.survey_url(),
        server.publish_url(),
        first_publish.as_millis()
    );
    // The first list, timed where it arrives (the sampling loop prints it).
    let (first_tx, first_list) = mpsc::channel::<(Instant, usize)>();
    let changes = server.changes();
    std::thread::spawn(move || {
        if let Ok(list) = changes.recv() {
            let _ = first_tx.send((Instant::now(), list.len()));
        }
    });
    let _ = out.flush();

    let start = Instant::now();
    let sample = Duration::from_millis(args.get("sample-ms", 100));
    let stats_every = Duration::from_millis(args.get("stats-ms", 1000));
    let mut next_sample = start + sample;
    let mut next_stats = start;
    let mut last_rounds = 0;
    loop {
        let wait = next_sample.saturating_duration_since(Instant::now());
        match stop.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
        next_sample += sample;
        let now = Instant::now();
        let t = now.duration_since(start).as_secs_f64();
        if let Ok((at, len)) = first_list.try_recv() {
            let _ = writeln!(
                out,
                "first_list t={:.3} len={len}",
                at.duration_since(created).as_secs_f64()
            );
        }
        let s = server.stats();
        if s.rounds != last_rounds {
            let _ = writeln!(
                out,
                "round t={t:.3} n={} answers={} peers={} connections={} missed={}",
                s.rounds,
                s.answers_last_round,
                s.peers,
                s.connections,
                s.rounds - last_rounds - 1
            );
            last_rounds = s.rounds;
        }
        if now >= next_stats {
            let _ = writeln!(out, "stats t={t:.3} {}", fields(&s));
            next_stats += stats_every;
        }
        let _ = out.flush();
    }
    server.shutdown();
}

fn fields(s: &Stats) -> String {
    // The library's own one-line form, which the scale benchmark parses.
    s.to_string()
}
