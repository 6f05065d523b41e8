//! A groupcache-style peer picker: every peer decides on its own which peer
//! owns a key, from nothing but the current list of peers, and they all
//! agree once their lists have converged.
//!
//! ```text
//! cargo run --example hash_ring
//! RUST_LOG=debug cargo run --example hash_ring
//! ```
//!
//! Ownership is by rendezvous (highest-random-weight) hashing: a key belongs
//! to the peer for which `hash(peer, key)` is highest. When a peer joins it
//! takes over only the keys it now wins, about 1/N of them, and when a peer
//! leaves only its own keys move, spread over the others. Nothing else
//! moves, which is what keeps a distributed cache warm through membership
//! changes.
//!
//! The example runs a server and five peers (each a `Client` with a
//! subscription, as separate processes on separate hosts would be) in one
//! process, then adds a sixth peer and removes one, and checks after each
//! change that every peer computes the same owner for each of 10,000 keys,
//! and that the keys that moved are exactly the ones that had to. It exits
//! with status 1 if any check fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nng_discovery::{Client, Options, Server};

const KEYS: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// FNV-1a, 64-bit: fixed, simple and the same on every platform and Rust
/// version (unlike `DefaultHasher`, whose algorithm may change).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A final avalanche (MurmurHash3's fmix64): FNV's last bytes mix poorly
/// into the high bits that decide the comparisons below.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The owner of `key` among `peers`: the peer with the highest weight
/// (ties, which practically never happen, go to the smallest name).
fn owner<'a>(peers: &'a [String], key: &str) -> Option<&'a str> {
    peers
        .iter()
        .map(|p| (mix(fnv1a(&[p.as_bytes(), key.as_bytes()])), p))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
        .map(|(_, p)| p.as_str())
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i}")).collect()
}

/// One peer: its registration, its own view of the membership, and the
/// owner it computes for each key.
struct Peer {
    name: String,
    client: Client,
    lists: Receiver<Vec<String>>,
    view: Vec<String>,
}

impl Peer {
    fn join(server: &Server, name: &str) -> Result<Peer, String> {
        let client = Client::with_subscription(server.survey_url(), server.publish_url(), name)
            .map_err(|e| e.to_string())?;
        let lists = client.peers().map_err(|e| e.to_string())?;
        Ok(Peer {
            name: name.to_owned(),
            client,
            lists,
            view: Vec::new(),
        })
    }

    /// Takes lists until this peer's view is `expected`.
    fn converge(&mut self, expected: &[String], deadline: Instant) -> Result<(), String> {
        while self.view != expected {
            self.view = self.lists.recv_deadline(deadline).map_err(|_| {
                format!(
                    "{}: view {:?} never became {expected:?}",
                    self.name, self.view
                )
            })?;
        }
        Ok(())
    }

    fn owners(&self, keys: &[String]) -> Vec<String> {
        keys.iter()
            .map(|k| owner(&self.view, k).unwrap_or_default().to_owned())
            .collect()
    }
}

/// Waits until every peer's view is the same list of all their names, then
/// checks that all of them compute the same owners and returns those.
fn converged(peers: &mut [Peer], keys: &[String]) -> Result<Vec<String>, String> {
    let mut expected: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    expected.sort();
    let started = Instant::now();
    let deadline = started + TIMEOUT;
    for peer in peers.iter_mut() {
        peer.converge(&expected, deadline)?;
    }
    let reference = peers[0].owners(keys);
    for peer in &peers[1..] {
        let theirs = peer.owners(keys);
        let disagreements = reference
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .count();
        if disagreements > 0 {
            return Err(format!(
                "{} disagrees with {} on {disagreements} keys",
                peer.name, peers[0].name
            ));
        }
    }
    println!(
        "  all {} peers see the same {} names (converged in {:?}) and agree on all {KEYS} owners",
        peers.len(),
        expected.len(),
        started.elapsed()
    );
    Ok(reference)
}

fn print_shares(owners: &[String]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in owners {
        *counts.entry(o).or_default() += 1;
    }
    for (peer, n) in counts {
        println!("    {peer:<24} {n:>5} keys");
    }
}

/// Checks a change of membership: the moved keys must be exactly those
/// that `must_move` says, and about `expected_share` of all keys.
fn check_moves(
    before: &[String],
    after: &[String],
    expected_share: f64,
    must_move: impl Fn(&str, &str) -> bool,
) -> Result<(), String> {
    let mut moved = 0;
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        let did = b != a;
        if did != must_move(b, a) {
            return Err(format!("key {i} went from {b} to {a}, which it should not"));
        }
        moved += usize::from(did);
    }
    let share = moved as f64 / KEYS as f64;
    println!(
        "  {moved} of {KEYS} keys moved ({:.1}%; 1/N is {:.1}%)",
        share * 100.0,
        expected_share * 100.0
    );
    // Rendezvous hashing moves 1/N of the keys on average; 10,000 keys keep
    // the deviation small, so a factor of 1.5 either way is ample.
    if share < expected_share / 1.5 || share > expected_share * 1.5 {
        return Err(format!(
            "{:.1}% of the keys moved, expected about {:.1}%",
            share * 100.0,
            expected_share * 100.0
        ));
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let options = Options::default()
        .poll_interval(Duration::from_secs(1))
        .survey_time(Duration::from_millis(200));
    let server = Server::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", options)
        .map_err(|e| e.to_string())?;
    println!(
        "server: survey {}, publish {}",
        server.survey_url(),
        server.publish_url()
    );
    let keys = keys();

    let mut peers = Vec::new();
    for i in 1..=5 {
        peers.push(Peer::join(&server, &format!("http://10.0.0.{i}:8080"))?);
    }
    println!("\n5 peers:");
    let five = converged(&mut peers, &keys)?;
    print_shares(&five);

    let newcomer = "http://10.0.0.6:8080";
    println!("\n{newcomer} joins:");
    peers.push(Peer::join(&server, newcomer)?);
    let six = converged(&mut peers, &keys)?;
    print_shares(&six);
    // Only keys the newcomer now wins move, and all of them move to it.
    check_moves(&five, &six, 1.0 / 6.0, |_, to| to == newcomer)?;

    let leaving = peers.remove(1);
    let gone = leaving.name.clone();
    println!("\n{gone} leaves:");
    leaving.client.shutdown();
    let after = converged(&mut peers, &keys)?;
    print_shares(&after);
    // Only the keys it owned move, spread over the others.
    check_moves(&six, &after, 1.0 / 6.0, |from, _| from == gone)?;

    for peer in peers {
        peer.client.shutdown();
    }
    server.shutdown();
    println!("\nok: every peer agreed on every owner, and only the keys that had to move moved");
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = run() {
        eprintln!("hash_ring: FAILED: {e}");
        std::process::exit(1);
    }
}
