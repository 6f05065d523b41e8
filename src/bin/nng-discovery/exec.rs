//! Running the `--exec` command of `watch`: one at a time, latest list next.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::{output, signals};

/// The longest value given to the command in `NNG_DISCOVERY_PEERS` or
/// `NNG_DISCOVERY_PEERS_JSON`. Longer lists leave the variable unset (Linux
/// refuses to start a program with one variable over 128 KiB); standard
/// input always carries the whole list.
pub const MAX_ENV_VALUE: usize = 64 << 10;

/// How long a running command has to exit after SIGTERM when we stop,
/// before its process group gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The command and its state: at most one running, at most one list waiting.
pub struct Exec {
    command: String,
    running: Option<Running>,
    /// The newest list that arrived while the command was running.
    pending: Option<Vec<String>>,
    exited_tx: Sender<u32>,
    exited_rx: Receiver<u32>,
}

struct Running {
    child: Child,
    peers: usize,
    started: Instant,
}

impl Exec {
    pub fn new(command: String) -> Exec {
        let (exited_tx, exited_rx) = unbounded();
        Exec {
            command,
            running: None,
            pending: None,
            exited_tx,
            exited_rx,
        }
    }

    /// Receives the process id of a command that has exited and is waiting
    /// to be reaped by [`on_exit`](Exec::on_exit).
    pub fn exited(&self) -> &Receiver<u32> {
        &self.exited_rx
    }

    /// Runs the command with `names` now, or as soon as the running one
    /// exits (replacing any list already waiting).
    pub fn offer(&mut self, names: Vec<String>) {
        if self.running.is_some() {
            if self.pending.is_some() {
                log::debug!("--exec: a newer list replaces the one waiting");
            }
            self.pending = Some(names);
        } else {
            self.start(names);
        }
    }

    /// Reaps the command that exited and starts the next one, if a list is
    /// waiting.
    pub fn on_exit(&mut self) {
        if let Some(running) = self.running.take() {
            running.reap();
        }
        if let Some(names) = self.pending.take() {
            self.start(names);
        }
    }

    /// Drops any waiting list and ends the running command: SIGTERM to its
    /// process group, SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) {
        self.pending = None;
        let Some(mut running) = self.running.take() else {
            return;
        };
        // The child has not been reaped (only `reap` does that), so its pid,
        // which is also its process group's id, cannot have been reused.
        let group = running.child.id() as libc::pid_t;
        log::info!("stopping the --exec command (process group {group})");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        if self.exited_rx.recv_timeout(STOP_GRACE).is_err() {
            log::warn!(
                "the --exec command did not exit within {STOP_GRACE:?} of SIGTERM: sending SIGKILL"
            );
            // SAFETY: as above.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        match running.child.wait() {
            Ok(status) => log::debug!("--exec command ended: {}", describe(status)),
            Err(e) => log::warn!("waiting for the --exec command: {e}"),
        }
    }

    fn start(&mut self, names: Vec<String>) {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env("NNG_DISCOVERY_COUNT", names.len().to_string())
            .stdin(Stdio::piped())
            // Its own process group, so that stopping reaches whatever it
            // started too.
            .process_group(0);
        match signals::clear_mask_in_child() {
            // SAFETY: the closure only calls pthread_sigmask, which is
            // async-signal-safe, and allocates nothing.
            Ok(clear) => unsafe {
                command.pre_exec(clear);
            },
            Err(e) => {
                log::error!("--exec: cannot prepare a signal mask for the command: {e}");
                return;
            }
        }
        for (var, value) in [
            ("NNG_DISCOVERY_PEERS", output::spaced(&names)),
            ("NNG_DISCOVERY_PEERS_JSON", output::json(&names)),
        ] {
            if value.len() <= MAX_ENV_VALUE {
                command.env(var, value);
            } else {
                // Never pass on an inherited value: unset means "too long".
                command.env_remove(var);
            }
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                log::error!("--exec: cannot run sh -c {:?}: {e}", self.command);
                return;
            }
        };
        let pid = child.id();
        log::debug!("--exec: started process {pid} with {} peers", names.len());

        // Standard input from its own thread: a command that does not read
        // it must not stall us once the list outgrows the pipe's buffer.
        if let Some(mut stdin) = child.stdin.take() {
            let text = output::lines(&names);
            let spawned = std::thread::Builder::new()
                .name("exec-stdin".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    // A command that exits without reading is no error.
                    let _ = stdin.write_all(text.as_bytes());
                });
            if let Err(e) = spawned {
                log::warn!("--exec: cannot start a thread to write the list to stdin: {e}");
            }
        }

        let tx = self.exited_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("exec-wait".into())
            .stack_size(64 << 10)
            .spawn(move || {
                wait_without_reaping(pid);
                let _ = tx.send(pid);
            });
        if let Err(e) = spawned {
            // Without a waiting thread, wait here: slower to react, not wrong.
            log::warn!("--exec: cannot start a thread to wait for the command: {e}");
            let _ = child.wait();
            let _ = self.exited_tx.send(pid);
        }
        self.running = Some(Running {
            child,
            peers: names.len(),
            started: Instant::now(),
        });
    }
}

impl Running {
    fn reap(mut self) {
        match self.child.wait() {
            Ok(status) if status.success() => log::debug!(
                "--exec command with {} peers finished in {:?}",
                self.peers,
                self.started.elapsed()
            ),
            Ok(status) => log::warn!(
                "--exec command with {} peers {}",
                self.peers,
                describe(status)
            ),
            Err(e) => log::warn!("waiting for the --exec command: {e}"),
        }
    }
}

pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended: {status}"),
    }
}

/// Blocks until process `pid` (our child) has exited, leaving it a zombie:
/// only `Child::wait` reaps it, so its pid stays ours until then.
pub fn wait_without_reaping(pid: u32) {
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
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
            return;
        }
    }
}
