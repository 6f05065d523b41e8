//! Server options.

use std::time::Duration;

use crate::error::{Error, Result};

/// Settings for a [`Server`](crate::Server), built with chained setters.
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`poll_interval`](Options::poll_interval) | 5 s | time from one heartbeat survey's start to the next |
/// | [`survey_time`](Options::survey_time) | 1 s | how long a heartbeat survey waits for answers |
/// | [`miss_threshold`](Options::miss_threshold) | 2 | consecutive unanswered surveys before a connected peer is dropped |
/// | [`republish_interval`](Options::republish_interval) | 30 s | the unchanged list is published again this often |
/// | [`publish_gap`](Options::publish_gap) | 2 ms | least time between two publishes (changes in between are coalesced) |
/// | [`max_peers`](Options::max_peers) | 65,536 | names beyond this many are refused |
/// | [`event_driven`](Options::event_driven) | `true` | react to connections at once (off: poll only, like the Go original) |
/// | [`reconnect_min`](Options::reconnect_min) | 100 ms | clients and subscribers: first wait before redialing |
/// | [`reconnect_max`](Options::reconnect_max) | 1 s | clients and subscribers: longest wait between redials |
/// | [`available`](Options::available) | `true` | clients: whether a new client is listed from the start |
/// | [`first_publish_delay`](Options::first_publish_delay) | 2 × `reconnect_max` + `survey_time` (3 s) | a freshly started server publishes nothing before this |
///
/// The first seven and `first_publish_delay` are the server's; the reconnect pair is read by
/// [`Client::with_options`](crate::Client::with_options) and
/// [`Subscriber::with_options`](crate::Subscriber::with_options) (the server
/// only listens: it reads `reconnect_max` only for the default
/// `first_publish_delay`), and `available` by
/// [`Client::with_options`](crate::Client::with_options). After a server restart, clients are
/// back within about `reconnect_max` of the new server starting, so a server
/// made with the clients' options holds its first list until they can be.
///
/// With the defaults, a peer that shuts down or whose process dies leaves the
/// list within milliseconds (its connection closes); a peer that hangs with
/// its connection open is dropped within
/// `miss_threshold × poll_interval + survey_time` = 11 s. A new peer appears
/// within milliseconds, whatever the poll interval; when thousands connect at
/// once they share surveys, and each is asked within 300 ms of connecting
/// (see "How membership works" in the README).
///
/// ```
/// use std::time::Duration;
/// use nng_discovery::Options;
///
/// let options = Options::default()
///     .poll_interval(Duration::from_secs(2))
///     .survey_time(Duration::from_millis(500))
///     .miss_threshold(3);
/// assert_eq!(options.get_poll_interval(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    survey_time: Duration,
    poll_interval: Duration,
    miss_threshold: u32,
    republish_interval: Duration,
    publish_gap: Duration,
    max_peers: usize,
    event_driven: bool,
    reconnect_min: Duration,
    reconnect_max: Duration,
    available: bool,
    /// `None`: derived from `reconnect_max` and `survey_time`.
    first_publish_delay: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            survey_time: Duration::from_secs(1),
            poll_interval: Duration::from_secs(5),
            miss_threshold: 2,
            republish_interval: Duration::from_secs(30),
            publish_gap: Duration::from_millis(2),
            max_peers: 65_536,
            event_driven: true,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            available: true,
            first_publish_delay: None,
        }
    }
}

impl Options {
    /// How long each heartbeat survey waits for answers. Must be non-zero and
    /// shorter than the poll interval.
    pub fn survey_time(mut self, d: Duration) -> Self {
        self.survey_time = d;
        self
    }

    /// Time from the start of one heartbeat survey to the start of the next.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// How many consecutive heartbeat surveys a connected peer may leave
    /// unanswered before it is dropped (at least 1; 1 is the Go original's
    /// behaviour). It rejoins as soon as it answers again.
    pub fn miss_threshold(mut self, n: u32) -> Self {
        self.miss_threshold = n;
        self
    }

    /// How often the list is published again when nothing changes, so a
    /// list lost in transit heals and subscribers see the server is alive.
    pub fn republish_interval(mut self, d: Duration) -> Self {
        self.republish_interval = d;
        self
    }

    /// The least time between two publishes. Changes within it are
    /// coalesced into one publish; a lone change is published at once.
    /// Zero publishes every change separately.
    pub fn publish_gap(mut self, d: Duration) -> Self {
        self.publish_gap = d;
        self
    }

    /// The most names the server will list; answers with further new names
    /// are refused with a warning.
    pub fn max_peers(mut self, n: usize) -> Self {
        self.max_peers = n;
        self
    }

    /// Whether the server reacts to connection events (the default): a new
    /// connection is surveyed at once, a closed one leaves at once, answers
    /// are published as they arrive and a new subscriber is sent the list.
    /// Off, the server only learns of changes at the end of each heartbeat
    /// survey, like the Go original; useful as a reference in benchmarks.
    pub fn event_driven(mut self, on: bool) -> Self {
        self.event_driven = on;
        self
    }

    /// How long a client or subscriber first waits before redialing a server
    /// it cannot reach or has lost; each failure doubles the wait, up to
    /// [`reconnect_max`](Options::reconnect_max).
    pub fn reconnect_min(mut self, d: Duration) -> Self {
        self.reconnect_min = d;
        self
    }

    /// The longest a client or subscriber waits between two redials.
    pub fn reconnect_max(mut self, d: Duration) -> Self {
        self.reconnect_max = d;
        self
    }

    /// Whether a client made with these options starts available (the
    /// default) or unavailable: not listed until
    /// [`Client::set_available(true)`](crate::Client::set_available), for
    /// a service still warming up. Servers and subscribers ignore it.
    pub fn available(mut self, on: bool) -> Self {
        self.available = on;
        self
    }

    /// How long a freshly started server waits before it publishes its
    /// first list (to subscribers and to [`Server::changes`](crate::Server::changes)),
    /// so that a restarted server does not tell anyone that its clients
    /// left while they are still redialing: by default twice
    /// [`reconnect_max`](Options::reconnect_max) plus one
    /// [`survey_time`](Options::survey_time) (3 s with the defaults), long
    /// enough for clients redialing with the same options to be back and
    /// answer. Subscribers that connect meanwhile get the first list when
    /// it goes out; joins and leaves are taken in meanwhile, only not
    /// published. The first list never goes out before the first heartbeat
    /// round has ended, so anything up to `survey_time` (zero included)
    /// means "as soon as that round ends": fine for a server that is never
    /// restarted under running clients. Set it longer if your clients use
    /// a longer `reconnect_max` than the server's options.
    pub fn first_publish_delay(mut self, d: Duration) -> Self {
        self.first_publish_delay = Some(d);
        self
    }

    /// The first publish delay: the one set, or `2 × reconnect_max +
    /// survey_time`.
    pub fn get_first_publish_delay(&self) -> Duration {
        self.first_publish_delay
            .unwrap_or(2 * self.reconnect_max + self.survey_time)
    }

    /// Whether a client starts available.
    pub fn get_available(&self) -> bool {
        self.available
    }

    /// The first reconnect wait set.
    pub fn get_reconnect_min(&self) -> Duration {
        self.reconnect_min
    }

    /// The longest reconnect wait set.
    pub fn get_reconnect_max(&self) -> Duration {
        self.reconnect_max
    }

    /// The survey time set.
    pub fn get_survey_time(&self) -> Duration {
        self.survey_time
    }

    /// The poll interval set.
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The miss threshold set.
    pub fn get_miss_threshold(&self) -> u32 {
        self.miss_threshold
    }

    /// The republish interval set.
    pub fn get_republish_interval(&self) -> Duration {
        self.republish_interval
    }

    /// The publish gap set.
    pub fn get_publish_gap(&self) -> Duration {
        self.publish_gap
    }

    /// The peer limit set.
    pub fn get_max_peers(&self) -> usize {
        self.max_peers
    }

    /// Whether event-driven membership is on.
    pub fn get_event_driven(&self) -> bool {
        self.event_driven
    }

    /// Checks that the values make sense together; `Server::new` calls this.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |option: &'static str, reason: String| Err(Error::InvalidOption { option, reason });
        if self.survey_time.is_zero() {
            return bad("survey_time", "must be greater than zero".into());
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval", "must be greater than zero".into());
        }
        if self.survey_time >= self.poll_interval {
            return bad(
                "survey_time",
                format!(
                    "{:?} must be shorter than poll_interval ({:?}): a survey must end before the next starts",
                    self.survey_time, self.poll_interval
                ),
            );
        }
        if self.miss_threshold == 0 {
            return bad(
                "miss_threshold",
                "must be at least 1 (1 drops a peer at its first missed survey)".into(),
            );
        }
        if self.republish_interval.is_zero() {
            return bad("republish_interval", "must be greater than zero".into());
        }
        if self.publish_gap >= self.republish_interval {
            return bad(
                "publish_gap",
                format!(
                    "{:?} must be shorter than republish_interval ({:?})",
                    self.publish_gap, self.republish_interval
                ),
            );
        }
        if self.max_peers == 0 {
            return bad("max_peers", "must be at least 1".into());
        }
        if self.reconnect_min.is_zero() {
            return bad("reconnect_min", "must be greater than zero".into());
        }
        if self.reconnect_max < self.reconnect_min {
            return bad(
                "reconnect_max",
                format!(
                    "{:?} must not be shorter than reconnect_min ({:?})",
                    self.reconnect_max, self.reconnect_min
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(o: Options) -> (&'static str, String) {
        match o.validate() {
            Err(Error::InvalidOption { option, reason }) => (option, reason),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        Options::default().validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused_with_the_option_named() {
        let ms = Duration::from_millis;
        assert_eq!(
            refused(Options::default().survey_time(ms(0))).0,
            "survey_time"
        );
        assert_eq!(
            refused(Options::default().poll_interval(ms(0))).0,
            "poll_interval"
        );
        let (opt, why) = refused(
            Options::default()
                .poll_interval(ms(100))
                .survey_time(ms(100)),
        );
        assert_eq!(opt, "survey_time");
        assert!(why.contains("shorter than poll_interval"), "{why}");
        assert_eq!(
            refused(Options::default().miss_threshold(0)).0,
            "miss_threshold"
        );
        assert_eq!(
            refused(Options::default().republish_interval(ms(0))).0,
            "republish_interval"
        );
        assert_eq!(
            refused(Options::default().publish_gap(Duration::from_secs(60))).0,
            "publish_gap"
        );
        assert_eq!(refused(Options::default().max_peers(0)).0, "max_peers");
        assert_eq!(
            refused(Options::default().reconnect_min(ms(0))).0,
            "reconnect_min"
        );
        assert_eq!(
            refused(
                Options::default()
                    .reconnect_min(ms(500))
                    .reconnect_max(ms(100))
            )
            .0,
            "reconnect_max"
        );
        let msg = Options::default()
            .miss_threshold(0)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("invalid option miss_threshold"), "{msg}");
    }

    #[test]
    fn setters_chain() {
        let o = Options::default()
            .survey_time(Duration::from_millis(10))
            .poll_interval(Duration::from_millis(20))
            .miss_threshold(4)
            .republish_interval(Duration::from_secs(9))
            .publish_gap(Duration::ZERO)
            .max_peers(7)
            .event_driven(false)
            .reconnect_min(Duration::from_millis(5))
            .reconnect_max(Duration::from_millis(50))
            .available(false);
        o.validate().unwrap();
        assert_eq!(o.get_survey_time(), Duration::from_millis(10));
        assert_eq!(o.get_poll_interval(), Duration::from_millis(20));
        assert_eq!(o.get_miss_threshold(), 4);
        assert_eq!(o.get_republish_interval(), Duration::from_secs(9));
        assert_eq!(o.get_publish_gap(), Duration::ZERO);
        assert_eq!(o.get_max_peers(), 7);
        assert!(!o.get_event_driven());
        assert_eq!(o.get_reconnect_min(), Duration::from_millis(5));
        assert_eq!(o.get_reconnect_max(), Duration::from_millis(50));
        assert!(!o.get_available());
        assert!(Options::default().get_available());
        assert_eq!(o.get_first_publish_delay(), Duration::from_millis(110));
        let o = o.first_publish_delay(Duration::from_millis(10));
        o.validate().unwrap();
        assert_eq!(o.get_first_publish_delay(), Duration::from_millis(10));
    }

    #[test]
    fn first_publish_delay_defaults_to_two_redials_and_a_survey() {
        assert_eq!(
            Options::default().get_first_publish_delay(),
            Duration::from_secs(3)
        );
        let o = Options::default()
            .reconnect_max(Duration::from_secs(4))
            .survey_time(Duration::from_millis(500));
        assert_eq!(o.get_first_publish_delay(), Duration::from_millis(8_500));
    }
}
