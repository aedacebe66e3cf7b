//! TUN offloads (IFF_VNET_HDR): the kernel hands us TCP/UDP super-packets of
//! up to 64 KiB with a virtio-net header instead of MTU-sized packets, and
//! leaves checksums for us to finish. This module turns such a packet into
//! the MTU-sized IP packets it stands for, each with correct headers and
//! checksums, so callers always see ordinary packets.

/// `struct virtio_net_hdr` (without num_buffers): 10 bytes.
/// cbindgen:ignore
pub const VNET_HDR_LEN: usize = 10;

pub(super) const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
pub(super) const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
pub(super) const GSO_TCPV6: u8 = 4;
pub(super) const GSO_UDP_L4: u8 = 5;
/// The largest coalesced super-packet (an IP total length).
pub(super) const MAX_SUPER: usize = 65535;
const GSO_ECN: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr { flags: b[0], gso_type: b[1], hdr_len: le(2), gso_size: le(4), csum_start: le(6), csum_offset: le(8) })
    }

    fn gso(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }
}

/// Why a super-packet cannot be split.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The packets one read from an offloading TUN stands for.
#[derive(Debug)]
pub struct Plan {
    hdr: VnetHdr,
    /// IP + transport header length of every segment.
    head: usize,
    seg: usize,
    pub count: usize,
}

impl Plan {
    pub fn new(hdr: VnetHdr, packet: &[u8]) -> Result<Self, Malformed> {
        match hdr.gso() {
            GSO_NONE => return Ok(Plan { hdr, head: packet.len(), seg: 0, count: 1 }),
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4 => {}
            GSO_UDP => return Err(Malformed("UFO (IP-fragmenting UDP offload) is not negotiated")),
            _ => return Err(Malformed("unknown GSO type")),
        }
        let start = hdr.csum_start as usize;
        let head = transport_header_end(packet, start, hdr.gso())?;
        let seg = hdr.gso_size as usize;
        if seg == 0 || packet.len() <= head {
            return Err(Malformed("GSO packet without payload or segment size"));
        }
        let count = (packet.len() - head).div_ceil(seg);
        Ok(Plan { hdr, head, seg, count })
    }

    /// Size of segment `i` once written.
    pub fn segment_len(&self, packet: &[u8], i: usize) -> usize {
        if self.seg == 0 {
            return packet.len();
        }
        let payload = (packet.len() - self.head - i * self.seg).min(self.seg);
        self.head + payload
    }

    /// Writes segment `i` of `packet` into `out` (at least `segment_len`
    /// bytes) with its lengths, IDs, sequence number and checksums fixed.
    pub fn write_segment(&self, packet: &[u8], i: usize, out: &mut [u8]) -> usize {
        let len = self.segment_len(packet, i);
        if self.seg == 0 {
            out[..len].copy_from_slice(packet);
            if self.hdr.flags & F_NEEDS_CSUM != 0 {
                finish_partial_checksum(&mut out[..len], self.hdr.csum_start as usize, self.hdr.csum_offset as usize);
            }
            return len;
        }
        let start = self.hdr.csum_start as usize;
        let payload_at = self.head + i * self.seg;
        out[..self.head].copy_from_slice(&packet[..self.head]);
        out[self.head..len].copy_from_slice(&packet[payload_at..payload_at + len - self.head]);
        let last = i + 1 == self.count;
        let seg = &mut out[..len];
        let v4 = seg[0] >> 4 == 4;
        if v4 {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            let id = u16::from_be_bytes([seg[4], seg[5]]).wrapping_add(i as u16);
            seg[4..6].copy_from_slice(&id.to_be_bytes());
            seg[10..12].copy_from_slice(&[0, 0]);
            let ihl = ((seg[0] & 0x0f) as usize) * 4;
            let c = !fold(sum(&seg[..ihl], 0));
            seg[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            seg[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
        let proto = if self.hdr.gso() == GSO_UDP_L4 {
            let udp_len = (len - start) as u16;
            seg[start + 4..start + 6].copy_from_slice(&udp_len.to_be_bytes());
            seg[start + 6..start + 8].copy_from_slice(&[0, 0]);
            17
        } else {
            let seq = u32::from_be_bytes(seg[start + 4..start + 8].try_into().unwrap()).wrapping_add((i * self.seg) as u32);
            seg[start + 4..start + 8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                // FIN and PSH belong to the final segment only.
                seg[start + 13] &= !(0x01 | 0x08);
            }
            seg[start + 16..start + 18].copy_from_slice(&[0, 0]);
            6
        };
        let csum_at = start + if proto == 17 { 6 } else { 16 };
        let mut c = !fold(sum(&seg[start..], pseudo_header_sum(seg, v4, proto, len - start)));
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        len
    }
}

/// End of the TCP/UDP header starting at `start`.
fn transport_header_end(packet: &[u8], start: usize, gso: u8) -> Result<usize, Malformed> {
    let ip_ok = match packet.first().map(|b| b >> 4) {
        Some(4) => start >= 20 && gso != GSO_TCPV6,
        Some(6) => start >= 40 && gso != GSO_TCPV4,
        _ => false,
    };
    if !ip_ok {
        return Err(Malformed("GSO packet's IP version does not match its type"));
    }
    let end = if gso == GSO_UDP_L4 {
        start + 8
    } else {
        let off = *packet.get(start + 12).ok_or(Malformed("truncated TCP header"))? as usize >> 4;
        start + off * 4
    };
    if end > packet.len() {
        return Err(Malformed("truncated transport header"));
    }
    Ok(end)
}

/// One's-complement sum of `bytes` as big-endian 16-bit words (plus
/// `initial`), not yet folded. RFC 1071: the sum is the same whatever the
/// byte order of the words, only byte-swapped, so the bytes are added as
/// native 64-bit words with end-around carry (four independent sums the
/// CPU runs side by side) and the result is swapped back once.
pub(super) fn sum(bytes: &[u8], initial: u32) -> u64 {
    // AVX2 takes the whole 32-byte blocks where the CPU has it (same words,
    // same native order, so the rest below continues its total).
    let (hw, done) = crate::sys::sum_blocks_hw(bytes).unwrap_or((0, 0));
    let bytes = &bytes[done..];
    let mut acc = [0u64; 4];
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            let v = u64::from_ne_bytes(b[k * 8..k * 8 + 8].try_into().unwrap());
            let (s, carry) = a.overflowing_add(v);
            *a = s + carry as u64; // s < u64::MAX after a carry
        }
    }
    let mut total: u128 = hw + acc.iter().map(|&a| a as u128).sum::<u128>();
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        total += u64::from_ne_bytes(w.try_into().unwrap()) as u128;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        total += u64::from_ne_bytes(last) as u128;
    }
    // Fold to 16 bits in native order, then to big-endian order.
    let mut s = (total as u64 as u128) + (total >> 64);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    let native = s as u16;
    let be = if cfg!(target_endian = "little") { native.swap_bytes() } else { native };
    be as u64 + initial as u64
}

pub(super) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

pub(super) fn pseudo_header_sum(packet: &[u8], v4: bool, proto: u8, transport_len: usize) -> u32 {
    let addrs = if v4 { &packet[12..20] } else { &packet[8..40] };
    let acc = sum(addrs, 0) + proto as u64 + transport_len as u64;
    fold(acc) as u32
}

/// NEEDS_CSUM without GSO: the checksum field holds the pseudo-header sum;
/// adding the rest of the packet and complementing finishes it.
fn finish_partial_checksum(packet: &mut [u8], start: usize, offset: usize) {
    if start + offset + 2 > packet.len() {
        return;
    }
    let mut c = !fold(sum(&packet[start..], 0));
    if c == 0 && packet.get(9) == Some(&17) {
        c = 0xffff;
    }
    packet[start + offset..start + offset + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full checksum over a finished packet's transport part verifies to 0.
    fn transport_verifies(p: &[u8], proto: u8) -> bool {
        let v4 = p[0] >> 4 == 4;
        let start = if v4 { ((p[0] & 0x0f) as usize) * 4 } else { 40 };
        fold(sum(&p[start..], pseudo_header_sum(p, v4, proto, p.len() - start))) == 0xffff
    }

    fn ipv4_tcp(payload: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&100u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&[198, 18, 0, 2]);
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&2000u16.to_be_bytes());
        p[24..28].copy_from_slice(&5000u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    #[test]
    fn tso_v4_splits_into_valid_segments() {
        let packet = ipv4_tcp(3000, 0x18 | 0x01);
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, gso_type: GSO_TCPV4, hdr_len: 40, gso_size: 1000, csum_start: 20, csum_offset: 16 };
        let plan = Plan::new(hdr, &packet).unwrap();
        assert_eq!(plan.count, 3);
        let mut rebuilt = Vec::new();
        for i in 0..3 {
            let mut out = vec![0u8; 1500];
            let n = plan.write_segment(&packet, i, &mut out);
            let s = &out[..n];
            assert_eq!(n, 1040);
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, n);
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 100 + i as u16);
            assert_eq!(fold(sum(&s[..20], 0)), 0xffff, "IPv4 header checksum");
            assert_eq!(u32::from_be_bytes(s[24..28].try_into().unwrap()), 5000 + 1000 * i as u32);
            assert!(transport_verifies(s, 6), "TCP checksum of segment {i}");
            let fin_psh = s[33] & 0x09;
            assert_eq!(fin_psh != 0, i == 2, "FIN/PSH only on the last segment");
            rebuilt.extend_from_slice(&s[40..]);
        }
        assert_eq!(rebuilt, packet[40..]);
    }

    #[test]
    fn uso_v6_splits_with_a_short_last_segment() {
        let payload = 2500;
        let mut p = vec![0u8; 48 + payload];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0xfd; 16]);
        p[24..40].copy_from_slice(&[0xfe; 16]);
        p[40..42].copy_from_slice(&7u16.to_be_bytes());
        p[42..44].copy_from_slice(&9u16.to_be_bytes());
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, gso_type: GSO_UDP_L4, hdr_len: 48, gso_size: 1200, csum_start: 40, csum_offset: 6 };
        let plan = Plan::new(hdr, &p).unwrap();
        assert_eq!(plan.count, 3);
        let mut out = vec![0u8; 1500];
        let n = plan.write_segment(&p, 2, &mut out);
        assert_eq!(n, 48 + 100);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]) as usize, n - 40);
        assert_eq!(u16::from_be_bytes([out[44], out[45]]) as usize, n - 40);
        assert!(transport_verifies(&out[..n], 17));
    }

    #[test]
    fn partial_checksum_is_finished_without_gso() {
        let mut packet = ipv4_tcp(100, 0x10);
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let pseudo = pseudo_header_sum(&packet, true, 6, packet.len() - 20) as u16;
        packet[36..38].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, gso_type: GSO_NONE, csum_start: 20, csum_offset: 16, ..Default::default() };
        let plan = Plan::new(hdr, &packet).unwrap();
        let mut out = vec![0u8; 200];
        let n = plan.write_segment(&packet, 0, &mut out);
        assert!(transport_verifies(&out[..n], 6));
    }

    #[test]
    fn wide_sum_matches_the_word_by_word_sum() {
        let data: Vec<u8> = (0..1501u32).map(|i| (i * 2654435761u32 >> 11) as u8).collect();
        for len in [0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1500, 1501] {
            let mut slow = 0x1234u64;
            for c in data[..len].chunks(2) {
                slow += if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) as u64 } else { (c[0] as u64) << 8 };
            }
            assert_eq!(fold(sum(&data[..len], 0x1234)), fold(slow), "len {len}");
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let packet = ipv4_tcp(100, 0);
        let mut hdr = VnetHdr { gso_type: GSO_TCPV6, csum_start: 20, gso_size: 10, ..Default::default() };
        assert!(Plan::new(hdr, &packet).is_err());
        hdr.gso_type = GSO_TCPV4;
        hdr.csum_start = 200;
        assert!(Plan::new(hdr, &packet).is_err());
        hdr.csum_start = 20;
        hdr.gso_size = 0;
        assert!(Plan::new(hdr, &packet).is_err());
        assert!(VnetHdr::parse(&[0; 5]).is_none());
    }
}

/// Coalesces runs of consecutive TCP segments of one flow into super-packets
/// for an offloading TUN write: the kernel then takes each run through its
/// TCP stack once (what GRO does for a NIC), instead of once per packet.
pub mod coalesce {
    use super::{fold, pseudo_header_sum, sum, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, MAX_SUPER, VNET_HDR_LEN};

    /// The fields that must match for two IPv4/IPv6 TCP segments to merge.
    struct Segment<'a> {
        packet: &'a [u8],
        v4: bool,
        ip_len: usize,
        tcp_len: usize,
        seq: u32,
        flags: u8,
    }

    fn parse(packet: &[u8]) -> Option<Segment<'_>> {
        let v4 = match packet.first()? >> 4 {
            4 => true,
            6 => false,
            _ => return None,
        };
        let ip_len = if v4 {
            // No options, not a fragment, TCP.
            if packet[0] & 0x0f != 5 || packet.len() < 40 || packet[9] != 6 || u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
                return None;
            }
            if u16::from_be_bytes([packet[2], packet[3]]) as usize != packet.len() {
                return None;
            }
            20
        } else {
            // No extension headers.
            if packet.len() < 60 || packet[6] != 6 || u16::from_be_bytes([packet[4], packet[5]]) as usize + 40 != packet.len() {
                return None;
            }
            40
        };
        let tcp_len = ((packet[ip_len + 12] >> 4) as usize) * 4;
        if tcp_len < 20 || ip_len + tcp_len > packet.len() {
            return None;
        }
        let seq = u32::from_be_bytes(packet[ip_len + 4..ip_len + 8].try_into().ok()?);
        Some(Segment { packet, v4, ip_len, tcp_len, seq, flags: packet[ip_len + 13] })
    }

    impl Segment<'_> {
        fn head(&self) -> usize {
            self.ip_len + self.tcp_len
        }
        fn payload(&self) -> usize {
            self.packet.len() - self.head()
        }
        /// Plain data segment: ACK, maybe PSH; nothing that must be seen alone.
        fn mergeable(&self) -> bool {
            self.payload() > 0 && self.flags & !(0x10 | 0x08) == 0 && self.flags & 0x10 != 0
        }
        /// `next` continues this flow right after `self` (`merged` bytes so far).
        fn continued_by(&self, next: &Segment, merged: usize) -> bool {
            let addrs = if self.v4 { 12..20 } else { 8..40 };
            let h = self.ip_len;
            next.v4 == self.v4
                && next.tcp_len == self.tcp_len
                && self.packet[addrs.clone()] == next.packet[addrs]
                && self.packet[h..h + 4] == next.packet[h..h + 4] // ports
                && self.packet[h + 8..h + 12] == next.packet[h + 8..h + 12] // ack
                && self.packet[h + 14..h + 16] == next.packet[h + 14..h + 16] // window
                && self.packet[h + 20..h + self.tcp_len] == next.packet[h + 20..h + self.tcp_len] // options
                && (!self.v4 || self.packet[8] == next.packet[8]) // TTL
                && next.seq == self.seq.wrapping_add(merged as u32)
        }
    }

    /// How many of `packets` (from the start) form one super-packet: 1 when
    /// the first cannot merge with the next.
    pub fn run_length(packets: &[&[u8]]) -> usize {
        let Some(first) = packets.first().and_then(|p| parse(p)) else { return 1 };
        if !first.mergeable() || first.flags & 0x08 != 0 {
            return 1;
        }
        let size = first.payload();
        let mut merged = size;
        let mut total = first.packet.len();
        let mut n = 1;
        for p in &packets[1..] {
            let Some(seg) = parse(p) else { break };
            if !seg.mergeable() || !first.continued_by(&seg, merged) || seg.payload() > size || total + seg.payload() > MAX_SUPER {
                break;
            }
            merged += seg.payload();
            total += seg.payload();
            n += 1;
            // A shorter segment, or PSH, ends a run (as GSO would have cut it).
            if seg.payload() < size || seg.flags & 0x08 != 0 {
                break;
            }
        }
        n
    }

    /// Writes the virtio-net header and the merged packet for `run` (as
    /// returned by `run_length`, at least 2 packets) into `out`; returns its length.
    pub fn build(run: &[&[u8]], out: &mut [u8]) -> usize {
        let first = parse(run[0]).expect("run_length checked the first packet");
        let head = first.head();
        let h = first.ip_len;
        let mut len = VNET_HDR_LEN + head;
        out[VNET_HDR_LEN..len].copy_from_slice(&run[0][..head]);
        for p in run {
            let payload = &p[head..];
            out[len..len + payload.len()].copy_from_slice(payload);
            len += payload.len();
        }
        let last_flags = run[run.len() - 1][h + 13];
        let pkt = &mut out[VNET_HDR_LEN..len];
        let total = pkt.len();
        pkt[h + 13] = last_flags;
        if first.v4 {
            pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            pkt[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&pkt[..20], 0));
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            pkt[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        }
        // NEEDS_CSUM: the field carries the pseudo-header sum; the kernel
        // finishes the checksum over each segment it cuts.
        let pseudo = pseudo_header_sum(pkt, first.v4, 6, total - h) as u16;
        pkt[h + 16..h + 18].copy_from_slice(&pseudo.to_be_bytes());
        let gso_size = (run[0].len() - head) as u16;
        let hdr = &mut out[..VNET_HDR_LEN];
        hdr[0] = F_NEEDS_CSUM;
        hdr[1] = if first.v4 { GSO_TCPV4 } else { GSO_TCPV6 };
        hdr[2..4].copy_from_slice(&(head as u16).to_le_bytes());
        hdr[4..6].copy_from_slice(&gso_size.to_le_bytes());
        hdr[6..8].copy_from_slice(&(h as u16).to_le_bytes());
        hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
        len
    }
}

#[cfg(test)]
mod coalesce_tests {
    use super::coalesce::{build, run_length};
    use super::*;

    fn segment(seq: u32, payload: usize, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&[198, 18, 0, 2]);
        p[20..22].copy_from_slice(&1u16.to_be_bytes());
        p[22..24].copy_from_slice(&2u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&77u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&500u16.to_be_bytes());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = (seq as usize + i) as u8;
        }
        p
    }

    #[test]
    fn a_flow_merges_and_splits_back_into_the_same_segments() {
        let segs = [segment(1000, 1000, 0x10), segment(2000, 1000, 0x10), segment(3000, 600, 0x18), segment(9000, 1000, 0x10)];
        let views: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
        assert_eq!(run_length(&views), 3, "the gap in sequence numbers ends the run");
        let mut out = vec![0u8; 70000];
        let n = build(&views[..3], &mut out);
        let hdr = VnetHdr::parse(&out).unwrap();
        assert_eq!((hdr.gso_type, hdr.gso_size, hdr.hdr_len), (GSO_TCPV4, 1000, 40));
        let plan = Plan::new(hdr, &out[VNET_HDR_LEN..n]).unwrap();
        assert_eq!(plan.count, 3);
        for (i, original) in segs[..3].iter().enumerate() {
            let mut back = vec![0u8; 1500];
            let len = plan.write_segment(&out[VNET_HDR_LEN..n], i, &mut back);
            // IDs differ (the split numbers them from the first) and the
            // originals carry no checksum; the split's checksum must verify.
            assert!(fold(sum(&back[20..len], pseudo_header_sum(&back[..len], true, 6, len - 20))) == 0xffff, "segment {i} checksum");
            back[36..38].copy_from_slice(&[0, 0]);
            assert_eq!(&back[20..len], &original[20..], "segment {i} payload and TCP header");
            assert_eq!(&back[..4], &original[..4]);
        }
    }

    #[test]
    fn unmergeable_packets_stand_alone() {
        let syn = segment(1, 0, 0x02);
        let data = segment(1, 1000, 0x10);
        let other_flow = {
            let mut p = segment(1001, 1000, 0x10);
            p[20] = 9;
            p
        };
        assert_eq!(run_length(&[&syn, &data]), 1);
        assert_eq!(run_length(&[&data, &other_flow]), 1);
        assert_eq!(run_length(&[b"\x00junk".as_slice()]), 1);
        let bigger_next = segment(2001, 1200, 0x10);
        assert_eq!(run_length(&[&data, &bigger_next]), 1);
    }
}
