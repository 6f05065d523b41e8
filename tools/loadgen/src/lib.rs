//! Helpers shared by the load generator's binaries, its benchmark and its
//! tests: peer names, the `key=value` line format every binary prints, a
//! tiny argument parser, readers for `/proc` and the watch protocol's
//! framing and watcher state ([`watch`]).
//!
//! Nothing here touches the network, and nothing here comes from
//! `nng_discovery`: the `loadgen` binary is an independent implementation of
//! the wire protocol.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// The service name peer `slot` answers with in generation `gen` (a churned
/// peer that comes back under a new name moves to the next generation).
///
/// Names look like real service URLs, about 22 bytes each, so lists have a
/// realistic size: `http://10.0.1.244:8080`.
pub fn peer_name(slot: u32, gen: u32) -> String {
    format!(
        "http://10.{}.{}.{}:{}",
        (slot >> 16) & 0xff,
        (slot >> 8) & 0xff,
        slot & 0xff,
        8080 + gen
    )
}

/// One line of output: a kind (the first word) and `key=value` fields.
///
/// ```
/// let line = nng_discovery_loadgen::Line::parse("full t=1.5 sub=0 len=1000");
/// assert_eq!(line.kind, "full");
/// assert_eq!(line.num::<usize>("len"), Some(1000));
/// assert_eq!(line.get("sub"), Some("0"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Line {
    /// The first word.
    pub kind: String,
    /// The `key=value` words, in order.
    pub fields: Vec<(String, String)>,
}

impl Line {
    /// Parses `kind key=value key=value ...`; words without `=` are ignored.
    pub fn parse(text: &str) -> Line {
        let mut words = text.split_ascii_whitespace();
        let kind = words.next().unwrap_or_default().to_owned();
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Line { kind, fields }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as a number (or anything `FromStr`).
    pub fn num<T: FromStr>(&self, key: &str) -> Option<T> {
        self.get(key)?.parse().ok()
    }
}

/// A redialing connection's waits, as NNG's dialer (1.x) computes them for
/// the library's clients: each wait is drawn uniformly from `[0, current)`
/// (the jitter that spreads thousands of redials), after which `current`
/// doubles up to `max`; a connection that completes its SP handshake
/// starts again from `min`. The loadgen's `--redial` mode uses it with the
/// library's defaults, [`Backoff::LIBRARY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// The library's default `reconnect_min` (100 ms) and `reconnect_max`
    /// (1 s).
    pub const LIBRARY: Backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(1),
        current: Duration::from_millis(100),
    };

    /// Waits from `min` doubling to `max` (a `max` below `min` is taken
    /// as `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The wait before the next dial, from a random number (any `u64`):
    /// `random % current`, then `current` doubles (up to `max`).
    pub fn next_wait(&mut self, random: u64) -> Duration {
        let bound = self.current;
        self.current = (self.current * 2).min(self.max);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(random % nanos)
        }
    }

    /// A connection completed its handshake: the next wait starts from
    /// `min` again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// The bound of the next wait (it is drawn from `[0, bound)`).
    pub fn bound(&self) -> Duration {
        self.current
    }
}

/// The SP request id of an announcement (`--announce`): id 0 with the top
/// bit that ends a backtrace. A peer sends it unasked, as the first
/// message on its survey connection, with its name as the body.
pub const ANNOUNCE_ID: [u8; 4] = [0x80, 0, 0, 0];

/// Appends one SP message to `out` as it goes over the wire: with
/// `ipc_type_byte`, the IPC transport's message type (1) first; then the
/// 8-byte big-endian length of `header` and `body` together; then both.
pub fn push_frame(out: &mut Vec<u8>, ipc_type_byte: bool, header: &[u8], body: &[u8]) {
    if ipc_type_byte {
        out.push(1);
    }
    out.extend_from_slice(&((header.len() + body.len()) as u64).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
}

/// Command-line arguments of the form `--key value` and `--flag`.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    /// Reads `std::env::args()`, exiting with a message on a stray word.
    pub fn from_env() -> Args {
        match Args::parse(std::env::args().skip(1)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }

    /// Parses `--key value` pairs; a `--key` followed by another `--key` (or
    /// by nothing) is a flag with the value `true`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut it = args.into_iter().peekable();
        while let Some(word) = it.next() {
            let Some(key) = word.strip_prefix("--") else {
                return Err(format!("unexpected argument {word:?}"));
            };
            let value = match it.peek() {
                Some(next) if !next.starts_with("--") => it.next().unwrap_or_default(),
                _ => "true".to_owned(),
            };
            values.insert(key.to_owned(), value);
        }
        Ok(Args { values })
    }

    /// The value of `--key`, if given.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `--key` parsed, or `default`; exits on a bad value.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.values.get(key) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{key}: cannot parse {v:?}");
                std::process::exit(2);
            }),
        }
    }

    /// The value of `--key`, or exits saying it is required.
    pub fn required(&self, key: &str) -> &str {
        self.str(key).unwrap_or_else(|| {
            eprintln!("--{key} is required");
            std::process::exit(2);
        })
    }
}

/// Readers for `/proc/PID/...`.
pub mod procfs {
    use std::fs;

    /// User plus system CPU time of a process (all its threads, living and
    /// exited), in clock ticks.
    pub fn cpu_ticks(pid: u32) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold spaces: split
        // after the last ')'. Then field 3 (state) is index 0, utime (14)
        // is index 11, stime (15) index 12.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    /// Like [`cpu_ticks`], plus the CPU time of the children it has waited
    /// for (`cutime` + `cstime`).
    pub fn cpu_ticks_with_children(pid: u32) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        (11..=14).map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
    }

    fn status_field(pid: u32, key: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_ascii_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(pid: u32) -> Option<u64> {
        status_field(pid, "VmRSS:")
    }

    /// Peak resident set size in KiB (`VmHWM`).
    pub fn peak_rss_kib(pid: u32) -> Option<u64> {
        status_field(pid, "VmHWM:")
    }

    /// Number of threads.
    pub fn threads(pid: u32) -> Option<u64> {
        status_field(pid, "Threads:")
    }

    /// Open file descriptors.
    pub fn open_fds(pid: u32) -> Option<usize> {
        Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
    }

    /// Clock ticks per second (`USER_HZ`): 100 on every Linux this runs on;
    /// `getconf CLK_TCK` confirms it when available.
    pub fn ticks_per_second() -> u64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    }

    /// Busy and total jiffies of the whole machine (all cores), from
    /// `/proc/stat`.
    pub fn machine_ticks() -> Option<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = cpu
            .split_ascii_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        let total: u64 = v.iter().take(8).sum();
        Some((total - idle, total))
    }
}

pub mod watch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_url_like() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..70_000 {
            assert!(seen.insert(peer_name(slot, 0)));
        }
        assert_eq!(peer_name(0x01_02_03, 0), "http://10.1.2.3:8080");
        assert_ne!(peer_name(5, 0), peer_name(5, 1));
    }

    #[test]
    fn backoff_doubles_to_max_with_waits_below_the_bound() {
        let ms = Duration::from_millis;
        let mut b = Backoff::LIBRARY;
        assert_eq!(b, Backoff::new(ms(100), ms(1000)));
        let bounds: Vec<Duration> = (0..7)
            .map(|i| {
                let bound = b.bound();
                // The largest and smallest random numbers stay below it.
                let mut probe = b;
                assert!(probe.next_wait(u64::MAX) < bound);
                let mut probe = b;
                assert_eq!(probe.next_wait(0), Duration::ZERO);
                let w = b.next_wait(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1));
                assert!(w < bound, "wait {w:?} not below {bound:?}");
                bound
            })
            .collect();
        assert_eq!(
            bounds,
            [100, 200, 400, 800, 1000, 1000, 1000].map(ms).to_vec()
        );
        b.reset();
        assert_eq!(b.bound(), ms(100));
    }

    #[test]
    fn backoff_edge_cases() {
        let ms = Duration::from_millis;
        // max below min: min throughout.
        let mut b = Backoff::new(ms(50), ms(10));
        assert_eq!(b.bound(), ms(50));
        b.next_wait(7);
        assert_eq!(b.bound(), ms(50));
        // Zero: redial at once, forever.
        let mut z = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(z.next_wait(u64::MAX), Duration::ZERO);
        assert_eq!(z.next_wait(1), Duration::ZERO);
        // Every random number gives a wait below the bound.
        for r in (0..10_000u64).map(|i| i.wrapping_mul(0x2545_f491_4f6c_dd1d)) {
            let mut b = Backoff::new(ms(100), ms(1000));
            assert!(b.next_wait(r) < ms(100));
        }
    }

    #[test]
    fn an_announcement_is_the_id_then_the_name() {
        let mut tcp = Vec::new();
        push_frame(&mut tcp, false, &ANNOUNCE_ID, b"http://a:1");
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 14, 0x80, 0, 0, 0];
        want.extend_from_slice(b"http://a:1");
        assert_eq!(tcp, want);
        // IPC: the type byte first; appended after what is there.
        let mut ipc = vec![9];
        push_frame(&mut ipc, true, &ANNOUNCE_ID, b"n");
        assert_eq!(ipc, [9, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0x80, 0, 0, 0, b'n']);
        // An answer to a survey: the survey's backtrace, then the name.
        let mut answer = Vec::new();
        push_frame(&mut answer, false, &[0x81, 2, 3, 4], b"");
        assert_eq!(answer, [0, 0, 0, 0, 0, 0, 0, 4, 0x81, 2, 3, 4]);
    }

    #[test]
    fn lines_parse() {
        let l = Line::parse("tick t=1.25 peers=10 junk");
        assert_eq!(l.kind, "tick");
        assert_eq!(l.num::<f64>("t"), Some(1.25));
        assert_eq!(l.num::<u32>("peers"), Some(10));
        assert_eq!(l.get("junk"), None);
        assert_eq!(Line::parse("").kind, "");
    }

    #[test]
    fn args_parse() {
        let a = Args::parse(
            ["--peers", "10", "--quiet", "--url", "tcp://x:1"]
                .into_iter()
                .map(String::from),
        )
        .unwrap();
        assert_eq!(a.get("peers", 0u32), 10);
        assert_eq!(a.str("quiet"), Some("true"));
        assert_eq!(a.str("url"), Some("tcp://x:1"));
        assert_eq!(a.get("missing", 7u32), 7);
        assert!(Args::parse(["stray".to_owned()]).is_err());
    }

    #[test]
    fn proc_readers_see_this_process() {
        let pid = std::process::id();
        assert!(cpu_ticks_ok(pid));
        assert!(procfs::rss_kib(pid).unwrap() > 0);
        assert!(procfs::threads(pid).unwrap() >= 1);
        assert!(procfs::open_fds(pid).unwrap() >= 3);
        let (busy, total) = procfs::machine_ticks().unwrap();
        assert!(busy <= total);
    }

    fn cpu_ticks_ok(pid: u32) -> bool {
        procfs::cpu_ticks(pid).is_some()
    }
}
