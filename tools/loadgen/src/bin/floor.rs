//! `floor`: the cost floor. A bare raw NNG surveyor loop (stamp a survey
//! id, send, count the answers carrying it until the survey time is over)
//! with no membership and no publishing: what NNG itself costs for a load.
//!
//! ```text
//! floor --listen tcp://127.0.0.1:0 [--poll-ms 1000] [--survey-ms 500]
//! ```
//!
//! Prints `ready url=URL`, then `survey t=.. id=.. answers=N` per survey.
//! Stops at the end of standard input.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nng::options::{LocalAddr, Options as _, RecvBufferSize, RecvTimeout};
use nng::{Listener, Message, Protocol, RawSocket, SocketAddr};
use nng_discovery_loadgen::Args;
// Not used, but linked: with nng-discovery's `tls` feature in the build,
// NNG (one nng-sys for every crate) is built with TLS and needs mbedTLS,
// which only nng-discovery's build script links.
use nng_discovery as _;

fn main() {
    let args = Args::from_env();
    let url = args.required("listen");
    let poll = Duration::from_millis(args.get("poll-ms", 1000));
    let survey = Duration::from_millis(args.get("survey-ms", 500));

    let socket = RawSocket::new(Protocol::Surveyor0)
        .expect("open a raw surveyor")
        .socket;
    socket
        .set_opt::<RecvBufferSize>(8192)
        .expect("set the receive queue");
    let listener = Listener::new(&socket, url).expect("listen");
    let bound = match listener.get_opt::<LocalAddr>() {
        // NNG hands back the port in network byte order.
        Ok(SocketAddr::Inet(a)) => format!("tcp://{}:{}", a.ip(), u16::from_be(a.port())),
        _ => url.to_owned(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.map_or(true, |l| l.trim() == "quit") {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready url={bound}");
    let _ = out.flush();

    let start = Instant::now();
    let mut next = start;
    let mut seq: u32 = 1;
    while !stop.load(Ordering::Relaxed) {
        seq = (seq + 1) & 0x7fff_ffff;
        let mut msg = Message::new();
        msg.as_mut_header()
            .push_back(&(seq | 0x8000_0000).to_be_bytes());
        let sent = Instant::now();
        if let Err((_, e)) = socket.send(msg) {
            eprintln!("floor: send: {e}");
        }
        let deadline = sent + survey;
        let mut answers = 0u64;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = socket.set_opt::<RecvTimeout>(Some(left));
            match socket.recv() {
                Ok(m) => {
                    let h = m.as_header().as_slice();
                    if h.len() >= 4 && h[h.len() - 4..] == (seq | 0x8000_0000).to_be_bytes() {
                        answers += 1;
                    }
                }
                Err(nng::Error::TimedOut) => break,
                Err(e) => {
                    eprintln!("floor: recv: {e}");
                    break;
                }
            }
        }
        let _ = writeln!(
            out,
            "survey t={:.6} id={seq} answers={answers}",
            sent.duration_since(start).as_secs_f64()
        );
        let _ = out.flush();
        next += poll;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        std::thread::sleep(next - now);
    }
    listener.close();
    socket.close();
}
