//! `mr_addr`: an IPv4/IPv6 socket address by value.

use super::error::mr_status;
use super::ffi::{try_in, try_out, try_str, write_c_string};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::raw::c_char;

/// An IP socket address. `family` is 4 or 6; an IPv4 address sits in
/// `ip[0..4]`; `scope_id` is the IPv6 zone (interface index) or 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mr_addr {
    pub family: u16,
    pub port: u16,
    pub scope_id: u32,
    pub ip: [u8; 16],
}

impl From<SocketAddr> for mr_addr {
    fn from(addr: SocketAddr) -> Self {
        let mut out = mr_addr { port: addr.port(), ..Default::default() };
        match addr {
            SocketAddr::V4(v4) => {
                out.family = 4;
                out.ip[..4].copy_from_slice(&v4.ip().octets());
            }
            SocketAddr::V6(v6) => {
                out.family = 6;
                out.scope_id = v6.scope_id();
                out.ip = v6.ip().octets();
            }
        }
        out
    }
}

impl mr_addr {
    /// `None` if `family` is neither 4 nor 6.
    pub(crate) fn to_socket_addr(&self) -> Option<SocketAddr> {
        match self.family {
            4 => Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]), self.port))),
            6 => Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(self.ip), self.port, 0, self.scope_id))),
            _ => None,
        }
    }
}

/// Buffer size that holds any `mr_addr_format` result with its NUL
/// ("[ffff:...:ffff%4294967295]:65535" is 58 characters).
pub const MR_ADDR_TEXT_MAX: usize = 64;

/// Parses "1.2.3.4:5", "[::1]:5", "[fe80::1%2]:5" or "[fe80::1%eth0]:5"
/// into `*out`. MR_PARSE if the text is not such an address.
#[no_mangle]
pub extern "C" fn mr_addr_parse(text: *const c_char, out: *mut mr_addr) -> mr_status {
    ffi_status!("mr_addr_parse", {
        let out = try_out(out, "out")?;
        let text = try_str(text, "text")?;
        *out = crate::addr::parse(text)?.into();
        Ok(())
    })
}

/// Formats `*a` as text ("1.2.3.4:5", "[fe80::1%2]:5") into `buf` of `cap`
/// bytes, NUL-terminated. `*len` (if not NULL) receives the length without
/// the NUL, also when the result is MR_BUFFER_TOO_SMALL; MR_ADDR_TEXT_MAX bytes always suffice.
#[no_mangle]
pub extern "C" fn mr_addr_format(a: *const mr_addr, buf: *mut c_char, cap: usize, len: *mut usize) -> mr_status {
    ffi_status!("mr_addr_format", {
        let a = try_in(a, "a")?;
        let addr = a
            .to_socket_addr()
            .ok_or_else(|| crate::error::Error::invalid(format!("address family {} is not 4 or 6", a.family)))?;
        write_c_string(&crate::addr::format(&addr), buf, cap, len)
    })
}
