//! `server --metrics ADDR`: the server's counters in the Prometheus text
//! exposition format ([`render`], pure and unit-tested). The HTTP side
//! (`GET /metrics`, `/healthz`, `/peers`) is the `http` module.

use std::fmt::Write as _;

use nng_discovery::Stats;

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one metric family (HELP, TYPE, one sample per label set).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// `s` (and the daemon's `version`) in the Prometheus text exposition
/// format, version 0.0.4: gauges for the current values, counters (`_total`)
/// for the counts since the server started.
pub fn render(s: &Stats, version: &str) -> String {
    let mut out = String::with_capacity(2048);
    let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
        family(out, name, "gauge", help, &[("", value as u64)]);
    };
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        family(out, name, "counter", help, &[("", value)]);
    };
    let version = version.replace('\\', "\\\\").replace('"', "\\\"");
    family(
        &mut out,
        "nng_discovery_build_info",
        "gauge",
        "Always 1; the version label is the daemon's version.",
        &[(&format!("{{version=\"{version}\"}}"), 1)],
    );
    gauge(
        &mut out,
        "nng_discovery_peers",
        "Names currently listed.",
        s.peers,
    );
    gauge(
        &mut out,
        "nng_discovery_connections",
        "Open connections on the survey socket (clients).",
        s.connections,
    );
    gauge(
        &mut out,
        "nng_discovery_subscribers",
        "Open connections on the publish socket (subscribers).",
        s.subscribers,
    );
    family(
        &mut out,
        "nng_discovery_answers_last_round",
        "gauge",
        "Answers to the last completed heartbeat round received in time.",
        &[("", s.answers_last_round)],
    );
    counter(
        &mut out,
        "nng_discovery_surveys_total",
        "Surveys sent (heartbeat rounds and surveys of new connections).",
        s.surveys_sent,
    );
    counter(
        &mut out,
        "nng_discovery_rounds_total",
        "Heartbeat rounds completed.",
        s.rounds,
    );
    counter(
        &mut out,
        "nng_discovery_rounds_not_counted_total",
        "Heartbeat rounds that charged no miss because the server was behind (stopped, starved of CPU, or answers unread).",
        s.rounds_not_counted,
    );
    counter(
        &mut out,
        "nng_discovery_answers_total",
        "Valid answers taken.",
        s.answers,
    );
    counter(
        &mut out,
        "nng_discovery_announcements_total",
        "Announcements taken: answers clients sent unasked on connecting (each also counted as an answer or a refusal).",
        s.announcements,
    );
    family(
        &mut out,
        "nng_discovery_refused_answers_total",
        "counter",
        "Answers refused: invalid name, stale survey id, list full (max peers), or name not on the peer's host.",
        &[
            ("{reason=\"invalid\"}", s.refused_invalid),
            ("{reason=\"stale\"}", s.refused_stale),
            ("{reason=\"full\"}", s.refused_full),
            ("{reason=\"peer_host\"}", s.refused_peer_host),
        ],
    );
    family(
        &mut out,
        "nng_discovery_refused_connections_total",
        "counter",
        "Connections closed on arrival: address outside --allow-from, or --max-connections open.",
        &[
            ("{reason=\"network\"}", s.refused_network),
            ("{reason=\"limit\"}", s.refused_connections),
        ],
    );
    counter(
        &mut out,
        "nng_discovery_publishes_total",
        "Lists published (changes, new subscribers and republishes).",
        s.publishes,
    );
    counter(
        &mut out,
        "nng_discovery_published_bytes_total",
        "Bytes of list bodies published, once per publish.",
        s.bytes_published,
    );
    gauge(
        &mut out,
        "nng_discovery_watchers",
        "Open connections on the watch socket (watchers).",
        s.watchers,
    );
    gauge(
        &mut out,
        "nng_discovery_watch_held",
        "Watch requests held, waiting for a change or their keepalive.",
        s.watch_held,
    );
    counter(
        &mut out,
        "nng_discovery_watch_requests_total",
        "Watch requests received.",
        s.watch_requests,
    );
    family(
        &mut out,
        "nng_discovery_watch_replies_total",
        "counter",
        "Watch replies sent, by kind: snapshot, delta, keepalive or offer (of the broadcast URL).",
        &[
            ("{kind=\"snapshot\"}", s.watch_snapshots),
            ("{kind=\"delta\"}", s.watch_deltas),
            ("{kind=\"keepalive\"}", s.watch_keepalives),
            ("{kind=\"offer\"}", s.watch_offers),
        ],
    );
    gauge(
        &mut out,
        "nng_discovery_watch_followers",
        "Open connections on the watch broadcast socket (followers).",
        s.watch_followers,
    );
    counter(
        &mut out,
        "nng_discovery_watch_broadcasts_total",
        "Watch broadcasts sent (deltas and keepalives), once each whatever the number of followers.",
        s.watch_broadcasts,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        let mut s = Stats::default();
        s.peers = 1;
        s.connections = 2;
        s.subscribers = 3;
        s.surveys_sent = 4;
        s.rounds = 5;
        s.rounds_not_counted = 26;
        s.answers_last_round = 6;
        s.answers = 7;
        s.refused_invalid = 8;
        s.refused_stale = 9;
        s.refused_full = 10;
        s.publishes = 11;
        s.bytes_published = 12;
        s.watchers = 13;
        s.watch_held = 14;
        s.watch_requests = 15;
        s.watch_snapshots = 16;
        s.watch_deltas = 17;
        s.watch_keepalives = 18;
        s.watch_offers = 22;
        s.watch_followers = 23;
        s.watch_broadcasts = 24;
        s.refused_network = 19;
        s.refused_connections = 20;
        s.refused_peer_host = 21;
        s.announcements = 25;
        s
    }

    #[test]
    fn renders_every_field_once_with_help_and_type() {
        let text = render(&stats(), "1.2.3");
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "nng_discovery_build_info{version=\"1.2.3\"} 1",
                "nng_discovery_peers 1",
                "nng_discovery_connections 2",
                "nng_discovery_subscribers 3",
                "nng_discovery_answers_last_round 6",
                "nng_discovery_surveys_total 4",
                "nng_discovery_rounds_total 5",
                "nng_discovery_rounds_not_counted_total 26",
                "nng_discovery_answers_total 7",
                "nng_discovery_announcements_total 25",
                "nng_discovery_refused_answers_total{reason=\"invalid\"} 8",
                "nng_discovery_refused_answers_total{reason=\"stale\"} 9",
                "nng_discovery_refused_answers_total{reason=\"full\"} 10",
                "nng_discovery_refused_answers_total{reason=\"peer_host\"} 21",
                "nng_discovery_refused_connections_total{reason=\"network\"} 19",
                "nng_discovery_refused_connections_total{reason=\"limit\"} 20",
                "nng_discovery_publishes_total 11",
                "nng_discovery_published_bytes_total 12",
                "nng_discovery_watchers 13",
                "nng_discovery_watch_held 14",
                "nng_discovery_watch_requests_total 15",
                "nng_discovery_watch_replies_total{kind=\"snapshot\"} 16",
                "nng_discovery_watch_replies_total{kind=\"delta\"} 17",
                "nng_discovery_watch_replies_total{kind=\"keepalive\"} 18",
                "nng_discovery_watch_replies_total{kind=\"offer\"} 22",
                "nng_discovery_watch_followers 23",
                "nng_discovery_watch_broadcasts_total 24",
            ]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_family_has_help_then_type_before_its_samples() {
        let text = render(&stats(), "0.1.0");
        let lines: Vec<&str> = text.lines().collect();
        let mut families = 0;
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families += 1;
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(lines[i - 1].starts_with(&format!("# HELP {name} ")));
                // Prometheus naming: counters end in _total, gauges do not.
                match kind {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                    other => panic!("{name}: type {other}"),
                }
                assert!(name.starts_with("nng_discovery_"), "{name}");
                assert!(lines[i + 1].starts_with(name), "{name}: no sample");
            } else if !line.starts_with('#') {
                // Each sample belongs to the family declared above it.
                let declared = lines[..i]
                    .iter()
                    .rev()
                    .find_map(|l| l.strip_prefix("# TYPE "))
                    .unwrap();
                let family = declared.split(' ').next().unwrap();
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
            }
        }
        assert_eq!(families, 20);
    }

    #[test]
    fn a_version_with_quotes_is_escaped() {
        let text = render(&Stats::default(), "1\"2\\3");
        assert!(text.contains("nng_discovery_build_info{version=\"1\\\"2\\\\3\"} 1\n"));
    }

    proptest::proptest! {
        #[test]
        fn rendered_values_are_the_stats(v in proptest::prelude::any::<[u64; 26]>()) {
            let mut s = Stats::default();
            s.peers = v[0] as usize;
            s.connections = v[1] as usize;
            s.subscribers = v[2] as usize;
            s.surveys_sent = v[3];
            s.rounds = v[4];
            s.answers_last_round = v[5];
            s.answers = v[6];
            s.refused_invalid = v[7];
            s.refused_stale = v[8];
            s.refused_full = v[9];
            s.publishes = v[10];
            s.bytes_published = v[11];
            s.watchers = v[12] as usize;
            s.watch_held = v[13] as usize;
            s.watch_requests = v[14];
            s.watch_snapshots = v[15];
            s.watch_deltas = v[16];
            s.watch_keepalives = v[17];
            s.refused_network = v[18];
            s.refused_connections = v[19];
            s.refused_peer_host = v[20];
            s.rounds_not_counted = v[21];
            s.announcements = v[22];
            s.watch_offers = v[23];
            s.watch_followers = v[24] as usize;
            s.watch_broadcasts = v[25];
            let text = render(&s, "0.1.0");
            let values: Vec<u64> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .skip(1) // build_info
                .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                .collect();
            let want = [
                s.peers as u64, s.connections as u64, s.subscribers as u64,
                s.answers_last_round, s.surveys_sent, s.rounds, s.rounds_not_counted, s.answers, s.announcements,
                s.refused_invalid, s.refused_stale, s.refused_full,
                s.refused_peer_host, s.refused_network, s.refused_connections,
                s.publishes, s.bytes_published,
                s.watchers as u64, s.watch_held as u64, s.watch_requests,
                s.watch_snapshots, s.watch_deltas, s.watch_keepalives,
                s.watch_offers, s.watch_followers as u64, s.watch_broadcasts,
            ];
            proptest::prop_assert_eq!(values, want.to_vec());
        }
    }
}
