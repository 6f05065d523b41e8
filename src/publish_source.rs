//! The classic publish URL as a [`Source`]: one SUB socket, one dialer per
//! server.
//!
//! Every list a server publishes is a [`Report::List`] for that server (a
//! republish of the same list too: the republish is the heartbeat that
//! keeps a server counting, see [`Options::silence_timeout`]), and a closed
//! connection is [`Report::Gone`] at once. A message is attributed to its
//! server through its connection (`Message::pipe`) and that connection's
//! dialer: each dialer dials one server, and redials it on its own.
//!
//! Connection events come from NNG's pipe callback, which runs on NNG's
//! threads: it only hands the event to the subscriber's thread over a
//! channel and wakes it through a socketpair.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use nng::options::{protocol::pubsub::Subscribe, Options as _};
use nng::{Dialer, Pipe, PipeEvent, Protocol, Socket};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::receiver;
use crate::source::{Report, Source};
use crate::subscriber::MAX_LIST_BYTES;
use crate::transport::{self, Link};
use crate::wire;

/// A connection opened or closed, with the dialer that made it (looked up
/// in the callback, while the connection surely exists).
type Event = (Pipe, PipeEvent, Option<Dialer>);

/// Subscribes to the publish URLs of several servers; see the
/// [module](self).
#[derive(Debug)]
pub(crate) struct PublishSource {
    urls: Vec<String>,
    socket: Socket,
    /// `dialers[i]` dials `urls[i]`.
    dialers: Vec<Dialer>,
    link: Arc<Link>,
    recv_fd: RawFd,
    events: Receiver<Event>,
    /// Readable when events wait (one byte per event, or fewer when full).
    wake: UnixStream,
    /// Open connections and the server each reaches.
    open: HashMap<Pipe, usize>,
    /// Connections closed since the socket was last drained: their
    /// messages still queued are older than the closing and are dropped.
    closed: Vec<Pipe>,
}

impl PublishSource {
    /// Dials every URL of `urls` (checked: non-empty, no duplicates) with
    /// the reconnect timing of `options`.
    pub(crate) fn open(urls: Vec<String>, options: &Options) -> Result<PublishSource> {
        let socket = Socket::new(Protocol::Sub0).map_err(Error::nng("open a SUB socket"))?;
        transport::limit(&socket, MAX_LIST_BYTES)?;
        socket
            .set_opt::<Subscribe>(Vec::new())
            .map_err(Error::nng("subscribe"))?;
        // A malformed URL is refused before any connection is attempted.
        for url in &urls {
            transport::check_dial_url(&socket, url)?;
        }
        let (wake_tx, wake) = UnixStream::pair().map_err(Error::spawn)?;
        for end in [&wake_tx, &wake] {
            end.set_nonblocking(true).map_err(Error::spawn)?;
        }
        let (tx, events) = unbounded();
        let link = Link::watch_with(&socket, move |pipe, event| {
            if matches!(event, PipeEvent::AddPost | PipeEvent::RemovePost) {
                let _ = tx.send((pipe, event, pipe.dialer()));
                // A full buffer still wakes the thread: nothing to do.
                let _ = std::io::Write::write(&mut &wake_tx, &[1]);
            }
        })?;
        let mut dialers = Vec::with_capacity(urls.len());
        for url in &urls {
            match transport::dial(&socket, url, options) {
                Ok(dialer) => dialers.push(dialer),
                Err(e) => {
                    link.close(dialers);
                    socket.close();
                    return Err(e);
                }
            }
        }
        let recv_fd = receiver::recv_fd(&socket)?;
        Ok(PublishSource {
            urls,
            socket,
            dialers,
            link,
            recv_fd,
            events,
            wake,
            open: HashMap::new(),
            closed: Vec::new(),
        })
    }

    fn server_of_dialer(&self, dialer: Option<Dialer>) -> Option<usize> {
        let dialer = dialer?;
        self.dialers.iter().position(|d| *d == dialer)
    }

    /// The server a message came from: `None` for a connection closed
    /// since (its list is older than the closing) or one we cannot place.
    fn server_of_message(&mut self, msg: &mut nng::Message) -> Option<usize> {
        let pipe = msg.pipe()?;
        if self.closed.contains(&pipe) {
            return None;
        }
        if let Some(&server) = self.open.get(&pipe) {
            return Some(server);
        }
        // Its connection event has not been taken yet (NNG starts a
        // connection before it calls back).
        let server = self.server_of_dialer(pipe.dialer())?;
        self.open.insert(pipe, server);
        Some(server)
    }

    fn take_events(&mut self, report: &mut dyn FnMut(usize, Report)) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        while let Ok((pipe, event, dialer)) = self.events.try_recv() {
            match event {
                PipeEvent::AddPost => {
                    if let Some(server) = self.server_of_dialer(dialer) {
                        self.open.insert(pipe, server);
                        log::debug!("connected to {}", self.urls[server]);
                    }
                }
                PipeEvent::RemovePost => {
                    self.closed.push(pipe);
                    if let Some(server) = self.open.remove(&pipe) {
                        // A dialer has one connection at a time, but the
                        // old one's event may come after the new one's.
                        if !self.open.values().any(|&s| s == server) {
                            log::debug!("connection to {} closed", self.urls[server]);
                            report(server, Report::Gone);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl Source for PublishSource {
    fn urls(&self) -> &[String] {
        &self.urls
    }

    fn fds(&self) -> Vec<RawFd> {
        vec![self.recv_fd, self.wake.as_raw_fd()]
    }

    fn take(&mut self, report: &mut dyn FnMut(usize, Report)) {
        self.take_events(report);
        loop {
            let mut msg = match self.socket.try_recv() {
                Ok(msg) => msg,
                Err(nng::Error::TryAgain) | Err(nng::Error::Closed) => break,
                Err(e) => {
                    log::warn!("receiving lists: {e}");
                    std::thread::sleep(transport::ERROR_BACKOFF); // never spin
                    break;
                }
            };
            let Some(server) = self.server_of_message(&mut msg) else {
                continue;
            };
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
        // Drained: nothing older than the connections closed so far is
        // left in the socket's queue.
        self.closed.clear();
    }

    fn close(self: Box<Self>) {
        // Let a connection attempt in flight finish first (see Link).
        self.link.close(self.dialers.iter().copied());
        self.socket.close();
    }
}
