//! Random sequences of pipe events, answers and round ends drive the
//! membership state machine; its invariants must hold after every step.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use nng_discovery::membership::{AnswerOutcome, Membership};

fuzz_target!(|data: &[u8]| {
    let Some((&config, ops)) = data.split_first() else { return };
    let threshold = u32::from(config % 4) + 1;
    let max = usize::from((config >> 2) % 8) + 1;
    let leave_on_disconnect = config & 0x80 != 0;
    let mut m = Membership::new(threshold, max, leave_on_disconnect);
    let mut open = BTreeSet::new();
    let mut published: Option<Vec<String>> = None;
    let mut quiet_rounds = 0u32;

    for &op in ops {
        let pipe = op & 0x07;
        match op >> 6 {
            0 => {
                m.pipe_added(pipe);
                open.insert(pipe);
            }
            1 => {
                m.pipe_removed(pipe);
                open.remove(&pipe);
            }
            2 => {
                let name = format!("n{}", (op >> 3) & 0x07);
                let outcome = m.answer(pipe, &name);
                match outcome {
                    AnswerOutcome::UnknownPipe => assert!(!open.contains(&pipe)),
                    AnswerOutcome::Full => assert_eq!(m.len(), max),
                    AnswerOutcome::Joined | AnswerOutcome::Alive => {
                        assert!(m.contains(&name));
                        quiet_rounds = 0;
                    }
                }
            }
            _ => {
                m.end_round();
                quiet_rounds += 1;
            }
        }
        let listed: Vec<String> = m.names().map(String::from).collect();
        assert!(listed.len() <= max);
        assert!(listed.windows(2).all(|w| w[0] < w[1]));
        if leave_on_disconnect && open.is_empty() {
            assert!(listed.is_empty(), "no open pipe, yet {listed:?}");
        }
        // The round after an answer still counts it; `threshold` silent
        // rounds after that evict everyone.
        if quiet_rounds > threshold {
            assert!(listed.is_empty(), "{quiet_rounds} silent rounds, yet {listed:?}");
        }
        if m.take_changed() {
            assert_ne!(published.as_ref(), Some(&listed), "published the same list twice");
            published = Some(listed);
        }
    }
});
