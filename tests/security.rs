//! Issue 16 over real sockets: allowed networks, the connection bound, the
//! IPC socket file's mode, and names bound to the connection's address.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::*;
use crossbeam_channel::TryRecvError;
use nng_discovery::{Client, Error, Options, Server, Subscriber};

fn host_port(url: &str) -> &str {
    url.strip_prefix("tcp://").expect("a tcp:// URL")
}

/// A TCP connection that completes the SP handshake as `protocol` (so NNG
/// makes a pipe of it and the add-pre event runs) and then says nothing.
fn junk(url: &str, protocol: u16) -> TcpStream {
    let mut s = TcpStream::connect(host_port(url)).expect("connect");
    let [hi, lo] = protocol.to_be_bytes();
    s.write_all(&[0, b'S', b'P', 0, hi, lo, 0, 0])
        .expect("handshake");
    s
}

#[test]
fn allow_from_refuses_other_networks_on_both_urls() {
    // 127.0.0.1 is not in 10.0.0.0/8 or fd00::/8: the client and the
    // subscriber are refused on every redial.
    let server = tcp_server_with(fast_options().allow_from(["10.0.0.0/8", "fd00::/8"]));
    let client = Client::new(server.survey_url(), "http://127.0.0.1:1").expect("client");
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let changes = sub.changes();
    // Redials come every 100 ms to 1 s: 3 refusals of each take a few
    // seconds; patience() is 10 s.
    let s = stats_until(&server, "refusals of both", |s| s.refused_network >= 6);
    assert_eq!((s.connections, s.subscribers, s.peers), (0, 0, 0), "{s}");
    assert!(server.peers().is_empty());
    // The subscriber never got a list, not even the empty one a new
    // subscriber is sent at once.
    assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(server.stats().refused_connections, 0);
    drop((client, sub));
}

#[test]
fn allow_from_admits_as_written() {
    let server = tcp_server_with(fast_options().allow_from(["10.0.0.0/8", "127.0.0.1/32"]));
    let list = server.changes();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let _client = Client::new(server.survey_url(), "http://127.0.0.1:1").expect("client");
    wait_for_list(&list, &["http://127.0.0.1:1"]);
    wait_for_list(&sub.changes(), &["http://127.0.0.1:1"]);
    let s = server.stats();
    assert_eq!(
        (s.refused_network, s.connections, s.subscribers),
        (0, 1, 1),
        "{s}"
    );
}

#[test]
fn allow_from_over_ipv6() {
    let over_v6 = |nets: &[&str]| {
        Server::new(
            "tcp://[::1]:0",
            "tcp://[::1]:0",
            fast_options().allow_from(nets.iter().copied()),
        )
    };
    let Ok(refusing) = over_v6(&["127.0.0.0/8"]) else {
        eprintln!("no IPv6 loopback here: skipping the IPv6 half");
        return;
    };
    let _c = Client::new(refusing.survey_url(), "a").expect("client");
    stats_until(&refusing, "the ::1 client refused", |s| {
        s.refused_network >= 2
    });
    assert!(refusing.peers().is_empty());

    let admitting = over_v6(&["::1/128"]).expect("server on [::1]");
    let list = admitting.changes();
    let _c = Client::new(admitting.survey_url(), "b").expect("client");
    wait_for_list(&list, &["b"]);
    assert_eq!(admitting.stats().refused_network, 0);
}

#[test]
fn ipc_and_inproc_have_no_address_and_are_admitted() {
    for (survey, publish) in [
        (ipc_url("sec-s"), ipc_url("sec-p")),
        (inproc_url("sec-s"), inproc_url("sec-p")),
    ] {
        let server = Server::new(
            &survey,
            &publish,
            fast_options()
                .allow_from(["10.0.0.0/8"])
                .require_peer_host(true),
        )
        .expect("server");
        let list = server.changes();
        // Neither the network rule nor the host rule applies without an
        // IP address: a name that is no URL at all is listed.
        let _c = Client::new(server.survey_url(), "plain-name").expect("client");
        let sub = Subscriber::new(server.publish_url()).expect("subscriber");
        wait_for_list(&list, &["plain-name"]);
        wait_for_list(&sub.changes(), &["plain-name"]);
        let s = server.stats();
        assert_eq!(
            (s.refused_network, s.refused_peer_host),
            (0, 0),
            "{survey}: {s}"
        );
    }
}

#[test]
fn invalid_cidr_is_refused_by_name() {
    let e = Server::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        Options::default().allow_from(["10.0.0.0/8", "10.0.0.1/8"]),
    )
    .unwrap_err();
    match &e {
        Error::InvalidOption { option, reason } => {
            assert_eq!(*option, "allow_from");
            assert!(reason.contains("\"10.0.0.1/8\""), "{reason}");
            assert!(
                reason.contains("10.0.0.0/8?"),
                "suggests the network: {reason}"
            );
        }
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn max_connections_refuses_a_flood_and_recovers() {
    const MAX: usize = 4;
    let server = tcp_server_with(fast_options().max_connections(MAX));
    let list = server.changes();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let sub_rx = sub.changes();
    let _listed = Client::new(server.survey_url(), "listed").expect("client");
    wait_for_list(&list, &["listed"]);
    wait_for_list(&sub_rx, &["listed"]);

    // 2 x MAX junk connections, half on each URL, each completing the SP
    // handshake: MAX - 2 fit, the rest are closed as they arrive.
    let mut flood = Vec::new();
    for i in 0..2 * MAX {
        flood.push(if i % 2 == 0 {
            junk(server.survey_url(), 0x63)
        } else {
            junk(server.publish_url(), 0x21)
        });
    }
    let refused = 2 * MAX - (MAX - 2);
    let s = stats_until(&server, "the flood refused", |s| {
        s.refused_connections as usize >= refused
    });
    assert_eq!(s.refused_connections as usize, refused, "{s}");
    assert_eq!(s.refused_network, 0);

    // Serving goes on: the listed peer stays listed through heartbeat
    // rounds (the junk respondents never answer, so they list nothing).
    let rounds = s.rounds;
    stats_until(&server, "three more heartbeat rounds", |s| {
        s.rounds >= rounds + 3
    });
    assert_eq!(server.peers(), names(&["listed"]));

    // At the bound a new client is refused too...
    let refused_before = server.stats().refused_connections;
    let late = Client::new(server.survey_url(), "late").expect("client");
    stats_until(&server, "the late client refused", |s| {
        s.refused_connections > refused_before
    });
    assert_eq!(server.peers(), names(&["listed"]));
    // ...and once the flood is gone, its redial gets in.
    drop(flood);
    wait_for_list(&list, &["late", "listed"]);
    wait_for_list(&sub_rx, &["late", "listed"]);
    drop(late);
}

#[test]
fn ipc_socket_files_get_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (survey, publish) = (ipc_url("sec-mode-s"), ipc_url("sec-mode-p"));
    let server =
        Server::new(&survey, &publish, fast_options().ipc_permissions(0o600)).expect("server");
    for url in [&survey, &publish] {
        let path = url.strip_prefix("ipc://").expect("ipc URL");
        let mode = std::fs::metadata(path)
            .expect("socket file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{path}: {mode:o}");
    }
    // Still reachable by its owner.
    let list = server.changes();
    let _c = Client::new(server.survey_url(), "owner").expect("client");
    wait_for_list(&list, &["owner"]);
}

#[test]
fn require_peer_host_lists_only_the_connections_own_address() {
    let server = tcp_server_with(fast_options().require_peer_host(true));
    let list = server.changes();
    let foreign = Client::new(server.survey_url(), "http://10.0.0.8:8080").expect("client");
    let by_name = Client::new(server.survey_url(), "http://localhost:8080").expect("client");
    let own = Client::new(server.survey_url(), "http://127.0.0.1:8080/x").expect("client");
    let bare = Client::new(server.survey_url(), "127.0.0.1:9000").expect("client");
    wait_for_list(&list, &["127.0.0.1:9000", "http://127.0.0.1:8080/x"]);
    // Both impostors are refused at every survey, never listed.
    let s = stats_until(&server, "both impostors refused", |s| {
        s.refused_peer_host >= 4
    });
    assert_eq!(
        server.peers(),
        names(&["127.0.0.1:9000", "http://127.0.0.1:8080/x"]),
        "{s}"
    );
    drop((foreign, by_name, own, bare));
}

#[test]
fn without_options_nothing_is_refused() {
    // The defaults keep the original's openness: any name, any address.
    let server = tcp_server();
    let list = server.changes();
    let _c = Client::new(server.survey_url(), "http://10.0.0.8:8080").expect("client");
    wait_for_list(&list, &["http://10.0.0.8:8080"]);
    let s = server.stats();
    assert_eq!(
        (
            s.refused_network,
            s.refused_connections,
            s.refused_peer_host
        ),
        (0, 0, 0)
    );
}

/// A refused connection closes too: its close must not count as a
/// subscriber or client leaving.
#[test]
fn refused_connections_do_not_disturb_the_counts() {
    let server = tcp_server_with(fast_options().max_connections(2));
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    wait_for_list(&sub.changes(), &[]);
    // One more fits; three are refused.
    let mut flood: Vec<_> = (0..4).map(|_| junk(server.publish_url(), 0x21)).collect();
    stats_until(&server, "3 refused, 2 subscribers", |s| {
        s.refused_connections == 3 && s.subscribers == 2
    });
    // Close them all: only the admitted one leaves (NNG reaps closed
    // connections in order, so the refused ones' removals came first).
    flood.clear();
    let s = stats_until(&server, "the admitted junk gone", |s| s.subscribers < 2);
    assert_eq!((s.subscribers, s.connections), (1, 0), "{s}");
}

#[test]
fn daemon_flags() {
    use common::daemon::{binary, start_server_with};
    let Some(bin) = binary() else { return };
    // Admits loopback, binds names to hosts, and the socket options parse.
    let (server, survey, publish) = start_server_with(
        bin,
        &[
            "--allow-from",
            "10.0.0.0/8",
            "--allow-from",
            "127.0.0.1/32",
            "--require-peer-host",
            "--max-connections",
            "100",
            "--ipc-mode",
            "600",
        ],
    );
    let sub = Subscriber::new(&publish).expect("subscriber");
    let rx = sub.changes();
    let _own = Client::new(&survey, "http://127.0.0.1:1").expect("client");
    let _foreign = Client::new(&survey, "http://10.0.0.8:1").expect("client");
    wait_for_list(&rx, &["http://127.0.0.1:1"]);
    server.wait_stderr("the impostor's refusal logged", patience(), |e| {
        e.contains("refusing \"http://10.0.0.8:1\" from 127.0.0.1")
    });
    drop(server);

    // Refuses loopback on both URLs, logging each refusal.
    let (server, survey, publish) = start_server_with(bin, &["--allow-from", "10.0.0.0/8"]);
    let sub = Subscriber::new(&publish).expect("subscriber");
    let _c = Client::new(&survey, "a").expect("client");
    server.wait_stderr("both refusals logged", patience(), |e| {
        e.contains("refused a survey connection from 127.0.0.1:")
            && e.contains("refused a publish connection from 127.0.0.1:")
    });
    assert_eq!(sub.changes().try_recv(), Err(TryRecvError::Empty));
}
