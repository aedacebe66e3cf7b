//! TUN offloads (IFF_VNET_HDR): the kernel hands us TCP/UDP super-packets of
//! up to 64 KiB with a virtio-net header instead of MTU-sized packets, and
//! leaves checksums for us to finish. This module turns such a packet into
//! the MTU-sized IP packets it stands for, each with correct headers and
//! checksums, so callers always see ordinary packets.

/// `struct virtio_net_hdr` (without num_buffers): 10 bytes.
/// cbindgen:ignore
pub const VNET_HDR_LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
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

fn sum(bytes: &[u8], initial: u32) -> u64 {
    let mut acc = initial as u64;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn pseudo_header_sum(packet: &[u8], v4: bool, proto: u8, transport_len: usize) -> u32 {
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
