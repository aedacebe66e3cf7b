//! The replication stream: framed messages, each a 20-byte header (magic
//! "MRRP", version, kind, flags, a reserved zero byte, a sequence number,
//! the payload length), the payload, and a 16-byte tag: HMAC-SHA256,
//! truncated, over the frame's position in its direction of the session
//! (a counter both ends keep; it is never sent), the header and the payload.
//! The header is checked (magic, version, kind, a length bounded per kind)
//! before any payload is read or allocated; the tag is checked before the
//! payload is interpreted. A frame that fails either check ends the
//! connection: Parse for a malformed frame, Auth for one that does not
//! verify (another key, a changed byte, a replayed, dropped or reordered
//! frame: the counter under the MAC differs).
//!
//! Keys: a handshake key derived from the pre-shared key tags HELLO,
//! CHALLENGE and AUTH; each session then has one key per direction, derived
//! from the pre-shared key and both sides' nonces (see `auth`).

use super::auth::{FrameKey, NONCE_LEN, PROOF_LEN, TAG_LEN};
use crate::error::{Error, ErrorKind, Result};
use std::io::{ErrorKind as IoKind, Read};

const MAGIC: [u8; 4] = *b"MRRP";
const VERSION: u8 = 2;
/// cbindgen:ignore
pub const HEADER_LEN: usize = 20;
/// Data bytes in one WRITE frame at most; larger writes are split.
/// cbindgen:ignore
pub const MAX_WRITE_DATA: usize = 1 << 20;
const MAX_PAYLOAD: usize = 8 + MAX_WRITE_DATA;
const MAX_ERROR_TEXT: usize = 1024;
/// WRITE flag: make this write durable (fdatasync) before acknowledging it.
const FLAG_DURABLE: u8 = 1;

mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const WELCOME: u8 = 2;
    pub(super) const WRITE: u8 = 3;
    pub(super) const BARRIER: u8 = 4;
    pub(super) const ACK: u8 = 5;
    pub(super) const BARRIER_ACK: u8 = 6;
    pub(super) const PING: u8 = 7;
    pub(super) const ERROR: u8 = 8;
    pub(super) const CHALLENGE: u8 = 9;
    pub(super) const AUTH: u8 = 10;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Primary -> secondary, first frame: the volume geometry to match and
    /// the primary's nonce.
    Hello { block_size: u32, block_count: u64, nonce: [u8; NONCE_LEN] },
    /// Secondary -> primary: the secondary's nonce and its proof of the
    /// key over both nonces.
    Challenge { nonce: [u8; NONCE_LEN], proof: [u8; PROOF_LEN] },
    /// Primary -> secondary: the primary's proof of the key over both nonces.
    Auth { proof: [u8; PROOF_LEN] },
    /// Secondary -> primary, first frame under the session keys: accepted.
    Welcome,
    /// Primary -> secondary: whole blocks from `block`; `seq` grows by one
    /// per write; `durable`: on stable storage before the acknowledgement.
    Write { seq: u64, block: u64, durable: bool, data: Vec<u8> },
    /// Primary -> secondary: checkpoint `id` after every earlier write.
    Barrier { id: u64 },
    /// Secondary -> primary: every write up to `seq` is applied (and durable
    /// if it asked to be).
    Ack { seq: u64 },
    /// Secondary -> primary: checkpoint `id` is done.
    BarrierAck { id: u64 },
    /// Keepalive; the secondary answers with an Ack.
    Ping,
    /// Either side, before closing: why.
    Error { text: String },
}

impl Msg {
    /// The message kind, for errors (never the payload).
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "HELLO",
            Msg::Challenge { .. } => "CHALLENGE",
            Msg::Auth { .. } => "AUTH",
            Msg::Welcome => "WELCOME",
            Msg::Write { .. } => "WRITE",
            Msg::Barrier { .. } => "BARRIER",
            Msg::Ack { .. } => "ACK",
            Msg::BarrierAck { .. } => "BARRIER_ACK",
            Msg::Ping => "PING",
            Msg::Error { .. } => "ERROR",
        }
    }
}

/// One direction of a session: the key and the number of frames sealed or
/// opened so far (the counter under each frame's MAC).
#[derive(Clone)]
pub struct Direction {
    key: FrameKey,
    counter: u64,
}

impl Direction {
    pub fn new(key: FrameKey) -> Self {
        Direction { key, counter: 0 }
    }

    /// Frames sealed or opened in this direction.
    pub fn frames(&self) -> u64 {
        self.counter
    }
}

/// Appends the sealed frame for `msg` to `out`.
pub fn encode(msg: &Msg, dir: &mut Direction, out: &mut Vec<u8>) {
    match msg {
        Msg::Hello { block_size, block_count, nonce } => {
            frame(dir, kind::HELLO, 0, 0, &[&block_size.to_le_bytes(), &block_count.to_le_bytes(), nonce], out)
        }
        Msg::Challenge { nonce, proof } => frame(dir, kind::CHALLENGE, 0, 0, &[nonce, proof], out),
        Msg::Auth { proof } => frame(dir, kind::AUTH, 0, 0, &[proof], out),
        Msg::Welcome => frame(dir, kind::WELCOME, 0, 0, &[], out),
        Msg::Write { seq, block, durable, data } => encode_write(dir, *seq, *block, *durable, data, out),
        Msg::Barrier { id } => frame(dir, kind::BARRIER, 0, *id, &[], out),
        Msg::Ack { seq } => frame(dir, kind::ACK, 0, *seq, &[], out),
        Msg::BarrierAck { id } => frame(dir, kind::BARRIER_ACK, 0, *id, &[], out),
        Msg::Ping => frame(dir, kind::PING, 0, 0, &[], out),
        Msg::Error { text } => {
            let cut = text.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|&end| end <= MAX_ERROR_TEXT).last();
            frame(dir, kind::ERROR, 0, 0, &[&text.as_bytes()[..cut.unwrap_or(0)]], out)
        }
    }
}

/// A WRITE frame without first copying `data` into a `Msg`.
pub fn encode_write(dir: &mut Direction, seq: u64, block: u64, durable: bool, data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(data.len() <= MAX_WRITE_DATA);
    let flags = if durable { FLAG_DURABLE } else { 0 };
    frame(dir, kind::WRITE, flags, seq, &[&block.to_le_bytes(), data], out)
}

fn frame(dir: &mut Direction, kind: u8, flags: u8, seq: u64, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(HEADER_LEN + len + TAG_LEN);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, kind, flags, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    let tag = dir.key.tag(dir.counter, &out[start..]);
    dir.counter += 1;
    out.extend_from_slice(&tag);
}

fn corrupt(what: String) -> Error {
    Error::new(ErrorKind::Parse, format!("corrupt replication stream: {what}"))
}

fn read_full(r: &mut impl Read, buf: &mut [u8], at_start: bool) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) if done == 0 && at_start => return Err(Error::new(ErrorKind::Io, "peer closed the connection")),
            Ok(0) => return Err(corrupt(format!("connection ended inside a frame ({done} of {} bytes)", buf.len()))),
            Ok(n) => done += n,
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {
                return Err(Error::new(ErrorKind::Timeout, "peer sent nothing within the peer timeout"))
            }
            Err(e) => return Err(Error::from_io("replication read", &e)),
        }
    }
    Ok(())
}

/// A frame whose header and tag were checked, not yet interpreted. A
/// WRITE's first 8 payload bytes (the block number) are kept apart, so its
/// data lands in its own buffer without being moved.
struct Frame {
    kind: u8,
    flags: u8,
    seq: u64,
    prefix: [u8; 8],
    payload: Vec<u8>,
}

/// Reads exactly `len` bytes into a new vector (no zero-filling first).
fn read_vec(r: &mut impl Read, len: usize) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(len);
    loop {
        match r.by_ref().take((len - v.len()) as u64).read_to_end(&mut v) {
            Ok(_) => break,
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {
                return Err(Error::new(ErrorKind::Timeout, "peer sent nothing within the peer timeout"))
            }
            Err(e) => return Err(Error::from_io("replication read", &e)),
        }
    }
    if v.len() < len {
        return Err(corrupt(format!("connection ended inside a frame ({} of {len} payload bytes)", v.len())));
    }
    Ok(v)
}

/// Reads one frame and checks its header (before reading the payload).
/// Returns the frame with the tag check's outcome: `Err` is an Auth error.
fn read_frame(r: &mut impl Read, dir: &mut Direction) -> Result<(Frame, Result<()>)> {
    let mut h = [0u8; HEADER_LEN];
    read_full(r, &mut h, true)?;
    if h[0..4] != MAGIC {
        return Err(corrupt(format!("bad magic {:02x?}", &h[0..4])));
    }
    if h[4] != VERSION {
        return Err(corrupt(format!("protocol version {} (this library speaks {VERSION})", h[4])));
    }
    if h[7] != 0 {
        return Err(corrupt("reserved header byte is not zero".into()));
    }
    let (kind, flags) = (h[5], h[6]);
    let seq = u64::from_le_bytes(h[8..16].try_into().unwrap());
    let len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
    let allowed = match kind {
        kind::HELLO => 12 + NONCE_LEN..=12 + NONCE_LEN,
        kind::CHALLENGE => NONCE_LEN + PROOF_LEN..=NONCE_LEN + PROOF_LEN,
        kind::AUTH => PROOF_LEN..=PROOF_LEN,
        kind::WRITE => 9..=MAX_PAYLOAD,
        kind::ERROR => 0..=MAX_ERROR_TEXT,
        kind::WELCOME | kind::BARRIER | kind::ACK | kind::BARRIER_ACK | kind::PING => 0..=0,
        other => return Err(corrupt(format!("unknown message kind {other}"))),
    };
    if !allowed.contains(&len) {
        return Err(corrupt(format!("message kind {kind} with a payload of {len} bytes")));
    }
    let known_flags = if kind == kind::WRITE { FLAG_DURABLE } else { 0 };
    if flags & !known_flags != 0 {
        return Err(corrupt(format!("message kind {kind} with unknown flags {flags:#04x}")));
    }
    let mut prefix = [0u8; 8];
    let prefix_len = if kind == kind::WRITE { 8 } else { 0 };
    read_full(r, &mut prefix[..prefix_len], false)?;
    let rest = read_vec(r, len - prefix_len)?;
    let mut tag = [0u8; TAG_LEN];
    read_full(r, &mut tag, false)?;
    let verified = dir.key.verify(dir.counter, &[&h, &prefix[..prefix_len], &rest], &tag).map_err(|()| {
        Error::new(
            ErrorKind::Auth,
            format!(
                "frame {} ({}) does not verify: another key, a changed byte, or a replayed or reordered frame",
                dir.counter,
                kind_name(kind)
            ),
        )
    });
    dir.counter += 1;
    Ok((Frame { kind, flags, seq, prefix, payload: rest }, verified))
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        kind::HELLO => "HELLO",
        kind::CHALLENGE => "CHALLENGE",
        kind::AUTH => "AUTH",
        kind::WELCOME => "WELCOME",
        kind::WRITE => "WRITE",
        kind::BARRIER => "BARRIER",
        kind::ACK => "ACK",
        kind::BARRIER_ACK => "BARRIER_ACK",
        kind::PING => "PING",
        _ => "ERROR",
    }
}

fn interpret(f: Frame) -> Result<Msg> {
    let Frame { kind, flags, seq, prefix, payload } = f;
    Ok(match kind {
        kind::HELLO => Msg::Hello {
            block_size: u32::from_le_bytes(payload[0..4].try_into().unwrap()),
            block_count: u64::from_le_bytes(payload[4..12].try_into().unwrap()),
            nonce: payload[12..12 + NONCE_LEN].try_into().unwrap(),
        },
        kind::CHALLENGE => Msg::Challenge {
            nonce: payload[..NONCE_LEN].try_into().unwrap(),
            proof: payload[NONCE_LEN..].try_into().unwrap(),
        },
        kind::AUTH => Msg::Auth { proof: payload[..].try_into().unwrap() },
        kind::WELCOME => Msg::Welcome,
        kind::WRITE => Msg::Write { seq, block: u64::from_le_bytes(prefix), durable: flags & FLAG_DURABLE != 0, data: payload },
        kind::BARRIER => Msg::Barrier { id: seq },
        kind::ACK => Msg::Ack { seq },
        kind::BARRIER_ACK => Msg::BarrierAck { id: seq },
        kind::PING => Msg::Ping,
        _ => Msg::Error { text: String::from_utf8(payload).map_err(|_| corrupt("an ERROR text that is not UTF-8".into()))? },
    })
}

/// Reads, checks and verifies one frame.
pub fn read_msg(r: &mut impl Read, dir: &mut Direction) -> Result<Msg> {
    let (frame, verified) = read_frame(r, dir)?;
    verified?;
    interpret(frame)
}

/// During a handshake: like `read_msg`, but an ERROR frame that does not
/// verify is still returned, marked unverified (a peer with another key
/// can only tell us why in a frame we cannot verify). Anything else that
/// does not verify is an Auth error.
pub fn read_handshake_msg(r: &mut impl Read, dir: &mut Direction) -> Result<(Msg, bool)> {
    let (frame, verified) = read_frame(r, dir)?;
    match verified {
        Ok(()) => Ok((interpret(frame)?, true)),
        Err(_) if frame.kind == kind::ERROR => Ok((interpret(frame)?, false)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::auth::FrameKey;

    fn dir() -> Direction {
        Direction::new(FrameKey::new(b"0123456789abcdef-test-key"))
    }

    fn roundtrip(msg: Msg) {
        let (mut tx, mut rx) = (dir(), dir());
        let mut buf = Vec::new();
        encode(&msg, &mut tx, &mut buf);
        encode(&msg, &mut tx, &mut buf);
        let mut input = &buf[..];
        assert_eq!(read_msg(&mut input, &mut rx).unwrap(), msg);
        assert_eq!(read_msg(&mut input, &mut rx).unwrap(), msg);
        assert_eq!((tx.frames(), rx.frames()), (2, 2));
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(Msg::Hello { block_size: 4096, block_count: 77, nonce: [3; NONCE_LEN] });
        roundtrip(Msg::Challenge { nonce: [4; NONCE_LEN], proof: [5; PROOF_LEN] });
        roundtrip(Msg::Auth { proof: [6; PROOF_LEN] });
        roundtrip(Msg::Welcome);
        roundtrip(Msg::Write { seq: 9, block: 3, durable: false, data: vec![7; 1024] });
        roundtrip(Msg::Write { seq: 10, block: 3, durable: true, data: vec![8; 512] });
        roundtrip(Msg::Barrier { id: 4 });
        roundtrip(Msg::Ack { seq: 12 });
        roundtrip(Msg::BarrierAck { id: 4 });
        roundtrip(Msg::Ping);
        roundtrip(Msg::Error { text: "geometry differs".into() });
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let mut good = Vec::new();
        encode(&Msg::Write { seq: 1, block: 2, durable: false, data: vec![5; 512] }, &mut dir(), &mut good);
        for i in 0..good.len() {
            for bit in [0x01u8, 0x40] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                let err = read_msg(&mut &bad[..], &mut dir()).unwrap_err();
                assert!(matches!(err.kind, ErrorKind::Parse | ErrorKind::Auth), "flipping byte {i}: {err}");
                if i >= HEADER_LEN {
                    assert_eq!(err.kind, ErrorKind::Auth, "payload or tag byte {i}: {err}");
                }
            }
        }
        let err = read_msg(&mut &good[..good.len() - 1], &mut dir()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Parse);
        assert_eq!(read_msg(&mut &good[..0], &mut dir()).unwrap_err().kind, ErrorKind::Io);
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_msg(&mut &huge[..], &mut dir()).unwrap_err().message.contains("payload"));
    }

    #[test]
    fn replayed_reordered_and_foreign_frames_are_refused() {
        let mut tx = dir();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode(&Msg::Ack { seq: 1 }, &mut tx, &mut a);
        encode(&Msg::Ack { seq: 2 }, &mut tx, &mut b);
        // Replay: the same frame twice.
        let mut rx = dir();
        read_msg(&mut &a[..], &mut rx).unwrap();
        assert_eq!(read_msg(&mut &a[..], &mut rx).unwrap_err().kind, ErrorKind::Auth);
        // Reorder: the second frame first.
        assert_eq!(read_msg(&mut &b[..], &mut dir()).unwrap_err().kind, ErrorKind::Auth);
        // Another key.
        let mut other = Direction::new(FrameKey::new(b"another key, 16+ bytes long"));
        assert_eq!(read_msg(&mut &a[..], &mut other).unwrap_err().kind, ErrorKind::Auth);
        // An unverifiable ERROR is surfaced during the handshake, marked.
        let mut e = Vec::new();
        encode(&Msg::Error { text: "nope".into() }, &mut Direction::new(FrameKey::new(b"another key, 16+ bytes long")), &mut e);
        let (msg, verified) = read_handshake_msg(&mut &e[..], &mut dir()).unwrap();
        assert_eq!((msg, verified), (Msg::Error { text: "nope".into() }, false));
        assert_eq!(read_handshake_msg(&mut &a[..], &mut other).unwrap_err().kind, ErrorKind::Auth);
    }

    /// Not a test: writes the fuzz target's seed corpus (frames sealed with
    /// the target's key, after its mode byte) into $MR_FUZZ_SEED_DIR.
    /// `MR_FUZZ_SEED_DIR=fuzz/corpus/repl_wire cargo test --release -- --ignored write_fuzz_seeds`
    #[test]
    #[ignore]
    fn write_fuzz_seeds() {
        let Ok(dir) = std::env::var("MR_FUZZ_SEED_DIR") else { return };
        let key = b"meshring fuzz session key, 32 B!";
        let seeds = [
            ("hello", Msg::Hello { block_size: 4096, block_count: 1024, nonce: [7; NONCE_LEN] }),
            ("challenge", Msg::Challenge { nonce: [8; NONCE_LEN], proof: [9; PROOF_LEN] }),
            ("auth", Msg::Auth { proof: [10; PROOF_LEN] }),
            ("welcome", Msg::Welcome),
            ("write", Msg::Write { seq: 1, block: 3, durable: false, data: vec![0xab; 512] }),
            ("write_durable", Msg::Write { seq: 2, block: 4, durable: true, data: vec![0xcd; 4096] }),
            ("barrier", Msg::Barrier { id: 1 }),
            ("ack", Msg::Ack { seq: 9 }),
            ("barrier_ack", Msg::BarrierAck { id: 1 }),
            ("ping", Msg::Ping),
            ("error", Msg::Error { text: "volume geometry differs".into() }),
        ];
        for (name, msg) in &seeds {
            // Mode 1 (re-tagged by the target) and mode 0 (tagged here, as sent).
            for (mode, suffix) in [(1u8, ""), (0u8, "_raw")] {
                let mut out = vec![mode];
                let mut d = Direction::new(FrameKey::new(key));
                encode(msg, &mut d, &mut out);
                encode(&Msg::Ping, &mut d, &mut out);
                std::fs::write(format!("{dir}/{name}{suffix}"), out).unwrap();
            }
        }
    }

    #[test]
    fn unknown_flags_and_reserved_bytes_are_parse_errors() {
        let mut good = Vec::new();
        encode(&Msg::Ping, &mut dir(), &mut good);
        let mut bad = good.clone();
        bad[6] = FLAG_DURABLE;
        assert!(read_msg(&mut &bad[..], &mut dir()).unwrap_err().message.contains("flags"));
        let mut bad = good.clone();
        bad[7] = 1;
        assert!(read_msg(&mut &bad[..], &mut dir()).unwrap_err().message.contains("reserved"));
    }
}
