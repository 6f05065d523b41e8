//! Property tests of the watch protocol's pure parts (issue 14): the wire
//! format, the server's history and the watcher's state, on random input.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use nng_discovery::history::{Answer, History, HistoryLimits};
use nng_discovery::watch_state::WatchState;
use nng_discovery::watch_wire::{
    decode_reply, decode_request, encode_reply, encode_request, Position, Reply,
};
use nng_discovery::wire::validate_name;
use proptest::prelude::*;

/// Few names, so that joins, leaves and rejoins are common; one long and
/// one non-ASCII.
const POOL: [&str; 8] = ["a", "b", "c", "d", "e", "http://10.0.0.1:8080", "ünï☃", "x"];

const EPOCH: u64 = 0x5eed_0000_0000_0001;

fn list() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(
        prop::sample::select(&POOL[..]).prop_map(String::from),
        0..=8,
    )
}

fn limits() -> impl Strategy<Value = HistoryLimits> {
    (
        prop_oneof![0..8usize, Just(usize::MAX)],
        prop_oneof![0..300usize, Just(usize::MAX)],
    )
        .prop_map(|(max_changes, max_bytes)| HistoryLimits::new(max_changes, max_bytes))
}

fn vec_of(set: &BTreeSet<String>) -> Vec<String> {
    set.iter().cloned().collect()
}

/// Builds a history from `lists` and returns it with the list it held at
/// each revision (index 0 unused).
fn build(lists: &[BTreeSet<String>], limits: HistoryLimits) -> (History, Vec<BTreeSet<String>>) {
    let epoch = NonZeroU64::new(EPOCH).unwrap();
    let mut history = History::new(epoch, &lists[0], limits);
    let mut at = vec![BTreeSet::new(), lists[0].clone()];
    for list in &lists[1..] {
        let changed = history.record(list);
        assert_eq!(
            changed,
            at.last() != Some(list),
            "a change exactly when the list differs"
        );
        if changed {
            at.push(list.clone());
        }
        assert!(history.changes_held() <= limits.max_changes);
        assert!(history.bytes_held() <= limits.max_bytes);
    }
    assert_eq!(
        history.position(),
        Position::new(EPOCH, at.len() as u64 - 1)
    );
    (history, at)
}

/// A request position of every interesting kind, resolved against a
/// history at revision `current`.
#[derive(Debug, Clone)]
enum Request {
    Nothing,
    Revision(u64),
    Ahead(u64),
    OtherEpoch(u64, u64),
    Garbage(u64, u64),
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        1 => Just(Request::Nothing),
        4 => any::<u64>().prop_map(Request::Revision),
        1 => (1..1000u64).prop_map(Request::Ahead),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(e, r)| Request::OtherEpoch(e, r)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(e, r)| Request::Garbage(e, r)),
    ]
}

impl Request {
    fn position(&self, current: u64) -> Position {
        match *self {
            Request::Nothing => Position::NOTHING,
            // 0..=current: revision 0 (nothing) up to current.
            Request::Revision(r) => Position::new(EPOCH, r % (current + 1)),
            Request::Ahead(n) => Position::new(EPOCH, current.saturating_add(n)),
            Request::OtherEpoch(e, r) => Position::new(if e == EPOCH { e ^ 1 } else { e }, r),
            Request::Garbage(e, r) => Position::new(e, r),
        }
    }
}

fn reply_bytes(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    encode_reply(reply, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The property: any sequence of changes and any request yields
    /// a reply that brings the requester's state exactly to the server's;
    /// Hold only for a current request; a delta whenever the changes are
    /// still held and the delta is no larger than the snapshot.
    #[test]
    fn any_request_gets_what_brings_it_to_the_servers_list(
        lists in prop::collection::vec(list(), 1..25),
        limits in limits(),
        request in request(),
    ) {
        let (history, at) = build(&lists, limits);
        let current = history.position();
        let names = history.to_list();
        prop_assert_eq!(&names, &vec_of(&lists[lists.len() - 1]));
        let request = request.position(current.revision);
        // What the requester holds, if the request names a real state.
        let held = (request.epoch == EPOCH)
            .then(|| at.get(request.revision as usize))
            .flatten()
            .filter(|_| request.revision != 0);

        let answer = history.answer(request);
        match &answer {
            Answer::Hold => prop_assert_eq!(request, current),
            Answer::Keepalive { .. } => prop_assert!(false, "answer never gives a keepalive"),
            Answer::Snapshot { at: pos, names: sent } => {
                prop_assert_eq!(*pos, current);
                prop_assert_eq!(sent.iter().map(|n| n.to_string()).collect::<Vec<_>>(), names.clone());
            }
            Answer::Delta { at: pos, joined, left } => {
                prop_assert_eq!(*pos, current);
                let Some(held) = held else {
                    return Err(TestCaseError::fail(format!("delta for {request}, which names no state")));
                };
                prop_assert!(request.revision >= history.oldest_delta_base());
                let mut state = held.clone();
                for name in left {
                    prop_assert!(state.remove(*name), "removes absent {}", name);
                }
                for name in joined {
                    prop_assert!(state.insert(name.to_string()), "adds present {}", name);
                }
                prop_assert_eq!(vec_of(&state), names.clone());
            }
        }
        if request != current {
            prop_assert_ne!(&answer, &Answer::Hold);
        }

        // When the changes are held, a delta goes out unless it is larger
        // than the snapshot, and it is exactly the set difference.
        if let Some(held) = held {
            if request.revision >= history.oldest_delta_base() && request != current {
                let now: BTreeSet<String> = names.iter().cloned().collect();
                let joined: Vec<&str> = now.difference(held).map(String::as_str).collect();
                let left: Vec<&str> = held.difference(&now).map(String::as_str).collect();
                let delta_bytes: usize = joined.iter().chain(&left).map(|n| n.len() + 2).sum();
                let snapshot_bytes: usize = names.iter().map(|n| n.len() + 1).sum();
                if delta_bytes <= snapshot_bytes {
                    prop_assert_eq!(&answer, &Answer::Delta { at: current, joined, left });
                } else {
                    let is_snapshot = matches!(answer, Answer::Snapshot { .. });
                    prop_assert!(is_snapshot, "a larger delta goes as the snapshot: {:?}", answer);
                }
            }
        }

        // Expiry: a keepalive exactly where answer holds, otherwise the same.
        let expired = history.expire(request);
        if answer == Answer::Hold {
            prop_assert_eq!(&expired, &Answer::Keepalive { at: current });
        } else {
            prop_assert_eq!(&expired, &answer);
        }

        // Through the wire and into a watcher holding the requested state:
        // it ends up with the server's list.
        if let Some(reply) = expired.to_reply() {
            let mut bytes = Vec::new();
            prop_assert!(expired.encode(&mut bytes));
            prop_assert_eq!(&bytes, &reply_bytes(&reply));
            prop_assert_eq!(decode_reply(&bytes), Ok(reply.clone()));
            let mut watcher = WatchState::new();
            if let Some(held) = held {
                watcher
                    .apply(&Reply::Snapshot { at: request, names: vec_of(held) })
                    .unwrap();
            }
            watcher.apply(&reply).unwrap();
            prop_assert_eq!(watcher.names(), Some(names.clone()));
            prop_assert_eq!(watcher.request(), current);
        }
    }

    #[test]
    fn requests_round_trip_and_any_bytes_decode(
        epoch in any::<u64>(),
        revision in any::<u64>(),
        body in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let p = Position::new(epoch, revision);
        prop_assert_eq!(decode_request(&encode_request(p)), p);
        let decoded = decode_request(&body);
        if body.len() != 16 {
            prop_assert_eq!(decoded, Position::NOTHING);
        }
    }

    /// Any bytes: decoding never panics; what it accepts has a real
    /// position and valid, sorted, unique names, and encodes back to a body
    /// that decodes the same.
    #[test]
    fn decoding_any_reply_never_panics_and_yields_only_valid_replies(
        kind in prop_oneof![Just(b'S'), Just(b'D'), Just(b'K'), any::<u8>()],
        epoch in prop_oneof![Just(0u64), any::<u64>()],
        revision in prop_oneof![Just(0u64), any::<u64>()],
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(
                prop_oneof![
                    prop::sample::select(&POOL[..]).prop_map(|n| format!("+{n}")),
                    prop::sample::select(&POOL[..]).prop_map(|n| format!("-{n}")),
                    prop::sample::select(&POOL[..]).prop_map(String::from),
                    Just(String::new()),
                    "[+-]?[\\x00-\\x1f|]{1,2}",
                ],
                0..8,
            ).prop_map(|parts| parts.join("|").into_bytes()),
        ],
    ) {
        let mut body = vec![kind];
        body.extend_from_slice(&encode_request(Position::new(epoch, revision)));
        body.extend_from_slice(&payload);
        for len in [body.len(), 17, 16, 0] {
            let Ok(reply) = decode_reply(&body[..len.min(body.len())]) else { continue };
            prop_assert!(reply.at().is_real());
            let mut all = Vec::new();
            match &reply {
                Reply::Snapshot { names, .. } => all.push(names),
                Reply::Delta { joined, left, .. } => {
                    all.push(joined);
                    all.push(left);
                    let j: BTreeSet<_> = joined.iter().collect();
                    prop_assert!(left.iter().all(|n| !j.contains(n)));
                }
                Reply::Keepalive { .. } => {}
            }
            for names in all {
                prop_assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
                prop_assert!(names.iter().all(|n| validate_name(n).is_ok()));
            }
            prop_assert_eq!(decode_reply(&reply_bytes(&reply)), Ok(reply));
        }
    }

    /// Any reply at all, even one no server would send: the watcher never
    /// panics and does exactly what an independent model of the rules
    /// does; it delivers sorted unique lists, never the same list twice in
    /// a row, and after a refusal asks for a snapshot.
    #[test]
    fn a_watcher_takes_any_replies_exactly_as_the_rules_say(
        replies in prop::collection::vec(arbitrary_reply(), 0..30),
    ) {
        let mut watcher = WatchState::new();
        let mut model = ModelWatcher::default();
        for reply in &replies {
            let got = watcher.apply(reply);
            let want = model.apply(reply);
            prop_assert_eq!(got.is_ok(), want.is_ok(), "{:?}: {:?}", reply, got);
            match got {
                Ok(got) => {
                    prop_assert_eq!(&got, &want.unwrap_or_default(), "{:?}", reply);
                    if let Some(list) = got {
                        prop_assert!(list.windows(2).all(|w| w[0] < w[1]));
                    }
                    let (position, names) = model.held.clone().unwrap_or_default();
                    prop_assert_eq!(watcher.request(), position);
                    prop_assert_eq!(watcher.names(), Some(vec_of(&names)));
                }
                Err(_) => {
                    prop_assert_eq!(watcher.request(), Position::NOTHING);
                    prop_assert_eq!(watcher.names(), None);
                }
            }
        }
    }
}

/// The watcher's rules, written from the documentation with plain sets.
#[derive(Default)]
struct ModelWatcher {
    held: Option<(Position, BTreeSet<String>)>,
    delivered: Option<Vec<String>>,
}

impl ModelWatcher {
    fn apply(&mut self, reply: &Reply) -> Result<Option<Vec<String>>, ()> {
        let next = match (reply, self.held.take()) {
            (Reply::Snapshot { at, names }, _) => Some((*at, names.iter().cloned().collect())),
            (Reply::Keepalive { at }, Some((held, names))) if *at == held => Some((held, names)),
            (Reply::Delta { at, joined, left }, Some((held, names)))
                if at.epoch == held.epoch && at.revision > held.revision =>
            {
                let all: Vec<&String> = joined.iter().chain(left).collect();
                let distinct: BTreeSet<&String> = all.iter().copied().collect();
                let clean = distinct.len() == all.len()
                    && left.iter().all(|n| names.contains(n))
                    && joined.iter().all(|n| !names.contains(n));
                clean.then(|| {
                    let mut names = names;
                    for n in left {
                        names.remove(n);
                    }
                    names.extend(joined.iter().cloned());
                    (*at, names)
                })
            }
            _ => None,
        };
        let Some((at, names)) = next else {
            return Err(());
        };
        let list = vec_of(&names);
        self.held = Some((at, names));
        if self.delivered.as_ref() == Some(&list) {
            return Ok(None);
        }
        self.delivered = Some(list.clone());
        Ok(Some(list))
    }
}

fn arbitrary_reply() -> impl Strategy<Value = Reply> {
    let names = || {
        prop::collection::vec(
            prop::sample::select(&POOL[..4]).prop_map(String::from),
            0..3,
        )
    };
    let at = (1..3u64, 0..6u64).prop_map(|(e, r)| Position::new(e, r));
    prop_oneof![
        1 => (at.clone(), names()).prop_map(|(at, names)| Reply::Snapshot { at, names }),
        3 => (at.clone(), names(), names()).prop_map(|(at, joined, left)| Reply::Delta { at, joined, left }),
        1 => at.prop_map(|at| Reply::Keepalive { at }),
    ]
}

/// What happens between one server and one watcher.
#[derive(Debug, Clone)]
enum Step {
    /// The server publishes a new list.
    Change(BTreeSet<String>),
    /// The watcher's request is answered (if it is not held); the reply is
    /// lost on the way when `dropped` (the watcher then sends the same
    /// request again: its state is unchanged).
    Exchange { dropped: bool },
    /// The keepalive interval passes on a held request.
    Expire { dropped: bool },
    /// The server restarts: a new epoch, maybe another list.
    Restart(BTreeSet<String>),
    /// The watcher reconnects and starts over.
    Reconnect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => list().prop_map(Step::Change),
        4 => any::<bool>().prop_map(|dropped| Step::Exchange { dropped }),
        1 => any::<bool>().prop_map(|dropped| Step::Expire { dropped }),
        1 => list().prop_map(Step::Restart),
        1 => Just(Step::Reconnect),
    ]
}

/// Answers the watcher's request and hands it the reply through the wire.
/// Returns what the watcher delivered. A server that answers honestly
/// never sends a reply the watcher refuses.
fn exchange(
    history: &History,
    watcher: &mut WatchState,
    expire: bool,
    dropped: bool,
) -> Result<Option<Vec<String>>, TestCaseError> {
    let request = decode_request(&encode_request(watcher.request()));
    let answer = if expire {
        history.expire(request)
    } else {
        history.answer(request)
    };
    let mut bytes = Vec::new();
    if !answer.encode(&mut bytes) || dropped {
        return Ok(None);
    }
    let reply = decode_reply(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    watcher
        .apply(&reply)
        .map_err(|e| TestCaseError::fail(format!("honest reply {reply:?} refused: {e}")))
}

/// A delivered list must be the server's list at that moment and differ
/// from the last one delivered.
fn check(
    got: Option<Vec<String>>,
    history: &History,
    delivered: &mut Option<Vec<String>>,
) -> Result<(), TestCaseError> {
    if let Some(list) = got {
        prop_assert_eq!(
            &list,
            &history.to_list(),
            "delivered a list the server does not hold"
        );
        prop_assert_ne!(
            delivered.as_ref(),
            Some(&list),
            "delivered the same list twice"
        );
        *delivered = Some(list);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// A watcher following a server through random changes, restarts, lost
    /// replies and reconnects delivers only lists the server held at that
    /// moment, never the same list twice in a row (unless it reconnected),
    /// and converges to the server's list.
    #[test]
    fn a_watcher_following_the_server_converges_and_never_delivers_a_wrong_list(
        first in list(),
        steps in prop::collection::vec(step(), 0..60),
        limits in limits(),
    ) {
        let mut history = History::new(NonZeroU64::new(EPOCH).unwrap(), &first, limits);
        let mut watcher = WatchState::new();
        // Every list the server ever held, by position.
        let mut held_at: BTreeMap<Position, Vec<String>> = BTreeMap::new();
        held_at.insert(history.position(), history.to_list());
        let mut delivered: Option<Vec<String>> = None;
        let mut epochs = EPOCH;

        for step in &steps {
            match step {
                Step::Change(list) => {
                    if history.record(list) {
                        held_at.insert(history.position(), history.to_list());
                    }
                }
                Step::Exchange { dropped } => {
                    let got = exchange(&history, &mut watcher, false, *dropped)?;
                    check(got, &history, &mut delivered)?;
                }
                Step::Expire { dropped } => {
                    let got = exchange(&history, &mut watcher, true, *dropped)?;
                    check(got, &history, &mut delivered)?;
                }
                Step::Restart(list) => {
                    // Each start its own epoch, so positions never repeat.
                    epochs += 1;
                    let epoch = NonZeroU64::new(epochs).unwrap();
                    history = History::new(epoch, list, limits);
                    held_at.insert(history.position(), history.to_list());
                }
                Step::Reconnect => {
                    watcher.forget();
                    delivered = None;
                }
            }
            // Whatever the watcher holds, the server held at that position.
            if let Some(names) = watcher.names() {
                prop_assert_eq!(held_at.get(&watcher.request()), Some(&names));
            }
        }

        // No more changes or losses: within two exchanges the watcher is
        // current (one snapshot or delta, then held).
        for _ in 0..2 {
            let got = exchange(&history, &mut watcher, false, false)?;
            check(got, &history, &mut delivered)?;
        }
        prop_assert_eq!(watcher.request(), history.position());
        prop_assert_eq!(history.answer(watcher.request()), Answer::Hold);
        prop_assert_eq!(watcher.names(), Some(history.to_list()));
        prop_assert_eq!(delivered, Some(history.to_list()));
    }
}

#[derive(Debug, Clone)]
enum HoldOp {
    /// After `1` ms, pipe `0` sends a request.
    Hold(u8, u64),
    Close(u8),
    Change,
    /// After `0` ms, the owner takes what is due.
    Due(u64),
}

fn hold_op() -> impl Strategy<Value = HoldOp> {
    prop_oneof![
        5 => (0..5u8, 0..4000u64).prop_map(|(p, ms)| HoldOp::Hold(p, ms)),
        1 => (0..5u8).prop_map(HoldOp::Close),
        1 => Just(HoldOp::Change),
        3 => (0..6000u64).prop_map(HoldOp::Due),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Held requests against a model: one per pipe (the newest), released
    /// all at a change, or when due in deadline order; nothing is lost or
    /// released twice.
    #[test]
    fn held_requests_match_a_model(ops in prop::collection::vec(hold_op(), 0..80)) {
        use nng_discovery::held_requests::HeldRequests;
        use std::time::{Duration, Instant};

        let keepalive = Duration::from_millis(5000);
        let t0 = Instant::now();
        let mut now = t0;
        let mut held = HeldRequests::new(keepalive);
        // pipe -> (ticket, deadline); tickets are increasing, so for equal
        // deadlines they give the order requests were held in.
        let mut model: BTreeMap<u8, (u32, Instant)> = BTreeMap::new();
        let mut next_ticket = 0u32;
        for op in &ops {
            match *op {
                HoldOp::Hold(pipe, ms) => {
                    now += Duration::from_millis(ms);
                    next_ticket += 1;
                    let position = Position::new(1, u64::from(next_ticket));
                    let replaced = held.hold(pipe, next_ticket, position, now);
                    let want = model.insert(pipe, (next_ticket, now + keepalive)).map(|(t, _)| t);
                    prop_assert_eq!(replaced, want);
                }
                HoldOp::Close(pipe) => {
                    let got = held.pipe_closed(pipe).map(|r| r.ticket);
                    prop_assert_eq!(got, model.remove(&pipe).map(|(t, _)| t));
                }
                HoldOp::Change => {
                    let mut got: Vec<u32> = held.take_all().into_iter().map(|r| r.ticket).collect();
                    got.sort_unstable();
                    let want: BTreeSet<u32> = model.values().map(|(t, _)| *t).collect();
                    model.clear();
                    prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
                }
                HoldOp::Due(ms) => {
                    now += Duration::from_millis(ms);
                    let got: Vec<(u8, u32, Position)> = held
                        .take_due(now)
                        .into_iter()
                        .map(|r| (r.pipe, r.ticket, r.position))
                        .collect();
                    let mut want: Vec<(Instant, u32, u8)> = model
                        .iter()
                        .filter(|(_, (_, deadline))| *deadline <= now)
                        .map(|(pipe, (ticket, deadline))| (*deadline, *ticket, *pipe))
                        .collect();
                    want.sort_unstable();
                    model.retain(|_, (_, deadline)| *deadline > now);
                    let want: Vec<(u8, u32, Position)> = want
                        .into_iter()
                        .map(|(_, t, p)| (p, t, Position::new(1, u64::from(t))))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(held.len(), model.len());
            prop_assert_eq!(held.next_deadline(), model.values().map(|(_, d)| *d).min());
        }
    }
}
