//! SIGINT and SIGTERM without signal handlers: `main` blocks both before any
//! thread starts, so every thread (NNG's too) inherits the mask and no
//! signal is ever delivered asynchronously; they are taken synchronously
//! with `sigwait`, either by `main` itself or by one small thread that
//! forwards them on a channel.
//!
//! A child inherits the signal mask, and `std::process::Command` does not
//! reset it (measured with Rust 1.95: a child had SIGINT and SIGTERM
//! blocked, so the SIGTERM meant to stop it stayed pending), so `--exec`
//! commands are started with [`clear_mask_in_child`] as their `pre_exec`.

use std::io;
use std::mem::MaybeUninit;

use crossbeam_channel::{bounded, Receiver};

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(libc::c_int);

impl Signal {
    /// The signal's conventional name.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
}

fn stop_set() -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only writes to it.
    unsafe {
        if libc::sigemptyset(set.as_mut_ptr()) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGINT) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(set.assume_init())
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread. Called first thing in
/// `main`, before any other thread exists, so that all threads inherit it.
pub fn block() -> io::Result<()> {
    let set = stop_set()?;
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Returns a function for `CommandExt::pre_exec` that empties the signal
/// mask of the forked child before it executes the new program.
pub fn clear_mask_in_child() -> io::Result<impl FnMut() -> io::Result<()> + Send + Sync + 'static> {
    let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set.
    let empty = unsafe {
        if libc::sigemptyset(empty.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        empty.assume_init()
    };
    Ok(move || {
        // SAFETY: pthread_sigmask is async-signal-safe, as code between fork
        // and exec must be; `empty` is an initialised set copied in.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    })
}

/// Waits until SIGINT or SIGTERM arrives (they must be blocked).
pub fn wait() -> io::Result<Signal> {
    let set = stop_set()?;
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: both pointers are valid for the call.
        let rc = unsafe { libc::sigwait(&set, &mut signal) };
        match rc {
            0 => return Ok(Signal(signal)),
            libc::EINTR => continue,
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// Starts a thread that waits for SIGINT and SIGTERM and sends each on the
/// returned channel. The thread lives until the process exits.
pub fn forward() -> io::Result<Receiver<Signal>> {
    // Checked here so that a failure is reported now, not in the thread.
    stop_set()?;
    let (tx, rx) = bounded(4);
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 << 10)
        .spawn(move || {
            while let Ok(signal) = wait() {
                if tx.send(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
