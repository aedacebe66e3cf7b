//! The Internet checksum's one's-complement sum with AVX2 on x86_64, when
//! the CPU has it (what wireguard-go uses too); the portable version and
//! the byte-order handling live with the user (`tun::offload::sum`).

/// Sums the leading whole 32-byte blocks of `data` as native-order 32-bit
/// words into a 128-bit total; returns the total and how many bytes it
/// covered, or None when this CPU has no AVX2.
pub fn sum_blocks_hw(data: &[u8]) -> Option<(u128, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return Some(unsafe { sum_avx2(data) });
        }
    }
    let _ = data;
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_avx2(data: &[u8]) -> (u128, usize) {
    use std::arch::x86_64::{__m256i, _mm256_add_epi64, _mm256_loadu_si256, _mm256_setzero_si256, _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpacklo_epi32};
    let blocks = data.len() / 32;
    let zero = _mm256_setzero_si256();
    let mut acc = _mm256_setzero_si256();
    for i in 0..blocks {
        // SAFETY: block i lies within `data` (i < len / 32); loadu takes any alignment.
        let v = unsafe { _mm256_loadu_si256(data.as_ptr().add(i * 32).cast::<__m256i>()) };
        // Zero-extend the eight 32-bit words into 64-bit lanes and add them:
        // a lane gains < 2^33 per block, far from overflowing for 64 KiB.
        acc = _mm256_add_epi64(acc, _mm256_unpacklo_epi32(v, zero));
        acc = _mm256_add_epi64(acc, _mm256_unpackhi_epi32(v, zero));
    }
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` is 32 writable bytes; storeu takes any alignment.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), acc) };
    (lanes.iter().map(|&l| l as u128).sum(), blocks * 32)
}
