//! The packed snapshot encoding: a whole snapshot's versions and resources
//! in one buffer, so a binding (Go, where each call into C costs) adds them
//! with one call instead of one per resource. Little-endian; str/blob =
//! u32 length + bytes:
//!
//! ```text
//! magic  4 bytes "MRS1"
//! count  u32, then per type:
//!        type_url str; has_version u8 (0/1); [version str];
//!        count u32, then per resource: name str, ttl_ms i64 (<= 0: none), bytes blob
//! ```
//! A type with `has_version` 0 keeps the snapshot's default version.

use super::reader::Reader;
use super::snapshot::Snapshot;
use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

pub const PACKED_MAGIC: [u8; 4] = *b"MRS1";
/// cbindgen:ignore
pub const EDIT_MAGIC: [u8; 4] = *b"MRE1";

/// The error of a malformed buffer of kind `what`.
fn parse_error(what: &'static str) -> impl Fn(String) -> Error + Copy {
    move |e| Error::new(ErrorKind::Parse, format!("{what}: {e}"))
}

/// A reader past `magic`, or the error that names the magic expected.
fn open<'a>(buf: &'a [u8], magic: [u8; 4], what: &'static str) -> Result<Reader<'a>> {
    let mut r = Reader::new(buf);
    if r.take(4, "magic").map_err(parse_error(what))? != magic {
        let expected = std::str::from_utf8(&magic).unwrap_or("?");
        return Err(Error::new(ErrorKind::Parse, format!("{what}: bad magic (expected \"{expected}\")")));
    }
    Ok(r)
}

/// One resource entry: name, TTL (ttl_ms <= 0: none), bytes.
fn resource<'a>(r: &mut Reader<'a>) -> std::result::Result<(&'a str, Option<Duration>, &'a [u8]), String> {
    let name = r.text("resource name")?;
    let ttl_ms = r.i64("ttl_ms")?;
    let bytes = r.blob("resource bytes")?;
    Ok((name, (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms as u64)), bytes))
}

impl Snapshot {
    /// Adds everything in a packed buffer. All or nothing: on any error
    /// (malformed buffer, bad UTF-8, empty names, duplicates) the snapshot
    /// is unchanged and the error says where.
    pub fn add_packed(&mut self, buf: &[u8]) -> Result<()> {
        let mut next = self.clone();
        let parse = parse_error("packed snapshot");
        let mut r = open(buf, PACKED_MAGIC, "packed snapshot")?;
        for _ in 0..r.u32("type count").map_err(parse)? {
            let type_url = r.text("type URL").map_err(parse)?;
            if type_url.is_empty() {
                return Err(Error::invalid("packed snapshot: empty type URL"));
            }
            match r.u8("has_version").map_err(parse)? {
                0 => {}
                1 => next.set_version(type_url, r.text("version").map_err(parse)?)?,
                other => return Err(parse(format!("has_version is {other} at byte {}, not 0 or 1", r.offset() - 1))),
            }
            for _ in 0..r.u32("resource count").map_err(parse)? {
                let (name, ttl, bytes) = resource(&mut r).map_err(parse)?;
                next.add(type_url, name, bytes, ttl)?;
            }
        }
        if !r.is_empty() {
            return Err(parse(format!("{} trailing bytes", buf.len() - r.offset())));
        }
        *self = next;
        Ok(())
    }
}

impl Snapshot {
    /// Applies a packed edit (see `mr_snapshot_edit_packed`): the default
    /// version, then per type its version (override or default), the names
    /// it loses and the resources it gains or replaces. Copy-on-write, so
    /// the edited types remember what they came from and what changed (a
    /// continued delta stream then looks at just that). All or nothing.
    pub fn apply_edit_packed(&mut self, buf: &[u8]) -> Result<()> {
        let mut next = self.clone();
        let parse = parse_error("packed edit");
        let mut r = open(buf, EDIT_MAGIC, "packed edit")?;
        next.set_default_version(r.text("default version").map_err(parse)?);
        for _ in 0..r.u32("type count").map_err(parse)? {
            let type_url = r.text("type URL").map_err(parse)?;
            if type_url.is_empty() {
                return Err(Error::invalid("packed edit: empty type URL"));
            }
            match r.u8("has_version").map_err(parse)? {
                0 => next.clear_version(type_url),
                1 => next.set_version(type_url, r.text("version").map_err(parse)?)?,
                other => return Err(parse(format!("has_version is {other} at byte {}, not 0 or 1", r.offset() - 1))),
            }
            for _ in 0..r.u32("removed count").map_err(parse)? {
                let name = r.text("removed name").map_err(parse)?;
                next.remove(type_url, name).map_err(|e| Error::invalid(format!("packed edit: {}", e.message)))?;
            }
            for _ in 0..r.u32("resource count").map_err(parse)? {
                let (name, ttl, bytes) = resource(&mut r).map_err(parse)?;
                if next.type_set(type_url).is_some_and(|t| t.get(name).is_some()) {
                    next.remove(type_url, name)?;
                }
                next.add(type_url, name, bytes, ttl)?;
            }
        }
        if !r.is_empty() {
            return Err(parse(format!("{} trailing bytes", buf.len() - r.offset())));
        }
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) fn pack(types: &[(&str, Option<&str>, &[(&str, i64, &[u8])])]) -> Vec<u8> {
    let mut out = PACKED_MAGIC.to_vec();
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    out.extend_from_slice(&(types.len() as u32).to_le_bytes());
    for (type_url, version, resources) in types {
        put(&mut out, type_url.as_bytes());
        match version {
            Some(v) => {
                out.push(1);
                put(&mut out, v.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(resources.len() as u32).to_le_bytes());
        for (name, ttl, bytes) in *resources {
            put(&mut out, name.as_bytes());
            out.extend_from_slice(&ttl.to_le_bytes());
            put(&mut out, bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "type.example/A";
    const U: &str = "type.example/B";

    #[test]
    fn packed_adds_versions_and_resources() {
        let mut s = Snapshot::new("d");
        let buf = pack(&[(T, Some("v7"), &[("a", -1, b"one"), ("b", 1500, b"two")]), (U, None, &[])]);
        s.add_packed(&buf).unwrap();
        assert_eq!(s.version(T), "v7");
        assert_eq!(s.version(U), "d");
        let set = s.type_set(T).unwrap();
        assert_eq!(&set.get("a").unwrap().bytes()[..], b"one");
        assert_eq!(set.get("a").unwrap().ttl(), None);
        assert_eq!(set.get("b").unwrap().ttl(), Some(Duration::from_millis(1500)));
    }

    fn edit(default: &str, types: &[(&str, Option<&str>, &[&str], &[(&str, i64, &[u8])])]) -> Vec<u8> {
        let mut out = EDIT_MAGIC.to_vec();
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        put(&mut out, default.as_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        for (type_url, version, removed, upserts) in types {
            put(&mut out, type_url.as_bytes());
            match version {
                Some(v) => {
                    out.push(1);
                    put(&mut out, v.as_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&(removed.len() as u32).to_le_bytes());
            for n in *removed {
                put(&mut out, n.as_bytes());
            }
            out.extend_from_slice(&(upserts.len() as u32).to_le_bytes());
            for (name, ttl, bytes) in *upserts {
                put(&mut out, name.as_bytes());
                out.extend_from_slice(&ttl.to_le_bytes());
                put(&mut out, bytes);
            }
        }
        out
    }

    #[test]
    fn a_packed_edit_changes_what_it_names_and_remembers_it() {
        let mut s = Snapshot::new("d1");
        s.add_packed(&pack(&[(T, Some("v7"), &[("a", -1, b"one"), ("b", -1, b"two"), ("c", -1, b"three")])])).unwrap();
        let before = std::sync::Arc::new(s.clone());
        s.apply_edit_packed(&edit("d2", &[(T, None, &["b"], &[("a", 500, b"ONE"), ("z", -1, b"new")])])).unwrap();
        assert_eq!(s.default_version(), "d2");
        assert_eq!(s.version(T), "d2", "override cleared");
        let set = s.type_set(T).unwrap();
        assert_eq!(set.resources().keys().map(|k| k.to_string()).collect::<Vec<_>>(), ["a", "c", "z"]);
        assert_eq!(&set.get("a").unwrap().bytes()[..], b"ONE");
        assert_eq!(set.get("a").unwrap().ttl(), Some(Duration::from_millis(500)));
        assert!(std::sync::Arc::ptr_eq(set.get("c").unwrap(), before.type_set(T).unwrap().get("c").unwrap()), "untouched resources stay shared");
        let mut edits: Vec<String> = set.edits_since(before.type_set(T).unwrap()).unwrap().iter().map(|n| n.to_string()).collect();
        edits.sort();
        edits.dedup();
        assert_eq!(edits, ["a", "b", "z"]);
        // Bad edits change nothing.
        let snapshot_before = format!("{:?}", s.type_set(T).unwrap().resources());
        for bad in [
            edit("d3", &[(T, None, &["missing"], &[])]),
            edit("d3", &[(T, None, &[], &[("", -1, b"x")])]),
            edit("d3", &[("", None, &[], &[])]),
            b"MRS1".to_vec(),
            edit("d3", &[(T, None, &[], &[("a", -1, b"x")])])[..20].to_vec(),
        ] {
            assert!(s.apply_edit_packed(&bad).is_err());
            assert_eq!(format!("{:?}", s.type_set(T).unwrap().resources()), snapshot_before);
            assert_eq!(s.default_version(), "d2");
        }
    }

    #[test]
    fn bad_packed_buffers_change_nothing() {
        let good = pack(&[(T, Some("v1"), &[("a", -1, b"one")])]);
        let mut dup = pack(&[(T, None, &[("a", -1, b"x"), ("a", -1, b"y")])]);
        let mut s = Snapshot::new("d");
        s.add(T, "z", b"kept".to_vec(), None).unwrap();
        for (buf, kind) in [
            (good[..good.len() - 1].to_vec(), ErrorKind::Parse),
            ([good.clone(), vec![0]].concat(), ErrorKind::Parse),
            (b"XXXX\0\0\0\0".to_vec(), ErrorKind::Parse),
            (std::mem::take(&mut dup), ErrorKind::InvalidArgument),
            (pack(&[("", None, &[])]), ErrorKind::Parse),
        ] {
            let before = format!("{:?}", s.type_set(T));
            let err = s.add_packed(&buf).unwrap_err();
            assert!(err.kind == kind || kind == ErrorKind::Parse && err.kind == ErrorKind::InvalidArgument, "{err}");
            assert_eq!(format!("{:?}", s.type_set(T)), before);
            assert_eq!(s.version(T), "d");
        }
        let mut bad_utf8 = pack(&[(T, None, &[("a", -1, b"")])]);
        let at = bad_utf8.iter().rposition(|&b| b == b'a').unwrap();
        bad_utf8[at] = 0xff;
        assert!(s.add_packed(&bad_utf8).unwrap_err().message.contains("UTF-8"));
    }
}
