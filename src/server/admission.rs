//! Who may connect to a server and what a connection may list: allowed
//! networks (CIDR), a bound on connections, and names bound to the
//! connection's address.
//!
//! The decisions are pure functions and a plain state machine ([`Cidr`],
//! [`Gate`], [`check_peer_host`]); `watch` (crate-internal) hooks a [`Gate`] into a socket's
//! pipe events, and is used for every socket a server listens with.
//!
//! Connections without an IP address (`ipc://`, `inproc://`) are never
//! refused by network and never checked by peer host: they can only come
//! from the same machine (IPC, guarded by the socket file's mode) or the same
//! process (inproc). They do count towards the connection bound.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use nng::options::{Options as _, RemAddr};
use nng::{Pipe, PipeEvent, Socket, SocketAddr};
use parking_lot::Mutex;

use crate::cidr::canonical;
pub use crate::cidr::{Cidr, CidrError};
use crate::error::{Error, Result};

/// Where a connection comes from, as far as admission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A TCP connection from this address.
    Ip(IpAddr),
    /// An `ipc://` or `inproc://` connection: no IP address.
    Local,
    /// The address could not be read: treated like a foreign address when
    /// networks are restricted.
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Ip(ip) => ip.fmt(f),
            Origin::Local => f.write_str("a local (ipc or inproc) peer"),
            Origin::Unknown => f.write_str("an unknown address"),
        }
    }
}

/// Whether the `n`th refusal of a kind (from 1) is logged: the first 10,
/// then every 1,000th, so a flood of connections cannot flood the log.
pub fn worth_logging(n: u64) -> bool {
    n <= 10 || n % 1000 == 0
}

/// What the gate decided about a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it join.
    Admit,
    /// Its address is in none of the allowed networks.
    RefuseNetwork,
    /// The server already holds `max_connections` connections.
    RefuseFull,
}

/// Whether a connection from `origin` may join, given the allowed networks
/// (empty: every address).
pub fn network_allows(nets: &[Cidr], origin: Origin) -> bool {
    match origin {
        Origin::Local => true,
        _ if nets.is_empty() => true,
        Origin::Ip(ip) => nets.iter().any(|n| n.contains(ip)),
        Origin::Unknown => false,
    }
}

/// The admission state of one server, shared by all its sockets: the open
/// connections it admitted (with their origin), the bound, and the
/// refusal counters. A plain state machine; the server drives it from NNG's
/// pipe events.
///
/// `K` identifies a connection: NNG's `Pipe` in the server, any number in
/// tests.
#[derive(Debug)]
pub struct Gate<K> {
    nets: Vec<Cidr>,
    max_connections: usize,
    open: HashMap<K, Origin>,
    refused_network: u64,
    refused_full: u64,
}

impl<K: Hash + Eq> Gate<K> {
    /// A gate admitting connections from `nets` (all addresses if empty),
    /// at most `max_connections` at once.
    pub fn new(nets: Vec<Cidr>, max_connections: usize) -> Gate<K> {
        Gate {
            nets,
            max_connections,
            open: HashMap::new(),
            refused_network: 0,
            refused_full: 0,
        }
    }

    /// A new connection `id` from `origin`: admitted (and counted open) or
    /// refused (and counted refused).
    pub fn offer(&mut self, id: K, origin: Origin) -> Verdict {
        if !network_allows(&self.nets, origin) {
            self.refused_network += 1;
            Verdict::RefuseNetwork
        } else if self.open.len() >= self.max_connections {
            self.refused_full += 1;
            Verdict::RefuseFull
        } else {
            self.open.insert(id, origin);
            Verdict::Admit
        }
    }

    /// Connection `id` closed: returns whether it had been admitted (a
    /// refused connection closes too, and must not be reported as a
    /// connection that left).
    pub fn closed(&mut self, id: K) -> bool {
        self.open.remove(&id).is_some()
    }

    /// Where admitted connection `id` comes from; `None` if it is not open.
    pub fn origin(&self, id: K) -> Option<Origin> {
        self.open.get(&id).copied()
    }

    /// Connections open now (admitted, not yet closed).
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Connections refused because of their address, so far.
    pub fn refused_network(&self) -> u64 {
        self.refused_network
    }

    /// Connections refused because `max_connections` were open, so far.
    pub fn refused_full(&self) -> u64 {
        self.refused_full
    }
}

/// A [`Gate`] shared between NNG's callback threads and the server.
pub(crate) type SharedGate = Arc<Mutex<Gate<Pipe>>>;

/// Where a pipe comes from, read with `NNG_OPT_REMADDR` (which NNG 1.4
/// answers in the add-pre event: the transport connection is made).
pub(crate) fn origin_of(pipe: Pipe) -> Origin {
    match pipe.get_opt::<RemAddr>() {
        Ok(SocketAddr::Inet(a)) => Origin::Ip(IpAddr::V4(*a.ip())),
        Ok(SocketAddr::Inet6(a)) => Origin::Ip(canonical(IpAddr::V6(*a.ip()))),
        Ok(SocketAddr::Ipc(_)) | Ok(SocketAddr::InProc(_)) => Origin::Local,
        Ok(_) | Err(_) => Origin::Unknown,
    }
}

/// Installs `socket`'s pipe callback: every new connection passes `gate`
/// first (in NNG's add-pre event, where closing the *pipe* refuses it before
/// it joins the socket); admitted ones are handed to `on_event` as
/// `AddPost` and, when they close, `RemovePost`. Refused connections never
/// reach `on_event`. `what` names the socket in log lines.
///
/// Like every pipe callback here, `on_event` runs on NNG's threads and must
/// only hand the event over (never close a socket).
pub(crate) fn watch<F>(
    socket: &Socket,
    gate: SharedGate,
    what: &'static str,
    on_event: F,
) -> Result<()>
where
    F: Fn(Pipe, PipeEvent) + Send + Sync + 'static,
{
    socket
        .pipe_notify(move |pipe, event| match event {
            PipeEvent::AddPre => {
                let origin = origin_of(pipe);
                let (verdict, network, full) = {
                    let mut g = gate.lock();
                    let verdict = g.offer(pipe, origin);
                    (verdict, g.refused_network(), g.refused_full())
                };
                match verdict {
                    Verdict::Admit => return,
                    Verdict::RefuseNetwork if worth_logging(network) => log::warn!(
                        "refused a {what} connection from {origin}: not in allow_from \
                         ({network} refused so far)"
                    ),
                    Verdict::RefuseFull if worth_logging(full) => log::warn!(
                        "refused a {what} connection from {origin}: max_connections reached \
                         ({full} refused so far)"
                    ),
                    _ => {}
                }
                // Closing the pipe (never the socket) in add-pre refuses it.
                pipe.close();
            }
            PipeEvent::AddPost if gate.lock().origin(pipe).is_some() => on_event(pipe, event),
            PipeEvent::RemovePost if gate.lock().closed(pipe) => on_event(pipe, event),
            _ => {}
        })
        .map_err(Error::nng("watch the socket's connections"))
}

/// Why an answer's name is refused under
/// [`Options::require_peer_host`](crate::Options::require_peer_host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The name is neither `scheme://HOST[:PORT][/…]` nor `HOST:PORT`.
    NotAnAddress,
    /// HOST is not an IP literal (IPv4, or IPv6 in brackets): a host name
    /// cannot be checked against the connection.
    NotAnIp,
    /// HOST is an IP address, but not the connection's.
    Mismatch(IpAddr),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::NotAnAddress => {
                f.write_str("the name is not scheme://HOST[:PORT][/...] or HOST:PORT")
            }
            HostError::NotAnIp => {
                f.write_str("HOST is not an IP address (IPv4, or IPv6 in brackets)")
            }
            HostError::Mismatch(ip) => write!(f, "HOST {ip} is not the connection's address"),
        }
    }
}

impl std::error::Error for HostError {}

fn is_port(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u16>().is_ok()
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Splits `HOST[:PORT]` (`port_required`: `HOST:PORT`) into the host text,
/// brackets removed, and whether it was bracketed.
fn split_host_port(s: &str, port_required: bool) -> Option<(&str, bool)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) if is_port(port) => Some((host, true)),
            None if after.is_empty() && !port_required => Some((host, true)),
            _ => None,
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) if is_port(port) && !host.is_empty() => Some((host, false)),
            None if !port_required && !s.is_empty() => Some((s, false)),
            _ => None,
        }
    }
}

/// The IP address a name claims as its host: the HOST of
/// `scheme://HOST[:PORT][/…]` (also `?…` or `#…` after it) or of
/// `HOST:PORT`, where HOST is an IPv4 literal or a bracketed IPv6 literal.
pub fn name_host(name: &str) -> std::result::Result<IpAddr, HostError> {
    let (authority, port_required) = match name.split_once("://") {
        Some((scheme, rest)) => {
            if !is_scheme(scheme) {
                return Err(HostError::NotAnAddress);
            }
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (&rest[..end], false)
        }
        None => (name, true),
    };
    let (host, bracketed) =
        split_host_port(authority, port_required).ok_or(HostError::NotAnAddress)?;
    if bracketed {
        host.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| HostError::NotAnIp)
    } else {
        host.parse::<std::net::Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| HostError::NotAnIp)
    }
}

/// Whether `name` may be listed by a connection from `peer`: its HOST
/// ([`name_host`]) must be `peer` (IPv4 addresses mapped into IPv6 compare
/// as IPv4).
pub fn check_peer_host(name: &str, peer: IpAddr) -> std::result::Result<(), HostError> {
    let host = canonical(name_host(name)?);
    if host == canonical(peer) {
        Ok(())
    } else {
        Err(HostError::Mismatch(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn network_rules() {
        let nets = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        assert!(network_allows(&[], Origin::Ip(ip("1.2.3.4"))));
        assert!(network_allows(&[], Origin::Unknown));
        assert!(network_allows(&nets, Origin::Local));
        assert!(network_allows(&nets, Origin::Ip(ip("10.9.9.9"))));
        assert!(!network_allows(&nets, Origin::Ip(ip("11.9.9.9"))));
        assert!(!network_allows(&nets, Origin::Unknown));
    }

    #[test]
    fn logging_is_bounded() {
        let logged = (1..=100_000).filter(|&n| worth_logging(n)).count();
        assert_eq!(logged, 10 + 100);
        assert!(worth_logging(1) && worth_logging(10) && !worth_logging(11));
        assert_eq!(Origin::Ip(ip("::1")).to_string(), "::1");
        assert_eq!(Origin::Local.to_string(), "a local (ipc or inproc) peer");
    }

    #[test]
    fn gate_counts_and_bounds() {
        let mut g: Gate<u32> = Gate::new(vec![Cidr::parse("10.0.0.0/8").unwrap()], 2);
        let far = Origin::Ip(ip("192.0.2.1"));
        let near = Origin::Ip(ip("10.0.0.1"));
        assert_eq!(g.offer(1, far), Verdict::RefuseNetwork);
        assert!(!g.closed(1), "a refused connection never counted as open");
        assert_eq!(g.offer(2, near), Verdict::Admit);
        assert_eq!(g.offer(3, Origin::Local), Verdict::Admit);
        assert_eq!(g.offer(4, near), Verdict::RefuseFull);
        assert_eq!(g.offer(5, far), Verdict::RefuseNetwork, "network first");
        assert_eq!(g.open(), 2);
        assert_eq!(g.origin(2), Some(near));
        assert_eq!(g.origin(4), None);
        assert!(!g.closed(4));
        assert!(g.closed(2));
        assert!(!g.closed(2), "closing twice reports once");
        assert_eq!(
            g.offer(6, near),
            Verdict::Admit,
            "accepts again below the bound"
        );
        assert_eq!((g.refused_network(), g.refused_full()), (2, 1));
    }

    #[test]
    fn names_bound_to_hosts() {
        let v4 = ip("10.0.0.7");
        for ok in [
            "http://10.0.0.7:8080",
            "http://10.0.0.7",
            "http://10.0.0.7/",
            "https://10.0.0.7:443/path?q=1",
            "tcp://10.0.0.7:9000",
            "grpc+tls://10.0.0.7:1",
            "http://10.0.0.7?x",
            "http://10.0.0.7#frag",
            "10.0.0.7:8080",
        ] {
            assert_eq!(check_peer_host(ok, v4), Ok(()), "{ok}");
        }
        assert_eq!(check_peer_host("http://[::1]:80/x", ip("::1")), Ok(()));
        assert_eq!(check_peer_host("[::1]:80", ip("::1")), Ok(()));
        assert_eq!(check_peer_host("http://[::1]", ip("::1")), Ok(()));
        assert_eq!(
            check_peer_host("http://10.0.0.7:80", ip("::ffff:10.0.0.7")),
            Ok(()),
            "a dual-stack listener's mapped address"
        );
        assert_eq!(
            check_peer_host("http://10.0.0.8:8080", v4),
            Err(HostError::Mismatch(ip("10.0.0.8")))
        );
        for bad in [
            "10.0.0.7",
            "10.0.0.7:",
            "10.0.0.7:x",
            "10.0.0.7:65536",
            "10.0.0.7:8080/x",
            "::1:80",
            "[::1]",
            "://10.0.0.7",
            "1http://10.0.0.7",
            "http://",
            "http://:80",
            "http://10.0.0.7:",
            "http://10.0.0.7:80x",
            "http://[::1",
            "http://[::1]x",
            "http://::1/",
            "name",
            "",
        ] {
            assert_eq!(
                check_peer_host(bad, v4),
                Err(HostError::NotAnAddress),
                "{bad:?}"
            );
        }
        for not_ip in [
            "http://localhost:80",
            "http://user@10.0.0.7:80",
            "http://[10.0.0.7]:80",
            "http://[fe80::1%25eth0]:80",
            "localhost:80",
            "http://010.0.0.7:80",
        ] {
            assert_eq!(
                check_peer_host(not_ip, v4),
                Err(HostError::NotAnIp),
                "{not_ip:?}"
            );
        }
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Cidr::parse(&s);
            let _ = name_host(&s);
        }

        #[test]
        fn urls_of_the_peer_pass_and_others_fail(peer in any_ip(), other in any_ip(), port in any::<u16>(), path in "[a-z/]{0,8}") {
            let host = match canonical(peer) {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            let name = format!("http://{host}:{port}/{path}");
            prop_assert_eq!(check_peer_host(&name, peer), Ok(()));
            let bare = format!("{host}:{port}");
            prop_assert_eq!(check_peer_host(&bare, peer), Ok(()));
            if canonical(other) != canonical(peer) {
                prop_assert!(check_peer_host(&name, other).is_err());
            }
        }

        #[test]
        fn gate_never_exceeds_its_bound(ops in proptest::collection::vec((any::<bool>(), 0u32..20), 0..200), max in 0usize..6) {
            let mut g: Gate<u32> = Gate::new(Vec::new(), max);
            let mut full = 0;
            for (add, id) in ops {
                if add {
                    if g.origin(id).is_some() { continue; }
                    if g.offer(id, Origin::Local) == Verdict::RefuseFull { full += 1; }
                } else {
                    g.closed(id);
                }
                prop_assert!(g.open() <= max);
            }
            prop_assert_eq!(g.refused_full(), full);
        }
    }
}
