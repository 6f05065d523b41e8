//! What one idle `Client` costs a process: memory and threads. The footprint
//! table in `docs/BENCHMARKS.md` ("Footprint") was measured with it.
//!
//! ```text
//! nng-discovery server --survey tcp://127.0.0.1:40007 --publish tcp://127.0.0.1:40008 &
//! cargo run --release --example idle_client -- tcp://127.0.0.1:40007
//! ```
//!
//! It starts one [`Client`] (no subscription), lets it connect and answer a
//! survey or two, then prints its resident memory and its threads by name,
//! ours (`nng-discovery-*`) apart from NNG's shared pool (`nng:*`), and
//! stays idle until its standard input closes (Ctrl-D) or it is killed, so
//! that it can be measured from outside too (`/proc/PID/status`).
//! Arguments: `SURVEY_URL [NAME] [SECONDS_BEFORE_REPORT]` (defaults
//! `idle-client`, 2).
//!
//! Under qemu-user the figures are the emulator's process: its RSS includes
//! qemu itself, and it adds a thread of its own.

use std::time::Duration;

use nng_discovery::Client;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first() else {
        eprintln!("usage: idle_client SURVEY_URL [NAME] [SECONDS_BEFORE_REPORT]");
        std::process::exit(2);
    };
    let name = args.get(1).map_or("idle-client", String::as_str);
    let wait = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);

    let client = match Client::new(url, name) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("idle_client: {e}");
            std::process::exit(1);
        }
    };
    std::thread::sleep(Duration::from_secs_f64(wait));
    report();

    // Idle until stdin closes (or a signal ends the process).
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    client.shutdown();
}

fn report() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for key in ["VmRSS", "VmHWM", "Threads"] {
        if let Some(line) = status.lines().find(|l| l.starts_with(key)) {
            println!("{}", line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    let mut names = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            names.push(comm.trim().to_string());
        }
    }
    names.sort();
    let ours = names
        .iter()
        .filter(|n| n.starts_with("nng-discovery"))
        .count();
    let nng = names.iter().filter(|n| n.starts_with("nng:")).count();
    println!(
        "threads: {} in all, {ours} ours (nng-discovery-*), {nng} NNG's (nng:*), {} other",
        names.len(),
        names.len() - ours - nng
    );
    println!("names: {}", names.join(", "));
}
