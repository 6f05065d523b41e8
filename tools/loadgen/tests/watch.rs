//! `loadgen --watchers` against a real server with a watch URL: an
//! independent implementation of the watch protocol (the generator speaks
//! REQ over SP itself) gets the full list from the server's snapshot, then
//! follows a leave and a join by deltas; no reply fails to apply and no
//! snapshot arrives that a watcher did not ask for.

use std::time::Duration;

use nng_discovery::{Options, Server};

mod common;
use common::Generator;

const PEERS: u32 = 100;
const WATCHERS: u32 = 20;
/// Every wait is bounded by this. The slowest step, the full list, comes
/// after the server's first heartbeat round (1 s at the default survey
/// time) and a publish: over 10x what it normally takes, and enough for a
/// busy machine or qemu.
const DEADLINE: Duration = Duration::from_secs(60);

fn start_generator(server: &Server) -> Generator {
    let watch = server.watch_url().expect("the server has a watch URL");
    let args = [
        "--survey",
        server.survey_url(),
        "--watch",
        watch,
        "--peers",
        &PEERS.to_string(),
        "--watchers",
        &WATCHERS.to_string(),
        "--report-ms",
        "50",
    ];
    Generator::start(&args, DEADLINE)
}

#[test]
fn watchers_get_the_full_list_and_follow_a_leave_and_a_join() {
    let options = Options::default().watch_url("tcp://127.0.0.1:0");
    let server =
        Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).expect("start server");
    let mut gen = start_generator(&server);

    // Every watcher holds all the peers' names.
    let all = gen.expect("all_full", |_| true);
    assert_eq!(all.num::<u32>("watchers"), Some(WATCHERS), "{all:?}");
    assert_eq!(all.num::<u32>("subs"), Some(0), "{all:?}");

    // One peer leaves and comes back under a new name: both changes reach
    // every watcher (the generator reports a change once all hold it).
    gen.command("churn 1");
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let change = gen.expect("change", |_| true);
        assert_eq!(
            change.num::<u32>("watchers"),
            Some(WATCHERS),
            "every watcher was connected and counted: {change:?}"
        );
        kinds.push(change.get("kind").unwrap_or_default().to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["join", "leave"]);
    // ... and they hold the full list again.
    gen.expect("tick", |l| {
        l.num::<u32>("full") == Some(WATCHERS) && l.num::<u32>("pending_changes") == Some(0)
    });

    // Every reply applied (deltas and keepalives matched what each watcher
    // held), and every snapshot was asked for or smaller than its delta.
    let stats = server.stats();
    assert_eq!(stats.watchers, WATCHERS as usize, "{stats:?}");
    let end = gen.expect("tick", |_| true);
    assert_eq!(end.num::<u64>("watch_refused"), Some(0), "{end:?}");
    assert_eq!(end.num::<u64>("watch_unasked"), Some(0), "{end:?}");
    assert_eq!(end.num::<u64>("watch_stale"), Some(0), "{end:?}");
    assert!(
        end.num::<u64>("watch_deltas") >= Some(u64::from(WATCHERS)),
        "the leave and the join came as deltas: {end:?}"
    );
    gen.command("quit");
    let done = gen.expect("end", |_| true);
    assert_eq!(done.num::<u64>("changes_lost"), Some(0), "{done:?}");
    assert_eq!(done.num::<u64>("changes_done"), Some(2), "{done:?}");
    server.shutdown();
}
