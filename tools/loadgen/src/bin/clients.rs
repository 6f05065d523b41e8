//! `clients`: many real `nng_discovery::Client`s in one process, to measure
//! what each costs (threads, memory, CPU).
//!
//! ```text
//! clients --survey URL [--publish URL] [--n 1000]
//! ```
//!
//! With `--publish`, every client is made with `Client::with_subscription`.
//! Prints `ready t=.. n=N` once all are created and, with subscriptions,
//! `all_full t=..` once every client has received a list naming all N.
//! Stops (shutting every client down) at the end of standard input, and
//! then prints `stopped ms=..`: how long dropping all the clients took.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nng_discovery::Client;
use nng_discovery_loadgen::{peer_name, Args};

fn main() {
    let args = Args::from_env();
    let survey = args.required("survey");
    let publish = args.str("publish");
    let n: u32 = args.get("n", 1000);

    let (stop_tx, stop) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.map_or(true, |l| l.trim() == "quit") {
                break;
            }
        }
        let _ = stop_tx.send(());
    });

    let start = Instant::now();
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            let name = peer_name(i, 0);
            match publish {
                Some(p) => Client::with_subscription(survey, p, &name),
                None => Client::new(survey, &name),
            }
            .unwrap_or_else(|e| {
                eprintln!("clients: client {i}: {e}");
                std::process::exit(1);
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready t={:.6} n={n}", start.elapsed().as_secs_f64());
    let _ = out.flush();

    if publish.is_some() {
        // Each client's channel keeps only its newest list: look at each
        // until it has held the full one.
        let receivers: Vec<_> = clients.iter().filter_map(|c| c.peers().ok()).collect();
        let mut full = vec![false; receivers.len()];
        let mut left = receivers.len();
        while left > 0 {
            for (i, rx) in receivers.iter().enumerate() {
                if full[i] {
                    continue;
                }
                while let Ok(list) = rx.try_recv() {
                    if list.len() == n as usize {
                        full[i] = true;
                        left -= 1;
                        break;
                    }
                }
            }
            if left > 0 && stop.recv_timeout(Duration::from_millis(20)).is_ok() {
                return;
            }
        }
        let _ = writeln!(out, "all_full t={:.6}", start.elapsed().as_secs_f64());
        let _ = out.flush();
    }
    let _ = stop.recv();
    let t = Instant::now();
    drop(clients);
    let _ = writeln!(out, "stopped ms={:.1}", t.elapsed().as_secs_f64() * 1e3);
    let _ = out.flush();
}
