//! The server process is killed with SIGKILL and a new one started on the
//! same URLs: every client registers again and every subscriber, pure or in
//! a client, follows the new server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{patience, slow};
use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Subscriber};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `nng-discovery server` and returns it with the URLs it bound,
/// read from its first two lines of output. Poll 1 s, survey 250 ms (times
/// the slowdown under qemu).
fn server(survey: &str, publish: &str) -> (Proc, String, String) {
    let poll = format!("{}ms", slow(Duration::from_secs(1)).as_millis());
    let survey_time = format!("{}ms", slow(Duration::from_millis(250)).as_millis());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nng-discovery"))
        .args(["server", "--survey", survey, "--publish", publish])
        .args(["--poll-interval", &poll, "--survey-time", &survey_time])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery server");
    let out = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    // Read the two URL lines on a thread so a silent server fails the test
    // by timeout instead of hanging it.
    let (tx, rx) = crossbeam_channel::bounded(2);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = rx
            .recv_timeout(patience())
            .expect("the server printed its URLs");
        if let Some((_, url)) = line.split_once(' ') {
            urls.push(url.to_owned());
        }
    }
    let publish_url = urls.pop().unwrap_or_default();
    let survey_url = urls.pop().unwrap_or_default();
    (proc, survey_url, publish_url)
}

fn wait_for(rx: &Receiver<Vec<String>>, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + patience();
    let mut last = None;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(list) if done(&list) => return,
            Ok(list) => last = Some(list),
            Err(_) => panic!("{what}: last list {last:?}"),
        }
    }
}

#[test]
fn a_server_killed_and_restarted_on_the_same_urls_gets_everyone_back() {
    let (first, survey, publish) = server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
    let options = Options::default()
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(500));
    let names = ["http://a:1", "http://b:1", "http://c:1"];
    let clients: Vec<Client> = names
        .iter()
        .map(|n| Client::with_options(&survey, Some(&publish), n, &options).unwrap())
        .collect();
    let sub = Subscriber::with_options(&publish, &options).unwrap();
    let mut receivers: Vec<Receiver<Vec<String>>> =
        clients.iter().map(|c| c.peers().unwrap()).collect();
    receivers.push(sub.changes());
    for rx in &receivers {
        wait_for(rx, "all three before the crash", |l| l == names);
    }

    let mut first = first;
    first.0.kill().expect("SIGKILL the server");
    let _ = first.0.wait();
    let restarted = Instant::now();
    let (_second, survey2, publish2) = server(&survey, &publish);
    assert_eq!(
        (survey2.as_str(), publish2.as_str()),
        (survey.as_str(), publish.as_str())
    );

    // A newcomer's view: the new server's first list is already complete.
    let fresh = Subscriber::new(&publish).unwrap();
    wait_for(&fresh.changes(), "complete list at the new server", |l| {
        l == names
    });
    eprintln!(
        "complete list again {:?} after the restart",
        restarted.elapsed()
    );

    // Every old receiver follows the new server: a fourth client shows up.
    let d = Client::new(&survey, "http://d:1").unwrap();
    for rx in &receivers {
        wait_for(rx, "the newcomer, seen through the new server", |l| {
            l == ["http://a:1", "http://b:1", "http://c:1", "http://d:1"]
        });
    }
    drop(d);
}
