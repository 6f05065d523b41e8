//! `join` and `watch --silence-timeout`: a warning when no server has been
//! heard from for a while, so that a mistyped host or a blocked port does
//! not run silently forever (both commands redial quietly until a server
//! answers). [`Silence`] is the pure state, fed a count that grows
//! whenever a server is heard from (surveys received by `join`'s client,
//! lists received by `watch`); the commands sample it on a timer.

use std::time::{Duration, Instant};

/// The default `--silence-timeout` (clap's `default_value`): six of the
/// server's default 5 s poll intervals, so a client is surveyed several
/// times within it, and a watcher gets its first list (sent on connection)
/// well within it.
pub const DEFAULT: &str = "30s";

/// What changed at a sample.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing heard for this long (at least the timeout): warn.
    Silent(Duration),
    /// Heard again after a warning.
    Heard,
}

/// Tracks the last time the count moved.
#[derive(Debug)]
pub struct Silence {
    timeout: Duration,
    count: u64,
    since: Instant,
    warned: bool,
}

impl Silence {
    /// Starts at `now` with `count`; `timeout` zero never warns.
    pub fn new(timeout: Duration, count: u64, now: Instant) -> Silence {
        Silence {
            timeout,
            count,
            since: now,
            warned: false,
        }
    }

    /// Takes a sample: `count` now, and whether anything is expected at
    /// all (`join` while unlisted dials no server, so silence is normal and
    /// the wait starts again when it is listed). One [`Event::Silent`] per
    /// silent spell, one [`Event::Heard`] when it ends.
    pub fn sample(&mut self, count: u64, expected: bool, now: Instant) -> Option<Event> {
        if count != self.count {
            self.count = count;
            self.since = now;
            if self.warned {
                self.warned = false;
                return Some(Event::Heard);
            }
            return None;
        }
        if !expected {
            self.since = now;
            return None;
        }
        let silent = now.saturating_duration_since(self.since);
        if !self.warned && !self.timeout.is_zero() && silent >= self.timeout {
            self.warned = true;
            return Some(Event::Silent(silent));
        }
        None
    }

    /// How often to sample: a tenth of the timeout, between 10 ms and 1 s
    /// (`None` when the timeout is zero: no sampling).
    pub fn period(&self) -> Option<Duration> {
        if self.timeout.is_zero() {
            return None;
        }
        Some(
            (self.timeout / 10)
                .max(Duration::from_millis(10))
                .min(Duration::from_secs(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_silent_spell_and_when_heard_again() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut silence = Silence::new(Duration::from_secs(30), 0, t0);
        assert_eq!(silence.sample(0, true, s(29)), None);
        assert_eq!(
            silence.sample(0, true, s(30)),
            Some(Event::Silent(Duration::from_secs(30)))
        );
        assert_eq!(silence.sample(0, true, s(90)), None);
        assert_eq!(silence.sample(1, true, s(91)), Some(Event::Heard));
        assert_eq!(silence.sample(5, true, s(100)), None);
        // The next spell counts from the last time the count moved.
        assert_eq!(silence.sample(5, true, s(129)), None);
        assert_eq!(
            silence.sample(5, true, s(131)),
            Some(Event::Silent(Duration::from_secs(31)))
        );
    }

    #[test]
    fn silence_while_nothing_is_expected_does_not_count() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut silence = Silence::new(Duration::from_secs(30), 0, t0);
        assert_eq!(silence.sample(0, false, s(100)), None);
        assert_eq!(silence.sample(0, true, s(129)), None);
        assert!(matches!(
            silence.sample(0, true, s(130)),
            Some(Event::Silent(_))
        ));
    }

    #[test]
    fn a_zero_timeout_never_warns() {
        let t0 = Instant::now();
        let mut silence = Silence::new(Duration::ZERO, 0, t0);
        assert_eq!(silence.period(), None);
        assert_eq!(
            silence.sample(0, true, t0 + Duration::from_secs(1000)),
            None
        );
        let silence = Silence::new(Duration::from_secs(30), 0, t0);
        assert_eq!(silence.period(), Some(Duration::from_secs(1)));
        let silence = Silence::new(Duration::from_millis(50), 0, t0);
        assert_eq!(silence.period(), Some(Duration::from_millis(10)));
    }
}
