//! Parsing durations such as `250ms`, `2s`, `1.5s`, `1m` or `1m30s`.

use std::time::Duration;

/// Parses a duration: one or more `NUMBER UNIT` parts, as in `250ms`, `2s`,
/// `1.5s`, `1m` or `1m30s`. The number may have a fraction; the units are
/// `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`. A unit is always required
/// (a bare `5` is refused), and so is at least one part.
///
/// Returns `None` for anything else, including values beyond `u64::MAX`
/// seconds. Fractions are computed exactly (no floating point), down to the
/// nanosecond; digits beyond that are dropped.
pub fn parse(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = parse_part(rest)?;
        total = total.checked_add(nanos)?;
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).ok()?;
    // The remainder is below one second, so it fits in a u32.
    let subsec = (total % NANOS_PER_SEC) as u32;
    Some(Duration::new(secs, subsec))
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses one `NUMBER UNIT` part and returns its length in nanoseconds and
/// the text after it.
fn parse_part(text: &str) -> Option<(u128, &str)> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, rest) = text.split_at(int_len);
    let (frac_digits, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            after_dot.split_at(frac_len)
        }
        None => ("", rest),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None; // no number at all, or a lone "."
    }
    let unit_len = rest
        .char_indices()
        .find(|&(_, c)| c.is_ascii_digit() || c == '.')
        .map_or(rest.len(), |(i, _)| i);
    let (unit, rest) = rest.split_at(unit_len);
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    };
    // Whole part: at most 30 digits keeps the product within u128.
    if int_digits.len() > 30 {
        return None;
    }
    let whole: u128 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().ok()?
    };
    let mut nanos = whole.checked_mul(unit_nanos)?;
    // Fraction: digit by digit, each worth a tenth of the one before.
    let mut scale = unit_nanos;
    for digit in frac_digits.bytes() {
        scale /= 10;
        if scale == 0 {
            break; // below a nanosecond
        }
        nanos += u128::from(digit - b'0') * scale;
    }
    Some((nanos, rest))
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
        assert_eq!(parse(".5s"), ms(500));
        assert_eq!(parse("1.s"), ms(1_000));
        assert_eq!(parse("0.1s"), ms(100)); // no 0.1000000000000000055
        assert_eq!(parse("1.5ms"), Some(Duration::from_micros(1_500)));
        assert_eq!(parse("0.5m"), ms(30_000));
        // Below a nanosecond is dropped.
        assert_eq!(parse("1.0000000019s"), Some(Duration::new(1, 1)));
        assert_eq!(parse("0.9ns"), Some(Duration::ZERO));
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
            "", "abc", "5", "s", "ms", ".s", ".", "1.5", "-1s", "+1s", "1 s", " 1s", "1s ", "1sec",
            "1S", "1d", "1ms2", "1..5s", "1.5.5s", "1e3ms", "0x10s", "1,5s",
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
