//! The whole flow over each transport NNG offers: a server, a client with a
//! subscription, an independent subscriber, a second client, and leaves.

mod common;

use common::*;
use nng_discovery::{Client, Server, Subscriber};

fn full_flow(survey_url: &str, publish_url: &str) {
    let server = match Server::new(survey_url, publish_url, fast_options()) {
        Ok(s) => s,
        Err(e) => panic!("Server::new({survey_url}, {publish_url}): {e}"),
    };
    if !survey_url.ends_with(":0") {
        assert_eq!(server.survey_url(), survey_url);
        assert_eq!(server.publish_url(), publish_url);
    }
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let rx = sub.changes();
    assert_eq!(
        rx.recv_timeout(patience()).expect("the first list"),
        Vec::<String>::new()
    );

    let one = Client::with_subscription(server.survey_url(), server.publish_url(), "client1")
        .expect("client with subscription");
    let peers = one.peers().expect("subscription");
    wait_for_list(&peers, &["client1"]);
    wait_for_list(&rx, &["client1"]);

    let two = Client::new(server.survey_url(), "client2").expect("client");
    wait_for_list(&peers, &["client1", "client2"]);
    wait_for_list(&rx, &["client1", "client2"]);
    assert_eq!(server.peers(), names(&["client1", "client2"]));

    two.shutdown();
    wait_for_list(&peers, &["client1"]);
    wait_for_list(&rx, &["client1"]);

    one.shutdown();
    wait_for_list(&rx, &[]);
    assert!(server.peers().is_empty());

    within(patience(), "Server::shutdown", move || server.shutdown());
    within(patience(), "Subscriber::shutdown", move || sub.shutdown());
    // The channel ends with its subscriber.
    assert!(rx.recv_timeout(patience()).is_err());
}

#[test]
fn tcp() {
    full_flow("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
}

#[test]
fn tcp_reserved_ports() {
    let (survey, publish) = reserved_tcp_urls();
    full_flow(&survey, &publish);
}

#[test]
fn ipc() {
    full_flow(&ipc_url("flow-s"), &ipc_url("flow-p"));
}

#[test]
fn inproc() {
    full_flow(&inproc_url("flow-s"), &inproc_url("flow-p"));
}

#[test]
fn mixed_transports() {
    // Clients over TCP, subscribers over IPC: the two URLs are independent.
    full_flow("tcp://127.0.0.1:0", &ipc_url("flow-mixed-p"));
}
