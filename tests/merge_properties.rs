//! Property tests of the multi-server merge (issue 17) against an
//! independent model, on random reports, departures, keepalives and time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nng_discovery::merge::Merge;
use proptest::prelude::*;

const POOL: [&str; 6] = ["a", "b", "c", "d", "http://10.0.0.1:8080", "☃"];

#[derive(Debug, Clone)]
enum Op {
    /// Source `0` says its list is `1` (possibly unsorted, duplicated).
    Report(u8, Vec<String>),
    /// Source `0`'s connection closed.
    Gone(u8),
    /// Source `0` sent a keepalive.
    Heard(u8),
    /// Time passes by this many milliseconds, then the owner ticks.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let source = 0..4u8;
    let list = prop::collection::vec(prop::sample::select(&POOL[..]).prop_map(String::from), 0..5);
    prop_oneof![
        5 => (source.clone(), list).prop_map(|(s, l)| Op::Report(s, l)),
        2 => source.clone().prop_map(Op::Gone),
        2 => source.prop_map(Op::Heard),
        3 => (0..1500u64).prop_map(Op::Wait),
    ]
}

/// The rules, from the documentation, recomputed from scratch each time:
/// a source counts while it has a list (reported since it was last gone)
/// and was heard less than the timeout ago.
#[derive(Default)]
struct Model {
    /// source -> (its list, when last heard)
    listed: BTreeMap<u8, (BTreeSet<String>, Instant)>,
    delivered: Option<Vec<String>>,
}

impl Model {
    fn apply(&mut self, op: &Op, now: Instant, timeout: Duration) -> Option<Vec<String>> {
        match op {
            Op::Report(s, list) => {
                self.listed
                    .insert(*s, (list.iter().cloned().collect(), now));
            }
            Op::Gone(s) => {
                self.listed.remove(s);
            }
            Op::Heard(s) => {
                // A listed source, silent or not: a keepalive proves the
                // list it had is still its list. A gone one has no list.
                if let Some((_, heard)) = self.listed.get_mut(s) {
                    *heard = now;
                }
            }
            Op::Wait(_) => {}
        }
        let counting: Vec<&BTreeSet<String>> = self
            .listed
            .values()
            .filter(|(_, heard)| now.duration_since(*heard) < timeout)
            .map(|(list, _)| list)
            .collect();
        if counting.is_empty() {
            return None;
        }
        let union: Vec<String> = counting
            .into_iter()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.delivered.as_ref() == Some(&union) {
            return None;
        }
        self.delivered = Some(union.clone());
        Some(union)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_merge_delivers_the_union_of_the_counting_sources_only_on_change(
        ops in prop::collection::vec(op(), 0..80),
        timeout_ms in 1..3000u64,
    ) {
        let timeout = Duration::from_millis(timeout_ms);
        let t0 = Instant::now();
        let mut now = t0;
        let mut merge = Merge::new(timeout);
        let mut model = Model::default();
        let mut last: Option<Vec<String>> = None;
        let mut first_report_seen = false;

        for op in &ops {
            let got = match op {
                Op::Report(s, list) => merge.report(*s, list.clone(), now),
                Op::Gone(s) => merge.gone(*s, now),
                Op::Heard(s) => merge.heard(*s, now),
                Op::Wait(ms) => {
                    now += Duration::from_millis(*ms);
                    merge.tick(now)
                }
            };
            let want = model.apply(op, now, timeout);
            prop_assert_eq!(&got, &want, "after {:?} at +{:?}", op, now - t0);

            // First list at once: the first report is delivered, even empty.
            if let Op::Report(..) = op {
                if !first_report_seen {
                    prop_assert!(got.is_some(), "the first report delivers at once");
                    first_report_seen = true;
                }
            }
            if let Some(list) = &got {
                prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
                prop_assert_ne!(last.as_ref(), Some(list), "the same list twice in a row");
                last = Some(list.clone());
            }
            prop_assert_eq!(merge.delivered(), last.as_deref());

            // The deadline is the earliest silence among counting sources.
            let want_deadline = model
                .listed
                .values()
                .map(|(_, heard)| *heard + timeout)
                .filter(|deadline| *deadline > now)
                .min();
            prop_assert_eq!(merge.next_deadline(), want_deadline);
            for s in 0..4u8 {
                let counts = model.listed.get(&s).is_some_and(|(_, heard)| now.duration_since(*heard) < timeout);
                prop_assert_eq!(merge.counts(&s), counts, "source {}", s);
            }
        }
    }
}
