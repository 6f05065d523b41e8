//! `nng-discovery join` with `--check`, `--maintenance-file` and
//! `--drain`, run as a real process against an in-process server; the
//! lists are watched through a library subscriber. Outcomes only: every
//! wait has a bound far above what it takes (milliseconds, or a few check
//! intervals of 100 ms), and nothing sleeps to synchronise.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::{binary, Proc};
use common::*;
use nng_discovery::Subscriber;

/// The bound on anything that takes milliseconds or a few 100 ms check
/// intervals: over 50 times that (times [`slow`]'s factor under qemu).
fn limit() -> Duration {
    slow(Duration::from_secs(15))
}

macro_rules! binary_or_return {
    () => {
        match binary() {
            Some(path) => path,
            None => return,
        }
    };
}

/// A fresh empty directory for one test's files.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nngd-health-{}-{tag}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("create the file");
}

fn remove(path: &Path) {
    std::fs::remove_file(path).expect("remove the file");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Every list waiting on `rx` now, without waiting.
fn drain(rx: &crossbeam_channel::Receiver<Vec<String>>) -> Vec<Vec<String>> {
    rx.try_iter().collect()
}

#[test]
fn a_check_adds_and_removes_the_name() {
    let bin = binary_or_return!();
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let _stable = nng_discovery::Client::new(server.survey_url(), "stable").expect("client");
    wait_for_list(&lists, &["stable"]);

    let dir = scratch("check");
    let file = dir.join("up");
    let check = format!("test -e '{}'", path_str(&file));
    let join = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "svc",
            "--check",
            &check,
            "--check-interval",
            "100ms",
        ],
    );
    // Down at start: the first check fails, and the name was never listed.
    join.wait_stderr("a failed first check", limit(), |e| {
        e.contains("--check fails (exited with status 1)")
    });
    assert!(
        drain(&lists).iter().all(|l| !l.contains(&"svc".to_owned())),
        "listed before a check passed"
    );
    assert_eq!(server.peers(), ["stable"]);

    for _ in 0..2 {
        touch(&file);
        wait_for(&lists, |l| l == ["stable", "svc"], limit());
        remove(&file);
        wait_for(&lists, |l| l == ["stable"], limit());
    }
    let log = join.stderr();
    assert!(
        log.contains("--check passes (exited with status 0)"),
        "{log}"
    );
    assert!(
        log.contains("svc is listed") && log.contains("svc is not listed"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether a process whose command line contains `marker` is running.
fn running_with(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

#[test]
fn a_hanging_check_is_killed_after_its_timeout_and_fails() {
    let bin = binary_or_return!();
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let dir = scratch("hang");
    let file = dir.join("up");
    // Without the file the check hangs (in a subshell and a background
    // job, all in its process group). The odd duration marks its
    // processes, to find any left behind.
    let marker = format!("987.{}", std::process::id());
    let check = format!(
        "test -e '{}' || {{ sleep {marker} & sleep {marker}; }}",
        path_str(&file)
    );
    touch(&file);
    let mut join = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "svc",
            "--check",
            &check,
            "--check-interval",
            "100ms",
            "--check-timeout",
            "1s",
        ],
    );
    wait_for_list(&lists, &["svc"]);
    remove(&file);
    // The hung check is killed at its timeout and counts as a failure.
    wait_for(&lists, |l| l.is_empty(), limit());
    join.wait_stderr("the timeout", limit(), |e| {
        e.contains("--check fails (timed out after 1s: killed)")
    });
    // Back when the check passes again.
    touch(&file);
    wait_for_list(&lists, &["svc"]);
    remove(&file);
    wait_for(&lists, |l| l.is_empty(), limit());
    // Stopping the daemon kills a check in progress too; none is left.
    join.signal(libc::SIGTERM);
    assert_eq!(join.wait_exit_within(limit()).code(), Some(0));
    let deadline = Instant::now() + limit();
    while running_with(&marker) {
        assert!(
            Instant::now() < deadline,
            "a hung check outlived its timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--fall 3` and `--rise 2`, driven by a check that reads and bumps a
/// counter: deterministic whatever the timing.
#[test]
fn fall_and_rise_count_consecutive_results() {
    let bin = binary_or_return!();
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let dir = scratch("fall");
    let counter = dir.join("n");
    // Check n passes except: 3 (alone), 6 and 7 (two in a row), then 9,
    // 10 and 11 (three in a row: the name leaves at 11), 13 (alone, while
    // rising: it resets the count), and from 14 on it passes (back at 15).
    let check = format!(
        "n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'; \
         case $n in 3|6|7|9|10|11|13) echo \"failure $n\" >&2; exit 1;; esac",
        c = path_str(&counter)
    );
    let join = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "svc",
            "--check",
            &check,
            "--check-interval",
            "100ms",
            "--fall",
            "3",
            "--rise",
            "2",
            // No check may time out here (it takes milliseconds): only the
            // counter decides.
            "--check-timeout",
            "60s",
        ],
    );
    let count = || -> u32 {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_for_list(&lists, &["svc"]);
    wait_for(&lists, |l| l.is_empty(), limit());
    // The first leave came only with the third failure in a row.
    let at = count();
    assert!(at >= 11, "left after check {at}");
    wait_for_list(&lists, &["svc"]);
    let at = count();
    assert!(at >= 15, "back after check {at}");
    let log = join.stderr();
    assert_eq!(log.matches("svc is not listed").count(), 1, "{log}");
    assert!(
        log.contains("--check fails (exited with status 1: failure 11)"),
        "{log}"
    );
    assert!(
        log.contains("--check passes (exited with status 0)"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_maintenance_file_overrides_everything() {
    let bin = binary_or_return!();
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let _stable = nng_discovery::Client::new(server.survey_url(), "stable").expect("client");
    wait_for_list(&lists, &["stable"]);
    let dir = scratch("maint");
    let file = dir.join("maintenance");
    touch(&file);
    // No --check: the maintenance file alone (looked at every 100 ms).
    let plain = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "plain",
            "--maintenance-file",
            path_str(&file),
            "--check-interval",
            "100ms",
        ],
    );
    // With a passing check too: the file wins.
    let checked = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "checked",
            "--check",
            "true",
            "--maintenance-file",
            path_str(&file),
            "--check-interval",
            "100ms",
        ],
    );
    for d in [&plain, &checked] {
        d.wait_stderr("the maintenance file", limit(), |e| {
            e.contains("maintenance file") && e.contains("exists")
        });
    }
    checked.wait_stderr("a passing check", limit(), |e| e.contains("--check passes"));
    assert!(
        drain(&lists).iter().all(|l| l == &["stable"]),
        "listed while in maintenance"
    );
    remove(&file);
    wait_for_list(&lists, &["checked", "plain", "stable"]);
    touch(&file);
    wait_for_list(&lists, &["stable"]);
    remove(&file);
    wait_for_list(&lists, &["checked", "plain", "stable"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn drain_leaves_at_once_and_exits_after_the_duration() {
    let bin = binary_or_return!();
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let mut join = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "svc",
            "--drain",
            "1s",
        ],
    );
    wait_for_list(&lists, &["svc"]);
    let signalled = Instant::now();
    join.signal(libc::SIGTERM);
    wait_for(&lists, |l| l.is_empty(), limit());
    let status = join.wait_exit_within(limit());
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", join.stderr());
    // A lower bound only: it cannot exit before the drain is over.
    assert!(took >= Duration::from_millis(950), "exited after {took:?}");
    assert!(
        join.stderr().contains("draining for 1s"),
        "{}",
        join.stderr()
    );
}

#[test]
fn a_second_signal_ends_the_drain_early() {
    let bin = binary_or_return!();
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let lists = sub.changes();
    let mut join = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            server.survey_url(),
            "--name",
            "svc",
            "--drain",
            "1h",
        ],
    );
    wait_for_list(&lists, &["svc"]);
    join.signal(libc::SIGTERM);
    // The name leaves while the process keeps running (its drain is 1 h).
    wait_for(&lists, |l| l.is_empty(), limit());
    assert!(!join.exited(), "{}", join.stderr());
    join.wait_stderr("the drain", limit(), |e| e.contains("draining for"));
    join.signal(libc::SIGINT);
    let status = join.wait_exit_within(limit());
    assert_eq!(status.code(), Some(0), "{}", join.stderr());
    assert!(
        join.stderr().contains("SIGINT: ending the drain early"),
        "{}",
        join.stderr()
    );
}
