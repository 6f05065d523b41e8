//! The forms in which a list of peers is printed or handed to a command.

use std::fmt::Write as _;

/// The names separated by single spaces; the empty list is the empty string.
pub fn spaced(names: &[String]) -> String {
    names.join(" ")
}

/// Each name followed by a newline (names never contain control
/// characters, so this is unambiguous); the empty list is the empty string.
pub fn lines(names: &[String]) -> String {
    let mut out = String::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for name in names {
        out.push_str(name);
        out.push('\n');
    }
    out
}

/// A JSON array of strings, such as `["a","b"]`; the empty list is `[]`.
pub fn json(names: &[String]) -> String {
    let mut out = String::with_capacity(2 + names.iter().map(|n| n.len() + 3).sum::<usize>());
    out.push('[');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(name, &mut out);
    }
    out.push(']');
    out
}

/// Appends `s` as a JSON string literal (RFC 8259): quotes, backslashes and
/// control characters are escaped, everything else is written as UTF-8.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn spaced_and_lines() {
        assert_eq!(spaced(&[]), "");
        assert_eq!(spaced(&v(&["a"])), "a");
        assert_eq!(spaced(&v(&["a", "b c"])), "a b c");
        assert_eq!(lines(&[]), "");
        assert_eq!(lines(&v(&["a", "b c"])), "a\nb c\n");
    }

    #[test]
    fn json_arrays() {
        assert_eq!(json(&[]), "[]");
        assert_eq!(json(&v(&["a"])), r#"["a"]"#);
        assert_eq!(
            json(&v(&["http://10.0.0.1:8080", "b"])),
            r#"["http://10.0.0.1:8080","b"]"#
        );
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json(&v(&[r#"a"b"#])), r#"["a\"b"]"#);
        assert_eq!(json(&v(&[r"a\b"])), r#"["a\\b"]"#);
        assert_eq!(json(&v(&["a/b"])), r#"["a/b"]"#);
        assert_eq!(json(&v(&["☃ ü"])), "[\"☃ ü\"]");
        // Names on the wire never hold control characters, but the escaping
        // is complete anyway.
        assert_eq!(
            json(&v(&["\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}"])),
            "[\"\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}\"]"
        );
    }
}
