//! `Server::stats` counts what the server did.

mod common;

use std::time::{Duration, Instant};

use common::{patience, slow, stats_until};
use nng_discovery::{Client, Options, Server, Subscriber};

#[test]
fn counters_follow_the_work() {
    let options = Options::default()
        .poll_interval(slow(Duration::from_millis(200)))
        .survey_time(slow(Duration::from_millis(100)));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).unwrap();
    let sub = Subscriber::new(server.publish_url()).unwrap();
    let clients: Vec<Client> = (0..3)
        .map(|i| Client::new(server.survey_url(), &format!("http://s:{i}")).unwrap())
        .collect();
    let rx = sub.changes();
    let deadline = Instant::now() + patience();
    while rx.recv_deadline(deadline).unwrap().len() < 3 {}

    // Two full rounds after everyone joined: each got all three answers.
    let base = server.stats().rounds;
    let stats = stats_until(&server, "two more rounds", |s| s.rounds >= base + 2);
    assert_eq!(stats.answers_last_round, 3, "{stats:?}");
    assert_eq!(stats.peers, 3);
    assert_eq!(stats.connections, 3);
    assert_eq!(stats.subscribers, 1);
    assert!(stats.surveys_sent >= stats.rounds);
    assert!(stats.answers >= 3 * 2);
    assert!(stats.publishes >= 1);
    assert!(stats.bytes_published >= "http://s:0|http://s:1|http://s:2".len() as u64);
    assert_eq!(
        (stats.refused_invalid, stats.refused_full),
        (0, 0),
        "{stats:?}"
    );

    drop(clients);
    let stats = stats_until(&server, "all left", |s| s.peers == 0 && s.connections == 0);
    assert_eq!(stats.subscribers, 1);
    drop(sub);
    stats_until(&server, "subscriber gone", |s| s.subscribers == 0);
}

#[test]
fn refused_answers_are_counted() {
    let options = Options::default().max_peers(1);
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options).unwrap();
    let first = Client::new(server.survey_url(), "http://first:1").unwrap();
    stats_until(&server, "first listed", |s| s.peers == 1);
    let second = Client::new(server.survey_url(), "http://second:1").unwrap();
    let stats = stats_until(&server, "second refused", |s| s.refused_full >= 1);
    assert_eq!(stats.peers, 1);
    // `peers()` is the list as last published: wait for the first publish.
    let changes = server.changes();
    let deadline = Instant::now() + patience();
    while changes.recv_deadline(deadline).unwrap() != ["http://first:1"] {}
    assert_eq!(server.peers(), ["http://first:1"]);
    drop((first, second));
}
