//! Scale benchmark: the discovery server against thousands of peers played
//! by the `loadgen` binary, beside a bare raw NNG surveyor loop (the cost
//! floor) measured in the same run.
//!
//! ```text
//! cargo bench --bench scale                 # everything, about 12 minutes plus 5 for watch
//! cargo bench --bench scale -- quick        # small sizes, short windows
//! cargo bench --bench scale -- only=churn   # sections: floor ours ipc mass churn clients stalls restart watch announce
//! cargo bench --bench scale -- only=announce # join by announcement: lone joins and mass connects at 10,000 peers, about 3 minutes
//! cargo bench --bench scale -- only=mass    # just the mass-connect rows, about 1 minute
//! cargo bench --bench scale -- only=restart # one server SIGKILLed and restarted under 2,000 redialing peers, 3 runs
//! cargo bench --bench scale -- only=watch   # issue 14: 5,000 watchers against 5,000 raw subscribers, about 5 minutes
//! cargo bench --bench scale -- only=starve  # a server held to 5% of a core for 60 s under 5,000 peers and 5,000 subscribers
//! cargo bench --bench scale -- only=follow  # 5,000 broadcast followers (docs/PROTOCOL.md, "Watch broadcast") against the bare PUB and join floors, about 5 minutes
//! cargo bench --bench scale -- keep-logs    # every child's output, to a directory in /tmp
//! ```
//!
//! The server (or the floor) runs in its own process pinned to core 0 and
//! the load generator in another pinned to core 1 (`taskset`), over
//! loopback TCP (and `ipc://` for one pair of rows). CPU is user + system
//! time from `/proc/PID/stat` over a steady window, as a percentage of one
//! core; RSS is `VmRSS` at the end of the window. Nothing is built here:
//! the binaries are the package's own, which Cargo builds for the bench.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nng_discovery_loadgen::{procfs, Line};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const FLOOR: &str = env!("CARGO_BIN_EXE_floor");
const SERVER: &str = env!("CARGO_BIN_EXE_bench-server");
const CLIENTS: &str = env!("CARGO_BIN_EXE_clients");
const PUBFLOOR: &str = env!("CARGO_BIN_EXE_pubfloor");

/// With `keep-logs`, every child's output goes to a file in this directory.
static LOG_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
static LOG_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Longest wait for any single step (peers connecting, a list arriving).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

struct Plan {
    sizes: Vec<u32>,
    floor_window: Duration,
    ours_window: Duration,
    churn_window: Duration,
    clients_window: Duration,
    stall_window: Duration,
    stall_runs: usize,
    churn_peers: u32,
    churn_subs: Vec<u32>,
    clients: u32,
    mass_runs: usize,
    restart_runs: usize,
    watch: WatchPlan,
    starve: StarvePlan,
    sections: Vec<String>,
}

/// Sizes and durations of the `starve` section.
struct StarvePlan {
    peers: u32,
    /// How long the server is held to a few % of a core.
    window: Duration,
    /// The duty cycle: running this long, then stopped this long.
    running: Duration,
    stopped: Duration,
}

/// Sizes and windows of the `watch` section (issue 14).
struct WatchPlan {
    peers: u32,
    idle_window: Duration,
    churn_window: Duration,
    joins: usize,
    /// Lone joins timed in the `follow` section, messages timed one at a
    /// time by its PUB floor, and joins timed by its join floor.
    samples: usize,
}

impl Plan {
    fn from_args() -> Plan {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "quick");
        let sections = args
            .iter()
            .find_map(|a| a.strip_prefix("only="))
            .map(|s| s.split(',').map(String::from).collect())
            .unwrap_or_else(|| {
                [
                    "floor", "ours", "ipc", "mass", "churn", "clients", "stalls", "restart",
                    "watch", "starve", "announce", "follow",
                ]
                .map(String::from)
                .to_vec()
            });
        let s = Duration::from_secs;
        if quick {
            Plan {
                sizes: vec![200, 1000],
                floor_window: s(4),
                ours_window: s(6),
                churn_window: s(6),
                clients_window: s(4),
                stall_window: s(4),
                stall_runs: 2,
                churn_peers: 1000,
                churn_subs: vec![10, 200],
                clients: 200,
                mass_runs: 1,
                restart_runs: 1,
                watch: WatchPlan {
                    peers: 500,
                    idle_window: s(6),
                    churn_window: s(6),
                    joins: 5,
                    samples: 5,
                },
                starve: StarvePlan {
                    peers: 1000,
                    window: s(10),
                    running: Duration::from_millis(5),
                    stopped: Duration::from_millis(95),
                },
                sections,
            }
        } else {
            Plan {
                sizes: vec![1000, 5000, 10_000],
                floor_window: s(15),
                // 30 s holds exactly one republish (every 30 s by default).
                ours_window: s(30),
                churn_window: s(30),
                clients_window: s(15),
                stall_window: s(10),
                stall_runs: 5,
                churn_peers: 1000,
                churn_subs: vec![10, 1000],
                clients: 1000,
                mass_runs: 5,
                restart_runs: 3,
                watch: WatchPlan {
                    peers: 5000,
                    // 30 s holds one classic republish (every 30 s by
                    // default) and three watch keepalives per watcher.
                    idle_window: s(30),
                    churn_window: s(30),
                    joins: 20,
                    samples: 100,
                },
                starve: StarvePlan {
                    peers: 5000,
                    window: s(60),
                    running: Duration::from_millis(5),
                    stopped: Duration::from_millis(95),
                },
                sections,
            }
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

/// A child process whose stdout lines are collected with their arrival
/// time; closing its stdin asks it to stop.
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<(Instant, Line)>,
    lines: Vec<(Instant, Line)>,
    cursor: usize,
    started: Instant,
}

impl Proc {
    fn spawn(label: &str, exe: &str, args: &[String], core: Option<usize>) -> Proc {
        let mut cmd = match core {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string(), exe]);
                cmd
            }
            None => Command::new(exe),
        };
        let started = Instant::now();
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {label}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), Line::parse(&line))).is_err() {
                    break;
                }
            }
        });
        Proc {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            rx,
            lines: Vec::new(),
            cursor: 0,
            started,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pump(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    /// The next line (after those already returned) of `kind` for which
    /// `ok` holds, waiting up to `timeout`.
    fn wait_for(
        &mut self,
        kind: &str,
        ok: impl Fn(&Line) -> bool,
        timeout: Duration,
    ) -> Result<(Instant, Line), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            while self.cursor < self.lines.len() {
                let (at, line) = &self.lines[self.cursor];
                self.cursor += 1;
                if line.kind == kind && ok(line) {
                    return Ok((*at, line.clone()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{}: no `{kind}` line within {timeout:?}",
                    self.label
                ));
            }
            match self.rx.recv_timeout(left) {
                Ok(l) => self.lines.push(l),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited before a `{kind}` line", self.label))
                }
            }
        }
    }

    /// Forgets the lines received so far for `wait_for`: the next wait
    /// only sees lines that arrive from now on.
    fn skip_past(&mut self) {
        self.pump();
        self.cursor = self.lines.len();
    }

    /// Lines of `kind` received within `[from, to]`.
    fn between(&mut self, kind: &str, from: Instant, to: Instant) -> Vec<Line> {
        self.pump();
        self.lines
            .iter()
            .filter(|(at, l)| l.kind == kind && *at >= from && *at <= to)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The last line of `kind` received at or before `at`.
    fn last_before(&mut self, kind: &str, at: Instant) -> Option<Line> {
        self.pump();
        self.lines
            .iter()
            .rev()
            .find(|(t, l)| l.kind == kind && *t <= at)
            .map(|(_, l)| l.clone())
    }

    fn command(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{text}");
            let _ = stdin.flush();
        }
    }

    fn save_log(&mut self) {
        let Some(dir) = LOG_DIR.get() else { return };
        self.pump();
        let seq = LOG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut text = String::new();
        for (at, l) in &self.lines {
            let _ = write!(text, "{:.3} {}", (*at - self.started).as_secs_f64(), l.kind);
            for (k, v) in &l.fields {
                let _ = write!(text, " {k}={v}");
            }
            text.push('\n');
        }
        let _ = std::fs::write(dir.join(format!("{seq:03}-{}.log", self.label)), text);
    }

    fn cpu_ticks(&self) -> u64 {
        procfs::cpu_ticks(self.pid()).unwrap_or(0)
    }

    /// Closes stdin (every binary here stops at its end), waits, kills if
    /// it takes longer than 20 s.
    fn stop(self) {
        self.stop_within(Duration::from_secs(20));
    }

    /// Like `stop`, waiting up to `limit` before killing it.
    fn stop_within(mut self, limit: Duration) -> Duration {
        let t = Instant::now();
        drop(self.stdin.take());
        self.wait_exit(limit);
        let took = t.elapsed();
        // The reader thread ends with the child's stdout: take all it read.
        std::thread::sleep(Duration::from_millis(20));
        self.save_log();
        took
    }

    fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!("{}: did not stop in {limit:?}, killing it", self.label);
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU of several processes over one window, as % of one core.
struct Meter {
    ticks_per_s: f64,
}

impl Meter {
    fn window(&self, procs: &[&Proc], window: Duration) -> (Instant, Instant, Vec<f64>) {
        let before: Vec<u64> = procs.iter().map(|p| p.cpu_ticks()).collect();
        let t0 = Instant::now();
        std::thread::sleep(window);
        let after: Vec<u64> = procs.iter().map(|p| p.cpu_ticks()).collect();
        let t1 = Instant::now();
        let secs = (t1 - t0).as_secs_f64();
        let pct = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a - b) as f64 / self.ticks_per_s / secs * 100.0)
            .collect();
        (t0, t1, pct)
    }
}

fn rss_mb(p: &Proc) -> f64 {
    procfs::rss_kib(p.pid()).unwrap_or(0) as f64 / 1024.0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Ipc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ipc => "ipc",
        }
    }
}

/// Where a run's server listens.
struct Urls {
    dir: std::path::PathBuf,
    run: u32,
}

impl Urls {
    fn next(&mut self, t: Transport) -> (String, String) {
        self.run += 1;
        match t {
            Transport::Tcp => ("tcp://127.0.0.1:0".into(), "tcp://127.0.0.1:0".into()),
            Transport::Ipc => (
                format!("ipc://{}/survey-{}", self.dir.display(), self.run),
                format!("ipc://{}/publish-{}", self.dir.display(), self.run),
            ),
        }
    }
}

/// A steady-state measurement of a surveyor (ours or the floor).
#[derive(Clone, Default)]
struct Steady {
    cpu: f64,
    rss: f64,
    gen_cpu: f64,
    full_s: Option<f64>,
    answers_min: u64,
    answers_max: u64,
    surveys: usize,
    missed: u64,
    lists_per_min: Option<f64>,
}

fn answers_range(values: &[u64]) -> (u64, u64) {
    (
        values.iter().copied().min().unwrap_or(0),
        values.iter().copied().max().unwrap_or(0),
    )
}

fn s(v: impl Into<String>) -> String {
    v.into()
}

fn floor_run(
    meter: &Meter,
    urls: &mut Urls,
    t: Transport,
    n: u32,
    window: Duration,
) -> Result<Steady, String> {
    let (survey, _) = urls.next(t);
    let (mut floor, gen) = spawn_floor(survey, FAST_POLL, n, false)?;
    // Two whole surveys with everyone connected before measuring.
    floor.skip_past();
    floor.wait_for("survey", |_| true, STEP_TIMEOUT)?;
    floor.wait_for("survey", |_| true, STEP_TIMEOUT)?;
    let (t0, t1, cpu) = meter.window(&[&floor, &gen], window);
    let rss = rss_mb(&floor);
    let answers: Vec<u64> = floor
        .between("survey", t0, t1)
        .iter()
        .filter_map(|l| l.num("answers"))
        .collect();
    let (answers_min, answers_max) = answers_range(&answers);
    gen.stop();
    floor.stop();
    Ok(Steady {
        cpu: cpu[0],
        gen_cpu: cpu[1],
        rss,
        answers_min,
        answers_max,
        surveys: answers.len(),
        ..Steady::default()
    })
}

/// `joins` new peers join one at a time (loadgen command `join 1`), each
/// once the last reached every follower, `apart` after it; returns the ms
/// from each join until every follower held it.
fn time_lone_joins(gen: &mut Proc, joins: usize, apart: Duration) -> Result<Vec<f64>, String> {
    gen.skip_past();
    let mut ms = Vec::new();
    for _ in 0..joins {
        gen.command("join 1");
        let (_, l) = gen.wait_for(
            "change",
            |l| l.get("kind") == Some("join"),
            Duration::from_secs(60),
        )?;
        ms.extend(l.num::<f64>("ms"));
        std::thread::sleep(apart);
    }
    Ok(ms)
}

/// A bare raw surveyor (`floor`, core 0) listening on `listen` at `poll`,
/// and a loadgen (core 1) of `n` peers connected to it. With `join`, the
/// join floor: the floor also publishes each announcement (`--publish`,
/// not armed yet), and the loadgen's peers announce and redial, beside `n`
/// SUB connections to that PUB.
fn spawn_floor(listen: String, poll: Poll, n: u32, join: bool) -> Result<(Proc, Proc), String> {
    let mut args = vec![
        s("--listen"),
        listen,
        s("--poll-ms"),
        poll.poll_ms.to_string(),
        s("--survey-ms"),
        poll.survey_ms.to_string(),
    ];
    if join {
        args.extend([s("--publish"), s("tcp://127.0.0.1:0")]);
    }
    let mut floor = Proc::spawn("floor", FLOOR, &args, Some(0));
    let (_, ready) = floor.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let url = ready.get("url").unwrap_or_default().to_owned();
    let mut args = vec![s("--survey"), url, s("--peers"), n.to_string()];
    if join {
        let publish = ready.get("publish").unwrap_or_default().to_owned();
        args.extend([
            s("--publish"),
            publish,
            s("--subs"),
            n.to_string(),
            s("--redial"),
            s("--announce"),
            s("--report-ms"),
            s("100"),
        ]);
    }
    let mut gen = Proc::spawn("loadgen", LOADGEN, &args, Some(1));
    gen.wait_for("connected", |_| true, STEP_TIMEOUT)?;
    Ok((floor, gen))
}

/// Options for bench-server: poll and survey times in ms.
#[derive(Clone, Copy)]
struct Poll {
    poll_ms: u64,
    survey_ms: u64,
}

const FAST_POLL: Poll = Poll {
    poll_ms: 1000,
    survey_ms: 500,
};
const DEFAULT_POLL: Poll = Poll {
    poll_ms: 5000,
    survey_ms: 1000,
};

fn start_server(
    urls: &mut Urls,
    t: Transport,
    poll: Poll,
) -> Result<(Proc, String, String), String> {
    start_server_with(urls, t, poll, &[])
}

/// `start_server` with more bench-server arguments.
fn start_server_with(
    urls: &mut Urls,
    t: Transport,
    poll: Poll,
    extra: &[String],
) -> Result<(Proc, String, String), String> {
    let (survey, publish) = urls.next(t);
    let mut args = vec![
        s("--survey"),
        survey,
        s("--publish"),
        publish,
        s("--poll-ms"),
        poll.poll_ms.to_string(),
        s("--survey-ms"),
        poll.survey_ms.to_string(),
    ];
    args.extend_from_slice(extra);
    let mut server = Proc::spawn("bench-server", SERVER, &args, Some(0));
    let (_, ready) = server.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let survey = ready.get("survey").unwrap_or_default().to_owned();
    let publish = ready.get("publish").unwrap_or_default().to_owned();
    Ok((server, survey, publish))
}

fn ours_run(
    meter: &Meter,
    urls: &mut Urls,
    t: Transport,
    n: u32,
    poll: Poll,
    window: Duration,
) -> Result<Steady, String> {
    let (mut server, survey, publish) = start_server(urls, t, poll)?;
    let mut gen = Proc::spawn(
        "loadgen",
        LOADGEN,
        &[
            s("--survey"),
            survey,
            s("--publish"),
            publish,
            s("--peers"),
            n.to_string(),
            s("--subs"),
            s("1"),
        ],
        Some(1),
    );
    let (at, _) = gen.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
    let full_s = Some((at - server.started).as_secs_f64());
    // Let the round under way end and one whole round pass.
    server.skip_past();
    server.wait_for("round", |_| true, STEP_TIMEOUT)?;
    server.wait_for("round", |_| true, STEP_TIMEOUT)?;
    let (t0, t1, cpu) = meter.window(&[&server, &gen], window);
    let rss = rss_mb(&server);
    let rounds = server.between("round", t0, t1);
    let answers: Vec<u64> = rounds.iter().filter_map(|l| l.num("answers")).collect();
    let missed = rounds.iter().filter_map(|l| l.num::<u64>("missed")).sum();
    let publishes = |l: Option<Line>| l.and_then(|l| l.num::<f64>("publishes"));
    let lists_per_min = match (
        publishes(server.last_before("stats", t0)),
        publishes(server.last_before("stats", t1)),
    ) {
        (Some(a), Some(b)) => Some((b - a) * 60.0 / (t1 - t0).as_secs_f64()),
        _ => None,
    };
    let (answers_min, answers_max) = answers_range(&answers);
    gen.stop();
    server.stop();
    Ok(Steady {
        cpu: cpu[0],
        gen_cpu: cpu[1],
        rss,
        full_s,
        answers_min,
        answers_max,
        surveys: answers.len(),
        missed,
        lists_per_min,
    })
}

/// The Go original's time to a full list when 10,000 peers connect at once
/// at poll 1 s / survey 500 ms, measured on 2026-12-02 with the same load
/// generator (/work/shared/NOTES.md, "Measured 2026-12-02"; its server
/// locks up at this size in about half the runs, so it is not rerun here).
const GO_MASS_CONNECT_S: f64 = 3.0;

struct MassConnect {
    /// From the first peer's connection until the subscriber holds all N.
    full_s: f64,
    /// From the first to the last peer's connection.
    connect_s: f64,
    /// Per peer, from its connection to the first list naming it.
    join_p50_ms: f64,
    join_p99_ms: f64,
    join_max_ms: f64,
    /// The same from the server's SP header (NNG had accepted it).
    hs_p99_ms: f64,
    hs_max_ms: f64,
    /// Server CPU from the generator's start until the full list, % of one
    /// core, and in CPU-seconds.
    cpu: f64,
    cpu_s: f64,
    /// Surveys the server sent from the generator's start until the first
    /// stats line after the full list, and how many were heartbeat rounds.
    surveys: u64,
    /// Announcements the server took in the same span.
    announcements: u64,
    rounds: u64,
    answers: u64,
    publishes: u64,
}

impl MassConnect {
    /// From the last peer's connection until the subscriber holds all N.
    fn after_last_s(&self) -> f64 {
        self.full_s - self.connect_s
    }

    /// Surveys sent for new connections (not heartbeat rounds) in the
    /// span: the heartbeat rounds started in it are counted by `rounds`
    /// once they end, so a round still under way at the end counts here.
    fn join_surveys(&self) -> u64 {
        self.surveys.saturating_sub(self.rounds)
    }
}

/// What lone joins among many connected peers cost and took (section
/// `announce`).
struct LoneJoins {
    /// From the join (the new peer's connection starting) until the
    /// subscriber holds a list naming it, per join.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    joins: usize,
    /// Surveys the server sent and announcements it took during the joins.
    surveys: u64,
    announcements: u64,
}

/// A server whose heartbeat is an hour away, `n` peers connected (and
/// listed) and one raw subscriber; then `joins` new peers join one at a
/// time (`loadgen` command `join 1`), a second apart (so that a survey-only
/// joiner always finds the survey budget full, as a lone join after a quiet
/// spell does). With `announce`, every peer announces itself on connecting.
fn lone_joins_run(
    urls: &mut Urls,
    n: u32,
    joins: usize,
    announce: bool,
) -> Result<LoneJoins, String> {
    let hour = Poll {
        poll_ms: 3_600_000,
        survey_ms: 1000,
    };
    let (mut server, survey, publish) =
        start_server_with(urls, Transport::Tcp, hour, &[s("--stats-ms"), s("100")])?;
    let mut args = vec![
        s("--survey"),
        survey,
        s("--publish"),
        publish,
        s("--peers"),
        n.to_string(),
        s("--subs"),
        s("1"),
    ];
    if announce {
        args.push(s("--announce"));
    }
    let mut gen = Proc::spawn("loadgen", LOADGEN, &args, Some(1));
    gen.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
    std::thread::sleep(Duration::from_secs(1));
    server.skip_past();
    let stats0 = server.wait_for("stats", |_| true, STEP_TIMEOUT)?.1;
    let mut ms = time_lone_joins(&mut gen, joins, Duration::from_secs(1))?;
    server.skip_past();
    let stats1 = server.wait_for("stats", |_| true, STEP_TIMEOUT)?.1;
    gen.stop();
    server.stop();
    let delta = |k: &str| {
        (stats1.num::<f64>(k).unwrap_or(f64::NAN) - stats0.num::<f64>(k).unwrap_or(f64::NAN))
            .max(0.0) as u64
    };
    ms.sort_by(f64::total_cmp);
    Ok(LoneJoins {
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        joins: ms.len(),
        surveys: delta("surveys_sent"),
        announcements: delta("announcements"),
    })
}

/// The `announce` section: join by announcement against survey-only
/// peers, lone joins and a mass connect, at `n` peers.
fn announce_section(meter: &Meter, urls: &mut Urls, n: u32, verdicts: &mut Verdicts) {
    const JOINS: usize = 30;
    println!();
    println!(
        "# announce: lone joins among {n} connected peers (heartbeat an hour away; {JOINS} joins a second apart; ms from the joiner's connection to the subscriber's list), and {n} peers connecting at once (mass connect, as above); load average {}",
        loadavg()
    );
    println!("| case | joins or peers | p50 ms | p99 ms | max ms | full s after last connection | join surveys | announcements |");
    println!("|---|---|---|---|---|---|---|---|");
    for (label, announce) in [("announcing joiner", true), ("survey-only joiner", false)] {
        match lone_joins_run(urls, n, JOINS, announce) {
            Ok(j) => {
                println!(
                    "| lone join, {label} | {} | {:.1} | {:.1} | {:.1} | - | {} | {} |",
                    j.joins, j.p50_ms, j.p99_ms, j.max_ms, j.surveys, j.announcements
                );
                if announce {
                    verdicts.check(
                        format!(
                            "announce: lone join among {n}: p99 < 5 ms ({:.1} ms) and no survey ({})",
                            j.p99_ms, j.surveys
                        ),
                        j.joins == JOINS && j.p99_ms < 5.0 && j.surveys == 0,
                    );
                }
            }
            Err(e) => {
                println!("| lone join, {label} | FAILED: {e} | | | | | | |");
                if announce {
                    verdicts.check(format!("announce: lone join among {n}: {e}"), false);
                }
            }
        }
    }
    for (label, poll, announce) in [
        (
            "mass connect, announcing, default options",
            DEFAULT_POLL,
            true,
        ),
        ("mass connect, survey-only, poll 1s", FAST_POLL, false),
        (
            "mass connect, survey-only, default options",
            DEFAULT_POLL,
            false,
        ),
    ] {
        match mass_run(meter, urls, n, poll, announce) {
            Ok(m) => {
                println!(
                    "| {label} | {n} | {:.0} | {:.0} | {:.0} | {:.2} (full {:.2} s from the first, connections over {:.2} s) | {} ({} rounds) | {} |",
                    m.join_p50_ms,
                    m.join_p99_ms,
                    m.join_max_ms,
                    m.after_last_s(),
                    m.full_s,
                    m.connect_s,
                    m.join_surveys(),
                    m.rounds,
                    m.announcements
                );
                if announce {
                    verdicts.check(
                        format!(
                            "announce: {label}, {n} peers: each listed within 1 s of its connection (max {:.0} ms), full list <= 1.0 s after the last connection ({:.2} s), no join survey ({})",
                            m.join_max_ms,
                            m.after_last_s(),
                            m.join_surveys()
                        ),
                        m.join_max_ms <= 1000.0 && m.after_last_s() <= 1.0 && m.join_surveys() == 0,
                    );
                } else {
                    verdicts.check(
                        format!(
                            "announce: {label}, {n} peers: full list < 2 s after the last connection ({:.2} s)",
                            m.after_last_s()
                        ),
                        m.after_last_s() < 2.0,
                    );
                }
            }
            Err(e) => {
                println!("| {label} | FAILED: {e} | | | | | | |");
                verdicts.check(format!("announce: {label}: {e}"), false);
            }
        }
    }
}

/// 10,000 peers connect at once (as fast as the generator can open them,
/// 64 in flight) to a server that has been up for one survey time (its
/// first heartbeat round has ended, so at the default options the next one
/// is 4 s away): how long until every peer is listed.
/// With `announce`, the peers announce themselves on connecting
/// (`loadgen --announce`); otherwise they only answer surveys.
fn mass_run(
    meter: &Meter,
    urls: &mut Urls,
    n: u32,
    poll: Poll,
    announce: bool,
) -> Result<MassConnect, String> {
    let (mut server, survey, publish) =
        start_server_with(urls, Transport::Tcp, poll, &[s("--stats-ms"), s("100")])?;
    server.wait_for("round", |_| true, STEP_TIMEOUT)?;
    server.skip_past();
    let stats0 = server.wait_for("stats", |_| true, STEP_TIMEOUT)?.1;
    let ticks0 = server.cpu_ticks();
    let mut args = vec![
        s("--survey"),
        survey,
        s("--publish"),
        publish,
        s("--peers"),
        n.to_string(),
        s("--subs"),
        s("1"),
        s("--track-joins"),
    ];
    if announce {
        args.push(s("--announce"));
    }
    let mut gen = Proc::spawn("loadgen", LOADGEN, &args, Some(1));
    let t0 = Instant::now();
    // Normally a few seconds: a run that takes longer failed (or the
    // machine is too busy to say anything).
    let limit = Duration::from_secs(30);
    let (_, full) = gen.wait_for("all_full", |_| true, limit)?;
    let t1 = Instant::now();
    let ticks1 = server.cpu_ticks();
    let (_, joins) = gen.wait_for("joins", |_| true, limit)?;
    server.skip_past();
    let stats1 = server.wait_for("stats", |_| true, STEP_TIMEOUT)?.1;
    gen.stop();
    server.stop();
    let num = |l: &Line, k: &str| l.num::<f64>(k).unwrap_or(f64::NAN);
    let delta = |k: &str| (num(&stats1, k) - num(&stats0, k)).max(0.0) as u64;
    let cpu_s = (ticks1 - ticks0) as f64 / meter.ticks_per_s;
    let first = num(&joins, "first_connect");
    Ok(MassConnect {
        full_s: num(&full, "t") - first,
        connect_s: num(&joins, "last_connect") - first,
        join_p50_ms: num(&joins, "p50_ms"),
        join_p99_ms: num(&joins, "p99_ms"),
        join_max_ms: num(&joins, "max_ms"),
        hs_p99_ms: num(&joins, "hs_p99_ms"),
        hs_max_ms: num(&joins, "hs_max_ms"),
        cpu: cpu_s / (t1 - t0).as_secs_f64() * 100.0,
        cpu_s,
        surveys: delta("surveys_sent"),
        announcements: delta("announcements"),
        rounds: delta("rounds"),
        answers: delta("answers"),
        publishes: delta("publishes"),
    })
}

/// Peers of the restart section (issue 17).
const RESTART_PEERS: u32 = 2000;

/// One restart under redialing peers: what a subscriber saw.
struct Restart {
    /// The smallest list received after the first full one.
    min_after_full: usize,
    /// Lists received from the restart until the full list again.
    lists_after: usize,
    /// From spawning the new server to the subscriber's first list.
    first_list_s: f64,
    /// The new server's own figure: from creating `Server` to its first
    /// publish (`first_list` line of bench-server), and that list's size.
    server_first_s: f64,
    server_first_len: usize,
    /// The first publish delay the server ran with.
    delay_ms: u64,
    /// From spawning the new server until every peer had redialed and
    /// completed the handshake (the generator's 20 ms ticks).
    peers_back_s: f64,
    /// From spawning the new server until the subscriber held every name.
    full_again_s: f64,
}

/// A server (bench-server, default options, so the default first publish
/// delay) with `RESTART_PEERS` loadgen peers in `--redial` mode and one
/// raw subscriber (another loadgen, also redialing) recording the size of
/// every list; once the subscriber holds every name the server is killed
/// with SIGKILL and started again on the same URLs, once every peer has
/// seen its connection close and then `down` later (a long `down` lets
/// every peer's redial wait grow to its longest, 1 s). `first_publish`
/// is bench-server's `--first-publish-ms`: `default`, or `0` for the
/// reference (the first list as soon as the first heartbeat round ends,
/// as before issue 17).
fn restart_run(down: Duration, first_publish: &str) -> Result<Restart, String> {
    let server_args = |survey: &str, publish: &str| {
        vec![
            s("--survey"),
            s(survey),
            s("--publish"),
            s(publish),
            s("--first-publish-ms"),
            s(first_publish),
        ]
    };
    let mut server = Proc::spawn(
        "bench-server",
        SERVER,
        &server_args("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"),
        Some(0),
    );
    let (_, ready) = server.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let survey = ready.get("survey").unwrap_or_default().to_owned();
    let publish = ready.get("publish").unwrap_or_default().to_owned();
    let mut sub = Proc::spawn(
        "loadgen-sub",
        LOADGEN,
        &[
            s("--survey"),
            survey.clone(),
            s("--publish"),
            publish.clone(),
            s("--peers"),
            s("0"),
            s("--subs"),
            s("1"),
            s("--print-lists"),
            s("--redial"),
        ],
        None,
    );
    let mut peers = Proc::spawn(
        "loadgen",
        LOADGEN,
        &[
            s("--survey"),
            survey.clone(),
            s("--peers"),
            RESTART_PEERS.to_string(),
            s("--report-ms"),
            s("20"),
            s("--redial"),
        ],
        Some(1),
    );
    let full = |l: &Line| l.num::<u32>("len") == Some(RESTART_PEERS);
    let (t_full, _) = sub.wait_for("list", full, STEP_TIMEOUT)?;
    // One second with the full list, then SIGKILL.
    std::thread::sleep(Duration::from_secs(1));
    server
        .child
        .kill()
        .map_err(|e| format!("SIGKILL the server: {e}"))?;
    let _ = server.child.wait();
    let t_kill = Instant::now();
    // Every peer notices (its connection closes) before the restart.
    peers.skip_past();
    peers.wait_for(
        "tick",
        |l| l.num::<u32>("peers_ready") == Some(0),
        STEP_TIMEOUT,
    )?;
    std::thread::sleep(down);
    let t_restart = Instant::now();
    let mut server = Proc::spawn(
        "bench-server",
        SERVER,
        &server_args(&survey, &publish),
        Some(0),
    );
    let (_, ready) = server.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let delay_ms = ready.num::<u64>("first_publish_ms").unwrap_or(0);
    // The subscriber holds every name again, from the new server.
    sub.skip_past();
    let (t_back, _) = sub.wait_for("list", full, Duration::from_secs(60))?;
    let (peers_back_at, _) = peers.wait_for(
        "tick",
        |l| l.num::<u32>("peers_ready") == Some(RESTART_PEERS),
        STEP_TIMEOUT,
    )?;
    let (_, first) = server.wait_for("first_list", |_| true, STEP_TIMEOUT)?;
    let after_full = sub.between("list", t_full, t_back);
    let after_kill: Vec<Line> = sub.between("list", t_kill, t_back);
    let (t_first, _) = sub
        .lines
        .iter()
        .find(|(at, l)| l.kind == "list" && *at >= t_restart)
        .cloned()
        .ok_or("no list after the restart")?;
    let len = |l: &Line| l.num::<usize>("len").unwrap_or(0);
    let result = Restart {
        min_after_full: after_full.iter().map(len).min().unwrap_or(0),
        lists_after: after_kill.len(),
        first_list_s: (t_first - t_restart).as_secs_f64(),
        server_first_s: first.num::<f64>("t").unwrap_or(f64::NAN),
        server_first_len: len(&first),
        delay_ms,
        peers_back_s: peers_back_at
            .saturating_duration_since(t_restart)
            .as_secs_f64(),
        full_again_s: (t_back - t_restart).as_secs_f64(),
    };
    peers.stop();
    sub.stop();
    server.stop();
    Ok(result)
}

/// How the followers of the `watch` section follow the list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// No followers: the peers' own cost (heartbeat, joins, leaves).
    Nobody,
    /// Watchers on the watch URL (`loadgen --watchers`).
    Watch,
    /// Raw SUB connections on the publish URL (`loadgen --subs`).
    Classic,
    /// Broadcast followers (`loadgen --watchers --broadcast`), the server
    /// with `--watch-broadcast`.
    Broadcast,
}

impl Follow {
    fn name(self) -> &'static str {
        match self {
            Follow::Nobody => "peers only",
            Follow::Watch => "watch",
            Follow::Classic => "classic",
            Follow::Broadcast => "broadcast",
        }
    }

    /// The loadgen counter of bytes the server wrote to these followers.
    fn rx_key(self) -> &'static str {
        match self {
            Follow::Nobody => "rx_peer_bytes",
            Follow::Watch => "rx_watch_bytes",
            Follow::Classic => "rx_sub_bytes",
            Follow::Broadcast => "rx_follow_bytes",
        }
    }
}

/// What one kind of follower cost and saw in the `watch` section; NaN
/// where not measured.
#[derive(Clone)]
struct WatchRun {
    /// From `all_full` (every follower holds all N) after the start.
    full_s: f64,
    /// Server CPU % of a core while nothing changes (keepalives, the
    /// heartbeat, a republish), and the generator's.
    idle_cpu: f64,
    idle_gen_cpu: f64,
    /// Isolated restarts (`churn 1`, one at a time: a peer leaves and
    /// rejoins under a new name): from the join until every follower
    /// holds a list naming it.
    join_p50: f64,
    join_p99: f64,
    joins: usize,
    /// Lone joins (`join 1`, one at a time: a new peer, nothing leaves):
    /// from the join until every follower holds a list naming it.
    lone_join_p50: f64,
    lone_join_p99: f64,
    lone_joins: usize,
    /// Every lone join's time, ms, sorted.
    lone_join_ms: Vec<f64>,
    /// Under churn (1% of the peers per second leave and rejoin).
    churn_cpu: f64,
    churn_gen_cpu: f64,
    churn_p50: f64,
    churn_p99: f64,
    churn_changes: usize,
    churn_lost: usize,
    /// Bytes the followers received in the churn window (what the server
    /// wrote to them, SP framing included) per change made in it.
    bytes_per_change: f64,
    /// The server's own `bytes_published` per change (classic only).
    published_per_change: f64,
    /// `wchar` of /proc/PID/io per change (NNG sends with sendmsg(2),
    /// which `wchar` does not count: kept to show it).
    wchar_per_change: f64,
    /// Restart: from spawning the new server, and from its first publish
    /// (the end of its first publish delay), until every follower holds
    /// all N again; and when its changes receiver saw that first list.
    restart_full_s: f64,
    restart_after_publish_s: f64,
    restart_first_publish_s: f64,
    /// Snapshots sent to watchers during the restart, and those not asked
    /// for (and not smaller than the delta).
    restart_snapshots: f64,
    restart_unasked: f64,
    /// Over the whole run.
    unasked: f64,
    smaller: f64,
    refused: f64,
    /// Watch replies by kind in the idle window.
    idle_keepalives: f64,
    idle_snapshots: f64,
    /// Server RSS (MB) once every follower is full, before the joins.
    rss_full_mb: f64,
    /// The churn window's length (s), the changes made in it (by the
    /// generator's rate), and the broadcasts the server sent in it.
    churn_window_s: f64,
    churn_made: f64,
    churn_broadcasts: f64,
    /// Catch-up requests the followers sent over the whole run.
    catchups: f64,
    /// The isolated leaves (p50, p99 ms): a leave needs no survey, so
    /// this is the delivery to every follower alone.
    leave_p50: f64,
    leave_p99: f64,
    /// Leaves alone under churn (p50, p99 ms).
    churn_leave_p50: f64,
    churn_leave_p99: f64,
}

fn wchar(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Issue 14's targets for one kind of follower: a server (default options,
/// a watch URL) pinned to core 0 and one loadgen on core 1 playing `n`
/// peers and `n` followers of kind `follow` (`--redial`). In order: every
/// follower holds all `n`; an idle window; isolated joins; a SIGKILL of
/// the server and a restart on the same URLs (library default first
/// publish delay, so its first list names every peer); last, as it may
/// leave the server behind, a churn window at 1% of the peers per second.
fn watch_run(meter: &Meter, plan: &WatchPlan, follow: Follow) -> Result<WatchRun, String> {
    let n = plan.peers;
    let server_args = |survey: &str, publish: &str, watch: &str, broadcast: &str, first: &str| {
        let mut args = vec![
            s("--survey"),
            s(survey),
            s("--publish"),
            s(publish),
            s("--watch"),
            s(watch),
            s("--first-publish-ms"),
            s(first),
        ];
        if follow == Follow::Broadcast {
            args.extend([s("--watch-broadcast"), s(broadcast)]);
        }
        args
    };
    let any = "tcp://127.0.0.1:0";
    let mut server = Proc::spawn(
        "bench-server",
        SERVER,
        &server_args(any, any, any, any, "0"),
        Some(0),
    );
    let (_, ready) = server.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let url = |k: &str| ready.get(k).unwrap_or_default().to_owned();
    let (survey, publish, watch) = (url("survey"), url("publish"), url("watch"));
    let broadcast = url("broadcast");
    let mut args = vec![
        s("--survey"),
        survey.clone(),
        s("--publish"),
        publish.clone(),
        s("--watch"),
        watch.clone(),
        s("--peers"),
        n.to_string(),
        s("--report-ms"),
        s("100"),
        s("--redial"),
        // Peers that are this crate's clients announce themselves.
        s("--announce"),
    ];
    match follow {
        Follow::Nobody => {}
        Follow::Watch => args.extend([s("--watchers"), n.to_string()]),
        Follow::Classic => args.extend([s("--subs"), n.to_string()]),
        Follow::Broadcast => args.extend([
            s("--watchers"),
            n.to_string(),
            s("--broadcast"),
            broadcast.clone(),
        ]),
    }
    let mut gen = Proc::spawn("loadgen", LOADGEN, &args, Some(1));
    let full_s = if follow == Follow::Nobody {
        let (at, _) =
            server.wait_for("round", |l| l.num::<u32>("peers") == Some(n), STEP_TIMEOUT)?;
        (at - gen.started).as_secs_f64()
    } else {
        let (at, _) = gen.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
        (at - gen.started).as_secs_f64()
    };
    let tick = |p: &mut Proc, at: Instant, key: &str| -> f64 {
        p.last_before("tick", at)
            .and_then(|l| l.num::<f64>(key))
            .unwrap_or(f64::NAN)
    };
    let stat = |p: &mut Proc, at: Instant, key: &str| -> f64 {
        p.last_before("stats", at)
            .and_then(|l| l.num::<f64>(key))
            .unwrap_or(f64::NAN)
    };

    // Idle: nothing changes.
    std::thread::sleep(Duration::from_secs(2));
    let rss_full_mb = rss_mb(&server);
    let (t0, t1, cpu) = meter.window(&[&server, &gen], plan.idle_window);
    std::thread::sleep(Duration::from_millis(1100));
    let idle_keepalives =
        stat(&mut server, t1, "watch_keepalives") - stat(&mut server, t0, "watch_keepalives");
    let idle_snapshots =
        stat(&mut server, t1, "watch_snapshots") - stat(&mut server, t0, "watch_snapshots");
    let (idle_cpu, idle_gen_cpu) = (cpu[0], cpu[1]);

    let percentiles = |mut v: Vec<f64>| -> (f64, f64) {
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.50), percentile(&v, 0.99))
    };
    // Isolated joins: one peer leaves and rejoins under a new name; the
    // next only once both changes reached every follower.
    let mut join_ms = Vec::new();
    let mut leave_ms = Vec::new();
    if follow != Follow::Nobody {
        gen.skip_past();
        for _ in 0..plan.joins {
            gen.command("churn 1");
            for _ in 0..2 {
                let (_, l) = gen.wait_for("change", |_| true, Duration::from_secs(60))?;
                if l.get("kind") == Some("join") {
                    join_ms.extend(l.num::<f64>("ms"));
                } else {
                    leave_ms.extend(l.num::<f64>("ms"));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Lone joins: a new peer joins; the next only once it reached every
    // follower.
    let mut lone_join_ms = Vec::new();
    if follow != Follow::Nobody {
        lone_join_ms = time_lone_joins(&mut gen, plan.samples, Duration::from_millis(200))?;
    }
    let (join_p50, join_p99) = percentiles(join_ms.clone());
    let (leave_p50, leave_p99) = percentiles(leave_ms);
    let (lone_join_p50, lone_join_p99) = percentiles(lone_join_ms.clone());

    // Restart: SIGKILL, then a new server on the same URLs as soon as
    // every connection has seen the close.
    let mut restart_full_s = f64::NAN;
    let mut restart_after_publish_s = f64::NAN;
    let mut restart_first_publish_s = f64::NAN;
    let mut restart_snapshots = f64::NAN;
    let mut restart_unasked = f64::NAN;
    if follow != Follow::Nobody {
        // Every follower holds all n (the isolated joins are over).
        gen.skip_past();
        gen.wait_for(
            "tick",
            |l| l.num::<u32>("full") == Some(n),
            Duration::from_secs(60),
        )?;
        std::thread::sleep(Duration::from_millis(500));
        let before = Instant::now();
        let snaps0 = tick(&mut gen, before, "watch_snapshots");
        let unasked0 = tick(&mut gen, before, "watch_unasked");
        server
            .child
            .kill()
            .map_err(|e| format!("SIGKILL the server: {e}"))?;
        let _ = server.child.wait();
        gen.skip_past();
        gen.wait_for(
            "tick",
            |l| {
                l.num::<u32>("peers_ready") == Some(0)
                    && l.num::<u32>("subs_ready") == Some(0)
                    && l.num::<u32>("watchers_ready") == Some(0)
            },
            STEP_TIMEOUT,
        )?;
        let t_restart = Instant::now();
        server = Proc::spawn(
            "bench-server",
            SERVER,
            &server_args(&survey, &publish, &watch, &broadcast, "default"),
            Some(0),
        );
        let (_, ready) = server.wait_for("ready", |_| true, STEP_TIMEOUT)?;
        let delay_s = ready.num::<f64>("first_publish_ms").unwrap_or(f64::NAN) / 1e3;
        let (t_full, _) = gen.wait_for("all_full", |_| true, Duration::from_secs(60))?;
        let (_, first) = server.wait_for("first_list", |_| true, STEP_TIMEOUT)?;
        let first_s = first.num::<f64>("t").unwrap_or(f64::NAN);
        restart_full_s = (t_full - t_restart).as_secs_f64();
        restart_first_publish_s = first_s;
        // The first publish goes out when the first publish delay ends
        // (its list names every peer: they are back within about 1 s).
        // `first_list` is when the server's changes receiver saw it, which
        // with a watch URL comes after the watchers' replies were sent.
        restart_after_publish_s = restart_full_s - delay_s.min(first_s);
        std::thread::sleep(Duration::from_millis(300));
        let after = Instant::now();
        restart_snapshots = tick(&mut gen, after, "watch_snapshots") - snaps0;
        restart_unasked = tick(&mut gen, after, "watch_unasked") - unasked0;
    }

    // Churn: 1% of the peers per second leave and rejoin.
    let rate = (f64::from(n) / 100.0).max(1.0);
    gen.command(&format!("rate {rate}"));
    std::thread::sleep(Duration::from_secs(3));
    gen.skip_past();
    let w0 = wchar(server.pid());
    let (t0, t1, cpu) = meter.window(&[&server, &gen], plan.churn_window);
    let w1 = wchar(server.pid());
    gen.command("rate 0");
    // Let every change made in the window arrive (or be reported lost,
    // 30 s after it was made).
    let _ = gen.wait_for(
        "tick",
        |l| l.num::<u32>("pending_changes") == Some(0),
        Duration::from_secs(40),
    );
    std::thread::sleep(Duration::from_millis(1100));
    let gen_started = gen.started;
    let made_in_window = |l: &Line| -> bool {
        match (l.num::<f64>("t"), l.num::<f64>("ms")) {
            (Some(t), Some(ms)) => {
                let made = gen_started + Duration::from_secs_f64((t - ms / 1e3).max(0.0));
                made >= t0 && made <= t1
            }
            _ => false,
        }
    };
    let now = Instant::now();
    let done: Vec<Line> = gen
        .between("change", t0, now)
        .into_iter()
        .filter(made_in_window)
        .collect();
    let churn_lost = gen.between("change_lost", t0, now).len();
    let made = (rate * 2.0 * (t1 - t0).as_secs_f64()).round();
    let changes = if follow == Follow::Nobody {
        made
    } else {
        (done.len() + churn_lost) as f64
    };
    let (churn_p50, churn_p99) = percentiles(done.iter().filter_map(|l| l.num("ms")).collect());
    let (churn_leave_p50, churn_leave_p99) = percentiles(
        done.iter()
            .filter(|l| l.get("kind") == Some("leave"))
            .filter_map(|l| l.num("ms"))
            .collect(),
    );
    let rx = tick(&mut gen, t1, follow.rx_key()) - tick(&mut gen, t0, follow.rx_key());
    let published =
        stat(&mut server, t1, "bytes_published") - stat(&mut server, t0, "bytes_published");
    let wchar_per_change = match (w0, w1) {
        (Some(a), Some(b)) => (b - a) as f64 / changes,
        _ => f64::NAN,
    };
    let (churn_cpu, churn_gen_cpu) = (cpu[0], cpu[1]);
    let churn_broadcasts =
        stat(&mut server, t1, "watch_broadcasts") - stat(&mut server, t0, "watch_broadcasts");

    let end = Instant::now();
    let catchups = tick(&mut gen, end, "follow_catchups");
    let unasked = tick(&mut gen, end, "watch_unasked");
    let smaller = tick(&mut gen, end, "watch_smaller");
    let refused = tick(&mut gen, end, "watch_refused");
    gen.stop();
    server.stop();
    Ok(WatchRun {
        full_s,
        idle_cpu,
        idle_gen_cpu,
        join_p50,
        join_p99,
        joins: join_ms.len(),
        lone_join_p50,
        lone_join_p99,
        lone_joins: lone_join_ms.len(),
        lone_join_ms: {
            let mut sorted = lone_join_ms.clone();
            sorted.sort_by(f64::total_cmp);
            sorted
        },
        churn_cpu,
        churn_gen_cpu,
        churn_p50,
        churn_p99,
        churn_changes: done.len(),
        churn_lost,
        bytes_per_change: rx / changes,
        published_per_change: published / changes,
        wchar_per_change,
        restart_full_s,
        restart_after_publish_s,
        restart_first_publish_s,
        restart_snapshots,
        restart_unasked,
        unasked,
        smaller,
        refused,
        idle_keepalives,
        idle_snapshots,
        rss_full_mb,
        churn_window_s: (t1 - t0).as_secs_f64(),
        churn_made: made,
        churn_broadcasts,
        catchups,
        leave_p50,
        leave_p99,
        churn_leave_p50,
        churn_leave_p99,
    })
}

/// The heartbeat's floor: a bare raw surveyor (`floor`, core 0) surveying
/// `n` loadgen peers (core 1) at the library's default poll interval and
/// survey time (5 s, 1 s), with nothing else to do. Returns its CPU, % of
/// a core, over `window`.
fn heartbeat_floor(meter: &Meter, n: u32, window: Duration) -> Result<f64, String> {
    let (mut floor, gen) = spawn_floor(s("tcp://127.0.0.1:0"), DEFAULT_POLL, n, false)?;
    floor.skip_past();
    floor.wait_for(
        "survey",
        |l| l.num::<u32>("answers") == Some(n),
        STEP_TIMEOUT,
    )?;
    let (_, _, cpu) = meter.window(&[&floor], window);
    gen.stop();
    floor.stop();
    Ok(cpu[0])
}

/// The floor of a broadcast: a bare NNG PUB (`pubfloor`, pinned to core
/// 0) sending `messages` 40-byte messages at `rate` per second to `n` raw
/// SUB connections of one loadgen (core 1). Returns the PUB's CPU per
/// message delivered, in µs, the share of deliveries that arrived, and the
/// times one message takes to reach all `n` SUBs (ms, sorted; the same
/// loadgen times it as times our broadcasts, over `samples` messages sent
/// one at a time).
fn pub_floor(
    meter: &Meter,
    n: u32,
    rate: f64,
    window: Duration,
    samples: usize,
) -> Result<(f64, f64, Vec<f64>), String> {
    let mut floor = Proc::spawn(
        "pubfloor",
        PUBFLOOR,
        &[s("--listen"), s("tcp://127.0.0.1:0"), s("--bytes"), s("40")],
        Some(0),
    );
    let (_, ready) = floor.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let url = ready.get("url").unwrap_or_default().to_owned();
    // The generator's --survey is required; with no peers nothing dials it.
    let mut gen = Proc::spawn(
        "loadgen",
        LOADGEN,
        &[
            s("--survey"),
            url.clone(),
            s("--publish"),
            url,
            s("--subs"),
            n.to_string(),
            s("--peers"),
            s("0"),
            s("--report-ms"),
            s("100"),
        ],
        Some(1),
    );
    gen.wait_for("connected", |_| true, STEP_TIMEOUT)?;
    floor.wait_for("subs", |l| l.num::<u32>("n") == Some(n), STEP_TIMEOUT)?;
    std::thread::sleep(Duration::from_secs(1));
    let before = Instant::now();
    let lists0 = gen
        .last_before("tick", before)
        .and_then(|l| l.num::<f64>("lists"))
        .unwrap_or(0.0);
    // Sending lasts the window plus a second on each side.
    let messages = (rate * (window.as_secs_f64() + 2.0)).round() as u64;
    floor.command(&format!("send {messages} {rate}"));
    std::thread::sleep(Duration::from_secs(1));
    let (_, _, cpu) = meter.window(&[&floor], window);
    floor.wait_for("sent", |_| true, STEP_TIMEOUT)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = Instant::now();
    let lists1 = gen
        .last_before("tick", after)
        .and_then(|l| l.num::<f64>("lists"))
        .unwrap_or(f64::NAN);
    let delivered = (lists1 - lists0) / (messages as f64 * f64::from(n));
    let per_delivery_us = cpu[0] / 100.0 * 1e6 / (rate * f64::from(n));
    // Latency: one message at a time, from the generator's mark until
    // every SUB holds it.
    let mut ms = Vec::new();
    for _ in 0..samples {
        gen.skip_past();
        floor.skip_past();
        gen.command("mark");
        gen.wait_for("marked", |_| true, STEP_TIMEOUT)?;
        floor.command("send 1 1");
        let (_, l) = gen.wait_for("delivered", |_| true, Duration::from_secs(30))?;
        ms.extend(l.num::<f64>("ms"));
        floor.wait_for("sent", |_| true, STEP_TIMEOUT)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    ms.sort_by(f64::total_cmp);
    gen.stop();
    floor.stop();
    Ok((per_delivery_us, delivered, ms))
}

/// The floor of a lone join among `n` peers that each also follow: a bare
/// raw surveyor with the heartbeat at the default poll (5 s / survey 1 s)
/// that sends each announcement at once on a PUB socket (`floor
/// --publish`, core 0, armed once the fleet is connected), and one loadgen
/// (core 1) of `n` announcing peers and `n` SUB connections to it. Joins
/// are timed as ours (`join 1`, until
/// every SUB holds a list naming the new peer), `samples` of them, 200 ms
/// apart. Returns the ms, sorted.
fn join_floor(n: u32, samples: usize) -> Result<Vec<f64>, String> {
    let (mut floor, mut gen) = spawn_floor(s("tcp://127.0.0.1:0"), DEFAULT_POLL, n, true)?;
    // From now on each announcement is published (before, a fleet
    // connecting would send each to every SUB connected so far).
    floor.command("arm");
    std::thread::sleep(Duration::from_secs(2));
    let mut ms = time_lone_joins(&mut gen, samples, Duration::from_millis(200))?;
    ms.sort_by(f64::total_cmp);
    gen.stop();
    floor.stop();
    Ok(ms)
}

/// The `follow` section: 5,000 peers that each also follow the list
/// through the watch broadcast, against a peers-only run (the followers'
/// share of the server's CPU and RSS is the difference) and the bare PUB
/// floor, all in one run.
fn follow_section(meter: &Meter, plan: &WatchPlan, verdicts: &mut Verdicts) {
    let n = plan.peers;
    println!();
    println!(
        "# follow (watch broadcast): {n} peers, and {n} broadcast followers, default options, loadgen --redial; server on core 0, loadgen on core 1; load average {}",
        loadavg()
    );
    let base = watch_run(meter, plan, Follow::Nobody);
    let run = watch_run(meter, plan, Follow::Broadcast);
    // The floor at about the rate the server broadcast under churn.
    let rate = run.as_ref().ok().map_or(10.0, |r| {
        (r.churn_broadcasts / r.churn_window_s).clamp(2.0, 20.0)
    });
    let floor = pub_floor(
        meter,
        n,
        rate,
        plan.churn_window.min(Duration::from_secs(15)),
        plan.samples,
    );
    let join_floor = join_floor(n, plan.samples);
    let (base, run) = match (base, run) {
        (Ok(b), Ok(r)) => (b, r),
        (b, r) => {
            println!(
                "# follow: FAILED: peers only {:?}, broadcast {:?}",
                b.err(),
                r.err()
            );
            verdicts.check("follow: the runs completed".into(), false);
            return;
        }
    };
    let nf = f64::from(n);
    let extra_cpu = (run.churn_cpu - base.churn_cpu).max(0.0) / 100.0; // cores
    let changes_per_s = run.churn_made / run.churn_window_s;
    let broadcasts_per_s = run.churn_broadcasts / run.churn_window_s;
    let per_change_us = extra_cpu * 1e6 / (changes_per_s * nf);
    let per_message_us = extra_cpu * 1e6 / (broadcasts_per_s * nf);
    let rss_per_follower_kb = (run.rss_full_mb - base.rss_full_mb) * 1024.0 / nf;
    println!(
        "# broadcast: all full after {:.2} s; {} isolated joins; churn: {:.1} changes/s made, {:.1} broadcasts/s, {} changes delivered, {} lost; catch-ups over the run {}; idle keepalive replies {}, snapshots {}; restart: every follower full {:.2} s after the restart; unasked snapshots {}, refused {}; load average {}",
        run.full_s,
        run.joins,
        changes_per_s,
        broadcasts_per_s,
        run.churn_changes,
        run.churn_lost,
        run.catchups,
        run.idle_keepalives,
        run.idle_snapshots,
        run.restart_full_s,
        run.unasked,
        run.refused,
        loadavg()
    );
    println!(
        "# peers only: churn CPU {:.1}%, idle CPU {:.2}%, RSS {:.1} MB; broadcast: churn CPU {:.1}%, idle CPU {:.2}%, RSS {:.1} MB; loadgen CPU under churn: peers only {:.1}%, broadcast {:.1}%",
        base.churn_cpu,
        base.idle_cpu,
        base.rss_full_mb,
        run.churn_cpu,
        run.idle_cpu,
        run.rss_full_mb,
        base.churn_gen_cpu,
        run.churn_gen_cpu
    );
    let (floor_us, delivered, floor_ms) = match &floor {
        Ok((us, delivered, ms)) => (*us, *delivered, ms.clone()),
        Err(e) => {
            println!("# floor: FAILED: {e}");
            (f64::NAN, f64::NAN, Vec::new())
        }
    };
    let (floor_p50, floor_p99) = (percentile(&floor_ms, 0.50), percentile(&floor_ms, 0.99));
    let join_floor_ms = join_floor.unwrap_or_else(|e| {
        println!("# join floor: FAILED: {e}");
        Vec::new()
    });
    let (join_floor_p50, join_floor_p99) = (
        percentile(&join_floor_ms, 0.50),
        percentile(&join_floor_ms, 0.99),
    );
    let list = |ms: &[f64]| {
        ms.iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "# one join reaches every follower, each of {} in ms, sorted: {}",
        run.lone_join_ms.len(),
        list(&run.lone_join_ms)
    );
    println!(
        "# floor: one message reaches every SUB, each of {} in ms, sorted: {}",
        floor_ms.len(),
        list(&floor_ms)
    );
    println!(
        "# join floor: one join reaches every SUB (bare raw surveyor, heartbeat at poll 5 s, each announcement sent on a bare PUB), each of {} in ms, sorted: {}",
        join_floor_ms.len(),
        list(&join_floor_ms)
    );
    let heartbeat = heartbeat_floor(meter, n, plan.idle_window).unwrap_or_else(|e| {
        println!("# heartbeat floor: FAILED: {e}");
        f64::NAN
    });
    println!(
        "# floor: bare NNG PUB, 40-byte messages at {rate:.1}/s to {n} loadgen SUBs: {floor_us:.2} µs of PUB CPU per message delivered ({:.1}% of the deliveries arrived)",
        delivered * 100.0
    );
    println!();
    println!("| measure | broadcast | target |");
    println!("|---|---|---|");
    println!("| server CPU per follower per change, µs (churn, minus peers only) | {per_change_us:.2} | <= 10 µs |");
    println!("| server CPU per follower per broadcast message, µs | {per_message_us:.2} | |");
    println!("| floor: bare PUB, per message delivered, µs (same run) | {floor_us:.2} | |");
    println!(
        "| ratio: per message / floor | {:.2} | <= 1.5 |",
        per_message_us / floor_us
    );
    println!(
        "| one join (a new peer) reaches every follower, p50 / p99 ms ({} joins) | {:.1} / {:.1} | p99 < 50 ms |",
        run.lone_joins, run.lone_join_p50, run.lone_join_p99
    );
    println!(
        "| floor: one message from a bare PUB to every SUB, p50 / p99 ms (same loadgen, same run) | {floor_p50:.1} / {floor_p99:.1} | |"
    );
    println!(
        "| floor: one join from a bare surveyor and PUB (heartbeat at poll 5 s) to every SUB, p50 / p99 ms ({} joins, same run) | {join_floor_p50:.1} / {join_floor_p99:.1} | |",
        join_floor_ms.len()
    );
    println!(
        "| a restart (leave, rejoin under a new name): the join reaches every follower, p50 / p99 ms | {:.1} / {:.1} | |",
        run.join_p50, run.join_p99
    );
    println!(
        "| one leave (no survey: the broadcast's delivery alone), p50 / p99 ms | {:.1} / {:.1} | |",
        run.leave_p50, run.leave_p99
    );
    println!(
        "| churn 1%/s: server CPU % of a core | {:.1} | < 25% |",
        run.churn_cpu
    );
    println!(
        "| churn 1%/s: followers' share of the server CPU, % of a core (minus peers only) | {:.1} | |",
        run.churn_cpu - base.churn_cpu
    );
    println!("| churn 1%/s: change reaches every follower, p50 / p99 ms | {:.1} / {:.1} | p99 < 250 ms |", run.churn_p50, run.churn_p99);
    println!(
        "| churn 1%/s: a leave reaches every follower, p50 / p99 ms | {:.1} / {:.1} | |",
        run.churn_leave_p50, run.churn_leave_p99
    );
    println!(
        "| idle: server CPU % of a core | {:.2} | < 1% |",
        run.idle_cpu
    );
    println!(
        "| idle: followers' share, % of a core (minus peers only) | {:.2} | < 1% |",
        run.idle_cpu - base.idle_cpu
    );
    println!(
        "| idle: peers only (the heartbeat), % of a core | {:.2} | |",
        base.idle_cpu
    );
    println!(
        "| floor: the heartbeat alone, bare raw surveyor, {n} peers, poll 5 s / survey 1 s, % of a core (same run) | {heartbeat:.2} | |"
    );
    println!(
        "| server RSS per follower, KB (minus peers only) | {rss_per_follower_kb:.1} | <= 10 KB |"
    );
    println!();
    verdicts.check(
        format!("follow, {n} followers: server CPU per follower per change <= 10 µs ({per_change_us:.2} µs)"),
        per_change_us <= 10.0,
    );
    verdicts.check(
        format!(
            "follow: per message within 1.5x the bare PUB floor ({per_message_us:.2} vs {floor_us:.2} µs)"
        ),
        per_message_us <= 1.5 * floor_us,
    );
    verdicts.check(
        format!(
            "follow: one join reaches every follower, p99 < 50 ms ({:.1} ms over {} joins; the join floor's p99 in the same run {join_floor_p99:.1} ms)",
            run.lone_join_p99, run.lone_joins
        ),
        run.lone_joins == plan.samples && run.lone_join_p99 < 50.0,
    );
    verdicts.check(
        format!(
            "follow: 1% churn/s, server < 25% of a core ({:.1}%) and p99 < 250 ms ({:.1} ms), none lost ({})",
            run.churn_cpu, run.churn_p99, run.churn_lost
        ),
        run.churn_cpu < 25.0 && run.churn_p99 < 250.0 && run.churn_lost == 0,
    );
    verdicts.check(
        format!("follow: idle server < 1% of a core ({:.2}%)", run.idle_cpu),
        run.idle_cpu < 1.0,
    );
    verdicts.check(
        format!("follow: server RSS per follower <= 10 KB ({rss_per_follower_kb:.1} KB)"),
        rss_per_follower_kb <= 10.0,
    );
}

struct Churn {
    /// p50 and p99 of leaves and of joins alone.
    leave: (f64, f64),
    join: (f64, f64),
    cpu: f64,
    gen_cpu: f64,
    changes: usize,
    p50: f64,
    p99: f64,
    max: f64,
    lost: usize,
    superseded: usize,
    changes_per_s: f64,
    publishes_per_s: f64,
    bytes_per_s: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn churn_run(
    meter: &Meter,
    urls: &mut Urls,
    n: u32,
    subs: u32,
    burst: bool,
    window: Duration,
) -> Result<Churn, String> {
    let (mut server, survey, publish) = start_server(urls, Transport::Tcp, DEFAULT_POLL)?;
    let rate = (f64::from(n) / 100.0).max(1.0);
    let mut args = vec![
        s("--survey"),
        survey,
        s("--publish"),
        publish,
        s("--peers"),
        n.to_string(),
        s("--subs"),
        subs.to_string(),
        s("--churn"),
        rate.to_string(),
    ];
    if burst {
        args.push(s("--churn-burst"));
    }
    let mut gen = Proc::spawn("loadgen", LOADGEN, &args, Some(1));
    gen.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
    gen.wait_for("churn_start", |_| true, STEP_TIMEOUT)?;
    // Skip the first two seconds of churn.
    gen.wait_for("change", |l| l.num::<f64>("t").is_some(), STEP_TIMEOUT)?;
    std::thread::sleep(Duration::from_secs(2));
    let stats0 = server.last_before("stats", Instant::now());
    let (t0, t1, cpu) = meter.window(&[&server, &gen], window);
    // Changes made in the window are reported up to a few seconds later.
    std::thread::sleep(Duration::from_secs(2));
    let stats1 = server.last_before("stats", t1);
    let secs = (t1 - t0).as_secs_f64();
    // Count the changes made within the window (a change line carries the
    // time it completed and its latency, so it was made at t - ms).
    let gen_started = gen.started;
    let made_in_window = |l: &Line| -> bool {
        match (l.num::<f64>("t"), l.num::<f64>("ms")) {
            (Some(t), Some(ms)) => {
                let made = gen_started + Duration::from_secs_f64((t - ms / 1e3).max(0.0));
                made >= t0 && made <= t1
            }
            _ => false,
        }
    };
    let late = t1 + Duration::from_secs(2);
    let done: Vec<Line> = gen
        .between("change", t0, late)
        .into_iter()
        .filter(made_in_window)
        .collect();
    let lost = gen.between("change_lost", t0, late).len();
    let mut ms: Vec<f64> = done.iter().filter_map(|l| l.num("ms")).collect();
    ms.sort_by(f64::total_cmp);
    let kind_ms = |kind: &str| -> (f64, f64) {
        let mut v: Vec<f64> = done
            .iter()
            .filter(|l| l.get("kind") == Some(kind))
            .filter_map(|l| l.num("ms"))
            .collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.50), percentile(&v, 0.99))
    };
    let superseded = done
        .iter()
        .filter(|l| l.get("superseded") == Some("1"))
        .count();
    let delta = |key: &str| -> f64 {
        match (&stats0, &stats1) {
            (Some(a), Some(b)) => {
                (b.num::<f64>(key).unwrap_or(0.0) - a.num::<f64>(key).unwrap_or(0.0)) / secs
            }
            _ => f64::NAN,
        }
    };
    let result = Churn {
        leave: kind_ms("leave"),
        join: kind_ms("join"),
        cpu: cpu[0],
        gen_cpu: cpu[1],
        changes: ms.len(),
        p50: percentile(&ms, 0.50),
        p99: percentile(&ms, 0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
        lost,
        superseded,
        changes_per_s: ms.len() as f64 / secs,
        publishes_per_s: delta("publishes"),
        bytes_per_s: delta("bytes_published"),
    };
    gen.stop();
    server.stop();
    Ok(result)
}

struct ClientsRun {
    server_cpu: f64,
    cpu: f64,
    rss: f64,
    threads: u64,
    full_s: f64,
    /// From closing its stdin to its exit: dropping every client.
    shutdown_s: f64,
}

fn clients_run(
    meter: &Meter,
    urls: &mut Urls,
    n: u32,
    subscribe: bool,
    window: Duration,
) -> Result<ClientsRun, String> {
    let (mut server, survey, publish) = start_server(urls, Transport::Tcp, FAST_POLL)?;
    let mut args = vec![s("--survey"), survey, s("--n"), n.to_string()];
    if subscribe {
        args.extend([s("--publish"), publish]);
    }
    let mut clients = Proc::spawn("clients", CLIENTS, &args, Some(1));
    clients.wait_for("ready", |_| true, STEP_TIMEOUT)?;
    let (at, _) = server.wait_for(
        "round",
        |l| l.num::<u32>("answers") == Some(n) && l.num::<u32>("peers") == Some(n),
        STEP_TIMEOUT,
    )?;
    let mut full_s = (at - clients.started).as_secs_f64();
    if subscribe {
        let (at, _) = clients.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
        full_s = (at - clients.started).as_secs_f64();
    }
    server.skip_past();
    server.wait_for("round", |_| true, STEP_TIMEOUT)?;
    let (_, _, cpu) = meter.window(&[&server, &clients], window);
    let mut result = ClientsRun {
        server_cpu: cpu[0],
        cpu: cpu[1],
        rss: rss_mb(&clients),
        threads: procfs::threads(clients.pid()).unwrap_or(0),
        full_s,
        shutdown_s: 0.0,
    };
    result.shutdown_s = clients.stop_within(Duration::from_secs(120)).as_secs_f64();
    server.stop();
    Ok(result)
}

struct StallRun {
    full_s: Option<f64>,
    rss: f64,
    cpu: f64,
    rounds: usize,
    expected_rounds: usize,
    answers_min: u64,
    burst_ms: Option<f64>,
}

fn stall_run(meter: &Meter, urls: &mut Urls, n: u32, window: Duration) -> Result<StallRun, String> {
    let (mut server, survey, publish) = start_server(urls, Transport::Tcp, FAST_POLL)?;
    let mut gen = Proc::spawn(
        "loadgen",
        LOADGEN,
        &[
            s("--survey"),
            survey,
            s("--publish"),
            publish,
            s("--peers"),
            n.to_string(),
            s("--subs"),
            s("1"),
        ],
        Some(1),
    );
    let (at, _) = gen.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
    let full_s = Some((at - server.started).as_secs_f64());
    // The round under way ends before the window starts.
    server.skip_past();
    server.wait_for("round", |_| true, STEP_TIMEOUT)?;
    let (t0, t1, cpu) = meter.window(&[&server], window);
    let rss = rss_mb(&server);
    let rounds = server.between("round", t0, t1);
    let answers: Vec<u64> = rounds.iter().filter_map(|l| l.num("answers")).collect();
    let missed: usize = rounds.iter().filter_map(|l| l.num::<usize>("missed")).sum();
    // Publishing still works: 10 peers leave and rejoin under new names;
    // all 20 changes must reach the subscriber.
    gen.skip_past();
    gen.command("churn 10");
    let mut burst_ms: Option<f64> = Some(0.0);
    for _ in 0..20 {
        match gen.wait_for("change", |_| true, Duration::from_secs(10)) {
            Ok((_, l)) => {
                let ms = l.num::<f64>("ms").unwrap_or(f64::NAN);
                burst_ms = burst_ms.map(|m| m.max(ms));
            }
            Err(_) => {
                burst_ms = None;
                break;
            }
        }
    }
    gen.stop();
    server.stop();
    Ok(StallRun {
        full_s,
        rss,
        cpu: cpu[0],
        rounds: answers.len() + missed,
        expected_rounds: (window.as_millis() / u128::from(FAST_POLL.poll_ms)) as usize,
        answers_min: answers_range(&answers).0,
        burst_ms,
    })
}

/// What the `starve` section saw.
struct StarveRun {
    /// Lists that left a follower without a live peer, during the
    /// starvation and after it (must be 0).
    short_lists: u64,
    /// From the release until every follower held the whole list (0 if
    /// they all still held it).
    release_to_full_s: f64,
    /// The server's CPU over the starvation window, % of one core.
    cpu: f64,
    /// Rounds that ended, and those not counted, over the whole run.
    rounds: u64,
    rounds_not_counted: u64,
    /// Rounds not counted after the release (from a stats line 5 s after).
    not_counted_after_release: u64,
}

/// `n` peers and `n` raw subscribers (one loadgen on core 1) against a
/// server at poll 1 s / survey 500 ms / miss threshold 2 on core 0. Once
/// every subscriber holds all `n`, the server is stopped and continued
/// (SIGSTOP / SIGCONT) in a duty cycle for the window, then released.
fn starve_run(meter: &Meter, urls: &mut Urls, plan: &StarvePlan) -> Result<StarveRun, String> {
    let n = plan.peers;
    let (mut server, survey, publish) = start_server_with(
        urls,
        Transport::Tcp,
        FAST_POLL,
        &[s("--stats-ms"), s("500")],
    )?;
    let mut gen = Proc::spawn(
        "loadgen",
        LOADGEN,
        &[
            s("--survey"),
            survey,
            s("--publish"),
            publish,
            s("--peers"),
            n.to_string(),
            s("--subs"),
            n.to_string(),
            s("--report-ms"),
            s("100"),
        ],
        Some(1),
    );
    gen.wait_for("all_full", |_| true, STEP_TIMEOUT)?;
    let pid = server.pid() as libc::pid_t;
    let signal = |sig: libc::c_int| -> Result<(), String> {
        // SAFETY: kill has no memory-safety preconditions; the child is not
        // reaped before `server` is stopped, so the pid is still its own.
        match unsafe { libc::kill(pid, sig) } {
            0 => Ok(()),
            _ => Err(format!(
                "kill({pid}, {sig}): {}",
                std::io::Error::last_os_error()
            )),
        }
    };
    let before = server.cpu_ticks();
    let t0 = Instant::now();
    while t0.elapsed() < plan.window {
        signal(libc::SIGSTOP)?;
        std::thread::sleep(plan.stopped);
        signal(libc::SIGCONT)?;
        std::thread::sleep(plan.running);
    }
    signal(libc::SIGCONT)?;
    let released = Instant::now();
    let cpu =
        (server.cpu_ticks() - before) as f64 / meter.ticks_per_s / (released - t0).as_secs_f64()
            * 100.0;
    // Every follower holds the whole list again (at once if none lost it).
    gen.skip_past();
    let want = u64::from(n);
    let (full_at, _) =
        gen.wait_for("tick", |l| l.num::<u64>("full") == Some(want), STEP_TIMEOUT)?;
    let release_to_full_s = (full_at.saturating_duration_since(released)).as_secs_f64();
    // Then 5 s of rounds at full speed, which must not drop anyone either.
    server.skip_past();
    let (_, at_release) = server.wait_for("stats", |_| true, STEP_TIMEOUT)?;
    std::thread::sleep(Duration::from_secs(5));
    let (_, after) = server.wait_for(
        "stats",
        |l| l.num::<f64>("t") >= at_release.num::<f64>("t").map(|t| t + 5.0),
        STEP_TIMEOUT,
    )?;
    gen.skip_past();
    let (_, tick) = gen.wait_for("tick", |_| true, STEP_TIMEOUT)?;
    let num = |l: &Line, k: &str| l.num::<u64>(k).unwrap_or(0);
    let run = StarveRun {
        short_lists: num(&tick, "short_lists"),
        release_to_full_s,
        cpu,
        rounds: num(&after, "rounds"),
        rounds_not_counted: num(&after, "rounds_not_counted"),
        not_counted_after_release: num(&after, "rounds_not_counted")
            - num(&at_release, "rounds_not_counted"),
    };
    gen.stop();
    server.stop();
    Ok(run)
}

/// The `watch` section: peers only, then watchers, then raw subscribers,
/// each against its own server; one table with the ratios.
fn watch_section(meter: &Meter, plan: &WatchPlan, verdicts: &mut Verdicts) {
    let n = plan.peers;
    println!();
    println!(
        "# watch (issue 14): {n} peers, and {n} watchers or {n} raw subscribers, default options, loadgen --redial; load average {}",
        loadavg()
    );
    let mut runs: Vec<(Follow, Result<WatchRun, String>)> = Vec::new();
    for follow in [Follow::Nobody, Follow::Watch, Follow::Classic] {
        let run = watch_run(meter, plan, follow);
        match &run {
            Ok(r) => println!(
                "# {}: all full after {:.2} s; loadgen CPU idle {:.1}%, churn {:.1}%; {} isolated joins; churn: {} changes delivered, {} lost; watch replies in the idle window: {} keepalives, {} snapshots; whole run: {} unasked snapshots, {} smaller than the delta, {} refused replies; server bytes_published/change {:.0}; wchar/change {:.0}; restart: first list seen by the server's changes receiver {:.2} s after Server::new, {} snapshots to watchers; load average {}",
                follow.name(),
                r.full_s,
                r.idle_gen_cpu,
                r.churn_gen_cpu,
                r.joins,
                r.churn_changes,
                r.churn_lost,
                r.idle_keepalives,
                r.idle_snapshots,
                r.unasked,
                r.smaller,
                r.refused,
                r.published_per_change,
                r.wchar_per_change,
                r.restart_first_publish_s,
                r.restart_snapshots,
                loadavg()
            ),
            Err(e) => println!("# {}: FAILED: {e}", follow.name()),
        }
        runs.push((follow, run));
    }
    let get = |f: Follow| {
        runs.iter()
            .find(|(k, _)| *k == f)
            .and_then(|(_, r)| r.as_ref().ok())
            .cloned()
    };
    let (base, w, c) = (
        get(Follow::Nobody),
        get(Follow::Watch),
        get(Follow::Classic),
    );
    let v = |r: &Option<WatchRun>, f: &dyn Fn(&WatchRun) -> f64| r.as_ref().map_or(f64::NAN, f);
    let fmt = |x: f64, digits: usize| {
        if x.is_nan() {
            "-".to_owned()
        } else {
            format!("{x:.digits$}")
        }
    };
    let ratio = |a: f64, b: f64| {
        if a.is_nan() || b.is_nan() || a == 0.0 {
            "-".to_owned()
        } else {
            format!("{:.1}x", b / a)
        }
    };
    println!();
    println!("| measure | watch | classic | classic / watch | peers only | target (watch) |");
    println!("|---|---|---|---|---|---|");
    type Pick = fn(&WatchRun) -> f64;
    let rows: [(&str, Pick, usize, &str); 10] = [
        (
            "one join reaches every follower, p50 ms",
            |r| r.join_p50,
            1,
            "",
        ),
        (
            "one join reaches every follower, p99 ms",
            |r| r.join_p99,
            1,
            "< 50 ms",
        ),
        (
            "churn 1%/s: change reaches every follower, p50 ms",
            |r| r.churn_p50,
            1,
            "",
        ),
        (
            "churn 1%/s: change reaches every follower, p99 ms",
            |r| r.churn_p99,
            1,
            "",
        ),
        (
            "churn 1%/s: bytes written to the followers per change",
            |r| r.bytes_per_change,
            0,
            ">= 500x fewer than classic",
        ),
        (
            "churn 1%/s: server CPU % of a core",
            |r| r.churn_cpu,
            1,
            "< 20%",
        ),
        (
            "restart: every follower full, s after the first publish (delay 3 s)",
            |r| r.restart_after_publish_s,
            2,
            "< 2 s",
        ),
        (
            "restart: every follower full, s after the restart",
            |r| r.restart_full_s,
            2,
            "",
        ),
        (
            "restart: snapshots not asked for",
            |r| r.restart_unasked,
            0,
            "0",
        ),
        ("idle: server CPU % of a core", |r| r.idle_cpu, 2, "< 1%"),
    ];
    for (label, pick, digits, target) in rows {
        let (a, b, z) = (v(&w, &pick), v(&c, &pick), v(&base, &pick));
        let r = if label.contains("not asked") {
            "-".to_owned()
        } else {
            ratio(a, b)
        };
        println!(
            "| {label} | {} | {} | {r} | {} | {target} |",
            fmt(a, digits),
            fmt(b, digits),
            fmt(z, digits)
        );
    }
    println!();
    let Some(w) = w else {
        verdicts.check("watch: the watch run completed".into(), false);
        return;
    };
    verdicts.check(
        format!(
            "watch, {n} watchers: one join reaches every watcher, p99 < 50 ms ({:.1} ms)",
            w.join_p99
        ),
        w.join_p99 < 50.0,
    );
    if let Some(c) = &c {
        let fewer = c.bytes_per_change / w.bytes_per_change;
        verdicts.check(
            format!(
                "watch, {n} watchers: >= 500x fewer bytes per change than {n} raw subscribers ({:.0} vs {:.0} bytes: {fewer:.0}x)",
                w.bytes_per_change, c.bytes_per_change
            ),
            fewer >= 500.0,
        );
    }
    verdicts.check(
        format!(
            "watch, {n} watchers, 1% churn/s: server < 20% of a core ({:.1}%)",
            w.churn_cpu
        ),
        w.churn_cpu < 20.0 && w.churn_lost == 0,
    );
    verdicts.check(
        format!(
            "watch, {n} watchers: every watcher full within 2 s of the restarted server's first publish ({:.2} s; {:.2} s after the restart)",
            w.restart_after_publish_s, w.restart_full_s
        ),
        w.restart_after_publish_s < 2.0,
    );
    verdicts.check(
        format!(
            "watch: no snapshot a watcher did not ask for (restart {}, whole run {}; {} smaller than the delta)",
            w.restart_unasked, w.unasked, w.smaller
        ),
        w.restart_unasked == 0.0 && w.unasked == 0.0,
    );
    verdicts.check(
        format!(
            "watch, {n} watchers, idle: server < 1% of a core ({:.2}%; peers only {:.2}%)",
            w.idle_cpu,
            v(&base, &|r| r.idle_cpu)
        ),
        w.idle_cpu < 1.0,
    );
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_ascii_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {mem_gib:.1} GiB memory, Linux {}",
        kernel.trim()
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_ascii_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Table {
    out: String,
}

impl Table {
    fn header(&mut self) {
        self.row(&[
            "case",
            "tr",
            "N",
            "CPU %",
            "x floor",
            "RSS MB",
            "x floor",
            "full s",
            "answers/survey",
            "lists/min",
            "notes",
        ]);
    }

    fn row(&mut self, cells: &[&str]) {
        let widths = [34, 3, 6, 7, 7, 7, 7, 6, 22, 9, 0];
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i == 0 || i == 8 || i + 1 == cells.len() {
                let _ = write!(line, "{c:<w$} ");
            } else {
                let _ = write!(line, "{c:>w$} ");
            }
        }
        let line = line.trim_end().to_owned();
        println!("{line}");
        self.out.push_str(&line);
        self.out.push('\n');
    }

    fn fail(&mut self, case: &str, tr: &str, n: u32, why: &str) {
        self.row(&[
            case,
            tr,
            &n.to_string(),
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            &format!("FAILED: {why}"),
        ]);
    }
}

fn f1(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.1}")
    }
}

fn f2(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.2}")
    }
}

struct Verdicts(Vec<(String, bool)>);

impl Verdicts {
    fn check(&mut self, what: String, ok: bool) {
        self.0.push((what, ok));
    }
}

fn main() {
    let plan = Plan::from_args();
    let pinned = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        pinned,
        "taskset (util-linux) is needed to pin processes to cores"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cores >= 2,
        "the benchmark pins to cores 0 and 1: needs 2 cores"
    );
    let meter = Meter {
        ticks_per_s: procfs::ticks_per_second() as f64,
    };
    let dir = std::env::temp_dir().join(format!("nngd-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a directory for ipc sockets");
    if std::env::args().any(|a| a == "keep-logs") {
        let logs = std::env::temp_dir().join(format!("nngd-scale-logs-{}", std::process::id()));
        std::fs::create_dir_all(&logs).expect("create the log directory");
        println!("# logs: {}", logs.display());
        let _ = LOG_DIR.set(logs);
    }
    let mut urls = Urls { dir, run: 0 };
    let started = Instant::now();
    let machine_before = procfs::machine_ticks();
    let own_before = procfs::cpu_ticks_with_children(std::process::id()).unwrap_or(0);

    println!("# nng-discovery scale benchmark");
    println!("# machine: {}", machine());
    println!("# load average at start: {}", loadavg());
    println!(
        "# server (or floor) pinned to core 0, load generator to core 1; CPU % of one core over a steady window"
    );
    println!(
        "# windows: floor {:?}, ours {:?}, churn {:?}; poll 1s = poll 1 s / survey 500 ms; default = poll 5 s / survey 1 s",
        plan.floor_window, plan.ours_window, plan.churn_window
    );
    println!("# full s: from the server's start until a raw subscriber holds all N names (Clients: from the clients' start until the server, or every client, has all)");
    println!("# mass connect: N peers connect at once to a server up for one survey time, with one subscriber; full s from the first peer's connection; CPU % of the server from the generator's start to the full list");
    println!("# restart: {RESTART_PEERS} loadgen --redial peers, a raw subscriber; the server (default options) SIGKILLed once the subscriber holds all, started again on the same URLs as soon as every peer saw its connection close (down +0s) or 3 s later (down +3s: every peer's redial wait at its longest, 1 s); reference rows: the same with --first-publish-ms 0; full s from the restart until the subscriber holds all again");
    println!("# answers/survey: min-max per heartbeat round (ours) or per survey (floor) in the window; lists/min: lists published in the window, per minute");
    println!();
    let mut table = Table { out: String::new() };
    let mut verdicts = Verdicts(Vec::new());
    table.header();
    let largest = *plan.sizes.iter().max().unwrap_or(&0);

    let mut floors: Vec<(Transport, u32, Steady)> = Vec::new();
    let ours_rows = |table: &mut Table,
                     verdicts: &mut Verdicts,
                     floors: &mut Vec<(Transport, u32, Steady)>,
                     urls: &mut Urls,
                     t: Transport| {
        for &n in &plan.sizes {
            if t == Transport::Ipc && n != largest {
                continue;
            }
            match floor_run(&meter, urls, t, n, plan.floor_window) {
                Ok(f) => {
                    table.row(&[
                        "floor: raw NNG surveyor, poll 1s",
                        t.name(),
                        &n.to_string(),
                        &f1(f.cpu),
                        "1",
                        &f1(f.rss),
                        "1",
                        "-",
                        &format!(
                            "{}-{} ({} surveys)",
                            f.answers_min, f.answers_max, f.surveys
                        ),
                        "-",
                        &format!("loadgen {:.1}%", f.gen_cpu),
                    ]);
                    floors.push((t, n, f));
                }
                Err(e) => table.fail("floor: raw NNG surveyor, poll 1s", t.name(), n, &e),
            }
            for (label, poll) in [
                ("ours, poll 1s", FAST_POLL),
                ("ours, default options", DEFAULT_POLL),
            ] {
                if t == Transport::Ipc && poll.poll_ms != FAST_POLL.poll_ms {
                    continue;
                }
                let floor = floors
                    .iter()
                    .find(|(ft, fn_, _)| *ft == t && *fn_ == n)
                    .map(|(_, _, f)| f.clone());
                match ours_run(&meter, urls, t, n, poll, plan.ours_window) {
                    Ok(o) => {
                        let fast = poll.poll_ms == FAST_POLL.poll_ms;
                        let (xc, xr) = match (&floor, fast) {
                            (Some(f), true) => (f2(o.cpu / f.cpu), f2(o.rss / f.rss)),
                            _ => ("-".into(), "-".into()),
                        };
                        table.row(&[
                            label,
                            t.name(),
                            &n.to_string(),
                            &f1(o.cpu),
                            &xc,
                            &f1(o.rss),
                            &xr,
                            &o.full_s.map_or("-".into(), f2),
                            &format!(
                                "{}-{} ({} rounds{})",
                                o.answers_min,
                                o.answers_max,
                                o.surveys,
                                if o.missed > 0 {
                                    format!(", {} unseen", o.missed)
                                } else {
                                    String::new()
                                }
                            ),
                            &o.lists_per_min.map_or("-".into(), f1),
                            &format!("loadgen {:.1}%", o.gen_cpu),
                        ]);
                        let all = o.answers_min == u64::from(n) && o.surveys > 0;
                        if n == 10_000 && t == Transport::Tcp && fast {
                            verdicts.check(
                                format!(
                                    "poll 1s, 10,000 peers: every survey answered by all (min {}; the floor's min in this run: {})",
                                    o.answers_min,
                                    floor.as_ref().map_or("-".into(), |f| f.answers_min.to_string())
                                ),
                                all,
                            );
                            verdicts.check(
                                format!(
                                    "poll 1s, 10,000 peers: full list within 3 s (took {})",
                                    o.full_s.map_or("-".into(), f2)
                                ),
                                o.full_s.is_some_and(|s| s <= 3.0),
                            );
                            if let Some(f) = &floor {
                                verdicts.check(
                                    format!(
                                        "poll 1s, 10,000 peers: CPU <= 1.3 x floor ({:.1}% vs {:.1}%: {:.2}x)",
                                        o.cpu,
                                        f.cpu,
                                        o.cpu / f.cpu
                                    ),
                                    o.cpu <= 1.3 * f.cpu,
                                );
                            }
                            verdicts.check(
                                format!("poll 1s, 10,000 peers: RSS < 80 MB ({:.1} MB)", o.rss),
                                o.rss < 80.0,
                            );
                        } else if n == 10_000 && t == Transport::Tcp {
                            verdicts.check(
                                format!("default options, 10,000 peers: CPU < 5% ({:.1}%)", o.cpu),
                                o.cpu < 5.0,
                            );
                        } else if !all {
                            verdicts.check(
                                format!(
                                    "{label}, {n} peers over {}: every survey answered by all",
                                    t.name()
                                ),
                                false,
                            );
                        }
                    }
                    Err(e) => table.fail(label, t.name(), n, &e),
                }
            }
        }
    };
    if plan.runs("floor") || plan.runs("ours") {
        ours_rows(
            &mut table,
            &mut verdicts,
            &mut floors,
            &mut urls,
            Transport::Tcp,
        );
    }
    if plan.runs("ipc") {
        ours_rows(
            &mut table,
            &mut verdicts,
            &mut floors,
            &mut urls,
            Transport::Ipc,
        );
    }

    if plan.runs("mass") {
        for (label, poll) in [
            ("mass connect, poll 1s", FAST_POLL),
            ("mass connect, default options", DEFAULT_POLL),
        ] {
            let mut worst_full: Option<f64> = None;
            let mut worst_join: Option<f64> = None;
            let mut failed = false;
            for run in 1..=plan.mass_runs {
                let case = format!("{label} ({run}/{})", plan.mass_runs);
                match mass_run(&meter, &mut urls, largest, poll, false) {
                    Ok(m) => {
                        worst_full = Some(worst_full.map_or(m.full_s, |w| w.max(m.full_s)));
                        worst_join =
                            Some(worst_join.map_or(m.join_max_ms, |w| w.max(m.join_max_ms)));
                        table.row(&[
                            &case,
                            "tcp",
                            &largest.to_string(),
                            &f1(m.cpu),
                            "-",
                            "-",
                            "-",
                            &f2(m.full_s),
                            "-",
                            "-",
                            &format!(
                                "{:.2}x the Go original's {GO_MASS_CONNECT_S:.1} s (NOTES); peers connected over {:.2} s; each peer's connection->listed p50 {:.0} ms p99 {:.0} ms max {:.0} ms (from NNG's accept: p99 {:.0} max {:.0}); server {:.2} CPU-s, {} surveys ({} heartbeat), {} answers, {} publishes",
                                m.full_s / GO_MASS_CONNECT_S,
                                m.connect_s,
                                m.join_p50_ms,
                                m.join_p99_ms,
                                m.join_max_ms,
                                m.hs_p99_ms,
                                m.hs_max_ms,
                                m.cpu_s,
                                m.surveys,
                                m.rounds,
                                m.answers,
                                m.publishes
                            ),
                        ]);
                    }
                    Err(e) => {
                        failed = true;
                        table.fail(&case, "tcp", largest, &e);
                    }
                }
            }
            if largest >= 10_000 {
                verdicts.check(
                    format!(
                        "{label}, {largest} peers: every peer listed within 1 s of its connection (worst {} ms over {} runs)",
                        worst_join.map_or("-".into(), |m| format!("{m:.0}")),
                        plan.mass_runs
                    ),
                    !failed && worst_join.is_some_and(|m| m <= 1000.0),
                );
                verdicts.check(
                    format!(
                        "{label}, {largest} peers: full list sooner than the Go original's {GO_MASS_CONNECT_S:.1} s (worst {} s)",
                        worst_full.map_or("-".into(), f2)
                    ),
                    !failed && worst_full.is_some_and(|f| f < GO_MASS_CONNECT_S),
                );
            }
        }
    }

    if plan.runs("announce") {
        announce_section(&meter, &mut urls, largest, &mut verdicts);
    }

    if plan.runs("restart") {
        let mut dips = Vec::new();
        let mut failed = false;
        let mut reference = Vec::new();
        let variants = [
            (Duration::ZERO, "default"),
            (Duration::from_secs(3), "default"),
            (Duration::from_secs(3), "0"),
        ];
        for ((down, first_publish), run) in variants
            .iter()
            .flat_map(|v| (1..=plan.restart_runs).map(move |r| (*v, r)))
        {
            let reference_run = first_publish != "default";
            let case = format!(
                "restart{}, down +{}s ({run}/{})",
                if reference_run { ", delay 0 (ref)" } else { "" },
                down.as_secs(),
                plan.restart_runs
            );
            match restart_run(down, first_publish) {
                Ok(r) => {
                    let dip = if r.min_after_full >= RESTART_PEERS as usize {
                        "dip: none".to_owned()
                    } else {
                        format!("DIP: a list of {} names", r.min_after_full)
                    };
                    if reference_run {
                        reference.push(r.min_after_full);
                    } else {
                        dips.push(r.min_after_full);
                    }
                    table.row(&[
                        &case,
                        "tcp",
                        &RESTART_PEERS.to_string(),
                        "-",
                        "-",
                        "-",
                        "-",
                        &f2(r.full_again_s),
                        "-",
                        "-",
                        &format!(
                            "{dip} (smallest list after the first full one: {}); first list {:.2} s after the restart ({} names; server: {:.2} s after Server::new, first_publish_delay {} ms); every peer redialed and handshaken {:.2} s after the restart; {} lists from the kill to the full list",
                            r.min_after_full,
                            r.first_list_s,
                            r.server_first_len,
                            r.server_first_s,
                            r.delay_ms,
                            r.peers_back_s,
                            r.lists_after
                        ),
                    ]);
                }
                Err(e) => {
                    failed |= !reference_run;
                    table.fail(&case, "tcp", RESTART_PEERS, &e);
                }
            }
        }
        verdicts.check(
            format!(
                "restart under {RESTART_PEERS} redialing peers: the subscriber never holds fewer than {RESTART_PEERS} names (smallest per run: {dips:?})"
            ),
            !failed && dips.iter().all(|&d| d >= RESTART_PEERS as usize),
        );
        println!(
            "# restart reference, first publish delay 0 (the first list when the first heartbeat round ends): smallest list per run {reference:?}"
        );
    }

    if plan.runs("watch") {
        watch_section(&meter, &plan.watch, &mut verdicts);
    }

    if plan.runs("follow") {
        follow_section(&meter, &plan.watch, &mut verdicts);
    }

    if plan.runs("churn") {
        let n = plan.churn_peers;
        let mut cases: Vec<(u32, bool)> = plan.churn_subs.iter().map(|&m| (m, false)).collect();
        let most = *plan.churn_subs.iter().max().unwrap_or(&0);
        cases.push((most, true));
        for (subs, burst) in cases {
            let label = format!(
                "churn 1%/s {}, {subs} subs",
                if burst { "in bursts" } else { "spread" }
            );
            match churn_run(&meter, &mut urls, n, subs, burst, plan.churn_window) {
                Ok(c) => {
                    table.row(&[
                        &label,
                        "tcp",
                        &n.to_string(),
                        &f1(c.cpu),
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        &format!(
                            "change->all subs p50 {:.1} ms p99 {:.1} ms max {:.0} ms (leaves {:.1}/{:.1}, joins {:.1}/{:.1}; {} changes, {:.1}/s, {} lost, {} superseded); {:.1} publishes/s, {:.0} KB/s published; loadgen {:.1}%",
                            c.p50,
                            c.p99,
                            c.max,
                            c.leave.0,
                            c.leave.1,
                            c.join.0,
                            c.join.1,
                            c.changes,
                            c.changes_per_s,
                            c.lost,
                            c.superseded,
                            c.publishes_per_s,
                            c.bytes_per_s / 1000.0,
                            c.gen_cpu
                        ),
                    ]);
                    if subs == most && subs >= 1000 {
                        let mode = if burst { "bursts" } else { "spread" };
                        verdicts.check(
                            format!(
                                "churn ({mode}), {subs} subs: p99 < 100 ms ({:.1} ms)",
                                c.p99
                            ),
                            c.p99 < 100.0 && c.lost == 0,
                        );
                        verdicts.check(
                            format!("churn ({mode}), {subs} subs: server < 30% ({:.1}%)", c.cpu),
                            c.cpu < 30.0,
                        );
                        verdicts.check(
                            format!(
                                "churn ({mode}), {subs} subs: publishes coalesced ({:.1} publishes/s for {:.1} changes/s)",
                                c.publishes_per_s, c.changes_per_s
                            ),
                            c.publishes_per_s <= 0.75 * c.changes_per_s,
                        );
                    }
                }
                Err(e) => table.fail(&label, "tcp", n, &e),
            }
        }
    }

    if plan.runs("clients") {
        for subscribe in [false, true] {
            let n = plan.clients;
            let label = if subscribe {
                "real Clients with subscription"
            } else {
                "real Clients"
            };
            match clients_run(&meter, &mut urls, n, subscribe, plan.clients_window) {
                Ok(c) => table.row(&[
                    label,
                    "tcp",
                    &n.to_string(),
                    &f1(c.server_cpu),
                    "-",
                    "-",
                    "-",
                    &f2(c.full_s),
                    "-",
                    "-",
                    &format!(
                        "clients' process: {} threads ({:.2}/client), RSS {:.1} MB ({:.0} KB/client), CPU {:.1}% ({:.4}%/client); dropping them all took {:.1} s",
                        c.threads,
                        c.threads as f64 / f64::from(n),
                        c.rss,
                        c.rss * 1024.0 / f64::from(n),
                        c.cpu,
                        c.cpu / f64::from(n),
                        c.shutdown_s
                    ),
                ]),
                Err(e) => table.fail(label, "tcp", n, &e),
            }
        }
    }

    if plan.runs("stalls") {
        let mut ok_runs = 0;
        for run in 1..=plan.stall_runs {
            let label = format!("stalls: run {run}/{}, poll 1s", plan.stall_runs);
            match stall_run(&meter, &mut urls, largest, plan.stall_window) {
                Ok(r) => {
                    // A stall (the Go original's lock-up) is a server that
                    // stops surveying or publishing; lost answers are shown
                    // but are not a stall.
                    let ok = r.rounds + 1 >= r.expected_rounds && r.burst_ms.is_some();
                    ok_runs += usize::from(ok);
                    table.row(&[
                        &label,
                        "tcp",
                        &largest.to_string(),
                        &f1(r.cpu),
                        "-",
                        "-",
                        "-",
                        &r.full_s.map_or("-".into(), f2),
                        &format!("min {} ({} rounds)", r.answers_min, r.rounds),
                        "-",
                        &format!(
                            "{} rounds of {} expected; 10 leave+rejoin: {}; {}; server RSS {:.1} MB",
                            r.rounds,
                            r.expected_rounds,
                            r.burst_ms.map_or("NOT DELIVERED".into(), |m| format!(
                                "all 20 changes delivered within {m:.0} ms"
                            )),
                            if ok { "ok" } else { "STALLED" },
                            r.rss
                        ),
                    ]);
                }
                Err(e) => table.fail(&label, "tcp", largest, &e),
            }
        }
        verdicts.check(
            format!(
                "stalls: {ok_runs} of {} runs at {largest} peers kept surveying and publishing",
                plan.stall_runs
            ),
            ok_runs == plan.stall_runs,
        );
    }

    if plan.runs("starve") {
        let p = &plan.starve;
        let label = format!(
            "starve: {} peers, {} subscribers, running {:?} of every {:?} for {:?}",
            p.peers,
            p.peers,
            p.running,
            p.running + p.stopped,
            p.window
        );
        match starve_run(&meter, &mut urls, p) {
            Ok(r) => {
                println!();
                println!("# {label}, poll 1s / survey 500ms / miss threshold 2");
                println!(
                    "server CPU while starved {:.1}% of a core; lists lacking a live peer: {}; \
                     release to every follower holding all {}: {:.2} s; rounds {} of which not \
                     counted {} ({} in the 5 s after the release)",
                    r.cpu,
                    r.short_lists,
                    p.peers,
                    r.release_to_full_s,
                    r.rounds,
                    r.rounds_not_counted,
                    r.not_counted_after_release
                );
                verdicts.check(
                    format!(
                        "starve: {} lists lacking a live peer (target 0)",
                        r.short_lists
                    ),
                    r.short_lists == 0,
                );
                verdicts.check(
                    format!(
                        "starve: every follower held the live list {:.2} s after the release (target < 5 s)",
                        r.release_to_full_s
                    ),
                    r.release_to_full_s < 5.0,
                );
            }
            Err(e) => {
                println!("# {label}: FAILED: {e}");
                verdicts.check(format!("starve: {e}"), false);
            }
        }
    }

    let _ = std::fs::remove_dir_all(&urls.dir);
    println!();
    println!("# targets");
    for (what, ok) in &verdicts.0 {
        println!("{} {what}", if *ok { "met:    " } else { "NOT MET:" });
    }
    let elapsed = started.elapsed();
    println!();
    println!("# load average at end: {}", loadavg());
    if let (Some((b0, t0)), Some((b1, t1))) = (machine_before, procfs::machine_ticks()) {
        let jiffies = (t1 - t0).max(1) as f64;
        let busy = (b1 - b0) as f64 / jiffies * cores as f64 * 100.0;
        // Jiffies in /proc/stat are USER_HZ ticks summed over all cores.
        let own_ticks =
            procfs::cpu_ticks_with_children(std::process::id()).unwrap_or(0) - own_before;
        let own = own_ticks as f64 / jiffies * cores as f64 * 100.0;
        println!(
            "# machine busy on average {busy:.0}% of one core (of {}%): this benchmark and its children {own:.0}%, everything else {:.0}%",
            cores * 100,
            busy - own
        );
    }
    println!("# took {:.0} s", elapsed.as_secs_f64());
}
