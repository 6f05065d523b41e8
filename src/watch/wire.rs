//! The watch protocol's wire format, as plain functions with no sockets.
//!
//! A watcher (REQ v0) tells the server (REP v0, raw) which state it holds;
//! the server replies with what takes it to the current list. Everything is
//! big-endian and fits in one message each way:
//!
//! * a **request** body is 16 bytes: the [`Position`] the watcher holds,
//!   `epoch` (u64) then `revision` (u64). `(0, 0)` means "I hold nothing".
//!   A body of any other length also means "I hold nothing" (see
//!   [`decode_request`]), so a bare `nngcat --req0 --data ""` fetches the
//!   list;
//! * a **reply** body is one kind byte, the position the reply brings the
//!   watcher to (`epoch` u64, `revision` u64), then a payload:
//!   * [`SNAPSHOT`] (`S`): the whole list, exactly the classic list body
//!     ([`crate::wire::encode_list`]; empty payload = empty list);
//!   * [`DELTA`] (`D`): entries joined by `|`, each `+NAME` (joined) or
//!     `-NAME` (left), in any order, each name at most once; together they
//!     take the watcher from the revision it sent to the reply's revision.
//!     The empty payload is a delta with no entries (the list came back to
//!     what the watcher holds, at a newer revision);
//!   * [`KEEPALIVE`] (`K`): empty payload; nothing changed since the
//!     revision sent.
//!
//! A server's epoch is a random non-zero number chosen at each start; its
//! revisions start at 1 (its first list) and grow by one per published
//! change, so a reply never carries epoch 0 or revision 0.
//!
//! Decoding a request never fails (any bytes mean some position); decoding
//! a reply is strict (see [`ReplyError`]): a watcher acts only on replies it
//! understands completely.

use std::collections::BTreeSet;
use std::fmt;

use crate::wire::{self, NameError, SEPARATOR};

/// The length of a request body: epoch then revision, 8 bytes each.
pub const REQUEST_LEN: usize = 16;

/// The length of a reply's header: the kind byte, epoch and revision.
pub const REPLY_HEADER_LEN: usize = 17;

/// Kind byte of a snapshot reply: `S`.
pub const SNAPSHOT: u8 = b'S';
/// Kind byte of a delta reply: `D`.
pub const DELTA: u8 = b'D';
/// Kind byte of a keepalive reply: `K`.
pub const KEEPALIVE: u8 = b'K';

/// Marks a joined name in a delta entry: `+`.
pub const JOINED: u8 = b'+';
/// Marks a departed name in a delta entry: `-`.
pub const LEFT: u8 = b'-';

/// A point in a server's history: which server run (`epoch`) and how many
/// changes into it (`revision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position {
    /// The server run: random and non-zero for a real server; 0 only in
    /// [`Position::NOTHING`].
    pub epoch: u64,
    /// The number of changes the server has published in this epoch, its
    /// first list being revision 1.
    pub revision: u64,
}

impl Position {
    /// The position of a watcher that holds nothing: `(0, 0)`.
    pub const NOTHING: Position = Position {
        epoch: 0,
        revision: 0,
    };

    /// A position.
    pub const fn new(epoch: u64, revision: u64) -> Position {
        Position { epoch, revision }
    }

    /// Whether this position can name a state a server had: epoch and
    /// revision both non-zero.
    pub const fn is_real(&self) -> bool {
        self.epoch != 0 && self.revision != 0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {:#018x} revision {}", self.epoch, self.revision)
    }
}

/// The request body for a watcher that holds `position`.
pub fn encode_request(position: Position) -> [u8; REQUEST_LEN] {
    let mut body = [0; REQUEST_LEN];
    body[..8].copy_from_slice(&position.epoch.to_be_bytes());
    body[8..].copy_from_slice(&position.revision.to_be_bytes());
    body
}

/// Reads the position a request says its watcher holds.
///
/// Lenient by design: a body of exactly [`REQUEST_LEN`] bytes is read as
/// epoch and revision; a body of **any other length** (shorter, as from a
/// bare `nngcat` request, or longer) means [`Position::NOTHING`], which the
/// server answers with a snapshot. A snapshot is a correct answer to any
/// request, so guessing at a body we do not understand can only cost bytes,
/// never a wrong list.
///
/// ```
/// use nng_discovery::watch_wire::{decode_request, encode_request, Position};
/// let p = Position::new(7, 42);
/// assert_eq!(decode_request(&encode_request(p)), p);
/// assert_eq!(decode_request(b""), Position::NOTHING);
/// ```
pub fn decode_request(body: &[u8]) -> Position {
    let Ok(bytes) = <[u8; REQUEST_LEN]>::try_from(body) else {
        return Position::NOTHING;
    };
    let mut epoch = [0; 8];
    let mut revision = [0; 8];
    epoch.copy_from_slice(&bytes[..8]);
    revision.copy_from_slice(&bytes[8..]);
    Position {
        epoch: u64::from_be_bytes(epoch),
        revision: u64::from_be_bytes(revision),
    }
}

/// A decoded reply from a watch server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The whole list at `at`.
    Snapshot {
        /// The position of this list.
        at: Position,
        /// The names, sorted and unique.
        names: Vec<String>,
    },
    /// What changed between the revision the watcher sent and `at`.
    Delta {
        /// The position the delta brings the watcher to.
        at: Position,
        /// Names that joined, sorted and unique (from the decoder).
        joined: Vec<String>,
        /// Names that left, sorted and unique (from the decoder); never
        /// also in `joined`.
        left: Vec<String>,
    },
    /// Nothing changed: the watcher's position is still `at`.
    Keepalive {
        /// The server's (and the watcher's) position.
        at: Position,
    },
}

impl Reply {
    /// The position the reply brings the watcher to.
    pub fn at(&self) -> Position {
        match self {
            Reply::Snapshot { at, .. } | Reply::Delta { at, .. } | Reply::Keepalive { at } => *at,
        }
    }

    /// The kind byte: [`SNAPSHOT`], [`DELTA`] or [`KEEPALIVE`].
    pub fn kind(&self) -> u8 {
        match self {
            Reply::Snapshot { .. } => SNAPSHOT,
            Reply::Delta { .. } => DELTA,
            Reply::Keepalive { .. } => KEEPALIVE,
        }
    }
}

fn encode_header(kind: u8, at: Position, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&encode_request(at));
}

/// Appends a snapshot reply to `out`. The caller passes valid, sorted,
/// unique names (the server's list).
pub fn encode_snapshot<'a, I>(at: Position, names: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a str>,
{
    encode_header(SNAPSHOT, at, out);
    wire::encode_list(names, out);
}

/// Appends a delta reply to `out`: `joined` names as `+NAME`, then `left`
/// names as `-NAME`. The caller passes valid names, each at most once
/// across both.
pub fn encode_delta<'a, J, L>(at: Position, joined: J, left: L, out: &mut Vec<u8>)
where
    J: IntoIterator<Item = &'a str>,
    L: IntoIterator<Item = &'a str>,
{
    encode_header(DELTA, at, out);
    let entries = joined
        .into_iter()
        .map(|name| (JOINED, name))
        .chain(left.into_iter().map(|name| (LEFT, name)));
    for (i, (sign, name)) in entries.enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.push(sign);
        out.extend_from_slice(name.as_bytes());
    }
}

/// Appends a keepalive reply to `out`.
pub fn encode_keepalive(at: Position, out: &mut Vec<u8>) {
    encode_header(KEEPALIVE, at, out);
}

/// Appends `reply`'s body to `out`.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Snapshot { at, names } => {
            encode_snapshot(*at, names.iter().map(String::as_str), out);
        }
        Reply::Delta { at, joined, left } => encode_delta(
            *at,
            joined.iter().map(String::as_str),
            left.iter().map(String::as_str),
            out,
        ),
        Reply::Keepalive { at } => encode_keepalive(*at, out),
    }
}

/// Why a reply was refused by [`decode_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// The body is shorter than the 17-byte header.
    TooShort {
        /// The body's length in bytes.
        len: usize,
    },
    /// The kind byte is not `S`, `D` or `K`.
    UnknownKind(u8),
    /// The header names epoch 0 or revision 0, which no server state has.
    NotAPosition(Position),
    /// A snapshot's list is corrupt.
    BadList(wire::ListError),
    /// A delta entry does not start with `+` or `-` (an empty entry, as in
    /// `+a||-b`, is one of these).
    NoSign {
        /// Index (0-based) of the entry.
        index: usize,
    },
    /// A delta entry's name is invalid.
    BadName {
        /// Index (0-based) of the entry.
        index: usize,
        /// What is wrong with the name.
        reason: NameError,
    },
    /// A name appears in more than one delta entry.
    Duplicate {
        /// Index (0-based) of its second entry.
        index: usize,
        /// The name.
        name: String,
    },
    /// A keepalive carries a payload.
    KeepalivePayload {
        /// The payload's length in bytes.
        len: usize,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooShort { len } => write!(
                f,
                "a watch reply is at least {REPLY_HEADER_LEN} bytes (kind, epoch, revision), got {len}"
            ),
            ReplyError::UnknownKind(kind) => write!(
                f,
                "unknown watch reply kind {kind:#04x} (expected 'S', 'D' or 'K')"
            ),
            ReplyError::NotAPosition(at) => write!(
                f,
                "the reply names {at}, but epoch and revision are never 0 in a reply"
            ),
            ReplyError::BadList(e) => write!(f, "snapshot: {e}"),
            ReplyError::NoSign { index } => write!(
                f,
                "delta entry #{index} does not start with '+' or '-'"
            ),
            ReplyError::BadName { index, reason } => {
                write!(f, "delta entry #{index} has an invalid name: {reason}")
            }
            ReplyError::Duplicate { index, name } => write!(
                f,
                "delta entry #{index} names {name:?} a second time"
            ),
            ReplyError::KeepalivePayload { len } => {
                write!(f, "a keepalive carries no payload, got {len} bytes")
            }
        }
    }
}

impl std::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplyError::BadList(e) => Some(e),
            ReplyError::BadName { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Decodes a reply body, refusing anything not exactly as documented in
/// the [module](self): a short header, an unknown kind, epoch or revision 0,
/// an invalid name, a delta entry without its sign, a name twice in one
/// delta, a keepalive with a payload.
///
/// ```
/// use nng_discovery::watch_wire::{decode_reply, Position, Reply};
/// let mut body = vec![b'D'];
/// body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 3]);
/// body.extend_from_slice(b"+b|-a");
/// assert_eq!(
///     decode_reply(&body).unwrap(),
///     Reply::Delta { at: Position::new(9, 3), joined: vec!["b".into()], left: vec!["a".into()] }
/// );
/// ```
pub fn decode_reply(body: &[u8]) -> Result<Reply, ReplyError> {
    if body.len() < REPLY_HEADER_LEN {
        return Err(ReplyError::TooShort { len: body.len() });
    }
    let (header, payload) = body.split_at(REPLY_HEADER_LEN);
    let kind = header[0];
    if ![SNAPSHOT, DELTA, KEEPALIVE].contains(&kind) {
        return Err(ReplyError::UnknownKind(kind));
    }
    let at = decode_request(&header[1..]);
    if !at.is_real() {
        return Err(ReplyError::NotAPosition(at));
    }
    match kind {
        SNAPSHOT => {
            let names = wire::decode_list(payload).map_err(ReplyError::BadList)?;
            Ok(Reply::Snapshot { at, names })
        }
        DELTA => {
            let (joined, left) = decode_entries(payload)?;
            Ok(Reply::Delta { at, joined, left })
        }
        _ => {
            if !payload.is_empty() {
                return Err(ReplyError::KeepalivePayload { len: payload.len() });
            }
            Ok(Reply::Keepalive { at })
        }
    }
}

/// Splits a delta payload into sorted joined and left names.
fn decode_entries(payload: &[u8]) -> Result<(Vec<String>, Vec<String>), ReplyError> {
    let mut joined = BTreeSet::new();
    let mut left = BTreeSet::new();
    if payload.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    for (index, entry) in payload.split(|&b| b == SEPARATOR).enumerate() {
        let Some((&sign, name)) = entry.split_first() else {
            return Err(ReplyError::NoSign { index });
        };
        if sign != JOINED && sign != LEFT {
            return Err(ReplyError::NoSign { index });
        }
        let name =
            wire::parse_name(name).map_err(|reason| ReplyError::BadName { index, reason })?;
        if joined.contains(name) || left.contains(name) {
            return Err(ReplyError::Duplicate {
                index,
                name: name.to_owned(),
            });
        }
        if sign == JOINED {
            joined.insert(name);
        } else {
            left.insert(name);
        }
    }
    let owned = |set: BTreeSet<&str>| set.into_iter().map(str::to_owned).collect();
    Ok((owned(joined), owned(left)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Position = Position::new(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);

    fn header(kind: u8, at: Position) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(kind, at, &mut out);
        out
    }

    fn body(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = header(kind, AT);
        out.extend_from_slice(payload);
        out
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn request_layout_is_big_endian_epoch_then_revision() {
        assert_eq!(
            encode_request(AT),
            [1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        assert_eq!(decode_request(&encode_request(AT)), AT);
        assert_eq!(encode_request(Position::NOTHING), [0; 16]);
        let max = Position::new(u64::MAX, u64::MAX);
        assert_eq!(decode_request(&encode_request(max)), max);
    }

    #[test]
    fn any_other_request_length_holds_nothing() {
        let full = encode_request(AT);
        for len in 0..REQUEST_LEN {
            assert_eq!(decode_request(&full[..len]), Position::NOTHING, "{len}");
        }
        let mut long = full.to_vec();
        long.push(0);
        assert_eq!(decode_request(&long), Position::NOTHING);
        assert_eq!(decode_request(&[0xff; 1000]), Position::NOTHING);
    }

    #[test]
    fn positions() {
        assert!(!Position::NOTHING.is_real());
        assert!(!Position::new(1, 0).is_real());
        assert!(!Position::new(0, 1).is_real());
        assert!(Position::new(1, 1).is_real());
        assert_eq!(Position::default(), Position::NOTHING);
        assert_eq!(
            Position::new(255, 3).to_string(),
            "epoch 0x00000000000000ff revision 3"
        );
    }

    #[test]
    fn reply_layouts() {
        let mut out = Vec::new();
        encode_snapshot(AT, ["a", "b"], &mut out);
        assert_eq!(out, body(b'S', b"a|b"));

        out.clear();
        encode_snapshot(AT, [], &mut out);
        assert_eq!(out, header(b'S', AT));

        out.clear();
        encode_delta(AT, ["c", "d"], ["a"], &mut out);
        assert_eq!(out, body(b'D', b"+c|+d|-a"));

        out.clear();
        encode_delta(AT, [], ["a"], &mut out);
        assert_eq!(out, body(b'D', b"-a"));

        out.clear();
        encode_delta(AT, [], [], &mut out);
        assert_eq!(out, header(b'D', AT));

        out.clear();
        encode_keepalive(AT, &mut out);
        assert_eq!(out, header(b'K', AT));
        assert_eq!(out.len(), REPLY_HEADER_LEN);
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Reply::Snapshot {
                at: AT,
                names: vec![],
            },
            Reply::Snapshot {
                at: AT,
                names: strings(&["a", "http://h:1", "☃"]),
            },
            Reply::Delta {
                at: AT,
                joined: vec![],
                left: vec![],
            },
            Reply::Delta {
                at: AT,
                joined: strings(&["x", "y"]),
                left: strings(&["a"]),
            },
            Reply::Delta {
                at: AT,
                joined: vec![],
                left: strings(&["a", "b"]),
            },
            Reply::Keepalive { at: AT },
        ];
        for reply in replies {
            let mut out = Vec::new();
            encode_reply(&reply, &mut out);
            assert_eq!(out[0], reply.kind());
            assert_eq!(decode_reply(&out), Ok(reply.clone()), "{out:?}");
            assert_eq!(reply.at(), AT);
        }
    }

    #[test]
    fn delta_entries_come_back_sorted_whatever_their_order() {
        assert_eq!(
            decode_reply(&body(b'D', b"-b|+d|-a|+c")),
            Ok(Reply::Delta {
                at: AT,
                joined: strings(&["c", "d"]),
                left: strings(&["a", "b"]),
            })
        );
    }

    #[test]
    fn snapshots_are_read_like_classic_lists() {
        // Unsorted and duplicated, as a classic list may be: accepted.
        assert_eq!(
            decode_reply(&body(b'S', b"b|a|b")),
            Ok(Reply::Snapshot {
                at: AT,
                names: strings(&["a", "b"])
            })
        );
    }

    #[test]
    fn bad_replies_are_refused() {
        let long = "x".repeat(wire::MAX_NAME_LEN + 1);
        let long_entry = format!("+{long}");
        let cases: Vec<(Vec<u8>, ReplyError)> = vec![
            (vec![], ReplyError::TooShort { len: 0 }),
            (
                header(b'S', AT)[..16].to_vec(),
                ReplyError::TooShort { len: 16 },
            ),
            (body(b'X', b""), ReplyError::UnknownKind(b'X')),
            (body(b's', b""), ReplyError::UnknownKind(b's')),
            (body(0, b""), ReplyError::UnknownKind(0)),
            (
                header(b'S', Position::NOTHING),
                ReplyError::NotAPosition(Position::NOTHING),
            ),
            (
                header(b'K', Position::new(5, 0)),
                ReplyError::NotAPosition(Position::new(5, 0)),
            ),
            (
                header(b'D', Position::new(0, 5)),
                ReplyError::NotAPosition(Position::new(0, 5)),
            ),
            (
                body(b'S', b"a||b"),
                ReplyError::BadList(wire::ListError {
                    index: 1,
                    reason: NameError::Empty,
                }),
            ),
            (body(b'D', b"a"), ReplyError::NoSign { index: 0 }),
            (body(b'D', b"+a|b"), ReplyError::NoSign { index: 1 }),
            (body(b'D', b"+a||-b"), ReplyError::NoSign { index: 1 }),
            (body(b'D', b"+a|"), ReplyError::NoSign { index: 1 }),
            (body(b'D', b"|+a"), ReplyError::NoSign { index: 0 }),
            (
                body(b'D', b"+"),
                ReplyError::BadName {
                    index: 0,
                    reason: NameError::Empty,
                },
            ),
            (
                body(b'D', b"-a|+b\n"),
                ReplyError::BadName {
                    index: 1,
                    reason: NameError::ContainsControl,
                },
            ),
            (
                body(b'D', b"+\xff"),
                ReplyError::BadName {
                    index: 0,
                    reason: NameError::NotUtf8,
                },
            ),
            (
                body(b'D', long_entry.as_bytes()),
                ReplyError::BadName {
                    index: 0,
                    reason: NameError::TooLong {
                        len: wire::MAX_NAME_LEN + 1,
                    },
                },
            ),
            (
                body(b'D', b"+a|+a"),
                ReplyError::Duplicate {
                    index: 1,
                    name: "a".into(),
                },
            ),
            (
                body(b'D', b"+a|-b|-a"),
                ReplyError::Duplicate {
                    index: 2,
                    name: "a".into(),
                },
            ),
            (
                body(b'D', b"-a|-a"),
                ReplyError::Duplicate {
                    index: 1,
                    name: "a".into(),
                },
            ),
            (body(b'K', b"x"), ReplyError::KeepalivePayload { len: 1 }),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_reply(&bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn error_messages_name_the_bad_input() {
        let cases = [
            (
                ReplyError::TooShort { len: 3 },
                "a watch reply is at least 17 bytes (kind, epoch, revision), got 3",
            ),
            (
                ReplyError::UnknownKind(b'X'),
                "unknown watch reply kind 0x58 (expected 'S', 'D' or 'K')",
            ),
            (
                ReplyError::NotAPosition(Position::new(0, 4)),
                "the reply names epoch 0x0000000000000000 revision 4, but epoch and revision are never 0 in a reply",
            ),
            (
                ReplyError::NoSign { index: 2 },
                "delta entry #2 does not start with '+' or '-'",
            ),
            (
                ReplyError::BadName {
                    index: 0,
                    reason: NameError::ContainsControl,
                },
                "delta entry #0 has an invalid name: control characters are not allowed",
            ),
            (
                ReplyError::Duplicate {
                    index: 1,
                    name: "a".into(),
                },
                "delta entry #1 names \"a\" a second time",
            ),
            (
                ReplyError::KeepalivePayload { len: 4 },
                "a keepalive carries no payload, got 4 bytes",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
        let e = decode_reply(&body(b'S', b"a|")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "snapshot: name #1 in the list is invalid: a name must not be empty"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
