//! The load generator against a real server: an independent implementation
//! of the wire protocol (the `loadgen` binary speaks SP over TCP itself)
//! checks that the server lists every peer that answers, counts every
//! answer in every heartbeat round, evicts peers that hang after
//! `miss_threshold` rounds, and keeps listing the rest.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nng_discovery::{Options, Server, Stats};
use nng_discovery_loadgen::peer_name;

mod common;
use common::Generator;

const PEERS: u32 = 500;
const NEVER_ANSWER: u32 = 3;
const HANG: usize = 5;
const SUBS: u32 = 2;
const THRESHOLD: u32 = 2;
/// Every wait is bounded by this: the longest wait here is 5 heartbeat
/// rounds (5 s), so this is over 10x anything that should happen.
const DEADLINE: Duration = Duration::from_secs(60);
/// The heartbeat of this test. The survey time is what every one of the
/// 500 peers has to answer a survey in, or be counted as missing it (and,
/// after THRESHOLD rounds, be evicted, which fails the test): an answer
/// takes about 10 ms over loopback even for all 500 at once, so 800 ms
/// leaves the generator and the server room to be descheduled on a busy
/// machine. The test checks what happens in each round, never how fast.
const POLL: Duration = Duration::from_millis(1000);
const SURVEY: Duration = Duration::from_millis(800);

fn start_generator(server: &Server) -> Generator {
    let args = [
        "--survey",
        server.survey_url(),
        "--publish",
        server.publish_url(),
        "--peers",
        &PEERS.to_string(),
        "--hung",
        &NEVER_ANSWER.to_string(),
        "--subs",
        &SUBS.to_string(),
        "--print-lists",
    ];
    Generator::start(&args, DEADLINE)
}

fn names(range: std::ops::Range<u32>) -> BTreeSet<String> {
    range.map(|i| peer_name(i, 0)).collect()
}

/// Waits for the server to publish exactly `want`.
fn wait_for_list(server: &Server, want: &BTreeSet<String>) {
    common::wait_for_list(server, want, DEADLINE);
}

/// Watches `rounds` consecutive heartbeat rounds and checks each one: the
/// number of answers to it, the names listed, the connections. The round
/// under way when called is skipped (it may have started before the list
/// settled). Rounds that end unseen between two samples (a descheduled
/// test) are not checked, but at least `rounds` must be.
fn check_rounds(server: &Server, rounds: u32, answers: u64, listed: &BTreeSet<String>) {
    let connections = (PEERS + NEVER_ANSWER) as usize;
    let deadline = Instant::now() + DEADLINE;
    let first = server.stats().rounds + 1;
    let mut last: Stats = server.stats();
    let mut checked = 0;
    while checked < rounds {
        assert!(
            Instant::now() < deadline,
            "only {checked} of {rounds} rounds seen"
        );
        // Sampling, not synchronisation: a round lasts POLL (1 s).
        std::thread::sleep(Duration::from_millis(5));
        let s = server.stats();
        if s.rounds == last.rounds {
            continue;
        }
        if s.rounds == last.rounds + 1 && s.rounds > first {
            assert_eq!(
                s.answers_last_round, answers,
                "round {}: {} answers, expected one from each of the {answers} answering peers",
                s.rounds, s.answers_last_round
            );
            assert_eq!(s.peers, listed.len(), "round {}: peers listed", s.rounds);
            assert_eq!(s.connections, connections, "round {}", s.rounds);
            let now: BTreeSet<String> = server.peers().into_iter().collect();
            assert_eq!(&now, listed, "round {}: the list changed", s.rounds);
            checked += 1;
        }
        last = s;
    }
}

#[test]
fn the_server_lists_every_answering_peer_round_after_round() {
    let t0 = Instant::now();
    let options = Options::default()
        .poll_interval(POLL)
        .survey_time(SURVEY)
        .miss_threshold(THRESHOLD);
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("server");
    let mut gen = start_generator(&server);

    // Every answering peer is listed; the never-answering ones are not.
    let all = names(0..PEERS);
    gen.expect("connected", |l| {
        l.num::<u32>("peers") == Some(PEERS + NEVER_ANSWER)
    });
    wait_for_list(&server, &all);
    // The generator's own raw subscribers hold the full list too.
    gen.expect("all_full", |l| l.num::<u32>("subs") == Some(SUBS));
    check_rounds(&server, 4, PEERS.into(), &all);

    // Some peers hang: connected, reading surveys, never answering.
    let before = server.stats().rounds;
    gen.command(&format!("hang {HANG}"));
    let hung = gen.expect("hung", |_| true);
    let hung: BTreeSet<String> = hung
        .get("names")
        .expect("names")
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(hung.len(), HANG);
    let alive: BTreeSet<String> = all.difference(&hung).cloned().collect();
    wait_for_list(&server, &alive);
    let evicted_after = server.stats().rounds - before;
    // Evicted at the end of the THRESHOLD-th round they missed; the round
    // under way when they hung may still have had their answer, and one
    // more round may end before this thread reads the counter (it would
    // have to be descheduled for a whole POLL, 1 s, after the change).
    assert!(
        (u64::from(THRESHOLD)..=u64::from(THRESHOLD) + 2).contains(&evicted_after),
        "hung peers evicted after {evicted_after} rounds, threshold is {THRESHOLD}"
    );
    // Still connected, no longer listed; the others keep being listed.
    let answering = u64::from(PEERS) - HANG as u64;
    check_rounds(&server, 5, answering, &alive);
    gen.expect("list", |l| l.num::<u64>("len") == Some(answering));

    let stats = server.stats();
    assert_eq!(stats.refused_invalid, 0);
    assert_eq!(stats.refused_full, 0);
    let end = gen.finish();
    assert!(end.num::<u64>("answers").unwrap() >= 9 * u64::from(PEERS));
    assert_eq!(end.num::<u64>("reconnects"), Some(0));
    server.shutdown();
    eprintln!("took {:?}", t0.elapsed());
}
