//! `loadgen --redial`: peers and subscribers whose server goes away keep
//! dialing (with the library clients' backoff) and, once a server listens
//! on the same URLs again, redo the SP handshake and answer its surveys:
//! the restarted server lists every one of them again, and the raw
//! subscriber receives that list.

use std::collections::BTreeSet;
use std::time::Duration;

use nng_discovery::{Options, Server};
use nng_discovery_loadgen::peer_name;

mod common;
use common::Generator;

const PEERS: u32 = 200;
/// Every wait is bounded by this. The slowest step, the restarted server's
/// first list, comes after its first publish delay (3 s by default) and
/// the peers are back within about 1 s of its start (their longest redial
/// wait), so this is over 10x what it normally takes.
const DEADLINE: Duration = Duration::from_secs(60);

fn start_generator(survey: &str, publish: &str) -> Generator {
    let peers = PEERS.to_string();
    let args = [
        "--survey",
        survey,
        "--publish",
        publish,
        "--peers",
        &peers,
        "--subs",
        "1",
        "--report-ms",
        "50",
        "--print-lists",
        "--redial",
    ];
    Generator::start(&args, DEADLINE)
}

/// Waits until the server lists exactly `want` (woken by each change).
fn wait_for_list(server: &Server, want: &BTreeSet<String>) {
    common::wait_for_list(server, want, DEADLINE);
}

#[test]
fn redialing_peers_come_back_to_a_restarted_server() {
    let all: BTreeSet<String> = (0..PEERS).map(|i| peer_name(i, 0)).collect();
    let options = Options::default;
    let server =
        Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options()).expect("start server");
    let (survey, publish) = (
        server.survey_url().to_owned(),
        server.publish_url().to_owned(),
    );
    let gen = start_generator(&survey, &publish);
    gen.expect("full", |l| l.num::<u32>("len") == Some(PEERS));
    wait_for_list(&server, &all);

    // The server goes away: every connection closes, and the peers keep
    // dialing (each fails at least once: the port is closed).
    server.shutdown();
    gen.expect("tick", |l| {
        l.num::<u32>("peers_ready") == Some(0)
            && l.num::<u32>("subs_ready") == Some(0)
            && l.num::<u64>("connect_failures") >= Some(u64::from(PEERS))
    });

    // Started again on the same URLs: every peer redials, redoes the
    // handshake and answers; the subscriber redials and gets the list.
    let server = Server::new(&survey, &publish, options()).expect("restart on the same URLs");
    wait_for_list(&server, &all);
    // Every line from here on was printed after the server went away.
    gen.expect("list", |l| l.num::<u32>("len") == Some(PEERS));
    let back = gen.expect("tick", |l| {
        l.num::<u32>("peers_ready") == Some(PEERS) && l.num::<u32>("subs_ready") == Some(1)
    });
    assert!(
        back.num::<u64>("reconnects") >= Some(u64::from(PEERS) + 1),
        "every peer and the subscriber reconnected: {back:?}"
    );
    server.shutdown();
}
