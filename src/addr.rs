//! Socket address text forms: "1.2.3.4:5", "[::1]:5", "[fe80::1%2]:5" and
//! "[fe80::1%eth0]:5" (scope by interface name).

use crate::error::{Error, Result};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

pub fn parse(text: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    parse_named_scope(text).ok_or_else(|| {
        Error::new(
            crate::error::ErrorKind::Parse,
            format!("cannot parse {text:?} as an address: expected \"1.2.3.4:5\", \"[::1]:5\" or \"[fe80::1%2]:5\""),
        )
    })
}

/// "[fe80::1%eth0]:5": std only accepts numeric scopes.
fn parse_named_scope(text: &str) -> Option<SocketAddr> {
    let rest = text.strip_prefix('[')?;
    let (inside, port) = rest.split_once("]:")?;
    let (ip, scope) = inside.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    let scope_id = crate::sys::interface_index(scope)?;
    Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope_id)))
}

pub fn format(addr: &SocketAddr) -> String {
    addr.to_string()
}

/// A v4-mapped IPv6 address (from a dual-stack socket) back to its IPv4 form.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_documented_forms() {
        assert_eq!(parse("1.2.3.4:5").unwrap().to_string(), "1.2.3.4:5");
        assert_eq!(parse("[::1]:5").unwrap().to_string(), "[::1]:5");
        let scoped = parse("[fe80::1%2]:5").unwrap();
        match scoped {
            SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), 2),
            _ => panic!("expected v6"),
        }
    }

    #[test]
    fn parses_interface_name_scope() {
        match parse("[fe80::1%lo]:7").unwrap() {
            SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), crate::sys::interface_index("lo").unwrap()),
            _ => panic!("expected v6"),
        }
    }

    #[test]
    fn rejects_garbage_with_parse_kind() {
        for bad in ["", "1.2.3.4", "1.2.3.4:99999", "[::1]", "::1:5", "[fe80::1%nosuchif0]:5", "host:80"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Parse, "{bad}");
        }
    }

    #[test]
    fn unmaps_v4_mapped() {
        let mapped: SocketAddr = "[::ffff:198.18.0.1]:9".parse().unwrap();
        assert_eq!(unmap(mapped).to_string(), "198.18.0.1:9");
        let plain: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(unmap(plain), plain);
    }
}
