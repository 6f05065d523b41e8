//! The watch protocol's pure parts on any bytes: decoding a reply, a
//! follow reply or a broadcast never panics and what it accepts
//! round-trips; a watcher and a broadcast follower take any of them
//! without panicking and return only sorted, unique lists; a history
//! driven by the bytes answers every request, and every catch-up, with
//! what brings the requester exactly to the server's list at the answer's
//! revision.
#![no_main]

use std::collections::BTreeSet;
use std::num::NonZeroU64;

use libfuzzer_sys::fuzz_target;
use nng_discovery::history::{Answer, History, HistoryLimits};
use nng_discovery::watch_state::WatchState;
use nng_discovery::follower::Follower;
use nng_discovery::watch_wire::{
    decode_broadcast, decode_follow_reply, decode_reply, encode_broadcast, encode_reply,
    FollowReply, Position,
};

const NAMES: [&str; 6] = ["a", "b", "c", "http://10.0.0.1:8080", "☃", "z"];

fuzz_target!(|data: &[u8]| {
    // Any bytes as a reply.
    if let Ok(reply) = decode_reply(data) {
        assert!(reply.at().is_real());
        let mut body = Vec::new();
        encode_reply(&reply, &mut body);
        assert_eq!(decode_reply(&body).as_ref(), Ok(&reply));
        let mut watcher = WatchState::new();
        if let Ok(Some(list)) = watcher.apply(&reply) {
            assert!(list.windows(2).all(|w| w[0] < w[1]));
        }
    }

    // Any bytes as a broadcast, and as a follow reply; a follower takes
    // what decodes.
    let sorted = |list: Option<Vec<String>>| {
        if let Some(list) = list {
            assert!(list.windows(2).all(|w| w[0] < w[1]));
        }
    };
    let mut follower = Follower::new();
    if let Ok(broadcast) = decode_broadcast(data) {
        let mut body = Vec::new();
        encode_broadcast(&broadcast, &mut body);
        assert_eq!(decode_broadcast(&body).as_ref(), Ok(&broadcast));
        follower.take_broadcast(&broadcast);
        sorted(follower.take_list());
    }
    match decode_follow_reply(data) {
        Ok(FollowReply::Offer { url, .. }) => assert!(!url.is_empty()),
        Ok(FollowReply::Reply(reply)) => {
            sorted(follower.on_reply(&reply));
            sorted(follower.take_list());
        }
        Err(_) => {}
    }

    // The bytes as a history: two bytes per step.
    let Some((&config, steps)) = data.split_first() else { return };
    let limits = HistoryLimits::new(usize::from(config % 8), usize::from(config >> 3) * 16);
    let epoch = 0x5eed;
    let mut history = History::new(NonZeroU64::new(epoch).unwrap(), [""; 0], limits);
    // The list at each revision (index 0 unused).
    let mut at: Vec<BTreeSet<&str>> = vec![BTreeSet::new(), BTreeSet::new()];
    for step in steps.chunks(2) {
        let (op, arg) = (step[0], step.get(1).copied().unwrap_or(0));
        if op & 0x80 == 0 {
            let list: BTreeSet<&str> = NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| op & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            if history.record(&list) {
                at.push(list);
            }
            assert!(history.changes_held() <= limits.max_changes);
            assert!(history.bytes_held() <= limits.max_bytes);
            continue;
        }
        let current = history.position();
        let request = if op & 0x40 == 0 {
            Position::new(epoch, u64::from(arg) % (current.revision + 2))
        } else {
            Position::new(u64::from(op & 0x3f) << 8 | u64::from(arg), u64::from(arg))
        };
        let held = (request.epoch == epoch && request.revision != 0)
            .then(|| at.get(request.revision as usize))
            .flatten();
        let names: Vec<&str> = history.names().iter().map(|n| &**n).collect();
        match history.answer(request) {
            Answer::Hold => assert_eq!(request, current),
            Answer::Keepalive { .. } => panic!("answer gave a keepalive"),
            Answer::Snapshot { at: pos, names: sent } => {
                assert_eq!(pos, current);
                assert_eq!(sent, history.names());
            }
            Answer::Delta { at: pos, joined, left } => {
                assert_eq!(pos, current);
                let mut state = held.expect("a delta for a request that names no state").clone();
                for n in left {
                    assert!(state.remove(n), "removes absent {n}");
                }
                for n in joined {
                    assert!(state.insert(n), "adds present {n}");
                }
                assert_eq!(state.into_iter().collect::<Vec<_>>(), names);
            }
        }
        // A catch-up while the changes after `until` wait for their
        // broadcast: a delta or keepalive brings the requester to the list
        // at the answer's revision, `until` or the current one.
        let until = u64::from(arg >> 1) % (current.revision + 1);
        match history.catch_up(request, until) {
            Answer::Hold => panic!("catch_up held"),
            Answer::Snapshot { at: pos, names: sent } => {
                assert_eq!(pos, current);
                assert_eq!(sent, history.names());
            }
            Answer::Keepalive { at: pos } => {
                assert_eq!(pos.revision, request.revision);
                assert!(pos.revision == until || pos == current, "{pos} {until}");
            }
            Answer::Delta { at: pos, joined, left } => {
                assert!(pos.revision == until || pos == current, "{pos} {until}");
                let mut state = held.expect("a delta for a request that names no state").clone();
                for n in left {
                    assert!(state.remove(n), "removes absent {n}");
                }
                for n in joined {
                    assert!(state.insert(n), "adds present {n}");
                }
                assert_eq!(state, at[pos.revision as usize]);
            }
        }
    }
});
