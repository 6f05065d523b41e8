//! The membership state machine, with no sockets and no clocks.
//!
//! [`Membership`] is fed what the server's threads observe — connections
//! (pipes) coming and going, answers naming a service on a pipe, and the end
//! of each heartbeat round — and keeps the set of live names, sorted. It is
//! generic over the pipe identifier so tests drive it with plain integers.
//!
//! The rules:
//! * a valid answer on a known pipe makes its name live at once and resets
//!   the name's miss count;
//! * at the end of each heartbeat round, every live name that gave no answer
//!   since the round started counts one miss; a name with `miss_threshold`
//!   consecutive misses is evicted (so a peer that hangs is gone within
//!   `miss_threshold` round ends, never later);
//! * when a pipe closes, the names that no other open pipe answered for leave
//!   at once (unless `leave_on_disconnect` is off: then only misses evict);
//! * answers on a pipe the machine does not know (already closed, or not yet
//!   announced) are ignored: a closed connection cannot bring a name back.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

/// What an answer did to the membership, as returned by
/// [`Membership::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// The name was not live before and now is: the list changed.
    Joined,
    /// The name was already live; its miss count is reset.
    Alive,
    /// The pipe is not (or no longer) open; the answer was ignored.
    UnknownPipe,
    /// The name is new but the list already holds `max_peers` names; refused.
    Full,
}

#[derive(Debug)]
struct NameState<P> {
    /// The open pipes that have answered with this name.
    pipes: Vec<P>,
    /// Consecutive rounds that ended without an answer.
    misses: u32,
    /// Whether an answer came since the current round started.
    answered: bool,
}

/// The set of live service names, kept from pipe events and answers.
///
/// ```
/// use nng_discovery::membership::{AnswerOutcome, Membership};
///
/// let mut m = Membership::new(2, 100, true);
/// m.pipe_added(1u32);
/// assert_eq!(m.answer(1, "http://a:1"), AnswerOutcome::Joined);
/// assert!(m.take_changed());
/// assert_eq!(m.names().collect::<Vec<_>>(), ["http://a:1"]);
/// // The connection closes: the name leaves at once.
/// assert_eq!(m.pipe_removed(1), ["http://a:1"]);
/// assert_eq!(m.len(), 0);
/// ```
#[derive(Debug)]
pub struct Membership<P> {
    names: BTreeMap<Arc<str>, NameState<P>>,
    /// Open pipes, each with the names it has answered for.
    pipes: HashMap<P, Vec<Arc<str>>>,
    miss_threshold: u32,
    max_peers: usize,
    leave_on_disconnect: bool,
    changed: bool,
}

impl<P: Copy + Eq + Hash> Membership<P> {
    /// Creates an empty membership.
    ///
    /// `miss_threshold` is how many consecutive rounds a name may miss before
    /// it is evicted (values below 1 act as 1); `max_peers` bounds the number
    /// of names; `leave_on_disconnect` makes a pipe's closing evict its names
    /// at once.
    pub fn new(miss_threshold: u32, max_peers: usize, leave_on_disconnect: bool) -> Self {
        Membership {
            names: BTreeMap::new(),
            pipes: HashMap::new(),
            miss_threshold: miss_threshold.max(1),
            max_peers,
            leave_on_disconnect,
            changed: false,
        }
    }

    /// Records a newly opened pipe. Answers are only taken from known pipes.
    pub fn pipe_added(&mut self, pipe: P) {
        self.pipes.entry(pipe).or_default();
    }

    /// Records that `pipe` closed and returns the names that left because of
    /// it (sorted), if any.
    pub fn pipe_removed(&mut self, pipe: P) -> Vec<String> {
        let Some(names) = self.pipes.remove(&pipe) else {
            return Vec::new();
        };
        let mut left = Vec::new();
        for name in names {
            let Some(state) = self.names.get_mut(&name) else {
                continue;
            };
            state.pipes.retain(|p| *p != pipe);
            if state.pipes.is_empty() && self.leave_on_disconnect {
                self.names.remove(&name);
                left.push(name.to_string());
            }
        }
        if !left.is_empty() {
            self.changed = true;
            left.sort_unstable();
        }
        left
    }

    /// Records an answer naming `name` on `pipe`. The name must already be
    /// valid (see [`crate::wire::parse_name`]).
    ///
    /// Allocates only when the name or the pipe/name pairing is new.
    pub fn answer(&mut self, pipe: P, name: &str) -> AnswerOutcome {
        let Some(pipe_names) = self.pipes.get_mut(&pipe) else {
            return AnswerOutcome::UnknownPipe;
        };
        if let Some(state) = self.names.get_mut(name) {
            state.misses = 0;
            state.answered = true;
            if !state.pipes.contains(&pipe) {
                state.pipes.push(pipe);
                pipe_names.push(name.into());
            }
            return AnswerOutcome::Alive;
        }
        if self.names.len() >= self.max_peers {
            return AnswerOutcome::Full;
        }
        // A name evicted for misses may still be listed on its pipe.
        if !pipe_names.iter().any(|n| &**n == name) {
            pipe_names.push(name.into());
        }
        self.names.insert(
            name.into(),
            NameState {
                pipes: vec![pipe],
                misses: 0,
                answered: true,
            },
        );
        self.changed = true;
        AnswerOutcome::Joined
    }

    /// Starts a heartbeat round: only answers from now on count for it (an
    /// answer given before its survey went out says nothing about whether
    /// the peer still answers).
    pub fn start_round(&mut self) {
        for state in self.names.values_mut() {
            state.answered = false;
        }
    }

    /// Ends a heartbeat round: every name that did not answer since the
    /// round started (or since the last round ended, if none was started)
    /// counts a miss, and names at `miss_threshold` misses are
    /// evicted. Returns the evicted names (sorted).
    pub fn end_round(&mut self) -> Vec<String> {
        let threshold = self.miss_threshold;
        let mut evicted = Vec::new();
        self.names.retain(|name, state| {
            if std::mem::take(&mut state.answered) {
                state.misses = 0;
                return true;
            }
            state.misses += 1;
            if state.misses >= threshold {
                evicted.push(String::from(&**name));
                return false;
            }
            true
        });
        if !evicted.is_empty() {
            self.changed = true;
            // An evicted name stays paired with its pipes only in `pipes`;
            // drop those pairings so a pipe's list never outgrows the names.
            for names in self.pipes.values_mut() {
                names.retain(|n| self.names.contains_key(n));
            }
        }
        evicted
    }

    /// The live names, sorted and unique.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.keys().map(|n| &**n)
    }

    /// The live names as a new shared list: a reference count per name,
    /// no copy.
    pub fn shared_names(&self) -> crate::history::SharedList {
        Arc::new(self.names.keys().cloned().collect())
    }

    /// Whether `name` is live.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// How many names are live.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name is live.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether `pipe` is open (added and not removed since).
    pub fn has_pipe(&self, pipe: P) -> bool {
        self.pipes.contains_key(&pipe)
    }

    /// How many pipes are open.
    pub fn pipe_count(&self) -> usize {
        self.pipes.len()
    }

    /// Returns whether the set of names changed since the last call, and
    /// clears that flag.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerOutcome::*;

    fn names(m: &Membership<u32>) -> Vec<&str> {
        m.names().collect()
    }

    fn live(threshold: u32) -> Membership<u32> {
        Membership::new(threshold, 1000, true)
    }

    #[test]
    fn answers_on_known_pipes_join_once() {
        let mut m = live(2);
        assert!(!m.take_changed());
        m.pipe_added(1);
        assert!(!m.take_changed(), "a pipe alone changes nothing");
        assert_eq!(m.answer(1, "b"), Joined);
        assert_eq!(m.answer(1, "b"), Alive);
        m.pipe_added(2);
        assert_eq!(m.answer(2, "a"), Joined);
        assert!(m.take_changed());
        assert!(!m.take_changed());
        assert_eq!(names(&m), ["a", "b"]);
        assert_eq!(m.answer(1, "b"), Alive);
        assert!(!m.take_changed(), "a repeat answer changes nothing");
    }

    #[test]
    fn unknown_pipes_are_ignored() {
        let mut m = live(2);
        assert_eq!(m.answer(9, "a"), UnknownPipe);
        assert!(!m.has_pipe(9));
        m.pipe_added(9);
        assert!(m.has_pipe(9));
        m.pipe_removed(9);
        assert_eq!(
            m.answer(9, "a"),
            UnknownPipe,
            "a closed pipe cannot bring a name back"
        );
        assert!(m.is_empty());
        assert!(!m.take_changed());
    }

    #[test]
    fn pipe_removal_evicts_its_names_at_once() {
        let mut m = live(3);
        m.pipe_added(1);
        m.pipe_added(2);
        m.answer(1, "a");
        m.answer(2, "b");
        m.take_changed();
        assert_eq!(m.pipe_removed(1), ["a"]);
        assert!(m.take_changed());
        assert_eq!(names(&m), ["b"]);
        assert_eq!(m.pipe_count(), 1);
        assert_eq!(
            m.pipe_removed(1),
            Vec::<String>::new(),
            "removing twice is harmless"
        );
        assert!(!m.take_changed());
    }

    #[test]
    fn a_name_on_two_pipes_stays_until_both_close() {
        let mut m = live(2);
        m.pipe_added(1);
        m.pipe_added(2);
        assert_eq!(m.answer(1, "a"), Joined);
        assert_eq!(m.answer(2, "a"), Alive);
        m.take_changed();
        assert!(m.pipe_removed(1).is_empty());
        assert!(!m.take_changed());
        assert_eq!(names(&m), ["a"]);
        assert_eq!(m.pipe_removed(2), ["a"]);
        assert!(m.is_empty());
    }

    #[test]
    fn a_pipe_with_several_names_removes_them_all_sorted() {
        let mut m = live(2);
        m.pipe_added(1);
        m.answer(1, "z");
        m.answer(1, "m");
        m.answer(1, "a");
        assert_eq!(m.pipe_removed(1), ["a", "m", "z"]);
    }

    #[test]
    fn misses_are_counted_per_name_up_to_the_threshold() {
        let mut m = live(3);
        m.pipe_added(1);
        m.pipe_added(2);
        m.answer(1, "a");
        m.answer(2, "b");
        m.take_changed();
        // Round 1: both answered.
        assert!(m.end_round().is_empty());
        // Rounds 2 and 3: only "b" answers; "a" misses twice, stays.
        for _ in 0..2 {
            m.answer(2, "b");
            assert!(m.end_round().is_empty());
            assert_eq!(names(&m), ["a", "b"]);
        }
        assert!(!m.take_changed());
        // Round 4: third miss, evicted.
        m.answer(2, "b");
        assert_eq!(m.end_round(), ["a"]);
        assert!(m.take_changed());
        assert_eq!(names(&m), ["b"]);
    }

    #[test]
    fn an_answer_resets_the_miss_count() {
        let mut m = live(2);
        m.pipe_added(1);
        m.answer(1, "a");
        assert!(m.end_round().is_empty());
        assert!(m.end_round().is_empty(), "first miss");
        m.answer(1, "a");
        assert!(m.end_round().is_empty(), "answered: count reset");
        assert!(m.end_round().is_empty(), "first miss again");
        assert_eq!(m.end_round(), ["a"], "second consecutive miss");
    }

    #[test]
    fn an_answer_before_the_round_starts_does_not_count_for_it() {
        let mut m = live(2);
        m.pipe_added(1);
        m.answer(1, "a"); // e.g. to the extra survey sent when it connected
        m.start_round(); // ... then it hangs; this round's survey goes unanswered
        assert!(m.end_round().is_empty(), "first miss");
        m.start_round();
        assert_eq!(m.end_round(), ["a"], "second miss: gone after two rounds");
        // An answer inside the round counts.
        let mut m = live(1);
        m.pipe_added(1);
        m.answer(1, "a");
        m.start_round();
        m.answer(1, "a");
        assert!(m.end_round().is_empty());
    }

    #[test]
    fn threshold_one_is_the_original_behaviour() {
        let mut m = live(1);
        m.pipe_added(1);
        m.answer(1, "a");
        assert!(m.end_round().is_empty());
        assert_eq!(m.end_round(), ["a"]);
        // Zero acts as one rather than evicting names that just answered.
        let mut z = live(0);
        z.pipe_added(1);
        z.answer(1, "a");
        assert!(z.end_round().is_empty());
        assert_eq!(z.end_round(), ["a"]);
    }

    #[test]
    fn a_hung_peer_rejoins_when_it_answers_again() {
        let mut m = live(2);
        m.pipe_added(1);
        m.answer(1, "a");
        m.end_round();
        m.end_round();
        assert_eq!(m.end_round(), ["a"]);
        m.take_changed();
        // The pipe is still open: its late answer brings the name back.
        assert_eq!(m.answer(1, "a"), Joined);
        assert!(m.take_changed());
        assert_eq!(names(&m), ["a"]);
        // And the pipe still owns it.
        assert_eq!(m.pipe_removed(1), ["a"]);
    }

    #[test]
    fn eviction_forgets_pipe_pairings() {
        let mut m = live(1);
        m.pipe_added(1);
        m.answer(1, "a");
        m.end_round();
        assert_eq!(m.end_round(), ["a"]);
        assert!(m.pipe_removed(1).is_empty(), "nothing left to remove");
        assert!(!m.take_changed() || m.is_empty());
    }

    #[test]
    fn poll_only_mode_keeps_names_until_they_miss() {
        let mut m = Membership::new(2, 100, false);
        m.pipe_added(1);
        m.answer(1, "a");
        m.take_changed();
        assert!(m.pipe_removed(1).is_empty());
        assert!(!m.take_changed());
        assert_eq!(names(&m), ["a"]);
        assert!(m.end_round().is_empty(), "answered before the close");
        assert!(m.end_round().is_empty());
        assert_eq!(m.end_round(), ["a"]);
    }

    #[test]
    fn max_peers_refuses_new_names_only() {
        let mut m = Membership::new(2, 2, true);
        m.pipe_added(1);
        assert_eq!(m.answer(1, "a"), Joined);
        assert_eq!(m.answer(1, "b"), Joined);
        assert_eq!(m.answer(1, "c"), Full);
        assert_eq!(m.answer(1, "a"), Alive, "known names still refresh");
        assert_eq!(names(&m), ["a", "b"]);
        m.pipe_removed(1);
        m.pipe_added(2);
        assert_eq!(m.answer(2, "c"), Joined, "room again once names leave");
    }

    #[test]
    fn names_are_sorted() {
        let mut m = live(2);
        m.pipe_added(1);
        for n in ["http://c:1", "http://a:1", "http://b:1"] {
            m.answer(1, n);
        }
        assert_eq!(names(&m), ["http://a:1", "http://b:1", "http://c:1"]);
        assert!(m.contains("http://a:1"));
        assert!(!m.contains("http://d:1"));
        assert_eq!(m.len(), 3);
    }
}
