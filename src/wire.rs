//! The wire format, as plain functions with no sockets.
//!
//! Everything here is compatible with the Go original (gopherdiscovery on
//! mangos) and with any other Scalability Protocols peer:
//!
//! * a **survey** carries an empty body (clients ignore whatever it carries);
//! * an **answer** body is the service name's UTF-8 bytes; an
//!   **announcement** is an answer a client sends unasked when its
//!   connection comes up, with survey id [`ANNOUNCE_ID`] (which no survey
//!   ever carries: see [`next_survey_id`]);
//! * a **published list** is the names joined by [`SEPARATOR`]; an empty body
//!   is the empty list.
//!
//! A raw surveyor stamps each survey itself: a 4-byte big-endian survey id
//! with the top bit set goes in the message header, and every answer carries
//! it back as the last 4 bytes of its header.

use std::fmt;

/// The byte that separates names in a published list: `|`.
pub const SEPARATOR: u8 = b'|';

/// The longest service name accepted, in bytes.
///
/// A name is usually a URL such as `http://10.0.0.1:8080`; 1 KiB leaves room
/// for long host names and paths while keeping a list of 10,000 peers within
/// a few megabytes.
pub const MAX_NAME_LEN: usize = 1024;

/// Why a service name is refused.
///
/// Returned by [`validate_name`] and carried by
/// [`Error::InvalidName`](crate::Error::InvalidName).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty: an empty body means "no names" on the wire.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name contains `|`, which separates names in a published list.
    ContainsSeparator,
    /// The name contains a control character (such as a newline or NUL).
    ContainsControl,
    /// The bytes are not valid UTF-8 (only possible for bytes off the wire).
    NotUtf8,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("a name must not be empty"),
            NameError::TooLong { len } => {
                write!(f, "{len} bytes long, the limit is {MAX_NAME_LEN} bytes")
            }
            NameError::ContainsSeparator => f.write_str("'|' separates names on the wire"),
            NameError::ContainsControl => f.write_str("control characters are not allowed"),
            NameError::NotUtf8 => f.write_str("not valid UTF-8"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks that `name` can travel as a service name: non-empty, at most
/// [`MAX_NAME_LEN`] bytes, no `|` and no control characters.
///
/// ```
/// use nng_discovery::wire::{validate_name, NameError};
/// assert_eq!(validate_name("http://10.0.0.1:8080"), Ok(()));
/// assert_eq!(validate_name("a|b"), Err(NameError::ContainsSeparator));
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    // One pass over the bytes: '|' is ASCII and UTF-8 continuation bytes are
    // never ASCII, so a byte test finds it exactly.
    if name.as_bytes().contains(&SEPARATOR) {
        return Err(NameError::ContainsSeparator);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ContainsControl);
    }
    Ok(())
}

/// Reads a service name from an answer's body, refusing anything that
/// [`validate_name`] would refuse or that is not UTF-8.
pub fn parse_name(body: &[u8]) -> Result<&str, NameError> {
    if body.len() > MAX_NAME_LEN {
        // Checked before UTF-8 decoding so a huge body costs nothing more.
        return Err(NameError::TooLong { len: body.len() });
    }
    let name = std::str::from_utf8(body).map_err(|_| NameError::NotUtf8)?;
    validate_name(name)?;
    Ok(name)
}

/// Appends the published form of `names` to `out`: the names joined by `|`.
///
/// The empty list encodes as the empty body. The caller passes names that
/// are valid, sorted and unique (the server's membership keeps them so).
pub fn encode_list<'a, I>(names: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a str>,
{
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.extend_from_slice(name.as_bytes());
    }
}

/// The largest published list a subscriber accepts: 16 MiB, room for more
/// than 16,000 names of the maximum length or 300,000 typical URLs. Larger
/// messages close the connection (which is then dialed again).
pub const MAX_LIST_BYTES: usize = 16 << 20;

// A list of the largest names must fit at least ten thousand names.
const _: () = assert!(MAX_LIST_BYTES / (MAX_NAME_LEN + 1) > 10_000);

/// Why a published list was refused by [`decode_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListError {
    /// Index (0-based) of the first bad name in the body.
    pub index: usize,
    /// What is wrong with it.
    pub reason: NameError,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "name #{} in the list is invalid: {}",
            self.index, self.reason
        )
    }
}

impl std::error::Error for ListError {}

/// Decodes a published list: splits on `|`, checks every name, then sorts and
/// removes duplicates.
///
/// The empty body is the empty list (the Go original delivered `[""]` here).
/// A body with any invalid name is refused whole, so an application never
/// sees a corrupt list. Lists from the Go original arrive unsorted and are
/// sorted here.
///
/// ```
/// use nng_discovery::wire::decode_list;
/// assert_eq!(decode_list(b"b|a").unwrap(), vec!["a", "b"]);
/// assert!(decode_list(b"").unwrap().is_empty());
/// assert!(decode_list(b"a||b").is_err());
/// ```
pub fn decode_list(body: &[u8]) -> Result<Vec<String>, ListError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for (index, part) in body.split(|&b| b == SEPARATOR).enumerate() {
        let name = parse_name(part).map_err(|reason| ListError { index, reason })?;
        names.push(name.to_owned());
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// The top bit that marks the last (originating) word of an SP backtrace.
const SURVEY_ID_FLAG: u32 = 0x8000_0000;

/// Returns the 4-byte header a raw surveyor puts on survey number `seq`.
///
/// Only the low 31 bits of `seq` are used; the top bit is always set, as the
/// protocol requires of a request id.
pub fn survey_header(seq: u32) -> [u8; 4] {
    (seq | SURVEY_ID_FLAG).to_be_bytes()
}

/// The survey id of an announcement: an answer a client sends unasked as
/// soon as its survey connection is up, to say "this connection's name is
/// X" (on the wire, with the top bit: `80 00 00 00`). Servers never give a
/// survey this id (see [`next_survey_id`]), so an answer carrying it cannot
/// be mistaken for an answer to a survey. The protocol is described in
/// `docs/PROTOCOL.md` ("Join announcement").
pub const ANNOUNCE_ID: u32 = 0;

/// The 8-byte header a raw RESPONDENT socket sends an announcement with:
/// the connection's pipe id (big-endian), which the socket strips to pick
/// the connection, then [`survey_header`]`(`[`ANNOUNCE_ID`]`)`, which goes
/// on the wire. The body is the service name, as in any answer.
pub fn announcement_header(pipe_id: u32) -> [u8; 8] {
    let mut header = [0; 8];
    header[..4].copy_from_slice(&pipe_id.to_be_bytes());
    header[4..].copy_from_slice(&survey_header(ANNOUNCE_ID));
    header
}

/// The survey id after `seq`: the next 31-bit number, skipping
/// [`ANNOUNCE_ID`] when the count wraps.
///
/// ```
/// use nng_discovery::wire::{next_survey_id, ANNOUNCE_ID};
/// assert_eq!(next_survey_id(41), 42);
/// assert_eq!(next_survey_id(0x7fff_ffff), 1);
/// assert_ne!(next_survey_id(0x7fff_ffff), ANNOUNCE_ID);
/// ```
pub fn next_survey_id(seq: u32) -> u32 {
    match seq.wrapping_add(1) & !SURVEY_ID_FLAG {
        ANNOUNCE_ID => ANNOUNCE_ID + 1,
        next => next,
    }
}

/// Reads the survey id that an answer's header carries back (its last four
/// bytes), or `None` when the header is too short or the id lacks the top bit.
pub fn answer_survey_id(header: &[u8]) -> Option<u32> {
    let start = header.len().checked_sub(4)?;
    let word = u32::from_be_bytes([
        header[start],
        header[start + 1],
        header[start + 2],
        header[start + 3],
    ]);
    if word & SURVEY_ID_FLAG == 0 {
        return None;
    }
    Some(word & !SURVEY_ID_FLAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "http://10.0.0.1:8080",
            "ünïcødé ☃",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
            assert_eq!(parse_name(name.as_bytes()), Ok(name));
        }
    }

    #[test]
    fn invalid_names() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let cases: [(&str, NameError); 7] = [
            ("", NameError::Empty),
            ("a|b", NameError::ContainsSeparator),
            ("|", NameError::ContainsSeparator),
            ("a\nb", NameError::ContainsControl),
            ("a\0", NameError::ContainsControl),
            ("tab\there", NameError::ContainsControl),
            (
                &long,
                NameError::TooLong {
                    len: MAX_NAME_LEN + 1,
                },
            ),
        ];
        for (name, want) in cases {
            assert_eq!(validate_name(name), Err(want), "{name:?}");
            assert_eq!(parse_name(name.as_bytes()), Err(want), "{name:?}");
        }
        // Unicode control character (C1 range), not just ASCII ones.
        assert_eq!(validate_name("a\u{85}"), Err(NameError::ContainsControl));
    }

    #[test]
    fn parse_refuses_bad_utf8_and_huge_bodies() {
        assert_eq!(parse_name(&[0xff, 0xfe]), Err(NameError::NotUtf8));
        assert_eq!(parse_name(b"ok\xc3"), Err(NameError::NotUtf8));
        let huge = vec![b'a'; 10 * MAX_NAME_LEN];
        assert_eq!(
            parse_name(&huge),
            Err(NameError::TooLong { len: huge.len() })
        );
    }

    #[test]
    fn error_messages_are_actionable() {
        assert_eq!(
            NameError::ContainsSeparator.to_string(),
            "'|' separates names on the wire"
        );
        assert!(NameError::TooLong { len: 2000 }
            .to_string()
            .contains("1024"));
        let e = decode_list(b"a|\xff").unwrap_err();
        assert_eq!(
            e.to_string(),
            "name #1 in the list is invalid: not valid UTF-8"
        );
    }

    fn encode(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_list(names.iter().copied(), &mut out);
        out
    }

    #[test]
    fn encode_matches_the_go_format() {
        assert_eq!(encode(&[]), b"");
        assert_eq!(encode(&["a"]), b"a");
        assert_eq!(encode(&["a", "b", "c"]), b"a|b|c");
    }

    #[test]
    fn encode_appends() {
        let mut out = b"prefix".to_vec();
        encode_list(["x", "y"], &mut out);
        assert_eq!(out, b"prefixx|y");
    }

    #[test]
    fn decode_round_trips() {
        for names in [
            vec![],
            vec!["a"],
            vec!["a", "b"],
            vec!["http://h:1", "http://h:2", "☃"],
        ] {
            let body = encode(&names);
            assert_eq!(decode_list(&body).unwrap(), names);
        }
    }

    #[test]
    fn decode_sorts_and_dedupes_go_lists() {
        assert_eq!(decode_list(b"c|a|b|a").unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn decode_refuses_corrupt_lists_whole() {
        let cases: [(&[u8], usize, NameError); 6] = [
            (b"|", 0, NameError::Empty),
            (b"a|", 1, NameError::Empty),
            (b"|a", 0, NameError::Empty),
            (b"a||b", 1, NameError::Empty),
            (b"a|b\nc", 1, NameError::ContainsControl),
            (b"\xc3\x28", 0, NameError::NotUtf8),
        ];
        for (body, index, reason) in cases {
            assert_eq!(
                decode_list(body),
                Err(ListError { index, reason }),
                "{body:?}"
            );
        }
        let mut long = b"a|".to_vec();
        long.extend(std::iter::repeat(b'x').take(MAX_NAME_LEN + 1));
        assert_eq!(
            decode_list(&long),
            Err(ListError {
                index: 1,
                reason: NameError::TooLong {
                    len: MAX_NAME_LEN + 1
                }
            })
        );
    }

    #[test]
    fn survey_ids() {
        assert_eq!(survey_header(0), [0x80, 0, 0, 0]);
        assert_eq!(survey_header(0x0102_0304), [0x81, 2, 3, 4]);
        // The top bit of the sequence number is not ours to use.
        assert_eq!(survey_header(0xffff_ffff), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(answer_survey_id(&survey_header(7)), Some(7));
        // A longer backtrace (through a device): the id is the last word.
        let mut header = vec![0, 0, 0, 9];
        header.extend_from_slice(&survey_header(42));
        assert_eq!(answer_survey_id(&header), Some(42));
        assert_eq!(answer_survey_id(&[0x80, 0, 0]), None);
        assert_eq!(answer_survey_id(&[]), None);
        assert_eq!(answer_survey_id(&[0x7f, 0, 0, 1]), None);
    }

    #[test]
    fn announcements() {
        // As a raw respondent sends it: pipe id, then the id with the end bit.
        assert_eq!(
            announcement_header(0x0102_0304),
            [1, 2, 3, 4, 0x80, 0, 0, 0]
        );
        // What reaches the server: the last word, id 0.
        assert_eq!(
            answer_survey_id(&announcement_header(7)[4..]),
            Some(ANNOUNCE_ID)
        );
    }

    #[test]
    fn survey_ids_never_take_the_announcement_id() {
        assert_eq!(next_survey_id(0), 1);
        assert_eq!(next_survey_id(0x7fff_fffe), 0x7fff_ffff);
        assert_eq!(next_survey_id(0x7fff_ffff), 1);
        // Whatever the start (a stray top bit included): 31 bits, never 0.
        for seq in [u32::MAX, 0xffff_fffe, 0x8000_0000, 0x8000_0001] {
            let next = next_survey_id(seq);
            assert_ne!(next, ANNOUNCE_ID, "{seq:#x}");
            assert_eq!(next & SURVEY_ID_FLAG, 0, "{seq:#x}");
        }
    }
}
