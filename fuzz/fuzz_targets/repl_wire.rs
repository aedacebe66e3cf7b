//! The replication wire protocol as a secondary (or a primary reading
//! acknowledgements) reads it: frames are read from the input until the
//! first error; every frame read encodes back to a frame that reads as the
//! same message. Reading never allocates more than a frame's declared and
//! bounded size (a hostile length is refused before any allocation).

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshring::replication::{encode, read_msg};

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    for _ in 0..256 {
        let Ok(msg) = read_msg(&mut input) else { return };
        let mut frame = Vec::new();
        encode(&msg, &mut frame);
        let back = read_msg(&mut frame.as_slice()).expect("an encoded frame reads back");
        assert!(back == msg, "frame round trip changed the message");
    }
});
