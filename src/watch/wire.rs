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
    encode_entries(joined, left, out);
}

/// Appends a delta payload to `out`: `joined` names as `+NAME`, then `left`
/// names as `-NAME`, joined by `|`. Shared by delta replies and delta
/// broadcasts.
fn encode_entries<'a, J, L>(joined: J, left: L, out: &mut Vec<u8>)
where
    J: IntoIterator<Item = &'a str>,
    L: IntoIterator<Item = &'a str>,
{
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
    /// An offer's URL is empty, not UTF-8, longer than
    /// [`MAX_OFFER_URL_LEN`] or holds a control character.
    BadOfferUrl,
    /// A broadcast's revisions do not make a span: a delta must go from a
    /// revision of at least 1 to a later one, a keepalive names one
    /// revision (at least 1) twice.
    BadSpan {
        /// The revision the broadcast starts from.
        from: u64,
        /// The revision it brings the follower to.
        to: u64,
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
            ReplyError::BadOfferUrl => write!(
                f,
                "an offer's URL must be 1 to {MAX_OFFER_URL_LEN} bytes of UTF-8 without control characters"
            ),
            ReplyError::BadSpan { from, to } => write!(
                f,
                "a broadcast from revision {from} to {to} is not a span (a delta goes from a revision of at least 1 to a later one, a keepalive repeats one)"
            ),
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

// ---------------------------------------------------------------------------
// The broadcast (follow) extension: see docs/PROTOCOL.md ("Watch broadcast").
// ---------------------------------------------------------------------------

/// The length of a follower's request: a 16-byte request body, then one
/// flags byte.
pub const FOLLOW_REQUEST_LEN: usize = REQUEST_LEN + 1;

/// Flag bit 0 of a follower's request: "I can follow a broadcast". The
/// other bits are reserved: senders set them to 0, servers ignore them.
pub const CAN_FOLLOW: u8 = 0x01;

/// Kind byte of an offer reply: `B`. Its header is the server's position
/// (revision 0 before the server's first list) and its payload the
/// broadcast URL as the server bound it.
pub const OFFER: u8 = b'B';

/// The longest broadcast URL an offer may carry, in bytes.
pub const MAX_OFFER_URL_LEN: usize = 1024;

/// The length of a broadcast's header: the kind byte, `epoch`, the
/// revision it starts `from` and the one it brings the follower `to`.
pub const BROADCAST_HEADER_LEN: usize = 25;

/// The request body of a follower that holds `position`: the 16-byte
/// request, then the flags byte with [`CAN_FOLLOW`].
///
/// A server with a broadcast URL answers it at once, never holding it:
/// with an offer ([`OFFER`]) for [`Position::NOTHING`], otherwise like a
/// request that is behind (a delta or a snapshot), or with a keepalive when
/// the position is current. Servers without a broadcast URL (and servers
/// that predate it) read any body that is not 16 bytes as "holds nothing"
/// and answer with a snapshot.
pub fn encode_follow_request(position: Position) -> [u8; FOLLOW_REQUEST_LEN] {
    let mut body = [0; FOLLOW_REQUEST_LEN];
    body[..REQUEST_LEN].copy_from_slice(&encode_request(position));
    body[REQUEST_LEN] = CAN_FOLLOW;
    body
}

/// Reads a request's position and flags: a 17-byte body is a position and
/// a flags byte; any other body is [`decode_request`]'s position with no
/// flags. Never fails.
///
/// ```
/// use nng_discovery::watch_wire::{decode_request_flags, encode_follow_request, Position, CAN_FOLLOW};
/// let p = Position::new(7, 42);
/// assert_eq!(decode_request_flags(&encode_follow_request(p)), (p, CAN_FOLLOW));
/// assert_eq!(decode_request_flags(b""), (Position::NOTHING, 0));
/// ```
pub fn decode_request_flags(body: &[u8]) -> (Position, u8) {
    match body {
        [position @ .., flags] if body.len() == FOLLOW_REQUEST_LEN => {
            (decode_request(position), *flags)
        }
        _ => (decode_request(body), 0),
    }
}

/// Appends an offer reply to `out`: kind [`OFFER`], the server's position
/// (revision 0 before its first list), then the broadcast URL.
pub fn encode_offer(at: Position, url: &str, out: &mut Vec<u8>) {
    encode_header(OFFER, at, out);
    out.extend_from_slice(url.as_bytes());
}

/// A reply to a follower's request: an offer, or one of the classic
/// replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowReply {
    /// The server broadcasts its changes on `url`.
    Offer {
        /// The server's position: epoch non-zero, revision 0 before its
        /// first list.
        at: Position,
        /// The broadcast URL as the server bound it (its host may be a
        /// wildcard: see [`resolve_offer_url`]).
        url: String,
    },
    /// A snapshot, delta or keepalive, as [`decode_reply`] reads them.
    Reply(Reply),
}

/// Decodes a reply to a follower's request: an offer (`B`) or anything
/// [`decode_reply`] accepts, as strictly. An offer must name a non-zero
/// epoch and carry a URL of 1 to [`MAX_OFFER_URL_LEN`] bytes of UTF-8
/// without control characters.
pub fn decode_follow_reply(body: &[u8]) -> Result<FollowReply, ReplyError> {
    if body.first() != Some(&OFFER) {
        return decode_reply(body).map(FollowReply::Reply);
    }
    if body.len() < REPLY_HEADER_LEN {
        return Err(ReplyError::TooShort { len: body.len() });
    }
    let (header, payload) = body.split_at(REPLY_HEADER_LEN);
    let at = decode_request(&header[1..]);
    if at.epoch == 0 {
        return Err(ReplyError::NotAPosition(at));
    }
    let url = std::str::from_utf8(payload).map_err(|_| ReplyError::BadOfferUrl)?;
    if url.is_empty() || url.len() > MAX_OFFER_URL_LEN || url.chars().any(char::is_control) {
        return Err(ReplyError::BadOfferUrl);
    }
    Ok(FollowReply::Offer {
        at,
        url: url.to_owned(),
    })
}

/// The URL a follower dials for an offer's `offered` URL, having reached
/// the server at `watch_url`: a wildcard host (`0.0.0.0`, `[::]`, `::`,
/// `*` or none) in a `tcp`, `tcp4`, `tcp6`, `tls+tcp`, `ws` or `wss` URL
/// is replaced with the host of `watch_url`; anything else (a real host,
/// `ipc://`, `inproc://`) is dialed as offered.
///
/// ```
/// use nng_discovery::watch_wire::resolve_offer_url;
/// assert_eq!(
///     resolve_offer_url("tcp://0.0.0.0:40010", "tcp://10.0.0.5:40009"),
///     "tcp://10.0.0.5:40010"
/// );
/// assert_eq!(
///     resolve_offer_url("tcp://10.0.0.6:40010", "tcp://10.0.0.5:40009"),
///     "tcp://10.0.0.6:40010"
/// );
/// assert_eq!(resolve_offer_url("ipc:///run/b", "tcp://h:1"), "ipc:///run/b");
/// ```
pub fn resolve_offer_url(offered: &str, watch_url: &str) -> String {
    const WILDCARDS: [&str; 5] = ["0.0.0.0", "[::]", "::", "*", ""];
    let Some((scheme, host, rest)) = split_host(offered) else {
        return offered.to_owned();
    };
    if !WILDCARDS.contains(&host) {
        return offered.to_owned();
    }
    match split_host(watch_url) {
        Some((_, watch_host, _)) if !WILDCARDS.contains(&watch_host) => {
            format!("{scheme}://{watch_host}{rest}")
        }
        _ => offered.to_owned(),
    }
}

/// Splits a network URL into scheme, host and the rest (`:port/path`);
/// `None` for a scheme without a host (ipc, inproc) or a malformed URL.
fn split_host(url: &str) -> Option<(&str, &str, &str)> {
    const NETWORK: [&str; 6] = ["tcp", "tcp4", "tcp6", "tls+tcp", "ws", "wss"];
    let (scheme, after) = url.split_once("://")?;
    if !NETWORK.contains(&scheme) {
        return None;
    }
    let end = if after.starts_with('[') {
        after.find(']')? + 1
    } else {
        after.rfind(':')?
    };
    let (host, rest) = after.split_at(end);
    if host.contains('/') {
        return None;
    }
    Some((scheme, host, rest))
}

/// A decoded broadcast message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    /// What changed from revision `from` to revision `to` (`from < to`;
    /// a delta may span several revisions).
    Delta {
        /// The server run.
        epoch: u64,
        /// The revision the delta starts from (at least 1).
        from: u64,
        /// The revision it brings the follower to.
        to: u64,
        /// Names that joined, sorted and unique.
        joined: Vec<String>,
        /// Names that left, sorted and unique; never also in `joined`.
        left: Vec<String>,
    },
    /// The server is alive and at `at`.
    Keepalive {
        /// The server's position.
        at: Position,
    },
}

impl Broadcast {
    /// The epoch the message belongs to.
    pub fn epoch(&self) -> u64 {
        match self {
            Broadcast::Delta { epoch, .. } => *epoch,
            Broadcast::Keepalive { at } => at.epoch,
        }
    }

    /// The position a follower holds after applying it.
    pub fn to(&self) -> Position {
        match self {
            Broadcast::Delta { epoch, to, .. } => Position::new(*epoch, *to),
            Broadcast::Keepalive { at } => *at,
        }
    }
}

fn encode_broadcast_header(kind: u8, epoch: u64, from: u64, to: u64, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&from.to_be_bytes());
    out.extend_from_slice(&to.to_be_bytes());
}

/// Appends a delta broadcast to `out`: `D`, `epoch`, `from`, `to`, then the
/// entries exactly as in a delta reply. The caller passes valid names, each
/// at most once across both, and `1 <= from < to`.
pub fn encode_broadcast_delta<'a, J, L>(
    epoch: u64,
    from: u64,
    to: u64,
    joined: J,
    left: L,
    out: &mut Vec<u8>,
) where
    J: IntoIterator<Item = &'a str>,
    L: IntoIterator<Item = &'a str>,
{
    encode_broadcast_header(DELTA, epoch, from, to, out);
    encode_entries(joined, left, out);
}

/// Appends a keepalive broadcast to `out`: `K`, epoch, then the revision
/// twice (from = to), no payload.
pub fn encode_broadcast_keepalive(at: Position, out: &mut Vec<u8>) {
    encode_broadcast_header(KEEPALIVE, at.epoch, at.revision, at.revision, out);
}

/// Appends `broadcast` to `out`.
pub fn encode_broadcast(broadcast: &Broadcast, out: &mut Vec<u8>) {
    match broadcast {
        Broadcast::Delta {
            epoch,
            from,
            to,
            joined,
            left,
        } => encode_broadcast_delta(
            *epoch,
            *from,
            *to,
            joined.iter().map(String::as_str),
            left.iter().map(String::as_str),
            out,
        ),
        Broadcast::Keepalive { at } => encode_broadcast_keepalive(*at, out),
    }
}

/// Decodes a broadcast message, as strictly as [`decode_reply`]: a short
/// header, an unknown kind, epoch 0, revisions that are not a span
/// ([`ReplyError::BadSpan`]), a bad entry or a keepalive with a payload are
/// refused.
///
/// ```
/// use nng_discovery::watch_wire::{decode_broadcast, Broadcast};
/// let mut body = vec![b'D'];
/// body.extend_from_slice(&9u64.to_be_bytes());
/// body.extend_from_slice(&3u64.to_be_bytes());
/// body.extend_from_slice(&4u64.to_be_bytes());
/// body.extend_from_slice(b"+b|-a");
/// assert_eq!(
///     decode_broadcast(&body).unwrap(),
///     Broadcast::Delta { epoch: 9, from: 3, to: 4, joined: vec!["b".into()], left: vec!["a".into()] }
/// );
/// ```
pub fn decode_broadcast(body: &[u8]) -> Result<Broadcast, ReplyError> {
    if body.len() < BROADCAST_HEADER_LEN {
        return Err(ReplyError::TooShort { len: body.len() });
    }
    let (header, payload) = body.split_at(BROADCAST_HEADER_LEN);
    let kind = header[0];
    if kind != DELTA && kind != KEEPALIVE {
        return Err(ReplyError::UnknownKind(kind));
    }
    let word = |i: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&header[1 + 8 * i..9 + 8 * i]);
        u64::from_be_bytes(b)
    };
    let (epoch, from, to) = (word(0), word(1), word(2));
    if epoch == 0 {
        return Err(ReplyError::NotAPosition(Position::new(epoch, to)));
    }
    if kind == KEEPALIVE {
        if from != to || to == 0 {
            return Err(ReplyError::BadSpan { from, to });
        }
        if !payload.is_empty() {
            return Err(ReplyError::KeepalivePayload { len: payload.len() });
        }
        return Ok(Broadcast::Keepalive {
            at: Position::new(epoch, to),
        });
    }
    if from == 0 || to <= from {
        return Err(ReplyError::BadSpan { from, to });
    }
    let (joined, left) = decode_entries(payload)?;
    Ok(Broadcast::Delta {
        epoch,
        from,
        to,
        joined,
        left,
    })
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

    fn broadcast_header(kind: u8, epoch: u64, from: u64, to: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_broadcast_header(kind, epoch, from, to, &mut out);
        out
    }

    #[test]
    fn follow_request_layout_is_a_request_then_the_flags() {
        let body = encode_follow_request(AT);
        assert_eq!(body.len(), 17);
        assert_eq!(body[..16], encode_request(AT));
        assert_eq!(body[16], CAN_FOLLOW);
        assert_eq!(decode_request_flags(&body), (AT, CAN_FOLLOW));
        // Old servers (and new ones without a broadcast) read it as
        // "holds nothing".
        assert_eq!(decode_request(&body), Position::NOTHING);
        assert_eq!(decode_request_flags(&encode_request(AT)), (AT, 0));
        assert_eq!(decode_request_flags(&[7; 18]), (Position::NOTHING, 0));
        let mut other = body;
        other[16] = 0xfe;
        assert_eq!(decode_request_flags(&other), (AT, 0xfe));
    }

    #[test]
    fn offers_round_trip_and_bad_ones_are_refused() {
        let mut out = Vec::new();
        encode_offer(Position::new(5, 0), "tcp://0.0.0.0:1", &mut out);
        let mut want = header(b'B', Position::new(5, 0));
        want.extend_from_slice(b"tcp://0.0.0.0:1");
        assert_eq!(out, want);
        assert_eq!(
            decode_follow_reply(&out),
            Ok(FollowReply::Offer {
                at: Position::new(5, 0),
                url: "tcp://0.0.0.0:1".into()
            })
        );
        // Classic replies pass through.
        assert_eq!(
            decode_follow_reply(&body(b'K', b"")),
            Ok(FollowReply::Reply(Reply::Keepalive { at: AT }))
        );
        assert_eq!(
            decode_follow_reply(&body(b'X', b"")),
            Err(ReplyError::UnknownKind(b'X'))
        );
        let bad = |at: Position, url: &[u8]| {
            let mut b = header(b'B', at);
            b.extend_from_slice(url);
            decode_follow_reply(&b)
        };
        assert_eq!(bad(AT, b""), Err(ReplyError::BadOfferUrl));
        assert_eq!(bad(AT, b"tcp://a\n:1"), Err(ReplyError::BadOfferUrl));
        assert_eq!(bad(AT, b"\xff"), Err(ReplyError::BadOfferUrl));
        assert_eq!(
            bad(AT, &[b'x'; MAX_OFFER_URL_LEN + 1]),
            Err(ReplyError::BadOfferUrl)
        );
        assert!(bad(AT, &[b'x'; MAX_OFFER_URL_LEN]).is_ok());
        assert_eq!(
            bad(Position::new(0, 3), b"tcp://h:1"),
            Err(ReplyError::NotAPosition(Position::new(0, 3)))
        );
        assert_eq!(
            decode_follow_reply(b"B\0\0"),
            Err(ReplyError::TooShort { len: 3 })
        );
    }

    #[test]
    fn wildcard_offer_hosts_take_the_watch_urls_host() {
        let cases = [
            ("tcp://0.0.0.0:9", "tcp://10.0.0.5:8", "tcp://10.0.0.5:9"),
            ("tcp://[::]:9", "tcp://[fe80::1]:8", "tcp://[fe80::1]:9"),
            ("tcp://*:9", "tcp://h.example:8", "tcp://h.example:9"),
            ("tcp://:9", "tcp://h:8", "tcp://h:9"),
            ("tls+tcp://0.0.0.0:9", "tls+tcp://h:8", "tls+tcp://h:9"),
            ("tcp://127.0.0.1:9", "tcp://h:8", "tcp://127.0.0.1:9"),
            ("tcp://0.0.0.0:9", "ipc:///x", "tcp://0.0.0.0:9"),
            ("tcp://0.0.0.0:9", "tcp://0.0.0.0:8", "tcp://0.0.0.0:9"),
            ("ipc:///run/b", "tcp://h:8", "ipc:///run/b"),
            ("inproc://b", "inproc://w", "inproc://b"),
            ("nonsense", "tcp://h:8", "nonsense"),
        ];
        for (offered, watch, want) in cases {
            assert_eq!(resolve_offer_url(offered, watch), want, "{offered} {watch}");
        }
    }

    #[test]
    fn broadcast_layouts() {
        let mut out = Vec::new();
        encode_broadcast_delta(9, 3, 5, ["c"], ["a"], &mut out);
        let mut want = broadcast_header(b'D', 9, 3, 5);
        want.extend_from_slice(b"+c|-a");
        assert_eq!(out, want);
        assert_eq!(&out[..9], &[b'D', 0, 0, 0, 0, 0, 0, 0, 9]);
        out.clear();
        encode_broadcast_keepalive(Position::new(9, 5), &mut out);
        assert_eq!(out, broadcast_header(b'K', 9, 5, 5));
        assert_eq!(out.len(), BROADCAST_HEADER_LEN);
    }

    #[test]
    fn bad_broadcasts_are_refused() {
        let with = |mut h: Vec<u8>, p: &[u8]| {
            h.extend_from_slice(p);
            h
        };
        let cases: Vec<(Vec<u8>, ReplyError)> = vec![
            (vec![b'D'; 24], ReplyError::TooShort { len: 24 }),
            (
                broadcast_header(b'S', 1, 1, 2),
                ReplyError::UnknownKind(b'S'),
            ),
            (
                broadcast_header(b'D', 0, 1, 2),
                ReplyError::NotAPosition(Position::new(0, 2)),
            ),
            (
                broadcast_header(b'D', 1, 0, 2),
                ReplyError::BadSpan { from: 0, to: 2 },
            ),
            (
                broadcast_header(b'D', 1, 2, 2),
                ReplyError::BadSpan { from: 2, to: 2 },
            ),
            (
                broadcast_header(b'D', 1, 3, 2),
                ReplyError::BadSpan { from: 3, to: 2 },
            ),
            (
                broadcast_header(b'K', 1, 2, 3),
                ReplyError::BadSpan { from: 2, to: 3 },
            ),
            (
                broadcast_header(b'K', 1, 0, 0),
                ReplyError::BadSpan { from: 0, to: 0 },
            ),
            (
                with(broadcast_header(b'K', 1, 2, 2), b"x"),
                ReplyError::KeepalivePayload { len: 1 },
            ),
            (
                with(broadcast_header(b'D', 1, 2, 3), b"+a|+a"),
                ReplyError::Duplicate {
                    index: 1,
                    name: "a".into(),
                },
            ),
            (
                with(broadcast_header(b'D', 1, 2, 3), b"a"),
                ReplyError::NoSign { index: 0 },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_broadcast(&bytes), Err(want), "{bytes:?}");
        }
        assert!(ReplyError::BadSpan { from: 2, to: 1 }
            .to_string()
            .contains("from revision 2 to 1"));
        assert!(ReplyError::BadOfferUrl.to_string().contains("offer"));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            "[a-z0-9:/.]{1,12}"
        }

        fn broadcast() -> impl Strategy<Value = Broadcast> {
            let delta = (
                1..u64::MAX,
                1..u64::MAX - 1,
                1..1000u64,
                proptest::collection::btree_set(name(), 0..6),
                proptest::collection::btree_set(name(), 0..6),
            )
                .prop_map(|(epoch, from, span, joined, left)| Broadcast::Delta {
                    epoch,
                    from,
                    to: from.saturating_add(span),
                    left: left.difference(&joined).cloned().collect(),
                    joined: joined.into_iter().collect(),
                });
            let keepalive = (1..u64::MAX, 1..u64::MAX).prop_map(|(e, r)| Broadcast::Keepalive {
                at: Position::new(e, r),
            });
            prop_oneof![delta, keepalive]
        }

        proptest! {
            #[test]
            fn broadcasts_round_trip(b in broadcast()) {
                let mut out = Vec::new();
                encode_broadcast(&b, &mut out);
                prop_assert_eq!(decode_broadcast(&out), Ok(b));
            }

            #[test]
            fn follow_requests_round_trip(e in any::<u64>(), r in any::<u64>()) {
                let p = Position::new(e, r);
                prop_assert_eq!(decode_request_flags(&encode_follow_request(p)), (p, CAN_FOLLOW));
            }

            #[test]
            fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = decode_broadcast(&bytes);
                let _ = decode_follow_reply(&bytes);
                let _ = decode_request_flags(&bytes);
                let _ = resolve_offer_url(&String::from_utf8_lossy(&bytes), "tcp://h:1");
            }

            #[test]
            fn offers_round_trip(e in 1..u64::MAX, r in any::<u64>(), url in "[a-z+]{1,8}://[a-z0-9.:\\[\\]*]{0,20}") {
                let mut out = Vec::new();
                encode_offer(Position::new(e, r), &url, &mut out);
                prop_assert_eq!(
                    decode_follow_reply(&out),
                    Ok(FollowReply::Offer { at: Position::new(e, r), url })
                );
            }
        }
    }
}
