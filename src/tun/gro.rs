//! Write-side GRO for an offloading TUN (IFF_VNET_HDR): the packets of one
//! write batch that belong to the same TCP or UDP flow, wherever they sit
//! in the batch, are handed to the kernel as one super-packet with a
//! virtio-net header, so its TCP/UDP stack takes them in once instead of
//! once per packet (what GRO does for a NIC).
//!
//! The rules are wireguard-go's (`tun/offload_linux.go`, handleGRO), so a
//! program moving from its TUN to ours sees the same packets reach the
//! kernel:
//! - candidates: IPv4 without options and not a fragment, or IPv6 without
//!   extension headers; the IP length field equals the buffer; TCP with
//!   flags exactly ACK or ACK|PSH and a payload; UDP with a payload;
//! - TCP flow: addresses, ports and acknowledgement number; every earlier
//!   item of the flow is tried, newest first; a segment is appended when
//!   its sequence number continues the item (no PSH on the item yet, no
//!   shorter segment yet, not longer than the item's segment size) or
//!   prepended when it ends right where the item starts;
//! - UDP flow: addresses and ports; only the newest item of the flow is
//!   tried (datagrams are never reordered);
//! - a merge also needs the same TCP header length and options, the same
//!   IPv4 ToS, DF and TTL (IPv6 traffic class and hop limit), at most 65535
//!   bytes and 1024 buffers, and full transport checksums that verify on
//!   both packets before the first merge (the kernel trusts a super-packet's
//!   checksum, so a corrupt packet must never be folded into one).
//!
//! What it costs: one pass over the batch, a checksum pass over each packet
//! that joins a super-packet, and one `writev` per output packet whose
//! buffers are the callers' own (the head's rebuilt IP/transport header
//! goes in a small scratch buffer; no payload is copied and the caller's
//! buffers are never modified). Output order is the order in which each
//! output packet's first member appears in the batch.

use super::offload::{fold, pseudo_header_sum, sum, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, MAX_SUPER, VNET_HDR_LEN};

/// Coalesce TCP segments (TSO on the device).
/// cbindgen:ignore
pub const GRO_TCP: u32 = 1;
/// Coalesce UDP datagrams (needs USO, Linux 6.2+).
/// cbindgen:ignore
pub const GRO_UDP: u32 = 2;

/// `writev` limit (IOV_MAX), counting the header buffer.
const MAX_IOV: usize = 1024;
const NONE: u32 = u32::MAX;

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Longest head: virtio-net header, IPv6, TCP with options.
/// cbindgen:ignore
pub const MAX_HEAD: usize = VNET_HDR_LEN + 40 + 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// A packet that may be coalesced.
#[derive(Debug, Clone, Copy)]
struct Cand {
    v4: bool,
    proto: Proto,
    /// IP header length.
    iph: usize,
    /// Transport header length.
    th: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

impl Cand {
    fn head(&self) -> usize {
        self.iph + self.th
    }
}

fn be16(p: &[u8], at: usize) -> usize {
    u16::from_be_bytes([p[at], p[at + 1]]) as usize
}

fn candidate(p: &[u8], gro: u32) -> Option<Cand> {
    if p.len() < 28 {
        return None;
    }
    let (v4, iph, proto, ip_total) = match p[0] >> 4 {
        4 => {
            if p[0] & 0x0f != 5 || be16(p, 6) & 0x3fff != 0 {
                return None; // options, or a fragment (MF or offset)
            }
            (true, 20, p[9], be16(p, 2))
        }
        6 if p.len() >= 40 => (false, 40, p[6], 40 + be16(p, 4)),
        _ => return None,
    };
    if ip_total != p.len() {
        return None;
    }
    match proto {
        6 if gro & GRO_TCP != 0 => {
            if p.len() < iph + 20 {
                return None;
            }
            let th = ((p[iph + 12] >> 4) as usize) * 4;
            if !(20..=60).contains(&th) || p.len() <= iph + th {
                return None;
            }
            let flags = p[iph + 13];
            if flags != TCP_ACK && flags != TCP_ACK | TCP_PSH {
                return None;
            }
            let seq = u32::from_be_bytes(p[iph + 4..iph + 8].try_into().unwrap());
            Some(Cand { v4, proto: Proto::Tcp, iph, th, payload: p.len() - iph - th, seq, flags })
        }
        17 if gro & GRO_UDP != 0 => {
            if p.len() <= iph + 8 || be16(p, iph + 4) != p.len() - iph {
                return None;
            }
            Some(Cand { v4, proto: Proto::Udp, iph, th: 8, payload: p.len() - iph - 8, seq: 0, flags: 0 })
        }
        _ => None,
    }
}

/// The transport checksum of a complete packet verifies.
fn checksum_valid(p: &[u8], c: &Cand) -> bool {
    let proto = if c.proto == Proto::Tcp { 6 } else { 17 };
    if c.proto == Proto::Udp && c.v4 && be16(p, c.iph + 6) == 0 {
        return false; // IPv4 UDP without a checksum: nothing to vouch for it
    }
    fold(sum(&p[c.iph..], pseudo_header_sum(p, c.v4, proto, p.len() - c.iph))) == 0xffff
}

/// Same flow: addresses, ports and (TCP) acknowledgement number.
fn same_flow(a: &[u8], b: &[u8], c: &Cand) -> bool {
    let addrs = if c.v4 { 12..20 } else { 8..40 };
    let h = c.iph;
    a[addrs.clone()] == b[addrs] && a[h..h + 4] == b[h..h + 4] && (c.proto == Proto::Udp || a[h + 8..h + 12] == b[h + 8..h + 12])
}

/// IP header fields that must match: IPv4 ToS, DF/reserved bits and TTL;
/// IPv6 version/traffic class and hop limit.
fn ip_headers_match(a: &[u8], b: &[u8], v4: bool) -> bool {
    if v4 {
        a[1] == b[1] && a[6] >> 5 == b[6] >> 5 && a[8] == b[8]
    } else {
        a[0] == b[0] && a[1] >> 4 == b[1] >> 4 && a[7] == b[7]
    }
}

/// One output packet in the making: a chain of input packets in payload order.
#[derive(Debug, Clone)]
struct Item {
    c: Cand,
    first: u32,
    last: u32,
    count: usize,
    gso: usize,
    total: usize,
    /// TCP: sequence number of the first segment.
    seq: u32,
    psh: bool,
    /// A segment shorter than `gso` ends the item: nothing more may follow.
    ended: bool,
    /// Checksums of the members were verified (done before the first merge).
    checked: bool,
    /// No further merges (a member's checksum did not verify).
    closed: bool,
}

/// What to write, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Single(u32),
    Item(u32),
}

/// Reusable planning state (kept by the TUN between writes).
#[derive(Default)]
pub struct Gro {
    items: Vec<Item>,
    outs: Vec<Out>,
    next: Vec<u32>,
}

enum Merge {
    Append,
    Prepend,
    No,
}

impl Gro {
    /// Plans the output packets of `packets` with the `gro` bits enabled.
    pub fn plan(&mut self, packets: &[&[u8]], gro: u32) {
        self.items.clear();
        self.outs.clear();
        self.next.clear();
        self.next.resize(packets.len(), NONE);
        for (i, p) in packets.iter().enumerate() {
            let i = i as u32;
            let Some(c) = candidate(p, gro) else {
                self.outs.push(Out::Single(i));
                continue;
            };
            match self.merge(packets, i, &c) {
                Some(true) => {}
                Some(false) => self.outs.push(Out::Single(i)), // its checksum did not verify
                None => {
                    let item = Item { c, first: i, last: i, count: 1, gso: c.payload, total: c.payload, seq: c.seq, psh: c.flags & TCP_PSH != 0, ended: false, checked: false, closed: false };
                    self.outs.push(Out::Item(self.items.len() as u32));
                    self.items.push(item);
                }
            }
        }
    }

    /// Tries to merge packet `i` into an item of its flow: Some(true) merged,
    /// Some(false) the packet is bad and must stand alone, None start a new item.
    fn merge(&mut self, packets: &[&[u8]], i: u32, c: &Cand) -> Option<bool> {
        let p = packets[i as usize];
        let mut k = self.items.len();
        while k > 0 {
            k -= 1;
            let item = &self.items[k];
            let head = packets[item.first as usize];
            if item.c.proto != c.proto || item.c.v4 != c.v4 || !same_flow(head, p, c) {
                continue;
            }
            let how = if item.closed { Merge::No } else { Self::can_merge(item, head, p, c) };
            if !matches!(how, Merge::No) {
                if !self.items[k].checked {
                    if !self.verify_item(packets, k) {
                        self.items[k].closed = true;
                        if c.proto == Proto::Udp {
                            return None;
                        }
                        continue;
                    }
                }
                if !checksum_valid(p, c) {
                    return Some(false);
                }
                self.apply(k, i, c, how);
                return Some(true);
            }
            if c.proto == Proto::Udp {
                return None; // only the newest UDP item of a flow is tried
            }
        }
        None
    }

    fn verify_item(&mut self, packets: &[&[u8]], k: usize) -> bool {
        let item = &mut self.items[k];
        item.checked = true;
        // Only single-packet items are ever unchecked: members are verified as they join.
        checksum_valid(packets[item.first as usize], &item.c)
    }

    fn can_merge(item: &Item, head: &[u8], p: &[u8], c: &Cand) -> Merge {
        if item.count + 2 > MAX_IOV || item.c.head() + item.total + c.payload > MAX_SUPER {
            return Merge::No;
        }
        if c.th != item.c.th || !ip_headers_match(head, p, c.v4) {
            return Merge::No;
        }
        if c.proto == Proto::Udp {
            return if !item.ended && c.payload <= item.gso { Merge::Append } else { Merge::No };
        }
        let opts = c.iph + 20..c.iph + c.th;
        if head[opts.clone()] != p[opts] {
            return Merge::No;
        }
        if c.seq == item.seq.wrapping_add(item.total as u32) {
            if item.psh || item.ended || c.payload > item.gso {
                return Merge::No;
            }
            return Merge::Append;
        }
        if c.seq.wrapping_add(c.payload as u32) == item.seq {
            if c.flags & TCP_PSH != 0 || c.payload < item.gso || (c.payload > item.gso && item.count > 1) {
                return Merge::No;
            }
            return Merge::Prepend;
        }
        Merge::No
    }

    fn apply(&mut self, k: usize, i: u32, c: &Cand, how: Merge) {
        let item = &mut self.items[k];
        match how {
            Merge::Append => {
                self.next[item.last as usize] = i;
                item.last = i;
                if c.payload < item.gso {
                    item.ended = true;
                }
                if c.flags & TCP_PSH != 0 {
                    item.psh = true;
                }
            }
            Merge::Prepend => {
                self.next[i as usize] = item.first;
                if c.payload > item.gso {
                    item.ended = true; // the old single segment is now a short last one
                }
                item.first = i;
                item.seq = c.seq;
                item.gso = c.payload;
                item.c = *c;
            }
            Merge::No => unreachable!("apply is only called for a merge"),
        }
        item.count += 1;
        item.total += c.payload;
    }

    /// The planned output packets as lists of input indices, in output order.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        self.outs
            .iter()
            .map(|o| match *o {
                Out::Single(i) => vec![i as usize],
                Out::Item(k) => {
                    let item = &self.items[k as usize];
                    let mut v = Vec::with_capacity(item.count);
                    let mut at = item.first;
                    while at != NONE {
                        v.push(at as usize);
                        at = self.next[at as usize];
                    }
                    v
                }
            })
            .collect()
    }

    /// Writes every planned output packet with `write(iovecs, index of its
    /// first input packet, how many input packets it carries)`. A plain
    /// packet gets a zero virtio-net header; a merged one the rebuilt head
    /// in `scratch` and its members' payloads.
    pub fn emit<E>(&self, packets: &[&[u8]], mut write: impl FnMut(&[std::io::IoSlice<'_>], usize, usize) -> Result<(), E>) -> Vec<(usize, usize, E)> {
        let zero = [0u8; VNET_HDR_LEN];
        let mut failures = Vec::new();
        for o in &self.outs {
            let (first, count) = match *o {
                Out::Single(i) => (i, 1),
                Out::Item(k) => {
                    let item = &self.items[k as usize];
                    (item.first, item.count)
                }
            };
            let result = if count == 1 {
                write(&[std::io::IoSlice::new(&zero), std::io::IoSlice::new(packets[first as usize])], first as usize, 1)
            } else {
                let Out::Item(k) = *o else { unreachable!() };
                let item = &self.items[k as usize];
                let mut scratch = [0u8; MAX_HEAD];
                let n = build_head(item, packets[first as usize], &mut scratch);
                let mut iov = Vec::with_capacity(count + 1);
                iov.push(std::io::IoSlice::new(&scratch[..n]));
                let mut at = item.first;
                while at != NONE {
                    iov.push(std::io::IoSlice::new(&packets[at as usize][item.c.head()..]));
                    at = self.next[at as usize];
                }
                write(&iov, first as usize, count)
            };
            if let Err(e) = result {
                failures.push((first as usize, count, e));
            }
        }
        failures
    }
}

/// The virtio-net header and the head's IP + transport header of a merged
/// item, lengths and checksums rewritten for the whole super-packet.
fn build_head(item: &Item, head: &[u8], out: &mut [u8; MAX_HEAD]) -> usize {
    let c = &item.c;
    let hl = c.head();
    let total = hl + item.total;
    let pkt = &mut out[VNET_HDR_LEN..VNET_HDR_LEN + hl];
    pkt.copy_from_slice(&head[..hl]);
    if c.v4 {
        pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let csum = !fold(sum(&pkt[..20], 0));
        pkt[10..12].copy_from_slice(&csum.to_be_bytes());
    } else {
        pkt[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    }
    let h = c.iph;
    let (proto, csum_at, gso_type) = match c.proto {
        Proto::Tcp => {
            if item.psh {
                pkt[h + 13] |= TCP_PSH;
            }
            (6, h + 16, if c.v4 { GSO_TCPV4 } else { GSO_TCPV6 })
        }
        Proto::Udp => {
            pkt[h + 4..h + 6].copy_from_slice(&((total - h) as u16).to_be_bytes());
            (17, h + 6, GSO_UDP_L4)
        }
    };
    // NEEDS_CSUM: the field holds the pseudo-header sum (folded, not
    // complemented); the kernel finishes the checksum of every segment.
    let pseudo = pseudo_header_sum(pkt, c.v4, proto, total - h) as u16;
    pkt[csum_at..csum_at + 2].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = &mut out[..VNET_HDR_LEN];
    hdr[0] = F_NEEDS_CSUM;
    hdr[1] = gso_type;
    hdr[2..4].copy_from_slice(&(hl as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&(item.gso as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&(h as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&((csum_at - h) as u16).to_le_bytes());
    VNET_HDR_LEN + hl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun::offload::{Plan, VnetHdr};

    struct P {
        v6: bool,
        udp: bool,
        src_port: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        ttl: u8,
        payload: usize,
        opts: usize,
    }

    impl Default for P {
        fn default() -> Self {
            P { v6: false, udp: false, src_port: 1, seq: 1000, ack: 77, flags: TCP_ACK, ttl: 64, payload: 100, opts: 0 }
        }
    }

    /// A complete packet with valid checksums.
    fn packet(p: P) -> Vec<u8> {
        let iph = if p.v6 { 40 } else { 20 };
        let th = if p.udp { 8 } else { 20 + p.opts };
        let len = iph + th + p.payload;
        let mut b = vec![0u8; len];
        let proto = if p.udp { 17 } else { 6 };
        if p.v6 {
            b[0] = 0x60;
            b[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            b[6] = proto;
            b[7] = p.ttl;
            b[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            b[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            b[0] = 0x45;
            b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            b[6] = 0x40;
            b[8] = p.ttl;
            b[9] = proto;
            b[12..16].copy_from_slice(&[198, 18, 0, 1]);
            b[16..20].copy_from_slice(&[198, 18, 0, 2]);
            let c = !fold(sum(&b[..20], 0));
            b[10..12].copy_from_slice(&c.to_be_bytes());
        }
        b[iph..iph + 2].copy_from_slice(&p.src_port.to_be_bytes());
        b[iph + 2..iph + 4].copy_from_slice(&9u16.to_be_bytes());
        if p.udp {
            b[iph + 4..iph + 6].copy_from_slice(&((len - iph) as u16).to_be_bytes());
        } else {
            b[iph + 4..iph + 8].copy_from_slice(&p.seq.to_be_bytes());
            b[iph + 8..iph + 12].copy_from_slice(&p.ack.to_be_bytes());
            b[iph + 12] = ((th / 4) as u8) << 4;
            b[iph + 13] = p.flags;
            for o in 0..p.opts {
                b[iph + 20 + o] = 1; // NOP
            }
        }
        for (i, x) in b[iph + th..].iter_mut().enumerate() {
            *x = (p.seq as usize + i) as u8;
        }
        let csum_at = iph + if p.udp { 6 } else { 16 };
        let c = !fold(sum(&b[iph..], pseudo_header_sum(&b, !p.v6, proto, len - iph)));
        b[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        b
    }

    fn plan(pkts: &[Vec<u8>], gro: u32) -> Vec<Vec<usize>> {
        let views: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
        let mut g = Gro::default();
        g.plan(&views, gro);
        g.groups()
    }

    /// Emits the plan and splits every super-packet back with the read
    /// side's splitter: the segments must equal the original packets (IPv4
    /// IDs aside, which the kernel numbers from the head).
    fn round_trip(pkts: &[Vec<u8>], gro: u32) {
        let views: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
        let mut g = Gro::default();
        g.plan(&views, gro);
        let groups = g.groups();
        let mut out_i = 0;
        let failures = g.emit(&views, |iov, first, count| -> Result<(), ()> {
            let bytes: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
            assert_eq!(first, groups[out_i][0]);
            assert_eq!(count, groups[out_i].len());
            let hdr = VnetHdr::parse(&bytes).unwrap();
            let body = &bytes[VNET_HDR_LEN..];
            let plan = Plan::new(hdr, body).unwrap();
            assert_eq!(plan.count, count, "segments of output {out_i}");
            for (s, &idx) in groups[out_i].iter().enumerate() {
                let mut seg = vec![0u8; 70000];
                let n = plan.write_segment(body, s, &mut seg);
                let mut want = pkts[idx].clone();
                if want[0] >> 4 == 4 {
                    seg[4..6].copy_from_slice(&want[4..6]);
                    seg[10..12].copy_from_slice(&want[10..12]);
                }
                if count > 1 && hdr.gso_type != GSO_UDP_L4 && s + 1 < count {
                    let iph = if want[0] >> 4 == 4 { 20 } else { 40 };
                    want[iph + 13] &= !TCP_PSH; // segmentation keeps PSH on the last only
                }
                assert_eq!(&seg[..n], &want[..], "output {out_i} segment {s} (input {idx})");
            }
            out_i += 1;
            Ok(())
        });
        assert!(failures.is_empty());
        assert_eq!(out_i, groups.len());
    }

    #[test]
    fn flows_merge_across_the_whole_batch() {
        let pkts = vec![
            packet(P { seq: 1000, ..P::default() }),
            packet(P { udp: true, src_port: 5, payload: 200, ..P::default() }),
            packet(P { src_port: 2, seq: 1000, ..P::default() }), // another TCP flow
            packet(P { seq: 1100, ..P::default() }),
            packet(P { udp: true, src_port: 5, payload: 200, ..P::default() }),
            packet(P { v6: true, seq: 1000, ..P::default() }),
            packet(P { src_port: 2, seq: 1100, ..P::default() }),
            packet(P { v6: true, seq: 1100, ..P::default() }),
            packet(P { seq: 1200, flags: TCP_ACK | TCP_PSH, ..P::default() }),
            packet(P { udp: true, src_port: 5, payload: 50, ..P::default() }),
        ];
        assert_eq!(plan(&pkts, GRO_TCP | GRO_UDP), vec![vec![0, 3, 8], vec![1, 4, 9], vec![2, 6], vec![5, 7]]);
        round_trip(&pkts, GRO_TCP | GRO_UDP);
        // UDP coalescing off (no USO): the datagrams stay single.
        assert_eq!(plan(&pkts, GRO_TCP), vec![vec![0, 3, 8], vec![1], vec![2, 6], vec![4], vec![5, 7], vec![9]]);
        assert_eq!(plan(&pkts, 0).len(), pkts.len());
    }

    #[test]
    fn psh_short_segments_and_reordering() {
        // After PSH nothing is appended; a short segment ends an item; a
        // segment that ends where an item starts is prepended.
        let pkts = vec![
            packet(P { seq: 1100, ..P::default() }),
            packet(P { seq: 1000, ..P::default() }), // prepended
            packet(P { seq: 1200, payload: 40, ..P::default() }), // short: last of the item
            packet(P { seq: 1240, ..P::default() }), // new item
            packet(P { seq: 1340, flags: TCP_ACK | TCP_PSH, ..P::default() }),
            packet(P { seq: 1440, ..P::default() }), // after PSH: new item
        ];
        assert_eq!(plan(&pkts, GRO_TCP), vec![vec![1, 0, 2], vec![3, 4], vec![5]]);
        round_trip(&pkts, GRO_TCP);
    }

    #[test]
    fn unmergeable_packets_stand_alone() {
        let mut bad = packet(P { seq: 1100, ..P::default() });
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // payload no longer matches the checksum
        let frag = {
            let mut f = packet(P { seq: 1200, ..P::default() });
            f[6] = 0x20; // MF
            f
        };
        let pkts = vec![
            packet(P { seq: 1000, ..P::default() }),
            bad,
            packet(P { seq: 1100, ttl: 9, ..P::default() }), // TTL differs
            packet(P { seq: 1100, opts: 4, ..P::default() }), // header length differs
            frag,
            packet(P { seq: 1100, ack: 78, ..P::default() }), // another ack: another flow
            packet(P { seq: 1100, flags: TCP_ACK | 0x01, ..P::default() }), // FIN
            packet(P { seq: 1100, payload: 101, ..P::default() }), // longer than the segment size
        ];
        let groups = plan(&pkts, GRO_TCP | GRO_UDP);
        assert_eq!(groups.len(), pkts.len(), "{groups:?}");
        round_trip(&pkts, GRO_TCP | GRO_UDP);
    }

    #[test]
    fn an_item_whose_head_is_corrupt_never_merges() {
        let mut head = packet(P { seq: 1000, ..P::default() });
        let last = head.len() - 1;
        head[last] ^= 1;
        let pkts = vec![head, packet(P { seq: 1100, ..P::default() }), packet(P { seq: 1200, ..P::default() })];
        assert_eq!(plan(&pkts, GRO_TCP), vec![vec![0], vec![1, 2]]);
    }

    #[test]
    fn limits_split_a_long_flow() {
        // 64 KiB cap: 100 segments of 1000 bytes need two super-packets.
        let pkts: Vec<Vec<u8>> = (0..100).map(|i| packet(P { seq: 1000 + i * 1000, payload: 1000, ..P::default() })).collect();
        let groups = plan(&pkts, GRO_TCP);
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| 40 + g.len() * 1000 <= MAX_SUPER));
        round_trip(&pkts, GRO_TCP);
    }
}
