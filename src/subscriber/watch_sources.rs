//! The watch protocol as a [`Source`]: one [`WatchSource`] (one REQ socket)
//! per watch URL, all driven by the subscriber's one thread.
//!
//! What each watch URL's source says maps one to one onto what the merge
//! is told ([`report`]):
//!
//! * [`WatchEvent::List`] (a changed list, or the first one since the
//!   source started or was last gone) is [`Report::List`];
//! * [`WatchEvent::Heard`] (a keepalive, an unchanged list, a reply that
//!   did not apply and makes the source ask for a snapshot) is
//!   [`Report::Heard`]: the server is alive, its list stays;
//! * [`WatchEvent::Gone`] (the connection closed, or two keepalive
//!   intervals of silence, after which the source redials) is
//!   [`Report::Gone`].
//!
//! The subscriber's silence timeout for such a source is twice the watch
//! keepalive ([`silence_timeout`]), the same limit after which a source
//! says `Gone` itself: a live server answers a held request at least once
//! per keepalive.
//!
//! Each watch URL's source is a
//! [`BroadcastSource`]
//! (follows the server's broadcast when offered, REQ/REP otherwise), or with
//! [`Options::watch_follow`](crate::Options::watch_follow)`(false)` a [`WatchSource`] (REQ/REP only):
//! [`AnyWatch`].
//!
//! [`WatchSources::take`] gives every source its turn (the loop does not
//! say which descriptor woke it; a source with nothing ready returns at
//! once) and then lets each check its silence deadline.

use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::options::FollowSettings;
use crate::subscriber::broadcast_source::BroadcastSource;
use crate::subscriber::source::{Report, Source};
use crate::subscriber::watch_source::{WatchEvent, WatchSource};

/// What a watch event tells the merge; see the [module](self).
pub(crate) fn report(event: WatchEvent) -> Report {
    match event {
        WatchEvent::List(list) => Report::List(list),
        WatchEvent::Heard => Report::Heard,
        WatchEvent::Gone => Report::Gone,
    }
}

/// The silence timeout of a subscriber that follows watch URLs with
/// `options`: twice [`Options::watch_keepalive`](crate::Options::watch_keepalive).
pub(crate) fn silence_timeout(options: &FollowSettings) -> Duration {
    options.watch_keepalive.saturating_mul(2)
}

/// What [`WatchSources`] needs of one watch URL's source: [`WatchSource`],
/// or a fake in the tests.
pub(crate) trait Watch: Send + 'static {
    /// The descriptors to poll.
    fn fds(&self) -> Vec<RawFd>;
    /// Takes what is ready, without blocking.
    fn on_readable(&mut self, now: Instant) -> Vec<WatchEvent>;
    /// When [`on_deadline`](Watch::on_deadline) is next due.
    fn next_deadline(&self) -> Instant;
    /// Checks for silence.
    fn on_deadline(&mut self, now: Instant) -> Option<WatchEvent>;
    /// Closes its socket.
    fn close(self);
}

impl Watch for WatchSource {
    fn fds(&self) -> Vec<RawFd> {
        WatchSource::fds(self).to_vec()
    }
    fn on_readable(&mut self, now: Instant) -> Vec<WatchEvent> {
        WatchSource::on_readable(self, now)
    }
    fn next_deadline(&self) -> Instant {
        WatchSource::next_deadline(self)
    }
    fn on_deadline(&mut self, now: Instant) -> Option<WatchEvent> {
        WatchSource::on_deadline(self, now)
    }
    fn close(self) {
        WatchSource::close(self);
    }
}

/// One watch URL's source, of the kind the options ask for.
#[derive(Debug)]
pub(crate) enum AnyWatch {
    /// REQ/REP only ([`Options::watch_follow`](crate::Options::watch_follow) off).
    Plain(WatchSource),
    /// The broadcast when the server offers one, REQ/REP otherwise.
    Follow(BroadcastSource),
}

impl Watch for AnyWatch {
    fn fds(&self) -> Vec<RawFd> {
        match self {
            AnyWatch::Plain(w) => w.fds().to_vec(),
            AnyWatch::Follow(w) => w.fds().to_vec(),
        }
    }
    fn on_readable(&mut self, now: Instant) -> Vec<WatchEvent> {
        match self {
            AnyWatch::Plain(w) => w.on_readable(now),
            AnyWatch::Follow(w) => w.on_readable(now),
        }
    }
    fn next_deadline(&self) -> Instant {
        match self {
            AnyWatch::Plain(w) => w.next_deadline(),
            AnyWatch::Follow(w) => w.next_deadline(),
        }
    }
    fn on_deadline(&mut self, now: Instant) -> Option<WatchEvent> {
        match self {
            AnyWatch::Plain(w) => w.on_deadline(now),
            AnyWatch::Follow(w) => w.on_deadline(now),
        }
    }
    fn close(self) {
        match self {
            AnyWatch::Plain(w) => w.close(),
            AnyWatch::Follow(w) => w.close(),
        }
    }
}

/// Follows the watch URLs of several servers; see the [module](self).
#[derive(Debug)]
pub(crate) struct WatchSources<W = AnyWatch> {
    urls: Vec<String>,
    /// `watches[i]` follows `urls[i]`.
    watches: Vec<W>,
}

impl WatchSources<AnyWatch> {
    /// Dials every URL of `urls` (checked: non-empty, no duplicates) with
    /// the reconnect timing and watch keepalive of `options`. Every URL is
    /// checked before any is dialed.
    pub(crate) fn open(urls: Vec<String>, options: &FollowSettings) -> Result<WatchSources> {
        let now = Instant::now();
        let mut watches = Vec::with_capacity(urls.len());
        // On an error, those made so far close as they drop.
        for url in &urls {
            watches.push(if options.watch_follow {
                AnyWatch::Follow(BroadcastSource::prepare(url, options, now)?)
            } else {
                AnyWatch::Plain(WatchSource::prepare(url, options, now)?)
            });
        }
        for watch in &mut watches {
            match watch {
                AnyWatch::Plain(w) => w.start()?,
                AnyWatch::Follow(w) => w.start()?,
            }
        }
        Ok(WatchSources { urls, watches })
    }
}

impl<W: Watch> WatchSources<W> {
    /// Sources already made, `watches[i]` following `urls[i]`.
    #[cfg(test)]
    fn from_parts(urls: Vec<String>, watches: Vec<W>) -> WatchSources<W> {
        assert_eq!(urls.len(), watches.len());
        WatchSources { urls, watches }
    }
}

impl<W: Watch + std::fmt::Debug> Source for WatchSources<W> {
    fn urls(&self) -> &[String] {
        &self.urls
    }

    fn fds(&self) -> Vec<RawFd> {
        self.watches.iter().flat_map(Watch::fds).collect()
    }

    fn take(&mut self, report_to: &mut dyn FnMut(usize, Report)) {
        let now = Instant::now();
        for (server, watch) in self.watches.iter_mut().enumerate() {
            for event in watch.on_readable(now) {
                report_to(server, report(event));
            }
            if let Some(event) = watch.on_deadline(now) {
                report_to(server, report(event));
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.watches.iter().map(Watch::next_deadline).min()
    }

    fn close(self: Box<Self>) {
        for watch in self.watches {
            watch.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use std::collections::VecDeque;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn each_event_maps_to_its_report() {
        assert_eq!(
            report(WatchEvent::List(strings(&["a", "b"]))),
            Report::List(strings(&["a", "b"]))
        );
        assert_eq!(
            report(WatchEvent::List(Vec::new())),
            Report::List(Vec::new())
        );
        assert_eq!(report(WatchEvent::Heard), Report::Heard);
        assert_eq!(report(WatchEvent::Gone), Report::Gone);
    }

    #[test]
    fn the_silence_timeout_is_two_keepalives() {
        let follow = |o: Options| o.follow_settings().expect("valid options");
        let o = Options::default().watch_keepalive(Duration::from_millis(300));
        assert_eq!(
            silence_timeout(&follow(o.clone())),
            Duration::from_millis(600)
        );
        assert_eq!(
            silence_timeout(&follow(Options::default())),
            Duration::from_secs(20)
        );
        // The classic silence timeout does not matter to watchers.
        let o = o.silence_timeout(Duration::from_secs(99));
        assert_eq!(silence_timeout(&follow(o)), Duration::from_millis(600));
        let huge = Options::default().watch_keepalive(Duration::MAX);
        assert_eq!(silence_timeout(&follow(huge)), Duration::MAX);
    }

    /// A watch URL's source played by the test: events queued for its next
    /// `on_readable`, an optional event for `on_deadline`, a deadline.
    #[derive(Debug, Default)]
    struct Fake {
        fds: Vec<RawFd>,
        readable: VecDeque<Vec<WatchEvent>>,
        at_deadline: Option<WatchEvent>,
        deadline: Option<Instant>,
        closed: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    }

    impl Watch for Fake {
        fn fds(&self) -> Vec<RawFd> {
            self.fds.clone()
        }
        fn on_readable(&mut self, _: Instant) -> Vec<WatchEvent> {
            self.readable.pop_front().unwrap_or_default()
        }
        fn next_deadline(&self) -> Instant {
            self.deadline.unwrap_or_else(Instant::now)
        }
        fn on_deadline(&mut self, _: Instant) -> Option<WatchEvent> {
            self.at_deadline.take()
        }
        fn close(self) {
            if let Some(c) = self.closed {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    fn take_all<W: Watch + std::fmt::Debug>(s: &mut WatchSources<W>) -> Vec<(usize, Report)> {
        let mut out = Vec::new();
        s.take(&mut |i, r| out.push((i, r)));
        out
    }

    #[test]
    fn take_reports_each_server_in_order_then_its_silence() {
        let a = Fake {
            fds: vec![3, 4],
            readable: VecDeque::from([vec![WatchEvent::List(strings(&["x"])), WatchEvent::Heard]]),
            ..Fake::default()
        };
        let b = Fake {
            fds: vec![5, 6],
            readable: VecDeque::from([vec![WatchEvent::Gone]]),
            at_deadline: Some(WatchEvent::Gone),
            ..Fake::default()
        };
        let mut s = WatchSources::from_parts(strings(&["u0", "u1"]), vec![a, b]);
        assert_eq!(s.urls(), ["u0", "u1"]);
        assert_eq!(s.fds(), [3, 4, 5, 6]);
        assert_eq!(
            take_all(&mut s),
            [
                (0, Report::List(strings(&["x"]))),
                (0, Report::Heard),
                (1, Report::Gone),
                (1, Report::Gone),
            ]
        );
        // Nothing more ready: nothing reported.
        assert_eq!(take_all(&mut s), []);
    }

    #[test]
    fn the_deadline_is_the_earliest_source_deadline() {
        let t0 = Instant::now();
        let at = |ms| Fake {
            deadline: Some(t0 + Duration::from_millis(ms)),
            ..Fake::default()
        };
        let s = WatchSources::from_parts(strings(&["a", "b", "c"]), vec![at(30), at(10), at(20)]);
        assert_eq!(s.deadline(), Some(t0 + Duration::from_millis(10)));
        let none: WatchSources<Fake> = WatchSources::from_parts(Vec::new(), Vec::new());
        assert_eq!(none.deadline(), None);
    }

    #[test]
    fn close_closes_every_source() {
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fake = || Fake {
            closed: Some(std::sync::Arc::clone(&closed)),
            ..Fake::default()
        };
        let s = WatchSources::from_parts(strings(&["a", "b", "c"]), vec![fake(), fake(), fake()]);
        Box::new(s).close();
        assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
