//! Receive loops that stop without racing `nng_close`.
//!
//! NNG 1.4 cannot safely close a socket while another thread is entering a
//! receive on it: `nng_recv_aio` looks the socket up, lets go of it, then
//! queues the receive on the socket's message queue, and
//! `nni_msgq_aio_get` does not check whether that queue was closed in
//! between. Such a receive then waits forever, or, with a timeout, touches
//! the freed queue when the timeout fires (both seen in
//! `tests/respondent_stress.rs`). So a background thread here never blocks
//! inside NNG: it waits in `poll(2)` on the socket's receive descriptor
//! (`NNG_OPT_RECVFD`) and on a socketpair that [`Stopper::stop`] writes to,
//! and takes messages with non-blocking receives, which never stay queued.
//! Its owner closes the socket only after the thread has been joined.

use std::io::Write;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nng::options::{Options as _, RecvFd};
use nng::{Message, Socket};

use crate::error::{Error, Result};
use crate::nng::transport::ERROR_BACKOFF;

/// The owner's handle: tells the receiving thread to stop. Dropping it does
/// the same.
#[derive(Debug)]
pub(crate) struct Stopper(UnixStream);

impl Stopper {
    /// Wakes the receiving thread and makes it return `None`.
    pub(crate) fn stop(&self) {
        // A full buffer still means "readable" to the thread; any error
        // means the thread's end is gone. Either way, nothing to do.
        let _ = (&self.0).write(&[1]);
    }
}

/// The receiving thread's end of a [`Stopper`]: readable once a stop is
/// asked for (or the `Stopper` is gone).
#[derive(Debug)]
pub(crate) struct StopSignal(UnixStream);

/// A stopper and the signal it raises, for a thread that waits with
/// [`wait`] on descriptors of its own.
pub(crate) fn stopper() -> Result<(Stopper, StopSignal)> {
    let (stopper, wake) = UnixStream::pair().map_err(Error::spawn)?;
    Ok((Stopper(stopper), StopSignal(wake)))
}

/// `socket`'s receive descriptor: readable while a message waits.
pub(crate) fn recv_fd(socket: &Socket) -> Result<RawFd> {
    socket
        .get_opt::<RecvFd>()
        .map_err(Error::nng("get the socket's receive descriptor"))
}

/// Whether `fd` is readable now (poll(2) with a zero timeout): for NNG's
/// receive descriptor, whether messages wait in the socket's receive queue.
/// An error of poll itself reads as readable, the cautious answer for the
/// callers (who then take the queue for not empty).
pub(crate) fn readable(fd: RawFd) -> bool {
    let mut polled = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid, initialised pollfd that outlives the call.
        let n = unsafe { libc::poll(&mut polled, 1, 0) };
        if n >= 0 {
            return polled.revents != 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return true;
        }
    }
}

/// Blocks until one of `fds` is readable or `deadline` has come (false),
/// or a stop is asked for (true). `None` waits without a deadline.
pub(crate) fn wait(fds: &[RawFd], stop: &StopSignal, deadline: Option<Instant>) -> bool {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .chain(std::iter::once(&stop.0.as_raw_fd()))
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let timeout = match deadline {
            None => -1,
            Some(deadline) => {
                // Rounded up, so a wake-up never comes before the deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = (left.as_nanos() + 999_999) / 1_000_000;
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            }
        };
        // SAFETY: `polled` is a valid array of initialised pollfd structs
        // that outlives the call, and its length is passed.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // poll itself failed (it should not): stop rather than spin.
            log::error!("poll failed: {}", std::io::Error::last_os_error());
            return true;
        }
    }
    // Readable (stop asked), hung up or failed (the Stopper is gone).
    match polled.last() {
        Some(stop) => stop.revents != 0,
        None => true,
    }
}

/// Raises a [`WakeSignal`]: safe to call from an NNG pipe callback (one
/// non-blocking write to a socketpair, nothing else).
#[derive(Debug)]
pub(crate) struct Wake(UnixStream);

impl Wake {
    /// Makes the signal readable (it stays so until drained).
    pub(crate) fn raise(&self) {
        // Non-blocking: a full buffer already means "readable".
        let _ = (&self.0).write(&[1]);
    }
}

/// The waiting thread's end of a [`Wake`]: see [`Receiver::next_or_woken`].
#[derive(Debug)]
pub(crate) struct WakeSignal(UnixStream);

impl WakeSignal {
    /// Reads every pending wake-up; whether there was any.
    fn drain(&self) -> bool {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut woken = false;
        while let Ok(n) = (&self.0).read(&mut buf) {
            if n == 0 {
                break;
            }
            woken = true;
        }
        woken
    }
}

/// A wake-up for a receiving thread, raised from elsewhere (a pipe
/// callback) without blocking.
pub(crate) fn wake() -> Result<(Wake, WakeSignal)> {
    let (tx, rx) = UnixStream::pair().map_err(Error::spawn)?;
    tx.set_nonblocking(true).map_err(Error::spawn)?;
    rx.set_nonblocking(true).map_err(Error::spawn)?;
    Ok((Wake(tx), WakeSignal(rx)))
}

/// What [`Receiver::next_or_woken`] returns.
#[derive(Debug)]
pub(crate) enum Next {
    /// A message arrived.
    Message(Message),
    /// The [`WakeSignal`] was raised.
    Woken,
}

/// The receiving thread's handle.
#[derive(Debug)]
pub(crate) struct Receiver {
    socket: Socket,
    recv_fd: RawFd,
    stop: StopSignal,
    busy: Arc<AtomicBool>,
}

/// Prepares a receive loop on `socket`.
pub(crate) fn receiver(socket: &Socket) -> Result<(Stopper, Receiver)> {
    let recv_fd = recv_fd(socket)?;
    let (stopper, stop) = stopper()?;
    Ok((
        stopper,
        Receiver {
            socket: socket.clone(),
            recv_fd,
            stop,
            busy: Arc::new(AtomicBool::new(true)),
        },
    ))
}

impl Receiver {
    /// The socket this receives on (for answering).
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// A flag that is true whenever this receiver may hold a message taken
    /// from NNG that its caller has not handed on yet: from the moment
    /// [`next`](Receiver::next) is called, or wakes, until it finds NNG's
    /// queue empty. Together with the receive descriptor being readable
    /// ([`readable`]), it tells another thread whether messages are still
    /// on their way through this receiver: check the flag, then the
    /// descriptor, then where the caller hands messages, then the flag and
    /// that place again.
    pub(crate) fn busy(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.busy)
    }

    /// The socket's receive descriptor (readable while messages wait).
    pub(crate) fn recv_fd(&self) -> RawFd {
        self.recv_fd
    }

    /// Like [`next`](Receiver::next), but also returns when `wake` is
    /// raised (a raised signal is taken before any message waiting).
    pub(crate) fn next_or_woken(&mut self, wake: &WakeSignal, what: &str) -> Option<Next> {
        loop {
            if wake.drain() {
                return Some(Next::Woken);
            }
            match self.socket.try_recv() {
                Ok(msg) => return Some(Next::Message(msg)),
                Err(nng::Error::TryAgain) => {}
                Err(nng::Error::Closed) => return None,
                Err(e) => {
                    log::warn!("{what}: {e}");
                    std::thread::sleep(ERROR_BACKOFF); // never spin
                }
            }
            if wait(&[self.recv_fd, wake.0.as_raw_fd()], &self.stop, None) {
                return None;
            }
        }
    }

    /// The next message, or `None` once stopped (or the socket is closed).
    /// Unexpected errors are logged with `what` and retried.
    pub(crate) fn next(&mut self, what: &str) -> Option<Message> {
        self.busy.store(true, Ordering::SeqCst);
        loop {
            match self.socket.try_recv() {
                Ok(msg) => return Some(msg),
                Err(nng::Error::TryAgain) => self.busy.store(false, Ordering::SeqCst),
                Err(nng::Error::Closed) => return None,
                Err(e) => {
                    log::warn!("{what}: {e}");
                    std::thread::sleep(ERROR_BACKOFF); // never spin
                }
            }
            if wait(&[self.recv_fd], &self.stop, None) {
                return None;
            }
            self.busy.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (Socket, Socket, String) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let url = format!(
            "inproc://receiver-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let a = Socket::new(nng::Protocol::Pair0).unwrap();
        a.listen(&url).unwrap();
        let b = Socket::new(nng::Protocol::Pair0).unwrap();
        b.dial(&url).unwrap();
        (a, b, url)
    }

    #[test]
    fn delivers_messages_then_stops_on_request() {
        let (a, b, _) = pair();
        let (stopper, mut rx) = receiver(&a).unwrap();
        let (got_tx, got_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::spawn(move || {
            while let Some(m) = rx.next("test") {
                let _ = got_tx.send(m.as_slice().to_vec());
            }
        });
        for i in 0..3u8 {
            b.send([i]).unwrap();
        }
        // All three arrive (within microseconds; 10 s is for a busy or
        // emulated machine), then the stop ends the thread.
        let got: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                got_rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("message {i} not received: {e}"))
            })
            .collect();
        assert_eq!(got, vec![vec![0], vec![1], vec![2]]);
        stopper.stop();
        thread.join().unwrap();
        assert!(got_rx.try_recv().is_err(), "a message from nowhere");
    }

    #[test]
    fn a_wake_interrupts_the_wait_and_messages_still_come() {
        let (a, b, _) = pair();
        let (stopper, mut rx) = receiver(&a).unwrap();
        let (waker, signal) = wake().unwrap();
        let (got_tx, got_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::spawn(move || {
            while let Some(next) = rx.next_or_woken(&signal, "test") {
                let _ = got_tx.send(match next {
                    Next::Message(m) => Some(m.as_slice().to_vec()),
                    Next::Woken => None,
                });
            }
        });
        let patience = Duration::from_secs(10);
        waker.raise();
        assert_eq!(got_rx.recv_timeout(patience).unwrap(), None);
        b.send([5]).unwrap();
        assert_eq!(got_rx.recv_timeout(patience).unwrap(), Some(vec![5]));
        waker.raise();
        assert_eq!(got_rx.recv_timeout(patience).unwrap(), None);
        stopper.stop();
        thread.join().unwrap();
        assert!(got_rx.try_recv().is_err(), "an event from nowhere");
    }

    #[test]
    fn dropping_the_stopper_stops_the_thread() {
        let (a, _b, _) = pair();
        let (stopper, mut rx) = receiver(&a).unwrap();
        let thread = std::thread::spawn(move || rx.next("test").is_none());
        drop(stopper);
        assert!(thread.join().unwrap());
    }
}
