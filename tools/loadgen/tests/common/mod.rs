//! Helpers shared by the load generator's integration tests: the `loadgen`
//! binary as a child process whose report lines arrive on a channel, and a
//! wait for the server's list.
//!
//! Each test binary compiles this module separately and uses only part of
//! it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nng_discovery::Server;
use nng_discovery_loadgen::Line;

/// The `loadgen` binary, running with piped standard input and output;
/// killed and reaped on drop.
pub struct Generator {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    /// The longest [`Generator::expect`] waits for a line.
    deadline: Duration,
}

impl Generator {
    /// Starts `loadgen` with `args`; every wait for one of its lines is
    /// bounded by `deadline`.
    pub fn start(args: &[&str], deadline: Duration) -> Generator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start loadgen");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Line::parse(&line)).is_err() {
                    break;
                }
            }
        });
        Generator {
            stdin: child.stdin.take(),
            child,
            lines,
            deadline,
        }
    }

    /// Writes one command line to its standard input.
    pub fn command(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").expect("write to loadgen");
        stdin.flush().expect("flush loadgen's stdin");
    }

    /// The next line of kind `kind` satisfying `ok`, or a panic at the
    /// deadline.
    pub fn expect(&self, kind: &str, ok: impl Fn(&Line) -> bool) -> Line {
        let deadline = Instant::now() + self.deadline;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.kind == kind && ok(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("loadgen printed no matching `{kind}` line: {e}"),
            }
        }
    }

    /// Closes its standard input (it quits), waits for its `end` line and
    /// checks that it exited successfully.
    pub fn finish(mut self) -> Line {
        drop(self.stdin.take());
        let end = self.expect("end", |_| true);
        let status = self.child.wait().expect("wait for loadgen");
        assert!(status.success(), "loadgen exited with {status}");
        end
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server lists exactly `want`, woken by each published
/// change (or re-checking every 50 ms); panics after `deadline` with the
/// server's counters.
pub fn wait_for_list(server: &Server, want: &BTreeSet<String>, deadline: Duration) {
    let changes = server.changes();
    let until = Instant::now() + deadline;
    loop {
        let list: BTreeSet<String> = server.peers().into_iter().collect();
        if &list == want {
            return;
        }
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server never listed the {} expected names within {deadline:?} (last list: {} names; {})",
            want.len(),
            list.len(),
            server.stats()
        );
        let _ = changes.recv_timeout(left.min(Duration::from_millis(50)));
    }
}
