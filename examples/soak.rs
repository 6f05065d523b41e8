//! Soak: clients join and leave at random across several processes while
//! subscribers watch; at the end every subscriber's list must equal the true
//! live set, and the server's RSS, threads and file descriptors must be flat.
//!
//! ```text
//! cargo run --release --example soak -- --seconds 600
//! cargo run --release --example soak -- --seconds 60 --workers 4 --max-clients 50
//! ```
//!
//! The server and the subscribers run in this process; each worker is this
//! same program started again with `--worker`, holding up to `--max-clients`
//! clients that it creates and drops at random (and, now and then, drops
//! all at once, like a crashing process). It prints the server's figures
//! every `--report` seconds (default 60) and exits non-zero if the final
//! lists are wrong or a figure grew.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nng_discovery::{Client, Options, Server, Subscriber};

struct Args {
    seconds: u64,
    workers: usize,
    max_clients: usize,
    subscribers: usize,
    report: u64,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        seconds: 60,
        workers: 4,
        max_clients: 50,
        subscribers: 4,
        report: 60,
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("invalid {name} {v:?}: expected a number"))
        };
        match flag.as_str() {
            "--seconds" => a.seconds = value("--seconds")?,
            "--workers" => a.workers = value("--workers")? as usize,
            "--max-clients" => a.max_clients = value("--max-clients")? as usize,
            "--subscribers" => a.subscribers = value("--subscribers")? as usize,
            "--report" => a.report = value("--report")?.max(1),
            "--bench" => {} // passed by `cargo bench`-style runners; ignored
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        worker(&args[1..]);
        return;
    }
    let args = match parse_args(args.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(()) => println!("soak: passed"),
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// A small deterministic generator (xorshift), so no dependency is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Worker: churn clients until stdin closes, then print the live names on
/// one line and keep them alive until killed.
fn worker(args: &[String]) {
    let (Some(survey), Some(id), Some(max)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: soak --worker SURVEY_URL ID MAX_CLIENTS");
        std::process::exit(2);
    };
    let max: usize = max.parse().unwrap_or(50);
    // Stop when the parent closes our stdin.
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        drop(stop_tx);
    });
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ id.parse::<u64>().unwrap_or(1));
    let mut clients: Vec<Client> = Vec::new();
    let mut serial = 0u64;
    loop {
        if stop_rx
            .recv_timeout(Duration::from_millis(5 + rng.below(45)))
            .is_err_and(|e| e.is_disconnected())
        {
            break;
        }
        match rng.below(200) {
            0 => clients.clear(), // everyone at once, like a crash
            n if n < 100 && clients.len() < max => {
                serial += 1;
                let name = format!("http://w{id}:{serial}");
                match Client::new(survey, &name) {
                    Ok(c) => clients.push(c),
                    Err(e) => eprintln!("worker {id}: {e}"),
                }
            }
            _ if !clients.is_empty() => {
                let i = rng.below(clients.len() as u64) as usize;
                drop(clients.swap_remove(i));
            }
            _ => {}
        }
    }
    let names: Vec<&str> = clients.iter().map(Client::service).collect();
    println!("LIVE {}", names.join(" "));
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

struct Figures {
    rss_kib: u64,
    threads: usize,
    fds: usize,
}

fn figures() -> Figures {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let count = |d: &str| std::fs::read_dir(d).map(|d| d.count()).unwrap_or(0);
    Figures {
        rss_kib: field("VmRSS:"),
        threads: count("/proc/self/task"),
        fds: count("/proc/self/fd"),
    }
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::default()
        .poll_interval(Duration::from_secs(1))
        .survey_time(Duration::from_millis(250));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)?;
    let subscribers: Vec<Subscriber> = (0..args.subscribers)
        .map(|_| Subscriber::new(server.publish_url()))
        .collect::<Result<_, _>>()?;
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for id in 0..args.workers {
        let child = Command::new(&exe)
            .args(["--worker", server.survey_url(), &id.to_string()])
            .arg(args.max_clients.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        workers.push(Worker(child));
    }

    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut samples = Vec::new();
    println!(
        "{:>6} {:>6} {:>10} {:>8} {:>5} {:>9} {:>10}",
        "time", "peers", "RSS KiB", "threads", "fds", "publishes", "answers"
    );
    let mut next_report = start;
    while Instant::now() < end {
        if Instant::now() >= next_report {
            let f = figures();
            let s = server.stats();
            println!(
                "{:>5}s {:>6} {:>10} {:>8} {:>5} {:>9} {:>10}",
                start.elapsed().as_secs(),
                s.peers,
                f.rss_kib,
                f.threads,
                f.fds,
                s.publishes,
                s.answers
            );
            samples.push(f);
            next_report += Duration::from_secs(args.report);
        }
        // Keep the subscribers' channels drained as a real reader would.
        for sub in &subscribers {
            while sub.changes().try_recv().is_ok() {}
        }
        std::thread::sleep(
            Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())),
        );
    }

    // Stop the churn and collect the true live set.
    let mut live = BTreeSet::new();
    for w in &mut workers {
        drop(w.0.stdin.take());
        let out = w.0.stdout.take().ok_or("worker has no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let names = line
            .strip_prefix("LIVE")
            .ok_or(format!("worker said {line:?}"))?;
        live.extend(names.split_whitespace().map(String::from));
    }
    let live: Vec<String> = live.into_iter().collect();
    println!("churn stopped: {} live clients", live.len());

    // Every subscriber must converge on exactly that set.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, sub) in subscribers.iter().enumerate() {
        let rx = sub.changes();
        let mut last = None;
        loop {
            if last.as_ref() == Some(&live) {
                break;
            }
            match rx.recv_deadline(deadline) {
                Ok(list) => last = Some(list),
                Err(_) => {
                    return Err(format!(
                        "subscriber {i} holds {} names, {} are live",
                        last.map_or(0, |l| l.len()),
                        live.len()
                    )
                    .into())
                }
            }
        }
    }
    if server.peers() != live {
        return Err("the server's own list differs from the live set".into());
    }
    println!(
        "all {} subscribers hold the {} live names",
        subscribers.len(),
        live.len()
    );

    // Flat: compare the last sample with the first one after warm-up.
    if samples.len() >= 3 {
        let (first, last) = (&samples[1], &samples[samples.len() - 1]);
        println!(
            "from the second sample to the last: RSS {} -> {} KiB, threads {} -> {}, fds {} -> {}",
            first.rss_kib, last.rss_kib, first.threads, last.threads, first.fds, last.fds
        );
        if last.rss_kib > first.rss_kib + 4096 {
            return Err("RSS grew by more than 4 MiB".into());
        }
        if last.threads != first.threads {
            return Err("the thread count changed".into());
        }
        // File descriptors follow the number of connected clients (one
        // each), so they move with the churn; they are printed, not judged.
    }
    Ok(())
}
