//! When the server surveys and publishes, as a plain struct fed with
//! `Instant`s: no clock is read here, so the timing rules are unit-tested.

use std::time::{Duration, Instant};

use crate::options::Options;

/// Something the server thread must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The current heartbeat round's answer window closed: count misses.
    EndRound,
    /// Start a heartbeat round: send a survey that counts for misses.
    StartRound,
    /// Send an extra survey (a new connection wants to be heard).
    Survey,
    /// Publish the current list.
    Publish,
}

/// On average, extra surveys (sent when connections arrive) may cost at
/// most this many answers a second: the load of one survey a second to
/// 10,000 peers. Every survey reaches every connection, so a storm of new
/// connections must share surveys; up to two surveys' worth is saved up, so
/// a lone new connection is still surveyed at once.
pub(crate) const EXTRA_SURVEY_ANSWERS_PER_SEC: f64 = 10_000.0;

/// The least time between two surveys.
const MIN_SURVEY_GAP: Duration = Duration::from_millis(1);

/// Bytes a second that publishing may push on average (list bytes times
/// subscribers): with 1,000 subscribers and a 22 KB list, at most one
/// publish per 56 ms; with a few subscribers, the publish gap rules.
pub(crate) const PUBLISH_BYTES_PER_SEC: f64 = 400e6;

#[derive(Debug)]
pub(crate) struct Schedule {
    poll_interval: Duration,
    survey_time: Duration,
    republish_interval: Duration,
    publish_gap: Duration,
    next_round: Instant,
    round_end: Option<Instant>,
    survey_due: Option<Instant>,
    last_survey: Option<Instant>,
    /// Answers extra surveys may still cost now (a token bucket).
    survey_credit: f64,
    credit_at: Instant,
    /// The publish gap set in the options.
    min_publish_gap: Duration,
    publish_due: Option<Instant>,
    last_publish: Option<Instant>,
    next_republish: Instant,
    /// No list goes out before the first heartbeat round has ended, so a
    /// restarted server does not tell subscribers that everyone left while
    /// its clients are still reconnecting.
    first_publish: Instant,
}

impl Schedule {
    /// A schedule whose first heartbeat round starts at `now`.
    pub(crate) fn new(options: &Options, now: Instant) -> Schedule {
        Schedule {
            poll_interval: options.get_poll_interval(),
            survey_time: options.get_survey_time(),
            republish_interval: options.get_republish_interval(),
            publish_gap: options.get_publish_gap(),
            next_round: now,
            round_end: None,
            survey_due: None,
            last_survey: None,
            survey_credit: f64::INFINITY,
            credit_at: now,
            min_publish_gap: options.get_publish_gap(),
            // The first list goes out when the first round ends, even if
            // nobody asked: it is what `Server::changes` starts with.
            publish_due: Some(now + options.get_survey_time()),
            last_publish: None,
            next_republish: now
                + options
                    .get_republish_interval()
                    .max(options.get_survey_time()),
            first_publish: now + options.get_survey_time(),
        }
    }

    /// Asks for an extra survey, which will reach `pipes` connections: now
    /// if the answer budget allows, else once it has refilled (see
    /// [`EXTRA_SURVEY_ANSWERS_PER_SEC`]). Requests before that one is sent
    /// are merged.
    pub(crate) fn request_survey(&mut self, now: Instant, pipes: usize) {
        if self.survey_due.is_some() {
            return;
        }
        let cost = pipes.max(1) as f64;
        let refill = now.saturating_duration_since(self.credit_at).as_secs_f64()
            * EXTRA_SURVEY_ANSWERS_PER_SEC;
        self.survey_credit = (self.survey_credit + refill).min(2.0 * cost);
        self.credit_at = now;
        let wait = ((cost - self.survey_credit) / EXTRA_SURVEY_ANSWERS_PER_SEC).max(0.0);
        self.survey_credit -= cost;
        let earliest = self.last_survey.map_or(now, |t| t + MIN_SURVEY_GAP);
        self.survey_due = Some(earliest.max(now + Duration::from_secs_f64(wait)));
    }

    /// Sets the gap before the next publish from what the last one cost:
    /// `bytes` to each of `subscribers` (see [`PUBLISH_BYTES_PER_SEC`]),
    /// never below the publish gap set in the options.
    pub(crate) fn publish_cost(&mut self, bytes: usize, subscribers: usize) {
        let secs = bytes as f64 * subscribers as f64 / PUBLISH_BYTES_PER_SEC;
        self.publish_gap = Duration::from_secs_f64(secs).max(self.min_publish_gap);
    }

    /// Asks for a publish, at `now` or once the publish gap has passed since
    /// the last one. Requests before that one is made are merged.
    pub(crate) fn request_publish(&mut self, now: Instant) {
        if self.publish_due.is_some() {
            return;
        }
        let earliest = self.last_publish.map_or(now, |t| t + self.publish_gap);
        self.publish_due = Some(earliest.max(now).max(self.first_publish));
    }

    /// Returns the next action due at `now`, if any, and books it as done.
    /// Call until it returns `None`.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Action> {
        if self.round_end.is_some_and(|t| t <= now) {
            self.round_end = None;
            return Some(Action::EndRound);
        }
        if self.next_round <= now {
            // Keep the beat; if the thread fell a whole interval behind,
            // restart it from now rather than firing a burst of rounds.
            self.next_round += self.poll_interval;
            if self.next_round <= now {
                self.next_round = now + self.poll_interval;
            }
            self.round_end = Some(now + self.survey_time);
            self.last_survey = Some(now);
            self.survey_due = None; // the round's survey reaches everyone
            return Some(Action::StartRound);
        }
        if self.survey_due.is_some_and(|t| t <= now) {
            self.survey_due = None;
            self.last_survey = Some(now);
            return Some(Action::Survey);
        }
        if self.publish_due.is_some_and(|t| t <= now) || self.next_republish <= now {
            self.publish_due = None;
            self.last_publish = Some(now);
            self.next_republish = now + self.republish_interval;
            return Some(Action::Publish);
        }
        None
    }

    /// When `due` will next have something to return.
    pub(crate) fn next_wakeup(&self) -> Instant {
        [self.round_end, self.survey_due, self.publish_due]
            .into_iter()
            .flatten()
            .fold(self.next_round.min(self.next_republish), Instant::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn options() -> Options {
        Options::default()
            .poll_interval(ms(1000))
            .survey_time(ms(200))
            .republish_interval(ms(10_000))
            .publish_gap(ms(5))
    }

    /// Every action due at or before `now`, in order.
    fn drain(s: &mut Schedule, now: Instant) -> Vec<Action> {
        std::iter::from_fn(|| s.due(now)).collect()
    }

    #[test]
    fn rounds_start_at_once_and_keep_the_beat() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        assert_eq!(s.next_wakeup(), t0);
        assert_eq!(drain(&mut s, t0), [Action::StartRound]);
        assert_eq!(s.next_wakeup(), t0 + ms(200));
        assert!(drain(&mut s, t0 + ms(199)).is_empty());
        // The first round's end also sends the first list.
        assert_eq!(
            drain(&mut s, t0 + ms(200)),
            [Action::EndRound, Action::Publish]
        );
        assert_eq!(s.next_wakeup(), t0 + ms(1000));
        // Woken late: the beat is kept from the schedule, not from the wake.
        assert_eq!(drain(&mut s, t0 + ms(1010)), [Action::StartRound]);
        assert_eq!(s.next_wakeup(), t0 + ms(1210));
        assert_eq!(drain(&mut s, t0 + ms(1210)), [Action::EndRound]);
        assert_eq!(s.next_wakeup(), t0 + ms(2000));
    }

    #[test]
    fn a_long_stall_restarts_the_beat_instead_of_bursting() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        drain(&mut s, t0);
        // Stalled for 5 intervals: one end, one new round, the first list
        // (due since the first round ended), nothing more.
        assert_eq!(
            drain(&mut s, t0 + ms(5500)),
            [Action::EndRound, Action::StartRound, Action::Publish]
        );
        assert_eq!(s.next_wakeup(), t0 + ms(5700));
        drain(&mut s, t0 + ms(5700));
        assert_eq!(s.next_wakeup(), t0 + ms(6500));
    }

    #[test]
    fn the_round_ends_before_the_next_starts() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        drain(&mut s, t0);
        assert_eq!(
            drain(&mut s, t0 + ms(1000)),
            [Action::EndRound, Action::StartRound, Action::Publish]
        );
    }

    #[test]
    fn extra_surveys_are_immediate_then_share_a_budget() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        drain(&mut s, t0); // round's survey at t0
        drain(&mut s, t0 + ms(250)); // the round ends, the first list goes out
        let t = t0 + ms(300);
        // 1,000 connections: two surveys' worth of credit, then one per
        // 100 ms (10,000 answers a second).
        s.request_survey(t, 1000);
        assert_eq!(drain(&mut s, t), [Action::Survey]);
        s.request_survey(t + ms(1), 1000);
        assert_eq!(drain(&mut s, t + ms(1)), [Action::Survey]);
        // 20 answers of credit by now: the 980 missing take 98 ms.
        s.request_survey(t + ms(2), 1000);
        s.request_survey(t + ms(3), 1000); // merged
        assert_eq!(s.next_wakeup(), t + ms(100));
        assert!(drain(&mut s, t + ms(99)).is_empty());
        assert_eq!(drain(&mut s, t + ms(100)), [Action::Survey]);
        // A few connections: the 1 ms floor.
        let mut s = Schedule::new(&options(), t0);
        drain(&mut s, t0);
        drain(&mut s, t0 + ms(250));
        s.request_survey(t, 3);
        assert_eq!(drain(&mut s, t), [Action::Survey]);
        s.request_survey(t, 3);
        assert_eq!(s.next_wakeup(), t + ms(1));
    }

    #[test]
    fn a_join_storm_of_10000_costs_about_one_survey_a_second() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options().poll_interval(ms(60_000)), t0);
        drain(&mut s, t0);
        let mut surveys = 0;
        // One new connection every 100 µs for 1 s, then 2 s of quiet.
        for i in 0..30_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            if i < 10_000 {
                s.request_survey(now, i as usize + 1);
            }
            surveys += drain(&mut s, now)
                .iter()
                .filter(|a| **a == Action::Survey)
                .count();
        }
        // The old rule (1 ms + 20 µs per connection) sent about 40 here.
        assert!((3..=12).contains(&surveys), "{surveys} surveys");
    }

    #[test]
    fn publishes_to_many_subscribers_are_spaced_by_their_cost() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options().publish_gap(ms(2)), t0);
        s.publish_cost(22_000, 10);
        assert_eq!(s.publish_gap, ms(2));
        s.publish_cost(22_000, 1000);
        assert_eq!(s.publish_gap, Duration::from_secs_f64(0.055));
    }

    #[test]
    fn a_round_survey_satisfies_a_pending_extra_survey() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        drain(&mut s, t0);
        drain(&mut s, t0 + ms(200));
        s.request_survey(t0 + ms(999), 1000); // credit for two: now
        assert_eq!(drain(&mut s, t0 + ms(999)), [Action::Survey]);
        s.request_survey(t0 + ms(999), 20_000); // no credit left: in 2 s
        assert_eq!(drain(&mut s, t0 + ms(1009)), [Action::StartRound]);
        assert!(drain(&mut s, t0 + ms(1100)).is_empty());
    }

    #[test]
    fn the_first_list_is_published_when_the_first_round_ends() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        assert_eq!(drain(&mut s, t0), [Action::StartRound]);
        assert_eq!(
            drain(&mut s, t0 + ms(200)),
            [Action::EndRound, Action::Publish]
        );
        assert!(!drain(&mut s, t0 + ms(5_000)).contains(&Action::Publish));
    }

    #[test]
    fn nothing_is_published_before_the_first_round_ends() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        assert_eq!(drain(&mut s, t0), [Action::StartRound]);
        s.request_publish(t0 + ms(10));
        assert!(drain(&mut s, t0 + ms(199)).is_empty());
        assert_eq!(s.next_wakeup(), t0 + ms(200));
        // The round ends first, then the held publish goes out.
        assert_eq!(
            drain(&mut s, t0 + ms(200)),
            [Action::EndRound, Action::Publish]
        );
        // A republish interval shorter than the survey time still waits.
        let short = options().republish_interval(ms(50)).publish_gap(ms(1));
        let mut s = Schedule::new(&short, t0);
        drain(&mut s, t0);
        assert!(!drain(&mut s, t0 + ms(100)).contains(&Action::Publish));
        assert!(drain(&mut s, t0 + ms(200)).contains(&Action::Publish));
    }

    #[test]
    fn a_lone_publish_is_immediate_and_bursts_coalesce() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        drain(&mut s, t0);
        drain(&mut s, t0 + ms(200));
        let t = t0 + ms(250);
        s.request_publish(t);
        assert_eq!(drain(&mut s, t), [Action::Publish]);
        for i in 1..5 {
            s.request_publish(t + ms(i));
        }
        assert_eq!(s.next_wakeup(), t + ms(5));
        assert!(drain(&mut s, t + ms(4)).is_empty());
        assert_eq!(drain(&mut s, t + ms(5)), [Action::Publish]);
        assert!(drain(&mut s, t + ms(100)).is_empty());
    }

    #[test]
    fn republish_comes_after_quiet_intervals_only() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options(), t0);
        let mut publishes = Vec::new();
        let mut now = t0;
        // Walk 25 s in 10 ms steps with no changes.
        while now < t0 + ms(25_000) {
            for a in drain(&mut s, now) {
                if a == Action::Publish {
                    publishes.push(now - t0);
                }
            }
            now += ms(10);
        }
        // The first list when the first round ends, then every 10 s.
        assert_eq!(publishes, [ms(200), ms(10_200), ms(20_200)]);
        // A publish pushes the next republish back a full interval.
        let mut s = Schedule::new(&options(), t0);
        s.request_publish(t0 + ms(9_000));
        assert!(drain(&mut s, t0 + ms(9_000)).contains(&Action::Publish));
        assert!(!drain(&mut s, t0 + ms(10_000)).contains(&Action::Publish));
        assert!(drain(&mut s, t0 + ms(19_000)).contains(&Action::Publish));
    }

    #[test]
    fn zero_publish_gap_publishes_every_request() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&options().publish_gap(Duration::ZERO), t0);
        drain(&mut s, t0);
        drain(&mut s, t0 + ms(200));
        for i in 201..204 {
            s.request_publish(t0 + ms(i));
            assert_eq!(drain(&mut s, t0 + ms(i)), [Action::Publish]);
        }
    }
}
