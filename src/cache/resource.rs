//! One opaque resource: a name, its serialized bytes (shared, never
//! copied by the cache), an optional TTL and a content version computed at
//! most once.

use std::hash::Hasher;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A stored resource. Held as `Arc<Resource>` by snapshots and responses,
/// so one resource's bytes exist once however many nodes and responses
/// share it.
#[derive(Debug)]
pub struct Resource {
    /// Shared, so a response's next state names it without copying.
    name: Arc<str>,
    bytes: Arc<[u8]>,
    ttl: Option<Duration>,
    /// Content hash as 32 hex digits; filled on first use, or copied from
    /// the previous snapshot's resource of the same name when the bytes are
    /// equal (so unchanged resources are never hashed again).
    version: OnceLock<Arc<str>>,
}

impl Resource {
    pub fn new(name: &str, bytes: impl Into<Arc<[u8]>>, ttl: Option<Duration>) -> Resource {
        Resource { name: Arc::from(name), bytes: bytes.into(), ttl, version: OnceLock::new() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The per-resource version used by delta watches and by the SOTW
    /// "returned resources" state: a 128-bit hash of the bytes, hex encoded.
    /// Stable within one build of the library (it is a cache key, not a
    /// wire format).
    pub fn version(&self) -> &Arc<str> {
        self.version.get_or_init(|| content_hash(&self.bytes).into())
    }

    /// Whether the version is already known (for tests of the hash-once rule).
    pub fn version_known(&self) -> bool {
        self.version.get().is_some()
    }

    /// Takes `previous`'s version when both hold the same bytes (pointer
    /// equality first, then a compare, which is far cheaper than hashing).
    pub(crate) fn inherit_version(&self, previous: &Resource) {
        if self.version.get().is_some() {
            return;
        }
        let Some(v) = previous.version.get() else { return };
        if Arc::ptr_eq(&self.bytes, &previous.bytes) || self.bytes[..] == previous.bytes[..] {
            let _ = self.version.set(v.clone());
        }
    }

    /// Same content (name, bytes, TTL), cheaply when shared.
    pub(crate) fn same_as(&self, other: &Resource) -> bool {
        // A version inherited from `other` (the same Arc) already proved the
        // bytes equal: no second compare.
        let inherited = matches!((self.version.get(), other.version.get()), (Some(a), Some(b)) if Arc::ptr_eq(a, b));
        self.name == other.name
            && self.ttl == other.ttl
            && (inherited || Arc::ptr_eq(&self.bytes, &other.bytes) || self.bytes[..] == other.bytes[..])
    }
}

/// Two independent SipHash-2-4 passes (std's fixed-key hasher, seeded
/// differently) give 128 bits: plenty against accidental collisions, no
/// extra dependency.
fn content_hash(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(32);
    for seed in [0x6d65_7368_7269_6e67u64, 0x7864_735f_7665_7273] {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(seed, !seed);
        h.write(bytes);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_a_stable_content_hash() {
        let a = Resource::new("a", b"xyz".to_vec(), None);
        let b = Resource::new("b", b"xyz".to_vec(), None);
        let c = Resource::new("a", b"xyw".to_vec(), None);
        assert_eq!(a.version().len(), 32);
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
    }

    #[test]
    fn inherit_only_for_equal_bytes() {
        let old = Resource::new("a", b"one".to_vec(), None);
        old.version();
        let same = Resource::new("a", b"one".to_vec(), None);
        same.inherit_version(&old);
        assert!(same.version_known());
        let other = Resource::new("a", b"two".to_vec(), None);
        other.inherit_version(&old);
        assert!(!other.version_known());
    }
}
