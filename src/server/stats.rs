//! Counters a server keeps about its own work.

/// A snapshot of a [`Server`](crate::Server)'s counters, from
/// [`Server::stats`](crate::Server::stats).
///
/// Counters (`surveys_sent`, `rounds`, `rounds_not_counted`, `answers`, `announcements`, `refused_*`, `publishes`,
/// `bytes_published`, `watch_requests`, `watch_snapshots`, `watch_deltas`,
/// `watch_keepalives`, `watch_offers`, `watch_broadcasts`) count from the server's start; the others are
/// current values. The `watch*` fields stay 0 without a
/// [`watch_url`](crate::Options::watch_url).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Names currently listed.
    pub peers: usize,
    /// Open connections on the survey socket (clients).
    pub connections: usize,
    /// Open connections on the publish socket (subscribers).
    pub subscribers: usize,
    /// Surveys sent: heartbeat rounds plus the extra surveys sent for new
    /// connections.
    pub surveys_sent: u64,
    /// Heartbeat rounds completed (counted or not).
    pub rounds: u64,
    /// Heartbeat rounds that charged no miss to anyone because the server
    /// was behind: its thread woke late during the round or at its end
    /// (process stopped, or starved of CPU), or answers were still queued
    /// unread when it closed; rounds that a stall dropped are counted here
    /// too. A peer is only dropped for misses in rounds the server could
    /// have read its answer in time. See `docs/INTERNALS.md` ("A server short of CPU").
    pub rounds_not_counted: u64,
    /// Answers carrying the id of the last completed heartbeat round that
    /// arrived before it ended: with healthy peers, one per connection.
    pub answers_last_round: u64,
    /// Valid answers taken, in total.
    pub answers: u64,
    /// Answers refused because the name was invalid (not UTF-8, empty, too
    /// long, containing `|` or a control character).
    pub refused_invalid: u64,
    /// Answers refused because they carried no recent survey id.
    pub refused_stale: u64,
    /// Answers refused because the list already held `max_peers` names.
    pub refused_full: u64,
    /// Lists published (changes, new subscribers and republishes).
    pub publishes: u64,
    /// Bytes of list bodies published, counted once per publish (not per
    /// subscriber).
    pub bytes_published: u64,
    /// Open connections on the watch socket (watchers).
    pub watchers: usize,
    /// Watch requests held now, waiting for a change or their keepalive
    /// (at most one per watcher).
    pub watch_held: usize,
    /// Watch requests received, in total.
    pub watch_requests: u64,
    /// Snapshot replies sent to watchers.
    pub watch_snapshots: u64,
    /// Delta replies sent to watchers.
    pub watch_deltas: u64,
    /// Keepalive replies sent to watchers.
    pub watch_keepalives: u64,
    /// Offers of the broadcast URL sent to watchers that can follow it
    /// (0 without a [`watch_broadcast_url`](crate::Options::watch_broadcast_url)).
    pub watch_offers: u64,
    /// Open connections on the broadcast socket (followers).
    pub watch_followers: usize,
    /// Messages broadcast (deltas and keepalives), each sent once whatever
    /// the number of followers.
    pub watch_broadcasts: u64,
    /// Connections refused because their address is outside
    /// [`allow_from`](crate::Options::allow_from).
    pub refused_network: u64,
    /// Connections refused because
    /// [`max_connections`](crate::Options::max_connections) were open.
    pub refused_connections: u64,
    /// Answers refused by
    /// [`require_peer_host`](crate::Options::require_peer_host): the name's
    /// host is not the connection's address.
    pub refused_peer_host: u64,
    /// Announcements taken: answers a client sent unasked as soon as its
    /// connection was up (survey id [`ANNOUNCE_ID`](crate::wire::ANNOUNCE_ID)),
    /// naming it without a join survey. Each is also counted in `answers`
    /// or in a `refused_*` counter, like any answer.
    pub announcements: u64,
}

/// One line of `key=value` pairs, in field order, e.g.
/// `peers=3 connections=3 subscribers=1 surveys_sent=12 …`: what the daemon
/// logs once a minute and what benchmarks parse.
impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peers={} connections={} subscribers={} surveys_sent={} rounds={} \
             rounds_not_counted={} answers_last_round={} answers={} refused_invalid={} refused_stale={} \
             refused_full={} publishes={} bytes_published={} watchers={} watch_held={} \
             watch_requests={} watch_snapshots={} watch_deltas={} watch_keepalives={} \
             watch_offers={} watch_followers={} watch_broadcasts={} refused_network={} refused_connections={} refused_peer_host={} announcements={}",
            self.peers,
            self.connections,
            self.subscribers,
            self.surveys_sent,
            self.rounds,
            self.rounds_not_counted,
            self.answers_last_round,
            self.answers,
            self.refused_invalid,
            self.refused_stale,
            self.refused_full,
            self.publishes,
            self.bytes_published,
            self.watchers,
            self.watch_held,
            self.watch_requests,
            self.watch_snapshots,
            self.watch_deltas,
            self.watch_keepalives,
            self.watch_offers,
            self.watch_followers,
            self.watch_broadcasts,
            self.refused_network,
            self.refused_connections,
            self.refused_peer_host,
            self.announcements
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn displays_as_key_value_pairs_in_field_order() {
        let s = Stats {
            peers: 1,
            connections: 2,
            subscribers: 3,
            surveys_sent: 4,
            rounds: 5,
            rounds_not_counted: 26,
            answers_last_round: 6,
            answers: 7,
            refused_invalid: 8,
            refused_stale: 9,
            refused_full: 10,
            publishes: 11,
            bytes_published: 12,
            watchers: 13,
            watch_held: 14,
            watch_requests: 15,
            watch_snapshots: 16,
            watch_deltas: 17,
            watch_keepalives: 18,
            watch_offers: 22,
            watch_followers: 23,
            watch_broadcasts: 24,
            refused_network: 19,
            refused_connections: 20,
            refused_peer_host: 21,
            announcements: 25,
        };
        assert_eq!(
            s.to_string(),
            "peers=1 connections=2 subscribers=3 surveys_sent=4 rounds=5 \
             rounds_not_counted=26 answers_last_round=6 answers=7 refused_invalid=8 refused_stale=9 \
             refused_full=10 publishes=11 bytes_published=12 watchers=13 watch_held=14 \
             watch_requests=15 watch_snapshots=16 watch_deltas=17 watch_keepalives=18 \
             watch_offers=22 watch_followers=23 watch_broadcasts=24 refused_network=19 refused_connections=20 refused_peer_host=21 announcements=25"
        );
    }
}
