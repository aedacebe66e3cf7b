//! Responses and their binary encoding (the `mr_cache_watch_next` /
//! `mr_cache_fetch` wire format, specified in `mod.rs`).

use super::eval::Req;
use super::reader::Reader;
use super::resource::Resource;
use super::snapshot::TypeSet;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Which protocol a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// State of the world (also `fetch`).
    Sotw = 1,
    /// Incremental.
    Delta = 2,
}

/// One answer to a watch or fetch. Resources are shared with the snapshot;
/// bytes are copied only by `encode`. A SOTW answer is shared (`Arc`) by
/// every watch that asked the same of the same state, and encoded once.
#[derive(Debug, Clone)]
pub struct Response {
    pub kind: ResponseKind,
    /// Only TTL'd resources, resent so the client's TTL timers restart.
    pub heartbeat: bool,
    /// SOTW: the version_info to send; delta: the system version of the type.
    pub version: String,
    pub type_url: String,
    /// Sorted by name.
    pub resources: Vec<Arc<Resource>>,
    /// Delta only: names the stream must drop, sorted.
    pub removed: Vec<String>,
    /// The state the stream keeps for its next watch: SOTW = returned
    /// resources (name -> version), delta = next version map. Persistent:
    /// the next answer of a stream derives its own in O(changes).
    pub next_state: NextState,
    /// Unique per built response: two answers with the same id are the
    /// same response (the same bytes).
    id: u64,
    /// What a shared SOTW answer was built for: (wildcard, names).
    scope: Option<(bool, BTreeSet<String>)>,
    /// Delta: the set it was computed against, with the subscription.
    basis: Option<(Arc<TypeSet>, bool, BTreeSet<String>)>,
    /// Delta, opened after the stream's previous watch: the library keeps
    /// the next state, so the encoding leaves it out.
    state_kept: bool,
    encoded: OnceLock<Arc<[u8]>>,
}

/// A stream's resource versions by name.
pub type NextState = imbl::OrdMap<Arc<str>, Arc<str>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// cbindgen:ignore
pub const MAGIC: [u8; 4] = *b"MRX1";
/// cbindgen:ignore
pub const FLAG_HEARTBEAT: u8 = 1;
/// cbindgen:ignore
pub const FLAG_STATE_KEPT: u8 = 2;

fn str_len(s: &str) -> usize {
    4 + s.len()
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("xDS fields are below 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len());
    out.extend_from_slice(s);
}

impl Response {
    pub fn new(
        kind: ResponseKind,
        heartbeat: bool,
        version: String,
        type_url: String,
        resources: Vec<Arc<Resource>>,
        removed: Vec<String>,
        next_state: NextState,
    ) -> Response {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Response {
            kind,
            heartbeat,
            version,
            type_url,
            resources,
            removed,
            next_state,
            id,
            scope: None,
            basis: None,
            state_kept: false,
            encoded: OnceLock::new(),
        }
    }

    /// Marks a delta answer with what it was computed against (`set`, for
    /// `req`'s subscription); `kept`: its watch was opened after the
    /// stream's previous one, so the next state stays in the library.
    pub(crate) fn with_delta_basis(mut self, req: &Req, set: Option<Arc<TypeSet>>, kept: bool) -> Response {
        self.basis = set.map(|s| (s, req.wildcard, req.names.clone()));
        self.state_kept = kept;
        self
    }

    pub(crate) fn delta_basis(&self) -> Option<(&Arc<TypeSet>, bool, &BTreeSet<String>)> {
        self.basis.as_ref().map(|(s, w, n)| (s, *w, n))
    }

    /// Whether the encoding leaves the next state out (kept in the library
    /// for the stream's next watch).
    pub fn state_kept(&self) -> bool {
        self.state_kept
    }

    /// Equal for the same response handed to several watches.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks a SOTW answer as built for `req`'s names (see `scope_matches`).
    pub(crate) fn with_scope(mut self, req: &Req) -> Response {
        self.scope = Some((req.wildcard, if req.wildcard { BTreeSet::new() } else { req.names.clone() }));
        self
    }

    /// Whether this answer was built for the resources `req` covers.
    pub(crate) fn scope_matches(&self, req: &Req) -> bool {
        self.scope.as_ref().is_some_and(|(wildcard, names)| *wildcard == req.wildcard && (req.wildcard || *names == req.names))
    }

    /// The encoding, made on first use and shared after (as the response is).
    pub fn encoded(&self) -> &Arc<[u8]> {
        self.encoded.get_or_init(|| Arc::from(self.encode()))
    }

    pub fn names(&self) -> Vec<&str> {
        self.resources.iter().map(|r| r.name()).collect()
    }

    /// The exact encoded size, so `encode` allocates once.
    pub fn encoded_len(&self) -> usize {
        let mut n = 8 + str_len(&self.version) + str_len(&self.type_url) + 12;
        for r in &self.resources {
            n += str_len(r.name()) + str_len(r.version()) + 8 + 4 + r.bytes().len();
        }
        n += self.removed.iter().map(|s| str_len(s)).sum::<usize>();
        if !self.state_kept {
            n += self.next_state.iter().map(|(k, v)| str_len(k) + str_len(v)).sum::<usize>();
        }
        n
    }

    /// Encodes the response (little-endian, length-prefixed; see the module
    /// documentation of `cache` for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.push(self.kind as u8);
        out.push(if self.heartbeat { FLAG_HEARTBEAT } else { 0 } | if self.state_kept { FLAG_STATE_KEPT } else { 0 });
        out.extend_from_slice(&[0, 0]);
        put_str(&mut out, self.version.as_bytes());
        put_str(&mut out, self.type_url.as_bytes());
        put_u32(&mut out, self.resources.len());
        for r in &self.resources {
            put_str(&mut out, r.name().as_bytes());
            put_str(&mut out, r.version().as_bytes());
            let ttl_ms = r.ttl().map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
            out.extend_from_slice(&ttl_ms.to_le_bytes());
            put_str(&mut out, r.bytes());
        }
        put_u32(&mut out, self.removed.len());
        for name in &self.removed {
            put_str(&mut out, name.as_bytes());
        }
        if self.state_kept {
            put_u32(&mut out, 0);
        } else {
            put_u32(&mut out, self.next_state.len());
            for (name, version) in self.next_state.iter() {
                put_str(&mut out, name.as_bytes());
                put_str(&mut out, version.as_bytes());
            }
        }
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }
}

/// A decoded response, for tests and Rust hosts that receive encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    pub kind: u8,
    pub heartbeat: bool,
    pub state_kept: bool,
    pub version: String,
    pub type_url: String,
    /// (name, version, ttl_ms or -1, bytes)
    pub resources: Vec<(String, String, i64, Vec<u8>)>,
    pub removed: Vec<String>,
    pub next_state: BTreeMap<String, String>,
}

/// Decodes `encode`'s output; None if malformed.
pub fn decode(b: &[u8]) -> Option<Decoded> {
    decode_checked(b).ok()
}

fn decode_checked(b: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader::new(b);
    let head = r.take(8, "header")?;
    if head[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let mut d = Decoded { kind: head[4], heartbeat: head[5] & FLAG_HEARTBEAT != 0, state_kept: head[5] & FLAG_STATE_KEPT != 0, ..Default::default() };
    d.version = r.text("version")?.to_string();
    d.type_url = r.text("type URL")?.to_string();
    for _ in 0..r.u32("resource count")? {
        let name = r.text("name")?.to_string();
        let version = r.text("resource version")?.to_string();
        let ttl = r.i64("ttl")?;
        d.resources.push((name, version, ttl, r.blob("bytes")?.to_vec()));
    }
    for _ in 0..r.u32("removed count")? {
        d.removed.push(r.text("removed name")?.to_string());
    }
    for _ in 0..r.u32("next state count")? {
        let k = r.text("next state name")?.to_string();
        d.next_state.insert(k, r.text("next state version")?.to_string());
    }
    if !r.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(d)
}
