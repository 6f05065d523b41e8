//! Join by announcement: a client sends its name unasked on each new survey
//! connection, and the server lists it with no join survey; peers that do
//! not announce are surveyed as before.
//!
//! The servers here never run a heartbeat round after their first (poll an
//! hour away), so a name listed within `patience()` came from an
//! announcement or from a join survey, and `Stats::surveys_sent` tells
//! which. Where a test asserts that no join survey went out, the server's
//! announcement grace is an hour too: the outcome then does not depend on
//! how fast a busy machine delivers the announcement.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nng::options::{Options as _, RecvTimeout};
use nng::{Protocol, RawSocket, Socket};
use nng_discovery::{Client, Options, Server, Stats};

use common::{stats_until, wait_for_list, NEVER};

/// No heartbeat round after the first, no republish; the announcement
/// grace as given.
fn quiet_options(grace: Duration) -> Options {
    common::fast_options()
        .poll_interval(NEVER)
        .republish_interval(NEVER)
        .announce_grace(grace)
}

/// A server with [`quiet_options`], once its first heartbeat round (the
/// one survey it sends by itself) has ended.
fn quiet_server(grace: Duration) -> Server {
    settled(common::tcp_server_with(quiet_options(grace)))
}

fn settled(server: Server) -> Server {
    stats_until(&server, "the first round ends", |s| s.rounds >= 1);
    server
}

/// A survey-only peer: a raw NNG RESPONDENT that answers every survey with
/// its name and never announces (as the Go original, nngcat and pynng
/// peers do).
struct SurveyOnlyPeer {
    socket: Socket,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SurveyOnlyPeer {
    fn start(url: &str, name: &str) -> SurveyOnlyPeer {
        let socket = RawSocket::new(Protocol::Respondent0)
            .expect("a raw RESPONDENT socket")
            .socket;
        // The thread looks at `stop` between receives, so it is out of
        // NNG before the socket closes (NNG 1.4 must not close a socket a
        // thread is entering a receive on).
        socket
            .set_opt::<RecvTimeout>(Some(Duration::from_millis(20)))
            .expect("a receive timeout");
        socket.dial_async(url).expect("dialing the server");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, stop, name) = (socket.clone(), Arc::clone(&stop), name.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv() {
                        Ok(mut survey) => {
                            // The header (connection, survey id) routes it.
                            survey.clear();
                            survey.push_back(name.as_bytes());
                            let _ = socket.send(survey);
                        }
                        Err(nng::Error::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        SurveyOnlyPeer {
            socket,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SurveyOnlyPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.socket.close();
    }
}

fn stats(server: &Server) -> Stats {
    server.stats()
}

#[test]
fn our_client_is_listed_with_no_join_survey() {
    let server = quiet_server(NEVER);
    let changes = server.changes();
    let before = stats(&server);
    let a = Client::new(server.survey_url(), "http://10.0.0.1:1").expect("client");
    wait_for_list(&changes, &["http://10.0.0.1:1"]);
    let b = Client::new(server.survey_url(), "http://10.0.0.2:1").expect("client");
    wait_for_list(&changes, &["http://10.0.0.1:1", "http://10.0.0.2:1"]);
    let after = stats(&server);
    assert_eq!(after.surveys_sent, before.surveys_sent, "{after}");
    assert_eq!(after.announcements, 2, "{after}");
    assert_eq!(after.answers, before.answers + 2, "{after}");
    // A client still answers surveys: leaving stays as fast as ever.
    a.shutdown();
    wait_for_list(&changes, &["http://10.0.0.2:1"]);
    b.shutdown();
    wait_for_list(&changes, &[]);
}

#[test]
fn a_survey_only_peer_is_still_listed_beside_announcing_clients() {
    // The default grace: a peer that does not announce is surveyed 5 ms
    // after it connects.
    let server = quiet_server(Options::default().server_settings().unwrap().announce_grace);
    let changes = server.changes();
    let before = stats(&server);
    let client = Client::new(server.survey_url(), "announcing").expect("client");
    let peer = SurveyOnlyPeer::start(server.survey_url(), "survey-only");
    wait_for_list(&changes, &["announcing", "survey-only"]);
    let after = stats(&server);
    assert!(after.surveys_sent > before.surveys_sent, "{after}");
    assert!(after.announcements >= 1, "{after}");
    drop(peer);
    wait_for_list(&changes, &["announcing"]);
    client.shutdown();
}

#[test]
fn announcements_pass_the_same_checks_as_answers() {
    // max_peers 1: the second name is refused, announced or not, and its
    // connection is not surveyed for it either.
    let server = settled(common::tcp_server_with(quiet_options(NEVER).max_peers(1)));
    let changes = server.changes();
    let first = Client::new(server.survey_url(), "first").expect("client");
    wait_for_list(&changes, &["first"]);
    let before = stats(&server);
    let second = Client::new(server.survey_url(), "second").expect("client");
    let s = stats_until(&server, "the second announcement is refused", |s| {
        s.refused_full > before.refused_full
    });
    assert_eq!(s.announcements, 2, "{s}");
    assert_eq!(s.surveys_sent, before.surveys_sent, "{s}");
    assert_eq!(server.peers(), ["first"]);
    drop((first, second));
}

#[test]
fn a_client_announces_again_after_its_server_restarts() {
    let (survey_url, publish_url) = common::reserved_tcp_urls();
    let start = || {
        settled(
            Server::new(&survey_url, &publish_url, quiet_options(NEVER))
                .unwrap_or_else(|e| panic!("starting a server on {survey_url}: {e}")),
        )
    };
    let server = start();
    let changes = server.changes();
    let client = Client::new(&survey_url, "redialer").expect("client");
    wait_for_list(&changes, &["redialer"]);
    assert_eq!(stats(&server).announcements, 1);
    server.shutdown();

    // The client redials the new server and announces on that connection.
    // Listed with no survey: its first round is over before the client is
    // back (which takes `reconnect_min` at least), and the grace is an hour.
    let server = start();
    let changes = server.changes();
    let surveys = stats(&server).surveys_sent;
    wait_for_list(&changes, &["redialer"]);
    let s = stats_until(&server, "one announcement", |s| s.announcements >= 1);
    assert_eq!(s.announcements, 1, "{s}");
    assert_eq!(s.surveys_sent, surveys, "{s}");
    client.shutdown();
}

#[test]
fn a_client_announces_again_when_available_again() {
    let server = quiet_server(NEVER);
    let changes = server.changes();
    let before = stats(&server);
    let client = Client::new(server.survey_url(), "flip").expect("client");
    wait_for_list(&changes, &["flip"]);
    client.set_available(false);
    wait_for_list(&changes, &[]);
    // Unavailable: no connection, nothing to announce on.
    assert_eq!(stats(&server).announcements, 1);
    client.set_available(true);
    wait_for_list(&changes, &["flip"]);
    let s = stats(&server);
    assert_eq!(s.announcements, 2, "{s}");
    assert_eq!(s.surveys_sent, before.surveys_sent, "{s}");
    client.shutdown();
}

#[test]
fn a_client_of_several_servers_announces_to_each() {
    let servers = [quiet_server(NEVER), quiet_server(NEVER)];
    let urls: Vec<&str> = servers.iter().map(Server::survey_url).collect();
    let before: Vec<u64> = servers.iter().map(|s| s.stats().surveys_sent).collect();
    let client = Client::new(urls.as_slice(), "everywhere").expect("client");
    for (server, surveys) in servers.iter().zip(before) {
        wait_for_list(&server.changes(), &["everywhere"]);
        let s = stats(server);
        assert_eq!(s.announcements, 1, "{s}");
        assert_eq!(s.surveys_sent, surveys, "{s}");
    }
    client.shutdown();
}
