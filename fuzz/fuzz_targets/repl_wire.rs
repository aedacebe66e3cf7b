//! The replication wire protocol as a secondary (or a primary reading
//! acknowledgements) reads it. The first input byte picks how the rest is
//! used:
//!
//! * even: the bytes as they come off the network (no key known to the
//!   sender): frames are read until the first error; none may verify
//!   unless it carries the right tag.
//! * odd: the target first re-tags each frame-shaped chunk with the
//!   session key and its position (what a peer holding the key would send),
//!   so the checks after the tag (kind, lengths, flags, payload layout) are
//!   explored too.
//!
//! Either way every frame read encodes back to a frame that reads as the
//! same message, a frame read twice (a replay) is refused, and reading
//! never allocates more than a frame's declared and bounded size (a hostile
//! length is refused before any allocation).

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshring::replication::{encode, read_handshake_msg, read_msg, Direction, FrameKey};

const KEY: &[u8] = b"meshring fuzz session key, 32 B!";
const HEADER: usize = 20;
const TAG: usize = 16;

fn dir() -> Direction {
    Direction::new(FrameKey::new(KEY))
}

/// Re-tags each header + payload chunk of `data` as frame 0, 1, 2...
fn retag(mut data: &[u8]) -> Vec<u8> {
    let key = FrameKey::new(KEY);
    let mut out = Vec::new();
    let mut counter = 0u64;
    while data.len() >= HEADER {
        let len = (u32::from_le_bytes(data[16..20].try_into().unwrap()) as usize).min(data.len() - HEADER);
        let frame = &data[..HEADER + len];
        out.extend_from_slice(frame);
        out.extend_from_slice(&key.tag(counter, frame));
        counter += 1;
        data = &data[(HEADER + len + TAG).min(data.len())..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let stream = if mode % 2 == 1 { retag(rest) } else { rest.to_vec() };
    let mut input = &stream[..];
    let mut rx = dir();
    let mut frames = Vec::new();
    for _ in 0..256 {
        let start = input;
        let before = rx.clone();
        let Ok(msg) = read_msg(&mut input, &mut rx) else { break };
        frames.push(&start[..start.len() - input.len()]);
        // Sealed again at the same position, it reads back as the same message.
        let mut frame = Vec::new();
        encode(&msg, &mut before.clone(), &mut frame);
        let back = read_msg(&mut frame.as_slice(), &mut before.clone()).expect("an encoded frame reads back");
        assert!(back == msg, "frame round trip changed the message");
    }
    // Replaying the first accepted frame later in the session never verifies.
    if let Some(first) = frames.first() {
        if rx.frames() > 0 {
            assert!(read_msg(&mut &first[..], &mut rx).is_err(), "a replayed frame was accepted");
        }
    }
    // The handshake reader refuses what the session reader refuses, except
    // an ERROR it cannot verify, which it returns marked unverified.
    let mut hs = Direction::new(FrameKey::new(b"another key, for the handshake!!"));
    if let Ok((msg, verified)) = read_handshake_msg(&mut &stream[..], &mut hs) {
        assert!(!verified, "a frame verified under the wrong key");
        assert_eq!(msg.name(), "ERROR");
    }
});
