//! IPv4/IPv6 prefixes as route-table keys: parsed strictly (host bits must
//! be zero), ordered so that every more-specific prefix of `P` sorts in one
//! contiguous range starting at `P`.

use crate::error::{Error, Result};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Family (4 before 6), then address, then length: the subnets of a prefix
/// all lie between `(fam, addr, len)` and `(fam, last address, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    family: u8,
    addr: u128,
    len: u8,
}

impl Prefix {
    fn max_len(family: u8) -> u8 {
        if family == 4 {
            32
        } else {
            128
        }
    }

    fn host_mask(family: u8, len: u8) -> u128 {
        let bits = Self::max_len(family) - len;
        if bits == 0 {
            0
        } else {
            (1u128 << bits) - 1
        }
    }

    /// `"10.0.0.0/8"`, `"fd7a::/48"`; a bare address is a host prefix.
    pub fn parse(text: &str) -> Result<Prefix> {
        let bad = |why: &str| Error::invalid(format!("invalid prefix {text:?}: {why}"));
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let (family, value) = match ip {
            IpAddr::V4(v4) => (4u8, u32::from(v4) as u128),
            IpAddr::V6(v6) => (6u8, u128::from(v6)),
        };
        let max = Self::max_len(family);
        let len = match len {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && l.len() <= 3 => {
                l.parse::<u8>().map_err(|_| bad("bad length"))?
            }
            Some(_) => return Err(bad("bad length")),
        };
        if len > max {
            return Err(bad("length too long"));
        }
        if value & Self::host_mask(family, len) != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(Prefix { family, addr: value, len })
    }

    /// Whether `other` equals this prefix or lies inside it.
    pub fn contains(&self, other: &Prefix) -> bool {
        self.family == other.family
            && other.len >= self.len
            && other.addr & !Self::host_mask(self.family, self.len) == self.addr
    }

    /// The greatest key that `contains` can accept: range end for lookups.
    pub fn last_subnet(&self) -> Prefix {
        Prefix { family: self.family, addr: self.addr | Self::host_mask(self.family, self.len), len: Self::max_len(self.family) }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.family == 4 {
            write!(f, "{}/{}", Ipv4Addr::from(self.addr as u32), self.len)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.addr), self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        for text in ["10.0.0.0/8", "0.0.0.0/0", "100.64.0.2/32", "fd7a:115c:a1e0::/48", "::/0", "::1/128"] {
            assert_eq!(Prefix::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Prefix::parse("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        for text in ["", "10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8", "x/8", "10.0.0.0/8/8", "1.2.3/24"] {
            assert!(Prefix::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn subnets_sort_inside_the_range() {
        let p = Prefix::parse("10.1.0.0/16").unwrap();
        let inside = ["10.1.0.0/16", "10.1.2.0/24", "10.1.255.255/32"].map(|t| Prefix::parse(t).unwrap());
        let outside = ["10.0.0.0/8", "10.2.0.0/16", "10.0.255.0/24"].map(|t| Prefix::parse(t).unwrap());
        for q in inside {
            assert!(p.contains(&q) && p <= q && q <= p.last_subnet());
        }
        for q in outside {
            assert!(!p.contains(&q));
            assert!(q < p || q > p.last_subnet());
        }
        assert!(Prefix::parse("255.0.0.0/8").unwrap() < Prefix::parse("::/0").unwrap());
    }
}
