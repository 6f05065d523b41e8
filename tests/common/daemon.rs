//! Running the `nng-discovery` daemon as a child process: its stderr
//! collected, signals sent, its exit awaited with a bound. A trimmed copy
//! of the `Proc` of tests/cli.rs (which keeps its own, with stdout lines),
//! for test binaries that watch the lists through the library instead.
//! Included with `#[path = "common/daemon.rs"] mod daemon;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

/// The daemon, when the `cli` feature built it.
pub fn binary() -> Option<&'static str> {
    let path = option_env!("CARGO_BIN_EXE_nng-discovery");
    if path.is_none() {
        eprintln!("note: the nng-discovery binary was not built (feature `cli` off): skipping");
    }
    path
}

/// A running daemon. Dropping it kills the child (if it still runs) and
/// reaps it.
pub struct Daemon {
    what: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `bin` with `args`, stdout discarded, stderr collected.
    pub fn start(bin: &str, args: &[&str]) -> Daemon {
        let what = format!("nng-discovery {}", args.join(" "));
        let mut child = match Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot start {what}: {e}"),
        };
        let err = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon {
            what,
            child,
            stderr,
            status: None,
        }
    }

    /// Everything it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until its stderr satisfies `want`.
    pub fn wait_stderr(&self, what: &str, limit: Duration, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        while !want(&self.stderr()) {
            assert!(
                Instant::now() < deadline,
                "{}: no {what} on stderr within {limit:?}; stderr:\n{}",
                self.what,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the child has not
        // been reaped, so the pid is still its own.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Whether it has exited (without reaping it).
    pub fn has_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `info` is valid for writes; WNOWAIT leaves the child
        // waitable, WNOHANG returns at once.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        // SAFETY: waitid zeroed or filled it; si_pid is 0 if none exited.
        rc == 0 && unsafe { info.assume_init().si_pid() } != 0
    }

    /// Waits (at most `limit`) for it to exit, and returns its status.
    pub fn wait_exit_within(&mut self, limit: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        if !exited_within(self.child.id(), limit) {
            panic!(
                "{} did not exit within {limit:?}; stderr:\n{}",
                self.what,
                self.stderr()
            );
        }
        let status = self.child.wait().expect("reaping the child");
        self.status = Some(status);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits up to `limit` for child `pid` to exit, without reaping it.
fn exited_within(pid: u32, limit: Duration) -> bool {
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        loop {
            // SAFETY: `info` is valid for writes; WNOWAIT leaves the child
            // waitable.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    info.as_mut_ptr(),
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(limit).is_ok()
}
