//! The replication stream on TCP: framed messages, each a 24-byte header
//! (magic "MRRP", version, kind, sequence number, payload length, CRC-32C
//! over header and payload) and a payload. Anything that does not parse
//! exactly is a Parse error naming what was wrong; the connection is then
//! dropped, never trusted.

use crate::error::{Error, ErrorKind, Result};
use std::io::{ErrorKind as IoKind, Read};

const MAGIC: [u8; 4] = *b"MRRP";
const VERSION: u8 = 1;
/// cbindgen:ignore
pub const HEADER_LEN: usize = 24;
/// Data bytes in one WRITE frame at most; larger writes are split.
/// cbindgen:ignore
pub const MAX_WRITE_DATA: usize = 1 << 20;
const MAX_PAYLOAD: usize = 8 + MAX_WRITE_DATA;
const MAX_ERROR_TEXT: usize = 1024;

mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const WELCOME: u8 = 2;
    pub(super) const WRITE: u8 = 3;
    pub(super) const BARRIER: u8 = 4;
    pub(super) const ACK: u8 = 5;
    pub(super) const BARRIER_ACK: u8 = 6;
    pub(super) const PING: u8 = 7;
    pub(super) const ERROR: u8 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Primary -> secondary, first frame: the volume geometry to match.
    Hello { block_size: u32, block_count: u64 },
    /// Secondary -> primary: geometry accepted.
    Welcome,
    /// Primary -> secondary: whole blocks from `block`; `seq` grows by one per write.
    Write { seq: u64, block: u64, data: Vec<u8> },
    /// Primary -> secondary: checkpoint `id` after every earlier write.
    Barrier { id: u64 },
    /// Secondary -> primary: every write up to `seq` is applied.
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

/// Appends the encoded frame for `msg` to `out`.
pub fn encode(msg: &Msg, out: &mut Vec<u8>) {
    match msg {
        Msg::Hello { block_size, block_count } => {
            let mut p = block_size.to_le_bytes().to_vec();
            p.extend_from_slice(&block_count.to_le_bytes());
            frame(kind::HELLO, 0, &[&p], out)
        }
        Msg::Welcome => frame(kind::WELCOME, 0, &[], out),
        Msg::Write { seq, block, data } => encode_write(*seq, *block, data, out),
        Msg::Barrier { id } => frame(kind::BARRIER, *id, &[], out),
        Msg::Ack { seq } => frame(kind::ACK, *seq, &[], out),
        Msg::BarrierAck { id } => frame(kind::BARRIER_ACK, *id, &[], out),
        Msg::Ping => frame(kind::PING, 0, &[], out),
        Msg::Error { text } => {
            let cut = text.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|&end| end <= MAX_ERROR_TEXT).last();
            frame(kind::ERROR, 0, &[&text.as_bytes()[..cut.unwrap_or(0)]], out)
        }
    }
}

/// A WRITE frame without first copying `data` into a `Msg`.
pub fn encode_write(seq: u64, block: u64, data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(data.len() <= MAX_WRITE_DATA);
    frame(kind::WRITE, seq, &[&block.to_le_bytes(), data], out)
}

fn frame(kind: u8, seq: u64, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, kind, 0, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let mut crc = crc32c::update(!0, &out[start..start + 20]);
    for p in parts {
        crc = crc32c::update(crc, p);
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
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

/// Reads and validates one frame.
pub fn read_msg(r: &mut impl Read) -> Result<Msg> {
    let mut h = [0u8; HEADER_LEN];
    read_full(r, &mut h, true)?;
    if h[0..4] != MAGIC {
        return Err(corrupt(format!("bad magic {:02x?}", &h[0..4])));
    }
    if h[4] != VERSION {
        return Err(corrupt(format!("protocol version {} (this library speaks {VERSION})", h[4])));
    }
    if h[6] != 0 || h[7] != 0 {
        return Err(corrupt("reserved header bytes are not zero".into()));
    }
    let kind = h[5];
    let seq = u64::from_le_bytes(h[8..16].try_into().unwrap());
    let len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
    let want_crc = u32::from_le_bytes(h[20..24].try_into().unwrap());
    let allowed = match kind {
        kind::HELLO => 12..=12,
        kind::WRITE => 9..=MAX_PAYLOAD,
        kind::ERROR => 0..=MAX_ERROR_TEXT,
        kind::WELCOME | kind::BARRIER | kind::ACK | kind::BARRIER_ACK | kind::PING => 0..=0,
        other => return Err(corrupt(format!("unknown message kind {other}"))),
    };
    if !allowed.contains(&len) {
        return Err(corrupt(format!("message kind {kind} with a payload of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    read_full(r, &mut payload, false)?;
    let crc = !crc32c::update(crc32c::update(!0, &h[..20]), &payload);
    if crc != want_crc {
        return Err(corrupt(format!("checksum mismatch (frame says {want_crc:#010x}, content gives {crc:#010x})")));
    }
    Ok(match kind {
        kind::HELLO => Msg::Hello {
            block_size: u32::from_le_bytes(payload[0..4].try_into().unwrap()),
            block_count: u64::from_le_bytes(payload[4..12].try_into().unwrap()),
        },
        kind::WELCOME => Msg::Welcome,
        kind::WRITE => {
            let block = u64::from_le_bytes(payload[0..8].try_into().unwrap());
            payload.drain(..8);
            Msg::Write { seq, block, data: payload }
        }
        kind::BARRIER => Msg::Barrier { id: seq },
        kind::ACK => Msg::Ack { seq },
        kind::BARRIER_ACK => Msg::BarrierAck { id: seq },
        kind::PING => Msg::Ping,
        _ => Msg::Error { text: String::from_utf8_lossy(&payload).into_owned() },
    })
}

/// CRC-32C (Castagnoli), slicing by 8, tables built at compile time.
mod crc32c {
    const POLY: u32 = 0x82f6_3b78;

    const fn tables() -> [[u32; 256]; 8] {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut i = 0;
        while i < 256 {
            let mut s = 1;
            while s < 8 {
                let prev = t[s - 1][i];
                t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
                s += 1;
            }
            i += 1;
        }
        t
    }

    static T: [[u32; 256]; 8] = tables();

    /// Continues a CRC (pre-inverted state in, pre-inverted state out): the
    /// CPU's CRC32C instruction where there is one, else the tables.
    pub fn update(crc: u32, data: &[u8]) -> u32 {
        crate::sys::crc32c_hw(crc, data).unwrap_or_else(|| update_table(crc, data))
    }

    pub fn update_table(mut crc: u32, data: &[u8]) -> u32 {
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = T[7][(lo & 0xff) as usize]
                ^ T[6][((lo >> 8) & 0xff) as usize]
                ^ T[5][((lo >> 16) & 0xff) as usize]
                ^ T[4][(lo >> 24) as usize]
                ^ T[3][(hi & 0xff) as usize]
                ^ T[2][((hi >> 8) & 0xff) as usize]
                ^ T[1][((hi >> 16) & 0xff) as usize]
                ^ T[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ T[0][((crc ^ b as u32) & 0xff) as usize];
        }
        crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(msg: Msg) {
        let mut buf = Vec::new();
        encode(&msg, &mut buf);
        assert_eq!(read_msg(&mut &buf[..]).unwrap(), msg);
    }

    #[test]
    fn crc32c_known_value() {
        assert_eq!(!crc32c::update(!0, b"123456789"), 0xe306_9283);
        assert_eq!(!crc32c::update_table(!0, b"123456789"), 0xe306_9283);
        // The instruction and the tables agree on every length and alignment.
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for (start, len) in [(0, 0), (0, 1), (1, 7), (3, 8), (5, 4096), (0, 5000), (7, 4093)] {
            let part = &data[start..start + len];
            assert_eq!(crc32c::update(!0, part), crc32c::update_table(!0, part), "{start}+{len}");
            assert_eq!(crc32c::update(0x1234_5678, part), crc32c::update_table(0x1234_5678, part), "{start}+{len}");
        }
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(Msg::Hello { block_size: 4096, block_count: 77 });
        roundtrip(Msg::Welcome);
        roundtrip(Msg::Write { seq: 9, block: 3, data: vec![7; 1024] });
        roundtrip(Msg::Barrier { id: 4 });
        roundtrip(Msg::Ack { seq: 12 });
        roundtrip(Msg::BarrierAck { id: 4 });
        roundtrip(Msg::Ping);
        roundtrip(Msg::Error { text: "geometry differs".into() });
    }

    #[test]
    fn every_corruption_is_a_parse_error() {
        let mut good = Vec::new();
        encode(&Msg::Write { seq: 1, block: 2, data: vec![5; 512] }, &mut good);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            let err = read_msg(&mut &bad[..]).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Parse, "flipping byte {i}: {err}");
        }
        let err = read_msg(&mut &good[..good.len() - 1]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Parse);
        assert_eq!(read_msg(&mut &good[..0]).unwrap_err().kind, ErrorKind::Io);
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_msg(&mut &huge[..]).unwrap_err().message.contains("payload"));
    }
}
