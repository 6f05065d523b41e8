//! Helpers shared by the integration tests.
//!
//! Each test binary compiles this module separately and uses only part of
//! it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use nng_discovery::{Options, Server, Stats};

pub mod daemon;

/// How many times slower than a normal machine this run is taken to be: 10
/// under qemu-user (`.ci/cross.sh` sets `NNG_DISCOVERY_UNDER_QEMU=1`; code
/// runs 10–50x slower there), 1 anywhere else. Every bound below and the
/// heartbeat of [`fast_options`] are scaled by it, so that the bounds keep
/// their margin and a slow peer is not taken for a hung one.
pub fn slowdown() -> u32 {
    static SLOWDOWN: OnceLock<u32> = OnceLock::new();
    *SLOWDOWN.get_or_init(|| {
        if std::env::var_os("NNG_DISCOVERY_UNDER_QEMU").is_some() {
            10
        } else {
            1
        }
    })
}

/// `d` scaled by [`slowdown`].
pub fn slow(d: Duration) -> Duration {
    d * slowdown()
}

/// How long any test waits for something that should happen within
/// milliseconds, or within a few heartbeat rounds of [`fast_options`]
/// (about a second at most): 10 s, times [`slowdown`]. That is 10x the
/// slowest of those and over 100x the usual, so a busy machine (two cores
/// shared by several builds) does not fail a test by slowness.
pub fn patience() -> Duration {
    slow(Duration::from_secs(10))
}

/// The heartbeat poll interval of [`fast_options`]: 200 ms, times
/// [`slowdown`].
pub fn poll() -> Duration {
    slow(Duration::from_millis(200))
}

/// The survey time of [`fast_options`]: 100 ms (a loopback answer takes
/// about a millisecond), times [`slowdown`].
pub fn survey() -> Duration {
    slow(Duration::from_millis(100))
}

/// A poll or republish interval that no test lives to see: an hour, over
/// 30x the longest [`patience`]. With it, whatever happens within
/// `patience()` came from connection events, not from a heartbeat round or
/// a republish.
pub const NEVER: Duration = Duration::from_secs(3600);

/// Options with a fast heartbeat: poll 200 ms, survey 100 ms (both times
/// [`slowdown`]), and the first list as soon as the first heartbeat round
/// ends: these servers are never restarted under running clients, so they
/// need not wait for redialing clients (the default first publish delay,
/// 2.1 s with this survey time; `tests/restart.rs` tests it).
pub fn fast_options() -> Options {
    Options::default()
        .poll_interval(poll())
        .survey_time(survey())
        .first_publish_delay(Duration::ZERO)
}

/// Starts a server on two free loopback TCP ports with [`fast_options`].
pub fn tcp_server() -> Server {
    tcp_server_with(fast_options())
}

/// Starts a server on two free loopback TCP ports with the given options.
pub fn tcp_server_with(options: Options) -> Server {
    match Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options) {
        Ok(server) => server,
        Err(e) => panic!("starting a server on tcp://127.0.0.1:0: {e}"),
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The lines read from `pipe` (a child's stdout), on a channel fed by a
/// thread; it disconnects once the pipe closes.
pub fn line_channel(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Appends every line read from `pipe` (each followed by `\n`) to `sink`,
/// on a thread; the returned channel disconnects once the pipe closes.
pub fn collect_lines(pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> Receiver<()> {
    let (done_tx, done) = unbounded::<()>();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
        drop(done_tx);
    });
    done
}

/// A fresh `ipc://` URL under the temporary directory, unique to this
/// process and call.
pub fn ipc_url(tag: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "nngd-test-{}-{}-{tag}.ipc",
        std::process::id(),
        next_id()
    ));
    // A leftover from an earlier run with the same pid would be in the way.
    let _ = std::fs::remove_file(&path);
    format!("ipc://{}", path.display())
}

/// A fresh `inproc://` URL, unique within this process.
pub fn inproc_url(tag: &str) -> String {
    format!("inproc://nngd-test-{}-{tag}", next_id())
}

/// Two loopback TCP URLs whose ports were free a moment ago: bound to
/// port 0 by std listeners, then released.
pub fn reserved_tcp_urls() -> (String, String) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let urls = (
        format!("tcp://{}", a.local_addr().expect("local_addr")),
        format!("tcp://{}", b.local_addr().expect("local_addr")),
    );
    drop((a, b));
    urls
}

/// Strings for a list of names.
pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Receives lists from `rx` until one satisfies `pred`, and returns it.
/// Panics on timeout or disconnection, showing the last list seen.
pub fn wait_for<F>(rx: &Receiver<Vec<String>>, pred: F, timeout: Duration) -> Vec<String>
where
    F: Fn(&[String]) -> bool,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<Vec<String>> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(list) => {
                assert_sorted_valid(&list);
                if pred(&list) {
                    return list;
                }
                last = Some(list);
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("timed out after {timeout:?} waiting for a list; last list seen: {last:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("channel disconnected while waiting for a list; last list seen: {last:?}")
            }
        }
    }
}

/// Waits until `rx` delivers exactly `want`.
pub fn wait_for_list(rx: &Receiver<Vec<String>>, want: &[&str]) -> Vec<String> {
    let want = names(want);
    wait_for(rx, |l| l == want.as_slice(), patience())
}

/// Waits until `probe` returns `Ok`, trying again every 5 ms, and returns
/// its value; panics after `bound` with `what` and the state of the last
/// `Err`. For outcomes with no channel to wait on (counters, `/proc`).
pub fn wait_until<T, S: std::fmt::Debug>(
    what: &str,
    bound: Duration,
    mut probe: impl FnMut() -> Result<T, S>,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("{what}: not within {bound:?}; last state: {state:?}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Polls `server`'s counters (they have no channel) until `want` holds,
/// within [`patience`]; returns them.
pub fn stats_until(server: &Server, what: &str, want: impl Fn(&Stats) -> bool) -> Stats {
    wait_until(what, patience(), || {
        let s = server.stats();
        if want(&s) {
            Ok(s)
        } else {
            Err(Box::new(s)) // boxed: Stats is too large for clippy's Err
        }
    })
}

/// Asserts that nothing arrives on `rx` within `within`.
pub fn assert_quiet(rx: &Receiver<Vec<String>>, within: Duration) {
    match rx.recv_timeout(within) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(list) => panic!("expected no new list within {within:?}, got {list:?}"),
        Err(RecvTimeoutError::Disconnected) => {
            panic!("expected no new list within {within:?}, the channel disconnected")
        }
    }
}

/// Asserts that a delivered list is sorted, without duplicates, and holds
/// only names that the wire rules allow.
pub fn assert_sorted_valid(list: &[String]) {
    for name in list {
        if let Err(e) = nng_discovery::wire::validate_name(name) {
            panic!("list {list:?} holds the invalid name {name:?}: {e}");
        }
    }
    assert!(
        list.windows(2).all(|w| w[0] < w[1]),
        "list is not sorted and unique: {list:?}"
    );
}

/// Runs `f` on a thread and returns its result, or panics if it takes
/// longer than `timeout` (so a hang fails the test instead of stalling it).
pub fn within<T, F>(timeout: Duration, what: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {timeout:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// The environment variable that marks a child run of a test binary.
const CHILD_ENV: &str = "NNGD_TEST_CHILD";

/// Whether this process is a child started by [`run_isolated`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs this test binary again with only `test` selected, in a child
/// process, and fails unless it passes. NNG aborts the whole process on
/// some bugs: isolated, such a crash fails one test with its message
/// instead of killing every test in the binary. The test itself starts
/// with `if !is_child() { return run_isolated("its_name"); }`.
pub fn run_isolated(test: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the test binary again");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a child process: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// How many entries `dir` holds (`/proc/self/task`: threads,
/// `/proc/self/fd`: open file descriptors).
pub fn count(dir: &str) -> usize {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.count(),
        Err(e) => panic!("reading {dir}: {e}"),
    }
}

/// (threads, open file descriptors) of this process.
pub fn counts() -> (usize, usize) {
    (count("/proc/self/task"), count("/proc/self/fd"))
}

/// The counts once they have stopped moving for 500 ms (times [`slowdown`]):
/// NNG closes connections on its own threads, a little after the objects
/// owning them are gone. After [`patience`], the last counts.
pub fn settled_counts() -> (usize, usize) {
    let deadline = Instant::now() + patience();
    let mut last = counts();
    let mut stable_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = counts();
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= slow(Duration::from_millis(500)) {
            break;
        }
    }
    last
}
