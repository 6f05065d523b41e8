//! Options for servers, clients and subscribers, and the settings each role reads from them (validated once).

use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::nng::transport::DialSettings;
use crate::watch::history::HistoryLimits;

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
/// | [`watch_url`](Options::watch_url) | none | server: also serve the watch protocol there |
/// | [`watch_keepalive`](Options::watch_keepalive) | 10 s | server: how long a current watch request is held before a keepalive |
/// | [`watch_history`](Options::watch_history) | 1,024 changes, 1 MiB | server: past changes kept for deltas |
/// | [`watch_broadcast_url`](Options::watch_broadcast_url) | none | server: also broadcast each change once there (PUB), offered to watchers that can follow it |
/// | [`watch_follow`](Options::watch_follow) | `true` | watchers: follow a server's broadcast when it offers one |
/// | [`allow_from`](Options::allow_from) | every address | server: networks (CIDR) whose TCP connections are accepted |
/// | [`max_connections`](Options::max_connections) | file limit − 128 | server: most connections open at once, all URLs together |
/// | [`require_peer_host`](Options::require_peer_host) | `false` | server: over TCP, a name's host must be the connection's IP |
/// | [`ipc_permissions`](Options::ipc_permissions) | umask | server: file mode of its `ipc://` sockets |
/// | [`tls`](Options::tls) | none | all: mutual TLS for `tls+tcp://` URLs (cargo feature `tls`) |
/// | [`silence_timeout`](Options::silence_timeout) | 3 × `republish_interval` | subscribers of several servers: a server not heard from for this long stops counting |
/// | [`first_publish_delay`](Options::first_publish_delay) | 2 × `reconnect_max` + `survey_time` (3 s) | a freshly started server publishes nothing before this |
/// | [`announce_grace`](Options::announce_grace) | 5 ms | server: how long a new connection may take to announce itself before it is surveyed |
///
/// The first seven, `first_publish_delay` and `announce_grace` are the server's; the reconnect pair is read by
/// [`Client::with_options`](crate::Client::with_options) and
/// [`Subscriber::with_options`](crate::Subscriber::with_options) (the server
/// only listens: it reads `reconnect_max` only for the default
/// `first_publish_delay`), and `available` by
/// [`Client::with_options`](crate::Client::with_options); `watch_url`,
/// `watch_history`, `watch_broadcast_url`, `allow_from`, `max_connections`,
/// `require_peer_host` and `ipc_permissions` are the server's again;
/// `watch_keepalive` is read by both (watchers take twice it as silence);
/// `watch_follow` by watchers; `silence_timeout` is read by subscribers
/// (and clients with a subscription); `tls` by everyone. After
/// a server restart, clients are back within about `reconnect_max` of the
/// new server starting, so a server made with the clients' options holds
/// its first list until they can be.
///
/// With the defaults, a peer that shuts down or whose process dies leaves the
/// list within milliseconds (its connection closes); a peer that hangs with
/// its connection open is dropped within
/// `miss_threshold × poll_interval + survey_time` = 11 s. A new peer appears
/// within milliseconds, whatever the poll interval: a [`Client`](crate::Client)
/// announces itself as soon as it connects and costs no survey; a peer that
/// does not announce is surveyed 5 ms after connecting, and when thousands
/// of those connect at once they share surveys, and each is asked within
/// 300 ms of connecting (see "How membership works" in `docs/INTERNALS.md`).
///
/// ```
/// use std::time::Duration;
/// use nng_discovery::Options;
///
/// let options = Options::default()
///     .poll_interval(Duration::from_secs(2))
///     .survey_time(Duration::from_millis(500))
///     .miss_threshold(3);
/// assert_eq!(options.server_settings()?.poll_interval, Duration::from_secs(2));
/// # Ok::<(), nng_discovery::Error>(())
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
    watch_url: Option<String>,
    watch_keepalive: Duration,
    watch_history: HistoryLimits,
    watch_broadcast_url: Option<String>,
    watch_follow: bool,
    allow_from: Vec<String>,
    ipc_permissions: Option<u32>,
    max_connections: Option<usize>,
    require_peer_host: bool,
    tls: Option<Box<crate::Tls>>,
    silence_timeout: Option<Duration>,
    /// `None`: derived from `reconnect_max` and `survey_time`.
    first_publish_delay: Option<Duration>,
    announce_grace: Duration,
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
            watch_url: None,
            watch_keepalive: Duration::from_secs(10),
            watch_history: HistoryLimits::default(),
            watch_broadcast_url: None,
            watch_follow: true,
            allow_from: Vec::new(),
            ipc_permissions: None,
            max_connections: None,
            require_peer_host: false,
            tls: None,
            silence_timeout: None,
            first_publish_delay: None,
            announce_grace: Duration::from_millis(5),
        }
    }
}

impl Options {
    /// How long each heartbeat survey waits for answers. Must be non-zero and
    /// shorter than the poll interval.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn survey_time(mut self, d: Duration) -> Self {
        self.survey_time = d;
        self
    }

    /// Time from the start of one heartbeat survey to the start of the next.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// How many consecutive heartbeat surveys a connected peer may leave
    /// unanswered before it is dropped (at least 1; 1 is the Go original's
    /// behaviour). It rejoins as soon as it answers again.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn miss_threshold(mut self, n: u32) -> Self {
        self.miss_threshold = n;
        self
    }

    /// How often the list is published again when nothing changes, so a
    /// list lost in transit heals and subscribers see the server is alive.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn republish_interval(mut self, d: Duration) -> Self {
        self.republish_interval = d;
        self
    }

    /// The least time between two publishes. Changes within it are
    /// coalesced into one publish; a lone change is published at once.
    /// Zero publishes every change separately.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn publish_gap(mut self, d: Duration) -> Self {
        self.publish_gap = d;
        self
    }

    /// The most names the server will list; answers with further new names
    /// are refused with a warning.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn max_peers(mut self, n: usize) -> Self {
        self.max_peers = n;
        self
    }

    /// Whether the server reacts to connection events (the default): a new
    /// connection is surveyed unless it announces itself within
    /// [`announce_grace`](Options::announce_grace), a closed one leaves at
    /// once, answers (announcements included) are published as they
    /// arrive and a new subscriber is sent the list.
    /// Off, the server only learns of changes at the end of each heartbeat
    /// survey, like the Go original; useful as a reference in benchmarks.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn event_driven(mut self, on: bool) -> Self {
        self.event_driven = on;
        self
    }

    /// How long a client or subscriber first waits before redialing a server
    /// it cannot reach or has lost; each failure doubles the wait, up to
    /// [`reconnect_max`](Options::reconnect_max).
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn reconnect_min(mut self, d: Duration) -> Self {
        self.reconnect_min = d;
        self
    }

    /// The longest a client or subscriber waits between two redials.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn reconnect_max(mut self, d: Duration) -> Self {
        self.reconnect_max = d;
        self
    }

    /// Whether a client made with these options starts available (the
    /// default) or unavailable: not listed until
    /// [`Client::set_available(true)`](crate::Client::set_available), for
    /// a service still warming up. Servers and subscribers ignore it.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn available(mut self, on: bool) -> Self {
        self.available = on;
        self
    }

    /// Makes the server also listen on `url` for watchers (the watch
    /// protocol: REP v0 in raw mode; see `docs/PROTOCOL.md`).
    /// Each watcher is sent only what changed since the revision it holds,
    /// which scales far better than the publish URL when many peers
    /// follow the list. Port 0 picks a free port: read it back with
    /// [`Server::watch_url`](crate::Server::watch_url).
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn watch_url(mut self, url: impl Into<String>) -> Self {
        self.watch_url = Some(url.into());
        self
    }

    /// How long the server holds a watch request that is current before
    /// answering it with a keepalive (non-zero; default 10 s). Keep it well
    /// below NNG's REQ resend time (60 s). Watchers made with the same
    /// options take twice this much silence to mean the server is gone.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn watch_keepalive(mut self, d: Duration) -> Self {
        self.watch_keepalive = d;
        self
    }

    /// How many past changes (and bytes of names in them) the watch server
    /// keeps to answer a watcher that is behind with a delta; a watcher
    /// further behind gets a snapshot. See [`HistoryLimits`].
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn watch_history(mut self, limits: HistoryLimits) -> Self {
        self.watch_history = limits;
        self
    }

    /// Makes the server also listen on `url` with a PUB v0 socket and
    /// broadcast each change of the list there **once**, whatever the
    /// number of followers: a delta from the revision before to the new
    /// one, and one keepalive per [`watch_keepalive`](Options::watch_keepalive)
    /// (the protocol: `docs/PROTOCOL.md` ("Watch broadcast")). Needs a
    /// [`watch_url`](Options::watch_url): watchers that can follow a
    /// broadcast learn this URL there (an offer) and fetch snapshots and
    /// catch-ups there; other watchers are served as before. Port 0 picks
    /// a free port: read it back with
    /// [`Server::watch_broadcast_url`](crate::Server::watch_broadcast_url).
    /// Offered as bound: a wildcard host (`0.0.0.0`, `[::]`) is replaced
    /// by followers with the host of the watch URL they dialed.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn watch_broadcast_url(mut self, url: impl Into<String>) -> Self {
        self.watch_broadcast_url = Some(url.into());
        self
    }

    /// Whether watchers ([`Subscriber::watch_with_options`](crate::Subscriber::watch_with_options),
    /// a client built with [`ClientBuilder::watch`](crate::ClientBuilder::watch))
    /// follow a server's broadcast when it offers one (default `true`):
    /// they then fetch only snapshots and catch-ups over the watch URL and
    /// take each change from the broadcast. `false` watches over REQ/REP
    /// only, as watchers did before broadcasts existed.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn watch_follow(mut self, on: bool) -> Self {
        self.watch_follow = on;
        self
    }

    /// The watch URL set, if any.
    #[deprecated(since = "0.2.0", note = "read options.server_settings()?.watch_url")]
    pub fn get_watch_url(&self) -> Option<&str> {
        self.watch_url.as_deref()
    }

    /// The watch keepalive interval set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.watch_keepalive"
    )]
    pub fn get_watch_keepalive(&self) -> Duration {
        self.watch_keepalive
    }

    /// The watch history limits set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.watch_history"
    )]
    pub fn get_watch_history(&self) -> HistoryLimits {
        self.watch_history
    }

    /// Accept TCP connections to the server's URLs only from these networks
    /// (CIDRs such as `"10.0.0.0/8"`, `"fd00::/8"`, `"127.0.0.1/32"`; a bare
    /// address is one host); connections from other addresses are closed
    /// before they join (NNG's pipe add-pre event), logged at `warn` and
    /// counted in [`Stats::refused_network`](crate::Stats::refused_network).
    /// Calling it again adds networks. Empty (the default): every address.
    /// An IPv4 peer reaching an IPv6 listener (`::ffff:a.b.c.d`) matches
    /// IPv4 networks. `ipc://` and `inproc://` connections have no IP
    /// address and are always accepted. An invalid CIDR makes
    /// [`Server::new`](crate::Server::new) fail with
    /// [`Error::InvalidOption`] naming it.
    ///
    /// ```
    /// use nng_discovery::Options;
    /// let o = Options::default().allow_from(["10.0.0.0/8", "fd00::/8"]);
    /// assert_eq!(o.server_settings()?.allow_from, ["10.0.0.0/8", "fd00::/8"]);
    /// # Ok::<(), nng_discovery::Error>(())
    /// ```
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn allow_from<I, S>(mut self, nets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allow_from
            .extend(nets.into_iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// The file mode of the server's `ipc://` socket files (e.g. `0o660`:
    /// only the owner and its group may connect), set on the listener
    /// before it starts. Unset (the default): NNG's, which follows the
    /// process's umask. Ignored for other transports. At most `0o777`.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn ipc_permissions(mut self, mode: u32) -> Self {
        self.ipc_permissions = Some(mode);
        self
    }

    /// The most connections the server holds open at once, its survey and
    /// publish URLs together. Further connections are closed as they arrive
    /// (before they join), logged at `warn` and counted in
    /// [`Stats::refused_connections`](crate::Stats::refused_connections);
    /// the server keeps serving the ones it has and accepts again once
    /// below the bound. At least 1. Default: see
    /// [`default_max_connections`].
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Over TCP, list a name only if it is `scheme://HOST[:PORT][/…]` or
    /// `HOST:PORT` and HOST is the IP address the connection comes from
    /// (an IPv4 literal, or an IPv6 literal in brackets); other answers are
    /// refused, logged at `warn` with the peer's address and counted in
    /// [`Stats::refused_peer_host`](crate::Stats::refused_peer_host). Host
    /// names are refused (they cannot be checked without DNS). Not applied
    /// to `ipc://` and `inproc://` connections. Off by default.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn require_peer_host(mut self, on: bool) -> Self {
        self.require_peer_host = on;
        self
    }

    /// Mutual TLS for `tls+tcp://` URLs (cargo feature `tls`). A server
    /// presents the certificate and requires every client and subscriber
    /// to present one signed by the CA; a client or subscriber presents
    /// its own and verifies the server's against the CA and the URL's host
    /// (or [`Tls::server_name`](crate::Tls::server_name)). A connection
    /// without a valid certificate is closed in the TLS handshake: it never
    /// lists a name nor receives a list. `tls+tcp://` URLs need this
    /// option, and this option needs `tls+tcp://` URLs: anything else is an
    /// [`Error::Tls`] naming the URL.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(Box::new(tls));
        self
    }

    /// The TLS settings, if any.
    #[deprecated(
        since = "0.2.0",
        note = "read options.client_settings()?.dial.tls, or server_settings()?.tls"
    )]
    pub fn get_tls(&self) -> Option<&crate::Tls> {
        self.tls.as_deref()
    }

    /// The networks set with [`allow_from`](Options::allow_from), as given.
    #[deprecated(since = "0.2.0", note = "read options.server_settings()?.allow_from")]
    pub fn get_allow_from(&self) -> &[String] {
        &self.allow_from
    }

    /// The IPC socket mode set, if any.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.ipc_permissions"
    )]
    pub fn get_ipc_permissions(&self) -> Option<u32> {
        self.ipc_permissions
    }

    /// The connection bound: the one set, or [`default_max_connections`].
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.max_connections"
    )]
    pub fn get_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(default_max_connections)
    }

    /// Whether names must carry their connection's address.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.require_peer_host"
    )]
    pub fn get_require_peer_host(&self) -> bool {
        self.require_peer_host
    }

    /// How long a subscriber (or a client's subscription) keeps counting a
    /// server it hears nothing from while the connection stays open (a hung
    /// server process): after that, the server's list no longer counts in
    /// the union of several servers, until it publishes again. A closed
    /// connection stops counting at once, whatever this is.
    ///
    /// Servers republish their list every
    /// [`republish_interval`](Options::republish_interval), which is their
    /// heartbeat; so by default this is 3 × the `republish_interval` of
    /// these same options (90 s with the defaults): a subscriber made with
    /// the servers' options follows them, and a server is dropped only
    /// after three republishes missed. Set it explicitly if the servers
    /// republish at another interval than these options say, and keep it
    /// above their republish interval. With one server it changes nothing
    /// that is delivered (when no server counts, the last list stays).
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn silence_timeout(mut self, d: Duration) -> Self {
        self.silence_timeout = Some(d);
        self
    }

    /// The silence timeout: as set, or 3 × the republish interval.
    #[deprecated(
        since = "0.2.0",
        note = "read options.follow_settings()?.silence_timeout"
    )]
    pub fn get_silence_timeout(&self) -> Duration {
        self.silence_timeout
            .unwrap_or_else(|| self.republish_interval.saturating_mul(3))
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
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn first_publish_delay(mut self, d: Duration) -> Self {
        self.first_publish_delay = Some(d);
        self
    }

    /// The first publish delay: the one set, or `2 × reconnect_max +
    /// survey_time`.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.first_publish_delay"
    )]
    pub fn get_first_publish_delay(&self) -> Duration {
        self.first_publish_delay.unwrap_or(
            self.reconnect_max
                .saturating_mul(2)
                .saturating_add(self.survey_time),
        )
    }

    /// How long the server gives a new connection to announce itself
    /// (a [`Client`](crate::Client) sends its name unasked as soon as its
    /// connection is up: see `docs/PROTOCOL.md` ("Join announcement")) before it surveys it
    /// (5 ms by default). A client that announces is listed as soon as its
    /// announcement arrives and costs no survey; a peer that does not (the
    /// Go original, nngcat, pynng) is surveyed once this has passed, or
    /// sooner if a survey goes out anyway, or later if thousands connect at
    /// once and the surveys' budget holds it back (up to 300–450 ms). While
    /// announcements arrive late (a server or clients short of CPU), the
    /// server waits up to twice the latest recent delay instead, at most
    /// 50 ms, and back to this grace within seconds of their arriving on
    /// time again: a join survey is dearest on a loaded server. An
    /// announcement crosses the network
    /// once after the server has seen the connection, so on links slower
    /// than loopback set it above their round-trip time, or announcing
    /// clients are surveyed all the same (listed just as fast, at the cost
    /// of a survey of every connection). Zero surveys every new connection.
    #[must_use = "a setter returns the changed Options; use it"]
    pub fn announce_grace(mut self, grace: Duration) -> Self {
        self.announce_grace = grace;
        self
    }

    /// Whether a client starts available.
    #[deprecated(since = "0.2.0", note = "read options.client_settings()?.available")]
    pub fn get_available(&self) -> bool {
        self.available
    }

    /// The first reconnect wait set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.client_settings()?.dial.reconnect_min"
    )]
    pub fn get_reconnect_min(&self) -> Duration {
        self.reconnect_min
    }

    /// The longest reconnect wait set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.client_settings()?.dial.reconnect_max"
    )]
    pub fn get_reconnect_max(&self) -> Duration {
        self.reconnect_max
    }

    /// The survey time set.
    #[deprecated(since = "0.2.0", note = "read options.server_settings()?.survey_time")]
    pub fn get_survey_time(&self) -> Duration {
        self.survey_time
    }

    /// The poll interval set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.poll_interval"
    )]
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The miss threshold set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.miss_threshold"
    )]
    pub fn get_miss_threshold(&self) -> u32 {
        self.miss_threshold
    }

    /// The republish interval set.
    #[deprecated(
        since = "0.2.0",
        note = "read options.server_settings()?.republish_interval"
    )]
    pub fn get_republish_interval(&self) -> Duration {
        self.republish_interval
    }

    /// The publish gap set.
    #[deprecated(since = "0.2.0", note = "read options.server_settings()?.publish_gap")]
    pub fn get_publish_gap(&self) -> Duration {
        self.publish_gap
    }

    /// The peer limit set.
    #[deprecated(since = "0.2.0", note = "read options.server_settings()?.max_peers")]
    pub fn get_max_peers(&self) -> usize {
        self.max_peers
    }

    /// Whether event-driven membership is on.
    #[deprecated(since = "0.2.0", note = "read options.server_settings()?.event_driven")]
    pub fn get_event_driven(&self) -> bool {
        self.event_driven
    }

    /// Checks that the values make sense together, for every role: the
    /// checks of [`server_settings`](Options::server_settings),
    /// [`client_settings`](Options::client_settings) and
    /// [`follow_settings`](Options::follow_settings). Each constructor
    /// checks the settings of its role once.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first option that makes no
    /// sense.
    pub fn validate(&self) -> Result<()> {
        self.validate_server()?;
        self.follow_settings()?;
        Ok(())
    }

    fn validate_server(&self) -> Result<()> {
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
        if self.watch_keepalive.is_zero() {
            return bad("watch_keepalive", "must be greater than zero".into());
        }
        if self.watch_broadcast_url.is_some() && self.watch_url.is_none() {
            return bad(
                "watch_broadcast_url",
                "needs a watch_url: followers learn the broadcast there".into(),
            );
        }
        if self.max_connections == Some(0) {
            return bad("max_connections", "must be at least 1".into());
        }
        let first_publish_delay = self.first_publish_delay.unwrap_or(
            self.reconnect_max
                .saturating_mul(2)
                .saturating_add(self.survey_time),
        );
        if first_publish_delay > MAX_ANNOUNCE_GRACE {
            return bad(
                "first_publish_delay",
                format!(
                    "{first_publish_delay:?} (2 x reconnect_max + survey_time unless set) is longer than a day"
                ),
            );
        }
        if self.announce_grace > MAX_ANNOUNCE_GRACE {
            return bad(
                "announce_grace",
                format!(
                    "{:?} is longer than a day ({MAX_ANNOUNCE_GRACE:?}): for peers that never announce, use a short grace",
                    self.announce_grace
                ),
            );
        }
        if let Some(mode) = self.ipc_permissions {
            if mode > 0o777 {
                return bad(
                    "ipc_permissions",
                    format!("{mode:#o} is not a file mode: at most 0o777"),
                );
            }
        }
        crate::cidr::parse_networks(&self.allow_from)?;
        Ok(())
    }
}

/// What a [`Server`](crate::Server) reads of its [`Options`], validated:
/// made by [`Options::server_settings`]. The fields are the options of
/// the same names, with defaults resolved (`first_publish_delay`,
/// `max_connections`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSettings {
    /// See [`Options::survey_time`].
    pub survey_time: Duration,
    /// See [`Options::poll_interval`].
    pub poll_interval: Duration,
    /// See [`Options::miss_threshold`].
    pub miss_threshold: u32,
    /// See [`Options::republish_interval`].
    pub republish_interval: Duration,
    /// See [`Options::publish_gap`].
    pub publish_gap: Duration,
    /// See [`Options::max_peers`].
    pub max_peers: usize,
    /// See [`Options::event_driven`].
    pub event_driven: bool,
    /// See [`Options::first_publish_delay`].
    pub first_publish_delay: Duration,
    /// See [`Options::announce_grace`].
    pub announce_grace: Duration,
    /// See [`Options::watch_url`].
    pub watch_url: Option<String>,
    /// See [`Options::watch_broadcast_url`].
    pub watch_broadcast_url: Option<String>,
    /// See [`Options::watch_keepalive`].
    pub watch_keepalive: Duration,
    /// See [`Options::watch_history`].
    pub watch_history: HistoryLimits,
    /// See [`Options::allow_from`].
    pub allow_from: Vec<String>,
    /// See [`Options::max_connections`].
    pub max_connections: usize,
    /// See [`Options::require_peer_host`].
    pub require_peer_host: bool,
    /// See [`Options::ipc_permissions`].
    pub ipc_permissions: Option<u32>,
    /// See [`Options::tls`].
    pub tls: Option<crate::Tls>,
}

/// What a [`Client`](crate::Client) reads of its [`Options`] for its
/// survey connections, validated: made by [`Options::client_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSettings {
    /// How it dials.
    pub dial: DialSettings,
    /// See [`Options::available`].
    pub available: bool,
}

/// What a [`Subscriber`](crate::Subscriber) (or a client's subscription
/// or watch) reads of its [`Options`], validated: made by
/// [`Options::follow_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FollowSettings {
    /// How it dials.
    pub dial: DialSettings,
    /// See [`Options::silence_timeout`] (publish URLs).
    pub silence_timeout: Duration,
    /// See [`Options::watch_keepalive`] (watch URLs: 2 × this much silence
    /// means a server is gone).
    pub watch_keepalive: Duration,
    /// See [`Options::watch_follow`].
    pub watch_follow: bool,
}

impl Options {
    /// The server's settings, validated: every option a server reads, and
    /// nothing else.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nng_discovery::Options;
    ///
    /// let settings = Options::default().poll_interval(Duration::from_secs(2)).server_settings()?;
    /// assert_eq!(settings.poll_interval, Duration::from_secs(2));
    /// assert_eq!(settings.first_publish_delay, Duration::from_secs(3));
    /// # Ok::<(), nng_discovery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first option that makes no
    /// sense, as [`Server::new`](crate::Server::new) would.
    pub fn server_settings(&self) -> Result<ServerSettings> {
        self.validate_server()?;
        Ok(ServerSettings {
            survey_time: self.survey_time,
            poll_interval: self.poll_interval,
            miss_threshold: self.miss_threshold,
            republish_interval: self.republish_interval,
            publish_gap: self.publish_gap,
            max_peers: self.max_peers,
            event_driven: self.event_driven,
            first_publish_delay: self.first_publish_delay.unwrap_or(
                self.reconnect_max
                    .saturating_mul(2)
                    .saturating_add(self.survey_time),
            ),
            announce_grace: self.announce_grace,
            watch_url: self.watch_url.clone(),
            watch_broadcast_url: self.watch_broadcast_url.clone(),
            watch_keepalive: self.watch_keepalive,
            watch_history: self.watch_history,
            allow_from: self.allow_from.clone(),
            max_connections: self.max_connections.unwrap_or_else(default_max_connections),
            require_peer_host: self.require_peer_host,
            ipc_permissions: self.ipc_permissions,
            tls: self.tls.as_deref().cloned(),
        })
    }

    /// A client's settings for its survey connections, validated.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first option that makes no
    /// sense.
    pub fn client_settings(&self) -> Result<ClientSettings> {
        Ok(ClientSettings {
            dial: self.dial_settings()?,
            available: self.available,
        })
    }

    /// A subscriber's settings (also those of a client's subscription or
    /// watch), validated.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first option that makes no
    /// sense.
    pub fn follow_settings(&self) -> Result<FollowSettings> {
        let silence_timeout = self
            .silence_timeout
            .unwrap_or_else(|| self.republish_interval.saturating_mul(3));
        if silence_timeout.is_zero() {
            return Err(Error::InvalidOption {
                option: "silence_timeout",
                reason: "must be greater than zero".into(),
            });
        }
        if self.watch_keepalive.is_zero() {
            return Err(Error::InvalidOption {
                option: "watch_keepalive",
                reason: "must be greater than zero".into(),
            });
        }
        Ok(FollowSettings {
            dial: self.dial_settings()?,
            silence_timeout,
            watch_keepalive: self.watch_keepalive,
            watch_follow: self.watch_follow,
        })
    }

    fn dial_settings(&self) -> Result<DialSettings> {
        if self.reconnect_min.is_zero() {
            return Err(Error::InvalidOption {
                option: "reconnect_min",
                reason: "must be greater than zero".into(),
            });
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(Error::InvalidOption {
                option: "reconnect_max",
                reason: format!(
                    "{:?} must not be shorter than reconnect_min ({:?})",
                    self.reconnect_max, self.reconnect_min
                ),
            });
        }
        Ok(DialSettings {
            reconnect_min: self.reconnect_min,
            reconnect_max: self.reconnect_max,
            tls: self.tls.as_deref().cloned(),
        })
    }
}

/// The longest [`Options::announce_grace`] and
/// [`Options::first_publish_delay`] accepted.
const MAX_ANNOUNCE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Headroom [`default_max_connections`] leaves below the file limit for
/// the process's other files (its own, NNG's, the library user's).
const FD_HEADROOM: u64 = 128;

/// The default of [`Options::max_connections`]: the process's soft limit
/// on open files (`RLIMIT_NOFILE`, read when called) minus 128, at least 16
/// and at most 1,000,000 (also when there is no limit). Each TCP connection
/// costs the server one file descriptor, so a flood of connections is
/// refused before the process runs out of them. With the common soft limit
/// of 1,024 that is 896; raise the limit (`ulimit -n`, systemd's
/// `LimitNOFILE=`) for more.
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur as u64
    } else {
        1024
    };
    soft.saturating_sub(FD_HEADROOM).clamp(16, 1_000_000) as usize
}

#[cfg(test)]
// The deprecated getters are public API until 2.0: still tested.
#[allow(deprecated)]
mod tests {
    use super::*;

    fn refused(o: Options) -> (&'static str, String) {
        match o.validate() {
            Err(Error::InvalidOption { option, reason }) => (option, reason),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }

    #[test]
    fn default_connection_bound_is_below_the_file_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
        let soft = lim.rlim_cur as u64;
        let n = default_max_connections() as u64;
        assert!(n >= 16);
        if soft > 16 + FD_HEADROOM {
            assert!(n < soft, "{n} vs {soft}");
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
            refused(Options::default().watch_keepalive(ms(0))).0,
            "watch_keepalive"
        );
        assert_eq!(
            refused(Options::default().watch_broadcast_url("tcp://127.0.0.1:0")).0,
            "watch_broadcast_url"
        );
        assert!(Options::default()
            .watch_url("tcp://127.0.0.1:0")
            .watch_broadcast_url("tcp://127.0.0.1:0")
            .validate()
            .is_ok());
        assert!(Options::default().follow_settings().unwrap().watch_follow);
        assert!(
            !Options::default()
                .watch_follow(false)
                .follow_settings()
                .unwrap()
                .watch_follow
        );
        assert_eq!(
            Options::default()
                .server_settings()
                .unwrap()
                .watch_broadcast_url,
            None
        );
        assert_eq!(
            refused(Options::default().max_connections(0)).0,
            "max_connections"
        );
        let (opt, why) = refused(Options::default().ipc_permissions(0o1777));
        assert_eq!(opt, "ipc_permissions");
        assert!(why.contains("0o1777"), "{why}");
        let (opt, why) = refused(Options::default().allow_from(["10.0.0.0/8", "bogus/8"]));
        assert_eq!(opt, "allow_from");
        assert!(why.contains("\"bogus/8\""), "{why}");
        assert_eq!(
            refused(Options::default().silence_timeout(ms(0))).0,
            "silence_timeout"
        );
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
            .available(false)
            .watch_url("tcp://127.0.0.1:0")
            .watch_keepalive(Duration::from_millis(300))
            .watch_history(HistoryLimits {
                max_changes: 3,
                max_bytes: 100,
            });
        o.validate().unwrap();
        assert_eq!(o.get_watch_url(), Some("tcp://127.0.0.1:0"));
        assert_eq!(o.get_watch_keepalive(), Duration::from_millis(300));
        assert_eq!(o.get_watch_history().max_changes, 3);
        assert_eq!(Options::default().get_watch_url(), None);
        assert_eq!(
            Options::default().get_watch_keepalive(),
            Duration::from_secs(10)
        );
        let admission = Options::default()
            .allow_from(["10.0.0.0/8"])
            .allow_from(vec![String::from("::1")])
            .ipc_permissions(0o660)
            .max_connections(9)
            .require_peer_host(true);
        admission.validate().unwrap();
        assert_eq!(admission.get_allow_from(), ["10.0.0.0/8", "::1"]);
        assert_eq!(admission.get_ipc_permissions(), Some(0o660));
        assert_eq!(admission.get_max_connections(), 9);
        assert!(admission.get_require_peer_host());
        let d = Options::default();
        assert!(d.get_allow_from().is_empty() && d.get_ipc_permissions().is_none());
        assert!(!d.get_require_peer_host());
        assert_eq!(d.get_max_connections(), default_max_connections());
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
    fn announce_grace_defaults_to_5_ms_and_takes_any_value() {
        assert_eq!(
            Options::default().server_settings().unwrap().announce_grace,
            Duration::from_millis(5)
        );
        for grace in [Duration::ZERO, Duration::from_secs(3600)] {
            let o = Options::default().announce_grace(grace);
            o.validate().unwrap();
            assert_eq!(o.server_settings().unwrap().announce_grace, grace);
        }
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

    #[test]
    fn the_silence_timeout_follows_the_republish_interval_unless_set() {
        let o = Options::default();
        assert_eq!(o.get_silence_timeout(), Duration::from_secs(90));
        let o = o.republish_interval(Duration::from_millis(200));
        assert_eq!(o.get_silence_timeout(), Duration::from_millis(600));
        let o = o.silence_timeout(Duration::from_secs(5));
        assert_eq!(o.get_silence_timeout(), Duration::from_secs(5));
        // Set before the republish interval: still the value set.
        let o = Options::default()
            .silence_timeout(Duration::from_secs(7))
            .republish_interval(Duration::from_secs(1));
        assert_eq!(o.get_silence_timeout(), Duration::from_secs(7));
    }

    #[test]
    fn each_role_reads_its_settings_with_defaults_resolved() {
        let o = Options::default()
            .survey_time(Duration::from_millis(10))
            .poll_interval(Duration::from_millis(20))
            .reconnect_min(Duration::from_millis(5))
            .reconnect_max(Duration::from_millis(50))
            .republish_interval(Duration::from_millis(200))
            .available(false)
            .watch_keepalive(Duration::from_millis(300));
        let server = o.server_settings().unwrap();
        assert_eq!(server.poll_interval, o.get_poll_interval());
        assert_eq!(server.first_publish_delay, Duration::from_millis(110));
        assert_eq!(server.max_connections, default_max_connections());
        let client = o.client_settings().unwrap();
        assert!(!client.available);
        assert_eq!(client.dial.reconnect_max, Duration::from_millis(50));
        let follow = o.follow_settings().unwrap();
        assert_eq!(follow.silence_timeout, Duration::from_millis(600));
        assert_eq!(follow.watch_keepalive, Duration::from_millis(300));
        assert_eq!(follow.dial, client.dial);
    }

    #[test]
    fn huge_durations_are_refused_or_saturate_never_panic() {
        let e = Options::default()
            .announce_grace(Duration::MAX)
            .server_settings()
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidOption {
                    option: "announce_grace",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(Options::default()
            .announce_grace(Duration::from_secs(3600))
            .server_settings()
            .is_ok());
        let e = Options::default()
            .reconnect_max(Duration::MAX)
            .server_settings()
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidOption {
                    option: "first_publish_delay",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn each_role_refuses_only_what_it_reads() {
        // A server does not dial: a nonsense reconnect pair is not its
        // concern, but it is a client's and a subscriber's.
        let o = Options::default().reconnect_min(Duration::ZERO);
        assert!(o.server_settings().is_ok());
        for e in [
            o.client_settings().unwrap_err(),
            o.follow_settings().unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    Error::InvalidOption {
                        option: "reconnect_min",
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        // A client does not survey.
        let o = Options::default().miss_threshold(0);
        assert!(o.client_settings().is_ok() && o.follow_settings().is_ok());
        let e = o.server_settings().unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidOption {
                    option: "miss_threshold",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(o.validate().is_err());
    }
}
