//! Merging the lists of several redundant servers, with no sockets and no
//! clock reads.
//!
//! A subscriber that follows several servers has one *source* per server.
//! Each source reports what its server says — "its list is now X"
//! ([`Merge::report`]), "it is alive and its list has not changed"
//! ([`Merge::heard`], a watch keepalive), "it is gone" ([`Merge::gone`], its
//! connection closed) — and [`Merge`] decides what the application sees:
//!
//! * a source **counts** from its first report until it is gone or falls
//!   silent: nothing heard for the silence timeout (a hung server that keeps
//!   its connection open);
//! * the list delivered is the **union** of the latest lists of the sources
//!   that count, sorted and unique, and it is delivered **only when it
//!   changes**;
//! * the first report from any source is delivered at once, even if empty;
//! * when **no** source counts, nothing is delivered: the application keeps
//!   the last list until a source reports again, and then sees that
//!   source's list (if it differs);
//! * a gone source forgets its list and counts again with its next report;
//!   a silent source keeps its list, and counts again with its next report
//!   or when it is [heard](Merge::heard) (its list is then still its list).
//!
//! Feeding it, per source:
//!
//! * classic publish URL: every list received is a report, a republish of
//!   the same list included (the republish is the heartbeat, so the silence
//!   timeout is a few republish intervals); a closed connection is `gone`;
//! * watch URL, with a [`WatchState`](crate::watch::state::WatchState) per
//!   source: `apply` returning `Ok(Some(list))` is a report, `Ok(None)` is
//!   `heard`, `Err` is neither (its next request asks for a snapshot); a
//!   closed connection is `gone` **and** the watch state's
//!   [`forget`](crate::watch::state::WatchState::forget), so that the first
//!   list after reconnecting is reported even if it equals the last one
//!   (otherwise it would come back as `Ok(None)` and the source would stay
//!   gone). `tests/merge_properties.rs` runs this glue against three
//!   servers.
//!
//! Time comes in as `now` arguments; every call first applies the silence
//! timeouts up to `now`, and [`Merge::next_deadline`] says when the owner
//! should call [`Merge::tick`] if nothing else happens. `now` should not go
//! backwards; if it does, a source is simply not silent yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a merge knows of one source.
#[derive(Debug, Clone)]
enum Source {
    /// Reported `list` and was last heard at `heard`; `silent` once the
    /// timeout has passed since.
    Listed {
        list: Arc<Vec<String>>,
        heard: Instant,
        silent: bool,
    },
    /// Its connection closed (or it never reported): it has no list.
    Gone,
}

/// The union of several sources' lists; see the [module](self).
///
/// Generic over the source identifier so that tests use plain integers.
///
/// Lists come out shared ([`Arc`]): with one server the list delivered is
/// that server's, not a copy.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
/// use nng_discovery::merge::Merge;
///
/// let list = |names: &[&str]| Some(Arc::new(names.iter().map(|n| n.to_string()).collect()));
/// let t0 = Instant::now();
/// let mut merge = Merge::new(Duration::from_secs(3));
/// assert_eq!(merge.report(0u8, vec!["a".into()], t0), list(&["a"]));
/// assert_eq!(merge.report(1, vec!["b".into()], t0), list(&["a", "b"]));
/// // Server 1 says the same as before: nothing new.
/// assert_eq!(merge.report(1, vec!["b".into()], t0), None);
/// // Server 0's connection closes: it stops counting at once.
/// assert_eq!(merge.gone(0, t0), list(&["b"]));
/// // Server 1 goes quiet: after the timeout, nobody counts; the last list stays.
/// assert_eq!(merge.tick(t0 + Duration::from_secs(3)), None);
/// ```
#[derive(Debug, Clone)]
pub struct Merge<S> {
    sources: BTreeMap<S, Source>,
    silence_timeout: Duration,
    delivered: Option<Arc<Vec<String>>>,
}

impl<S: Ord + Clone> Merge<S> {
    /// A merge with no sources yet. A source that has not been heard for
    /// `silence_timeout` stops counting (at `heard + silence_timeout`
    /// exactly).
    pub fn new(silence_timeout: Duration) -> Merge<S> {
        Merge {
            sources: BTreeMap::new(),
            silence_timeout,
            delivered: None,
        }
    }

    /// Source `source` says its server's list is now `list` (any order,
    /// duplicates dropped). It counts from now on. Returns the list to
    /// deliver, if the union changed (or this is the first report).
    pub fn report(
        &mut self,
        source: S,
        list: Vec<String>,
        now: Instant,
    ) -> Option<Arc<Vec<String>>> {
        self.expire(now);
        let mut list = list;
        list.sort_unstable();
        list.dedup();
        self.sources.insert(
            source,
            Source::Listed {
                list: Arc::new(list),
                heard: now,
                silent: false,
            },
        );
        self.settle()
    }

    /// Source `source` is alive and its list has not changed (a watch
    /// keepalive). A silent source counts again with the list it had; a
    /// gone or unknown source is not brought back (it has no list).
    pub fn heard(&mut self, source: S, now: Instant) -> Option<Arc<Vec<String>>> {
        self.expire(now);
        if let Some(Source::Listed { heard, silent, .. }) = self.sources.get_mut(&source) {
            *heard = now;
            *silent = false;
        }
        self.settle()
    }

    /// Source `source`'s connection closed: it stops counting at once and
    /// forgets its list.
    pub fn gone(&mut self, source: S, now: Instant) -> Option<Arc<Vec<String>>> {
        self.expire(now);
        self.sources.insert(source, Source::Gone);
        self.settle()
    }

    /// Applies the silence timeouts up to `now`.
    pub fn tick(&mut self, now: Instant) -> Option<Arc<Vec<String>>> {
        self.expire(now);
        self.settle()
    }

    /// When the next source falls silent if nothing is heard from it, or
    /// `None` when no source counts (or the deadline is beyond what
    /// `Instant` can hold).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sources
            .values()
            .filter_map(|source| match source {
                Source::Listed {
                    heard,
                    silent: false,
                    ..
                } => heard.checked_add(self.silence_timeout),
                _ => None,
            })
            .min()
    }

    /// Whether `source` counts now (as of the last call).
    pub fn counts(&self, source: &S) -> bool {
        matches!(
            self.sources.get(source),
            Some(Source::Listed { silent: false, .. })
        )
    }

    /// The last list delivered, `None` before the first.
    pub fn delivered(&self) -> Option<&[String]> {
        self.delivered.as_deref().map(Vec::as_slice)
    }

    fn expire(&mut self, now: Instant) {
        for source in self.sources.values_mut() {
            if let Source::Listed { heard, silent, .. } = source {
                if now.saturating_duration_since(*heard) >= self.silence_timeout {
                    *silent = true;
                }
            }
        }
    }

    /// Delivers the union of the counting sources if it changed; nothing
    /// when no source counts.
    fn settle(&mut self) -> Option<Arc<Vec<String>>> {
        let mut counting = self.sources.values().filter_map(|source| match source {
            Source::Listed {
                list,
                silent: false,
                ..
            } => Some(list),
            _ => None,
        });
        let first = counting.next()?;
        let union = match counting.next() {
            // One server (the common case): its list, kept sorted and
            // unique by `report`, is the union, shared rather than copied.
            None => Arc::clone(first),
            Some(second) => Arc::new(
                [first, second]
                    .into_iter()
                    .chain(counting)
                    .flat_map(|list| list.iter())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .cloned()
                    .collect(),
            ),
        };
        if let Some(delivered) = &self.delivered {
            if Arc::ptr_eq(delivered, &union) || **delivered == *union {
                return None;
            }
        }
        self.delivered = Some(Arc::clone(&union));
        Some(union)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(3);

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn some(names: &[&str]) -> Option<Arc<Vec<String>>> {
        Some(Arc::new(strings(names)))
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn the_first_report_is_delivered_even_if_empty() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        assert_eq!(m.delivered(), None);
        assert_eq!(m.report(1u8, vec![], t0), some(&[]));
        assert_eq!(m.delivered(), Some(&[][..]));
        assert_eq!(m.report(2, vec![], t0), None);
    }

    #[test]
    fn union_sorted_deduplicated_only_on_change() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        assert_eq!(
            m.report(1u8, strings(&["c", "a", "c"]), t0),
            some(&["a", "c"])
        );
        assert_eq!(
            m.report(2, strings(&["b", "c"]), t0),
            some(&["a", "b", "c"])
        );
        // Source 2 drops "c", which source 1 still has: no change.
        assert_eq!(m.report(2, strings(&["b"]), t0), None);
        // Latest wins per source.
        assert_eq!(m.report(1, strings(&["a"]), t0), some(&["a", "b"]));
    }

    #[test]
    fn a_gone_source_stops_counting_at_once_and_comes_back_with_its_first_list() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), t0);
        m.report(2, strings(&["a", "b"]), t0);
        assert_eq!(m.gone(2, t0), some(&["a"]));
        assert!(!m.counts(&2));
        // A keepalive does not bring a gone source back: it has no list.
        assert_eq!(m.heard(2, t0), None);
        assert!(!m.counts(&2));
        assert_eq!(m.report(2, strings(&["c"]), t0), some(&["a", "c"]));
        assert!(m.counts(&2));
    }

    #[test]
    fn when_every_source_is_gone_the_last_list_stays() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), t0);
        m.report(2, strings(&["b"]), t0);
        assert_eq!(m.gone(1, t0), some(&["b"]));
        assert_eq!(m.gone(2, t0), None);
        assert_eq!(m.delivered(), Some(&strings(&["b"])[..]));
        // One comes back with the same list: nothing new to deliver.
        assert_eq!(m.report(2, strings(&["b"]), t0), None);
        // Or with another: delivered.
        assert_eq!(m.gone(2, t0), None);
        assert_eq!(m.report(1, strings(&[]), t0), some(&[]));
    }

    #[test]
    fn gone_before_any_report_delivers_nothing() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        assert_eq!(m.gone(1u8, t0), None);
        assert_eq!(m.tick(t0), None);
        assert_eq!(m.delivered(), None);
        assert_eq!(m.report(1, vec![], t0), some(&[]));
    }

    #[test]
    fn a_silent_source_stops_counting_after_the_timeout() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), t0);
        m.report(2, strings(&["b"]), secs(t0, 1));
        assert_eq!(m.next_deadline(), Some(secs(t0, 3)));
        assert_eq!(m.tick(t0 + TIMEOUT - Duration::from_nanos(1)), None);
        assert!(m.counts(&1));
        // Exactly at the deadline: silent.
        assert_eq!(m.tick(secs(t0, 3)), some(&["b"]));
        assert!(!m.counts(&1));
        assert_eq!(m.next_deadline(), Some(secs(t0, 4)));
        // Source 2 keeps talking (a republish of the same list).
        assert_eq!(m.report(2, strings(&["b"]), secs(t0, 3)), None);
        assert_eq!(m.next_deadline(), Some(secs(t0, 6)));
        // Source 1 speaks again: it counts with its report.
        assert_eq!(m.report(1, strings(&["c"]), secs(t0, 4)), some(&["b", "c"]));
    }

    #[test]
    fn a_keepalive_revives_a_silent_source_with_its_list() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), t0);
        m.report(2, strings(&["b"]), t0);
        assert_eq!(m.heard(2, secs(t0, 2)), None);
        assert_eq!(m.tick(secs(t0, 3)), some(&["b"]));
        assert_eq!(m.heard(1, secs(t0, 4)), some(&["a", "b"]));
        assert!(m.counts(&1));
    }

    #[test]
    fn all_silent_keeps_the_last_list() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), t0);
        m.report(2, strings(&["b"]), t0);
        assert_eq!(m.tick(secs(t0, 10)), None);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.delivered(), Some(&strings(&["a", "b"])[..]));
        // Expiry inside another call: source 2 reports late, source 1 is
        // silent by then, so only source 2's list counts.
        assert_eq!(m.report(2, strings(&["b"]), secs(t0, 11)), some(&["b"]));
    }

    #[test]
    fn silence_is_applied_before_the_event_at_the_same_now() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), t0);
        // Source 2's first report comes after source 1 fell silent: the
        // union is source 2's list alone.
        assert_eq!(
            m.report(2, strings(&["a", "b"]), secs(t0, 5)),
            some(&["a", "b"])
        );
        assert_eq!(m.report(2, strings(&["b"]), secs(t0, 5)), some(&["b"]));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now();
        let mut m = Merge::new(TIMEOUT);
        m.report(1u8, strings(&["a"]), secs(t0, 10));
        assert_eq!(m.tick(t0), None);
        assert!(m.counts(&1));
    }

    #[test]
    fn a_huge_timeout_never_expires_and_has_no_deadline() {
        let t0 = Instant::now();
        let mut m = Merge::new(Duration::MAX);
        m.report(1u8, strings(&["a"]), t0);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.tick(secs(t0, 1_000_000)), None);
        assert!(m.counts(&1));
    }
}
