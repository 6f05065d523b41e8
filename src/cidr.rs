//! IP networks written as CIDRs (`10.0.0.0/8`, `fd00::/8`): parsing and
//! matching, for [`Options::allow_from`](crate::Options::allow_from). Pure:
//! no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::error::{Error, Result};

/// An IP network: an address and a prefix length, e.g. `10.0.0.0/8` or
/// `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress,
    /// The part after `/` is not a number from 0 to 32 (IPv4) or 128 (IPv6).
    BadPrefix,
    /// The address has bits set beyond the prefix (`10.0.0.1/8`); the
    /// network meant is given.
    HostBitsSet(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress => f.write_str(
                "expected an IPv4 or IPv6 network such as 10.0.0.0/8, fd00::/8 or 127.0.0.1/32",
            ),
            CidrError::BadPrefix => {
                f.write_str("the prefix length must be 0-32 for IPv4 and 0-128 for IPv6")
            }
            CidrError::HostBitsSet(net) => {
                write!(
                    f,
                    "bits are set beyond the prefix length (did you mean {net}?)"
                )
            }
        }
    }
}

impl std::error::Error for CidrError {}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, what a dual-stack
/// listener on `[::]` reports for an IPv4 peer) becomes the IPv4 address;
/// every other address is returned unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match mapped_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn mapped_v4(v6: Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    match v6.segments() {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(std::net::Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The mask of the top `prefix` bits of a `width`-bit number.
fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width))
    }
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX` (IPv4 or IPv6). A bare address is the one
    /// host (`/32` or `/128`). Bits set beyond the prefix are refused, since
    /// `10.0.0.1/8` is more likely a typo than a network.
    pub fn parse(s: &str) -> std::result::Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress)?;
        let width = bits(net).1;
        let prefix = match prefix {
            None => width,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::BadPrefix);
                }
                let n: u8 = p.parse().map_err(|_| CidrError::BadPrefix)?;
                if n > width {
                    return Err(CidrError::BadPrefix);
                }
                n
            }
        };
        let value = bits(net).0;
        let masked = value & mask(prefix, width);
        if masked != value {
            let fixed = match net {
                IpAddr::V4(_) => IpAddr::V4((masked as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(masked.into()),
            };
            return Err(CidrError::HostBitsSet(format!("{fixed}/{prefix}")));
        }
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is in this network. An IPv4 address mapped into IPv6
    /// (see `canonical`) is matched both as written and as IPv4; otherwise
    /// an IPv4 network never contains an IPv6 address nor the other way
    /// round.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.matches(ip) || self.matches(canonical(ip))
    }

    fn matches(&self, ip: IpAddr) -> bool {
        let (net, width) = bits(self.net);
        let (addr, addr_width) = bits(ip);
        let m = mask(self.prefix, width);
        width == addr_width && addr & m == net & m
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Parses the networks given to
/// [`Options::allow_from`](crate::Options::allow_from), or names the first
/// bad one.
pub(crate) fn parse_networks(nets: &[String]) -> Result<Vec<Cidr>> {
    nets.iter()
        .map(|s| {
            Cidr::parse(s).map_err(|e| Error::InvalidOption {
                option: "allow_from",
                reason: format!("{s:?}: {e}"),
            })
        })
        .collect()
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
    fn parses_networks() {
        for (s, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("127.0.0.1/32", "127.0.0.1/32"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00::/8", "fd00::/8"),
            ("::/0", "::/0"),
            ("::1", "::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
        ] {
            assert_eq!(Cidr::parse(s).unwrap().to_string(), shown, "{s}");
        }
    }

    #[test]
    fn refuses_bad_networks() {
        for s in [
            "",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "fd00::/129",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "10.0.0.0/8/8",
            "[::1]/128",
            "10.0.0.0 /8",
            "fe80::1%eth0/128",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(
            Cidr::parse("10.0.0.1/8"),
            Err(CidrError::HostBitsSet("10.0.0.0/8".into()))
        );
        assert_eq!(
            Cidr::parse("fd00::1/8"),
            Err(CidrError::HostBitsSet("fd00::/8".into()))
        );
        let e = parse_networks(&["10.0.0.0/8".into(), "10.1.0.0/33".into()]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("invalid option allow_from"), "{msg}");
        assert!(msg.contains("\"10.1.0.0/33\""), "{msg}");
    }

    #[test]
    fn matches_as_written() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.0.0.0")));
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")));
        assert!(!n.contains(ip("9.255.255.255")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "v4-mapped matches as v4");
        let mapped = Cidr::parse("::ffff:0:0/96").unwrap();
        assert!(mapped.contains(ip("::ffff:10.1.2.3")), "and as written");
        assert!(!mapped.contains(ip("10.1.2.3")));
        assert!(!n.contains(ip("fd00::1")));
        let h = Cidr::parse("127.0.0.1/32").unwrap();
        assert!(h.contains(ip("127.0.0.1")));
        assert!(!h.contains(ip("127.0.0.2")));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("1.2.3.4")));
        assert!(!all4.contains(ip("::1")));
        let ula = Cidr::parse("fd00::/8").unwrap();
        assert!(ula.contains(ip("fd12:3456::1")));
        assert!(!ula.contains(ip("fe80::1")));
        assert!(!ula.contains(ip("10.0.0.1")));
        let all6 = Cidr::parse("::/0").unwrap();
        assert!(all6.contains(ip("::1")));
        assert!(!all6.contains(ip("10.0.0.1")));
        let odd = Cidr::parse("192.168.4.0/22").unwrap();
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")));
        assert!(!odd.contains(ip("192.168.3.255")));
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    proptest! {
        #[test]
        fn prefix_matching_agrees_with_bit_comparison(a in any::<u32>(), b in any::<u32>(), p in 0u8..=32) {
            let net = if p == 0 { 0 } else { a & (u32::MAX << (32 - p)) };
            let cidr = Cidr::parse(&format!("{}/{p}", Ipv4Addr::from(net))).unwrap();
            let same = p == 0 || (a ^ b) >> (32 - p) == 0;
            prop_assert_eq!(cidr.contains(IpAddr::V4(b.into())), same);
            prop_assert!(cidr.contains(IpAddr::V4(a.into())));
        }

        #[test]
        fn v6_prefix_matching(a in any::<u128>(), b in any::<u128>(), p in 0u8..=128) {
            let net = if p == 0 { 0 } else { a & (u128::MAX << (128 - p)) };
            let cidr = Cidr::parse(&format!("{}/{p}", Ipv6Addr::from(net))).unwrap();
            let same = p == 0 || (a ^ b) >> (128 - p) == 0;
            prop_assert_eq!(cidr.contains(IpAddr::V6(b.into())), same);
        }

        #[test]
        fn display_parses_back(ip in any_ip(), p in 0u8..=128) {
            let width = bits(ip).1;
            let p = p % (width + 1);
            let masked = bits(ip).0 & mask(p, width);
            let net = match ip {
                IpAddr::V4(_) => IpAddr::V4((masked as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(masked.into()),
            };
            let c = Cidr::parse(&format!("{net}/{p}")).unwrap();
            prop_assert_eq!(Cidr::parse(&c.to_string()).unwrap(), c);
        }

    }
}
