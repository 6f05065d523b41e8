//! Peers that break the rules: raw NNG sockets answering surveys with
//! garbage, and a publisher sending corrupt lists. The server and the
//! subscribers must only ever list valid names, keep the good peers listed,
//! and carry on.

mod common;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use nng::options::Options as _;
use nng::{Message, PipeEvent, Protocol, RawSocket, Socket};
use nng_discovery::{Client, Subscriber};

/// A name the hostile peer answers with after its garbage, on the same
/// connection: once it is listed, the garbage before it has been read.
const SENTINEL: &str = "hostile-sentinel";
const GOOD: &str = "good";

/// How a hostile peer answers one survey: a list of (header, body) replies,
/// given the survey's header.
type Answer = Box<dyn Fn(&[u8]) -> Vec<(Vec<u8>, Vec<u8>)> + Send>;

/// A raw RESPONDENT dialing a server's survey URL and answering each survey
/// as told.
struct HostilePeer {
    socket: Socket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// One message per survey answered.
    answered: Receiver<()>,
    /// One message per connection that closed.
    removed: Receiver<()>,
}

impl HostilePeer {
    fn start(survey_url: &str, answer: Answer) -> HostilePeer {
        let socket = RawSocket::new(Protocol::Respondent0)
            .expect("a raw RESPONDENT socket")
            .socket;
        let (removed_tx, removed) = unbounded();
        socket
            .pipe_notify(move |_, event| {
                if event == PipeEvent::RemovePost {
                    let _ = removed_tx.send(());
                }
            })
            .expect("pipe_notify");
        socket.dial_async(survey_url).expect("dial the survey URL");
        // NNG 1.4 must not close a socket while a thread may be entering a
        // receive on it (see src/nng/receiver.rs): the thread wakes every 20 ms
        // to look at `stop`, and Drop closes the socket only after joining it.
        socket
            .set_opt::<nng::options::RecvTimeout>(Some(Duration::from_millis(20)))
            .expect("receive timeout");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stop = std::sync::Arc::clone(&stop);
        let (answered_tx, answered) = unbounded();
        let thread_socket = socket.clone();
        let thread = std::thread::spawn(move || loop {
            if thread_stop.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            match thread_socket.recv() {
                Ok(mut survey) => {
                    // The raw respondent's header is the routing backtrace:
                    // the connection's id, then the survey id.
                    let header = survey.as_mut_header().as_slice().to_vec();
                    for (h, body) in answer(&header) {
                        let mut reply = Message::from(&body[..]);
                        reply.as_mut_header().push_back(&h);
                        if let Err((_, nng::Error::Closed)) = thread_socket.send(reply) {
                            return;
                        }
                    }
                    let _ = answered_tx.send(());
                }
                Err(nng::Error::Closed) => return,
                Err(nng::Error::TimedOut) => {}
                Err(e) => panic!("hostile peer: recv failed: {e}"),
            }
        });
        HostilePeer {
            socket,
            stop,
            thread: Some(thread),
            answered,
            removed,
        }
    }

    /// Waits until `n` more surveys have been answered.
    fn wait_answered(&self, n: usize) {
        for i in 0..n {
            if let Err(e) = self.answered.recv_timeout(patience()) {
                panic!("the hostile peer answered only {i} of {n} surveys: {e}");
            }
        }
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let joined = t.join();
            if !std::thread::panicking() {
                joined.expect("the hostile peer's thread panicked");
            }
        }
        self.socket.close();
    }
}

/// Answers each survey with one of `bodies` (the next in turn, same
/// header), then with the sentinel name: two messages, which a raw
/// RESPONDENT always takes. NNG 1.4 queues at most two messages per
/// connection on a raw RESPONDENT and drops the rest silently, so a peer
/// that sends more at once loses the last ones whenever its connection's
/// writer is slow (a busy machine): the sentinel, sent last.
fn one_garbage_then_sentinel(bodies: Vec<Vec<u8>>) -> Answer {
    let next = std::sync::atomic::AtomicUsize::new(0);
    Box::new(move |header| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        vec![
            (header.to_vec(), bodies[i % bodies.len()].clone()),
            (header.to_vec(), SENTINEL.as_bytes().to_vec()),
        ]
    })
}

/// Every list seen on a channel, checked as it arrives.
struct Recorder {
    rx: Receiver<Vec<String>>,
    seen: Vec<Vec<String>>,
    allowed: Vec<String>,
}

impl Recorder {
    fn new(rx: Receiver<Vec<String>>, allowed: &[&str]) -> Recorder {
        Recorder {
            rx,
            seen: Vec::new(),
            allowed: names(allowed),
        }
    }

    fn record(&mut self, list: Vec<String>) {
        assert_sorted_valid(&list);
        for name in &list {
            assert!(
                self.allowed.contains(name),
                "a list holds {name:?}, which no valid peer announced: {list:?} (lists so far: {:?})",
                self.seen
            );
        }
        assert!(
            list.iter().any(|n| n == GOOD),
            "the good client is missing from {list:?}"
        );
        self.seen.push(list);
    }

    /// Receives and checks lists until one equals `want`.
    fn wait_for(&mut self, want: &[&str]) {
        let want = names(want);
        let deadline = Instant::now() + patience();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(list) => {
                    let done = list == want;
                    self.record(list);
                    if done {
                        return;
                    }
                }
                Err(e) => panic!("no list {want:?} ({e}); lists seen: {:?}", self.seen),
            }
        }
    }

    /// Checks whatever arrived meanwhile.
    fn drain(&mut self) {
        while let Ok(list) = self.rx.try_recv() {
            self.record(list);
        }
    }
}

/// Runs one hostile scenario: a server with a good client and a subscriber,
/// then a hostile peer answering each survey with one of `bodies` in turn
/// and the sentinel, until each body was sent at least once.
fn hostile_answers(bodies: Vec<Vec<u8>>) {
    let rounds = bodies.len().max(4);
    hostile_answers_with(one_garbage_then_sentinel(bodies), rounds);
}

/// Runs one hostile scenario with a peer answering as `answer` says, for at
/// least `rounds` surveys; it must end each answer with the sentinel.
fn hostile_answers_with(answer: Answer, rounds: usize) {
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let good = Client::new(server.survey_url(), GOOD).expect("good client");
    wait_for_list(&server.changes(), &[GOOD]);
    wait_for_list(&sub.changes(), &[GOOD]);

    let allowed = [GOOD, SENTINEL];
    let mut on_server = Recorder::new(server.changes(), &allowed);
    let mut on_sub = Recorder::new(sub.changes(), &allowed);
    let hostile = HostilePeer::start(server.survey_url(), answer);
    on_server.wait_for(&[GOOD, SENTINEL]);
    on_sub.wait_for(&[GOOD, SENTINEL]);
    // Several more heartbeat rounds of garbage.
    hostile.wait_answered(rounds);
    on_server.drain();
    on_sub.drain();
    assert_eq!(server.peers(), names(&[GOOD, SENTINEL]));
    assert!(
        hostile.removed.try_recv().is_err(),
        "the server dropped the hostile peer's connection over a small answer"
    );

    // It leaves; the server is alive and well.
    drop(hostile);
    on_server.wait_for(&[GOOD]);
    on_sub.wait_for(&[GOOD]);
    let _later = Client::new(server.survey_url(), "later").expect("a later client");
    wait_for_list(&sub.changes(), &[GOOD, "later"]);
    assert_eq!(server.peers(), names(&[GOOD, "later"]));
    drop(good);
    wait_for_list(&sub.changes(), &["later"]);
}

#[test]
fn answer_with_invalid_utf8() {
    hostile_answers(vec![
        b"\xff\xfe".to_vec(),
        b"ok\xc3".to_vec(),
        b"\xc3\x28".to_vec(),
        b"\xed\xa0\x80".to_vec(), // an encoded surrogate
    ]);
}

#[test]
fn answer_with_the_separator() {
    hostile_answers(vec![
        b"left|right".to_vec(),
        b"|".to_vec(),
        b"good|".to_vec(),
        b"|hostile-sentinel".to_vec(),
    ]);
}

#[test]
fn answer_with_an_empty_body() {
    hostile_answers(vec![Vec::new(), Vec::new()]);
}

#[test]
fn answer_with_control_characters() {
    hostile_answers(vec![
        b"line\nbreak".to_vec(),
        b"nul\0".to_vec(),
        b"\x1b[31mred".to_vec(),
        b"cr\r".to_vec(),
        "c1\u{85}".as_bytes().to_vec(),
        b"\x7f".to_vec(),
    ]);
}

#[test]
fn answer_over_the_name_limit() {
    // Over the 1024-byte name limit, small enough for the server to read.
    hostile_answers(vec![vec![b'a'; 1500], vec![b'b'; 1025]]);
}

/// Replaces the survey id (the header's last 4 bytes) with `id(old)`.
fn with_survey_id(header: &[u8], id: impl Fn(u32) -> u32) -> Vec<u8> {
    let mut h = header.to_vec();
    let n = h.len();
    assert!(
        n >= 8,
        "a raw respondent's header is the pipe id, then the survey id: {h:?}"
    );
    let old = u32::from_be_bytes([h[n - 4], h[n - 3], h[n - 2], h[n - 1]]);
    h[n - 4..].copy_from_slice(&id(old).to_be_bytes());
    h
}

#[test]
fn answer_with_a_wrong_survey_id() {
    // Well-framed answers naming surveys the server never sent (or sent
    // long ago): ignored. The sentinel, answering the real survey, shows
    // they were read first.
    // One wrong id and the sentinel per survey (see
    // `one_garbage_then_sentinel`), the two kinds in turn.
    let next = std::sync::atomic::AtomicUsize::new(0);
    hostile_answers_with(
        Box::new(move |header| {
            let wrong = if next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 0 {
                // Far ahead of any survey sent, top bit still set.
                (
                    with_survey_id(header, |id| (id ^ 0x2000_0000) | 0x8000_0000),
                    b"wrong-id".to_vec(),
                )
            } else {
                // Far behind: thousands of surveys ago.
                (
                    with_survey_id(header, |id| {
                        (id.wrapping_sub(5000) & 0x7fff_ffff) | 0x8000_0000
                    }),
                    b"old-id".to_vec(),
                )
            };
            vec![wrong, (header.to_vec(), SENTINEL.as_bytes().to_vec())]
        }),
        4,
    );
}

#[test]
fn answer_with_a_malformed_backtrace_gets_the_peer_kicked() {
    // Without a word carrying the top bit, NNG cannot find where the
    // backtrace ends and closes that connection. The server lists nothing
    // from it and carries on.
    for malformed in [0u8, 1] {
        let server = tcp_server();
        let sub = Subscriber::new(server.publish_url()).expect("subscriber");
        let _good = Client::new(server.survey_url(), GOOD).expect("good client");
        wait_for_list(&server.changes(), &[GOOD]);
        wait_for_list(&sub.changes(), &[GOOD]);
        let mut on_server = Recorder::new(server.changes(), &[GOOD]);
        let mut on_sub = Recorder::new(sub.changes(), &[GOOD]);
        let answer: Answer = Box::new(move |header| {
            let bad_header = if malformed == 0 {
                // The survey id with its top bit cleared.
                with_survey_id(header, |id| id & 0x7fff_ffff)
            } else {
                // The connection id alone: no survey id at all.
                header[..header.len() - 4].to_vec()
            };
            vec![
                (bad_header, b"no-id".to_vec()),
                // On the same connection, after the malformed answer.
                (header.to_vec(), SENTINEL.as_bytes().to_vec()),
            ]
        });
        let hostile = HostilePeer::start(server.survey_url(), answer);
        for i in 0..3 {
            if let Err(e) = hostile.removed.recv_timeout(patience()) {
                panic!("the server kept a peer sending malformed backtraces ({i} closes): {e}");
            }
        }
        drop(hostile);
        on_server.drain();
        on_sub.drain();
        assert_eq!(server.peers(), names(&[GOOD]));
        let _later = Client::new(server.survey_url(), "later").expect("a later client");
        let mut on_sub = Recorder::new(sub.changes(), &[GOOD, "later"]);
        on_sub.wait_for(&[GOOD, "later"]);
    }
}

#[test]
fn huge_answer_closes_that_connection_only() {
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let _good = Client::new(server.survey_url(), GOOD).expect("good client");
    wait_for_list(&server.changes(), &[GOOD]);
    wait_for_list(&sub.changes(), &[GOOD]);
    let mut on_server = Recorder::new(server.changes(), &[GOOD]);
    let mut on_sub = Recorder::new(sub.changes(), &[GOOD]);

    let huge = vec![b'h'; 1 << 20];
    let answer: Answer = Box::new(move |header| {
        vec![
            (header.to_vec(), huge.clone()),
            // Would be listed if the connection survived the huge answer.
            (header.to_vec(), SENTINEL.as_bytes().to_vec()),
        ]
    });
    let hostile = HostilePeer::start(server.survey_url(), answer);
    // The server closes the connection; the peer redials, is surveyed
    // again at once, answers hugely again, and is closed again.
    for i in 0..3 {
        if let Err(e) = hostile.removed.recv_timeout(patience()) {
            panic!(
                "the server did not close the connection after a 1 MiB answer \
                 ({i} closes so far): {e}"
            );
        }
    }
    drop(hostile);
    on_server.drain();
    on_sub.drain();
    assert_eq!(server.peers(), names(&[GOOD]));

    // Alive and well.
    let _later = Client::new(server.survey_url(), "later").expect("a later client");
    let mut on_sub = Recorder::new(sub.changes(), &[GOOD, "later"]);
    on_sub.wait_for(&[GOOD, "later"]);
}

#[test]
fn many_hostile_peers_at_once() {
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let _good = Client::new(server.survey_url(), GOOD).expect("good client");
    wait_for_list(&sub.changes(), &[GOOD]);
    let mut on_sub = Recorder::new(sub.changes(), &[GOOD, SENTINEL]);
    let mut on_server = Recorder::new(server.changes(), &[GOOD, SENTINEL]);
    let bodies: Vec<Vec<u8>> = vec![
        b"\xff".to_vec(),
        b"a|b".to_vec(),
        Vec::new(),
        b"\n".to_vec(),
        vec![b'z'; 1500],
    ];
    let peers: Vec<HostilePeer> = (0..8)
        .map(|_| {
            HostilePeer::start(
                server.survey_url(),
                one_garbage_then_sentinel(bodies.clone()),
            )
        })
        .collect();
    on_server.wait_for(&[GOOD, SENTINEL]);
    on_sub.wait_for(&[GOOD, SENTINEL]);
    for p in &peers {
        p.wait_answered(3);
    }
    // A connection holds the name once the server has taken an answer on
    // it: wait for a heartbeat round with an answer from each of the nine
    // (the good client and the eight; garbage is not counted). A peer's
    // having sent its answers is not enough: on a loaded machine the
    // server may not have read them yet.
    stats_until(
        &server,
        "a heartbeat round takes an answer on all nine connections",
        |s| s.answers_last_round == 9,
    );
    on_server.drain();
    on_sub.drain();
    assert_eq!(server.peers(), names(&[GOOD, SENTINEL]));
    // The sentinel stays while any of them is connected, leaves with the last.
    let mut peers = peers;
    while peers.len() > 1 {
        drop(peers.pop());
    }
    on_server.drain();
    assert_eq!(server.peers(), names(&[GOOD, SENTINEL]));
    drop(peers);
    on_sub.wait_for(&[GOOD]);
    on_server.wait_for(&[GOOD]);
}

// ---------------------------------------------------------------------------
// A publisher sending corrupt lists.
// ---------------------------------------------------------------------------

/// Sends `garbage` then `valid` until the subscriber delivers a list (the
/// first sends may go out before the connection is attached), and returns
/// every list delivered meanwhile.
fn publish_until_delivered(
    publisher: &Socket,
    garbage: &[Vec<u8>],
    valid: &[u8],
    rx: &Receiver<Vec<String>>,
) -> Vec<Vec<String>> {
    let deadline = Instant::now() + patience();
    let mut delivered = Vec::new();
    while Instant::now() < deadline {
        for g in garbage {
            publisher
                .send(Message::from(&g[..]))
                .map_err(|(_, e)| e)
                .expect("publish garbage");
        }
        publisher
            .send(Message::from(valid))
            .map_err(|(_, e)| e)
            .expect("publish a valid list");
        match rx.recv_timeout(slow(Duration::from_millis(300))) {
            Ok(list) => {
                delivered.push(list);
                // Anything else already on its way.
                match rx.recv_timeout(slow(Duration::from_millis(300))) {
                    Ok(list) => delivered.push(list),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(e) => panic!("subscriber channel: {e}"),
                }
                return delivered;
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(e) => panic!("subscriber channel: {e}"),
        }
    }
    panic!("the valid list {valid:?} was never delivered");
}

#[test]
fn corrupt_published_lists_are_never_delivered() {
    let url = ipc_url("rawpub");
    let publisher = Socket::new(Protocol::Pub0).expect("a PUB socket");
    let (added_tx, added) = unbounded();
    publisher
        .pipe_notify(move |_, event| {
            if event == PipeEvent::AddPost {
                let _ = added_tx.send(());
            }
        })
        .expect("pipe_notify");
    publisher.listen(&url).expect("listen");

    let sub = Subscriber::new(&url).expect("subscriber");
    let rx = sub.changes();
    added
        .recv_timeout(patience())
        .expect("the subscriber connects");

    let garbage: Vec<Vec<u8>> = vec![
        b"\xff\xfe".to_vec(),
        b"alpha|\xc3\x28".to_vec(),
        b"a||b".to_vec(),
        b"|".to_vec(),
        b"a|".to_vec(),
        b"|a".to_vec(),
        b"alpha|line\nbreak".to_vec(),
        b"new\nline".to_vec(),
        b"nul\0".to_vec(),
        {
            let mut v = b"alpha|".to_vec();
            v.extend(std::iter::repeat(b'x').take(1500));
            v
        },
    ];

    // Lists arrive unsorted from the Go original: they are sorted.
    let got = publish_until_delivered(&publisher, &garbage, b"beta|alpha", &rx);
    assert_eq!(got, vec![names(&["alpha", "beta"])], "only the valid list");

    let got = publish_until_delivered(&publisher, &garbage, b"gamma", &rx);
    assert_eq!(got, vec![names(&["gamma"])], "only the valid list");

    // The empty body is the valid empty list.
    let got = publish_until_delivered(&publisher, &garbage, b"", &rx);
    assert_eq!(got, vec![Vec::<String>::new()], "only the empty list");

    // Duplicates from a sloppy publisher are removed.
    let got = publish_until_delivered(&publisher, &garbage, b"d|c|d", &rx);
    assert_eq!(got, vec![names(&["c", "d"])]);

    drop(sub);
    publisher.close();
}

#[test]
fn huge_published_list_is_refused_without_harm() {
    // Larger than the subscriber's limit (16 MiB): NNG closes that
    // connection, the subscriber redials and later lists still arrive.
    let url = ipc_url("hugepub");
    let publisher = Socket::new(Protocol::Pub0).expect("a PUB socket");
    let (events_tx, events) = unbounded();
    publisher
        .pipe_notify(move |_, event| {
            let _ = events_tx.send(event);
        })
        .expect("pipe_notify");
    publisher.listen(&url).expect("listen");
    let sub = Subscriber::new(&url).expect("subscriber");
    let rx = sub.changes();

    // Counts the publisher's connection events until at least `added`
    // connections have come and `removed` gone. Counted, not matched in
    // order: around a reconnect NNG may report the new connection before
    // the old one's removal.
    let (mut added, mut removed) = (0, 0);
    let mut wait_events = |want_added: usize, want_removed: usize| {
        let deadline = Instant::now() + patience();
        while added < want_added || removed < want_removed {
            match events.recv_deadline(deadline) {
                Ok(PipeEvent::AddPost) => added += 1,
                Ok(PipeEvent::RemovePost) => removed += 1,
                Ok(_) => {}
                Err(e) => panic!(
                    "the publisher saw {added} connections come and {removed} go, \
                     not {want_added} and {want_removed}: {e}"
                ),
            }
        }
    };
    wait_events(1, 0);
    let huge = vec![b'q'; nng_discovery::MAX_LIST_BYTES + 1];
    publisher
        .send(Message::from(&huge[..]))
        .map_err(|(_, e)| e)
        .expect("publish the huge list");
    // The subscriber's connection closes, and it comes back.
    wait_events(2, 1);
    let got = publish_until_delivered(&publisher, &[], b"after", &rx);
    assert_eq!(got, vec![names(&["after"])]);
}

/// A server must not be disturbed by a client that connects with the wrong
/// protocol: a raw SURVEYOR or a SUB dialing the survey URL.
#[test]
fn wrong_protocol_peers_are_ignored() {
    let server = tcp_server();
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let _good = Client::new(server.survey_url(), GOOD).expect("good client");
    wait_for_list(&sub.changes(), &[GOOD]);
    let mut on_sub = Recorder::new(sub.changes(), &[GOOD, "later"]);

    // A SUBSCRIBER on the survey URL and a RESPONDENT on the publish URL:
    // NNG refuses the handshakes.
    let wrong_sub = Subscriber::new(server.survey_url()).expect("subscriber");
    let wrong_client = Client::new(server.publish_url(), "wrong").expect("client");
    let _later = Client::new(server.survey_url(), "later").expect("a later client");
    on_sub.wait_for(&[GOOD, "later"]);
    assert_quiet(&wrong_sub.changes(), poll() * 3);
    on_sub.drain();
    assert_eq!(server.peers(), names(&[GOOD, "later"]));
    // The refused connections on the publish URL are not counted as
    // subscribers leaving.
    assert_eq!(server.stats().subscribers, 1);
    drop(wrong_client);
    drop(wrong_sub);
}

// ---------------------------------------------------------------------------
// Connections that close before the SP handshake (port scanners, health
// checks, a second server probing whether the address is in use).
// ---------------------------------------------------------------------------

/// After bare connections that close at once, the server still accepts
/// clients and subscribers on both URLs.
fn survives_bare_connections<F: Fn(&str)>(server: &nng_discovery::Server, connect_and_close: F) {
    for _ in 0..3 {
        connect_and_close(server.survey_url());
        connect_and_close(server.publish_url());
    }
    let sub = Subscriber::new(server.publish_url()).expect("subscriber");
    let _c = Client::new(server.survey_url(), GOOD).expect("client");
    wait_for_list(&sub.changes(), &[GOOD]);
    assert_eq!(server.peers(), names(&[GOOD]));
}

#[test]
fn bare_tcp_connections_do_not_stop_the_listeners() {
    let server = tcp_server();
    survives_bare_connections(&server, |url| {
        let addr = url.trim_start_matches("tcp://");
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        drop(stream);
    });
}

// Known upstream bug, not fixed here: in NNG 1.4 an IPC listener whose
// connection closes before the SP handshake stops accepting for good
// (`ipc_pipe_neg_cb` ends the accept with NNG_ECLOSED, which
// `listener_accept_cb` in core/listener.c takes as "stop"). TCP listeners
// are not affected (the test above). docs/INTERNALS.md says so ("NNG 1.4 traps"); run it with
// `cargo test --test hostile -- --ignored` to see it fail.
#[test]
#[ignore = "NNG 1.4 bug: an IPC listener stops accepting after a connection closes before the SP handshake"]
fn bare_ipc_connections_do_not_stop_the_listeners() {
    let (s, p) = (ipc_url("bare-s"), ipc_url("bare-p"));
    let server = nng_discovery::Server::new(&s, &p, fast_options()).expect("server");
    survives_bare_connections(&server, |url| {
        let path = url.trim_start_matches("ipc://");
        let stream = std::os::unix::net::UnixStream::connect(path).expect("connect");
        drop(stream);
    });
}
