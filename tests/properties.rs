//! Property tests of the pure parts: the wire format and the membership
//! state machine, on random input.

use std::collections::{BTreeMap, BTreeSet};

use nng_discovery::membership::{AnswerOutcome, Membership};
use nng_discovery::wire::{decode_list, encode_list, validate_name, MAX_NAME_LEN};
use proptest::prelude::*;

/// Valid names: printable, no `|`, 1..=40 chars, sometimes non-ASCII.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:/._\\-é☃]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_the_identity(names in prop::collection::btree_set(name(), 0..40)) {
        let names: Vec<String> = names.into_iter().collect();
        let mut body = Vec::new();
        encode_list(names.iter().map(String::as_str), &mut body);
        prop_assert_eq!(decode_list(&body).unwrap(), names);
    }

    #[test]
    fn decode_is_order_and_duplicate_insensitive(names in prop::collection::vec(name(), 1..30)) {
        let mut body = Vec::new();
        encode_list(names.iter().map(String::as_str), &mut body);
        let want: Vec<String> = names.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        prop_assert_eq!(decode_list(&body).unwrap(), want);
    }

    #[test]
    fn decoding_any_bytes_never_panics_and_yields_only_valid_names(
        body in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Ok(list) = decode_list(&body) {
            for n in &list {
                prop_assert_eq!(validate_name(n), Ok(()));
                prop_assert!(n.len() <= MAX_NAME_LEN);
            }
            prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        }
    }

    #[test]
    fn decoding_near_valid_bodies_never_panics(
        parts in prop::collection::vec(prop_oneof![name(), Just(String::new()), "[\\x00-\\x1f|]{1,3}"], 0..20)
    ) {
        let body = parts.join("|");
        if let Ok(list) = decode_list(body.as_bytes()) {
            prop_assert!(list.iter().all(|n| validate_name(n).is_ok()));
        }
    }
}

/// One step of what the server's threads feed the state machine.
#[derive(Debug, Clone)]
enum Op {
    PipeAdded(u8),
    PipeRemoved(u8),
    Answer(u8, u8),
    StartRound,
    EndRound,
}

fn op() -> impl Strategy<Value = Op> {
    // Few pipes and names so that overlaps, reuse and rejoins are common.
    prop_oneof![
        2 => (0..6u8).prop_map(Op::PipeAdded),
        1 => (0..6u8).prop_map(Op::PipeRemoved),
        5 => (0..6u8, 0..5u8).prop_map(|(p, n)| Op::Answer(p, n)),
        1 => Just(Op::StartRound),
        2 => Just(Op::EndRound),
    ]
}

/// An independent model of the rules, written from the documentation with
/// plain sets: a name is listed while some open pipe answered for it and it
/// has fewer than `threshold` consecutive misses.
#[derive(Default)]
struct Model {
    open: BTreeSet<u8>,
    /// name -> (open pipes that answered it, misses, answered this round)
    names: BTreeMap<String, (BTreeSet<u8>, u32, bool)>,
}

impl Model {
    fn apply(&mut self, op: &Op, threshold: u32, max: usize, leave_on_disconnect: bool) {
        match *op {
            Op::PipeAdded(p) => {
                self.open.insert(p);
            }
            Op::PipeRemoved(p) => {
                self.open.remove(&p);
                for (pipes, _, _) in self.names.values_mut() {
                    pipes.remove(&p);
                }
                if leave_on_disconnect {
                    self.names.retain(|_, (pipes, _, _)| !pipes.is_empty());
                }
            }
            Op::Answer(p, n) => {
                if !self.open.contains(&p) {
                    return;
                }
                let name = format!("n{n}");
                if let Some((pipes, misses, answered)) = self.names.get_mut(&name) {
                    pipes.insert(p);
                    *misses = 0;
                    *answered = true;
                } else if self.names.len() < max {
                    self.names.insert(name, (BTreeSet::from([p]), 0, true));
                }
            }
            Op::StartRound => {
                for (_, _, answered) in self.names.values_mut() {
                    *answered = false;
                }
            }
            Op::EndRound => {
                self.names.retain(|_, (_, misses, answered)| {
                    if std::mem::take(answered) {
                        *misses = 0;
                    } else {
                        *misses += 1;
                    }
                    *misses < threshold
                });
            }
        }
    }

    fn listed(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }
}

fn run(m: &mut Membership<u8>, op: &Op) {
    match *op {
        Op::PipeAdded(p) => m.pipe_added(p),
        Op::PipeRemoved(p) => {
            m.pipe_removed(p);
        }
        Op::Answer(p, n) => {
            let outcome = m.answer(p, &format!("n{n}"));
            let _: AnswerOutcome = outcome;
        }
        Op::StartRound => m.start_round(),
        Op::EndRound => {
            m.end_round();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn membership_publishes_exactly_the_live_set_and_never_repeats(
        ops in prop::collection::vec(op(), 0..200),
        threshold in 1..4u32,
        max in 1..7usize,
        leave_on_disconnect in any::<bool>(),
    ) {
        let mut machine = Membership::new(threshold, max, leave_on_disconnect);
        let mut model = Model::default();
        let mut published: Option<Vec<String>> = None;
        for op in &ops {
            run(&mut machine, op);
            model.apply(op, threshold, max, leave_on_disconnect);
            let listed: Vec<String> = machine.names().map(String::from).collect();
            prop_assert_eq!(&listed, &model.listed(), "after {:?}", op);
            prop_assert!(listed.len() <= max);
            // The server publishes when the machine says it changed: a
            // publish must never repeat the previous list.
            if machine.take_changed() {
                prop_assert_ne!(published.as_ref(), Some(&listed), "after {:?}", op);
                published = Some(listed);
            } else if let Some(p) = &published {
                prop_assert_eq!(p, &machine.names().map(String::from).collect::<Vec<_>>());
            }
        }
    }
}
