//! `SocketAddr` <-> kernel `sockaddr` conversions.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A sockaddr big enough for v4 and v6, in the kernel's layout.
#[derive(Clone, Copy)]
#[repr(C)]
pub union RawSockAddr {
    pub v4: libc::sockaddr_in,
    pub v6: libc::sockaddr_in6,
}

impl RawSockAddr {
    pub const CAPACITY: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;

    pub fn zeroed() -> Self {
        // SAFETY: both variants are plain integers/arrays for which all-zero is valid.
        unsafe { std::mem::zeroed() }
    }

    /// Encodes `addr`; on an IPv6 socket (`v6_socket`) IPv4 peers become v4-mapped.
    pub fn encode(addr: &SocketAddr, v6_socket: bool) -> (Self, libc::socklen_t) {
        let mut raw = Self::zeroed();
        let v6 = match (addr, v6_socket) {
            (SocketAddr::V4(v4), false) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                    sin_zero: [0; 8],
                };
                return (raw, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t);
            }
            (SocketAddr::V4(v4), true) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
            (SocketAddr::V6(v6), _) => *v6,
        };
        raw.v6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: v6.port().to_be(),
            sin6_flowinfo: v6.flowinfo().to_be(),
            sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
            sin6_scope_id: v6.scope_id(),
        };
        (raw, Self::CAPACITY)
    }

    pub fn decode(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        // SAFETY: the union is `repr(C)` plain-old-data, so viewing it as bytes is valid.
        let bytes = unsafe {
            std::slice::from_raw_parts((self as *const Self).cast::<u8>(), std::mem::size_of::<Self>())
        };
        sockaddr_from_bytes(&bytes[..(len as usize).min(bytes.len())])
    }
}

/// Decodes a sockaddr the kernel wrote into a byte buffer (possibly unaligned).
pub fn sockaddr_from_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?) as i32;
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_v6_and_mapped() {
        for (text, v6sock) in [("1.2.3.4:5", false), ("[fe80::1%3]:77", true), ("127.0.0.1:9", true)] {
            let addr: SocketAddr = text.parse().unwrap();
            let (raw, len) = RawSockAddr::encode(&addr, v6sock);
            let back = crate::addr::unmap(raw.decode(len).unwrap());
            assert_eq!(back, addr, "{text}");
        }
    }
}
