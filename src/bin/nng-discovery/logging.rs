//! The daemon's log lines on stderr: `[TIMESTAMP LEVEL TARGET] MESSAGE`,
//! env_logger's own layout, with the timestamp in RFC 3339, UTC, to the
//! millisecond (`2026-12-07T01:43:00.123Z`), so lines from several hosts or
//! a journal without its own timestamps sort and compare. Written with the
//! humantime crate the daemon already has for its duration flags:
//! env_logger's `humantime` feature would pull in jiff instead.
//! RUST_LOG still sets the level (default: info).

use std::io::{self, Write};
use std::time::SystemTime;

/// Installs the logger (once, before any thread logs).
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|out, record| {
            line(
                out,
                SystemTime::now(),
                record.level(),
                record.target(),
                record.args(),
            )
        })
        .init();
}

/// Writes one log line (with its newline) for a record at `now`.
fn line(
    out: &mut impl Write,
    now: SystemTime,
    level: log::Level,
    target: &str,
    message: &std::fmt::Arguments<'_>,
) -> io::Result<()> {
    writeln!(
        out,
        "[{} {level:<5} {target}] {message}",
        humantime::format_rfc3339_millis(now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_line_has_an_rfc3339_utc_timestamp_and_the_level() {
        // 2026-12-07T01:43:00.123Z
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_607_780_123);
        let mut out = Vec::new();
        line(
            &mut out,
            at,
            log::Level::Warn,
            "nng_discovery::server",
            &format_args!("refused {}", 3),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2026-12-07T01:43:00.123Z WARN  nng_discovery::server] refused 3\n"
        );
        let mut out = Vec::new();
        line(&mut out, at, log::Level::Info, "t", &format_args!("m")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2026-12-07T01:43:00.123Z INFO  t] m\n"
        );
    }
}
