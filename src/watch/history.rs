//! The watch server's memory of recent changes, with no sockets and no
//! clocks.
//!
//! [`History`] holds the server's epoch, its current revision and list,
//! and a bounded queue of the changes that led there. Given the position a
//! watcher says it holds ([`crate::watch::wire::decode_request`]),
//! [`History::answer`] decides what to send:
//!
//! * a request from another epoch, for revision 0 (a watcher that holds
//!   nothing), for a revision the server never reached, or for one older
//!   than the changes still held: a **snapshot**;
//! * a request that is behind, with the changes since its revision still
//!   held: a **delta**, the net change (a name that joined and left again
//!   in between is not mentioned) — unless the delta would be larger than
//!   the snapshot, in which case the snapshot, which is never wrong;
//! * a request that is current: **hold** it. The server's thread keeps it
//!   and asks again after the next [`record`](History::record) (then it is
//!   behind: a delta), or calls [`History::expire`] when the keepalive
//!   interval passes (a keepalive, or the answer if something changed).
//!
//! The answer depends only on the request's position, so a server thread
//! may encode it once and send the same bytes to every watcher that sent
//! the same position.
//!
//! Create the history once the server has its first list: that list is
//! revision 1 (revision 0 always means "nothing"). Requests that arrive
//! before should be held.
//!
//! Memory is bounded by [`HistoryLimits`]: the oldest changes are dropped
//! first; a watcher that falls further behind than what is held gets a
//! snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU64;
use std::sync::Arc;

use crate::watch::wire::{self as watch_wire, Position, Reply};

/// How much past the current list a [`History`] remembers.
///
/// ```
/// use nng_discovery::{HistoryLimits, Options};
///
/// let options = Options::default().watch_history(HistoryLimits::new(4096, 4 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// The most changes held. 0 holds none: every watcher that is behind
    /// gets a snapshot.
    pub max_changes: usize,
    /// The most bytes of names held in changes, counting each name's length
    /// plus [`NAME_OVERHEAD`]. A single change larger than this is not held.
    pub max_bytes: usize,
}

impl HistoryLimits {
    /// At most `max_changes` changes and `max_bytes` bytes of names.
    #[must_use]
    pub const fn new(max_changes: usize, max_bytes: usize) -> HistoryLimits {
        HistoryLimits {
            max_changes,
            max_bytes,
        }
    }
}

impl Default for HistoryLimits {
    /// 1,024 changes and 1 MiB: at 1% churn per second among 5,000 peers
    /// (50 changes a second if each is published alone), about 20 seconds of
    /// history, enough for a watcher to come back from a missed reply or a
    /// quick reconnect with a delta.
    fn default() -> Self {
        HistoryLimits {
            max_changes: 1024,
            max_bytes: 1 << 20,
        }
    }
}

/// The bytes counted per name held in a change, on top of its length: the
/// pointer and length of its box.
pub const NAME_OVERHEAD: usize = 2 * std::mem::size_of::<usize>();

/// One published change: what it did to the list of the revision before.
#[derive(Debug)]
struct Change {
    joined: Vec<Box<str>>,
    left: Vec<Box<str>>,
    bytes: usize,
}

/// A list of names shared between the server's publish, its watch history
/// and [`Server::peers`](crate::Server::peers): sorted and unique. Names are
/// shared too, so a new list costs a reference count per name, not a copy.
pub type SharedList = Arc<Names>;

/// Names, each shared by reference count. Two lists are compared by their
/// shared names' addresses first, so comparing a list with the one it was
/// made from reads no name's bytes where the name is the same.
#[derive(Debug, Clone, Default, Eq)]
pub struct Names(pub Vec<Arc<str>>);

impl PartialEq for Names {
    fn eq(&self, other: &Names) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| same_name(a, b))
    }
}

impl Names {
    /// The names as owned strings (a copy), in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|n| String::from(&**n)).collect()
    }
}

impl std::ops::Deref for Names {
    type Target = [Arc<str>];

    fn deref(&self) -> &[Arc<str>] {
        &self.0
    }
}

impl FromIterator<Arc<str>> for Names {
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(names: I) -> Names {
        Names(names.into_iter().collect())
    }
}

/// Equal names: the same allocation, or the same bytes. (`Arc`'s own `==`
/// looks at the address first only for sized values.)
fn same_name(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// What a change did to a list: the names that joined and those that left,
/// each sorted.
pub type Diff = (Vec<Box<str>>, Vec<Box<str>>);

/// The server side of the watch protocol: the current list, its position,
/// and the recent changes.
///
/// ```
/// use std::num::NonZeroU64;
/// use nng_discovery::history::{Answer, History, HistoryLimits};
/// use nng_discovery::watch_wire::Position;
///
/// let epoch = NonZeroU64::new(7).unwrap();
/// let mut history = History::new(epoch, ["a"], HistoryLimits::default());
/// assert_eq!(history.position(), Position::new(7, 1));
/// // A watcher that holds nothing gets the list.
/// assert_eq!(
///     history.answer(Position::NOTHING),
///     Answer::Snapshot { at: Position::new(7, 1), names: &["a".into()] }
/// );
/// // One that is current is held until something changes...
/// assert_eq!(history.answer(Position::new(7, 1)), Answer::Hold);
/// assert!(history.record(["a", "b"]));
/// // ...and then gets only the change.
/// assert_eq!(
///     history.answer(Position::new(7, 1)),
///     Answer::Delta { at: Position::new(7, 2), joined: vec!["b"], left: vec![] }
/// );
/// ```
#[derive(Debug)]
pub struct History {
    epoch: u64,
    revision: u64,
    /// The current list, sorted and unique; shared with whoever published
    /// it, so recording a list copies no names.
    names: SharedList,
    /// Bytes of the current list as a snapshot payload.
    names_bytes: usize,
    /// `changes[i]` took revision `revision - changes.len() + i` to the next.
    changes: VecDeque<Change>,
    /// Bytes counted for everything in `changes`.
    bytes: usize,
    limits: HistoryLimits,
}

/// What to send a watcher, from [`History::answer`] or [`History::expire`].
///
/// It borrows from the history; [`Answer::encode`] writes the reply body
/// and [`Answer::to_reply`] makes an owned [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Send the whole list.
    Snapshot {
        /// The server's position.
        at: Position,
        /// The server's list, sorted and unique.
        names: &'a [Arc<str>],
    },
    /// Send the change since the watcher's revision.
    Delta {
        /// The server's position.
        at: Position,
        /// Names that joined since the watcher's revision, sorted.
        joined: Vec<&'a str>,
        /// Names that left since the watcher's revision, sorted.
        left: Vec<&'a str>,
    },
    /// Send a keepalive: nothing changed (only from [`History::expire`]).
    Keepalive {
        /// The server's position, which the watcher holds.
        at: Position,
    },
    /// Send nothing yet: the watcher is current (only from
    /// [`History::answer`]).
    Hold,
}

impl Answer<'_> {
    /// Appends the reply body to `out`; returns `false` (and writes
    /// nothing) for [`Answer::Hold`].
    pub fn encode(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Answer::Snapshot { at, names } => {
                watch_wire::encode_snapshot(*at, names.iter().map(|n| &**n), out);
            }
            Answer::Delta { at, joined, left } => {
                watch_wire::encode_delta(*at, joined.iter().copied(), left.iter().copied(), out)
            }
            Answer::Keepalive { at } => watch_wire::encode_keepalive(*at, out),
            Answer::Hold => return false,
        }
        true
    }

    /// The reply as an owned value, or `None` for [`Answer::Hold`].
    pub fn to_reply(&self) -> Option<Reply> {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Some(match self {
            Answer::Snapshot { at, names } => Reply::Snapshot {
                at: *at,
                names: names.iter().map(|n| n.to_string()).collect(),
            },
            Answer::Delta { at, joined, left } => Reply::Delta {
                at: *at,
                joined: owned(joined),
                left: owned(left),
            },
            Answer::Keepalive { at } => Reply::Keepalive { at: *at },
            Answer::Hold => return None,
        })
    }
}

/// Sorts and deduplicates a list given in any order.
fn normalize<I>(names: I) -> Vec<Arc<str>>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut names: Vec<Arc<str>> = names.into_iter().map(|n| Arc::from(n.as_ref())).collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn snapshot_bytes<S: AsRef<str>>(names: &[S]) -> usize {
    names.iter().map(|n| n.as_ref().len() + 1).sum()
}

impl History {
    /// Starts a history at revision 1 holding `first_list` (the server's
    /// first list; names must be valid, see [`crate::wire::validate_name`];
    /// any order, duplicates are dropped).
    pub fn new<I>(epoch: NonZeroU64, first_list: I, limits: HistoryLimits) -> History
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names = Arc::new(Names(normalize(first_list)));
        History {
            epoch: epoch.get(),
            revision: 1,
            names_bytes: snapshot_bytes(&names),
            names,
            changes: VecDeque::new(),
            bytes: 0,
            limits,
        }
    }

    /// The server's current position.
    pub fn position(&self) -> Position {
        Position::new(self.epoch, self.revision)
    }

    /// The current list, sorted and unique.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The current list as owned strings (a copy), sorted and unique.
    pub fn to_list(&self) -> Vec<String> {
        self.names.to_strings()
    }

    /// How many past changes are held (at most
    /// [`HistoryLimits::max_changes`]).
    pub fn changes_held(&self) -> usize {
        self.changes.len()
    }

    /// The bytes counted for the held changes (at most
    /// [`HistoryLimits::max_bytes`]).
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// The oldest revision a watcher can be at and still get a delta.
    pub fn oldest_delta_base(&self) -> u64 {
        // changes.len() <= revision - 1 always: each change bumped it.
        self.revision - self.changes.len() as u64
    }

    /// Makes `list` the current list (names valid, any order, duplicates
    /// dropped). If it differs from the current one, the revision grows by
    /// one, the change is remembered and `true` is returned; otherwise
    /// nothing happens.
    pub fn record<I>(&mut self, list: I) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.record_sorted(Arc::new(Names(normalize(list))))
            .is_some()
    }

    /// [`record`](Self::record) for a list that is already sorted and
    /// unique (a server's published list), kept as it is: no name is
    /// copied. Returns the change, the names that joined and those that
    /// left (both sorted), when the list differed; the history keeps its
    /// own copy of them, as far as its limits allow.
    pub fn record_sorted(&mut self, list: SharedList) -> Option<Diff> {
        debug_assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "not sorted and unique"
        );
        let (joined, left) = diff(&self.names, &list);
        if joined.is_empty() && left.is_empty() {
            return None;
        }
        let bytes = joined
            .iter()
            .chain(&left)
            .map(|n| n.len() + NAME_OVERHEAD)
            .sum();
        self.changes.push_back(Change {
            joined: joined.clone(),
            left: left.clone(),
            bytes,
        });
        self.bytes += bytes;
        while self.changes.len() > self.limits.max_changes || self.bytes > self.limits.max_bytes {
            match self.changes.pop_front() {
                Some(old) => self.bytes -= old.bytes,
                None => break,
            }
        }
        // u64: at a million changes a second, 584,000 years to overflow.
        self.revision += 1;
        self.names_bytes = self.names_bytes + snapshot_bytes(&joined) - snapshot_bytes(&left);
        self.names = list;
        Some((joined, left))
    }

    /// What to send a watcher that says it holds `request`; see the
    /// [module](self) for the rules. Never [`Answer::Keepalive`].
    pub fn answer(&self, request: Position) -> Answer<'_> {
        self.answer_until(request, self.revision)
    }

    /// What to send a broadcast follower that asks for a catch-up from
    /// `request` while the changes after revision `until` have not been
    /// broadcast yet: the delta up to `until` (a keepalive at `until` when
    /// it holds `until`), so that the next broadcast, which starts at
    /// `until`, applies. A request outside `..=until` (or `until` not a
    /// revision held) gets what [`expire`](History::expire) gives. Never
    /// [`Answer::Hold`].
    pub fn catch_up(&self, request: Position, until: u64) -> Answer<'_> {
        let in_span = request.epoch == self.epoch
            && request.revision >= 1
            && request.revision <= until
            && until < self.revision;
        if !in_span {
            return self.expire(request);
        }
        match self.answer_until(request, until) {
            Answer::Hold => Answer::Keepalive {
                at: Position::new(self.epoch, until),
            },
            answer => answer,
        }
    }

    /// [`answer`](History::answer), with the changes folded only up to
    /// revision `until` (at most the current one).
    fn answer_until(&self, request: Position, until: u64) -> Answer<'_> {
        let snapshot = Answer::Snapshot {
            at: self.position(),
            names: &self.names,
        };
        if request.epoch != self.epoch || request.revision == 0 || request.revision > until {
            return snapshot;
        }
        if request.revision == until {
            return Answer::Hold;
        }
        let base = self.oldest_delta_base();
        if request.revision < base {
            return snapshot;
        }
        // Fold the changes since the request's revision. A name's events
        // alternate (it joins, leaves, joins...), so its net change is its
        // first event if it had an odd number of them, else none.
        let skip = (request.revision - base) as usize;
        let take = (until - request.revision) as usize;
        let mut events: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for change in self.changes.iter().skip(skip).take(take) {
            let signed = change
                .joined
                .iter()
                .map(|n| (n, true))
                .chain(change.left.iter().map(|n| (n, false)));
            for (name, joined) in signed {
                events
                    .entry(name)
                    .and_modify(|(_, last)| *last = joined)
                    .or_insert((joined, joined));
            }
        }
        let mut joined = Vec::new();
        let mut left = Vec::new();
        let mut delta_bytes = 0;
        for (name, (first, last)) in events {
            if first == last {
                delta_bytes += name.len() + 2;
                if first {
                    joined.push(name);
                } else {
                    left.push(name);
                }
            }
        }
        if delta_bytes > self.names_bytes {
            return snapshot;
        }
        Answer::Delta {
            at: Position::new(self.epoch, until),
            joined,
            left,
        }
    }

    /// What to send a watcher whose request was held for `request` when
    /// the keepalive interval has passed: a keepalive if it is still
    /// current, else what [`answer`](History::answer) says. Never
    /// [`Answer::Hold`].
    pub fn expire(&self, request: Position) -> Answer<'_> {
        match self.answer(request) {
            Answer::Hold => Answer::Keepalive {
                at: self.position(),
            },
            answer => answer,
        }
    }
}

/// The names in `new` but not `old`, and in `old` but not `new`; both sorted
/// and unique inputs.
fn diff(old: &[Arc<str>], new: &[Arc<str>]) -> Diff {
    let mut joined = Vec::new();
    let mut left = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if same_name(o, n) => {
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o < n => {
                left.push(Box::from(&**o));
                i += 1;
            }
            (_, Some(n)) => {
                joined.push(Box::from(&**n));
                j += 1;
            }
            (Some(o), None) => {
                left.push(Box::from(&**o));
                i += 1;
            }
            (None, None) => break,
        }
    }
    (joined, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 0xfeed;

    fn epoch() -> NonZeroU64 {
        NonZeroU64::new(EPOCH).unwrap()
    }

    fn at(revision: u64) -> Position {
        Position::new(EPOCH, revision)
    }

    fn shared(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|&n| Arc::from(n)).collect()
    }

    #[test]
    fn a_sorted_list_is_kept_as_given_and_its_change_returned() {
        let mut h = History::new(epoch(), ["a", "c"], HistoryLimits::default());
        let list: SharedList = Arc::new(Names(shared(&["b", "c", "d"])));
        let (joined, left) = h.record_sorted(Arc::clone(&list)).expect("a change");
        assert_eq!(joined, [Box::from("b"), Box::from("d")]);
        assert_eq!(left, [Box::from("a")]);
        assert!(std::ptr::eq(h.names(), &list[..]), "kept, not copied");
        assert_eq!(h.position(), at(2));
        assert_eq!(h.changes_held(), 1);
        // The same names again, in a new list: nothing changes.
        assert_eq!(
            h.record_sorted(Arc::new(Names(shared(&["b", "c", "d"])))),
            None
        );
        assert_eq!(h.position(), at(2));
        // The snapshot size follows the change.
        let mut out = Vec::new();
        h.expire(at(0)).encode(&mut out);
        let mut fresh = Vec::new();
        History::new(epoch(), ["b", "c", "d"], HistoryLimits::default())
            .expire(at(0))
            .encode(&mut fresh);
        assert_eq!(out.len(), fresh.len());
    }

    fn history(lists: &[&[&str]], limits: HistoryLimits) -> History {
        let mut h = History::new(epoch(), lists[0], limits);
        for list in &lists[1..] {
            h.record(*list);
        }
        h
    }

    fn delta<'a>(revision: u64, joined: &[&'a str], left: &[&'a str]) -> Answer<'a> {
        Answer::Delta {
            at: at(revision),
            joined: joined.to_vec(),
            left: left.to_vec(),
        }
    }

    #[test]
    fn starts_at_revision_one_sorted_and_deduplicated() {
        let h = History::new(epoch(), ["b", "a", "b"], HistoryLimits::default());
        assert_eq!(h.position(), at(1));
        assert_eq!(h.names(), shared(&["a", "b"]));
        assert_eq!(h.changes_held(), 0);
        assert_eq!(h.oldest_delta_base(), 1);
    }

    #[test]
    fn record_bumps_the_revision_only_on_a_change() {
        let mut h = History::new(epoch(), ["a"], HistoryLimits::default());
        assert!(!h.record(["a"]));
        assert!(!h.record(["a", "a"]));
        assert_eq!(h.position(), at(1));
        assert!(h.record(["b", "a"]));
        assert_eq!(h.position(), at(2));
        assert_eq!(h.names(), shared(&["a", "b"]));
        assert!(h.record(Vec::<String>::new()));
        assert_eq!(h.position(), at(3));
        assert!(h.names().is_empty());
        assert_eq!(h.changes_held(), 2);
    }

    #[test]
    fn diff_finds_joins_and_leaves() {
        let (j, l) = diff(&shared(&["a", "c", "e"]), &shared(&["b", "c", "d", "f"]));
        let names = |v: Vec<Box<str>>| v.into_iter().map(String::from).collect::<Vec<_>>();
        assert_eq!(names(j), ["b", "d", "f"]);
        assert_eq!(names(l), ["a", "e"]);
        let (j, l) = diff(&[], &[]);
        assert!(j.is_empty() && l.is_empty());
    }

    #[test]
    fn snapshot_for_nothing_other_epochs_and_the_future() {
        let h = history(&[&["a"], &["a", "b"]], HistoryLimits::default());
        let snapshot = Answer::Snapshot {
            at: at(2),
            names: h.names(),
        };
        for request in [
            Position::NOTHING,
            Position::new(EPOCH, 0),
            Position::new(EPOCH + 1, 1),
            Position::new(EPOCH + 1, 2),
            Position::new(0, 2),
            at(3),
            at(u64::MAX),
        ] {
            assert_eq!(h.answer(request), snapshot, "{request}");
            assert_eq!(h.expire(request), snapshot, "{request}");
        }
    }

    #[test]
    fn hold_when_current_keepalive_on_expiry() {
        let h = history(&[&["a"], &["a", "b"]], HistoryLimits::default());
        assert_eq!(h.answer(at(2)), Answer::Hold);
        assert_eq!(h.expire(at(2)), Answer::Keepalive { at: at(2) });
        // Behind: expiry gives the delta, never a keepalive.
        assert_eq!(h.expire(at(1)), delta(2, &["b"], &[]));
    }

    #[test]
    fn deltas_are_net_changes() {
        // A long name in every list keeps the snapshot larger than the
        // deltas (see the next tests).
        const L: &str = "a-long-name-that-stays";
        let h = history(
            &[
                &["a", "b", L],
                &["a", "b", "c", L], // 2: +c
                &["b", "c", L],      // 3: -a
                &["a", "b", "c", L], // 4: +a
                &["a", "c", "d", L], // 5: -b +d
                &["a", "c", "d", L], // no change
                &["c", "d", L],      // 6: -a
            ],
            HistoryLimits::default(),
        );
        assert_eq!(h.position(), at(6));
        assert_eq!(h.answer(at(1)), delta(6, &["c", "d"], &["a", "b"]));
        assert_eq!(h.answer(at(2)), delta(6, &["d"], &["a", "b"]));
        assert_eq!(h.answer(at(3)), delta(6, &["d"], &["b"]));
        assert_eq!(h.answer(at(4)), delta(6, &["d"], &["a", "b"]));
        assert_eq!(h.answer(at(5)), delta(6, &[], &["a"]));
        assert_eq!(h.answer(at(6)), Answer::Hold);
    }

    #[test]
    fn a_catch_up_stops_where_the_broadcast_starts() {
        const L: &str = "a-long-name-that-stays";
        let h = history(
            &[
                &["a", "b", L],
                &["a", "b", "c", L], // 2: +c
                &["b", "c", L],      // 3: -a
                &["a", "b", "c", L], // 4: +a
                &["a", "c", "d", L], // 5: -b +d
            ],
            HistoryLimits::default(),
        );
        // Changes after 3 not broadcast yet: catch-ups stop at 3.
        assert_eq!(h.catch_up(at(1), 3), delta(3, &["c"], &["a"]));
        assert_eq!(h.catch_up(at(2), 3), delta(3, &[], &["a"]));
        assert_eq!(
            h.catch_up(at(3), 3),
            Answer::Keepalive { at: at(3) },
            "holds where the broadcast starts"
        );
        // Past that point (mid-span), or everything broadcast: as expire.
        assert_eq!(h.catch_up(at(4), 3), h.expire(at(4)));
        assert_eq!(h.catch_up(at(2), 5), h.expire(at(2)));
        assert_eq!(h.catch_up(at(5), 5), Answer::Keepalive { at: at(5) });
        // Another epoch, or nothing held: the snapshot.
        assert_eq!(
            h.catch_up(Position::NOTHING, 3),
            h.expire(Position::NOTHING)
        );
        let other = Position::new(EPOCH + 1, 2);
        assert_eq!(h.catch_up(other, 3), h.expire(other));
    }

    #[test]
    fn a_round_trip_gives_an_empty_delta() {
        let h = history(
            &[&["a", "b"], &["a"], &["a", "b"]],
            HistoryLimits::default(),
        );
        assert_eq!(h.answer(at(1)), delta(3, &[], &[]));
        let mut out = Vec::new();
        assert!(h.answer(at(1)).encode(&mut out));
        assert_eq!(out.len(), watch_wire::REPLY_HEADER_LEN);
    }

    #[test]
    fn a_delta_larger_than_the_snapshot_is_sent_as_the_snapshot() {
        let h = history(
            &[&["aaaa", "bbbb", "cccc"], &["x"]],
            HistoryLimits::default(),
        );
        // +x|-aaaa|-bbbb|-cccc is longer than "x".
        assert_eq!(
            h.answer(at(1)),
            Answer::Snapshot {
                at: at(2),
                names: &["x".into()]
            }
        );
    }

    #[test]
    fn old_changes_are_dropped_by_count() {
        let limits = HistoryLimits {
            max_changes: 2,
            max_bytes: usize::MAX,
        };
        let h = history(
            &[&["a"], &["a", "b"], &["a", "b", "c"], &["a", "b", "c", "d"]],
            limits,
        );
        assert_eq!(h.position(), at(4));
        assert_eq!(h.changes_held(), 2);
        assert_eq!(h.oldest_delta_base(), 2);
        assert!(matches!(h.answer(at(1)), Answer::Snapshot { .. }));
        assert_eq!(h.answer(at(2)), delta(4, &["c", "d"], &[]));
        assert_eq!(h.answer(at(3)), delta(4, &["d"], &[]));
    }

    #[test]
    fn old_changes_are_dropped_by_bytes() {
        let per_name = 1 + NAME_OVERHEAD;
        let limits = HistoryLimits {
            max_changes: usize::MAX,
            max_bytes: 2 * per_name,
        };
        let mut h = history(&[&["a"], &["a", "b"], &["a", "b", "c"]], limits);
        assert_eq!(h.changes_held(), 2);
        assert_eq!(h.bytes_held(), 2 * per_name);
        h.record(["a", "b", "c", "d"]);
        assert_eq!(h.changes_held(), 2);
        assert_eq!(h.bytes_held(), 2 * per_name);
        // A change too large for the limit on its own empties the history.
        h.record(["x", "y", "z"]);
        assert_eq!(h.changes_held(), 0);
        assert_eq!(h.bytes_held(), 0);
        assert_eq!(h.oldest_delta_base(), h.position().revision);
        assert_eq!(h.answer(h.position()), Answer::Hold);
        assert!(matches!(
            h.answer(at(h.position().revision - 1)),
            Answer::Snapshot { .. }
        ));
    }

    #[test]
    fn no_history_at_all_still_answers_correctly() {
        let limits = HistoryLimits {
            max_changes: 0,
            max_bytes: 0,
        };
        let h = history(&[&["a"], &["b"]], limits);
        assert_eq!(h.changes_held(), 0);
        assert!(matches!(h.answer(at(1)), Answer::Snapshot { .. }));
        assert_eq!(h.answer(at(2)), Answer::Hold);
    }

    #[test]
    fn answers_encode_and_convert() {
        let h = history(&[&["a"], &["b"]], HistoryLimits::default());
        let mut out = Vec::new();
        assert!(!Answer::Hold.encode(&mut out));
        assert!(out.is_empty());
        assert_eq!(Answer::Hold.to_reply(), None);
        for request in [Position::NOTHING, at(1), at(2)] {
            let answer = h.expire(request);
            out.clear();
            assert!(answer.encode(&mut out));
            let reply = answer.to_reply().unwrap();
            assert_eq!(watch_wire::decode_reply(&out), Ok(reply), "{request}");
        }
    }
}
