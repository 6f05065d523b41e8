//! Clients and subscribers must survive their server's connections closing
//! while surveys and lists are in flight, and must shut down at any moment.
//!
//! Two NNG 1.4 bugs live here. Its cooked respondent leaves a closed
//! connection on its list of connections with a pending survey, and a later
//! receive uses the freed connection (NNG issue 1959: a SIGSEGV in the
//! client); the client answers with a raw respondent, which has no such
//! list. And NNG cannot close a socket while a thread is entering a receive
//! on it (a receive queued on the closed queue hangs forever, or touches it
//! after it is freed); our threads wait in poll and the sockets close only
//! after them (src/nng/receiver.rs). This test drives both patterns hard: a
//! server surveying every millisecond, closed and restarted on the same URL
//! a fixed number of times, under clients and subscribers that come and go;
//! then a last, ordinary server must list every client and reach every
//! subscriber.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{fast_options, patience, slow, wait_for};
use nng_discovery::{Client, Options, Server, Subscriber};

/// How many times the server is closed under the clients: a fixed amount of
/// work (about 4 s on a normal machine), whatever the machine's speed.
const RESTARTS: usize = 40;

#[test]
fn clients_survive_servers_closing_mid_survey() {
    static N: AtomicUsize = AtomicUsize::new(0);
    let url = |tag: &str| {
        let path = std::env::temp_dir().join(format!(
            "nngd-stress-{}-{tag}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        format!("ipc://{}", path.display())
    };
    let (survey, publish) = if std::env::var("STRESS_IPC").is_ok() {
        (url("s"), url("p"))
    } else {
        let first =
            Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", Options::default()).unwrap();
        let urls = (
            first.survey_url().to_owned(),
            first.publish_url().to_owned(),
        );
        drop(first);
        urls
    };
    // A survey every 2 ms, redials every 10 to 50 ms (all 10x slower under
    // qemu, where code runs 10-50x slower: the same pressure for the
    // machine). Not faster redials: at 1-5 ms the 20 clients' 30 dialers
    // open connections faster than NNG 1.4 closes the refused ones while
    // the server is down, and a loaded machine reaches the 20,000-descriptor
    // limit ("Out of files").
    let options = Options::default()
        .poll_interval(slow(Duration::from_millis(2)))
        .survey_time(slow(Duration::from_millis(1)))
        .reconnect_min(slow(Duration::from_millis(10)))
        .reconnect_max(slow(Duration::from_millis(50)));
    // Half the clients also subscribe, and pure subscribers watch: every
    // restart cuts their connections too, mid-publish.
    let client = |i: usize| {
        let publish = (i % 2 == 0).then_some(publish.as_str());
        Client::with_options(&survey, publish, &format!("http://c:{i}"), &options).unwrap()
    };
    let mut clients: Vec<Client> = (0..20).map(client).collect();
    let subscribers: Vec<Subscriber> = (0..5)
        .map(|_| Subscriber::with_options(&publish, &options).unwrap())
        .collect();
    let mut serial = 100;
    let mut all_back = 0;
    for restart in 1..=RESTARTS {
        let server = Server::new(&survey, &publish, options.clone()).unwrap();
        // Let surveys flow until every client is connected again and
        // answers are coming in, then cut them off. (Within milliseconds
        // usually; the cut comes after 2 s at the latest, still mid-survey.
        // Not an assertion: the last server below checks that every client
        // survived.)
        let deadline = Instant::now() + slow(Duration::from_secs(2));
        loop {
            let s = server.stats();
            if s.connections >= clients.len() && s.answers >= clients.len() as u64 {
                all_back += 1;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(server);
        // Replace one client each time, so closes come from both sides.
        drop(clients.swap_remove(restart % clients.len()));
        serial += 1;
        clients.push(client(serial));
    }
    eprintln!("{RESTARTS} server restarts survived ({all_back} with every client back)");

    // Every client and subscriber is still working: an ordinary server on
    // the same URLs lists all the clients, and every subscriber, pure or in
    // a client, receives that list.
    let server = Server::new(&survey, &publish, fast_options()).unwrap();
    let mut want: Vec<String> = clients.iter().map(|c| c.service().to_owned()).collect();
    want.sort();
    wait_for(&server.changes(), |l| l == want.as_slice(), patience());
    for s in &subscribers {
        wait_for(&s.changes(), |l| l == want.as_slice(), patience());
    }
    for c in clients.iter().filter(|c| c.peers().is_ok()) {
        wait_for(&c.peers().unwrap(), |l| l == want.as_slice(), patience());
    }
    drop(subscribers);
}
