//! A broadcast follower's state, with no sockets and no clocks.
//!
//! A follower learns the server's list from two channels: replies to its
//! requests on the watch socket (REQ/REP: snapshots, deltas, keepalives,
//! each taking it from the position it sent to the reply's), and the
//! server's broadcasts (PUB/SUB: deltas from one revision to another, and
//! keepalives), which may be lost, duplicated or delayed relative to the
//! replies. [`Follower`] combines them:
//!
//! * it starts by asking for a snapshot ([`Follower::wants`] is
//!   `Some(Position::NOTHING)`), buffering broadcasts until the reply comes;
//! * once it holds a position (epoch `e`, revision `r`), it applies each
//!   delta broadcast of epoch `e` **starting at `r`**, ignores those that
//!   end at or before `r` (duplicates, or older than its snapshot), and
//!   keepalives of `(e, r)` or older;
//! * anything else — a delta starting after `r` (a gap), one that spans
//!   `r` (from before to after), another epoch, a keepalive naming a later
//!   revision, a delta that does not apply to the list held — makes it ask
//!   for a **catch-up** ([`Follower::wants`] is its position; a position
//!   reset to nothing asks for a snapshot), buffering broadcasts until the
//!   reply; after the reply, the buffered broadcasts newer than it are
//!   applied in order, and a gap among them asks again.
//!
//! It never holds a list the server did not have: every list it returns is
//! the server's list at the position it then holds (the property tests
//! below check this against a real [`History`](crate::history::History)
//! under loss, duplication and reordering).
//!
//! Replies are assumed to answer the last request sent for
//! [`wants`](Follower::wants), which a REQ socket guarantees; the owner
//! sends a request whenever `wants` differs from the request outstanding.

use std::collections::VecDeque;

use crate::watch::state::WatchState;
use crate::watch::wire::{Broadcast, Position, Reply};

/// The most broadcasts held while a request is outstanding; when more
/// arrive, the oldest is dropped (a gap the next catch-up covers).
pub const BUFFERED: usize = 64;

/// Where a [`Follower`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the reply to a request (a snapshot or a catch-up):
    /// broadcasts are buffered.
    Asking,
    /// Holding a position and applying broadcasts as they come.
    Following,
}

/// A broadcast follower's state; see the [module](self).
///
/// ```
/// use nng_discovery::follower::Follower;
/// use nng_discovery::watch_wire::{Broadcast, Position, Reply};
///
/// let mut f = Follower::new();
/// assert_eq!(f.wants(), Some(Position::NOTHING)); // a snapshot
/// let delta = |from, to, joined: &[&str]| Broadcast::Delta {
///     epoch: 7, from, to,
///     joined: joined.iter().map(|n| n.to_string()).collect(), left: vec![],
/// };
/// // A broadcast that comes before the snapshot is kept for later.
/// assert_eq!(f.on_broadcast(&delta(1, 2, &["b"])), None);
/// let snapshot = Reply::Snapshot { at: Position::new(7, 1), names: vec!["a".into()] };
/// assert_eq!(f.on_reply(&snapshot), Some(vec!["a".to_string(), "b".to_string()]));
/// assert_eq!(f.wants(), None); // following
/// // A gap (revision 3 to 4 never came): ask for a catch-up from 3.
/// assert_eq!(f.on_broadcast(&delta(4, 5, &["c"])), None);
/// assert_eq!(f.wants(), Some(Position::new(7, 2)));
/// ```
#[derive(Debug, Clone)]
pub struct Follower {
    state: WatchState,
    phase: Phase,
    /// Broadcasts received while asking, in arrival order.
    buffer: VecDeque<Broadcast>,
}

impl Default for Follower {
    fn default() -> Self {
        Follower::new()
    }
}

impl Follower {
    /// A follower that holds nothing and wants a snapshot.
    pub fn new() -> Follower {
        Follower {
            state: WatchState::new(),
            phase: Phase::Asking,
            buffer: VecDeque::new(),
        }
    }

    /// A follower that holds what `state` holds and asks for a catch-up
    /// from there (a snapshot if it holds nothing): a watcher that watched
    /// over REQ/REP and starts following the broadcast.
    pub fn resume(state: WatchState) -> Follower {
        Follower {
            state,
            phase: Phase::Asking,
            buffer: VecDeque::new(),
        }
    }

    /// What the follower holds, for watching over REQ/REP from there.
    pub fn into_state(self) -> WatchState {
        self.state
    }

    /// The request the follower needs answered: `Some(Position::NOTHING)`
    /// for a snapshot, `Some(position)` for a catch-up from the position
    /// it holds, `None` while it follows the broadcast.
    pub fn wants(&self) -> Option<Position> {
        match self.phase {
            Phase::Asking => Some(self.state.request()),
            Phase::Following => None,
        }
    }

    /// The position held ([`Position::NOTHING`] when none).
    pub fn position(&self) -> Position {
        self.state.request()
    }

    /// Where the follower stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How many broadcasts wait for the reply.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Asks for a catch-up (the broadcast fell silent, or its connection
    /// was lost and may have dropped messages). Does nothing while a
    /// request is already wanted.
    pub fn catch_up(&mut self) {
        self.phase = Phase::Asking;
    }

    /// Forgets everything, including what was delivered: the next list is
    /// delivered even if it equals the last (see
    /// [`WatchState::forget`]). Call it when the watch connection closes.
    pub fn forget(&mut self) {
        *self = Follower::new();
    }

    /// Takes a reply to the request for [`wants`](Follower::wants).
    /// Returns the list when it changed (or is the first since the start
    /// or [`forget`](Follower::forget)); a reply that does not apply
    /// changes nothing and makes the follower ask for a snapshot.
    pub fn on_reply(&mut self, reply: &Reply) -> Option<Vec<String>> {
        if self.state.update(reply).is_err() {
            // The state dropped its position: ask for a snapshot.
            self.phase = Phase::Asking;
            return None;
        }
        self.phase = Phase::Following;
        let buffered = std::mem::take(&mut self.buffer);
        let epoch = self.state.request().epoch;
        // Broadcasts of another epoch than the reply's are from a server
        // run that is over (or one the next keepalive will reveal):
        // replaying them would ask again and again.
        for b in buffered.iter().filter(|b| b.epoch() == epoch) {
            if self.phase == Phase::Asking {
                // A gap among the buffered ones: keep the rest.
                self.push(b.clone());
                continue;
            }
            self.follow(b);
        }
        self.state.deliver()
    }

    /// Takes a broadcast. Returns the list when it changed.
    pub fn on_broadcast(&mut self, broadcast: &Broadcast) -> Option<Vec<String>> {
        self.take_broadcast(broadcast);
        self.take_list()
    }

    /// Takes a broadcast like [`on_broadcast`](Follower::on_broadcast)
    /// without returning the list: [`take_list`](Follower::take_list)
    /// returns it once for a batch of broadcasts, so a follower that fell
    /// behind copies the list once however many broadcasts wait.
    pub fn take_broadcast(&mut self, broadcast: &Broadcast) {
        match self.phase {
            Phase::Asking => self.push(broadcast.clone()),
            Phase::Following => self.follow(broadcast),
        }
    }

    /// The list held, if it changed since a list was last returned (or
    /// none was yet) and a position is held.
    pub fn take_list(&mut self) -> Option<Vec<String>> {
        self.state.deliver()
    }

    fn push(&mut self, broadcast: Broadcast) {
        if self.buffer.len() >= BUFFERED {
            self.buffer.pop_front();
        }
        self.buffer.push_back(broadcast);
    }

    /// Applies one broadcast while following; anything that does not
    /// follow on from the position held switches to asking (keeping the
    /// broadcast for after the reply).
    fn follow(&mut self, broadcast: &Broadcast) {
        let held = self.state.request();
        if broadcast.epoch() != held.epoch {
            self.phase = Phase::Asking;
            self.push(broadcast.clone());
            return;
        }
        match broadcast {
            Broadcast::Keepalive { at } => {
                if at.revision > held.revision {
                    // A change was published that never reached us.
                    self.phase = Phase::Asking;
                }
            }
            Broadcast::Delta {
                from,
                to,
                joined,
                left,
                ..
            } => {
                if *to <= held.revision {
                    return; // a duplicate, or older than what is held
                }
                if *from != held.revision {
                    // A gap (from after the revision held) or a span that
                    // starts before it: only a catch-up can tell.
                    self.phase = Phase::Asking;
                    self.push(broadcast.clone());
                    return;
                }
                let reply = Reply::Delta {
                    at: Position::new(held.epoch, *to),
                    joined: joined.clone(),
                    left: left.clone(),
                };
                if self.state.update(&reply).is_err() {
                    self.phase = Phase::Asking;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::history::{History, HistoryLimits};
    use std::num::NonZeroU64;

    const E: u64 = 7;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn delta(from: u64, to: u64, joined: &[&str], left: &[&str]) -> Broadcast {
        Broadcast::Delta {
            epoch: E,
            from,
            to,
            joined: strings(joined),
            left: strings(left),
        }
    }

    fn snapshot(revision: u64, names: &[&str]) -> Reply {
        Reply::Snapshot {
            at: Position::new(E, revision),
            names: strings(names),
        }
    }

    fn following(revision: u64, names: &[&str]) -> Follower {
        let mut f = Follower::new();
        assert_eq!(f.on_reply(&snapshot(revision, names)), Some(strings(names)));
        assert_eq!(f.wants(), None);
        f
    }

    #[test]
    fn starts_by_asking_for_a_snapshot() {
        let f = Follower::new();
        assert_eq!(f.wants(), Some(Position::NOTHING));
        assert_eq!(f.phase(), Phase::Asking);
        assert_eq!(f.position(), Position::NOTHING);
    }

    #[test]
    fn applies_deltas_in_sequence_and_ignores_old_ones() {
        let mut f = following(1, &["a"]);
        assert_eq!(
            f.on_broadcast(&delta(1, 2, &["b"], &[])),
            Some(strings(&["a", "b"]))
        );
        // A duplicate, and one older than what is held: ignored.
        assert_eq!(f.on_broadcast(&delta(1, 2, &["b"], &[])), None);
        assert_eq!(f.on_broadcast(&delta(1, 2, &["z"], &[])), None);
        assert_eq!(f.wants(), None);
        // A coalesced one spanning two revisions.
        assert_eq!(
            f.on_broadcast(&delta(2, 4, &["c"], &["a"])),
            Some(strings(&["b", "c"]))
        );
        assert_eq!(f.position(), Position::new(E, 4));
        // Keepalives of the position held, or an older one: nothing.
        let k = |r| Broadcast::Keepalive {
            at: Position::new(E, r),
        };
        assert_eq!(f.on_broadcast(&k(4)), None);
        assert_eq!(f.on_broadcast(&k(3)), None);
        assert_eq!(f.wants(), None);
        // A keepalive ahead: something was missed.
        assert_eq!(f.on_broadcast(&k(5)), None);
        assert_eq!(f.wants(), Some(Position::new(E, 4)));
    }

    #[test]
    fn a_batch_of_broadcasts_returns_one_list() {
        let mut f = following(1, &["a"]);
        f.take_broadcast(&delta(1, 2, &["b"], &[]));
        f.take_broadcast(&delta(2, 3, &["c"], &[]));
        f.take_broadcast(&delta(3, 4, &[], &["a"]));
        assert_eq!(f.position(), Position::new(E, 4));
        assert_eq!(f.take_list(), Some(strings(&["b", "c"])));
        assert_eq!(f.take_list(), None);
        // Nothing changed in a batch (a keepalive): no list.
        f.take_broadcast(&Broadcast::Keepalive {
            at: Position::new(E, 4),
        });
        assert_eq!(f.take_list(), None);
        // A batch that ends in a gap returns the list at the position
        // held before the gap, and nothing while no position is held.
        f.take_broadcast(&delta(4, 5, &["d"], &[]));
        f.take_broadcast(&delta(6, 7, &["e"], &[]));
        assert_eq!(f.wants(), Some(Position::new(E, 5)));
        assert_eq!(f.take_list(), Some(strings(&["b", "c", "d"])));
        let mut f = following(1, &["a"]);
        f.take_broadcast(&delta(1, 2, &["b"], &[]));
        // A delta that does not apply drops the position.
        f.take_broadcast(&delta(2, 3, &["b"], &[]));
        assert_eq!(f.wants(), Some(Position::NOTHING));
        assert_eq!(f.take_list(), None);
        // The snapshot then delivers, even though it equals the list
        // held: the change before it was never returned.
        let reply = snapshot(3, &["a", "b"]);
        assert_eq!(f.on_reply(&reply), Some(strings(&["a", "b"])));
    }

    #[test]
    fn a_gap_asks_for_a_catch_up_then_replays_the_buffer() {
        let mut f = following(1, &["a"]);
        assert_eq!(f.on_broadcast(&delta(2, 3, &["c"], &[])), None);
        assert_eq!(f.wants(), Some(Position::new(E, 1)));
        assert_eq!(f.on_broadcast(&delta(3, 4, &["d"], &[])), None);
        assert_eq!(f.buffered(), 2);
        // The catch-up brings it to 2; the buffered 2→3 and 3→4 follow.
        let reply = Reply::Delta {
            at: Position::new(E, 2),
            joined: strings(&["b"]),
            left: vec![],
        };
        assert_eq!(f.on_reply(&reply), Some(strings(&["a", "b", "c", "d"])));
        assert_eq!(f.wants(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn a_span_across_the_position_held_asks() {
        let mut f = following(3, &["a"]);
        assert_eq!(f.on_broadcast(&delta(2, 4, &["b"], &[])), None);
        assert_eq!(f.wants(), Some(Position::new(E, 3)));
        // The catch-up says nothing changed since... 4 (a keepalive at 4
        // cannot answer a request at 3; the server sends a delta).
        let reply = Reply::Delta {
            at: Position::new(E, 4),
            joined: strings(&["b"]),
            left: vec![],
        };
        assert_eq!(f.on_reply(&reply), Some(strings(&["a", "b"])));
        // The buffered 2→4 ends at 4: dropped.
        assert_eq!(f.wants(), None);
    }

    #[test]
    fn another_epoch_or_a_delta_that_does_not_apply_asks() {
        let mut f = following(1, &["a"]);
        let other = Broadcast::Keepalive {
            at: Position::new(E + 1, 1),
        };
        assert_eq!(f.on_broadcast(&other), None);
        assert_eq!(f.wants(), Some(Position::new(E, 1)));
        // The catch-up is a snapshot of the new epoch; the buffered
        // keepalive of that epoch then matches.
        let reply = Reply::Snapshot {
            at: Position::new(E + 1, 1),
            names: strings(&["x"]),
        };
        assert_eq!(f.on_reply(&reply), Some(strings(&["x"])));
        assert_eq!(f.wants(), None);

        let mut f = following(1, &["a"]);
        // Removes a name not held: never delivered; a snapshot is wanted.
        assert_eq!(f.on_broadcast(&delta(1, 2, &[], &["zz"])), None);
        assert_eq!(f.wants(), Some(Position::NOTHING));
        assert_eq!(f.on_reply(&snapshot(2, &["a"])), None, "unchanged list");
        assert_eq!(f.wants(), None);
    }

    #[test]
    fn a_reply_that_does_not_apply_asks_for_a_snapshot() {
        let mut f = following(2, &["a"]);
        f.catch_up();
        assert_eq!(f.wants(), Some(Position::new(E, 2)));
        let wrong = Reply::Keepalive {
            at: Position::new(E, 5),
        };
        assert_eq!(f.on_reply(&wrong), None);
        assert_eq!(f.wants(), Some(Position::NOTHING));
        f.forget();
        assert_eq!(f.wants(), Some(Position::NOTHING));
        assert_eq!(f.on_reply(&snapshot(9, &["a"])), Some(strings(&["a"])));
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut f = Follower::new();
        for r in 1..(BUFFERED as u64 + 10) {
            f.on_broadcast(&delta(r, r + 1, &[], &[]));
        }
        assert_eq!(f.buffered(), BUFFERED);
        // The snapshot is older than what remains: a gap, asks again.
        assert_eq!(f.on_reply(&snapshot(1, &[])), Some(vec![]));
        assert_eq!(f.wants(), Some(Position::new(E, 1)));
    }

    /// The server of the property: a real History and the broadcasts it
    /// sends, with the list at each revision kept for the check.
    struct Model {
        history: History,
        lists: Vec<Vec<String>>, // lists[r] = the list at revision r (r >= 1)
        sent: Vec<Broadcast>,
    }

    impl Model {
        fn new() -> Model {
            let epoch = NonZeroU64::new(E).unwrap();
            let limits = HistoryLimits {
                max_changes: 8,
                max_bytes: 1 << 20,
            };
            Model {
                history: History::new(epoch, Vec::<String>::new(), limits),
                lists: vec![vec![], vec![]],
                sent: Vec::new(),
            }
        }

        /// Toggles `names` in the list; when it changed, broadcasts the
        /// delta (spanning `span` revisions in one message when > 1 and
        /// changes are pending, as a coalescing server may).
        fn change(&mut self, names: &[u8]) {
            let before = self.history.position();
            let mut list: std::collections::BTreeSet<String> =
                self.history.names().iter().map(|n| n.to_string()).collect();
            for n in names {
                let name = format!("n{n}");
                if !list.remove(&name) {
                    list.insert(name);
                }
            }
            let old: Vec<String> = self.history.names().iter().map(|n| n.to_string()).collect();
            if self.history.record(&list) {
                let after = self.history.position();
                let new: Vec<String> = self.history.names().iter().map(|n| n.to_string()).collect();
                self.sent.push(Broadcast::Delta {
                    epoch: E,
                    from: before.revision,
                    to: after.revision,
                    joined: new.iter().filter(|n| !old.contains(n)).cloned().collect(),
                    left: old.iter().filter(|n| !new.contains(n)).cloned().collect(),
                });
                self.lists.push(new);
            }
        }

        fn answer(&self, request: Position) -> Reply {
            self.history
                .expire(request)
                .to_reply()
                .expect("expire never holds")
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            Change(Vec<u8>),
            Deliver(usize),
            /// Delivered as part of a batch: the list comes at `Flush`.
            DeliverQuietly(usize),
            Flush,
            Duplicate(usize),
            Answer,
            Keepalive,
            Silence,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => proptest::collection::vec(0u8..6, 1..4).prop_map(Step::Change),
                4 => (0usize..4).prop_map(Step::Deliver),
                2 => (0usize..4).prop_map(Step::DeliverQuietly),
                1 => Just(Step::Flush),
                1 => (0usize..8).prop_map(Step::Duplicate),
                2 => Just(Step::Answer),
                1 => Just(Step::Keepalive),
                1 => Just(Step::Silence),
            ]
        }

        /// Every list delivered is the model's list at the position held.
        fn check(
            follower: &Follower,
            model: &Model,
            list: &Option<Vec<String>>,
        ) -> Result<(), TestCaseError> {
            if let Some(list) = list {
                let at = follower.position();
                prop_assert!(at.revision >= 1, "delivered without a position");
                prop_assert_eq!(list, &model.lists[at.revision as usize]);
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever is lost, duplicated or reordered, every list
            /// delivered is the server's list at the position then held,
            /// and once everything is delivered and answered the
            /// follower holds the server's current list.
            #[test]
            fn never_a_wrong_list_and_catches_up_in_the_end(
                steps in proptest::collection::vec(step(), 0..60),
            ) {
                let mut model = Model::new();
                let mut follower = Follower::new();
                // Broadcasts sent but not yet delivered (any may be lost:
                // those left at the end never arrive).
                let mut in_flight: Vec<Broadcast> = Vec::new();
                let mut delivered: Vec<Broadcast> = Vec::new();
                for step in steps {
                    let list = match step {
                        Step::Change(names) => {
                            model.change(&names);
                            in_flight.append(&mut model.sent);
                            None
                        }
                        Step::Deliver(i) => {
                            if in_flight.is_empty() {
                                None
                            } else {
                                let b = in_flight.remove(i % in_flight.len());
                                delivered.push(b.clone());
                                follower.on_broadcast(&b)
                            }
                        }
                        Step::DeliverQuietly(i) => {
                            if !in_flight.is_empty() {
                                let b = in_flight.remove(i % in_flight.len());
                                delivered.push(b.clone());
                                follower.take_broadcast(&b);
                            }
                            None
                        }
                        Step::Flush => follower.take_list(),
                        Step::Duplicate(i) => match delivered.get(i % delivered.len().max(1)) {
                            Some(b) => {
                                let b = b.clone();
                                follower.on_broadcast(&b)
                            }
                            None => None,
                        },
                        Step::Answer => match follower.wants() {
                            Some(request) => {
                                let reply = model.answer(request);
                                follower.on_reply(&reply)
                            }
                            None => None,
                        },
                        Step::Keepalive => follower.on_broadcast(&Broadcast::Keepalive {
                            at: model.history.position(),
                        }),
                        Step::Silence => {
                            follower.catch_up();
                            None
                        }
                    };
                    check(&follower, &model, &list)?;
                }
                // Quiescence: a keepalive reveals anything missed, then
                // requests are answered until none is wanted.
                let list = follower.on_broadcast(&Broadcast::Keepalive {
                    at: model.history.position(),
                });
                check(&follower, &model, &list)?;
                for _ in 0..4 {
                    let Some(request) = follower.wants() else { break };
                    let reply = model.answer(request);
                    let list = follower.on_reply(&reply);
                    check(&follower, &model, &list)?;
                }
                prop_assert_eq!(follower.wants(), None);
                prop_assert_eq!(follower.position(), model.history.position());
                prop_assert_eq!(
                    follower.position().revision as usize,
                    model.lists.len() - 1
                );
            }

            /// Coalesced spans: the broadcasts of consecutive revisions
            /// merged into messages of several revisions each apply like
            /// the separate ones.
            #[test]
            fn coalesced_spans_apply(
                changes in proptest::collection::vec(proptest::collection::vec(0u8..6, 1..4), 1..12),
                width in 1u64..5,
            ) {
                let mut model = Model::new();
                let mut follower = Follower::new();
                let reply = model.answer(Position::NOTHING);
                follower.on_reply(&reply);
                for names in &changes {
                    model.change(names);
                }
                let end = model.history.position().revision;
                let mut from = 1;
                while from < end {
                    let to = (from + width).min(end);
                    let old = &model.lists[from as usize];
                    let new = &model.lists[to as usize];
                    let list = follower.on_broadcast(&Broadcast::Delta {
                        epoch: E,
                        from,
                        to,
                        joined: new.iter().filter(|n| !old.contains(n)).cloned().collect(),
                        left: old.iter().filter(|n| !new.contains(n)).cloned().collect(),
                    });
                    check(&follower, &model, &list)?;
                    from = to;
                }
                prop_assert_eq!(follower.wants(), None);
                prop_assert_eq!(follower.position(), model.history.position());
            }
        }
    }
}
