//! Many peers connecting at once are all listed by the surveys that
//! new connections trigger, without waiting for a heartbeat: the server's
//! poll interval is an hour, so after its first round (which ends before
//! any peer connects) no heartbeat survey goes out during the test, and
//! only the connection-triggered surveys can list the peers.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nng_discovery::{Options, Server};
use nng_discovery_loadgen::{peer_name, Line};

/// Enough that connections arrive while earlier surveys are under way and
/// must share them, few enough for a debug build on a busy machine (at
/// 4,000, a debug server on a machine with a load average of 14 accepted
/// only about 2,000 connections a minute).
const PEERS: u32 = 1500;
/// Listing them all normally takes about a second on a 2-core machine;
/// this bound is 60 times that (busy CI machines are slow).
const DEADLINE: Duration = Duration::from_secs(60);

struct Generator {
    child: Child,
    lines: Receiver<Line>,
}

impl Generator {
    fn expect(&self, kind: &str) -> Line {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.kind == kind => return line,
                Ok(_) => {}
                Err(e) => panic!("loadgen printed no `{kind}` line: {e}"),
            }
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_mass_connect_is_listed_without_a_heartbeat() {
    let options = Options::default()
        .poll_interval(Duration::from_secs(3600))
        .survey_time(Duration::from_millis(100));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("server");
    // The first list goes out when the first heartbeat round ends: from
    // then on, the next heartbeat is an hour away.
    let changes = server.changes();
    let first = changes
        .recv_timeout(DEADLINE)
        .expect("the first (empty) list");
    assert!(first.is_empty(), "{first:?}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--survey", server.survey_url()])
        .args(["--publish", server.publish_url()])
        .args(["--peers", &PEERS.to_string()])
        .args(["--subs", "1", "--track-joins"])
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
    let gen = Generator { child, lines };

    // Every peer is listed by the server...
    let want: BTreeSet<String> = (0..PEERS).map(|i| peer_name(i, 0)).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list: BTreeSet<String> = server.peers().into_iter().collect();
        if list == want {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {PEERS} peers listed within {DEADLINE:?} ({})",
            list.len(),
            server.stats()
        );
        // Wakes at each published change (or re-checks every 50 ms).
        let _ = changes.recv_timeout(left.min(Duration::from_millis(50)));
    }
    // ...and reaches the generator's own subscriber, each peer's name in
    // a list (`joins` is printed once every peer has been).
    let joins = gen.expect("joins");
    assert_eq!(joins.num::<u32>("n"), Some(PEERS));

    // No heartbeat did it: only the first round (before any peer) ended.
    let stats = server.stats();
    assert_eq!(stats.rounds, 1, "{stats}");
    assert_eq!(stats.connections, PEERS as usize, "{stats}");
    assert!(stats.answers >= u64::from(PEERS), "{stats}");
    drop(gen);
    server.shutdown();
}
