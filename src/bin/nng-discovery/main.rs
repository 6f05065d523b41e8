//! `nng-discovery`: the discovery server, a join sidecar and a watcher, as
//! one small command-line program. Run `nng-discovery --help`.
//!
//! Signals: SIGINT and SIGTERM are blocked first thing in `main`, before any
//! thread exists, so every thread inherits the mask and they are only ever
//! taken synchronously with `sigwait` (see `signals`). Each command's
//! function owns its server, client or subscriber and shuts it down (sockets
//! closed, threads joined) before `main` returns the exit status.

mod args;
mod check;
mod clap_errors;
mod duration;
mod exec;
mod health;
mod help;
mod http;
mod logging;
mod metrics;
mod notify;
mod output;
mod signals;
mod silence;

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver};
use nng_discovery::{Client, Options, Server, Subscriber, Tls};

use args::{Command, JoinArgs, ServerArgs, TlsFiles, WatchArgs};
use health::Health;
use signals::Signal;
use silence::Silence;

/// Exit status after a runtime failure.
const FAILURE: u8 = 1;
/// Exit status after a usage error.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    if let Err(e) = signals::block() {
        eprintln!("nng-discovery: cannot block SIGINT and SIGTERM: {e}");
        return ExitCode::from(FAILURE);
    }
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("nng-discovery: argument {arg:?} is not valid UTF-8");
                return ExitCode::from(USAGE);
            }
        }
    }
    let command = match args::parse(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("nng-discovery: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let result = match command {
        // A closed stdout is no reason to fail (or panic, as print! would).
        Command::Print(text) => {
            let _ = io::stdout().write_all(text.as_bytes());
            Ok(())
        }
        Command::Server(a) => {
            init_logging();
            server(a)
        }
        Command::Join(a) => {
            init_logging();
            join(a)
        }
        Command::Watch(a) => {
            init_logging();
            watch(a)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nng-discovery: {message}");
            ExitCode::from(FAILURE)
        }
    }
}

fn init_logging() {
    logging::init();
}

/// A runtime failure, printed as `nng-discovery: MESSAGE` (exit status 1).
type Outcome = Result<(), String>;

/// `options` with the TLS files read, if given (`--tls-*`); an unreadable
/// or invalid file is an error naming it.
fn with_tls(options: Options, files: &Option<TlsFiles>) -> Result<Options, String> {
    match files {
        None => Ok(options),
        Some(f) => Tls::new(&f.ca, &f.cert, &f.key)
            .map(|tls| options.tls(tls))
            .map_err(|e| e.report()),
    }
}

fn server(a: ServerArgs) -> Outcome {
    let options = with_tls(a.options, &a.tls)?;
    let server = Server::new(&a.survey, &a.publish, options).map_err(|e| e.report())?;
    let metrics = match a.metrics.map(http::Listener::bind).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            server.shutdown();
            return Err(e);
        }
    };
    {
        // Scripts and tests read these lines to learn the ports bound for
        // tcp://HOST:0. A closed stdout must not stop the server.
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "survey {}", server.survey_url());
        let _ = writeln!(out, "publish {}", server.publish_url());
        if let Some(url) = server.watch_url() {
            let _ = writeln!(out, "watch {url}");
        }
        if let Some(url) = server.watch_broadcast_url() {
            let _ = writeln!(out, "watch broadcast {url}");
        }
        if let Some((m, _)) = &metrics {
            let _ = writeln!(out, "metrics http://{}/metrics", m.addr());
        }
        let _ = out.flush();
    }
    // systemd (Type=notify): every URL is bound, the lines are out.
    notify::notify("READY=1");
    // Once a minute, the server's counters at `info` (one line, key=value),
    // so an operator sees that every survey is answered in full.
    let (stop_stats, stats_stop) = crossbeam_channel::bounded::<()>(0);
    let signal = std::thread::scope(|scope| {
        // `--metrics`: one thread, stopped by dropping `stop_metrics`.
        let mut stop_metrics = None;
        if let Some((listener, stop)) = metrics {
            stop_metrics = Some(stop);
            let server = &server;
            scope.spawn(move || listener.serve(|page| respond(server, page)));
        }
        scope.spawn(|| {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stats_stop.recv_timeout(STATS_EVERY)
            {
                log_stats(&server.stats());
            }
        });
        let signal = signals::wait();
        drop(stop_stats);
        drop(stop_metrics);
        signal
    })
    .map_err(|e| format!("waiting for signals: {e}"))?;
    log::info!("{}: shutting down", signal.name());
    notify::notify("STOPPING=1");
    log_stats(&server.stats());
    server.shutdown();
    Ok(())
}

/// The metrics port's pages (`--metrics`), from the server's state.
fn respond(server: &Server, page: http::Page) -> http::Response {
    match page {
        http::Page::Metrics => http::Response {
            status: "200 OK",
            content_type: metrics::CONTENT_TYPE,
            body: metrics::render(&server.stats(), env!("CARGO_PKG_VERSION")),
        },
        // 200 while the server's threads run; 503 if one has ended (a
        // panic): the process is up but no longer serving.
        http::Page::Healthz if server.is_running() => http::Response {
            status: "200 OK",
            content_type: "text/plain; charset=utf-8",
            body: "ok\n".to_owned(),
        },
        http::Page::Healthz => http::Response {
            status: "503 Service Unavailable",
            content_type: "text/plain; charset=utf-8",
            body: "the server loop has stopped\n".to_owned(),
        },
        http::Page::Peers => http::Response {
            status: "200 OK",
            content_type: "application/json",
            body: output::json(&server.peers()) + "\n",
        },
    }
}

/// How often `server` logs its counters.
const STATS_EVERY: Duration = Duration::from_secs(60);

fn log_stats(s: &nng_discovery::Stats) {
    log::info!("stats: {s}");
}

fn join(a: JoinArgs) -> Outcome {
    // Unlisted until the health state says otherwise: with --check, the
    // first check runs before the first join.
    let options = with_tls(
        Options::default()
            .available(false)
            .watch_keepalive(a.watch_keepalive),
        &a.tls,
    )?;
    // The parser lets at most one of --publish and --watch through.
    let mut client = Client::builder(&a.survey, &a.name).options(options);
    if !a.watch.is_empty() {
        client = client.watch(&a.watch);
    } else if !a.publish.is_empty() {
        client = client.subscribe(&a.publish);
    }
    let client = client.build().map_err(|e| e.report())?;
    let signals = signals::forward().map_err(|e| format!("watching signals: {e}"))?;
    let no_lists: Receiver<Vec<String>> = never();
    let lists = client.peers().unwrap_or(no_lists);
    let checker = match &a.check {
        Some(command) => Some(
            check::Checker::start(command.clone(), a.check_interval, a.check_timeout)
                .map_err(|e| format!("cannot start the --check thread: {e}"))?,
        ),
        None => None,
    };
    let no_results: Receiver<check::Outcome> = never();
    let results = checker.as_ref().map_or(&no_results, |c| c.results());
    let looks = match a.maintenance_file {
        Some(_) => crossbeam_channel::tick(a.check_interval.min(MAINTENANCE_POLL_MAX)),
        None => never(),
    };
    let mut gate = Gate {
        client: &client,
        health: match checker {
            Some(_) => Health::new(a.rise, a.fall),
            None => Health::always_healthy(),
        },
        maintenance_file: a.maintenance_file.as_deref(),
        in_maintenance: false,
    };
    gate.look_at_maintenance_file();
    if checker.is_none() && gate.health.listed() {
        gate.apply(Some(true));
    }
    log::info!(
        "answering surveys from {} as {}",
        a.survey.join(" "),
        a.name
    );
    let mut printer = Printer { json: a.json };
    let mut silence = Silence::new(a.silence_timeout, client.surveys_received(), Instant::now());
    let samples = silence.period().map_or_else(never, crossbeam_channel::tick);
    let signal = loop {
        select! {
            recv(signals) -> signal => break signal,
            recv(samples) -> _ => {
                let expected = client.is_available();
                match silence.sample(client.surveys_received(), expected, Instant::now()) {
                    Some(silence::Event::Silent(for_)) => log::warn!(
                        "no survey from any server for {:?}: is a server running at {}? \
                         (still dialing; --silence-timeout)",
                        // Whole milliseconds: no float formatting linked.
                        Duration::from_millis(for_.as_millis() as u64),
                        a.survey.join(" ")
                    ),
                    Some(silence::Event::Heard) => log::info!("surveyed again"),
                    None => {}
                }
            }
            recv(lists) -> list => match list {
                Ok(list) => {
                    if !printer.print(&list)? {
                        drop(checker);
                        client.shutdown();
                        return Ok(());
                    }
                }
                Err(_) => return Err("the subscription ended unexpectedly".into()),
            },
            recv(results) -> outcome => match outcome {
                Ok(outcome) => gate.check_result(&outcome),
                Err(_) => return Err("the --check thread ended unexpectedly".into()),
            },
            recv(looks) -> _ => gate.look_at_maintenance_file(),
        }
    };
    // No check may put the name back from here on: stop them (this kills
    // a check that is running).
    drop(checker);
    match (a.drain, signal) {
        (Some(drain), Ok(signal)) => {
            client.set_available(false);
            log::info!(
                "{}: left the list, draining for {drain:?} (a second signal ends the drain)",
                signal.name()
            );
            let deadline = crossbeam_channel::after(drain);
            loop {
                select! {
                    recv(signals) -> signal => {
                        if let Ok(signal) = signal {
                            log::info!("{}: ending the drain early", signal.name());
                        }
                        break;
                    }
                    recv(deadline) -> _ => {
                        log::info!("drained: shutting down");
                        break;
                    }
                    recv(lists) -> list => match list {
                        Ok(list) => {
                            if !printer.print(&list)? {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                }
            }
        }
        (_, signal) => log_stop(signal),
    }
    client.shutdown();
    Ok(())
}

/// The longest time between two looks at `--maintenance-file`.
const MAINTENANCE_POLL_MAX: Duration = Duration::from_secs(1);

/// `join`'s health state, acted on: the client is made available or not
/// whenever [`Health::listed`] changes, and each change is logged.
struct Gate<'a> {
    client: &'a Client,
    health: Health,
    maintenance_file: Option<&'a std::path::Path>,
    /// Whether the maintenance file existed at the last look.
    in_maintenance: bool,
}

impl Gate<'_> {
    fn apply(&self, change: Option<bool>) {
        if let Some(listed) = change {
            self.client.set_available(listed);
            let name = self.client.service();
            if listed {
                log::info!("{name} is listed");
            } else {
                log::info!("{name} is not listed");
            }
        }
    }

    fn check_result(&mut self, outcome: &check::Outcome) {
        let before = self.health.healthy();
        let change = self.health.record(outcome.passed);
        let after = self.health.healthy();
        if after != before {
            let verdict = if outcome.passed { "passes" } else { "fails" };
            log::info!("--check {verdict} ({})", outcome.detail);
        } else {
            log::debug!("--check: {}", outcome.detail);
        }
        self.apply(change);
    }

    fn look_at_maintenance_file(&mut self) {
        let Some(path) = self.maintenance_file else {
            return;
        };
        let exists = path.exists();
        let change = self.health.set_maintenance(exists);
        if exists != self.in_maintenance {
            self.in_maintenance = exists;
            if exists {
                log::info!("maintenance file {} exists", path.display());
            } else {
                log::info!("maintenance file {} is gone", path.display());
            }
        }
        self.apply(change);
    }
}

fn watch(a: WatchArgs) -> Outcome {
    let options = with_tls(
        Options::default().watch_keepalive(a.watch_keepalive),
        &a.tls,
    )?;
    // The parser lets exactly one of --publish and --watch through.
    let (subscriber, urls) = if a.watch.is_empty() {
        (Subscriber::with_options(&a.publish, &options), &a.publish)
    } else {
        (Subscriber::watch_with_options(&a.watch, &options), &a.watch)
    };
    let subscriber = subscriber.map_err(|e| e.report())?;
    let signals = signals::forward().map_err(|e| format!("watching signals: {e}"))?;
    let lists = subscriber.changes();
    let mut exec = a.exec.map(exec::Exec::new);
    let no_exits: Receiver<u32> = never();
    let mut printer = Printer { json: a.json };
    log::info!("watching {}", urls.join(" "));
    // Lists arrive only when they change, so only the wait for the first
    // one can tell a silent server; after that, the library logs a server
    // that stops counting.
    let mut lists_received = 0u64;
    let mut silence = Silence::new(a.silence_timeout, 0, Instant::now());
    let samples = silence.period().map_or_else(never, crossbeam_channel::tick);
    let result = loop {
        let exits = exec.as_ref().map_or(&no_exits, |e| e.exited());
        select! {
            recv(samples) -> _ => {
                let expected = lists_received == 0;
                match silence.sample(lists_received, expected, Instant::now()) {
                    Some(silence::Event::Silent(for_)) => log::warn!(
                        "no list from any server for {:?}: is a server running at {}? \
                         (still dialing; --silence-timeout)",
                        // Whole milliseconds: no float formatting linked.
                        Duration::from_millis(for_.as_millis() as u64),
                        urls.join(" ")
                    ),
                    Some(silence::Event::Heard) => log::info!("first list received"),
                    None => {}
                }
            }
            recv(signals) -> signal => {
                log_stop(signal);
                break Ok(());
            }
            recv(lists) -> list => match list {
                Ok(list) => {
                    lists_received += 1;
                    match printer.print(&list) {
                        Ok(true) if a.once => break Ok(()),
                        Ok(true) => {
                            if let Some(exec) = exec.as_mut() {
                                exec.offer(list);
                            }
                        }
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                Err(_) => break Err("the subscription ended unexpectedly".to_owned()),
            },
            recv(exits) -> _ => {
                if let Some(exec) = exec.as_mut() {
                    exec.on_exit();
                }
            }
        }
    };
    if let Some(exec) = exec.as_mut() {
        exec.stop();
    }
    subscriber.shutdown();
    result
}

fn log_stop(signal: Result<Signal, crossbeam_channel::RecvError>) {
    match signal {
        Ok(signal) => log::info!("{}: shutting down", signal.name()),
        Err(_) => log::error!("the signal thread ended: shutting down"),
    }
}

/// Prints lists on stdout, one line each.
struct Printer {
    json: bool,
}

impl Printer {
    /// Prints `names`; returns `Ok(false)` when stdout is closed (a reader
    /// such as `head -1` went away: a normal way to end).
    fn print(&mut self, names: &[String]) -> Result<bool, String> {
        let line = if self.json {
            output::json(names)
        } else {
            output::spaced(names)
        };
        let mut out = io::stdout().lock();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                log::info!("stdout was closed: stopping");
                Ok(false)
            }
            Err(e) => Err(format!("cannot write to stdout: {e}")),
        }
    }
}
