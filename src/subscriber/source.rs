//! The boundary between a subscriber and the servers it follows.
//!
//! A [`Subscriber`](crate::Subscriber) follows one or several servers
//! through one [`Source`]: the object that owns the sockets and says, per
//! server, "this server's list is now X", "this server is alive and its
//! list has not changed" or "this server is gone" ([`Report`]). It knows
//! nothing of the other servers. [`follow`] is the one loop that runs any
//! source on the subscriber's single thread: it waits in `poll(2)` on the
//! descriptors the source names, lets the source take what is ready, and
//! feeds each report into the pure [`Merge`], which owns deduplication,
//! the union, silence timeouts and "latest wins" towards the application's
//! [`Mailbox`].
//!
//! Two kinds of source exist: the classic publish URL
//! ([`PublishSource`](crate::subscriber::publish_source::PublishSource): one SUB
//! socket per server, each with its own queue and dialer), and the watch
//! protocol ([`WatchSources`](crate::subscriber::watch_sources::WatchSources): one REQ
//! socket per watch URL, each reply run through a
//! [`WatchState`](crate::watch::state::WatchState)), whose replies are
//! `List`/`Heard`, whose closed connections and silences are `Gone`, and
//! whose [`Source::deadline`] tells the loop when to check for silence.

use std::os::unix::io::RawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::error::{Error, Result};
use crate::nng::receiver::{self, StopSignal, Stopper};
use crate::subscriber::mailbox::Mailbox;
use crate::subscriber::merge::Merge;

/// What a source says about one of its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The server's list is now this (any order; duplicates are dropped).
    List(Vec<String>),
    /// The server is alive and its list has not changed (a keepalive).
    /// The classic publish source never says it (each republish is a
    /// `List`); the watch-protocol source does.
    Heard,
    /// The connection to the server closed: it has no list until it
    /// reports one again.
    Gone,
}

/// One kind of connection to a set of servers, polled from one thread.
///
/// Servers are numbered by their place in [`urls`](Source::urls).
pub(crate) trait Source: Send + 'static {
    /// The servers' URLs, as given; `Report`s name a server by its index
    /// here.
    fn urls(&self) -> &[String];

    /// The descriptors that become readable when the source has something
    /// to take. Asked for once, before the loop starts.
    fn fds(&self) -> Vec<RawFd>;

    /// Takes everything ready, without blocking, and reports it server by
    /// server in the order it happened.
    fn take(&mut self, report: &mut dyn FnMut(usize, Report));

    /// When [`take`](Source::take) must run even if no descriptor became
    /// readable (a request to resend); `None`: only when one is readable.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Closes the source's sockets. Called once, after its thread has
    /// returned it (NNG 1.4 must not close a socket that a thread may be
    /// receiving on, see `receiver`).
    fn close(self: Box<Self>);
}

/// A running [`follow`] loop: its stopper, the application's channel and
/// the thread, which returns the source when it stops.
pub(crate) struct Following {
    pub(crate) stopper: Stopper,
    pub(crate) changes: Receiver<Vec<String>>,
    pub(crate) thread: JoinHandle<Box<dyn Source>>,
}

/// Starts the thread that runs `source`, merging its servers with
/// `silence_timeout`.
pub(crate) fn start(source: Box<dyn Source>, silence_timeout: Duration) -> Result<Following> {
    let (mailbox, changes) = Mailbox::new();
    let (stopper, stop) = receiver::stopper()?;
    let merge = Merge::new(silence_timeout);
    let thread = std::thread::Builder::new()
        .name("nng-discovery-sub".into())
        .spawn(move || follow(source, merge, mailbox, stop))
        .map_err(Error::spawn)?;
    Ok(Following {
        stopper,
        changes,
        thread,
    })
}

/// The subscriber's loop: until `stop`, wait for `source`, feed what it
/// reports into `merge`, offer what the merge delivers. Returns the source
/// for its owner to close.
fn follow(
    mut source: Box<dyn Source>,
    mut merge: Merge<usize>,
    mut mailbox: Mailbox<Vec<String>>,
    stop: StopSignal,
) -> Box<dyn Source> {
    let fds = source.fds();
    let mut counting = vec![false; source.urls().len()];
    loop {
        source.take(&mut |server, report| {
            let now = Instant::now();
            let delivered = match report {
                Report::List(list) => merge.report(server, list, now),
                Report::Heard => merge.heard(server, now),
                Report::Gone => merge.gone(server, now),
            };
            if let Some(list) = delivered {
                mailbox.offer(list);
            }
        });
        if let Some(list) = merge.tick(Instant::now()) {
            mailbox.offer(list);
        }
        log_changes(source.urls(), &merge, &mut counting);
        let deadline = match (merge.next_deadline(), source.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if receiver::wait(&fds, &stop, deadline) {
            return source;
        }
    }
}

/// Logs each server that starts or stops counting.
fn log_changes(urls: &[String], merge: &Merge<usize>, counting: &mut [bool]) {
    for (server, was) in counting.iter_mut().enumerate() {
        let now = merge.counts(&server);
        if now != *was {
            let url = urls.get(server).map_or("?", String::as_str);
            if now {
                log::debug!("following {url}");
            } else {
                log::info!("{url} no longer counts (connection closed, or silent too long)");
            }
            *was = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::io::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A source of two servers fed by the test: what another kind of
    /// source (a watch-protocol one) looks like to the loop.
    struct Fake {
        urls: Vec<String>,
        reports: crossbeam_channel::Receiver<(usize, Report)>,
        wake: UnixStream,
        closed: Arc<AtomicBool>,
    }

    impl Source for Fake {
        fn urls(&self) -> &[String] {
            &self.urls
        }
        fn fds(&self) -> Vec<RawFd> {
            vec![self.wake.as_raw_fd()]
        }
        fn take(&mut self, report: &mut dyn FnMut(usize, Report)) {
            let mut buf = [0u8; 64];
            while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
            while let Ok((server, r)) = self.reports.try_recv() {
                report(server, r);
            }
        }
        fn close(self: Box<Self>) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    struct Feeder {
        tx: crossbeam_channel::Sender<(usize, Report)>,
        wake: UnixStream,
    }

    impl Feeder {
        fn send(&mut self, server: usize, report: Report) {
            self.tx.send((server, report)).unwrap();
            self.wake.write_all(&[1]).unwrap();
        }
    }

    fn fake(silence: Duration) -> (Following, Feeder, Arc<AtomicBool>) {
        let (tx, reports) = crossbeam_channel::unbounded();
        let (feeder_end, wake) = UnixStream::pair().unwrap();
        wake.set_nonblocking(true).unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let source = Fake {
            urls: vec!["one".into(), "two".into()],
            reports,
            wake,
            closed: Arc::clone(&closed),
        };
        let following = start(Box::new(source), silence).unwrap();
        let feeder = Feeder {
            tx,
            wake: feeder_end,
        };
        (following, feeder, closed)
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// Milliseconds here; 10 s is for a busy or emulated machine.
    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn the_loop_merges_what_any_source_reports_and_closes_it_after_stopping() {
        let (following, mut feeder, closed) = fake(Duration::from_secs(3600));
        let changes = following.changes.clone();
        feeder.send(0, Report::List(strings(&["x"])));
        assert_eq!(changes.recv_timeout(BOUND).unwrap(), ["x"]);
        feeder.send(1, Report::List(strings(&["y", "x"])));
        assert_eq!(changes.recv_timeout(BOUND).unwrap(), ["x", "y"]);
        // Server 1 goes: x stays (server 0 has it), y goes.
        feeder.send(1, Report::Gone);
        assert_eq!(changes.recv_timeout(BOUND).unwrap(), ["x"]);
        // A keepalive from a gone server brings nothing back; its next
        // list does.
        feeder.send(1, Report::Heard);
        feeder.send(1, Report::List(strings(&["z"])));
        assert_eq!(changes.recv_timeout(BOUND).unwrap(), ["x", "z"]);
        following.stopper.stop();
        let source = following.thread.join().unwrap();
        assert!(
            !closed.load(Ordering::SeqCst),
            "closed before its owner asked"
        );
        source.close();
        assert!(closed.load(Ordering::SeqCst));
    }

    #[test]
    fn a_server_that_falls_silent_stops_counting_while_another_keeps_alive() {
        let (following, mut feeder, _) = fake(Duration::from_millis(100));
        let changes = following.changes.clone();
        feeder.send(0, Report::List(strings(&["x"])));
        feeder.send(1, Report::List(strings(&["y"])));
        let deadline = Instant::now() + BOUND;
        // Server 0 keeps sending keepalives, server 1 says nothing: once
        // its timeout has passed, y is dropped.
        loop {
            feeder.send(0, Report::Heard);
            match changes.recv_timeout(Duration::from_millis(10)) {
                Ok(list) if list == ["x"] => break,
                Ok(_) | Err(_) => assert!(Instant::now() < deadline, "y never dropped"),
            }
        }
        following.stopper.stop();
        following.thread.join().unwrap().close();
    }
}
