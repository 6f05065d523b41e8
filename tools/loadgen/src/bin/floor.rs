//! `floor`: the cost floor. A bare raw NNG surveyor loop (stamp a survey
//! id, send, count the answers carrying it until the survey time is over)
//! with no membership and no publishing: what NNG itself costs for a load.
//!
//! ```text
//! floor --listen tcp://127.0.0.1:0 [--poll-ms 1000] [--survey-ms 500]
//!       [--publish tcp://127.0.0.1:0]
//! ```
//!
//! With `--publish URL` it is also the floor of a join by announcement: a
//! PUB socket there, and once the line `arm` came on standard input, each
//! announcement (an answer with id `0x80000000`, docs/PROTOCOL.md) is
//! sent on it at once, its body as it came (the name: a one-name list to a
//! subscriber). No list is kept. (Before `arm`, a fleet connecting would
//! send every announcement to every subscriber connected so far.)
//!
//! Prints `ready url=URL` (and `publish=URL`), then `survey t=.. id=..
//! answers=N announcements=M` per survey (what came within its survey
//! time). Stops at the end of standard input or on the line `quit`.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nng::options::{LocalAddr, Options as _, RecvBufferSize, RecvTimeout};
use nng::{Listener, Message, Protocol, RawSocket, Socket, SocketAddr};
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
    let bound = bound_url(&listener, url);
    let publisher = args.str("publish").map(|url| {
        let socket = Socket::new(Protocol::Pub0).expect("open a PUB socket");
        let listener = Listener::new(&socket, url).expect("listen to publish");
        let bound = bound_url(&listener, url);
        (socket, listener, bound)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let armed = Arc::new(AtomicBool::new(false));
    {
        let (stop, armed) = (Arc::clone(&stop), Arc::clone(&armed));
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref().map(str::trim) {
                    Ok("arm") => armed.store(true, Ordering::Relaxed),
                    Ok("quit") | Err(_) => break,
                    Ok(_) => {}
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut out = std::io::stdout().lock();
    match &publisher {
        Some((_, _, publish)) => {
            let _ = writeln!(out, "ready url={bound} publish={publish}");
        }
        None => {
            let _ = writeln!(out, "ready url={bound}");
        }
    }
    let _ = out.flush();

    const ANNOUNCE: [u8; 4] = 0x8000_0000u32.to_be_bytes();
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
        next += poll;
        if next < deadline {
            next = deadline;
        }
        let (mut answers, mut announcements) = (0u64, 0u64);
        // Answers until the survey time is over; with --publish,
        // announcements until the next survey.
        let mut reported = false;
        loop {
            let now = Instant::now();
            if !reported && now >= deadline {
                reported = true;
                let _ = writeln!(
                    out,
                    "survey t={:.6} id={seq} answers={answers} announcements={announcements}",
                    sent.duration_since(start).as_secs_f64()
                );
                let _ = out.flush();
            }
            let until = if reported { next } else { deadline };
            let left = until.saturating_duration_since(now);
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                break;
            }
            if (reported && publisher.is_none()) || left < Duration::from_millis(1) {
                // NNG takes a receive timeout in whole milliseconds: under
                // one it would not block.
                std::thread::sleep(left);
                continue;
            }
            let _ = socket.set_opt::<RecvTimeout>(Some(left));
            match socket.recv() {
                Ok(m) => {
                    let h = m.as_header().as_slice();
                    if h.len() < 4 {
                        continue;
                    }
                    let id = &h[h.len() - 4..];
                    if id == ANNOUNCE {
                        announcements += 1;
                        match &publisher {
                            Some((publish, _, _)) if armed.load(Ordering::Relaxed) => {
                                if let Err((_, e)) = publish.send(Message::from(m.as_slice())) {
                                    eprintln!("floor: publish: {e}");
                                }
                            }
                            _ => {}
                        }
                    } else if id == (seq | 0x8000_0000).to_be_bytes() {
                        answers += 1;
                    }
                }
                Err(nng::Error::TimedOut) => {}
                Err(e) => {
                    eprintln!("floor: recv: {e}");
                    break;
                }
            }
        }
    }
    listener.close();
    socket.close();
    if let Some((publish, listener, _)) = publisher {
        listener.close();
        publish.close();
    }
}

/// The URL `listener` is bound to (`url` with the port it got).
fn bound_url(listener: &Listener, url: &str) -> String {
    match listener.get_opt::<LocalAddr>() {
        // NNG hands back the port in network byte order.
        Ok(SocketAddr::Inet(a)) => format!("tcp://{}:{}", a.ip(), u16::from_be(a.port())),
        _ => url.to_owned(),
    }
}
