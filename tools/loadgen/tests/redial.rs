//! `loadgen --redial`: peers and subscribers whose server goes away keep
//! dialing (with the library clients' backoff) and, once a server listens
//! on the same URLs again, redo the SP handshake and answer its surveys:
//! the restarted server lists every one of them again, and the raw
//! subscriber receives that list.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nng_discovery::{Options, Server};
use nng_discovery_loadgen::{peer_name, Line};

const PEERS: u32 = 200;
/// Every wait is bounded by this. The slowest step, the restarted server's
/// first list, comes after its first publish delay (3 s by default) and
/// the peers are back within about 1 s of its start (their longest redial
/// wait), so this is over 10x what it normally takes.
const DEADLINE: Duration = Duration::from_secs(60);

struct Generator {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
}

impl Generator {
    fn start(survey: &str, publish: &str) -> Generator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--survey", survey, "--publish", publish])
            .args(["--peers", &PEERS.to_string(), "--subs", "1"])
            .args(["--report-ms", "50", "--print-lists", "--redial"])
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
        }
    }

    /// The next line of kind `kind` satisfying `ok`, or a panic at the
    /// deadline.
    fn expect(&self, kind: &str, ok: impl Fn(&Line) -> bool) -> Line {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.kind == kind && ok(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("loadgen printed no matching `{kind}` line: {e}"),
            }
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server lists exactly `want` (woken by each change).
fn wait_for_list(server: &Server, want: &BTreeSet<String>) {
    let changes = server.changes();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list: BTreeSet<String> = server.peers().into_iter().collect();
        if &list == want {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server never listed the {} peers (last list: {} names)",
            want.len(),
            list.len()
        );
        let _ = changes.recv_timeout(left.min(Duration::from_millis(50)));
    }
}

#[test]
fn redialing_peers_come_back_to_a_restarted_server() {
    let all: BTreeSet<String> = (0..PEERS).map(|i| peer_name(i, 0)).collect();
    let options = Options::default;
    let server =
        Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options()).expect("start server");
    let (survey, publish) = (
        server.survey_url().to_owned(),
        server.publish_url().to_owned(),
    );
    let gen = Generator::start(&survey, &publish);
    gen.expect("full", |l| l.num::<u32>("len") == Some(PEERS));
    wait_for_list(&server, &all);

    // The server goes away: every connection closes, and the peers keep
    // dialing (each fails at least once: the port is closed).
    server.shutdown();
    gen.expect("tick", |l| {
        l.num::<u32>("peers_ready") == Some(0)
            && l.num::<u32>("subs_ready") == Some(0)
            && l.num::<u64>("connect_failures") >= Some(u64::from(PEERS))
    });

    // Started again on the same URLs: every peer redials, redoes the
    // handshake and answers; the subscriber redials and gets the list.
    let server = Server::new(&survey, &publish, options()).expect("restart on the same URLs");
    wait_for_list(&server, &all);
    // Every line from here on was printed after the server went away.
    gen.expect("list", |l| l.num::<u32>("len") == Some(PEERS));
    let back = gen.expect("tick", |l| {
        l.num::<u32>("peers_ready") == Some(PEERS) && l.num::<u32>("subs_ready") == Some(1)
    });
    assert!(
        back.num::<u64>("reconnects") >= Some(u64::from(PEERS) + 1),
        "every peer and the subscriber reconnected: {back:?}"
    );
    server.shutdown();
}
