//! A watcher's side of the watch protocol, with no sockets and no clocks.
//!
//! [`WatchState`] holds the position and list a watcher got from one
//! server, tells what to request next ([`WatchState::request`]) and takes
//! each reply ([`WatchState::apply`]). It never holds a list the server did
//! not send: a delta that does not apply cleanly — wrong epoch, a revision
//! that does not move forward, removing a name it does not hold, adding one
//! it does, a name in both halves — changes nothing, and the state drops
//! its position so that the next request asks for a snapshot (it heals
//! itself).
//!
//! The state assumes each reply answers the last request sent, which a
//! REQ socket guarantees (it drops replies to earlier requests).

use std::collections::BTreeSet;
use std::fmt;

use crate::watch::wire::{Position, Reply};

/// Why a reply could not be applied: the watcher must ask for a snapshot,
/// which [`WatchState::request`] then does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NeedSnapshot {
    /// A delta or keepalive arrived while the watcher holds nothing.
    HoldsNothing {
        /// The reply's position.
        at: Position,
    },
    /// A delta or keepalive names another epoch than the one held.
    WrongEpoch {
        /// The position held.
        held: Position,
        /// The reply's position.
        at: Position,
    },
    /// A delta does not move the revision forward, or a keepalive names
    /// another revision than the one held.
    WrongRevision {
        /// The position held.
        held: Position,
        /// The reply's position.
        at: Position,
    },
    /// A delta adds a name already held.
    AddsPresent(String),
    /// A delta removes a name not held.
    RemovesAbsent(String),
    /// A delta names the same name twice.
    Duplicate(String),
}

impl fmt::Display for NeedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeedSnapshot::HoldsNothing { at } => write!(
                f,
                "a delta or keepalive at {at} arrived while the watcher holds nothing"
            ),
            NeedSnapshot::WrongEpoch { held, at } => {
                write!(
                    f,
                    "the reply is at {at} but the watcher holds {held}: another epoch"
                )
            }
            NeedSnapshot::WrongRevision { held, at } => write!(
                f,
                "the reply is at {at} but the watcher holds {held}: the revision does not follow"
            ),
            NeedSnapshot::AddsPresent(name) => {
                write!(
                    f,
                    "the delta adds {name:?}, which the watcher already holds"
                )
            }
            NeedSnapshot::RemovesAbsent(name) => {
                write!(
                    f,
                    "the delta removes {name:?}, which the watcher does not hold"
                )
            }
            NeedSnapshot::Duplicate(name) => {
                write!(f, "the delta names {name:?} more than once")
            }
        }
    }
}

impl std::error::Error for NeedSnapshot {}

/// What a watcher holds from one server.
///
/// ```
/// use nng_discovery::watch_state::WatchState;
/// use nng_discovery::watch_wire::{Position, Reply};
///
/// let mut state = WatchState::new();
/// assert_eq!(state.request(), Position::NOTHING);
/// let at = Position::new(7, 1);
/// let snapshot = Reply::Snapshot { at, names: vec!["a".into()] };
/// assert_eq!(state.apply(&snapshot), Ok(Some(vec!["a".to_string()])));
/// assert_eq!(state.request(), at);
/// // A delta that removes a name not held: nothing delivered, ask again.
/// let bad = Reply::Delta { at: Position::new(7, 2), joined: vec![], left: vec!["z".into()] };
/// assert!(state.apply(&bad).is_err());
/// assert_eq!(state.request(), Position::NOTHING);
/// ```
#[derive(Debug, Default, Clone)]
pub struct WatchState {
    /// The position held, `NOTHING` when the state holds no trusted list.
    position: Position,
    /// The list at `position`. When the position is `NOTHING` after a
    /// reply that did not apply, it still holds the list at the last
    /// position held (a failed reply changes nothing), so the snapshot
    /// asked for next is compared with it.
    names: BTreeSet<String>,
    /// Whether a list was returned since the start (or the last
    /// [`forget`](WatchState::forget)).
    delivered: bool,
    /// Whether `names` changed since the list was last returned (by
    /// [`apply`](WatchState::apply) or [`deliver`](WatchState::deliver)),
    /// or none was returned yet: no copy of the list returned is kept.
    /// [`update`](WatchState::update) applies replies without copying the
    /// list, so that a batch of them costs one copy.
    undelivered: bool,
}

impl WatchState {
    /// A watcher that holds nothing.
    pub fn new() -> WatchState {
        WatchState::default()
    }

    /// The position to send in the next request: the one held, or
    /// [`Position::NOTHING`] to ask for a snapshot.
    pub fn request(&self) -> Position {
        self.position
    }

    /// The list held, when a position is held.
    pub fn names(&self) -> Option<Vec<String>> {
        if self.position == Position::NOTHING {
            None
        } else {
            Some(self.names.iter().cloned().collect())
        }
    }

    /// Forgets everything, including what was delivered: the next request
    /// asks for a snapshot and the next list is delivered even if it equals
    /// the last one. Call it whenever the connection closes, so that a
    /// reconnected source counts again with its first list (see
    /// [`crate::subscriber::merge`]).
    pub fn forget(&mut self) {
        *self = WatchState::default();
    }

    /// Takes a reply to the last request.
    ///
    /// Returns `Ok(Some(list))` when the list (sorted, unique) differs from
    /// the last one returned, or is the first; `Ok(None)` when it does not;
    /// `Err` when the reply does not apply: then nothing changes except
    /// that the position is dropped, so [`request`](WatchState::request)
    /// asks for a snapshot. The last list delivered stays what it was.
    pub fn apply(&mut self, reply: &Reply) -> Result<Option<Vec<String>>, NeedSnapshot> {
        self.update(reply)?;
        Ok(self.deliver())
    }

    /// Takes a reply like [`apply`](WatchState::apply) without returning
    /// the list: [`deliver`](WatchState::deliver) returns it later, once
    /// for any number of updates.
    pub fn update(&mut self, reply: &Reply) -> Result<(), NeedSnapshot> {
        match self.try_apply(reply) {
            Ok(changed) => {
                if changed || !self.delivered {
                    self.undelivered = true;
                }
                Ok(())
            }
            Err(e) => {
                // `names` is untouched: the list at the last position held.
                self.position = Position::NOTHING;
                Err(e)
            }
        }
    }

    /// The list held, if it changed since the list was last returned (or
    /// none was yet) and a position is held. It may equal the list last
    /// returned when updates since then cancelled out.
    pub fn deliver(&mut self) -> Option<Vec<String>> {
        if !self.undelivered || self.position == Position::NOTHING {
            return None;
        }
        self.undelivered = false;
        self.delivered = true;
        Some(self.names.iter().cloned().collect())
    }

    /// Applies `reply` if it applies cleanly (changing nothing otherwise);
    /// returns whether the list changed.
    fn try_apply(&mut self, reply: &Reply) -> Result<bool, NeedSnapshot> {
        let held = self.position;
        let at = reply.at();
        match reply {
            Reply::Snapshot { names, .. } => {
                // Self-contained: accepted whatever is held.
                let names: BTreeSet<String> = names.iter().cloned().collect();
                let changed = names != self.names;
                self.names = names;
                self.position = at;
                return Ok(changed);
            }
            Reply::Delta { .. } | Reply::Keepalive { .. } => {}
        }
        if held == Position::NOTHING {
            return Err(NeedSnapshot::HoldsNothing { at });
        }
        if at.epoch != held.epoch {
            return Err(NeedSnapshot::WrongEpoch { held, at });
        }
        let Reply::Delta { joined, left, .. } = reply else {
            // A keepalive: nothing changed since the revision held.
            if at.revision != held.revision {
                return Err(NeedSnapshot::WrongRevision { held, at });
            }
            return Ok(false);
        };
        if at.revision <= held.revision {
            return Err(NeedSnapshot::WrongRevision { held, at });
        }
        // Check everything before changing anything.
        let mut seen = BTreeSet::new();
        for name in joined.iter().chain(left) {
            if !seen.insert(name.as_str()) {
                return Err(NeedSnapshot::Duplicate(name.clone()));
            }
        }
        if let Some(name) = joined.iter().find(|n| self.names.contains(*n)) {
            return Err(NeedSnapshot::AddsPresent(name.clone()));
        }
        if let Some(name) = left.iter().find(|n| !self.names.contains(*n)) {
            return Err(NeedSnapshot::RemovesAbsent(name.clone()));
        }
        for name in left {
            self.names.remove(name);
        }
        self.names.extend(joined.iter().cloned());
        self.position = at;
        // Checked above: each entry adds an absent name or removes a
        // present one, so any entry changes the list.
        Ok(!joined.is_empty() || !left.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 9;

    fn at(revision: u64) -> Position {
        Position::new(E, revision)
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn snapshot(revision: u64, names: &[&str]) -> Reply {
        Reply::Snapshot {
            at: at(revision),
            names: strings(names),
        }
    }

    fn delta(revision: u64, joined: &[&str], left: &[&str]) -> Reply {
        Reply::Delta {
            at: at(revision),
            joined: strings(joined),
            left: strings(left),
        }
    }

    fn holding(revision: u64, names: &[&str]) -> WatchState {
        let mut s = WatchState::new();
        s.apply(&snapshot(revision, names)).unwrap();
        s
    }

    #[test]
    fn first_list_is_delivered_even_if_empty() {
        let mut s = WatchState::new();
        assert_eq!(s.names(), None);
        assert_eq!(s.apply(&snapshot(1, &[])), Ok(Some(vec![])));
        assert_eq!(s.request(), at(1));
        assert_eq!(s.names(), Some(vec![]));
    }

    #[test]
    fn deltas_apply_and_deliver_only_changes() {
        let mut s = holding(1, &["a", "b"]);
        assert_eq!(
            s.apply(&delta(2, &["c"], &["a"])),
            Ok(Some(strings(&["b", "c"])))
        );
        assert_eq!(s.request(), at(2));
        // An empty delta moves the revision but delivers nothing.
        assert_eq!(s.apply(&delta(4, &[], &[])), Ok(None));
        assert_eq!(s.request(), at(4));
        assert_eq!(s.apply(&Reply::Keepalive { at: at(4) }), Ok(None));
        assert_eq!(s.request(), at(4));
        // A snapshot equal to what was delivered: nothing new.
        assert_eq!(s.apply(&snapshot(5, &["c", "b"])), Ok(None));
        assert_eq!(s.request(), at(5));
    }

    #[test]
    fn a_snapshot_replaces_anything_even_from_another_epoch() {
        let mut s = holding(3, &["a"]);
        let other = Reply::Snapshot {
            at: Position::new(E + 1, 1),
            names: strings(&["z"]),
        };
        assert_eq!(s.apply(&other), Ok(Some(strings(&["z"]))));
        assert_eq!(s.request(), Position::new(E + 1, 1));
    }

    #[test]
    fn bad_replies_ask_for_a_snapshot_and_deliver_nothing() {
        let cases = [
            (delta(4, &["b"], &[]), NeedSnapshot::AddsPresent("b".into())),
            (
                delta(4, &[], &["z"]),
                NeedSnapshot::RemovesAbsent("z".into()),
            ),
            (
                // Valid first half, bad second: nothing may be applied.
                delta(4, &["c"], &["z"]),
                NeedSnapshot::RemovesAbsent("z".into()),
            ),
            (
                delta(4, &["c", "c"], &[]),
                NeedSnapshot::Duplicate("c".into()),
            ),
            (
                delta(4, &["c"], &["c"]),
                NeedSnapshot::Duplicate("c".into()),
            ),
            (
                delta(3, &["c"], &[]),
                NeedSnapshot::WrongRevision {
                    held: at(3),
                    at: at(3),
                },
            ),
            (
                delta(2, &["c"], &[]),
                NeedSnapshot::WrongRevision {
                    held: at(3),
                    at: at(2),
                },
            ),
            (
                Reply::Delta {
                    at: Position::new(E + 1, 4),
                    joined: strings(&["c"]),
                    left: vec![],
                },
                NeedSnapshot::WrongEpoch {
                    held: at(3),
                    at: Position::new(E + 1, 4),
                },
            ),
            (
                Reply::Keepalive { at: at(4) },
                NeedSnapshot::WrongRevision {
                    held: at(3),
                    at: at(4),
                },
            ),
            (
                Reply::Keepalive {
                    at: Position::new(E + 1, 3),
                },
                NeedSnapshot::WrongEpoch {
                    held: at(3),
                    at: Position::new(E + 1, 3),
                },
            ),
        ];
        for (reply, want) in cases {
            let mut s = holding(3, &["a", "b"]);
            assert_eq!(s.apply(&reply), Err(want), "{reply:?}");
            assert_eq!(s.request(), Position::NOTHING, "{reply:?}");
            assert_eq!(s.names(), None);
            // While healing, deltas and keepalives are refused too.
            assert_eq!(
                s.apply(&delta(5, &["q"], &[])),
                Err(NeedSnapshot::HoldsNothing { at: at(5) })
            );
            // The snapshot heals it; it delivers only if the list changed.
            assert_eq!(s.apply(&snapshot(6, &["a", "b"])), Ok(None));
            assert_eq!(s.apply(&snapshot(7, &["a"])), Ok(Some(strings(&["a"]))));
            assert_eq!(s.request(), at(7));
        }
    }

    #[test]
    fn nothing_held_refuses_deltas_and_keepalives() {
        let mut s = WatchState::new();
        assert_eq!(
            s.apply(&Reply::Keepalive { at: at(1) }),
            Err(NeedSnapshot::HoldsNothing { at: at(1) })
        );
        assert_eq!(
            s.apply(&delta(2, &[], &[])),
            Err(NeedSnapshot::HoldsNothing { at: at(2) })
        );
        assert_eq!(s.request(), Position::NOTHING);
    }

    #[test]
    fn forget_delivers_the_next_list_again() {
        let mut s = holding(3, &["a"]);
        s.forget();
        assert_eq!(s.request(), Position::NOTHING);
        assert_eq!(s.apply(&snapshot(4, &["a"])), Ok(Some(strings(&["a"]))));
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            NeedSnapshot::RemovesAbsent("x".into()).to_string(),
            "the delta removes \"x\", which the watcher does not hold"
        );
        assert_eq!(
            NeedSnapshot::WrongEpoch {
                held: Position::new(1, 2),
                at: Position::new(3, 4)
            }
            .to_string(),
            "the reply is at epoch 0x0000000000000003 revision 4 but the watcher holds \
             epoch 0x0000000000000001 revision 2: another epoch"
        );
    }
}
