//! The whole flow on loopback, in one process: a discovery server, a
//! subscriber, three clients joining a moment apart, then one leaving.
//!
//! ```text
//! cargo run --example cluster
//! RUST_LOG=info cargo run --example cluster   # also the server's join/leave log
//! ```
//!
//! Each list the subscriber receives is printed with the time since start.
//! It exits by itself after a few seconds, and fails (exit code 1) if a list
//! it expects does not arrive.

use std::time::{Duration, Instant};

use nng_discovery::{Client, Options, Server, Subscriber};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = run() {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let stamp = move || format!("{:>7.1} ms", start.elapsed().as_secs_f64() * 1e3);

    // A slow heartbeat on purpose: joins and leaves are seen from connection
    // events within milliseconds, not at the next survey. The first list
    // goes out when the first survey ends (250 ms here).
    let options = Options::default()
        .poll_interval(Duration::from_secs(5))
        .survey_time(Duration::from_millis(250));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)?;
    println!(
        "{} server: survey {}, publish {}",
        stamp(),
        server.survey_url(),
        server.publish_url()
    );

    let subscriber = Subscriber::new(server.publish_url())?;
    let changes = subscriber.changes();
    // Wait for the list `want`, printing every list seen on the way. Each
    // takes milliseconds (the first 250 ms); 30 s leaves room for a busy
    // machine or an emulator (CI runs this under qemu).
    let patience = Duration::from_secs(30);
    let expect = |want: &[&str]| -> Result<(), String> {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match changes.recv_timeout(left) {
                Ok(list) => {
                    println!("{} subscriber got {list:?}", stamp());
                    if list == want {
                        return Ok(());
                    }
                }
                Err(_) => return Err(format!("no list {want:?} within {patience:?}")),
            }
        }
    };
    expect(&[])?;

    let names = [
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
        "http://127.0.0.1:8003",
    ];
    let mut clients = Vec::new();
    for (i, name) in names.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(300)); // a moment apart, for the demo
        println!("{} client {name} starts", stamp());
        clients.push(Client::new(server.survey_url(), name)?);
        expect(&names[..=i])?;
    }

    std::thread::sleep(Duration::from_millis(300));
    let leaving = clients.remove(1);
    println!("{} client {} shuts down", stamp(), leaving.service());
    leaving.shutdown();
    expect(&[names[0], names[2]])?;

    println!("{} server lists {:?}", stamp(), server.peers());
    drop(clients);
    subscriber.shutdown();
    server.shutdown();
    println!("{} done", stamp());
    Ok(())
}
