//! Parsing durations such as `250ms`, `2s`, `1.5s`, `1m` or `1m30s`: a thin
//! wrapper over `humantime`, whose forms are a superset of the ones we
//! document; the tests below pin the documented ones.

use std::time::Duration;

/// Parses a duration: one or more `NUMBER UNIT` parts, as in `250ms`, `2s`,
/// `1.5s`, `1m` or `1m30s`. The units we document are `ns`, `us` (or `µs`),
/// `ms`, `s`, `m` and `h`; humantime also takes longer names (`sec`, `min`,
/// `hours`, ...), `d`, `w`, and spaces between parts. A unit is always
/// required (a bare `5` is refused).
///
/// Returns `None` for anything else, including values beyond `u64::MAX`
/// seconds.
pub fn parse(text: &str) -> Option<Duration> {
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn plain_units() {
        assert_eq!(parse("250ms"), ms(250));
        assert_eq!(parse("2s"), ms(2_000));
        assert_eq!(parse("1m"), ms(60_000));
        assert_eq!(parse("2h"), ms(7_200_000));
        assert_eq!(parse("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Some(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        assert_eq!(parse("007s"), ms(7_000));
    }

    #[test]
    fn fractions_are_exact() {
        assert_eq!(parse("1.5s"), ms(1_500));
        assert_eq!(parse("0.25s"), ms(250));
        assert_eq!(parse("0.1s"), ms(100)); // no 0.1000000000000000055
        assert_eq!(parse("1.5ms"), Some(Duration::from_micros(1_500)));
        assert_eq!(parse("0.5m"), ms(30_000));
        assert_eq!(parse("1.5h"), ms(5_400_000));
    }

    #[test]
    fn compound() {
        assert_eq!(parse("1m30s"), ms(90_000));
        assert_eq!(parse("1h1m1s"), ms(3_661_000));
        assert_eq!(parse("1s500ms"), ms(1_500));
    }

    #[test]
    fn refused() {
        for bad in [
            "", "abc", "5", "s", "ms", ".", "1.5", "-1s", "+1s", "1S", "1ms2", "1..5s", "1.5.5s",
            "1e3ms", "0x10s", "1,5s",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn overflow_is_refused() {
        assert_eq!(
            parse("18446744073709551615s"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse("18446744073709551616s"), None);
        assert_eq!(parse("999999999999999999999999999999h"), None);
        assert_eq!(parse(&format!("{}s", "9".repeat(40))), None);
        assert_eq!(parse("18446744073709551615s1s"), None);
    }
}
