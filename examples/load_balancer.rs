//! A TCP round-robin load balancer whose backends are the discovered peers.
//!
//! ```text
//! cargo run --example load_balancer
//! RUST_LOG=info cargo run --example load_balancer
//! ```
//!
//! Backends are small echo servers (threads on `127.0.0.1:0`), each
//! registered with a discovery `Client` under its address. The proxy
//! subscribes to the server's lists and sends each new connection to the
//! next backend of the current list. The example shows requests spread
//! evenly over the live backends, a new backend taking its share as soon as
//! it joins, and a backend that leaves getting nothing once its removal has
//! reached the proxy: its echo server is kept running on purpose, so a
//! request wrongly sent to it would be answered and counted. Everything runs
//! in one process and exits by itself, with status 1 if a check fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use nng_discovery::{Client, Options, Server, Subscriber};

const TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Option<Duration> = Some(Duration::from_secs(5));

/// An echo server that says who it is, and counts what it serves.
struct Backend {
    addr: String,
    served: Arc<AtomicUsize>,
    registration: Option<Client>,
}

impl Backend {
    fn start(id: usize, server: &Server) -> Result<Backend, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        // Runs until the process exits.
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counter = Arc::clone(&counter);
                thread::spawn(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = echo(id, conn);
                });
            }
        });
        // The name a backend registers is the address to send traffic to.
        let registration = Client::new(server.survey_url(), &addr).map_err(|e| e.to_string())?;
        println!("backend-{id} listening on {addr}");
        Ok(Backend {
            addr,
            served,
            registration: Some(registration),
        })
    }

    /// Unregisters (the echo server keeps running).
    fn leave(&mut self) {
        if let Some(client) = self.registration.take() {
            client.shutdown();
        }
    }
}

fn echo(id: usize, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(IO_TIMEOUT)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let mut conn = conn;
    write!(conn, "backend-{id} {line}")?;
    Ok(())
}

/// The proxy's routing table: the current backends and how many lists it
/// has applied.
#[derive(Default)]
struct Routing {
    backends: Vec<String>,
    generation: u64,
}

struct Proxy {
    addr: String,
    routing: Arc<RwLock<Routing>>,
    /// Each list the proxy applies, after it is applied.
    applied: Receiver<Vec<String>>,
    /// (generation, backend) of every connection forwarded so far.
    forwarded: Arc<RwLock<Vec<(u64, String)>>>,
    _subscriber: Subscriber,
}

impl Proxy {
    fn start(publish_url: &str) -> Result<Proxy, String> {
        let subscriber = Subscriber::new(publish_url).map_err(|e| e.to_string())?;
        let routing = Arc::new(RwLock::new(Routing::default()));
        let (applied_tx, applied) = unbounded();
        let lists = subscriber.changes();
        let table = Arc::clone(&routing);
        thread::spawn(move || {
            for list in lists {
                {
                    let mut r = table.write().unwrap_or_else(|e| e.into_inner());
                    r.backends = list.clone();
                    r.generation += 1;
                    log::info!("proxy: backends now {list:?}");
                }
                let _ = applied_tx.send(list);
            }
        });

        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let forwarded = Arc::new(RwLock::new(Vec::new()));
        let table = Arc::clone(&routing);
        let log_of = Arc::clone(&forwarded);
        let next = Arc::new(AtomicUsize::new(0));
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                // Pick under the same lock that list updates take: a
                // connection never goes to a backend the proxy has dropped.
                let picked = {
                    let r = table.read().unwrap_or_else(|e| e.into_inner());
                    if r.backends.is_empty() {
                        None
                    } else {
                        let i = next.fetch_add(1, Ordering::SeqCst) % r.backends.len();
                        Some((r.generation, r.backends[i].clone()))
                    }
                };
                let Some((generation, backend)) = picked else {
                    let mut conn = conn;
                    let _ = conn.write_all(b"error: no backends\n");
                    continue;
                };
                log_of
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((generation, backend.clone()));
                thread::spawn(move || {
                    if let Err(e) = forward(conn, &backend) {
                        log::warn!("proxy: forwarding to {backend}: {e}");
                    }
                });
            }
        });
        println!("proxy listening on {addr}");
        Ok(Proxy {
            addr,
            routing,
            applied,
            forwarded,
            _subscriber: subscriber,
        })
    }

    /// Waits until the proxy has applied a list equal to `want`.
    fn wait_for(&self, want: &[&str]) -> Result<u64, String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            {
                let r = self.routing.read().unwrap_or_else(|e| e.into_inner());
                if r.backends == want {
                    return Ok(r.generation);
                }
            }
            self.applied
                .recv_deadline(deadline)
                .map_err(|_| format!("the proxy never saw the backends {want:?}"))?;
        }
    }
}

/// Pipes bytes both ways between a client and a backend.
fn forward(client: TcpStream, backend: &str) -> std::io::Result<()> {
    let upstream = TcpStream::connect(backend)?;
    for s in [&client, &upstream] {
        s.set_read_timeout(IO_TIMEOUT)?;
    }
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    std::io::copy(&mut u_read, &mut c_write)?;
    c_write.shutdown(Shutdown::Write)?;
    let _ = up.join();
    Ok(())
}

/// Sends `n` requests through the proxy, one connection each, and counts
/// the answers per backend.
fn send_requests(proxy: &str, n: usize) -> Result<BTreeMap<String, usize>, String> {
    let mut answered = BTreeMap::new();
    for i in 0..n {
        let mut conn = TcpStream::connect(proxy).map_err(|e| e.to_string())?;
        conn.set_read_timeout(IO_TIMEOUT)
            .map_err(|e| e.to_string())?;
        writeln!(conn, "request {i}").map_err(|e| e.to_string())?;
        conn.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)
            .map_err(|e| format!("request {i}: {e}"))?;
        let who = match reply.strip_suffix(&format!(" request {i}\n")) {
            Some(who) => who.to_owned(),
            None => return Err(format!("request {i}: unexpected reply {reply:?}")),
        };
        *answered.entry(who).or_insert(0) += 1;
    }
    Ok(answered)
}

/// Sends `n` requests and checks they were spread exactly evenly over
/// `live` (sequential requests and a stable list make round robin exact).
fn round(proxy: &Proxy, n: usize, live: &[&str]) -> Result<BTreeMap<String, usize>, String> {
    let answered = send_requests(&proxy.addr, n)?;
    println!("  {n} requests answered by: {answered:?}");
    let each = n / live.len();
    let want: BTreeMap<String, usize> = live.iter().map(|b| (b.to_string(), each)).collect();
    if answered != want {
        return Err(format!("expected {want:?}"));
    }
    Ok(answered)
}

fn run() -> Result<(), String> {
    let options = Options::default()
        .poll_interval(Duration::from_secs(1))
        .survey_time(Duration::from_millis(200));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)
        .map_err(|e| e.to_string())?;
    println!(
        "discovery server: survey {}, publish {}",
        server.survey_url(),
        server.publish_url()
    );
    let proxy = Proxy::start(server.publish_url())?;

    let mut backends = Vec::new();
    for id in 1..=3 {
        backends.push(Backend::start(id, &server)?);
    }
    let mut addrs: Vec<&str> = backends.iter().map(|b| b.addr.as_str()).collect();
    addrs.sort();
    proxy.wait_for(&addrs)?;
    println!("\nthree backends:");
    round(&proxy, 30, &["backend-1", "backend-2", "backend-3"])?;

    backends.push(Backend::start(4, &server)?);
    let mut addrs: Vec<&str> = backends.iter().map(|b| b.addr.as_str()).collect();
    addrs.sort();
    proxy.wait_for(&addrs)?;
    println!("\nbackend-4 joined:");
    round(
        &proxy,
        40,
        &["backend-1", "backend-2", "backend-3", "backend-4"],
    )?;

    let gone = backends[1].addr.clone();
    let left_at = Instant::now();
    backends[1].leave();
    let mut addrs: Vec<&str> = backends
        .iter()
        .map(|b| b.addr.as_str())
        .filter(|a| *a != gone)
        .collect();
    addrs.sort();
    let removal = proxy.wait_for(&addrs)?;
    println!(
        "\nbackend-2 left: its removal reached the proxy {:?} after it unregistered",
        left_at.elapsed()
    );
    let served_before = backends[1].served.load(Ordering::SeqCst);
    round(&proxy, 30, &["backend-1", "backend-3", "backend-4"])?;

    // Its echo server still runs: had the proxy sent it anything, it would
    // have answered and counted it.
    let served_after = backends[1].served.load(Ordering::SeqCst);
    if served_after != served_before {
        return Err(format!(
            "backend-2 served {} connections after its removal",
            served_after - served_before
        ));
    }
    let forwarded = proxy.forwarded.read().unwrap_or_else(|e| e.into_inner());
    let late = forwarded
        .iter()
        .filter(|(generation, backend)| *generation >= removal && *backend == gone)
        .count();
    if late > 0 {
        return Err(format!(
            "{late} connections went to {gone} after its removal"
        ));
    }
    println!(
        "  backend-2 got none of them ({} connections forwarded in all)",
        forwarded.len()
    );
    drop(forwarded);

    for b in &mut backends {
        b.leave();
    }
    server.shutdown();
    println!("\nok: requests spread over the live backends only");
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = run() {
        eprintln!("load_balancer: FAILED: {e}");
        std::process::exit(1);
    }
}
