//! Counters a server keeps about its own work.

/// A snapshot of a [`Server`](crate::Server)'s counters, from
/// [`Server::stats`](crate::Server::stats).
///
/// Counters (`surveys_sent`, `answers`, `refused_*`, `publishes`,
/// `bytes_published`) count from the server's start; the others are current
/// values.
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
    /// Heartbeat rounds completed.
    pub rounds: u64,
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
}
