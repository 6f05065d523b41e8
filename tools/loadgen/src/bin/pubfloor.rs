//! `pubfloor`: the floor of a broadcast. A bare NNG PUB socket (no
//! discovery server) that sends small messages to every SUB connected:
//! what NNG itself costs to deliver one message to N followers.
//!
//! ```text
//! pubfloor --listen tcp://127.0.0.1:0 [--bytes 40]
//! ```
//!
//! Prints `ready url=URL` and `subs n=K` whenever the number of SUB
//! connections changes. Lines on standard input: `send M R` sends M
//! messages of `--bytes` bytes at R per second (one every 1/R s), then
//! prints `sent n=M`; `quit` (or end of input) stops.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nng::options::{LocalAddr, Options as _};
use nng::{Listener, Message, PipeEvent, Protocol, Socket, SocketAddr};
use nng_discovery_loadgen::Args;
// Not used, but linked: see floor.rs (TLS builds of NNG need mbedTLS,
// which only nng-discovery's build script links).
use nng_discovery as _;

fn main() {
    let args = Args::from_env();
    let url = args.required("listen");
    let bytes: usize = args.get("bytes", 40);
    let socket = Socket::new(Protocol::Pub0).expect("open a PUB socket");
    let subs = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&subs);
    socket
        .pipe_notify(move |_, event| match event {
            PipeEvent::AddPost => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            PipeEvent::RemovePost => {
                count.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        })
        .expect("pipe_notify");
    let listener = Listener::new(&socket, url).expect("listen");
    let bound = match listener.get_opt::<LocalAddr>() {
        // NNG hands back the port in network byte order.
        Ok(SocketAddr::Inet(a)) => format!("tcp://{}:{}", a.ip(), u16::from_be(a.port())),
        _ => url.to_owned(),
    };
    let (tx, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send("quit".into());
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready url={bound}");
    let _ = out.flush();
    let body = vec![b'x'; bytes];
    let mut last_subs = 0;
    loop {
        let n = subs.load(Ordering::Relaxed);
        if n != last_subs {
            last_subs = n;
            let _ = writeln!(out, "subs n={n}");
            let _ = out.flush();
        }
        let line = match commands.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["send", m, r] => {
                let (Ok(m), Ok(r)) = (m.parse::<u64>(), r.parse::<f64>()) else {
                    eprintln!("pubfloor: send M R, not {line:?}");
                    continue;
                };
                let every = Duration::from_secs_f64(1.0 / r.max(0.001));
                let start = Instant::now();
                for i in 0..m {
                    let at = start + every.mul_f64(i as f64);
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    if let Err((_, e)) = socket.send(Message::from(&body[..])) {
                        eprintln!("pubfloor: send: {e}");
                    }
                }
                let _ = writeln!(out, "sent n={m}");
                let _ = out.flush();
            }
            ["quit"] => break,
            _ => eprintln!("pubfloor: unknown command {line:?}"),
        }
    }
    socket.close();
}
