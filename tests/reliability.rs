//! Faults around a working cluster: the server vanishing and returning,
//! objects dropped at awkward moments, storms of bad connections.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{patience, slow, stats_until, within};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use nng_discovery::{Client, Options, Server, Subscriber};

fn wait_for(rx: &Receiver<Vec<String>>, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + patience();
    let mut last = None;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(list) if done(&list) => return,
            Ok(list) => last = Some(list),
            Err(e) => panic!("{what}: {e:?}; last list {last:?}"),
        }
    }
}

fn ipc_url(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("nngd-rel-{}-{tag}-{n}.sock", std::process::id()));
    format!("ipc://{}", path.display())
}

/// A fast heartbeat (poll 300 ms, survey 100 ms, slower under qemu) and
/// quick redials.
fn fast() -> Options {
    Options::default()
        .poll_interval(slow(Duration::from_millis(300)))
        .survey_time(slow(Duration::from_millis(100)))
        .reconnect_min(Duration::from_millis(20))
        .reconnect_max(Duration::from_millis(200))
}

#[test]
fn subscribers_and_clients_ride_out_a_server_outage() {
    let (survey, publish) = (ipc_url("s"), ipc_url("p"));
    let server = Server::new(&survey, &publish, fast()).unwrap();
    let x = Client::with_options(&survey, Some(&publish), "http://x:1", &fast()).unwrap();
    let sub = Subscriber::with_options(&publish, &fast()).unwrap();
    let (xrx, srx) = (x.peers().unwrap(), sub.changes());
    wait_for(&srx, "subscriber sees x", |l| l == ["http://x:1"]);
    wait_for(&xrx, "client sees x", |l| l == ["http://x:1"]);

    server.shutdown();
    // The receivers stay open and deliver nothing while the server is gone:
    // the last list stands.
    for rx in [&srx, &xrx] {
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    let server = Server::new(&survey, &publish, fast()).unwrap();
    let y = Client::new(&survey, "http://y:1").unwrap();
    let both = |l: &[String]| l == ["http://x:1", "http://y:1"];
    wait_for(&srx, "subscriber resumes", both);
    wait_for(&xrx, "client's subscription resumes", both);
    assert_eq!(server.peers(), ["http://x:1", "http://y:1"]);
    drop(y);
}

#[test]
fn a_restarted_server_does_not_publish_an_empty_list_while_clients_return() {
    let (survey, publish) = (ipc_url("s"), ipc_url("p"));
    // The first list waits for the first survey to end: 2 s, 10x the
    // longest the clients take to redial (200 ms) and answer. Poll 5 s.
    let options = fast()
        .poll_interval(slow(Duration::from_secs(5)))
        .survey_time(slow(Duration::from_secs(2)));
    let server = Server::new(&survey, &publish, options.clone()).unwrap();
    let clients: Vec<Client> = (0..3)
        .map(|i| Client::with_options(&survey, None, &format!("http://c:{i}"), &options).unwrap())
        .collect();
    let sub = Subscriber::with_options(&publish, &options).unwrap();
    let rx = sub.changes();
    wait_for(&rx, "all three", |l| l.len() == 3);

    server.shutdown();
    let server = Server::new(&survey, &publish, options).unwrap();
    // The new server's first list, on its own channel, already holds all
    // three: they came back within its first survey.
    let first = server
        .changes()
        .recv_timeout(patience())
        .expect("the restarted server's first list");
    assert_eq!(
        first.len(),
        3,
        "the restarted server's first list: {first:?}"
    );
    // The subscriber (once it has redialed, the server sends it the list)
    // never sees them gone: nothing new for it, over several seconds.
    match rx.recv_timeout(slow(Duration::from_secs(3))) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("after the restart the subscriber got {other:?}"),
    }
    assert_eq!(server.peers().len(), 3);
    drop(clients);
}

/// Runs `f` on a thread, failing if it does not return within
/// `patience()`: a hang. How long it took is printed, not judged (the target
/// is well under 100 ms, which the latency benchmark reports).
fn timed(what: &str, f: impl FnOnce() + Send + 'static) {
    let t0 = Instant::now();
    within(patience(), what, f);
    eprintln!("{what}: {:?}", t0.elapsed());
}

#[test]
fn drops_at_awkward_moments_neither_hang_nor_panic() {
    // Nothing listens on these: the dialers are retrying.
    let nowhere_tcp = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let nowhere_ipc = ipc_url("nowhere");
    for url in [&nowhere_tcp, &nowhere_ipc] {
        let c = Client::with_subscription(url, url, "http://lonely:1").unwrap();
        timed("client drop, server unreachable", move || drop(c));
        let s = Subscriber::new(url).unwrap();
        timed("subscriber drop, server unreachable", move || drop(s));
    }

    // A server with many clients answering: a survey is in flight when it
    // goes, and each client may be mid-answer when it goes.
    let server = Server::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        Options::default()
            .poll_interval(slow(Duration::from_millis(20)))
            .survey_time(slow(Duration::from_millis(10))),
    )
    .unwrap();
    let clients: Vec<Client> = (0..50)
        .map(|i| {
            Client::with_subscription(
                server.survey_url(),
                server.publish_url(),
                &format!("http://busy:{i}"),
            )
            .unwrap()
        })
        .collect();
    let rx = clients[0].peers().unwrap();
    wait_for(&rx, "all 50", |l| l.len() == 50);
    // The reader holds a list while its client goes away.
    let held = rx.recv_timeout(Duration::from_millis(0));
    timed("server drop mid-survey", move || drop(server));
    for c in clients {
        timed("client drop after its server", move || drop(c));
    }
    drop(held);
    // And the receiver ends once its owner is gone.
    assert!(rx.iter().count() <= 1);
}

#[test]
fn a_storm_of_garbage_and_silent_connections_does_not_disturb_good_peers() {
    let server = Server::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        Options::default()
            .poll_interval(slow(Duration::from_millis(500)))
            .survey_time(slow(Duration::from_millis(200))),
    )
    .unwrap();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let rx = sub.changes();
    let good = Client::new(server.survey_url(), "http://good:1").unwrap();
    wait_for(&rx, "good peer listed", |l| l == ["http://good:1"]);

    let addr = server.survey_url().trim_start_matches("tcp://").to_owned();
    // 1,000 raw TCP connections that send garbage instead of a handshake.
    let mut garbage = Vec::new();
    for i in 0..1000u32 {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.write_all(&i.to_be_bytes().repeat(8));
            garbage.push(s);
        }
    }
    // 1,000 valid respondents that never answer.
    let mut silent = Vec::new();
    for _ in 0..1000 {
        let s = nng::Socket::new(nng::Protocol::Respondent0).unwrap();
        s.dial_async(server.survey_url()).unwrap();
        silent.push(s);
    }
    // Good peers keep joining and leaving through all of it.
    for i in 0..5 {
        let name = format!("http://new:{i}");
        let c = Client::new(server.survey_url(), &name).unwrap();
        wait_for(&rx, "newcomer listed", |l| l.contains(&name));
        c.shutdown();
        wait_for(&rx, "newcomer gone", |l| !l.contains(&name));
    }
    assert_eq!(server.peers(), ["http://good:1"]);
    drop(garbage);
    drop(silent);
    drop(good);
    wait_for(&rx, "all gone", |l| l.is_empty());
}

#[test]
fn a_raw_peer_answering_many_times_per_survey_is_bounded() {
    let server = Server::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        Options::default()
            .poll_interval(slow(Duration::from_millis(200)))
            .survey_time(slow(Duration::from_millis(100)))
            .max_peers(20),
    )
    .unwrap();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let rx = sub.changes();
    let good = Client::new(server.survey_url(), "http://good:1").unwrap();
    wait_for(&rx, "good peer listed", |l| l == ["http://good:1"]);

    // A raw respondent that answers every survey 100 times with one name,
    // then 100 times with 100 different names.
    let raw = nng::RawSocket::new(nng::Protocol::Respondent0)
        .unwrap()
        .socket;
    raw.dial_async(server.survey_url()).unwrap();
    let flooder = {
        let raw = raw.clone();
        std::thread::spawn(move || {
            for _ in 0..6 {
                let Ok(survey) = raw.recv() else { return };
                for i in 0..200 {
                    let mut answer = survey.clone();
                    answer.clear();
                    let name = if i < 100 {
                        "http://same:1".to_owned()
                    } else {
                        format!("http://many:{i}")
                    };
                    answer.push_back(name.as_bytes());
                    if raw.send(answer).is_err() {
                        return;
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + patience();
    loop {
        let list = rx.recv_deadline(deadline).expect("lists keep coming");
        assert!(list.len() <= 20, "max_peers exceeded: {} names", list.len());
        assert!(list.contains(&"http://good:1".to_owned()));
        assert_eq!(
            list.iter().filter(|n| *n == "http://same:1").count(),
            list.contains(&"http://same:1".to_owned()) as usize
        );
        if list.len() == 20 {
            break;
        }
    }
    flooder.join().unwrap();
    let stats = server.stats();
    assert!(stats.refused_full > 0, "{stats:?}");
    // The server keeps surveying through it.
    let rounds = stats.rounds;
    stats_until(&server, "the server keeps surveying", |s| {
        s.rounds >= rounds + 2
    });
    raw.close();
    drop(good);
}
