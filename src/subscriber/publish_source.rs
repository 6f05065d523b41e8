//! The classic publish URL as a [`Source`]: one SUB socket per server,
//! all read by the subscriber's one thread.
//!
//! Every list a server publishes is a [`Report::List`] for that server (a
//! republish of the same list too: the republish is the heartbeat that
//! keeps a server counting, see [`Options::silence_timeout`](crate::Options::silence_timeout)), and a closed
//! connection is [`Report::Gone`] at once. Each server has its own socket
//! (and so its own dialer, redialing on its own, and its own receive
//! queue): a SUB queue that fills up drops its oldest message, which is
//! harmless for one server (the newer list wins) but would not be if one
//! queue were shared, where a burst from one server could push out another
//! server's latest list.
//!
//! Connection events come from NNG's pipe callbacks, which run on NNG's
//! threads: they only hand the event to the subscriber's thread over a
//! channel and wake it through a socketpair.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use nng::options::{protocol::pubsub::Subscribe, Options as _};
use nng::{Dialer, Pipe, PipeEvent, Protocol, Socket};

use crate::error::{Error, Result};
use crate::nng::receiver;
use crate::nng::transport::{self, Link};
use crate::options::FollowSettings;
use crate::subscriber::source::{Report, Source};
use crate::wire;
use crate::wire::MAX_LIST_BYTES;

/// A connection to server `.0` opened or closed.
type Event = (usize, Pipe, PipeEvent);

/// One server's socket.
#[derive(Debug)]
struct Feed {
    socket: Socket,
    dialer: Option<Dialer>,
    link: Arc<Link>,
    recv_fd: RawFd,
    /// Its open connections (one, or briefly two while an old one's
    /// closing is still to be taken).
    open: HashSet<Pipe>,
}

/// Subscribes to the publish URLs of several servers; see the
/// [module](self).
#[derive(Debug)]
pub(crate) struct PublishSource {
    urls: Vec<String>,
    /// `feeds[i]` follows `urls[i]`.
    feeds: Vec<Feed>,
    events: Receiver<Event>,
    /// Readable when events wait (one byte per event, or fewer when full).
    wake: UnixStream,
    /// Connections closed since the sockets were last drained: their
    /// messages still queued are older than the closing and are dropped.
    closed: Vec<Pipe>,
}

impl PublishSource {
    /// Dials every URL of `urls` (checked: non-empty, no duplicates) with
    /// the reconnect timing of `options`.
    pub(crate) fn open(urls: Vec<String>, options: &FollowSettings) -> Result<PublishSource> {
        let (wake_tx, wake) = UnixStream::pair().map_err(Error::spawn)?;
        for end in [&wake_tx, &wake] {
            end.set_nonblocking(true).map_err(Error::spawn)?;
        }
        let wake_tx = Arc::new(wake_tx);
        let (tx, events) = unbounded();
        let mut source = PublishSource {
            urls: Vec::with_capacity(urls.len()),
            feeds: Vec::with_capacity(urls.len()),
            events,
            wake,
            closed: Vec::new(),
        };
        // Every socket first, so that a malformed URL is refused before
        // any connection is attempted; then every dialer. On an error,
        // dropping `source` closes what was made.
        for (server, url) in urls.iter().enumerate() {
            let feed = Feed::new(server, url, options, &tx, &wake_tx)?;
            source.feeds.push(feed);
        }
        for (feed, url) in source.feeds.iter_mut().zip(&urls) {
            feed.dialer = Some(transport::dial(&feed.socket, url, &options.dial)?);
        }
        source.urls = urls;
        Ok(source)
    }

    fn take_events(&mut self, report: &mut dyn FnMut(usize, Report)) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        while let Ok((server, pipe, event)) = self.events.try_recv() {
            let Some(feed) = self.feeds.get_mut(server) else {
                continue;
            };
            match event {
                PipeEvent::AddPost => {
                    feed.open.insert(pipe);
                    log::debug!("connected to {}", self.urls[server]);
                }
                PipeEvent::RemovePost => {
                    self.closed.push(pipe);
                    if feed.open.remove(&pipe) && feed.open.is_empty() {
                        log::debug!("connection to {} closed", self.urls[server]);
                        report(server, Report::Gone);
                    }
                }
                _ => {}
            }
        }
    }

    fn close_all(&mut self) {
        for feed in self.feeds.drain(..) {
            // Let a connection attempt in flight finish first (see Link).
            feed.link.close(feed.dialer);
            feed.socket.close();
        }
    }
}

impl Feed {
    /// Server `server`'s socket, its URL checked, not dialing yet.
    fn new(
        server: usize,
        url: &str,
        options: &FollowSettings,
        events: &Sender<Event>,
        wake: &Arc<UnixStream>,
    ) -> Result<Feed> {
        let socket = Socket::new(Protocol::Sub0).map_err(Error::nng("open a SUB socket"))?;
        let feed = Feed::watch(server, url, socket.clone(), events, wake);
        if feed.is_err() {
            socket.close();
        }
        let feed = feed?;
        if let Err(e) = transport::check_dial_url(&feed.socket, url, &options.dial) {
            feed.socket.close();
            return Err(e);
        }
        Ok(feed)
    }

    fn watch(
        server: usize,
        url: &str,
        socket: Socket,
        events: &Sender<Event>,
        wake: &Arc<UnixStream>,
    ) -> Result<Feed> {
        transport::limit(&socket, MAX_LIST_BYTES)?;
        socket
            .set_opt::<Subscribe>(Vec::new())
            .map_err(Error::nng("subscribe"))?;
        let (tx, wake) = (events.clone(), Arc::clone(wake));
        let link = Link::watch_with(&socket, &[url.to_owned()], move |pipe, event| {
            if matches!(event, PipeEvent::AddPost | PipeEvent::RemovePost) {
                let _ = tx.send((server, pipe, event));
                // A full buffer still wakes the thread: nothing to do.
                let _ = std::io::Write::write(&mut &*wake, &[1]);
            }
        })?;
        let recv_fd = receiver::recv_fd(&socket)?;
        Ok(Feed {
            socket,
            dialer: None,
            link,
            recv_fd,
            open: HashSet::new(),
        })
    }
}

impl Drop for PublishSource {
    fn drop(&mut self) {
        // Only reached with feeds left when `open` fails half-way, or when
        // the thread panicked: `close` empties them.
        self.close_all();
    }
}

impl Source for PublishSource {
    fn urls(&self) -> &[String] {
        &self.urls
    }

    fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.feeds.iter().map(|f| f.recv_fd).collect();
        fds.push(self.wake.as_raw_fd());
        fds
    }

    fn take(&mut self, report: &mut dyn FnMut(usize, Report)) {
        self.take_events(report);
        for (server, feed) in self.feeds.iter().enumerate() {
            loop {
                let mut msg = match feed.socket.try_recv() {
                    Ok(msg) => msg,
                    Err(nng::Error::TryAgain) | Err(nng::Error::Closed) => break,
                    Err(e) => {
                        log::warn!("receiving lists from {}: {e}", self.urls[server]);
                        std::thread::sleep(transport::ERROR_BACKOFF); // never spin
                        break;
                    }
                };
                if msg.pipe().is_some_and(|p| self.closed.contains(&p)) {
                    continue; // older than its connection's closing
                }
                let url = &self.urls[server];
                match wire::decode_list(msg.as_slice()) {
                    Ok(list) => {
                        log::trace!("list of {} names from {url}", list.len());
                        report(server, Report::List(list));
                    }
                    Err(e) => log::warn!(
                        "ignoring a corrupt list ({} bytes) from {url}: {e}",
                        msg.len()
                    ),
                }
            }
        }
        // Drained: nothing older than the connections closed so far is
        // left in the sockets' queues.
        self.closed.clear();
    }

    fn close(mut self: Box<Self>) {
        self.close_all();
    }
}
