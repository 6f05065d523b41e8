//! The `nng-discovery` binary as a child process, for the tests that run
//! the daemon (`cli`, `metrics`, `etcd_bridge`): starting it, reading its
//! stdout lines from a channel with a bound, signalling it, waiting for it
//! to exit, and killing it on drop if a test fails. Nothing here sleeps to
//! synchronise.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

/// How long to wait for anything a child should do within milliseconds (or
/// seconds: a heartbeat round, the metrics server's 5 s request timeout):
/// 60 s, or 15 s times the slowdown under qemu ([`super::slow`]) if that
/// is longer. Over 10x the slowest of those, for busy two-core machines.
pub fn patience() -> Duration {
    super::slow(Duration::from_secs(15)).max(Duration::from_secs(60))
}

/// The daemon, when the `cli` feature built it; `None` (with a note on
/// stderr) otherwise, for a test to skip.
pub fn binary() -> Option<&'static str> {
    let path = option_env!("CARGO_BIN_EXE_nng-discovery");
    if path.is_none() {
        eprintln!("note: the nng-discovery binary was not built (feature `cli` off): skipping");
    }
    path
}

/// A running child whose output lines arrive on channels. Dropping it
/// kills the child (if it still runs) and reaps it.
pub struct Proc {
    what: String,
    child: Child,
    stdout: Receiver<String>,
    /// Every stderr line so far, for failure messages.
    stderr: Arc<Mutex<String>>,
    stderr_done: Receiver<()>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts the binary `bin` with `args`.
    pub fn start(bin: &str, args: &[&str]) -> Proc {
        Proc::start_with(bin, args, &[])
    }

    /// Starts the binary `bin` with `args` and the environment variables
    /// `env` added.
    pub fn start_with(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let what = format!("nng-discovery {}", args.join(" "));
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start {what}: {e}"),
        };
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let stdout = super::line_channel(out);
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_done = super::collect_lines(err, Arc::clone(&stderr));
        Proc {
            what,
            child,
            stdout,
            stderr,
            stderr_done,
            status: None,
        }
    }

    /// Its stderr so far (all of it once [`Proc::wait_exit`] returned).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until its stderr so far satisfies `want`.
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

    /// Waits for a stdout line satisfying `want` and returns it; lines
    /// before it are skipped.
    pub fn expect_line(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + patience();
        let mut seen = Vec::new();
        loop {
            match self.stdout.recv_deadline(deadline) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "{}: no stdout line {what} ({}); lines seen: {seen:?}; stderr:\n{}",
                    self.what,
                    match e {
                        RecvTimeoutError::Timeout => "timed out",
                        RecvTimeoutError::Disconnected => "stdout closed",
                    },
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for the stdout line that is exactly `line`.
    pub fn expect(&self, line: &str) -> String {
        self.expect_line(&format!("{line:?}"), |l| l == line)
    }

    /// The rest of the next stdout line, which must start with `prefix `
    /// (a URL the daemon printed).
    pub fn next_url(&self, prefix: &str) -> String {
        let line = self.stdout.recv_timeout(patience()).unwrap_or_else(|e| {
            panic!(
                "{}: no {prefix} line: {e}; stderr:\n{}",
                self.what,
                self.stderr()
            )
        });
        match line.strip_prefix(&format!("{prefix} ")) {
            Some(url) => url.to_owned(),
            None => panic!("expected a {prefix} line, got {line:?}"),
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the child has not
        // been reaped, so the pid is still its own.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Whether the child has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status.is_some()
    }

    /// Waits (at most [`patience`]) for the child to exit, and returns its
    /// status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(patience())
    }

    /// Waits (at most `limit`) for the child to exit, and returns its
    /// status.
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
        // Its stderr is complete once the pipe closes.
        let _ = self.stderr_done.recv_timeout(patience());
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits up to `limit` for child `pid` to exit, without reaping it, so the
/// pid stays the child's (and a guard can still kill it) whatever happens.
pub fn exited_within(pid: u32, limit: Duration) -> bool {
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

/// Runs the binary to completion (for quick commands such as `--help`) and
/// returns its status, stdout and stderr.
pub fn run(bin: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let mut p = Proc::start(bin, args);
    let status = p.wait_exit();
    let mut out = String::new();
    while let Ok(line) = p.stdout.recv_timeout(patience()) {
        out.push_str(&line);
        out.push('\n');
    }
    (status, out, p.stderr())
}

/// Asserts that `status` is exit code `code`.
pub fn assert_exit(status: ExitStatus, code: i32, what: &str) {
    assert_eq!(status.code(), Some(code), "{what}: {status}");
}

/// `d` times the slowdown under qemu, as a daemon's duration argument: a
/// slow peer must not be taken for a hung one.
pub fn slow_arg(d: Duration) -> String {
    format!("{}ms", super::slow(d).as_millis())
}

/// `server` on two free loopback ports (`tcp://127.0.0.1:0`), followed by
/// `extra`.
pub fn server_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "server",
        "--survey",
        "tcp://127.0.0.1:0",
        "--publish",
        "tcp://127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args
}

/// A server on two free loopback ports, with a fast heartbeat (poll 1 s,
/// survey 100 ms, slower under qemu); returns it with the survey and
/// publish URLs it printed.
pub fn start_server(bin: &str) -> (Proc, String, String) {
    start_server_with(bin, &[])
}

/// [`start_server`] with the arguments `extra` added.
pub fn start_server_with(bin: &str, extra: &[&str]) -> (Proc, String, String) {
    start_server_on(bin, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", extra)
}

/// [`start_server_with`] on the given survey and publish URLs (for
/// instance the ports of a server that ran before).
pub fn start_server_on(
    bin: &str,
    survey: &str,
    publish: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    let poll = slow_arg(Duration::from_secs(1));
    let survey_time = slow_arg(Duration::from_millis(100));
    let mut args = vec![
        "server",
        "--survey",
        survey,
        "--publish",
        publish,
        "--poll-interval",
        &poll,
        "--survey-time",
        &survey_time,
    ];
    args.extend_from_slice(extra);
    let server = Proc::start(bin, &args);
    let survey = server.expect_line("survey URL", |l| l.starts_with("survey "));
    let publish = server.expect_line("publish URL", |l| l.starts_with("publish "));
    let survey = survey["survey ".len()..].to_owned();
    let publish = publish["publish ".len()..].to_owned();
    assert!(
        survey.starts_with("tcp://127.0.0.1:") && !survey.ends_with(":0"),
        "{survey}"
    );
    assert!(
        publish.starts_with("tcp://127.0.0.1:") && !publish.ends_with(":0"),
        "{publish}"
    );
    (server, survey, publish)
}
