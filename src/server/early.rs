//! Announcements that arrive before their connection is known.
//!
//! NNG starts reading a new connection before it runs the pipe callback
//! that tells the server thread about it, and the two reach that thread on
//! different channels. A client announces itself as soon as its side of the
//! connection is up, so its announcement can be taken before the
//! connection's arrival. [`Early`] holds such an announcement until the
//! arrival comes, and then it is taken like any other. One whose
//! connection never arrives (it closed in between, and its close was taken
//! before the announcement) is dropped after [`EARLY_KEEP`], or when
//! [`EARLY_MAX`] newer ones are held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long an announcement waits for its connection's arrival. The
/// arrival is normally microseconds behind; a second covers a server
/// thread that was descheduled in between.
pub(crate) const EARLY_KEEP: Duration = Duration::from_secs(1);

/// The most announcements held at once: the oldest goes first.
pub(crate) const EARLY_MAX: usize = 1024;

/// Messages held for keys (connections) not yet known, oldest first.
#[derive(Debug)]
pub(crate) struct Early<K, M> {
    held: VecDeque<(Instant, K, M)>,
}

impl<K: PartialEq, M> Early<K, M> {
    /// Holds nothing.
    pub(crate) fn new() -> Early<K, M> {
        Early {
            held: VecDeque::new(),
        }
    }

    /// Drops what was held longer than [`EARLY_KEEP`] at `now`.
    fn prune(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.held.front() {
            if now.saturating_duration_since(*at) < EARLY_KEEP {
                break;
            }
            self.held.pop_front();
        }
    }

    /// Holds `msg`, which arrived at `now` for `key`, not yet known.
    pub(crate) fn hold(&mut self, now: Instant, key: K, msg: M) {
        self.prune(now);
        if self.held.len() >= EARLY_MAX {
            self.held.pop_front();
        }
        self.held.push_back((now, key, msg));
    }

    /// Takes what is held for `key`, which has just become known at `now`:
    /// the oldest message first (call again for more).
    pub(crate) fn take(&mut self, now: Instant, key: &K) -> Option<M> {
        self.prune(now);
        if self.held.is_empty() {
            return None;
        }
        let i = self.held.iter().position(|(_, k, _)| k == key)?;
        self.held.remove(i).map(|(_, _, msg)| msg)
    }

    /// How many messages are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_message_is_taken_once_its_key_is_known() {
        let t0 = Instant::now();
        let mut e = Early::new();
        e.hold(t0, 7u32, "a");
        e.hold(t0, 8, "b");
        e.hold(t0, 7, "c");
        assert_eq!(e.take(t0, &9), None);
        assert_eq!(e.take(t0, &7), Some("a"));
        assert_eq!(e.take(t0, &7), Some("c"));
        assert_eq!(e.take(t0, &7), None);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn what_waits_too_long_is_dropped() {
        let t0 = Instant::now();
        let mut e = Early::new();
        e.hold(t0, 1u32, "old");
        e.hold(t0 + Duration::from_millis(500), 2, "newer");
        assert_eq!(e.take(t0 + EARLY_KEEP, &1), None);
        assert_eq!(e.take(t0 + EARLY_KEEP, &2), Some("newer"));
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn at_most_early_max_are_held() {
        let t0 = Instant::now();
        let mut e = Early::new();
        for key in 0..EARLY_MAX as u32 + 10 {
            e.hold(t0, key, key);
        }
        assert_eq!(e.len(), EARLY_MAX);
        assert_eq!(e.take(t0, &9), None, "the oldest went first");
        assert_eq!(e.take(t0, &10), Some(10));
    }
}
