//! Many peers connecting at once are all listed by the surveys that
//! new connections trigger, without waiting for a heartbeat: the server's
//! poll interval is an hour, so after its first round (which ends before
//! any peer connects) no heartbeat survey goes out during the test, and
//! only the connection-triggered surveys can list the peers.

use std::collections::BTreeSet;
use std::time::Duration;

use nng_discovery::{Options, Server};
use nng_discovery_loadgen::peer_name;

mod common;
use common::Generator;

/// Enough that connections arrive while earlier surveys are under way and
/// must share them, few enough for a debug build on a busy machine (at
/// 4,000, a debug server on a machine with a load average of 14 accepted
/// only about 2,000 connections a minute).
const PEERS: u32 = 1500;
/// Listing them all normally takes about a second on a 2-core machine;
/// this bound is 60 times that (busy CI machines are slow).
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_mass_connect_is_listed_without_a_heartbeat() {
    let options = Options::default()
        .poll_interval(Duration::from_secs(3600))
        .survey_time(Duration::from_millis(100));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("server");
    // The first list goes out when the first heartbeat round ends: from
    // then on, the next heartbeat is an hour away.
    let changes = server.changes();
    let first = changes
        .recv_timeout(DEADLINE)
        .expect("the first (empty) list");
    assert!(first.is_empty(), "{first:?}");

    let peers = PEERS.to_string();
    let args = [
        "--survey",
        server.survey_url(),
        "--publish",
        server.publish_url(),
        "--peers",
        &peers,
        "--subs",
        "1",
        "--track-joins",
    ];
    let gen = Generator::start(&args, DEADLINE);

    // Every peer is listed by the server...
    let want: BTreeSet<String> = (0..PEERS).map(|i| peer_name(i, 0)).collect();
    common::wait_for_list(&server, &want, DEADLINE);
    // ...and reaches the generator's own subscriber, each peer's name in
    // a list (`joins` is printed once every peer has been).
    let joins = gen.expect("joins", |_| true);
    assert_eq!(joins.num::<u32>("n"), Some(PEERS));

    // No heartbeat did it: only the first round (before any peer) ended.
    let stats = server.stats();
    assert_eq!(stats.rounds, 1, "{stats}");
    assert_eq!(stats.connections, PEERS as usize, "{stats}");
    assert!(stats.answers >= u64::from(PEERS), "{stats}");
    drop(gen);
    server.shutdown();
}
