//! Property tests of the multi-server merge (issue 17) against an
//! independent model, on random reports, departures, keepalives and time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nng_discovery::merge::Merge;
use proptest::prelude::*;

const POOL: [&str; 6] = ["a", "b", "c", "d", "http://10.0.0.1:8080", "☃"];

#[derive(Debug, Clone)]
enum Op {
    /// Source `0` says its list is `1` (possibly unsorted, duplicated).
    Report(u8, Vec<String>),
    /// Source `0`'s connection closed.
    Gone(u8),
    /// Source `0` sent a keepalive.
    Heard(u8),
    /// Time passes by this many milliseconds, then the owner ticks.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let source = 0..4u8;
    let list = prop::collection::vec(prop::sample::select(&POOL[..]).prop_map(String::from), 0..5);
    prop_oneof![
        5 => (source.clone(), list).prop_map(|(s, l)| Op::Report(s, l)),
        2 => source.clone().prop_map(Op::Gone),
        2 => source.prop_map(Op::Heard),
        3 => (0..1500u64).prop_map(Op::Wait),
    ]
}

/// The rules, from the documentation, recomputed from scratch each time:
/// a source counts while it has a list (reported since it was last gone)
/// and was heard less than the timeout ago.
#[derive(Default)]
struct Model {
    /// source -> (its list, when last heard)
    listed: BTreeMap<u8, (BTreeSet<String>, Instant)>,
    delivered: Option<Vec<String>>,
}

impl Model {
    fn apply(&mut self, op: &Op, now: Instant, timeout: Duration) -> Option<Vec<String>> {
        match op {
            Op::Report(s, list) => {
                self.listed
                    .insert(*s, (list.iter().cloned().collect(), now));
            }
            Op::Gone(s) => {
                self.listed.remove(s);
            }
            Op::Heard(s) => {
                // A listed source, silent or not: a keepalive proves the
                // list it had is still its list. A gone one has no list.
                if let Some((_, heard)) = self.listed.get_mut(s) {
                    *heard = now;
                }
            }
            Op::Wait(_) => {}
        }
        let counting: Vec<&BTreeSet<String>> = self
            .listed
            .values()
            .filter(|(_, heard)| now.duration_since(*heard) < timeout)
            .map(|(list, _)| list)
            .collect();
        if counting.is_empty() {
            return None;
        }
        let union: Vec<String> = counting
            .into_iter()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.delivered.as_ref() == Some(&union) {
            return None;
        }
        self.delivered = Some(union.clone());
        Some(union)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_merge_delivers_the_union_of_the_counting_sources_only_on_change(
        ops in prop::collection::vec(op(), 0..80),
        timeout_ms in 1..3000u64,
    ) {
        let timeout = Duration::from_millis(timeout_ms);
        let t0 = Instant::now();
        let mut now = t0;
        let mut merge = Merge::new(timeout);
        let mut model = Model::default();
        let mut last: Option<Vec<String>> = None;
        let mut first_report_seen = false;

        for op in &ops {
            let got = match op {
                Op::Report(s, list) => merge.report(*s, list.clone(), now),
                Op::Gone(s) => merge.gone(*s, now),
                Op::Heard(s) => merge.heard(*s, now),
                Op::Wait(ms) => {
                    now += Duration::from_millis(*ms);
                    merge.tick(now)
                }
            }
            .map(|list| list.to_vec());
            let want = model.apply(op, now, timeout);
            prop_assert_eq!(&got, &want, "after {:?} at +{:?}", op, now - t0);

            // First list at once: the first report is delivered, even empty.
            if let Op::Report(..) = op {
                if !first_report_seen {
                    prop_assert!(got.is_some(), "the first report delivers at once");
                    first_report_seen = true;
                }
            }
            if let Some(list) = &got {
                prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
                prop_assert_ne!(last.as_ref(), Some(list), "the same list twice in a row");
                last = Some(list.clone());
            }
            prop_assert_eq!(merge.delivered(), last.as_deref());

            // The deadline is the earliest silence among counting sources.
            let want_deadline = model
                .listed
                .values()
                .map(|(_, heard)| *heard + timeout)
                .filter(|deadline| *deadline > now)
                .min();
            prop_assert_eq!(merge.next_deadline(), want_deadline);
            for s in 0..4u8 {
                let counts = model.listed.get(&s).is_some_and(|(_, heard)| now.duration_since(*heard) < timeout);
                prop_assert_eq!(merge.counts(&s), counts, "source {}", s);
            }
        }
    }
}

/// What happens among three watch servers and one subscriber that follows
/// all of them (one watcher state per server, one merge).
#[derive(Debug, Clone)]
enum Step {
    /// Server `0` publishes a new list.
    Change(usize, BTreeSet<String>),
    /// The watcher of server `0` gets a reply (lost when `1`).
    Exchange(usize, bool),
    /// The connection to server `0` closes.
    Disconnect(usize),
    /// The connection to server `0` is made again.
    Connect(usize),
    /// Server `0` restarts with a new epoch and list; its connection drops.
    Restart(usize, BTreeSet<String>),
}

const SERVERS: usize = 3;

fn server_list() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(prop::sample::select(&POOL[..]).prop_map(String::from), 0..5)
}

fn step() -> impl Strategy<Value = Step> {
    let server = 0..SERVERS;
    prop_oneof![
        3 => (server.clone(), server_list()).prop_map(|(s, l)| Step::Change(s, l)),
        6 => (server.clone(), any::<bool>()).prop_map(|(s, d)| Step::Exchange(s, d)),
        1 => server.clone().prop_map(Step::Disconnect),
        2 => server.clone().prop_map(Step::Connect),
        1 => (server, server_list()).prop_map(|(s, l)| Step::Restart(s, l)),
    ]
}

mod pipeline {
    use super::*;
    use nng_discovery::history::{History, HistoryLimits};
    use nng_discovery::watch_state::WatchState;
    use nng_discovery::watch_wire::{decode_reply, decode_request, encode_request};
    use std::num::NonZeroU64;

    /// One server as a subscriber sees it.
    pub struct Server {
        pub history: History,
        pub watcher: WatchState,
        pub connected: bool,
    }

    /// The glue a subscriber thread runs for one reply: the merge gets a
    /// report when the watcher delivers a list and a keepalive otherwise;
    /// a refused reply counts as neither (the next request asks for a
    /// snapshot).
    pub fn exchange(
        merge: &mut Merge<usize>,
        i: usize,
        server: &mut Server,
        dropped: bool,
        now: Instant,
    ) -> Result<Option<Vec<String>>, TestCaseError> {
        if !server.connected {
            return Ok(None);
        }
        let request = decode_request(&encode_request(server.watcher.request()));
        let mut bytes = Vec::new();
        if !server.history.answer(request).encode(&mut bytes) || dropped {
            return Ok(None);
        }
        let reply = decode_reply(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match server.watcher.apply(&reply) {
            Ok(Some(list)) => Ok(merge.report(i, list, now).map(|l| l.to_vec())),
            Ok(None) => Ok(merge.heard(i, now).map(|l| l.to_vec())),
            Err(e) => Err(TestCaseError::fail(format!("honest reply refused: {e}"))),
        }
    }

    /// The glue for a closed connection: the merge stops counting the
    /// server and the watcher forgets, so that the server's first list
    /// after reconnecting is reported (even if equal to the last one).
    pub fn disconnect(
        merge: &mut Merge<usize>,
        i: usize,
        server: &mut Server,
        now: Instant,
    ) -> Option<Vec<String>> {
        server.connected = false;
        server.watcher.forget();
        merge.gone(i, now).map(|l| l.to_vec())
    }

    pub fn new_server(epoch: u64, list: &BTreeSet<String>) -> Server {
        Server {
            history: History::new(
                NonZeroU64::new(epoch).unwrap(),
                list,
                HistoryLimits::new(3, usize::MAX),
            ),
            watcher: WatchState::new(),
            connected: true,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The whole pure pipeline of issues 14 and 17: three watch servers,
    /// their watcher states and one merge. What the subscriber delivers is
    /// always the union of what the connected servers last told it (the
    /// last list when none is connected), never twice in a row, and once
    /// everything is exchanged, the union of the connected servers' lists.
    #[test]
    fn a_subscriber_following_three_watch_servers_delivers_their_union(
        firsts in prop::collection::vec(server_list(), SERVERS),
        steps in prop::collection::vec(step(), 0..80),
    ) {
        use pipeline::*;
        let now = Instant::now();
        let mut merge = Merge::new(Duration::MAX);
        let mut epochs = 100u64;
        let mut servers: Vec<Server> = firsts
            .iter()
            .map(|list| {
                epochs += 1;
                new_server(epochs, list)
            })
            .collect();
        let mut last: Option<Vec<String>> = None;

        for step in &steps {
            let got = match step {
                Step::Change(i, list) => {
                    servers[*i].history.record(list);
                    None
                }
                Step::Exchange(i, dropped) => exchange(&mut merge, *i, &mut servers[*i], *dropped, now)?,
                Step::Disconnect(i) => disconnect(&mut merge, *i, &mut servers[*i], now),
                Step::Connect(i) => {
                    servers[*i].connected = true;
                    None
                }
                Step::Restart(i, list) => {
                    let got = disconnect(&mut merge, *i, &mut servers[*i], now);
                    epochs += 1;
                    servers[*i] = new_server(epochs, list);
                    got
                }
            };
            if let Some(list) = &got {
                prop_assert_ne!(last.as_ref(), Some(list), "the same list twice");
                last = Some(list.clone());
            }
            // What the connected watchers hold, united.
            let held: Vec<Vec<String>> = servers.iter().filter_map(|s| s.watcher.names()).collect();
            if !held.is_empty() {
                let union: Vec<String> = held.into_iter().flatten().collect::<BTreeSet<_>>().into_iter().collect();
                prop_assert_eq!(last.as_ref(), Some(&union), "after {:?}", step);
            }
            prop_assert_eq!(merge.delivered(), last.as_deref());
        }

        // Let every connected server answer until its watcher is current.
        for (i, server) in servers.iter_mut().enumerate() {
            for _ in 0..2 {
                if let Some(list) = exchange(&mut merge, i, server, false, now)? {
                    last = Some(list);
                }
            }
        }
        let connected: Vec<&Server> = servers.iter().filter(|s| s.connected).collect();
        if !connected.is_empty() {
            let union: Vec<String> = connected
                .iter()
                .flat_map(|s| s.history.to_list())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert_eq!(last, Some(union));
        }
    }
}
