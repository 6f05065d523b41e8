//! Membership latency on loopback: how long from an event to every
//! subscriber holding the list that reflects it.
//!
//! ```text
//! cargo bench --bench latency              # 100 trials per case
//! TRIALS=200 cargo bench --bench latency
//! cargo bench --bench latency -- only=events   # sections: events (event-driven: its first half) check hang shutdown redundant
//! cargo bench --bench latency --features tls -- only=tls  # tls+tcp:// beside tcp://
//! ```
//!
//! Cases, each timed from the event to the moment a subscriber in this
//! process receives the new list:
//! * join: `Client::new` until the list contains the client;
//! * leave: `Client::shutdown` until the list no longer contains it;
//! * crash: SIGKILL of a child process running `nng-discovery join`, until
//!   the list no longer contains it (the kernel closes its socket);
//! * new subscriber: `Subscriber::new` until its first list arrives (poll
//!   only sends none until the list changes, as the original; not timed);
//! * unavailable: `Client::set_available(false)` on a listed client until
//!   the list no longer contains it;
//! * available again: `set_available(true)` until it is listed again.
//!
//! Then, for `nng-discovery join --check 'test -e FILE' --check-interval
//! 100ms`: from removing FILE until the list no longer contains the name
//! (expected: up to one check interval plus a few milliseconds).
//!
//! Each timed event happens [`SPACING`] after the list that ended the
//! previous trial arrived, so it is timed alone: otherwise the server's
//! publish gap (2 ms by default: changes closer together than that are
//! coalesced into one publish) would hold its list back behind the
//! previous trial's, and every figure would measure the gap.
//!
//! Redundant servers (issue 17): three `nng-discovery server` processes, a
//! subscriber of all three, clients answering all three: join and leave
//! times, and servers killed (SIGKILL) and restarted on the same URLs one
//! after another, counting the lists the subscriber got that were not the
//! live set (must be 0). `cargo bench --bench latency -- only=redundant`
//! runs this part alone.
//!
//! Two configurations run side by side in the same process:
//! * event-driven (the default) with a 10 s poll interval, so any figure
//!   well under 10 s comes from connection events, not from polling;
//! * poll only (`event_driven(false)`, `miss_threshold(1)`: the Go
//!   original's behaviour) at poll 1 s / survey 500 ms, the original's
//!   README settings halved, so the run stays short.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Server, Subscriber};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The pause before each timed event: five times the default publish gap.
const SPACING: Duration = Duration::from_millis(10);

/// A pause that makes the next event a lone one (see [`SPACING`]); not a
/// way to wait for anything.
fn space() {
    std::thread::sleep(SPACING);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let trials: usize = std::env::var("TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let daemon = env!("CARGO_BIN_EXE_nng-discovery");
    // `only=events` (or event-driven, check, hang, shutdown, tls, redundant)
    // runs one section.
    let only: Option<String> =
        std::env::args().find_map(|a| a.strip_prefix("only=").map(String::from));
    let run = |section: &str| only.as_deref().map_or(true, |o| o == section);

    let configs = [
        (
            "event-driven, poll 10 s",
            Options::default()
                .poll_interval(Duration::from_secs(10))
                .survey_time(Duration::from_secs(1)),
            trials,
        ),
        (
            "poll only, poll 1 s / survey 500 ms",
            Options::default()
                .poll_interval(Duration::from_secs(1))
                .survey_time(Duration::from_millis(500))
                .miss_threshold(1)
                .event_driven(false),
            // Each poll-only trial waits up to a poll; fewer keep it short.
            trials.min(20),
        ),
    ];

    if run("events") {
        membership(&configs, daemon);
    } else if run("event-driven") {
        membership(&configs[..1], daemon);
    }
    if run("check") {
        failing_check(daemon, trials.min(30));
    }
    if run("hang") {
        hung_peers(daemon, trials.min(10));
    }
    if run("shutdown") {
        shutdown_times(trials);
    }
    if run("tls") {
        tls_beside_tcp(trials);
    }
    if run("redundant") {
        redundant_servers(daemon, trials);
    }
}

/// Join, leave, crash, new subscriber, unavailable and available again,
/// for each configuration.
fn membership(configs: &[(&str, Options, usize)], daemon: &str) {
    println!(
        "# membership latency, loopback TCP, {} cores, events {SPACING:?} apart",
        cores()
    );
    println!(
        "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
        "configuration", "case", "trials", "p50", "p99", "max"
    );
    // The reference for every case that needs a new connection (join, new
    // subscriber, available again): NNG alone, same machine, same run.
    let floor = summary(connect_floor(configs.first().map_or(0, |c| c.2).max(1)));
    println!(
        "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
        "bare NNG, no discovery",
        "connect + 1 msg",
        floor.n,
        fmt(floor.p50),
        fmt(floor.p99),
        fmt(floor.max)
    );
    let mut ratios = Vec::new();
    for (label, options, n) in configs {
        let (label, options, n) = (*label, options.clone(), *n);
        let event_driven = options
            .server_settings()
            .expect("valid options")
            .event_driven;
        let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)
            .expect("start the server");
        let subscriber = Subscriber::new(server.publish_url()).expect("subscribe");
        let changes = subscriber.changes();
        wait_for(&changes, |l| l.is_empty());

        let mut join = Vec::new();
        let mut leave = Vec::new();
        for i in 0..n {
            let name = format!("http://127.0.0.1:{}", 10_000 + i);
            space();
            let t0 = Instant::now();
            let client = Client::new(server.survey_url(), &name).expect("client");
            wait_for(&changes, |l| l.contains(&name));
            join.push(t0.elapsed());
            space();
            let t0 = Instant::now();
            client.shutdown();
            wait_for(&changes, |l| !l.contains(&name));
            leave.push(t0.elapsed());
        }

        let mut crash = Vec::new();
        for i in 0..n {
            let name = format!("http://127.0.0.1:{}", 20_000 + i);
            let mut child = spawn_join(daemon, server.survey_url(), &name);
            wait_for(&changes, |l| l.contains(&name));
            space();
            let t0 = Instant::now();
            child.kill().expect("SIGKILL the child"); // Child::kill sends SIGKILL
            wait_for(&changes, |l| !l.contains(&name));
            crash.push(t0.elapsed());
            let _ = child.wait();
        }

        let mut off = Vec::new();
        let mut on = Vec::new();
        let name = "http://127.0.0.1:9999";
        let client = Client::new(server.survey_url(), name).expect("client");
        wait_for(&changes, |l| l.iter().any(|n| n == name));
        for _ in 0..n {
            space();
            let t0 = Instant::now();
            client.set_available(false);
            wait_for(&changes, |l| !l.iter().any(|n| n == name));
            off.push(t0.elapsed());
            space();
            let t0 = Instant::now();
            client.set_available(true);
            wait_for(&changes, |l| l.iter().any(|n| n == name));
            on.push(t0.elapsed());
        }
        client.shutdown();
        wait_for(&changes, |l| !l.iter().any(|n| n == name));

        let mut fresh = Vec::new();
        // Poll only, like the original, sends a new subscriber nothing until
        // the list changes (or the 30 s republish): nothing to time.
        for _ in 0..if event_driven { n } else { 0 } {
            space();
            let t0 = Instant::now();
            let s = Subscriber::new(server.publish_url()).expect("subscribe");
            s.changes().recv_timeout(TIMEOUT).expect("first list");
            fresh.push(t0.elapsed());
        }

        for (case, samples) in [
            ("join", join),
            ("leave", leave),
            ("crash (SIGKILL)", crash),
            ("new subscriber", fresh),
            ("unavailable", off),
            ("available again", on),
        ] {
            if samples.is_empty() {
                println!(
                    "{label:<38} {case:<16} {:>6} {:>32}",
                    0, "nothing until the list changes"
                );
                continue;
            }
            let s = summary(samples);
            println!(
                "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
                label,
                case,
                s.n,
                fmt(s.p50),
                fmt(s.p99),
                fmt(s.max)
            );
            if event_driven && ["join", "new subscriber", "available again"].contains(&case) {
                let ratio = s.p99.as_secs_f64() / floor.p99.as_secs_f64();
                ratios.push(format!("{case} {ratio:.2}x"));
            }
        }
    }
    println!(
        "# p99 over the bare NNG floor's p99 (cases that make a new connection): {}",
        ratios.join(", ")
    );
}

/// The floor under every case that makes a connection: a bare NNG PUB
/// socket that sends one message to each new pipe (on its add-post event,
/// from another thread, as the server does) and a fresh SUB socket dialing
/// it, timed from the dial to the message; `n` trials, [`SPACING`] apart.
fn connect_floor(n: usize) -> Vec<Duration> {
    use nng::options::{protocol::pubsub::Subscribe, Options as _, RecvTimeout};
    use nng::{Message, PipeEvent, Protocol, Socket};

    let publisher = Socket::new(Protocol::Pub0).expect("open a PUB socket");
    let (added, on_add) = crossbeam_channel::unbounded();
    publisher
        .pipe_notify(move |_, event| {
            if event == PipeEvent::AddPost {
                let _ = added.send(());
            }
        })
        .expect("watch pipes");
    let listener = nng::Listener::new(&publisher, "tcp://127.0.0.1:0").expect("listen");
    let url = match listener.get_opt::<nng::options::LocalAddr>() {
        // NNG hands back the port in network byte order (see NOTES).
        Ok(nng::SocketAddr::Inet(a)) => format!("tcp://127.0.0.1:{}", u16::from_be(a.port())),
        other => panic!("no TCP address for the floor's listener: {other:?}"),
    };
    let sender = publisher.clone();
    // Detached: it ends with the process (the socket it holds keeps the
    // notify callback, and so its channel, alive).
    std::thread::spawn(move || {
        for () in on_add {
            let _ = sender.send(Message::from(&b"x"[..]));
        }
    });
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        space();
        let sub = Socket::new(Protocol::Sub0).expect("open a SUB socket");
        sub.set_opt::<Subscribe>(Vec::new()).expect("subscribe");
        sub.set_opt::<RecvTimeout>(Some(TIMEOUT)).expect("timeout");
        let t0 = Instant::now();
        sub.dial_async(&url).expect("dial");
        sub.recv()
            .expect("the first message did not arrive in time");
        samples.push(t0.elapsed());
    }
    publisher.close();
    samples
}

/// Join and leave over `tls+tcp://` (mutual TLS, P-256 certificates made
/// with openssl) beside plain `tcp://`, same server options, same run.
#[cfg(not(feature = "tls"))]
fn tls_beside_tcp(_: usize) {
    println!();
    println!("# tls+tcp:// beside tcp://: not built (cargo bench --bench latency --features tls)");
}

#[cfg(feature = "tls")]
fn tls_beside_tcp(n: usize) {
    use nng_discovery::Tls;
    let dir = std::env::temp_dir().join(format!("nngd-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1\n",
    )
    .expect("ext");
    for who in ["server", "client"] {
        let (key, csr, pem, subj) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("/CN={who}"),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            "san.ext",
        ]);
    }
    let tls = |who: &str| {
        Tls::new(
            dir.join("ca.pem"),
            dir.join(format!("{who}.pem")),
            dir.join(format!("{who}.key")),
        )
        .expect("tls")
    };
    let base = Options::default()
        .poll_interval(Duration::from_secs(10))
        .survey_time(Duration::from_secs(1));
    println!();
    println!(
        "# join / leave, event-driven, poll 10 s: tls+tcp:// (mutual TLS, P-256) beside tcp://"
    );
    println!(
        "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
        "transport", "case", "trials", "p50", "p99", "max"
    );
    for (label, url, server_opts, client_opts) in [
        ("tcp://", "tcp://127.0.0.1:0", base.clone(), base.clone()),
        (
            "tls+tcp://",
            "tls+tcp://127.0.0.1:0",
            base.clone().tls(tls("server")),
            base.clone().tls(tls("client")),
        ),
    ] {
        let server = Server::new(url, url, server_opts).expect("server");
        let subscriber =
            Subscriber::with_options(server.publish_url(), &client_opts).expect("subscribe");
        let changes = subscriber.changes();
        wait_for(&changes, |l| l.is_empty());
        let (mut join, mut leave) = (Vec::new(), Vec::new());
        for i in 0..n {
            let name = format!("http://127.0.0.1:{}", 40_000 + i);
            let t0 = Instant::now();
            let client = Client::with_options(server.survey_url(), None, &name, &client_opts)
                .expect("client");
            wait_for(&changes, |l| l.contains(&name));
            join.push(t0.elapsed());
            let t0 = Instant::now();
            client.shutdown();
            wait_for(&changes, |l| !l.contains(&name));
            leave.push(t0.elapsed());
        }
        for (case, samples) in [("join", join), ("leave", leave)] {
            let s = summary(samples);
            println!(
                "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
                label,
                case,
                s.n,
                fmt(s.p50),
                fmt(s.p99),
                fmt(s.max)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `nng-discovery server` on the given URLs (poll 10 s, survey 1 s, so
/// every figure comes from connection events), and the URLs it bound.
fn daemon_server(daemon: &str, survey: &str, publish: &str) -> (Child, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(daemon)
        .args(["server", "--survey", survey, "--publish", publish])
        .args(["--poll-interval", "10s", "--survey-time", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut url = |prefix: &str| {
        let line = lines.next().expect("a URL line").expect("a URL line");
        line.strip_prefix(prefix).expect("the URL line").to_owned()
    };
    let survey = url("survey ");
    let publish = url("publish ");
    (child, survey, publish)
}

/// Three servers (processes), a subscriber of all three and clients on all
/// three: join/leave times beside the single-server rows above, and how
/// many lists other than the live set a subscriber got while servers were
/// killed and restarted one after another.
fn redundant_servers(daemon: &str, n: usize) {
    let mut servers: Vec<(Child, String, String)> = (0..3)
        .map(|_| daemon_server(daemon, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"))
        .collect();
    let surveys: Vec<String> = servers.iter().map(|s| s.1.clone()).collect();
    let publishes: Vec<String> = servers.iter().map(|s| s.2.clone()).collect();
    let options = Options::default()
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(200));
    // Join and leave with the first server alone, then with all three,
    // in the same run.
    let mut rows = Vec::new();
    for count in [1, 3] {
        let subscriber =
            Subscriber::with_options(&publishes[..count], &options).expect("subscribe");
        let changes = subscriber.changes();
        wait_for(&changes, |l| l.is_empty());
        let mut join = Vec::new();
        let mut leave = Vec::new();
        for i in 0..n {
            let name = format!("http://127.0.0.1:{}", 30_000 + i);
            let t0 = Instant::now();
            let client =
                Client::with_options(&surveys[..count], None, &name, &options).expect("client");
            wait_for(&changes, |l| l.contains(&name));
            join.push(t0.elapsed());
            let t0 = Instant::now();
            client.shutdown();
            wait_for(&changes, |l| !l.contains(&name));
            leave.push(t0.elapsed());
        }
        rows.push((count, "join", join));
        rows.push((count, "leave", leave));
    }
    let subscriber = Subscriber::with_options(&publishes, &options).expect("subscribe");
    let changes = subscriber.changes();
    wait_for(&changes, |l| l.is_empty());

    // Three live clients; every list the subscriber gets from here on is
    // recorded by a thread (a latest-wins reader could miss a brief one).
    let live: Vec<String> = (0..3).map(|i| format!("http://live:{i}")).collect();
    let _clients: Vec<Client> = live
        .iter()
        .map(|name| Client::with_options(&surveys, None, name, &options).expect("client"))
        .collect();
    wait_for(&changes, |l| *l == live);
    let recorded = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
    let sink = std::sync::Arc::clone(&recorded);
    let reader = changes.clone();
    std::thread::spawn(move || {
        for list in reader {
            sink.lock().expect("lock").push(list);
        }
    });
    let restarts = n.min(10);
    let mut back = Vec::new();
    // Lists other than the live set, counted apart while a server is down
    // (killed, 300 ms before it starts again: its connections are seen
    // closing in that time) and while it restarts (until it lists every
    // client itself).
    let wrong_since = |mark: usize| {
        let lists = recorded.lock().expect("lock");
        lists[mark..].iter().filter(|l| **l != live).count()
    };
    let mark = || recorded.lock().expect("lock").len();
    let (mut wrong_killed, mut wrong_restarted) = (0, 0);
    for i in 0..restarts {
        let k = i % 3;
        let (mut child, survey, publish) = servers.remove(k);
        let killed_at = mark();
        child.kill().expect("SIGKILL a server");
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(300));
        wrong_killed += wrong_since(killed_at);
        let restarted_at = mark();
        let t0 = Instant::now();
        let again = daemon_server(daemon, &survey, &publish);
        // Until the restarted server lists every live client itself.
        let alone = Subscriber::with_options(publish.as_str(), &options).expect("subscribe");
        wait_for(&alone.changes(), |l| *l == live);
        back.push(t0.elapsed());
        wrong_restarted += wrong_since(restarted_at);
        servers.insert(k, again);
    }

    println!();
    println!("# three servers (processes), a subscriber of all three, clients on all three");
    println!(
        "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
        "configuration", "case", "trials", "p50", "p99", "max"
    );
    for (count, case, samples) in rows {
        let s = summary(samples);
        println!(
            "{:<38} {:<16} {:>6} {:>10} {:>10} {:>10}",
            format!("{count} server(s) (processes), poll 10 s"),
            case,
            s.n,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.max)
        );
    }
    let s = summary(back);
    println!(
        "server killed (of 3): {restarts} kills, {wrong_killed} lists other than the live set \
         at the subscriber"
    );
    println!(
        "server restarted (of 3): {restarts} restarts, {wrong_restarted} lists other than the \
         live set at the subscriber; restarted server listing all 3 clients again after \
         p50 {} / max {}",
        fmt(s.p50),
        fmt(s.max)
    );
    for (mut child, _, _) in servers {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A peer that stops answering but keeps its connection (SIGSTOP) must be
/// evicted within `miss_threshold × poll_interval + survey_time`, never
/// sooner than one poll interval.
fn hung_peers(daemon: &str, n: usize) {
    let (poll, survey, threshold) = (Duration::from_millis(500), Duration::from_millis(200), 2);
    let options = Options::default()
        .poll_interval(poll)
        .survey_time(survey)
        .miss_threshold(threshold);
    let bound = poll * threshold + survey;
    let server =
        Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("start the server");
    let subscriber = Subscriber::new(server.publish_url()).expect("subscribe");
    let changes = subscriber.changes();
    let mut samples = Vec::new();
    for i in 0..n {
        let name = format!("http://127.0.0.1:{}", 30_000 + i);
        let mut child = spawn_join(daemon, server.survey_url(), &name);
        wait_for(&changes, |l| l.contains(&name));
        let t0 = Instant::now();
        signal(&child, "-STOP");
        wait_for(&changes, |l| !l.contains(&name));
        samples.push(t0.elapsed());
        // Done with it (the list is already without it; a late answer
        // after SIGCONT would only bring it back until the kill).
        signal(&child, "-CONT");
        let _ = child.kill();
        let _ = child.wait();
    }
    let s = summary(samples);
    println!();
    println!(
        "# hung peer (SIGSTOP), poll {poll:?} / survey {survey:?} / miss_threshold {threshold}: bound {bound:?}"
    );
    println!(
        "{:<16} {:>6} {:>10} {:>10} {:>10}",
        "case", "trials", "p50", "p99", "max"
    );
    println!(
        "{:<16} {:>6} {:>10} {:>10} {:>10}",
        "hang (SIGSTOP)",
        s.n,
        fmt(s.p50),
        fmt(s.p99),
        fmt(s.max)
    );
}

/// `join --check 'test -e FILE' --check-interval 100ms`: from removing
/// FILE until the name leaves (bound: one interval, plus the check's own
/// run and a few milliseconds).
fn failing_check(daemon: &str, n: usize) {
    let interval = Duration::from_millis(100);
    let server = Server::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        Options::default().poll_interval(Duration::from_secs(10)),
    )
    .expect("start the server");
    let subscriber = Subscriber::new(server.publish_url()).expect("subscribe");
    let changes = subscriber.changes();
    let file = std::env::temp_dir().join(format!("nngd-bench-check-{}", std::process::id()));
    std::fs::write(&file, b"").expect("create the check file");
    let check = format!("test -e '{}'", file.display());
    let name = "http://127.0.0.1:9998";
    let mut child = Command::new(daemon)
        .args(["join", "--survey", server.survey_url(), "--name", name])
        .args(["--check", &check, "--check-interval", "100ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery join --check");
    let listed = |l: &Vec<String>| l.iter().any(|n| n == name);
    wait_for(&changes, listed);
    let mut samples = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        std::fs::remove_file(&file).expect("remove the check file");
        wait_for(&changes, |l| !listed(l));
        samples.push(t0.elapsed());
        std::fs::write(&file, b"").expect("create the check file");
        wait_for(&changes, listed);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&file);
    let s = summary(samples);
    println!();
    println!("# join --check 'test -e FILE' --check-interval {interval:?}: FILE removed until the name leaves");
    println!(
        "{:<16} {:>6} {:>10} {:>10} {:>10}",
        "case", "trials", "p50", "p99", "max"
    );
    println!(
        "{:<16} {:>6} {:>10} {:>10} {:>10}",
        "failing check",
        s.n,
        fmt(s.p50),
        fmt(s.p99),
        fmt(s.max)
    );
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// How long `shutdown` takes (target: well under 100 ms), in the awkward
/// cases: a server with clients answering, a connected client with a
/// subscription, and a client and a subscriber whose server is unreachable.
fn shutdown_times(n: usize) {
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("tcp://{}", l.local_addr().expect("addr"))
    };
    let mut server_t = Vec::new();
    let mut client_t = Vec::new();
    let mut lonely_t = Vec::new();
    let mut sub_t = Vec::new();
    let fast = Options::default()
        .poll_interval(Duration::from_millis(20))
        .survey_time(Duration::from_millis(10));
    for _ in 0..n.min(20) {
        let server =
            Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", fast.clone()).expect("server");
        let watch = Subscriber::new(server.publish_url()).expect("subscribe");
        let clients: Vec<Client> = (0..20)
            .map(|i| {
                Client::with_subscription(
                    server.survey_url(),
                    server.publish_url(),
                    &format!("http://s:{i}"),
                )
                .expect("client")
            })
            .collect();
        wait_for(&watch.changes(), |l| l.len() == 20);
        let mut clients = clients.into_iter();
        if let Some(c) = clients.next() {
            let t0 = Instant::now();
            c.shutdown();
            client_t.push(t0.elapsed());
        }
        let t0 = Instant::now();
        server.shutdown();
        server_t.push(t0.elapsed());
        drop(clients);
        let c = Client::with_subscription(&nowhere, &nowhere, "http://lonely:1").expect("client");
        let t0 = Instant::now();
        c.shutdown();
        lonely_t.push(t0.elapsed());
        let s = Subscriber::new(&nowhere).expect("subscribe");
        let t0 = Instant::now();
        s.shutdown();
        sub_t.push(t0.elapsed());
    }
    println!();
    println!("# shutdown() duration");
    println!(
        "{:<55} {:>6} {:>10} {:>10} {:>10}",
        "case", "trials", "p50", "p99", "max"
    );
    for (case, samples) in [
        ("server, 20 clients answering a 20 ms poll", server_t),
        ("client with subscription, connected", client_t),
        ("client with subscription, server unreachable", lonely_t),
        ("subscriber, server unreachable", sub_t),
    ] {
        let s = summary(samples);
        println!(
            "{:<55} {:>6} {:>10} {:>10} {:>10}",
            case,
            s.n,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.max)
        );
    }
}

/// Starts `nng-discovery join` as a child process.
fn spawn_join(daemon: &str, survey_url: &str, name: &str) -> Child {
    Command::new(daemon)
        .args(["join", "--survey", survey_url, "--name", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery join")
}

/// Receives lists until one satisfies `done`; panics after `TIMEOUT`.
fn wait_for(changes: &Receiver<Vec<String>>, done: impl Fn(&Vec<String>) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let list = changes
            .recv_timeout(left)
            .expect("the expected list did not arrive in time");
        if done(&list) {
            return;
        }
    }
}

struct Summary {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Nearest-rank percentiles.
fn summary(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let n = samples.len();
    let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary {
        n,
        p50: rank(0.50),
        p99: rank(0.99),
        max: samples[n - 1],
    }
}

fn fmt(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
