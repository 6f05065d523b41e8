//! The etcd bridge (`contrib/etcd/nng-discovery-etcd`) against a real etcd
//! server (Debian packages `etcd-server` and `etcd-client`) started on free
//! loopback ports with a temporary data directory, a `nng-discovery server`
//! and three `nng-discovery join` processes:
//!
//! * three names joined give three keys `PREFIX` + name (value: the name),
//!   and a key the bridge did not put under the prefix is removed, while a
//!   key outside the prefix is left alone;
//! * one join stopped, its key goes;
//! * the bridge's main process SIGKILLed, every key expires with its lease.
//!
//! Without `etcd` and `etcdctl` on PATH this test prints a note and passes,
//! except under `CI=true`, where it fails: CI must run it. Under qemu
//! (`NNG_DISCOVERY_UNDER_QEMU`) it is skipped: etcd is a host program and the
//! bridge a shell script, so nothing in it depends on the architecture.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::collect_lines;
use common::daemon::{binary, start_server, Proc};

/// Bound for outcomes that take at most a few seconds here (an etcd start
/// about 1 s, a leave 2-3 s at the server's 1 s poll, a lease expiry the 3 s
/// TTL): more than 10x that, for busy two-core CI machines.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The lease TTL given to the bridge, in seconds (etcd's floor is about 2 s).
const TTL_SECS: &str = "3";

const PREFIX: &str = "/nng-discovery-test/web/";

/// Names as they come: URLs with `/`, a space, a `"` and a `\` (the bridge
/// quotes them for `etcdctl txn`).
const NAMES: [&str; 3] = [
    "http://127.0.0.1:8001/",
    "tcp://host.example:2/with space",
    "name \"quoted\" back\\slash",
];

/// Whether `etcd` and `etcdctl` can be run; panics under CI=true if not.
fn have_etcd() -> bool {
    for (tool, arg) in [("etcd", "--version"), ("etcdctl", "version")] {
        let run = Command::new(tool)
            .arg(arg)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Only whether the program starts matters here.
        if let Err(e) = run {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{tool} is needed under CI=true (apt-get install etcd-server etcd-client): {e}"
                );
            }
            eprintln!(
                "note: {tool} not found ({e}); skipping (apt-get install etcd-server etcd-client)"
            );
            return false;
        }
    }
    true
}

/// The children that are not `nng-discovery` (etcd, the bridge), killed
/// (SIGKILL) and reaped on drop, and the temporary directory, removed on
/// drop. The daemons are [`Proc`]s, which kill themselves on drop.
struct Guard {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Guard {
    /// Starts `command` with stdin closed and stdout and stderr collected
    /// into one string; returns the child's index and that string.
    fn spawn(&mut self, what: &str, mut command: Command) -> (usize, Arc<Mutex<String>>) {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start {what}: {e}"),
        };
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            collect_lines(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            collect_lines(err, Arc::clone(&output));
        }
        self.children.push(child);
        (self.children.len() - 1, output)
    }

    /// Whether child `index` has exited (it is reaped then).
    fn exited(&mut self, index: usize) -> bool {
        matches!(self.children[index].try_wait(), Ok(Some(_)))
    }
}

/// Polls `check` (every 50 ms) until it returns `Some`, for at most
/// `TIMEOUT`; panics with `what` and `context()` otherwise.
fn wait_for<T>(
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {TIMEOUT:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port nothing listens on right now (etcd binds it a moment later; a
/// start that loses the race is retried).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running etcdctl")
}

/// The keys and values under `prefix`, or `None` if etcd did not answer.
fn keys_under(endpoint: &str, prefix: &str) -> Option<Vec<(String, String)>> {
    let out = etcdctl(endpoint, &["get", "--prefix", "--", prefix]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).expect("etcdctl output is UTF-8");
    // Key and value alternate, one line each (names have no newlines).
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() % 2, 0, "odd etcdctl get output: {text:?}");
    Some(
        lines
            .chunks(2)
            .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
            .collect(),
    )
}

/// The pairs the bridge should hold for `names`: key `PREFIX` + name, value
/// the name, sorted as etcd returns keys (by bytes).
fn expected(names: &[&str]) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{PREFIX}{n}"), (*n).to_owned()))
        .collect();
    want.sort();
    want
}

/// Starts etcd on free loopback ports with its data in `dir`; returns its
/// child index and client URL once it answers.
fn start_etcd(guard: &mut Guard, dir: &Path) -> (usize, String) {
    for attempt in 0..5 {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let data = dir.join(format!("etcd-{attempt}"));
        let mut command = Command::new("etcd");
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=warn");
        let (index, log) = guard.spawn("etcd", command);
        let ready = wait_for(
            "etcd to answer or exit",
            || {
                if guard.exited(index) {
                    return Some(false);
                }
                let health = etcdctl(&client, &["endpoint", "health"]);
                health.status.success().then_some(true)
            },
            || format!("etcd output:\n{}", log.lock().unwrap()),
        );
        if ready {
            return (index, client);
        }
        eprintln!(
            "etcd exited at start (a port taken meanwhile?), retrying:\n{}",
            log.lock().unwrap()
        );
    }
    panic!("etcd did not start in 5 attempts");
}

#[test]
fn bridge_mirrors_joins_and_leaves_and_its_keys_expire_when_it_is_killed() {
    if std::env::var_os("NNG_DISCOVERY_UNDER_QEMU").is_some() {
        eprintln!(
            "note: skipped under qemu: etcd is a host program and the bridge a shell \
             script; the native run covers them"
        );
        return;
    }
    let Some(bin) = binary() else { return };
    if !have_etcd() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nng-discovery-etcd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the temporary directory");
    let mut guard = Guard {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let (_etcd, endpoint) = start_etcd(&mut guard, &dir);

    // What a predecessor might have left (must go), and a neighbour's key
    // (must stay).
    let stale = format!("{PREFIX}http://10.9.9.9:1/gone");
    for (key, value) in [(stale.as_str(), "x"), ("/nng-discovery-test/other", "y")] {
        let put = etcdctl(&endpoint, &["put", "--", key, value]);
        assert!(put.status.success(), "etcdctl put {key}: {put:?}");
    }

    // The server, on free ports; it prints the URLs it bound.
    let (server, survey, publish) = start_server(bin);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/etcd/nng-discovery-etcd"
    );
    let mut bridge = Command::new("bash");
    bridge
        .arg(script)
        .args(["--publish", &publish, "--prefix", PREFIX, "--ttl", TTL_SECS])
        .env("NNG_DISCOVERY", bin)
        // Its state directory, left behind when it is SIGKILLed.
        .env("TMPDIR", &dir)
        .env("ETCDCTL_ENDPOINTS", &endpoint);
    let (bridge, bridge_out) = guard.spawn("the bridge", bridge);

    let mut joins: Vec<Proc> = NAMES
        .iter()
        .map(|name| Proc::start(bin, &["join", "--survey", &survey, "--name", name]))
        .collect();

    let context = || {
        format!(
            "etcd holds: {:?}\nbridge output:\n{}\nserver stderr:\n{}",
            keys_under(&endpoint, "/nng-discovery-test/"),
            bridge_out.lock().unwrap(),
            server.stderr()
        )
    };
    let all = expected(&NAMES);
    wait_for(
        "a key per joined name, and the stale key gone",
        || (keys_under(&endpoint, PREFIX)? == all).then_some(()),
        context,
    );
    let other = keys_under(&endpoint, "/nng-discovery-test/other").expect("etcd answers");
    assert_eq!(
        other,
        vec![("/nng-discovery-test/other".to_owned(), "y".to_owned())]
    );

    // The first name leaves: its key goes, the other two stay.
    joins[0].signal(libc::SIGKILL);
    joins[0].wait_exit();
    let rest = expected(&NAMES[1..]);
    wait_for(
        "the left name's key to go",
        || (keys_under(&endpoint, PREFIX)? == rest).then_some(()),
        context,
    );
    assert!(!guard.exited(bridge), "the bridge exited:\n{}", context());

    // SIGKILL the bridge's main process: nothing of it can clean up, and the
    // lease's keep-alive dies with it (pdeathsig), so the keys expire.
    let b = &mut guard.children[bridge];
    b.kill().expect("SIGKILLing the bridge");
    b.wait().expect("reaping the bridge");
    wait_for(
        "every key to expire with the bridge's lease",
        || keys_under(&endpoint, PREFIX)?.is_empty().then_some(()),
        context,
    );
    // The names are still joined: only the bridge's death emptied the prefix.
    for j in &mut joins[1..] {
        assert!(!j.exited(), "a join exited:\n{}", context());
    }
}
