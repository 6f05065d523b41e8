//! Receiving the server's lists.

pub(crate) mod broadcast_source;
pub(crate) mod mailbox;
pub mod merge;
pub(crate) mod publish_source;
pub(crate) mod source;
pub(crate) mod watch_source;
pub(crate) mod watch_sources;

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::error::Result;
use crate::nng::receiver::Stopper;
use crate::options::{FollowSettings, Options};
use crate::subscriber::publish_source::PublishSource;
use crate::urls::{self, Urls};
use source::Source;
use watch_sources::WatchSources;

/// Receives the list of live services from one discovery server, or the
/// union of several redundant ones.
///
/// A subscriber dials each server's publish URL in the background (a
/// server may start later, or restart) and delivers each new list on the
/// channel from [`changes`](Subscriber::changes): sorted, without duplicates,
/// and only when it differs from the last list delivered. The first list
/// arrives as soon as a connection is made, even if it is empty.
///
/// The channel is "latest wins": a reader that falls behind finds only the
/// newest list waiting, never a backlog. "Differs" is measured against the
/// last list the reader took: if, while it was not reading, the list changed
/// and came back to exactly that one, nothing waits for it (the lists in
/// between are superseded, and its view is current). When the subscriber shuts down the
/// channel disconnects, so `for list in subscriber.changes()` ends.
///
/// # Several servers
///
/// Given several publish URLs (any [`Urls`] form), it keeps the latest
/// list of each server and delivers their **union**, only when the union
/// changes. A server counts from its first list until its connection
/// closes (at once) or it stays silent for
/// [`Options::silence_timeout`] (a hung server whose connection stays
/// open; by default 3 × [`Options::republish_interval`], the servers'
/// heartbeat); it counts again with its next list. When no server counts,
/// the last list stays until one does. So a server that crashes, restarts
/// or hangs changes nothing the application sees while another is up.
///
/// Threads: one whatever the number of servers (it waits on one SUB
/// socket per server, or for a watch URL one REQ socket plus, when the
/// server offers a broadcast, one SUB socket), plus NNG's shared pool.
///
/// # The watch protocol
///
/// [`Subscriber::watch`] follows servers' watch URLs
/// ([`Options::watch_url`]) instead of their publish URLs: each server then
/// sends this subscriber only what changed since the list it holds (a
/// delta), one subscriber at a time, instead of the whole list to every
/// subscriber at every change; it scales to thousands of peers that all
/// follow the list. What [`changes`](Subscriber::changes) delivers is the
/// same either way.
///
/// A server started with [`Options::watch_broadcast_url`] as well offers
/// its broadcast to such a subscriber, which then takes each change from
/// one message the server sends once to all its followers, and asks over
/// the watch URL only for the first list and for a catch-up when it finds
/// it missed something ([`Options::watch_follow`] turns this off). The
/// protocol: `docs/PROTOCOL.md` ("Watch broadcast").
///
/// ```no_run
/// # fn main() -> Result<(), nng_discovery::Error> {
/// let subscriber = nng_discovery::Subscriber::new("tcp://127.0.0.1:40008")?;
/// for peers in subscriber.changes() {
///     println!("peers now: {peers:?}");
/// }
/// let redundant = nng_discovery::Subscriber::new(["tcp://10.0.0.5:40008", "tcp://10.0.0.6:40008"])?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a Subscriber shuts it down at once"]
pub struct Subscriber {
    /// The publish URLs, or the watch URLs when `watching`.
    urls: Vec<String>,
    watching: bool,
    stopper: Stopper,
    changes: Receiver<Vec<String>>,
    thread: Option<JoinHandle<Box<dyn Source>>>,
}

impl Subscriber {
    /// Subscribes to the lists published at `publish_urls`: one URL, or
    /// several for redundant servers (see [`Urls`]).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`](crate::Error::InvalidUrl) for a malformed URL;
    /// [`Error::InvalidUrlList`](crate::Error::InvalidUrlList) for an empty list or a URL given twice;
    /// [`Error::Setup`](crate::Error::Setup) if NNG cannot open the socket or the thread cannot
    /// start.
    pub fn new(publish_urls: impl Urls) -> Result<Subscriber> {
        Subscriber::with_options(publish_urls, &Options::default())
    }

    /// Like [`new`](Subscriber::new), with the reconnect timing of `options`
    /// ([`Options::reconnect_min`], [`Options::reconnect_max`]) and its
    /// [`Options::silence_timeout`].
    ///
    /// # Errors
    /// As [`new`](Subscriber::new), and [`Error::InvalidOption`](crate::Error::InvalidOption) for
    /// nonsense options.
    pub fn with_options(publish_urls: impl Urls, options: &Options) -> Result<Subscriber> {
        let settings = options.follow_settings()?;
        Subscriber::open_publish(urls::checked(&publish_urls)?, &settings)
    }

    /// [`with_options`](Subscriber::with_options) with the URLs and settings
    /// already checked.
    pub(crate) fn open_publish(urls: Vec<String>, settings: &FollowSettings) -> Result<Subscriber> {
        let source = PublishSource::open(urls.clone(), settings)?;
        Subscriber::start(urls, false, Box::new(source), settings.silence_timeout)
    }

    /// Follows the servers' watch URLs ([`Options::watch_url`] on the
    /// server, `server --watch` in the daemon): one URL, or several for
    /// redundant servers (see [`Urls`]), with the default [`Options`]. See
    /// [`watch_with_options`](Subscriber::watch_with_options).
    ///
    /// ```
    /// use std::time::Duration;
    /// use nng_discovery::{Client, Options, Server, Subscriber};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = Options::default().watch_url("tcp://127.0.0.1:0");
    /// let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)?;
    /// let watch_url = server.watch_url().expect("a watch URL was given");
    /// let watcher = Subscriber::watch(watch_url)?;
    /// let client = Client::new(server.survey_url(), "http://10.0.0.1:8080")?;
    ///
    /// // About a second here (the server's first list waits for its first
    /// // survey to end); the bound is generous for a busy or slow machine.
    /// let changes = watcher.changes();
    /// let timeout = Duration::from_secs(30);
    /// while changes.recv_timeout(timeout)? != ["http://10.0.0.1:8080"] {}
    ///
    /// client.shutdown(); // it leaves at once, and the watcher hears of it
    /// while !changes.recv_timeout(timeout)?.is_empty() {}
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`new`](Subscriber::new).
    pub fn watch(watch_urls: impl Urls) -> Result<Subscriber> {
        Subscriber::watch_with_options(watch_urls, &Options::default())
    }

    /// Follows the servers' watch URLs, with the reconnect timing of
    /// `options` ([`Options::reconnect_min`], [`Options::reconnect_max`])
    /// and its [`Options::watch_keepalive`]: a server holds a current
    /// request for at most its keepalive before it answers, so a server
    /// that sends nothing for **2 × `watch_keepalive`** is taken as gone or
    /// hung: it stops counting, and its connection is dialed again. That
    /// is this subscriber's silence timeout ([`Options::silence_timeout`]
    /// is not used here): make it with the servers' options, or at least
    /// with their keepalive.
    ///
    /// Each server has its own REQ socket; one thread serves them all. A
    /// server's first reply is the whole list (a snapshot), later replies
    /// what changed; a reply that does not apply to what the subscriber
    /// holds makes it ask for a snapshot, and is never delivered. A closed
    /// connection stops counting at once, as with [`new`](Subscriber::new).
    ///
    /// # Errors
    /// As [`with_options`](Subscriber::with_options).
    pub fn watch_with_options(watch_urls: impl Urls, options: &Options) -> Result<Subscriber> {
        let settings = options.follow_settings()?;
        Subscriber::open_watch(urls::checked(&watch_urls)?, &settings)
    }

    /// [`watch_with_options`](Subscriber::watch_with_options) with the
    /// URLs and settings already checked.
    pub(crate) fn open_watch(urls: Vec<String>, settings: &FollowSettings) -> Result<Subscriber> {
        let source = WatchSources::open(urls.clone(), settings)?;
        let silence = watch_sources::silence_timeout(settings);
        Subscriber::start(urls, true, Box::new(source), silence)
    }

    fn start(
        urls: Vec<String>,
        watching: bool,
        source: Box<dyn Source>,
        silence_timeout: std::time::Duration,
    ) -> Result<Subscriber> {
        // On an error the source is dropped, which closes its sockets.
        let following = source::start(source, silence_timeout)?;
        Ok(Subscriber {
            urls,
            watching,
            stopper: following.stopper,
            changes: following.changes,
            thread: Some(following.thread),
        })
    }

    /// The channel on which new lists arrive.
    ///
    /// Every call returns a handle on the same channel: a list is taken by
    /// one reader only.
    pub fn changes(&self) -> Receiver<Vec<String>> {
        self.changes.clone()
    }

    /// The URL this subscriber dials: the first one given (a watch URL
    /// for a subscriber made with [`watch`](Subscriber::watch), see
    /// [`is_watching`](Subscriber::is_watching)).
    pub fn publish_url(&self) -> &str {
        &self.urls[0]
    }

    /// Every URL this subscriber dials, in the order given (watch URLs for
    /// a subscriber made with [`watch`](Subscriber::watch)).
    pub fn publish_urls(&self) -> &[String] {
        &self.urls
    }

    /// Whether this subscriber follows watch URLs (made with
    /// [`watch`](Subscriber::watch) or
    /// [`watch_with_options`](Subscriber::watch_with_options)) rather than
    /// publish URLs.
    pub fn is_watching(&self) -> bool {
        self.watching
    }

    /// Closes the connections and stops the thread; the channel
    /// disconnects. Dropping the subscriber does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Stop the thread first and close after (see receiver). Once:
        // shutdown and then Drop both come here.
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(source) => source.close(),
                // Its socket was dropped (closed) as the thread unwound.
                Err(_) => log::error!("subscriber thread for {:?} panicked", self.urls),
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

// Compile-time checks of the promises in the docs: a subscriber can be
// shared between threads and moved to another.
#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Subscriber>();
}
