//! The watch server's held requests, with no sockets and no clock reads.
//!
//! A request that is current ([`crate::watch::history::Answer::Hold`]) waits here
//! until the list changes ([`HeldRequests::take_all`]: answer each with
//! [`History::answer`](crate::watch::history::History::answer), now a delta) or its
//! keepalive interval passes ([`HeldRequests::take_due`]: answer each with
//! [`History::expire`](crate::watch::history::History::expire)).
//!
//! Memory is bounded per connection: a connection (pipe) has at most one
//! held request. A REQ peer has one request outstanding at a time and drops
//! replies to any earlier one, so a newer request from the same pipe
//! replaces the older, whose ticket [`hold`](HeldRequests::hold) hands back
//! to be dropped unanswered. A flood of requests on one pipe therefore
//! holds one entry, and a closed pipe's entry goes with
//! [`pipe_closed`](HeldRequests::pipe_closed).
//!
//! Generic over the pipe identifier `P` and the *ticket* `T`, whatever the
//! server thread needs to send the reply later (in raw mode, the request's
//! header, which routes the reply back).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::watch::wire::Position;

/// A request taken out of [`HeldRequests`], to be answered now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released<P, T> {
    /// The connection it came on.
    pub pipe: P,
    /// What the server needs to send the reply.
    pub ticket: T,
    /// The position the watcher holds.
    pub position: Position,
}

#[derive(Debug)]
struct Held<T> {
    ticket: T,
    position: Position,
    /// Key in `by_deadline`.
    key: (Instant, u64),
}

/// Requests held until the list changes or their keepalive is due; see the
/// [module](self).
///
/// ```
/// use std::time::{Duration, Instant};
/// use nng_discovery::held_requests::HeldRequests;
/// use nng_discovery::watch_wire::Position;
///
/// let t0 = Instant::now();
/// let mut held = HeldRequests::new(Duration::from_secs(10));
/// assert_eq!(held.hold(1u32, "ticket 1", Position::new(7, 3), t0), None);
/// assert_eq!(held.next_deadline(), Some(t0 + Duration::from_secs(10)));
/// // The same pipe asks again: the first request is dropped unanswered.
/// assert_eq!(held.hold(1, "ticket 2", Position::new(7, 3), t0), Some("ticket 1"));
/// assert_eq!(held.len(), 1);
/// assert!(held.take_due(t0 + Duration::from_secs(9)).is_empty());
/// assert_eq!(held.take_due(t0 + Duration::from_secs(10)).len(), 1);
/// assert!(held.is_empty());
/// ```
#[derive(Debug)]
pub struct HeldRequests<P, T> {
    by_pipe: HashMap<P, Held<T>>,
    /// Deadline (with a sequence number to keep keys unique) -> pipe.
    by_deadline: BTreeMap<(Instant, u64), P>,
    keepalive: Duration,
    seq: u64,
}

impl<P: Copy + Eq + Hash, T> HeldRequests<P, T> {
    /// No held requests; each request will be due `keepalive` after it is
    /// held.
    pub fn new(keepalive: Duration) -> HeldRequests<P, T> {
        HeldRequests {
            by_pipe: HashMap::new(),
            by_deadline: BTreeMap::new(),
            keepalive,
            seq: 0,
        }
    }

    /// Holds the request `ticket` from `pipe`, whose watcher holds
    /// `position`, received at `now`. Returns the ticket of the request it
    /// replaces (the same pipe's earlier request), which must not be
    /// answered.
    ///
    /// A keepalive interval too large for `Instant` makes the request due
    /// never (only a change or the pipe closing releases it).
    pub fn hold(&mut self, pipe: P, ticket: T, position: Position, now: Instant) -> Option<T> {
        let replaced = self.remove(pipe).map(|r| r.ticket);
        let deadline = now.checked_add(self.keepalive);
        self.seq += 1;
        // A deadline beyond Instant's range never enters the index (the
        // key, unique by its sequence number, is then never looked up).
        let key = (deadline.unwrap_or(now), self.seq);
        if deadline.is_some() {
            self.by_deadline.insert(key, pipe);
        }
        self.by_pipe.insert(
            pipe,
            Held {
                ticket,
                position,
                key,
            },
        );
        replaced
    }

    /// Forgets `pipe`'s held request, if any: its connection closed.
    pub fn pipe_closed(&mut self, pipe: P) -> Option<Released<P, T>> {
        self.remove(pipe)
    }

    fn remove(&mut self, pipe: P) -> Option<Released<P, T>> {
        let held = self.by_pipe.remove(&pipe)?;
        self.by_deadline.remove(&held.key);
        Some(Released {
            pipe,
            ticket: held.ticket,
            position: held.position,
        })
    }

    /// Releases every held request (the list changed: each is now behind).
    pub fn take_all(&mut self) -> Vec<Released<P, T>> {
        self.by_deadline.clear();
        self.by_pipe
            .drain()
            .map(|(pipe, held)| Released {
                pipe,
                ticket: held.ticket,
                position: held.position,
            })
            .collect()
    }

    /// Releases the requests whose keepalive is due at `now` (held
    /// `keepalive` ago or longer), earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<Released<P, T>> {
        let mut due = Vec::new();
        while let Some((&key, &pipe)) = self.by_deadline.iter().next() {
            if key.0 > now {
                break;
            }
            self.by_deadline.remove(&key);
            if let Some(held) = self.by_pipe.remove(&pipe) {
                due.push(Released {
                    pipe,
                    ticket: held.ticket,
                    position: held.position,
                });
            }
        }
        due
    }

    /// When the earliest held request is due, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline
            .keys()
            .next()
            .map(|&(deadline, _)| deadline)
    }

    /// How many requests are held.
    pub fn len(&self) -> usize {
        self.by_pipe.len()
    }

    /// Whether no request is held.
    pub fn is_empty(&self) -> bool {
        self.by_pipe.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEPALIVE: Duration = Duration::from_secs(10);

    fn p(revision: u64) -> Position {
        Position::new(5, revision)
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn one_request_per_pipe() {
        let t0 = Instant::now();
        let mut h = HeldRequests::new(KEEPALIVE);
        assert_eq!(h.hold(1u8, 'a', p(1), t0), None);
        assert_eq!(h.hold(2, 'b', p(1), t0), None);
        for (i, ticket) in ['c', 'd', 'e'].into_iter().enumerate() {
            let replaced = h.hold(1, ticket, p(2), secs(t0, i as u64 + 1));
            assert!(replaced.is_some());
        }
        assert_eq!(h.len(), 2);
        // Pipe 1's deadline moved with its newest request.
        assert_eq!(h.next_deadline(), Some(secs(t0, 10)));
        let due = h.take_due(secs(t0, 10));
        assert_eq!(
            due,
            [Released {
                pipe: 2,
                ticket: 'b',
                position: p(1)
            }]
        );
        assert_eq!(h.next_deadline(), Some(secs(t0, 13)));
        assert_eq!(
            h.take_due(secs(t0, 13)),
            [Released {
                pipe: 1,
                ticket: 'e',
                position: p(2)
            }]
        );
        assert!(h.is_empty());
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn due_in_deadline_order() {
        let t0 = Instant::now();
        let mut h = HeldRequests::new(KEEPALIVE);
        h.hold(3u8, 3, p(1), secs(t0, 3));
        h.hold(1, 1, p(1), secs(t0, 1));
        h.hold(2, 2, p(1), secs(t0, 1));
        let due: Vec<u8> = h
            .take_due(secs(t0, 100))
            .into_iter()
            .map(|r| r.ticket)
            .collect();
        assert_eq!(due, [1, 2, 3]);
    }

    #[test]
    fn a_change_releases_everything() {
        let t0 = Instant::now();
        let mut h = HeldRequests::new(KEEPALIVE);
        h.hold(1u8, 'a', p(1), t0);
        h.hold(2, 'b', p(1), t0);
        let mut all: Vec<char> = h.take_all().into_iter().map(|r| r.ticket).collect();
        all.sort_unstable();
        assert_eq!(all, ['a', 'b']);
        assert!(h.is_empty());
        assert_eq!(h.next_deadline(), None);
        assert!(h.take_due(secs(t0, 100)).is_empty());
    }

    #[test]
    fn a_closed_pipe_forgets_its_request() {
        let t0 = Instant::now();
        let mut h = HeldRequests::new(KEEPALIVE);
        h.hold(1u8, 'a', p(1), t0);
        assert_eq!(h.pipe_closed(1).map(|r| r.ticket), Some('a'));
        assert_eq!(h.pipe_closed(1), None);
        assert!(h.is_empty());
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn a_keepalive_beyond_instant_is_never_due() {
        let t0 = Instant::now();
        let mut h = HeldRequests::new(Duration::MAX);
        h.hold(1u8, 'a', p(1), t0);
        assert_eq!(h.next_deadline(), None);
        assert!(h.take_due(secs(t0, 1_000_000)).is_empty());
        assert_eq!(h.len(), 1);
        assert_eq!(h.hold(1, 'b', p(1), t0), Some('a'));
        assert_eq!(h.take_all().len(), 1);
    }
}
