//! CRC32C with the CPU's instruction (SSE4.2 `crc32` on x86_64), when the
//! CPU has it; the portable table version lives with its user
//! (`replication::wire`). A 4 KiB block: ~0.5 us here instead of ~1.5 us.

/// Continues a CRC32C over `data` (pre-inverted state in and out, like the
/// table version); None when this CPU has no CRC32C instruction.
pub fn crc32c_hw(crc: u32, data: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return Some(unsafe { update_sse42(crc, data) });
        }
    }
    let _ = (crc, data);
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn update_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut chunks = data.chunks_exact(8);
    let mut c = crc as u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        c = _mm_crc32_u64(c, word);
    }
    let mut crc = c as u32;
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}
