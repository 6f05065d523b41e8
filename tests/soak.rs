//! A short soak for CI (the long one is `examples/soak.rs`): `nng-discovery
//! join` processes start, crash (SIGKILL) and exit (SIGTERM) at random, a
//! fixed number of steps (a few seconds here), while subscribers watch;
//! afterwards every subscriber, and the server, must hold exactly the
//! processes still running.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{patience, slow};
use nng_discovery::{Options, Server, Subscriber};

/// Random steps (start, kill, terminate or pause): about 6 s on a normal
/// machine. A fixed amount of work, whatever the machine's speed.
const STEPS: usize = 250;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn join(survey: &str, name: &str) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_nng-discovery"))
        .args(["join", "--survey", survey, "--name", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nng-discovery join");
    Proc(child)
}

#[test]
fn random_process_churn_converges_on_the_live_set() {
    let options = Options::default()
        .poll_interval(slow(Duration::from_millis(500)))
        .survey_time(slow(Duration::from_millis(200)));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).unwrap();
    let subs: Vec<Subscriber> = (0..3)
        .map(|_| Subscriber::new(server.publish_url()).unwrap())
        .collect();

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: BTreeMap<String, Proc> = BTreeMap::new();
    let (mut started, mut killed, mut termed) = (0, 0, 0);
    let mut serial = 0;
    for _ in 0..STEPS {
        match next() % 10 {
            0..=4 if live.len() < 30 => {
                serial += 1;
                let name = format!("http://proc:{serial}");
                live.insert(name.clone(), join(server.survey_url(), &name));
                started += 1;
            }
            5..=7 if !live.is_empty() => {
                let key = live
                    .keys()
                    .nth((next() as usize) % live.len())
                    .cloned()
                    .unwrap();
                let mut p = live.remove(&key).unwrap();
                let _ = p.0.kill(); // SIGKILL: a crash
                let _ = p.0.wait();
                killed += 1;
            }
            8 if !live.is_empty() => {
                let key = live
                    .keys()
                    .nth((next() as usize) % live.len())
                    .cloned()
                    .unwrap();
                let p = live.remove(&key).unwrap();
                let _ = Command::new("kill")
                    .args(["-TERM", &p.0.id().to_string()])
                    .status();
                termed += 1;
                drop(p); // waits for it (killing it if SIGTERM did not)
            }
            _ => {}
        }
        // Pace the churn without synchronising on it: a random pause.
        std::thread::sleep(Duration::from_millis(next() % 40));
    }
    eprintln!(
        "started {started}, killed {killed}, terminated {termed}, live {}",
        live.len()
    );

    let want: Vec<String> = live.keys().cloned().collect();
    // The processes started last must connect and answer; the others'
    // leaves are seen from their connections closing.
    let deadline = Instant::now() + patience();
    for (i, sub) in subs.iter().enumerate() {
        let rx = sub.changes();
        let mut last = None;
        while last.as_ref() != Some(&want) {
            match rx.recv_deadline(deadline) {
                Ok(list) => last = Some(list),
                Err(_) => panic!("subscriber {i}: last list {last:?}, live {want:?}"),
            }
        }
    }
    assert_eq!(server.peers(), want);
    let stats = server.stats();
    assert_eq!(stats.connections, want.len(), "{stats:?}");
}
