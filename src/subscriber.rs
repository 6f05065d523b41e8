//! Receiving the server's lists.

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use nng::options::{protocol::pubsub::Subscribe, Options as _};
use nng::{Protocol, Socket};

use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::options::Options;
use crate::receiver::{self, Receiver as NngReceiver, Stopper};
use crate::transport;
use crate::wire::{self, MAX_NAME_LEN};

/// The largest published list a subscriber accepts: 16 MiB, room for more
/// than 16,000 names of the maximum length or 300,000 typical URLs. Larger
/// messages close the connection (which is then dialed again).
pub const MAX_LIST_BYTES: usize = 16 << 20;

// A list of the largest names must fit at least a few thousand names.
const _: () = assert!(MAX_LIST_BYTES / (MAX_NAME_LEN + 1) > 10_000);

/// Receives the list of live services from a discovery server.
///
/// A subscriber dials the server's publish URL in the background (the
/// server may start later, or restart) and delivers each new list on the
/// channel from [`changes`](Subscriber::changes): sorted, without duplicates,
/// and only when it differs from the last list delivered. The first list
/// arrives as soon as the connection is made, even if it is empty.
///
/// The channel is "latest wins": a reader that falls behind finds only the
/// newest list waiting, never a backlog. When the subscriber shuts down the
/// channel disconnects, so `for list in subscriber.changes()` ends.
///
/// Threads: one, plus NNG's shared pool.
///
/// ```no_run
/// # fn main() -> Result<(), nng_discovery::Error> {
/// let subscriber = nng_discovery::Subscriber::new("tcp://127.0.0.1:40008")?;
/// for peers in subscriber.changes() {
///     println!("peers now: {peers:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscriber {
    publish_url: String,
    socket: Socket,
    dialer: Option<nng::Dialer>,
    link: std::sync::Arc<transport::Link>,
    stopper: Stopper,
    changes: Receiver<Vec<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to the lists published at `publish_url`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a malformed URL; [`Error::Setup`] if NNG
    /// cannot open the socket or the thread cannot start.
    pub fn new(publish_url: &str) -> Result<Subscriber> {
        Subscriber::with_options(publish_url, &Options::default())
    }

    /// Like [`new`](Subscriber::new), with the reconnect timing of `options`
    /// ([`Options::reconnect_min`], [`Options::reconnect_max`]).
    ///
    /// # Errors
    /// As [`new`](Subscriber::new), and [`Error::InvalidOption`] for
    /// nonsense options.
    pub fn with_options(publish_url: &str, options: &Options) -> Result<Subscriber> {
        options.validate()?;
        let socket = Socket::new(Protocol::Sub0).map_err(Error::nng("open a SUB socket"))?;
        transport::limit(&socket, MAX_LIST_BYTES)?;
        socket
            .set_opt::<Subscribe>(Vec::new())
            .map_err(Error::nng("subscribe"))?;
        let link = transport::Link::watch(&socket, publish_url)?;
        let dialer = transport::dial(&socket, publish_url, options)?;

        let (mailbox, changes) = Mailbox::new();
        let url = publish_url.to_owned();
        let (stopper, lists) = receiver::receiver(&socket)?;
        let thread = std::thread::Builder::new()
            .name("nng-discovery-sub".into())
            .spawn(move || receive_lists(lists, mailbox, url))
            .map_err(Error::spawn)?;
        Ok(Subscriber {
            publish_url: publish_url.to_owned(),
            socket,
            dialer: Some(dialer),
            link,
            stopper,
            changes,
            thread: Some(thread),
        })
    }

    /// The channel on which new lists arrive.
    ///
    /// Every call returns a handle on the same channel: a list is taken by
    /// one reader only.
    pub fn changes(&self) -> Receiver<Vec<String>> {
        self.changes.clone()
    }

    /// The publish URL this subscriber dials.
    pub fn publish_url(&self) -> &str {
        &self.publish_url
    }

    /// Closes the connection and stops the thread; the channel disconnects.
    /// Dropping the subscriber does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Stop the thread first and close after (see receiver).
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("subscriber thread for {} panicked", self.publish_url);
            }
        }
        // Once (shutdown and then Drop both come here): let a connection
        // attempt in flight finish first (see Link), then close.
        if let Some(dialer) = self.dialer.take() {
            self.link.settle();
            dialer.close();
        }
        self.socket.close();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

fn receive_lists(mut lists: NngReceiver, mut mailbox: Mailbox<Vec<String>>, url: String) {
    let what = format!("receiving from {url}");
    while let Some(msg) = lists.next(&what) {
        match wire::decode_list(msg.as_slice()) {
            Ok(list) => {
                if mailbox.offer(list) {
                    log::debug!("new list from {url}");
                }
            }
            Err(e) => log::warn!(
                "ignoring a corrupt list ({} bytes) from {url}: {e}",
                msg.len()
            ),
        }
    }
}
