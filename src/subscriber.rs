//! Receiving the server's lists.

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::error::Result;
use crate::options::Options;
use crate::publish_source::PublishSource;
use crate::receiver::Stopper;
use crate::source::{self, Source};
use crate::urls::{self, Urls};
use crate::wire::MAX_NAME_LEN;

/// The largest published list a subscriber accepts: 16 MiB, room for more
/// than 16,000 names of the maximum length or 300,000 typical URLs. Larger
/// messages close the connection (which is then dialed again).
pub const MAX_LIST_BYTES: usize = 16 << 20;

// A list of the largest names must fit at least a few thousand names.
const _: () = assert!(MAX_LIST_BYTES / (MAX_NAME_LEN + 1) > 10_000);

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
/// newest list waiting, never a backlog. When the subscriber shuts down the
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
/// socket per server), plus NNG's shared pool.
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
pub struct Subscriber {
    publish_urls: Vec<String>,
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
        options.validate()?;
        let urls = urls::checked(&publish_urls)?;
        let source = PublishSource::open(urls.clone(), options)?;
        let following = source::start(Box::new(source), options.get_silence_timeout())?;
        Ok(Subscriber {
            publish_urls: urls,
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

    /// The publish URL this subscriber dials: the first one given.
    pub fn publish_url(&self) -> &str {
        &self.publish_urls[0]
    }

    /// Every publish URL this subscriber dials, in the order given.
    pub fn publish_urls(&self) -> &[String] {
        &self.publish_urls
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
                Err(_) => log::error!("subscriber thread for {:?} panicked", self.publish_urls),
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}
