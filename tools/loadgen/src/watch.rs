//! The watch protocol as the load generator plays it, with no sockets and
//! no clocks: request and reply framing, and what one watcher holds.
//!
//! Written from the README's "Watch protocol" section, not from
//! `nng_discovery::watch_wire`, so that the generator checks the server
//! against a second reading of the format.
//!
//! * A **request** is an SP message from a REQ (`0x30`) socket: the 4-byte
//!   request id (top bit set), then 16 bytes, `epoch` and `revision`
//!   (big-endian `u64`): the position the watcher holds, `(0, 0)` for
//!   nothing ([`encode_request`]).
//! * A **reply** from the raw REP (`0x31`) server echoes the request id,
//!   then a kind byte (`S` snapshot, `D` delta, `K` keepalive), `epoch`,
//!   `revision` and the payload ([`parse_reply`]).
//! * A [`Watcher`] applies replies to its position and its set of names:
//!   a snapshot replaces the set, a delta (`+NAME`/`-NAME` entries joined
//!   by `|`) must apply cleanly to the position it holds, a keepalive must
//!   name that position. Anything else is refused and drops the position,
//!   so the next request asks for a snapshot with `(0, 0)`.
//!
//! Names are interned ([`Names`]) and a watcher's set is a bit set
//! ([`NameSet`]): 5,000 watchers of 5,000 names hold a few megabytes, not
//! 5,000 copies of every name.

use std::collections::HashMap;
use std::fmt;

/// SP protocol number of a REQ v0 socket (the watcher's side).
pub const REQ: u16 = 0x0030;
/// SP protocol number of a REP v0 socket (the server's watch URL).
pub const REP: u16 = 0x0031;
/// Bytes of a request body (after the request id).
pub const REQUEST_BODY: usize = 16;
/// Bytes of a reply's header (after the request id): kind, epoch,
/// revision.
pub const REPLY_HEADER: usize = 17;

/// A position in a server's history: its epoch (random per server start)
/// and revision (1 for its first list, one more per change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    /// The server start's random epoch; 0 only in [`Position::NOTHING`].
    pub epoch: u64,
    /// The revision within the epoch; 0 only in [`Position::NOTHING`].
    pub revision: u64,
}

impl Position {
    /// What a watcher that holds no list asks with.
    pub const NOTHING: Position = Position {
        epoch: 0,
        revision: 0,
    };

    /// Whether this names a real state of a server (neither part is 0).
    pub fn is_real(&self) -> bool {
        self.epoch != 0 && self.revision != 0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#x}, {})", self.epoch, self.revision)
    }
}

/// The request id after `previous`: one more, kept in 31 bits, with the
/// top bit set (SP request ids always have it).
pub fn next_request_id(previous: u32) -> u32 {
    (previous.wrapping_add(1) & 0x7fff_ffff) | 0x8000_0000
}

/// Appends a request's SP message (without the transport's length
/// prefix) to `out`: `id` (its top bit forced on), then `at`.
pub fn encode_request(id: u32, at: Position, out: &mut Vec<u8>) {
    out.extend_from_slice(&(id | 0x8000_0000).to_be_bytes());
    out.extend_from_slice(&at.epoch.to_be_bytes());
    out.extend_from_slice(&at.revision.to_be_bytes());
}

/// A reply's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `S`: the whole list, names joined by `|`.
    Snapshot,
    /// `D`: `+NAME` and `-NAME` entries joined by `|`.
    Delta,
    /// `K`: nothing changed, empty payload.
    Keepalive,
}

/// A reply as received, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The request id it answers (top bit set).
    pub id: u32,
    /// Snapshot, delta or keepalive.
    pub kind: Kind,
    /// The position the reply brings the watcher to.
    pub at: Position,
    /// The names (snapshot), the entries (delta), or nothing (keepalive).
    pub payload: &'a [u8],
}

/// Why a reply message was refused by [`parse_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Shorter than the request id plus the 17-byte header.
    TooShort {
        /// The message's length in bytes.
        len: usize,
    },
    /// The first 4 bytes are not a request id (top bit clear).
    NoRequestId,
    /// The kind byte is not `S`, `D` or `K`.
    UnknownKind(u8),
    /// Epoch or revision is 0.
    NotAPosition(Position),
    /// A keepalive with a payload.
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
                "a watch reply message is at least 4 + {REPLY_HEADER} bytes (request id, kind, epoch, revision), got {len}"
            ),
            ReplyError::NoRequestId => {
                write!(f, "a watch reply must start with a request id (top bit set)")
            }
            ReplyError::UnknownKind(k) => {
                write!(f, "unknown watch reply kind {k:#04x} (expected 'S', 'D' or 'K')")
            }
            ReplyError::NotAPosition(at) => {
                write!(f, "a watch reply names {at}; epoch and revision are never 0")
            }
            ReplyError::KeepalivePayload { len } => {
                write!(f, "a keepalive carries no payload, got {len} bytes")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// Parses a reply message as a REQ socket receives it: the echoed 4-byte
/// request id, the kind, epoch and revision, then the payload (left
/// unparsed: [`Watcher::apply`] reads it).
pub fn parse_reply(msg: &[u8]) -> Result<Reply<'_>, ReplyError> {
    if msg.len() < 4 + REPLY_HEADER {
        return Err(ReplyError::TooShort { len: msg.len() });
    }
    let word = |at: usize| u64::from_be_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
    let id = u32::from_be_bytes(msg[..4].try_into().expect("4 bytes"));
    if id & 0x8000_0000 == 0 {
        return Err(ReplyError::NoRequestId);
    }
    let kind = match msg[4] {
        b'S' => Kind::Snapshot,
        b'D' => Kind::Delta,
        b'K' => Kind::Keepalive,
        other => return Err(ReplyError::UnknownKind(other)),
    };
    let at = Position {
        epoch: word(5),
        revision: word(13),
    };
    if !at.is_real() {
        return Err(ReplyError::NotAPosition(at));
    }
    let payload = &msg[4 + REPLY_HEADER..];
    if kind == Kind::Keepalive && !payload.is_empty() {
        return Err(ReplyError::KeepalivePayload { len: payload.len() });
    }
    Ok(Reply {
        id,
        kind,
        at,
        payload,
    })
}

/// Whether a snapshot at `at` answers a request that asked for one: the
/// watcher held nothing, another epoch, or a revision the server never
/// reached. A snapshot sent to a watcher that held a position of the
/// reply's epoch at or below its revision was not asked for; the server
/// may still send one if the delta would be larger than the whole list
/// ([`Why::Smaller`], which [`Watcher::apply`] tells) or if the watcher
/// fell further behind than the server's history.
pub fn snapshot_asked(held: Position, at: Position) -> bool {
    !held.is_real() || held.epoch != at.epoch || held.revision > at.revision
}

/// Why a watcher got a snapshot, as far as it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It asked: it held nothing, another epoch, or a revision the server
    /// never reached ([`snapshot_asked`]).
    Asked,
    /// It held a position of this epoch, but the delta from its list to
    /// the snapshot's (each entry the name's bytes plus 2, for its sign and
    /// separator) is larger than the snapshot's names (each name's bytes
    /// plus 1): the server sends the smaller.
    Smaller,
    /// Neither: the watcher held a position of this epoch and a delta
    /// would have been smaller. Only a watcher further behind than the
    /// server's history (1,024 changes by default) should see one.
    Unasked,
}

/// Interned names: each distinct name gets a small id, once.
#[derive(Debug, Default)]
pub struct Names {
    ids: HashMap<Vec<u8>, u32>,
    /// Each id's name length in bytes.
    lens: Vec<u32>,
}

impl Names {
    /// The id of `name`, giving it one if it has none.
    pub fn intern(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(name.to_vec(), id);
        self.lens.push(name.len() as u32);
        id
    }

    /// The length in bytes of the name with id `id` (0 for an unknown id).
    pub fn len_of(&self, id: u32) -> usize {
        self.lens.get(id as usize).map_or(0, |&l| l as usize)
    }

    /// The id of `name`, if it has one.
    pub fn get(&self, name: &[u8]) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Distinct names interned so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no name was interned yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A set of interned name ids, as bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet {
    bits: Vec<u64>,
    len: usize,
}

impl NameSet {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        self.bits.get(w).is_some_and(|word| word >> b & 1 == 1)
    }

    /// Adds `id`; false if it was there already.
    pub fn insert(&mut self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        let was = self.bits[w] >> b & 1 == 1;
        self.bits[w] |= 1 << b;
        self.len += usize::from(!was);
        !was
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: u32) -> bool {
        if !self.contains(id) {
            return false;
        }
        self.bits[id as usize / 64] &= !(1 << (id % 64));
        self.len -= 1;
        true
    }

    /// How many ids are in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids in exactly one of the two sets.
    pub fn symmetric_difference<'a>(
        &'a self,
        other: &'a NameSet,
    ) -> impl Iterator<Item = u32> + 'a {
        let words = self.bits.len().max(other.bits.len());
        (0..words).flat_map(move |w| {
            let a = self.bits.get(w).copied().unwrap_or(0);
            let b = other.bits.get(w).copied().unwrap_or(0);
            let mut x = a ^ b;
            std::iter::from_fn(move || {
                if x == 0 {
                    return None;
                }
                let bit = x.trailing_zeros();
                x &= x - 1;
                Some(w as u32 * 64 + bit)
            })
        })
    }
}

/// Decodes payloads into name sets: the interner, and the last snapshot
/// decoded (thousands of watchers get the same one; decoding it once and
/// cloning the bit set keeps the generator off the critical path).
#[derive(Debug, Default)]
pub struct Decoder {
    /// Every name seen so far.
    pub names: Names,
    last_snapshot: Option<(Position, Vec<u8>, NameSet)>,
}

impl Decoder {
    /// The set a snapshot payload at `at` names (empty payload: empty
    /// set).
    pub fn snapshot(&mut self, at: Position, payload: &[u8]) -> NameSet {
        if let Some((p, bytes, set)) = &self.last_snapshot {
            if *p == at && bytes.as_slice() == payload {
                return set.clone();
            }
        }
        let mut set = NameSet::default();
        if !payload.is_empty() {
            for name in payload.split(|&b| b == b'|') {
                set.insert(self.names.intern(name));
            }
        }
        self.last_snapshot = Some((at, payload.to_vec(), set.clone()));
        set
    }
}

/// Why a reply did not apply to what a watcher holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A delta or keepalive while holding nothing.
    HoldsNothing,
    /// A delta or keepalive of another epoch.
    WrongEpoch,
    /// A delta that does not move the revision forward, or a keepalive
    /// for another revision.
    WrongRevision,
    /// A delta entry without `+` or `-` (an empty entry is one).
    NoSign,
    /// A delta names the same name twice.
    Duplicate,
    /// A delta adds a name already held.
    AddsPresent,
    /// A delta removes a name not held.
    RemovesAbsent,
}

/// What [`Watcher::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A snapshot replaced the set.
    Snapshot {
        /// Whether the request asked for one, and if not why it came.
        why: Why,
    },
    /// A delta applied: so many names joined and left.
    Delta {
        /// Names added.
        joined: usize,
        /// Names removed.
        left: usize,
    },
    /// A keepalive for the position held.
    Keepalive,
    /// The reply did not apply: nothing changed but the position, dropped
    /// so that the next request asks for a snapshot.
    Refused(Refusal),
}

/// One watcher: the position it holds and the names at that position.
#[derive(Debug, Clone, Default)]
pub struct Watcher {
    /// The position held ([`Position::NOTHING`] until the first snapshot,
    /// and after a refused reply).
    pub at: Position,
    /// The names held (kept after a refusal until the next snapshot).
    pub names: NameSet,
}

impl Watcher {
    /// The position to send in the next request.
    pub fn request(&self) -> Position {
        self.at
    }

    /// Takes the reply to the last request sent (which carried
    /// [`request`](Watcher::request)).
    pub fn apply(&mut self, reply: &Reply<'_>, dec: &mut Decoder) -> Applied {
        let outcome = self.try_apply(reply, dec);
        if let Applied::Refused(_) = outcome {
            self.at = Position::NOTHING;
        }
        outcome
    }

    fn try_apply(&mut self, reply: &Reply<'_>, dec: &mut Decoder) -> Applied {
        match reply.kind {
            Kind::Snapshot => {
                let names = dec.snapshot(reply.at, reply.payload);
                let why = if snapshot_asked(self.at, reply.at) {
                    Why::Asked
                } else {
                    // The server's rule: a delta larger than the list's
                    // names is sent as the snapshot.
                    let delta: usize = self
                        .names
                        .symmetric_difference(&names)
                        .map(|id| dec.names.len_of(id) + 2)
                        .sum();
                    let list = reply.payload.len() + usize::from(!reply.payload.is_empty());
                    if delta > list {
                        Why::Smaller
                    } else {
                        Why::Unasked
                    }
                };
                self.names = names;
                self.at = reply.at;
                Applied::Snapshot { why }
            }
            Kind::Keepalive => match self.check_position(reply.at) {
                Err(r) => Applied::Refused(r),
                Ok(()) if reply.at.revision != self.at.revision => {
                    Applied::Refused(Refusal::WrongRevision)
                }
                Ok(()) => Applied::Keepalive,
            },
            Kind::Delta => {
                if let Err(r) = self.check_position(reply.at) {
                    return Applied::Refused(r);
                }
                if reply.at.revision <= self.at.revision {
                    return Applied::Refused(Refusal::WrongRevision);
                }
                // Check every entry first: a delta applies whole or not
                // at all.
                let mut entries: Vec<(bool, u32)> = Vec::new();
                if !reply.payload.is_empty() {
                    for entry in reply.payload.split(|&b| b == b'|') {
                        let join = match entry.first() {
                            Some(b'+') => true,
                            Some(b'-') => false,
                            _ => return Applied::Refused(Refusal::NoSign),
                        };
                        let id = dec.names.intern(&entry[1..]);
                        if self.names.contains(id) == join {
                            return Applied::Refused(if join {
                                Refusal::AddsPresent
                            } else {
                                Refusal::RemovesAbsent
                            });
                        }
                        entries.push((join, id));
                    }
                }
                let mut ids: Vec<u32> = entries.iter().map(|&(_, id)| id).collect();
                ids.sort_unstable();
                if ids.windows(2).any(|w| w[0] == w[1]) {
                    return Applied::Refused(Refusal::Duplicate);
                }
                let mut joined = 0;
                for (join, id) in entries {
                    if join {
                        self.names.insert(id);
                        joined += 1;
                    } else {
                        self.names.remove(id);
                    }
                }
                let left = ids.len() - joined;
                self.at = reply.at;
                Applied::Delta { joined, left }
            }
        }
    }

    fn check_position(&self, at: Position) -> Result<(), Refusal> {
        if !self.at.is_real() {
            Err(Refusal::HoldsNothing)
        } else if self.at.epoch != at.epoch {
            Err(Refusal::WrongEpoch)
        } else {
            Ok(())
        }
    }

    /// Whether it holds `name` (looked up, never interned).
    pub fn holds(&self, name: &[u8], names: &Names) -> bool {
        names.get(name).is_some_and(|id| self.names.contains(id))
    }
}

// The broadcast (docs/PROTOCOL.md, "Watch broadcast"), read again from the document.

/// Flags byte of a follow request: bit 0, "I can follow a broadcast".
pub const CAN_FOLLOW: u8 = 0x01;
/// Bytes of a broadcast's header: kind, epoch, from, to.
pub const BROADCAST_HEADER: usize = 25;

/// Appends a follow request's SP message to `out`: `id`, `at`, then the
/// flags byte with [`CAN_FOLLOW`] (a catch-up; the server answers at
/// once).
pub fn encode_follow_request(id: u32, at: Position, out: &mut Vec<u8>) {
    encode_request(id, at, out);
    out.push(CAN_FOLLOW);
}

/// A broadcast as a SUB connection receives it (no SP header on PUB/SUB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastMsg<'a> {
    /// [`Kind::Delta`] or [`Kind::Keepalive`].
    pub kind: Kind,
    /// The server run.
    pub epoch: u64,
    /// The revision a delta starts from (a keepalive: its revision).
    pub from: u64,
    /// The revision it brings the follower to.
    pub to: u64,
    /// A delta's entries, as in a delta reply.
    pub payload: &'a [u8],
}

/// Parses a broadcast: `D` or `K`, epoch (non-zero), from, to (a delta
/// `1 <= from < to`, a keepalive `from == to >= 1` and no payload).
pub fn parse_broadcast(msg: &[u8]) -> Result<BroadcastMsg<'_>, ReplyError> {
    if msg.len() < BROADCAST_HEADER {
        return Err(ReplyError::TooShort { len: msg.len() });
    }
    let word = |at: usize| u64::from_be_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
    let kind = match msg[0] {
        b'D' => Kind::Delta,
        b'K' => Kind::Keepalive,
        other => return Err(ReplyError::UnknownKind(other)),
    };
    let (epoch, from, to) = (word(1), word(9), word(17));
    let payload = &msg[BROADCAST_HEADER..];
    let span_ok = match kind {
        Kind::Keepalive => from == to && to > 0 && payload.is_empty(),
        _ => from > 0 && to > from,
    };
    if epoch == 0 || !span_ok {
        return Err(ReplyError::NotAPosition(Position {
            epoch,
            revision: to,
        }));
    }
    Ok(BroadcastMsg {
        kind,
        epoch,
        from,
        to,
        payload,
    })
}

/// What a follower holding a position does with a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A delta that starts at the revision held: apply it.
    Apply,
    /// A duplicate, older than what is held, or a keepalive of it.
    Ignore,
    /// A gap, a span across the revision held, another epoch, a keepalive
    /// ahead: ask for a catch-up.
    CatchUp,
}

/// The follower's rule for `b` while it holds `held` (a real position).
pub fn next_step(held: Position, b: &BroadcastMsg<'_>) -> Next {
    if b.epoch != held.epoch {
        return Next::CatchUp;
    }
    match b.kind {
        Kind::Keepalive if b.to > held.revision => Next::CatchUp,
        Kind::Keepalive => Next::Ignore,
        _ if b.to <= held.revision => Next::Ignore,
        _ if b.from == held.revision => Next::Apply,
        _ => Next::CatchUp,
    }
}

impl Watcher {
    /// Applies a delta broadcast for which [`next_step`] said
    /// [`Next::Apply`], as the delta reply it equals.
    pub fn apply_broadcast(&mut self, b: &BroadcastMsg<'_>, dec: &mut Decoder) -> Applied {
        let reply = Reply {
            id: 0x8000_0000,
            kind: Kind::Delta,
            at: Position {
                epoch: b.epoch,
                revision: b.to,
            },
            payload: b.payload,
        };
        self.apply(&reply, dec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 0x0102_0304_0506_0708;

    fn at(revision: u64) -> Position {
        Position { epoch: E, revision }
    }

    /// A reply message: request id, kind, position, payload.
    fn msg(id: u32, kind: u8, at: Position, payload: &[u8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(&at.epoch.to_be_bytes());
        m.extend_from_slice(&at.revision.to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    fn apply(w: &mut Watcher, d: &mut Decoder, kind: u8, pos: Position, p: &[u8]) -> Applied {
        let m = msg(0x8000_0001, kind, pos, p);
        let r = parse_reply(&m).expect("well-formed");
        w.apply(&r, d)
    }

    fn held(w: &Watcher, d: &Decoder) -> Vec<String> {
        let mut v: Vec<String> = d
            .names
            .ids
            .iter()
            .filter(|(_, &id)| w.names.contains(id))
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn request_layout() {
        let mut out = Vec::new();
        encode_request(0x1234, Position::NOTHING, &mut out);
        assert_eq!(out, [&[0x80, 0, 0x12, 0x34][..], &[0; 16]].concat());
        out.clear();
        encode_request(0x8000_0007, at(0x0a0b), &mut out);
        assert_eq!(out.len(), 4 + REQUEST_BODY);
        assert_eq!(&out[..4], &[0x80, 0, 0, 7]);
        assert_eq!(&out[4..12], &E.to_be_bytes());
        assert_eq!(&out[12..], &[0, 0, 0, 0, 0, 0, 0x0a, 0x0b]);
    }

    #[test]
    fn request_ids_keep_the_top_bit_and_wrap() {
        assert_eq!(next_request_id(0), 0x8000_0001);
        assert_eq!(next_request_id(0x8000_0001), 0x8000_0002);
        assert_eq!(next_request_id(0xffff_ffff), 0x8000_0000);
        assert_eq!(next_request_id(0x7fff_ffff), 0x8000_0000);
    }

    #[test]
    fn replies_parse() {
        let m = msg(0x8000_0009, b'S', at(3), b"a|b");
        let r = parse_reply(&m).unwrap();
        assert_eq!(
            r,
            Reply {
                id: 0x8000_0009,
                kind: Kind::Snapshot,
                at: at(3),
                payload: b"a|b"
            }
        );
        let m = msg(0x8000_0009, b'D', at(4), b"");
        assert_eq!(parse_reply(&m).unwrap().kind, Kind::Delta);
        let m = msg(0x8000_0009, b'K', at(4), b"");
        assert_eq!(parse_reply(&m).unwrap().kind, Kind::Keepalive);
    }

    #[test]
    fn bad_replies_are_refused() {
        assert_eq!(
            parse_reply(&[0x80, 0, 0, 1, b'K']),
            Err(ReplyError::TooShort { len: 5 })
        );
        assert_eq!(
            parse_reply(&msg(1, b'K', at(1), b"")),
            Err(ReplyError::NoRequestId)
        );
        assert_eq!(
            parse_reply(&msg(0x8000_0001, b'X', at(1), b"")),
            Err(ReplyError::UnknownKind(b'X'))
        );
        let zero = Position {
            epoch: E,
            revision: 0,
        };
        assert_eq!(
            parse_reply(&msg(0x8000_0001, b'S', zero, b"")),
            Err(ReplyError::NotAPosition(zero))
        );
        assert_eq!(
            parse_reply(&msg(0x8000_0001, b'K', at(1), b"x")),
            Err(ReplyError::KeepalivePayload { len: 1 })
        );
        // Every error names its problem.
        assert!(ReplyError::UnknownKind(b'X').to_string().contains("0x58"));
    }

    #[test]
    fn snapshot_then_deltas_then_keepalive() {
        let (mut w, mut d) = (Watcher::default(), Decoder::default());
        assert_eq!(w.request(), Position::NOTHING);
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(1), b"a|b"),
            Applied::Snapshot { why: Why::Asked }
        );
        assert_eq!(w.request(), at(1));
        assert_eq!(held(&w, &d), ["a", "b"]);
        assert_eq!(
            apply(&mut w, &mut d, b'D', at(3), b"+c|-a"),
            Applied::Delta { joined: 1, left: 1 }
        );
        assert_eq!(held(&w, &d), ["b", "c"]);
        assert_eq!(w.names.len(), 2);
        assert_eq!(apply(&mut w, &mut d, b'K', at(3), b""), Applied::Keepalive);
        assert_eq!(
            apply(&mut w, &mut d, b'D', at(4), b""),
            Applied::Delta { joined: 0, left: 0 }
        );
        assert_eq!(w.request(), at(4));
        assert!(w.holds(b"c", &d.names));
        assert!(!w.holds(b"a", &d.names));
        assert!(!w.holds(b"never-seen", &d.names));
        // An empty snapshot is the empty list.
        apply(&mut w, &mut d, b'S', at(5), b"");
        assert!(w.names.is_empty());
    }

    #[test]
    fn deltas_that_do_not_apply_change_nothing_and_ask_for_a_snapshot() {
        let cases: [(&[u8], Position, Refusal); 7] = [
            (b"+a", at(2), Refusal::AddsPresent),
            (b"-z", at(2), Refusal::RemovesAbsent),
            (b"-a|-a", at(2), Refusal::Duplicate),
            (b"+c|+c", at(2), Refusal::Duplicate),
            (b"c", at(2), Refusal::NoSign),
            (b"+c|", at(2), Refusal::NoSign),
            (b"+c", at(1), Refusal::WrongRevision),
        ];
        for (payload, pos, why) in cases {
            let (mut w, mut d) = (Watcher::default(), Decoder::default());
            apply(&mut w, &mut d, b'S', at(1), b"a|b");
            assert_eq!(
                apply(&mut w, &mut d, b'D', pos, payload),
                Applied::Refused(why),
                "{}",
                String::from_utf8_lossy(payload)
            );
            assert_eq!(held(&w, &d), ["a", "b"], "applied in part");
            assert_eq!(w.request(), Position::NOTHING);
        }
        // Another epoch, a keepalive for another revision, anything while
        // holding nothing.
        let (mut w, mut d) = (Watcher::default(), Decoder::default());
        let other = Position {
            epoch: 9,
            revision: 2,
        };
        assert_eq!(
            apply(&mut w, &mut d, b'D', other, b"+a"),
            Applied::Refused(Refusal::HoldsNothing)
        );
        assert_eq!(
            apply(&mut w, &mut d, b'K', other, b""),
            Applied::Refused(Refusal::HoldsNothing)
        );
        apply(&mut w, &mut d, b'S', at(1), b"a");
        assert_eq!(
            apply(&mut w, &mut d, b'D', other, b"+b"),
            Applied::Refused(Refusal::WrongEpoch)
        );
        apply(&mut w, &mut d, b'S', at(1), b"a");
        assert_eq!(
            apply(&mut w, &mut d, b'K', at(2), b""),
            Applied::Refused(Refusal::WrongRevision)
        );
        // The snapshot it then asks for heals it.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(2), b"a|b"),
            Applied::Snapshot { why: Why::Asked }
        );
        assert_eq!(held(&w, &d), ["a", "b"]);
    }

    #[test]
    fn snapshots_asked_for_and_not() {
        let other = Position {
            epoch: 7,
            revision: 9,
        };
        assert!(snapshot_asked(Position::NOTHING, at(4)));
        assert!(snapshot_asked(other, at(4)), "another epoch");
        assert!(snapshot_asked(at(5), at(4)), "a revision never reached");
        assert!(!snapshot_asked(at(4), at(4)), "current");
        assert!(!snapshot_asked(at(3), at(4)), "behind in the same epoch");
        // Held "a|bb" at 1. To "a|bb|c" at 2: delta "+c" is 3 bytes, the
        // list's names 7: a snapshot was not needed.
        let (mut w, mut d) = (Watcher::default(), Decoder::default());
        apply(&mut w, &mut d, b'S', at(1), b"a|bb");
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(2), b"a|bb|c"),
            Applied::Snapshot { why: Why::Unasked }
        );
        // To "c" at 3: "-a|-bb" is 3 + 4 = 7 bytes, "c" 2: smaller.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(3), b"c"),
            Applied::Snapshot { why: Why::Smaller }
        );
        // To the empty list: any delta is larger than nothing.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(4), b""),
            Applied::Snapshot { why: Why::Smaller }
        );
        // From the empty list to "a|bb": "+a|+bb" 7 > 5.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(5), b"a|bb"),
            Applied::Snapshot { why: Why::Smaller }
        );
        // From "a|bb" at 5 to "a|bb|cc": delta "+cc" 4 bytes, names 8.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(6), b"a|bb|cc"),
            Applied::Snapshot { why: Why::Unasked }
        );
        // The same list at the same revision (the server should have held
        // the request): unasked.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(6), b"a|bb|cc"),
            Applied::Snapshot { why: Why::Unasked }
        );
        // A revision the server never reached: asked.
        assert_eq!(
            apply(&mut w, &mut d, b'S', at(2), b"a"),
            Applied::Snapshot { why: Why::Asked }
        );
    }

    #[test]
    fn delta_size_at_the_boundary() {
        // Held "abc|d" (names 6) to "abc|d|e" (names 8): "+e" = 3: unasked.
        // Held "a" (names 2) to "a|b" (names 4): "+b" = 3 <= 4: unasked.
        // Held "a" to "a|b|c" (names 6): "+b|+c" = 6, equal: the server
        // sends a delta only when it is not larger, so unasked.
        // Held "a" to "b": "-a|+b" = 6 > 2: smaller.
        let cases: [(&[u8], &[u8], Why); 4] = [
            (b"abc|d", b"abc|d|e", Why::Unasked),
            (b"a", b"a|b", Why::Unasked),
            (b"a", b"a|b|c", Why::Unasked),
            (b"a", b"b", Why::Smaller),
        ];
        for (from, to, why) in cases {
            let (mut w, mut d) = (Watcher::default(), Decoder::default());
            apply(&mut w, &mut d, b'S', at(1), from);
            assert_eq!(
                apply(&mut w, &mut d, b'S', at(2), to),
                Applied::Snapshot { why },
                "{} -> {}",
                String::from_utf8_lossy(from),
                String::from_utf8_lossy(to)
            );
        }
    }

    #[test]
    fn symmetric_differences() {
        let set = |ids: &[u32]| {
            let mut s = NameSet::default();
            for &i in ids {
                s.insert(i);
            }
            s
        };
        let a = set(&[1, 64, 130, 500]);
        let b = set(&[1, 65, 130]);
        let d: Vec<u32> = a.symmetric_difference(&b).collect();
        assert_eq!(d, [64, 65, 500]);
        let d: Vec<u32> = b.symmetric_difference(&a).collect();
        assert_eq!(d, [64, 65, 500]);
        assert_eq!(a.symmetric_difference(&a).count(), 0);
    }

    #[test]
    fn name_sets() {
        let mut s = NameSet::default();
        assert!(s.insert(3) && s.insert(200) && !s.insert(3));
        assert_eq!(s.len(), 2);
        assert!(s.contains(200) && !s.contains(4) && !s.contains(10_000));
        assert!(s.remove(3) && !s.remove(3) && !s.remove(99_999));
        assert_eq!(s.len(), 1);
        let mut n = Names::default();
        assert!(n.is_empty());
        assert_eq!(n.intern(b"a"), 0);
        assert_eq!(n.intern(b"b"), 1);
        assert_eq!(n.intern(b"a"), 0);
        assert_eq!((n.get(b"b"), n.get(b"c"), n.len()), (Some(1), None, 2));
    }

    #[test]
    fn the_snapshot_cache_never_returns_another_list() {
        let mut d = Decoder::default();
        let a = d.snapshot(at(1), b"a|b");
        assert_eq!(d.snapshot(at(1), b"a|b"), a);
        // Same position, other bytes (another server), and the reverse.
        let c = d.snapshot(at(1), b"c");
        assert_eq!(c.len(), 1);
        assert!(c.contains(d.names.get(b"c").unwrap()));
        assert_eq!(d.snapshot(at(2), b"a|b"), a);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        /// Names from a small alphabet, so lists overlap.
        fn lists() -> impl Strategy<Value = Vec<BTreeSet<String>>> {
            prop::collection::vec(prop::collection::btree_set("[a-e]{1,3}", 0..12), 1..8)
        }

        fn snapshot_payload(names: &BTreeSet<String>) -> Vec<u8> {
            names
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("|")
                .into_bytes()
        }

        fn delta_payload(from: &BTreeSet<String>, to: &BTreeSet<String>) -> Vec<u8> {
            let joined = to.difference(from).map(|n| format!("+{n}"));
            let left = from.difference(to).map(|n| format!("-{n}"));
            joined
                .chain(left)
                .collect::<Vec<_>>()
                .join("|")
                .into_bytes()
        }

        fn holds(w: &Watcher, d: &Decoder) -> BTreeSet<String> {
            held(w, d).into_iter().collect()
        }

        proptest! {
            /// A snapshot then the deltas between successive lists leave
            /// the watcher holding exactly each list in turn, at each
            /// revision, and its next request names that revision.
            #[test]
            fn deltas_follow_the_lists(lists in lists()) {
                let (mut w, mut d) = (Watcher::default(), Decoder::default());
                let first = apply(&mut w, &mut d, b'S', at(1), &snapshot_payload(&lists[0]));
                prop_assert_eq!(first, Applied::Snapshot { why: Why::Asked });
                prop_assert_eq!(&holds(&w, &d), &lists[0]);
                for (i, pair) in lists.windows(2).enumerate() {
                    let rev = i as u64 + 2;
                    let out = apply(&mut w, &mut d, b'D', at(rev), &delta_payload(&pair[0], &pair[1]));
                    let joined = pair[1].difference(&pair[0]).count();
                    let left = pair[0].difference(&pair[1]).count();
                    prop_assert_eq!(out, Applied::Delta { joined, left });
                    prop_assert_eq!(&holds(&w, &d), &pair[1]);
                    prop_assert_eq!(w.names.len(), pair[1].len());
                    prop_assert_eq!(w.request(), at(rev));
                }
            }

            /// Any delta payload at all either applies exactly (the held
            /// set changes by its entries) or is refused, leaving the names
            /// as they were and asking for a snapshot next.
            #[test]
            fn any_delta_applies_whole_or_not_at_all(
                list in prop::collection::btree_set("[a-c]{1,2}", 0..6),
                payload in "[-+|a-c]{0,16}",
            ) {
                let (mut w, mut d) = (Watcher::default(), Decoder::default());
                apply(&mut w, &mut d, b'S', at(1), &snapshot_payload(&list));
                let before = holds(&w, &d);
                match apply(&mut w, &mut d, b'D', at(2), payload.as_bytes()) {
                    Applied::Delta { joined, left } => {
                        let after = holds(&w, &d);
                        prop_assert_eq!(after.difference(&before).count(), joined);
                        prop_assert_eq!(before.difference(&after).count(), left);
                        prop_assert_eq!(w.request(), at(2));
                    }
                    Applied::Refused(_) => {
                        prop_assert_eq!(holds(&w, &d), before);
                        prop_assert_eq!(w.request(), Position::NOTHING);
                    }
                    other => prop_assert!(false, "a delta gave {:?}", other),
                }
            }

            /// The reply framing round-trips any position and payload.
            #[test]
            fn replies_round_trip(
                id in any::<u32>(),
                epoch in 1..u64::MAX,
                revision in 1..u64::MAX,
                kind in prop::sample::select(vec![b'S', b'D']),
                payload in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                let id = id | 0x8000_0000;
                let pos = Position { epoch, revision };
                let m = msg(id, kind, pos, &payload);
                let r = parse_reply(&m).unwrap();
                prop_assert_eq!(r.id, id);
                prop_assert_eq!(r.at, pos);
                prop_assert_eq!(r.payload, &payload[..]);
                let mut req = Vec::new();
                encode_request(id, pos, &mut req);
                prop_assert_eq!(&req[..4], &id.to_be_bytes());
                prop_assert_eq!(&req[4..12], &epoch.to_be_bytes());
                prop_assert_eq!(&req[12..], &revision.to_be_bytes());
            }
        }
    }

    #[test]
    fn broadcasts_parse_and_steer_the_follower() {
        let mut msg = vec![b'D'];
        for w in [9u64, 3, 5] {
            msg.extend_from_slice(&w.to_be_bytes());
        }
        msg.extend_from_slice(b"+b|-a");
        let b = parse_broadcast(&msg).unwrap();
        assert_eq!(
            (b.kind, b.epoch, b.from, b.to, b.payload),
            (Kind::Delta, 9, 3, 5, &b"+b|-a"[..])
        );
        let at = |r| Position {
            epoch: 9,
            revision: r,
        };
        assert_eq!(next_step(at(3), &b), Next::Apply);
        assert_eq!(next_step(at(5), &b), Next::Ignore);
        assert_eq!(next_step(at(4), &b), Next::CatchUp);
        assert_eq!(next_step(at(2), &b), Next::CatchUp);
        assert_eq!(
            next_step(
                Position {
                    epoch: 8,
                    revision: 3
                },
                &b
            ),
            Next::CatchUp
        );
        let mut k = vec![b'K'];
        for w in [9u64, 5, 5] {
            k.extend_from_slice(&w.to_be_bytes());
        }
        let k = parse_broadcast(&k).unwrap();
        assert_eq!(next_step(at(5), &k), Next::Ignore);
        assert_eq!(next_step(at(4), &k), Next::CatchUp);
        assert!(parse_broadcast(&msg[..24]).is_err());
        let mut bad = msg.clone();
        bad[0] = b'S';
        assert!(parse_broadcast(&bad).is_err());
        let mut out = Vec::new();
        encode_follow_request(0x8000_0001, at(3), &mut out);
        assert_eq!(out.len(), 4 + 16 + 1);
        assert_eq!(out[20], CAN_FOLLOW);
    }
}
