//! Authentication of the replication link: a pre-shared key (16 to 64
//! bytes, given to both sides), a challenge-response handshake bound to
//! both sides' nonces, and per-session, per-direction frame keys. HMAC-SHA256
//! (RustCrypto `hmac` + `sha2`) throughout; nothing here is a hand-written
//! primitive.
//!
//! ```text
//! primary                                         secondary
//! HELLO(geometry, Np)          -- K_hs -->        checks the tag, the geometry
//!                              <-- K_hs --        CHALLENGE(Ns, proof_s = H(psk, "secondary", Np, Ns))
//! checks proof_s
//! AUTH(proof_p = H(psk, "primary", Np, Ns))  -- K_hs -->   checks proof_p, the takeover rule
//!                              <-- K_sp --        WELCOME (or ERROR)
//! session: K_ps = H(psk, "p->s", Np, Ns), K_sp = H(psk, "s->p", Np, Ns)
//! ```
//!
//! Each side proves the key over a nonce the other just drew, so a recorded
//! handshake replayed later fails; a recorded frame replayed inside a
//! session fails the counter under its MAC; a frame from another session
//! fails its key. Tags are the first 16 bytes of the HMAC, checked in
//! constant time.

use super::wire::{self, Direction, Msg};
use crate::error::{Error, ErrorKind, Result};
use hmac::{KeyInit, Mac};
use std::io::{Read, Write};
use std::sync::Arc;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// cbindgen:ignore
pub const NONCE_LEN: usize = 32;
/// cbindgen:ignore
pub const PROOF_LEN: usize = 32;
/// cbindgen:ignore
pub const TAG_LEN: usize = 16;
/// cbindgen:ignore
pub const MIN_KEY_LEN: usize = 16;
/// cbindgen:ignore
pub const MAX_KEY_LEN: usize = 64;

/// A frame key: HMAC-SHA256 with the key schedule done once; each frame
/// clones the keyed state.
#[derive(Clone)]
pub struct FrameKey {
    mac: HmacSha256,
}

impl FrameKey {
    pub fn new(key: &[u8]) -> Self {
        FrameKey { mac: HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length") }
    }

    /// The tag of the frame bytes `data` at position `counter`.
    pub fn tag(&self, counter: u64, data: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac.clone();
        m.update(&counter.to_le_bytes());
        m.update(data);
        let full = m.finalize().into_bytes();
        full[..TAG_LEN].try_into().unwrap()
    }

    /// Checks `tag` over the concatenated `parts` at `counter` (constant time).
    pub fn verify(&self, counter: u64, parts: &[&[u8]], tag: &[u8; TAG_LEN]) -> std::result::Result<(), ()> {
        let mut m = self.mac.clone();
        m.update(&counter.to_le_bytes());
        for p in parts {
            m.update(p);
        }
        m.verify_truncated_left(tag).map_err(drop)
    }
}

/// The pre-shared key. Its bytes are never printed.
#[derive(Clone)]
pub struct Psk(Arc<[u8]>);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Psk({} bytes)", self.0.len())
    }
}

impl Psk {
    pub fn new(key: &[u8]) -> Result<Self> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(Error::invalid(format!(
                "the replication key is {} bytes; it must be {MIN_KEY_LEN} to {MAX_KEY_LEN} random bytes shared by both sides",
                key.len()
            )));
        }
        Ok(Psk(key.into()))
    }

    /// The MAC over this protocol's prefix, `label` and both nonces.
    fn keyed(&self, label: &str, np: &[u8; NONCE_LEN], ns: &[u8; NONCE_LEN]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        m.update(b"meshring replication v2 ");
        m.update(label.as_bytes());
        m.update(np);
        m.update(ns);
        m
    }

    fn derive(&self, label: &str, np: &[u8; NONCE_LEN], ns: &[u8; NONCE_LEN]) -> [u8; 32] {
        self.keyed(label, np, ns).finalize().into_bytes().into()
    }

    /// The key that tags HELLO, CHALLENGE and AUTH.
    pub fn handshake_key(&self) -> FrameKey {
        FrameKey::new(&self.derive("handshake", &[0; NONCE_LEN], &[0; NONCE_LEN]))
    }

    fn proof(&self, role: &str, np: &[u8; NONCE_LEN], ns: &[u8; NONCE_LEN]) -> [u8; PROOF_LEN] {
        self.derive(role, np, ns)
    }

    /// Constant-time comparison (the MAC's own verify).
    fn check_proof(&self, role: &str, np: &[u8; NONCE_LEN], ns: &[u8; NONCE_LEN], proof: &[u8; PROOF_LEN]) -> bool {
        self.keyed(role, np, ns).verify_slice(proof).is_ok()
    }

    /// The session's (primary->secondary, secondary->primary) directions.
    fn session(&self, np: &[u8; NONCE_LEN], ns: &[u8; NONCE_LEN]) -> Session {
        Session {
            p2s: Direction::new(FrameKey::new(&self.derive("p->s", np, ns))),
            s2p: Direction::new(FrameKey::new(&self.derive("s->p", np, ns))),
        }
    }
}

/// Both directions of an authenticated session.
pub struct Session {
    pub p2s: Direction,
    pub s2p: Direction,
}

pub fn nonce() -> Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    crate::sys::fill_random(&mut n)?;
    Ok(n)
}

fn auth_err(text: String) -> Error {
    Error::new(ErrorKind::Auth, text)
}

fn send(w: &mut impl Write, msg: &Msg, dir: &mut Direction) -> Result<()> {
    write_msg(w, msg, dir, "replication handshake send")
}

/// Seals one message in `dir` and writes it whole; `what` names the
/// operation in the error.
pub(super) fn write_msg(w: &mut impl Write, msg: &Msg, dir: &mut Direction, what: &str) -> Result<()> {
    let mut out = Vec::new();
    wire::encode(msg, dir, &mut out);
    w.write_all(&out).map_err(|e| Error::from_io(what, &e))
}

/// What a primary's handshake ended in, short of a session.
fn refused(text: String, verified: bool) -> Error {
    if !verified {
        return auth_err(format!(
            "the secondary refused us with a message that does not verify under our key (are the pre-shared keys the same?): {text}"
        ));
    }
    let kind = if text.contains("geometry") {
        ErrorKind::InvalidArgument
    } else if text.contains("another primary") {
        ErrorKind::State
    } else if text.contains("authentication") {
        ErrorKind::Auth
    } else {
        ErrorKind::Io
    };
    Error::new(kind, format!("the secondary refused: {text}"))
}

/// The primary's side: HELLO, check CHALLENGE, AUTH, wait for WELCOME.
pub fn primary_handshake<S: Read + Write>(stream: &mut S, psk: &Psk, block_size: u32, block_count: u64) -> Result<Session> {
    let hs = psk.handshake_key();
    let (mut tx, mut rx) = (Direction::new(hs.clone()), Direction::new(hs));
    let np = nonce()?;
    send(stream, &Msg::Hello { block_size, block_count, nonce: np }, &mut tx)?;
    let ns = match wire::read_handshake_msg(stream, &mut rx)? {
        (Msg::Challenge { nonce, proof }, true) => {
            if !psk.check_proof("secondary", &np, &nonce, &proof) {
                return Err(auth_err("the secondary could not prove the pre-shared key over our nonce".into()));
            }
            nonce
        }
        (Msg::Error { text }, verified) => return Err(refused(text, verified)),
        (other, _) => return Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: expected CHALLENGE, got {}", other.name()))),
    };
    send(stream, &Msg::Auth { proof: psk.proof("primary", &np, &ns) }, &mut tx)?;
    let mut session = psk.session(&np, &ns);
    match wire::read_handshake_msg(stream, &mut session.s2p)? {
        (Msg::Welcome, true) => Ok(session),
        (Msg::Error { text }, verified) => Err(refused(text, verified)),
        (other, _) => Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: expected WELCOME, got {}", other.name()))),
    }
}

/// The secondary's side up to a verified AUTH: returns the session (the
/// caller sends WELCOME or an ERROR under it). On a failure the peer is
/// told why (as far as it can verify) before the error is returned.
pub fn secondary_handshake<S: Read + Write>(stream: &mut S, psk: &Psk, block_size: u32, block_count: u64) -> Result<Session> {
    let hs = psk.handshake_key();
    let (mut tx, mut rx) = (Direction::new(hs.clone()), Direction::new(hs));
    let np = match wire::read_handshake_msg(stream, &mut rx) {
        Ok((Msg::Hello { block_size: bs, block_count: count, nonce }, true)) => {
            if (bs, count) != (block_size, block_count) {
                let e = Error::invalid(format!(
                    "volume geometry differs: primary has {count} blocks of {bs} bytes, secondary {block_count} of {block_size}"
                ));
                let _ = send(stream, &Msg::Error { text: e.message.to_string() }, &mut tx);
                return Err(e);
            }
            nonce
        }
        Ok((Msg::Error { text }, verified)) => {
            return Err(if verified {
                Error::new(ErrorKind::Io, format!("primary reported: {text}"))
            } else {
                auth_err(format!("the primary sent a message that does not verify under our key: {text}"))
            })
        }
        Ok((other, _)) => {
            return Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: expected HELLO, got {}", other.name())))
        }
        Err(e) if e.kind == ErrorKind::Auth => {
            let _ = send(stream, &Msg::Error { text: "authentication failed".into() }, &mut tx);
            return Err(auth_err(
                "its HELLO does not verify under our key: it has another pre-shared key, none, or the frame was changed".into(),
            ));
        }
        Err(e) => {
            if e.kind == ErrorKind::Parse {
                let _ = send(stream, &Msg::Error { text: e.message.to_string() }, &mut tx);
            }
            return Err(e);
        }
    };
    let ns = nonce()?;
    send(stream, &Msg::Challenge { nonce: ns, proof: psk.proof("secondary", &np, &ns) }, &mut tx)?;
    let mut session = psk.session(&np, &ns);
    match wire::read_handshake_msg(stream, &mut rx) {
        Ok((Msg::Auth { proof }, true)) if psk.check_proof("primary", &np, &ns, &proof) => Ok(session),
        Ok((Msg::Auth { .. }, true)) | Err(Error { kind: ErrorKind::Auth, .. }) => {
            let _ = send(stream, &Msg::Error { text: "authentication failed".into() }, &mut session.s2p);
            Err(auth_err("it could not prove the pre-shared key over our nonce (a replayed handshake?)".into()))
        }
        Ok((Msg::Error { text }, _)) => Err(Error::new(ErrorKind::Io, format!("primary reported: {text}"))),
        Ok((other, _)) => Err(Error::new(ErrorKind::Parse, format!("corrupt replication stream: expected AUTH, got {}", other.name()))),
        Err(e) => Err(e),
    }
}

/// A stream whose reads all end by one deadline: a handshake is bounded as
/// a whole, not per read (a peer dripping one byte at a time would
/// otherwise hold a handshake slot for as long as it likes).
pub struct Deadlined<'a> {
    stream: &'a std::net::TcpStream,
    until: std::time::Instant,
}

impl<'a> Deadlined<'a> {
    pub fn new(stream: &'a std::net::TcpStream, within: std::time::Duration) -> Self {
        Deadlined { stream, until: std::time::Instant::now() + within }
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake deadline"));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn run(pkey: &[u8], skey: &[u8], pgeo: (u32, u64)) -> (Result<Session>, Result<Session>) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let spsk = Psk::new(skey).unwrap();
        let secondary = std::thread::spawn(move || {
            let r = secondary_handshake(&mut b, &spsk, 4096, 10);
            if let Ok(s) = &r {
                let mut s2p = s.s2p.clone();
                send(&mut b, &Msg::Welcome, &mut s2p).unwrap();
            }
            r
        });
        let p = primary_handshake(&mut a, &Psk::new(pkey).unwrap(), pgeo.0, pgeo.1);
        drop(a);
        (p, secondary.join().unwrap())
    }

    #[test]
    fn same_key_agrees_on_session_keys() {
        let (p, s) = run(KEY, KEY, (4096, 10));
        let (mut p, mut s) = (p.unwrap(), s.unwrap());
        // The secondary's WELCOME used s2p counter 0 on its copy; ours advanced on reading it.
        let mut frame = Vec::new();
        wire::encode(&Msg::Ack { seq: 7 }, &mut p.p2s, &mut frame);
        assert_eq!(wire::read_msg(&mut &frame[..], &mut s.p2s).unwrap(), Msg::Ack { seq: 7 });
        assert_eq!(p.s2p.frames(), 1);
    }

    #[test]
    fn wrong_key_is_refused_on_both_sides() {
        let (p, s) = run(b"another key of 16+ bytes", KEY, (4096, 10));
        let (p, s) = (p.err().unwrap(), s.err().unwrap());
        assert_eq!((p.kind, s.kind), (ErrorKind::Auth, ErrorKind::Auth), "{p} / {s}");
        assert!(s.message.contains("HELLO"), "{s}");
    }

    #[test]
    fn geometry_mismatch_is_reported_verified() {
        let (p, s) = run(KEY, KEY, (4096, 11));
        assert_eq!(p.err().unwrap().kind, ErrorKind::InvalidArgument);
        assert_eq!(s.err().unwrap().kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn key_length_is_checked_and_never_printed() {
        assert_eq!(Psk::new(b"short").unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(Psk::new(&[1; 65]).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(format!("{:?}", Psk::new(KEY).unwrap()), "Psk(32 bytes)");
    }
}
