//! The `nng-discovery` binary, driven as child processes on loopback.
//!
//! Each test starts its own server on `tcp://127.0.0.1:0` and reads the
//! ports it bound from the `survey URL` / `publish URL` lines it prints.
//! Children are read through threads and channels with timeouts, and killed
//! by a guard if a test fails; nothing here sleeps to synchronise.

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::daemon::{
    assert_exit, binary, exited_within, patience, run, server_args, slow_arg, start_server,
    start_server_with, Proc,
};
use crossbeam_channel::unbounded;

macro_rules! binary_or_return {
    () => {
        match binary() {
            Some(path) => path,
            None => return,
        }
    };
}

#[test]
fn help_for_every_command() {
    let bin = binary_or_return!();
    let cases: [(&[&str], &str, &[&str]); 7] = [
        (
            &["--help"],
            "nng-discovery: service discovery",
            &["server", "join", "watch", "RUST_LOG", "Exit status"],
        ),
        (&["-h"], "nng-discovery: service discovery", &[]),
        (
            &["help", "join"],
            "nng-discovery join:",
            &["--survey", "--name", "--publish", "--json"],
        ),
        (
            &["server", "--help"],
            "nng-discovery server:",
            &[
                "--survey",
                "--publish",
                "--poll-interval",
                "--survey-time",
                "--miss-threshold",
                "--republish-interval",
                "--max-peers",
                "SIGTERM",
            ],
        ),
        (
            &["join", "-h"],
            "nng-discovery join:",
            &[
                "--survey",
                "--name",
                "--publish",
                "--watch",
                "--watch-keepalive",
                "--json",
                "SIGTERM",
            ],
        ),
        (
            &["watch", "--help"],
            "nng-discovery watch:",
            &[
                "--publish",
                "--watch",
                "--watch-keepalive",
                "--json",
                "--exec",
                "NNG_DISCOVERY_PEERS",
                "NNG_DISCOVERY_PEERS_JSON",
                "NNG_DISCOVERY_COUNT",
                "standard input",
                "SIGTERM",
            ],
        ),
        (
            &["watch", "--publish", "tcp://127.0.0.1:1", "-h"],
            "nng-discovery watch:",
            &[],
        ),
    ];
    for (args, heading, mentions) in cases {
        let (status, out, err) = run(bin, args);
        assert_exit(status, 0, &format!("{args:?}"));
        assert!(out.starts_with(heading), "{args:?}: {out}");
        for m in mentions {
            assert!(
                out.contains(m),
                "{args:?}: help does not mention {m}:\n{out}"
            );
        }
        assert!(err.is_empty(), "{args:?}: stderr: {err}");
    }
    let (status, out, _) = run(bin, &["--version"]);
    assert_exit(status, 0, "--version");
    assert!(out.starts_with("nng-discovery "), "{out}");
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_the_flag() {
    let bin = binary_or_return!();
    let with = server_args;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "a command is needed"),
        (vec!["serve"], "unknown command \"serve\""),
        (vec!["server", "--survey", "tcp://127.0.0.1:0"], "--publish"),
        (
            with(&["--poll-interval", "abc"]),
            "invalid --poll-interval \"abc\": expected a duration like 250ms or 2s",
        ),
        (with(&["--survey-time=5"]), "invalid --survey-time \"5\""),
        (
            with(&["--survey-time", "2s", "--poll-interval", "1s"]),
            "invalid --survey-time:",
        ),
        (
            with(&["--miss-threshold", "0"]),
            "invalid --miss-threshold \"0\"",
        ),
        (with(&["--bogus"]), "unknown option --bogus"),
        (with(&["--survey", "x"]), "--survey given more than once"),
        (
            vec!["join", "--survey", "tcp://127.0.0.1:1", "--name", "a|b"],
            "invalid --name \"a|b\"",
        ),
        (vec!["join", "--survey", "tcp://127.0.0.1:1"], "--name"),
        (vec!["watch", "--json"], "--publish"),
        (vec!["watch", "--publish"], "--publish needs a value"),
        (
            vec!["watch", "--publish", "tcp://127.0.0.1:1", "extra"],
            "unexpected argument \"extra\"",
        ),
        (vec!["watch"], "watch needs --publish URL or --watch URL"),
        (
            vec![
                "watch",
                "--publish",
                "tcp://127.0.0.1:1",
                "--watch",
                "tcp://127.0.0.1:2",
            ],
            "--publish and --watch cannot be used together",
        ),
        (
            vec![
                "join",
                "--survey",
                "tcp://127.0.0.1:1",
                "--name",
                "n",
                "--watch",
                "tcp://127.0.0.1:2",
                "--publish",
                "tcp://127.0.0.1:3",
            ],
            "cannot be used together",
        ),
        (
            vec![
                "watch",
                "--publish",
                "tcp://127.0.0.1:1",
                "--watch-keepalive",
                "1s",
            ],
            "--watch-keepalive needs --watch URL",
        ),
    ];
    for (args, want) in cases {
        let (status, out, err) = run(bin, &args);
        assert_exit(status, 2, &format!("{args:?}"));
        assert!(out.is_empty(), "{args:?}: stdout: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.starts_with("nng-discovery: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
    }
}

#[test]
fn runtime_errors_exit_1_with_one_line_naming_the_url() {
    let bin = binary_or_return!();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = taken.local_addr().expect("its address").port();
    let in_use = format!("tcp://127.0.0.1:{port}");
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "server",
                "--survey",
                &in_use,
                "--publish",
                "tcp://127.0.0.1:0",
            ],
            "already in use",
        ),
        (
            &[
                "server",
                "--survey",
                "bogus://x",
                "--publish",
                "tcp://127.0.0.1:0",
            ],
            "\"bogus://x\"",
        ),
        (
            &["join", "--survey", "nonsense", "--name", "a"],
            "\"nonsense\"",
        ),
        (&["watch", "--publish", "tcp://"], "\"tcp://\""),
    ];
    for (args, want) in cases {
        let (status, _, err) = run(bin, args);
        assert_exit(status, 1, &format!("{args:?}"));
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("nng-discovery: "), "{args:?}: {err}");
        assert!(last.contains(want), "{args:?}: {last:?} lacks {want:?}");
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("nng-discovery: "))
                .count(),
            1,
            "{args:?}: {err}"
        );
    }
    drop(taken);
}

#[test]
fn server_join_watch_and_clean_signals() {
    let bin = binary_or_return!();
    let (mut server, survey, publish) = start_server(bin);
    let watch = Proc::start(bin, &["watch", "--publish", &publish]);
    let mut watch_json = Proc::start(bin, &["watch", "--publish", &publish, "--json"]);

    let mut alpha = Proc::start(bin, &["join", "--survey", &survey, "--name", "alpha"]);
    let mut beta = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            &survey,
            "--name",
            "http://beta:8080",
            "--publish",
            &publish,
        ],
    );
    watch.expect("alpha http://beta:8080");
    watch_json.expect(r#"["alpha","http://beta:8080"]"#);
    // join --publish prints the lists too.
    beta.expect("alpha http://beta:8080");
    // watch --once prints the current list and exits.
    let (status, out, _) = run(bin, &["watch", "--publish", &publish, "--once", "--json"]);
    assert_exit(status, 0, "watch --once");
    assert_eq!(out, "[\"alpha\",\"http://beta:8080\"]\n");

    // A SIGTERM'd join leaves at once and exits 0.
    alpha.signal(libc::SIGTERM);
    assert_exit(alpha.wait_exit(), 0, "join after SIGTERM");
    watch.expect("http://beta:8080");
    watch_json.expect(r#"["http://beta:8080"]"#);
    beta.expect("http://beta:8080");

    // SIGINT works as well as SIGTERM.
    beta.signal(libc::SIGINT);
    assert_exit(beta.wait_exit(), 0, "join --publish after SIGINT");
    watch.expect("");
    watch_json.expect("[]");

    watch_json.signal(libc::SIGTERM);
    assert_exit(watch_json.wait_exit(), 0, "watch after SIGTERM");

    server.signal(libc::SIGTERM);
    assert_exit(server.wait_exit(), 0, "server after SIGTERM");
    let log = server.stderr();
    for want in [
        "joined: alpha",
        "left: alpha",
        "joined: http://beta:8080",
        "SIGTERM",
        // The counters, logged once a minute and once more at shutdown.
        "stats: peers=0 connections=0",
        "refused_invalid=0",
    ] {
        assert!(log.contains(want), "server log lacks {want:?}:\n{log}");
    }
    // The watcher outlives the server (it redials) until it is told to stop.
    let mut watch = watch;
    watch.signal(libc::SIGINT);
    assert_exit(watch.wait_exit(), 0, "watch after SIGINT");
}

/// `join --watch` and `watch --watch` follow a `server --watch`: the same
/// lines as with --publish, and --once too.
#[test]
fn join_and_watch_follow_a_watch_url() {
    let bin = binary_or_return!();
    let (_server_a, survey_a, watch_a) = start_watch_server(bin);
    let (_server_b, survey_b, watch_b) = start_watch_server(bin);
    let watch = Proc::start(bin, &["watch", "--watch", &watch_a, "--watch", &watch_b]);
    watch.expect("");
    let join = Proc::start(
        bin,
        &[
            "join", "--survey", &survey_a, "--name", "alpha", "--watch", &watch_a, "--json",
        ],
    );
    watch.expect("alpha");
    // The join's own lists, from server a's watch URL.
    join.expect(r#"["alpha"]"#);
    let mut beta = Proc::start(bin, &["join", "--survey", &survey_b, "--name", "beta"]);
    watch.expect("alpha beta");
    let (status, out, _) = run(
        bin,
        &[
            "watch",
            "--watch",
            &watch_b,
            "--watch-keepalive",
            "10s",
            "--once",
            "--json",
        ],
    );
    assert_exit(status, 0, "watch --watch --once");
    assert_eq!(out, "[\"beta\"]\n");
    beta.signal(libc::SIGTERM);
    assert_exit(beta.wait_exit(), 0, "join after SIGTERM");
    watch.expect("alpha");
}

/// A server with a watch URL on free loopback ports; returns it with its
/// survey and watch URLs.
fn start_watch_server(bin: &str) -> (Proc, String, String) {
    let (server, survey, _publish) = start_server_with(bin, &["--watch", "tcp://127.0.0.1:0"]);
    let watch = server.next_url("watch");
    (server, survey, watch)
}

#[test]
fn a_join_started_before_its_server_registers_when_it_comes_up() {
    let bin = binary_or_return!();
    // Learn two free ports from a first server, stop it, and start the
    // join before a second server on the same ports.
    let (mut first, survey, publish) = start_server(bin);
    first.signal(libc::SIGTERM);
    assert_exit(first.wait_exit(), 0, "first server");
    let _join = Proc::start(bin, &["join", "--survey", &survey, "--name", "early"]);
    let watch = Proc::start(bin, &["watch", "--publish", &publish]);
    let survey_time = slow_arg(Duration::from_millis(100));
    let _server = Proc::start(
        bin,
        &[
            "server",
            "--survey",
            &survey,
            "--publish",
            &publish,
            "--survey-time",
            &survey_time,
        ],
    );
    watch.expect("early");
}

/// The shell command for `--exec` tests: prints what it was given on one
/// line, after the marker `EXEC`.
const REPORT: &str = r#"printf 'EXEC %s|%s|%s|%s\n' "$NNG_DISCOVERY_COUNT" "$NNG_DISCOVERY_PEERS" "$NNG_DISCOVERY_PEERS_JSON" "$(tr '\n' ',')""#;

#[test]
fn exec_gets_the_list_in_every_form() {
    let bin = binary_or_return!();
    let (_server, survey, publish) = start_server(bin);
    // An inherited value must not leak through.
    let watch = Proc::start_with(
        bin,
        &["watch", "--publish", &publish, "--exec", REPORT],
        &[("NNG_DISCOVERY_PEERS", "stale")],
    );
    // The first list, empty, runs the command too.
    watch.expect("EXEC 0||[]|");
    let _a = Proc::start(bin, &["join", "--survey", &survey, "--name", "a"]);
    let mut spaced = Proc::start(bin, &["join", "--survey", &survey, "--name", "b c"]);
    watch.expect(r#"EXEC 2|a b c|["a","b c"]|a,b c,"#);
    spaced.signal(libc::SIGTERM);
    assert_exit(spaced.wait_exit(), 0, "join");
    watch.expect(r#"EXEC 1|a|["a"]|a,"#);
}

/// Makes a FIFO for gating a command, in the temporary directory.
fn fifo(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "nngd-cli-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .expect("no NUL");
    // SAFETY: `c` is a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    path
}

/// Lets one command blocked reading the FIFO go on: opens it for writing
/// (which waits for the reader) and closes it, so the reader sees EOF.
fn open_gate(path: &std::path::Path) {
    let path = path.to_owned();
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map(drop),
        );
    });
    match rx.recv_timeout(patience()) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("opening the gate: {e}"),
        Err(_) => panic!("no command was waiting at the gate"),
    }
}

#[test]
fn exec_runs_one_at_a_time_and_only_the_latest_list_next() {
    let bin = binary_or_return!();
    let gate = fifo("gate");
    let command = format!(
        r#"echo "START $NNG_DISCOVERY_PEERS"; cat '{}' >/dev/null; echo "END $NNG_DISCOVERY_PEERS""#,
        gate.display()
    );
    let (_server, survey, publish) = start_server(bin);
    let watch = Proc::start(bin, &["watch", "--publish", &publish, "--exec", &command]);
    watch.expect("START ");
    // Two changes while the first command is held at the gate: both are
    // printed, but only the second one will run.
    let _a = Proc::start(bin, &["join", "--survey", &survey, "--name", "a"]);
    watch.expect("a");
    let _b = Proc::start(bin, &["join", "--survey", &survey, "--name", "b"]);
    watch.expect("a b");
    open_gate(&gate);
    // Every line from here on is checked: END of the first run, then the
    // latest list's START, never "START a", never two STARTs in a row.
    let next = || {
        watch.expect_line("from the command", |l| {
            l.starts_with("START") || l.starts_with("END")
        })
    };
    assert_eq!(next(), "END ");
    assert_eq!(next(), "START a b");
    open_gate(&gate);
    assert_eq!(next(), "END a b");
    let _ = std::fs::remove_file(&gate);
}

#[test]
fn stopping_watch_stops_its_running_command() {
    let bin = binary_or_return!();
    let (_server, _survey, publish) = start_server(bin);
    // The command prints its pid, then runs (as that pid) until killed.
    let mut watch = Proc::start(
        bin,
        &[
            "watch",
            "--publish",
            &publish,
            "--exec",
            "echo PID $$; exec sleep 1000",
        ],
    );
    let line = watch.expect_line("with the command's pid", |l| l.starts_with("PID "));
    let pid: libc::pid_t = line["PID ".len()..].parse().expect("a pid");
    watch.signal(libc::SIGTERM);
    let status = watch.wait_exit();
    assert_exit(status, 0, "watch after SIGTERM with a command running");
    // Sleep died of the forwarded SIGTERM, not of the SIGKILL that follows
    // the 5 s grace (which watch logs).
    assert!(
        !watch.stderr().contains("SIGKILL"),
        "the --exec command needed SIGKILL:\n{}",
        watch.stderr()
    );
    // The command was its child and has been reaped: the pid is gone.
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    assert_eq!(rc, -1, "the --exec command {pid} still exists");
    assert!(watch.stderr().contains("stopping the --exec command"));
}

#[test]
fn a_failing_exec_command_is_logged_and_watching_goes_on() {
    let bin = binary_or_return!();
    let (_server, survey, publish) = start_server(bin);
    let watch = Proc::start(
        bin,
        &[
            "watch",
            "--publish",
            &publish,
            "--exec",
            r#"echo "RAN $NNG_DISCOVERY_COUNT"; exit 3"#,
        ],
    );
    watch.expect("RAN 0");
    let _a = Proc::start(bin, &["join", "--survey", &survey, "--name", "a"]);
    watch.expect("RAN 1");
    // Its stderr is complete once it has exited.
    let mut watch = watch;
    watch.signal(libc::SIGTERM);
    assert_exit(watch.wait_exit(), 0, "watch after SIGTERM");
    let log = watch.stderr();
    assert!(log.contains("exited with status 3"), "{log}");
}

#[test]
fn watch_stops_when_its_stdout_closes() {
    let bin = binary_or_return!();
    let (_server, survey, publish) = start_server(bin);
    let mut child = Command::new(bin)
        .args(["watch", "--publish", &publish])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting watch");
    let mut out = child.stdout.take().expect("piped");
    let mut first = [0u8; 1];
    // The first list is the empty line: read it, then close the pipe like
    // `head -1` does.
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let r = out.read_exact(&mut first).map(|()| first[0]);
        let _ = tx.send(r);
        drop(out);
    });
    let mut guard = ProcGuard(Some(child));
    assert_eq!(
        rx.recv_timeout(patience()).expect("a first line").ok(),
        Some(b'\n')
    );
    // The next list it prints fails with EPIPE: make one.
    let _a = Proc::start(bin, &["join", "--survey", &survey, "--name", "a"]);
    let status = guard.wait_within(patience());
    assert_exit(status, 0, "watch with its stdout closed");
}

/// Kills a plain child on drop.
struct ProcGuard(Option<Child>);

impl ProcGuard {
    fn wait_within(&mut self, limit: Duration) -> ExitStatus {
        let child = self.0.as_mut().expect("a child");
        let pid = child.id();
        assert!(
            exited_within(pid, limit),
            "child {pid} did not exit within {limit:?}"
        );
        let status = child.wait().expect("reaping the child");
        self.0 = None;
        status
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn options_take_their_value_after_an_equals_sign_too() {
    let bin = binary_or_return!();
    let server = Proc::start(
        bin,
        &[
            "server",
            "--survey=tcp://127.0.0.1:0",
            "--publish=tcp://127.0.0.1:0",
            "--poll-interval=1s",
            "--survey-time=100ms",
            "--miss-threshold=2",
            "--republish-interval=1m30s",
            "--max-peers=10",
        ],
    );
    let survey = server.expect_line("survey URL", |l| l.starts_with("survey "));
    let publish = server.expect_line("publish URL", |l| l.starts_with("publish "));
    let survey = format!("--survey={}", &survey["survey ".len()..]);
    let publish = format!("--publish={}", &publish["publish ".len()..]);
    let watch = Proc::start(
        bin,
        &["watch", &publish, "--exec=echo RAN $NNG_DISCOVERY_COUNT"],
    );
    let _join = Proc::start(bin, &["join", &survey, "--name=a=b"]);
    watch.expect("a=b");
    watch.expect("RAN 1");
}

#[test]
fn a_misspelt_option_or_command_gets_a_suggestion() {
    let bin = binary_or_return!();
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "server",
                "--survey",
                "tcp://127.0.0.1:0",
                "--publish",
                "tcp://127.0.0.1:0",
                "--poll-intervall",
                "1s",
            ],
            "unknown option --poll-intervall for server: did you mean --poll-interval?",
        ),
        (
            &["watch", "--pubilsh", "tcp://127.0.0.1:1"],
            "unknown option --pubilsh for watch: did you mean --publish?",
        ),
        (
            &["wacth", "--publish", "tcp://127.0.0.1:1"],
            "unknown command \"wacth\": did you mean \"watch\"?",
        ),
    ];
    for (args, want) in cases {
        let (status, out, err) = run(bin, args);
        assert_exit(status, 2, &format!("{args:?}"));
        assert!(out.is_empty(), "{args:?}: stdout: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(
            err.starts_with(&format!("nng-discovery: {want}")),
            "{args:?}: {err:?} does not start with {want:?}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let bin = binary_or_return!();
    for shell in ["bash", "zsh", "fish"] {
        let (status, out, err) = run(bin, &["completions", shell]);
        assert_exit(status, 0, &format!("completions {shell}"));
        assert!(err.is_empty(), "{shell}: stderr: {err}");
        for word in ["nng-discovery", "server", "join", "watch", "completions"] {
            assert!(out.contains(word), "{shell}: script lacks {word}:\n{out}");
        }
    }
    let (status, out, err) = run(bin, &["completions", "tcsh"]);
    assert_exit(status, 2, "completions tcsh");
    assert!(out.is_empty(), "stdout: {out}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(
        err.starts_with("nng-discovery: invalid SHELL \"tcsh\": expected bash, zsh, fish"),
        "{err}"
    );
}

/// `--ipc-mode 660` gives socket files of mode 0660 exactly, whatever the
/// umask: under umask 022 (the default for root and systemd services) NNG
/// 1.4 alone left 0640. The umask is set in a shell that then execs the
/// daemon, so this test process's own umask is untouched.
#[test]
fn ipc_mode_is_exact_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let bin = binary_or_return!();
    let dir = std::env::temp_dir().join(format!("nngd-ipc-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let survey = format!("ipc://{}/s", dir.display());
    let publish = format!("ipc://{}/p", dir.display());
    let server = Proc::start(
        "/bin/sh",
        &[
            "-c",
            "umask 022 && exec \"$0\" \"$@\"",
            bin,
            "server",
            "--survey",
            &survey,
            "--publish",
            &publish,
            "--ipc-mode",
            "660",
        ],
    );
    server.expect_line("publish URL", |l| l.starts_with("publish "));
    for url in [&survey, &publish] {
        let path = url.strip_prefix("ipc://").expect("ipc URL");
        let mode = std::fs::metadata(path)
            .expect("socket file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o660, "{path}: {mode:o}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every flag can come from NNG_DISCOVERY_<FLAG>; the command line wins
/// over the variable; a bad value from a variable names the variable.
#[test]
fn flags_come_from_the_environment_and_the_command_line_wins() {
    let bin = binary_or_return!();
    // Only the command: both URLs, and the metrics address, from variables.
    let mut server = Proc::start_with(
        bin,
        &["server"],
        &[
            ("NNG_DISCOVERY_SURVEY", "tcp://127.0.0.1:0"),
            ("NNG_DISCOVERY_PUBLISH", "tcp://127.0.0.1:0"),
            ("NNG_DISCOVERY_METRICS", "127.0.0.1:0"),
            ("NNG_DISCOVERY_REQUIRE_PEER_HOST", "true"),
        ],
    );
    server.expect_line("survey URL", |l| l.starts_with("survey tcp://127.0.0.1:"));
    server.expect_line("metrics URL", |l| {
        l.starts_with("metrics http://127.0.0.1:")
    });
    server.signal(libc::SIGTERM);
    assert_exit(server.wait_exit(), 0, "server from the environment");

    // The command line wins: the variables' values are invalid, and never
    // read because the flags are given.
    let mut server = Proc::start_with(
        bin,
        &server_args(&["--poll-interval", "2s"]),
        &[
            ("NNG_DISCOVERY_SURVEY", "bogus://x"),
            ("NNG_DISCOVERY_POLL_INTERVAL", "soon"),
        ],
    );
    server.expect_line("survey URL", |l| l.starts_with("survey tcp://127.0.0.1:"));
    server.signal(libc::SIGTERM);
    assert_exit(server.wait_exit(), 0, "server with both");

    // A bad value from a variable: a usage error that names the variable.
    let mut server = Proc::start_with(
        bin,
        &server_args(&[]),
        &[("NNG_DISCOVERY_POLL_INTERVAL", "soon")],
    );
    assert_exit(server.wait_exit(), 2, "bad variable");
    let err = server.stderr();
    assert!(
        err.contains("invalid --poll-interval \"soon\" (from NNG_DISCOVERY_POLL_INTERVAL)"),
        "{err}"
    );
}

/// Log lines start with `[`, an RFC 3339 UTC timestamp to the millisecond,
/// and the level: `[2026-12-07T01:43:00.123Z INFO  target] message`.
#[test]
fn log_lines_carry_an_rfc3339_utc_timestamp_and_the_level() {
    let bin = binary_or_return!();
    let (mut server, _, _) = start_server(bin);
    server.signal(libc::SIGTERM);
    assert_exit(server.wait_exit(), 0, "server");
    let err = server.stderr();
    let shutting_down = err
        .lines()
        .find(|l| l.contains("SIGTERM: shutting down"))
        .unwrap_or_else(|| panic!("no shutdown line in:\n{err}"));
    let mut lines = 0;
    for line in err.lines() {
        lines += 1;
        let stamp = line
            .strip_prefix('[')
            .and_then(|l| l.get(..24))
            .unwrap_or_else(|| panic!("{line:?}"));
        // YYYY-MM-DDTHH:MM:SS.mmmZ
        for (i, c) in stamp.chars().enumerate() {
            let ok = match i {
                4 | 7 => c == '-',
                10 => c == 'T',
                13 | 16 => c == ':',
                19 => c == '.',
                23 => c == 'Z',
                _ => c.is_ascii_digit(),
            };
            assert!(ok, "character {i} of the timestamp in {line:?}");
        }
        let level = line[25..].split_whitespace().next().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "{line:?}"
        );
    }
    assert!(lines >= 2, "{err}");
    assert!(
        shutting_down[26..].starts_with("INFO  "),
        "{shutting_down:?}"
    );
}

/// `server` under systemd's `Type=notify`: `READY=1` on $NOTIFY_SOCKET once
/// it listens, `STOPPING=1` on SIGTERM; a socket file and an abstract name.
#[test]
fn server_notifies_systemd_when_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let bin = binary_or_return!();
    let dir = std::env::temp_dir().join(format!("nngd-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("notify");
    let _ = std::fs::remove_file(&path);
    let file = UnixDatagram::bind(&path).expect("binding the notify socket");
    let abstract_name = format!("nngd-notify-test-{}", std::process::id());
    #[cfg(target_os = "linux")]
    let abstract_socket = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .expect("abstract address");
        UnixDatagram::bind_addr(&addr).expect("binding the abstract socket")
    };
    let mut cases = vec![(file, path.to_str().expect("UTF-8 path").to_owned())];
    #[cfg(target_os = "linux")]
    cases.push((abstract_socket, format!("@{abstract_name}")));
    for (socket, notify_socket) in cases {
        socket
            .set_read_timeout(Some(patience()))
            .expect("read timeout");
        let recv = |what: &str| {
            let mut buf = [0u8; 256];
            match socket.recv(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) => panic!("{notify_socket}: no {what}: {e}"),
            }
        };
        let mut server = Proc::start_with(
            bin,
            &server_args(&[]),
            &[("NOTIFY_SOCKET", notify_socket.as_str())],
        );
        assert_eq!(recv("READY=1"), "READY=1", "{notify_socket}");
        // Ready means bound: its URLs are printed already.
        server.expect_line("publish URL", |l| l.starts_with("publish "));
        server.signal(libc::SIGTERM);
        assert_eq!(recv("STOPPING=1"), "STOPPING=1", "{notify_socket}");
        assert_exit(server.wait_exit(), 0, &notify_socket);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `join` and `watch` warn when no server has been heard for
/// --silence-timeout (here nothing listens at the URL), and `join` logs
/// when surveys resume once a server comes up there.
#[test]
fn join_and_watch_warn_when_no_server_is_heard() {
    let bin = binary_or_return!();
    let survey = common::ipc_url("silent-survey");
    let publish = common::ipc_url("silent-publish");
    let mut join = Proc::start(
        bin,
        &[
            "join",
            "--survey",
            &survey,
            "--name",
            "n",
            "--silence-timeout",
            "200ms",
        ],
    );
    let mut watch = Proc::start(
        bin,
        &["watch", "--publish", &publish, "--silence-timeout=200ms"],
    );
    join.wait_stderr("a silence warning", patience(), |e| {
        e.contains(" WARN ") && e.contains("no survey from any server for ") && e.contains(&survey)
    });
    watch.wait_stderr("a silence warning", patience(), |e| {
        e.contains(" WARN ") && e.contains("no list from any server for ") && e.contains(&publish)
    });
    // A server at those URLs: the join is surveyed, and says so.
    let server = Proc::start(bin, &["server", "--survey", &survey, "--publish", &publish]);
    join.wait_stderr("surveys resuming", patience(), |e| {
        e.contains("surveyed again")
    });
    watch.wait_stderr("the first list", patience(), |e| {
        e.contains("first list received")
    });
    for p in [&mut join, &mut watch] {
        p.signal(libc::SIGTERM);
        assert_exit(p.wait_exit(), 0, "join/watch");
    }
    drop(server);
}
