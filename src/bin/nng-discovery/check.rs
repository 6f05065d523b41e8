//! Running the `--check` command of `join`: through `sh -c`, in its own
//! process group, every interval, killed (with its group) when it overruns
//! its timeout. One thread runs the checks and sends each result on a
//! channel; the join loop decides what they mean (see `health`).

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{after, bounded, select, unbounded, Receiver, Sender};

use crate::{exec, signals};

/// The most of the command's first stderr line that is kept for the log.
const MAX_DETAIL: usize = 200;

/// How long to wait for the first stderr line after the command exited
/// (a background process it left behind may keep the pipe open).
const STDERR_GRACE: Duration = Duration::from_millis(100);

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the command exited with status 0 within its timeout.
    pub passed: bool,
    /// How it ended ("exited with status 1", "timed out after 2s: killed"),
    /// and the first line of its stderr, if any.
    pub detail: String,
}

/// The thread running the checks. Dropping it stops the thread, killing a
/// check that is running.
pub struct Checker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    results: Receiver<Outcome>,
}

impl Checker {
    /// Runs `command` at once, then every `interval` (from one start to
    /// the next; at once after a check that took longer), each bounded by
    /// `timeout`.
    pub fn start(
        command: String,
        interval: Duration,
        timeout: Duration,
    ) -> std::io::Result<Checker> {
        let (stop, stopped) = bounded::<()>(0);
        let (tx, results) = unbounded();
        let thread = std::thread::Builder::new()
            .name("check".into())
            .stack_size(256 << 10)
            .spawn(move || loop {
                let started = Instant::now();
                let Some(outcome) = run(&command, timeout, &stopped) else {
                    return;
                };
                if tx.send(outcome).is_err() {
                    return;
                }
                let wait = interval.saturating_sub(started.elapsed());
                select! {
                    recv(stopped) -> _ => return,
                    recv(after(wait)) -> _ => {}
                }
            })?;
        Ok(Checker {
            stop: Some(stop),
            thread: Some(thread),
            results,
        })
    }

    /// The results, one per check, in order.
    pub fn results(&self) -> &Receiver<Outcome> {
        &self.results
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the --check thread panicked");
            }
        }
    }
}

/// Runs `command` once. `None` if `stop` fired (or was dropped) first; the
/// command's process group is then killed.
pub fn run(command: &str, timeout: Duration, stop: &Receiver<()>) -> Option<Outcome> {
    let failed = |detail: String| {
        Some(Outcome {
            passed: false,
            detail,
        })
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        // join prints lists on stdout: keep the check's output off it.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started.
        .process_group(0);
    match signals::clear_mask_in_child() {
        // SAFETY: the closure only calls pthread_sigmask, which is
        // async-signal-safe, and allocates nothing.
        Ok(clear) => unsafe {
            cmd.pre_exec(clear);
        },
        Err(e) => return failed(format!("cannot prepare a signal mask: {e}")),
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot run sh -c: {e}")),
    };
    let pid = child.id();
    // The first stderr line, from a thread that then drains the pipe so the
    // command never blocks writing to it.
    let (line_tx, first_line) = bounded::<String>(1);
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::thread::Builder::new()
            .name("check-stderr".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let mut text = Vec::new();
                let mut buf = [0u8; 4096];
                let mut sent = false;
                loop {
                    let n = stderr.read(&mut buf).unwrap_or(0);
                    if !sent && text.len() < 4096 {
                        text.extend_from_slice(&buf[..n]);
                    }
                    if !sent && (n == 0 || text.contains(&b'\n') || text.len() >= 4096) {
                        sent = true;
                        let _ = line_tx.send(first_line_of(&text));
                    }
                    if n == 0 {
                        return;
                    }
                }
            });
    }
    let (exit_tx, exited) = bounded::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("check-wait".into())
        .stack_size(64 << 10)
        .spawn(move || {
            exec::wait_without_reaping(pid);
            let _ = exit_tx.send(());
        });
    if let Err(e) = spawned {
        kill_group(pid);
        let _ = child.wait();
        return failed(format!("cannot start a thread to wait for it: {e}"));
    }
    let timed_out = select! {
        recv(exited) -> _ => false,
        recv(stop) -> _ => {
            kill_group(pid);
            let _ = exited.recv();
            let _ = child.wait();
            return None;
        }
        recv(after(timeout)) -> _ => {
            kill_group(pid);
            let _ = exited.recv();
            true
        }
    };
    let status = child.wait();
    let line = first_line.recv_timeout(STDERR_GRACE).unwrap_or_default();
    let mut detail = match (timed_out, status) {
        (true, _) => format!("timed out after {timeout:?}: killed"),
        (false, Ok(status)) => exec::describe(status),
        (false, Err(e)) => format!("cannot wait for it: {e}"),
    };
    let passed = !timed_out && detail == "exited with status 0";
    if !line.is_empty() {
        detail.push_str(": ");
        detail.push_str(&line);
    }
    Some(Outcome { passed, detail })
}

/// SIGKILL to the process group `pid` leads. The child is not reaped yet,
/// so the id is still its own.
fn kill_group(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}

/// The first line of `text`, lossily decoded, trimmed, at most
/// [`MAX_DETAIL`] characters.
fn first_line_of(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(MAX_DETAIL).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn once(command: &str, timeout: Duration) -> Outcome {
        let (_keep, stop) = bounded(0);
        run(command, timeout, &stop).expect("not stopped")
    }

    #[test]
    fn status_and_first_stderr_line() {
        let ok = once("exit 0", Duration::from_secs(10));
        assert_eq!(
            ok,
            Outcome {
                passed: true,
                detail: "exited with status 0".into()
            }
        );
        let bad = once(
            "echo out; echo 'disk full' >&2; echo more >&2; exit 3",
            Duration::from_secs(10),
        );
        assert!(!bad.passed);
        assert_eq!(bad.detail, "exited with status 3: disk full");
    }

    #[test]
    fn an_overrunning_check_is_killed_with_its_group_and_fails() {
        let started = Instant::now();
        // The background sleep is in the group too; it must not keep the
        // check (or its stderr pipe) alive. 100 s: far past any bound.
        let out = once("sleep 100 & sleep 100", Duration::from_millis(200));
        assert!(!out.passed);
        assert!(
            out.detail.starts_with("timed out after 200ms: killed"),
            "{out:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(50), "{out:?}");
    }

    #[test]
    fn first_line_is_trimmed_and_bounded() {
        assert_eq!(first_line_of(b"  a b \nc"), "a b");
        assert_eq!(first_line_of(b""), "");
        assert_eq!(first_line_of(&[b'x'; 1000]).len(), MAX_DETAIL);
        assert_eq!(first_line_of(b"\xff\n"), "\u{fffd}");
    }

    #[test]
    fn a_stop_ends_a_running_check() {
        let (stop_tx, stop) = bounded(0);
        let thread = std::thread::spawn(move || run("sleep 100", Duration::from_secs(100), &stop));
        drop(stop_tx);
        assert_eq!(thread.join().unwrap(), None);
    }
}
