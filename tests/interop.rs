//! Interoperability with an independent implementation of the same
//! protocols: `nngcat` (Debian package `nng-utils`, NNG 1.5.2, a C program),
//! run as child processes.
//!
//! * an nngcat respondent answering with a name appears in our server's list;
//! * an nngcat subscriber receives our server's lists in the documented
//!   format: the sorted names joined by `|`;
//! * our `Client` answers an nngcat surveyor with its name (the cooked
//!   surveyor drops the client's unasked announcement and takes the answer
//!   to its own survey);
//! * an nngcat respondent, which never announces, is still listed by a
//!   server that runs no heartbeat: its join survey lists it.
//!
//! Without nngcat these tests print a note and pass, except under `CI=true`,
//! where they fail: CI must run them.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Server};

/// How long to wait for anything that should take milliseconds (a child
/// starting, a list going round, nngcat's next survey a second away): 15 s,
/// times the slowdown under qemu (`common::slow`).
fn timeout() -> Duration {
    common::slow(Duration::from_secs(15))
}

/// Whether nngcat can be run; panics under CI=true if it cannot.
fn have_nngcat() -> bool {
    match Command::new("nngcat")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("nngcat is needed under CI=true (apt-get install nng-utils): {e}");
            }
            eprintln!("note: nngcat not found ({e}); skipping (apt-get install nng-utils)");
            false
        }
    }
}

macro_rules! nngcat_or_return {
    () => {
        if !have_nngcat() {
            return;
        }
    };
}

/// An nngcat child whose stdout lines arrive on a channel; killed and
/// reaped on drop.
struct Nngcat {
    child: Child,
    lines: Receiver<String>,
    args: Vec<String>,
}

impl Nngcat {
    fn start(args: &[&str]) -> Nngcat {
        let mut child = Command::new("nngcat")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting nngcat {args:?}: {e}"));
        let lines = common::line_channel(child.stdout.take().expect("piped stdout"));
        Nngcat {
            child,
            lines,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Waits for the stdout line that is exactly `want`.
    fn expect(&self, want: &str) {
        let deadline = Instant::now() + timeout();
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) if line == want => return,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "nngcat {:?} printed no line {want:?} within {:?}; it printed {seen:?}",
                    self.args,
                    timeout()
                ),
            }
        }
    }
}

impl Drop for Nngcat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server() -> Server {
    let options = Options::default()
        .poll_interval(common::slow(Duration::from_millis(500)))
        .survey_time(common::slow(Duration::from_millis(100)));
    Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)
        .unwrap_or_else(|e| panic!("starting a server: {e}"))
}

/// Takes lists from `changes` until one equals `want`.
fn wait_for_list(changes: &Receiver<Vec<String>>, want: &[&str]) {
    let deadline = Instant::now() + timeout();
    let mut last = None;
    loop {
        match changes.recv_deadline(deadline) {
            Ok(list) if list == want => return,
            Ok(list) => last = Some(list),
            Err(_) => panic!("the list never became {want:?}; last seen {last:?}"),
        }
    }
}

/// A fresh `ipc://` URL under the temporary directory.
fn ipc_url(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "nngd-interop-{}-{}-{tag}.ipc",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    format!("ipc://{}", path.display())
}

#[test]
fn an_nngcat_respondent_joins_and_leaves_our_server() {
    nngcat_or_return!();
    let server = server();
    let changes = server.changes();
    let ours = Client::new(server.survey_url(), "rust-peer").expect("client");
    let nngcat = Nngcat::start(&[
        "--respondent0",
        "--dial",
        server.survey_url(),
        "--data",
        "nngcat-peer",
    ]);
    wait_for_list(&changes, &["nngcat-peer", "rust-peer"]);
    // Killing it closes its connection: it leaves at once.
    drop(nngcat);
    wait_for_list(&changes, &["rust-peer"]);
    ours.shutdown();
    wait_for_list(&changes, &[]);
}

#[test]
fn an_nngcat_subscriber_gets_our_lists_sorted_and_joined_by_bars() {
    nngcat_or_return!();
    let server = server();
    let changes = server.changes();
    let b = Client::new(server.survey_url(), "tcp://10.0.0.2:80").expect("client");
    let a = Client::new(server.survey_url(), "tcp://10.0.0.1:80").expect("client");
    wait_for_list(&changes, &["tcp://10.0.0.1:80", "tcp://10.0.0.2:80"]);
    let nngcat = Nngcat::start(&[
        "--sub0",
        "--dial",
        server.publish_url(),
        "--subscribe",
        "",
        "--quoted",
    ]);
    // A new subscriber is sent the current list at once.
    nngcat.expect(r#""tcp://10.0.0.1:80|tcp://10.0.0.2:80""#);
    let c = Client::new(server.survey_url(), "a-first-by-name").expect("client");
    nngcat.expect(r#""a-first-by-name|tcp://10.0.0.1:80|tcp://10.0.0.2:80""#);
    a.shutdown();
    b.shutdown();
    nngcat.expect(r#""a-first-by-name""#);
    // The empty list is the empty message.
    c.shutdown();
    nngcat.expect(r#""""#);
}

#[test]
fn our_client_answers_an_nngcat_surveyor() {
    nngcat_or_return!();
    let url = ipc_url("surveyor");
    // nngcat surveys every second and prints each answer.
    let nngcat = Nngcat::start(&[
        "--surveyor0",
        "--listen",
        &url,
        "--data",
        "x",
        "--interval",
        "1",
        "--quoted",
    ]);
    // The client redials until nngcat listens, whichever starts first. It
    // announces itself on connecting, which a cooked surveyor (NNG 1.5.2)
    // has no survey open for; whatever nngcat makes of that, the client
    // must be listed by it: it answers nngcat's own surveys.
    let client = Client::new(&url, "http://10.0.0.9:8080").expect("client");
    nngcat.expect(r#""http://10.0.0.9:8080""#);
    // And the next survey's, a second later: the client answers on.
    nngcat.expect(r#""http://10.0.0.9:8080""#);
    client.shutdown();
    drop(nngcat);
    if let Some(path) = url.strip_prefix("ipc://") {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn an_nngcat_respondent_is_surveyed_when_it_connects() {
    nngcat_or_return!();
    // No heartbeat after the first round: only the join survey of its
    // connection can list nngcat, which never announces.
    let options = Options::default()
        .poll_interval(common::NEVER)
        .republish_interval(common::NEVER)
        .first_publish_delay(Duration::ZERO);
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)
        .unwrap_or_else(|e| panic!("starting a server: {e}"));
    let changes = server.changes();
    let _nngcat = Nngcat::start(&[
        "--respondent0",
        "--dial",
        server.survey_url(),
        "--data",
        "nngcat-peer",
    ]);
    wait_for_list(&changes, &["nngcat-peer"]);
    let s = server.stats();
    assert_eq!(s.announcements, 0, "{s}");
    assert!(
        s.surveys_sent >= 2,
        "the first round and a join survey: {s}"
    );
}
