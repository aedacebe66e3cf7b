//! Pending exports, coalesced per (listening protocol, prefix).
//!
//! A best-route change is not queued as one more export per listener:
//! each listener has at most one pending export per prefix, holding what
//! the listener was last told about the prefix (`seen`) and what it must be
//! told now (`latest`). A later change to the same prefix only updates
//! `latest`; when `latest` comes back to `seen` (say a route the listener
//! never saw was added and withdrawn again) the entry is dropped. So the
//! queue holds at most one entry per prefix a listener knows or the table
//! holds, whatever the rate of changes, and the listener still ends with
//! exactly the final table.
//!
//! Order: an entry keeps the queue position (`seq`) of the change that
//! created it, so exports for different prefixes go out in the order their
//! first pending change happened, and interleave with the other effects
//! (start, shutdown, ...) by the same sequence numbers.
//!
//! Entries are keyed by the listener's generation (unique per instance, and
//! its table is fixed for it), so an entry never outlives its instance.
//! Entries of a listener are dropped when it stops hearing changes
//! (`clear_listener`).

use super::prefix::Prefix;
use super::table::Route;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// One coalesced export, as the loop delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub gen: u64,
    pub table: Arc<str>,
    /// What the listener was last told (None: nothing, or a withdrawal).
    pub seen: Option<Route>,
    /// What it must be told now; never equal to `seen`.
    pub latest: Option<Route>,
}

impl Pending {
    /// The export to send: the new route, or the withdrawal of the one the
    /// listener saw.
    pub fn export(self) -> (Route, bool) {
        match (self.seen, self.latest) {
            (_, Some(new)) => (new, false),
            (Some(old), None) => (old, true),
            (None, None) => unreachable!("an entry with nothing to say is dropped"),
        }
    }
}

struct Entry {
    seq: u64,
    listener: Arc<str>,
    prefix: Prefix,
    pending: Pending,
}

/// Hashes the instance generations that key the outer map: small unique
/// integers the runtime hands out, so a multiplicative mix is enough.
#[derive(Default)]
struct GenHasher(u64);

impl Hasher for GenHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hashes prefixes for the per-listener maps: a folded multiply of each
/// word with per-process random keys (taken from the standard library's
/// `RandomState`), much cheaper than SipHash on a 3-field key, and still
/// keyed, so prefixes chosen from outside cannot be aimed at one bucket
/// without knowing the keys.
#[derive(Clone)]
struct PrefixHasherBuilder {
    k0: u64,
    k1: u64,
}

impl Default for PrefixHasherBuilder {
    fn default() -> Self {
        use std::hash::BuildHasher;
        static KEYS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let (k0, k1) = *KEYS.get_or_init(|| {
            let s = std::collections::hash_map::RandomState::new();
            (s.hash_one(0x5eed_u64) | 1, s.hash_one(0xfeed_u64))
        });
        PrefixHasherBuilder { k0, k1 }
    }
}

impl std::hash::BuildHasher for PrefixHasherBuilder {
    type Hasher = PrefixHasher;
    fn build_hasher(&self) -> PrefixHasher {
        PrefixHasher { acc: self.k1, key: self.k0 }
    }
}

struct PrefixHasher {
    acc: u64,
    key: u64,
}

impl PrefixHasher {
    fn mix(&mut self, word: u64) {
        let m = ((self.acc ^ word) as u128).wrapping_mul(self.key as u128 ^ 0x9e37_79b9_7f4a_7c15);
        self.acc = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.mix(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        self.acc
    }
}

type PrefixMap = HashMap<Prefix, u64, PrefixHasherBuilder>;

/// Below this many stale positions the order list is not compacted.
const COMPACT_SLACK: usize = 1024;

/// The entries live in `queue`, in `seq` order, where the loop reads them
/// front to back; the per-listener maps only say where (by entry id) an
/// entry for a prefix is, so they stay small and the payload is touched
/// in order.
#[derive(Default)]
pub(crate) struct ExportQueue {
    /// Per listener generation: prefix -> id of its entry.
    index: HashMap<u64, PrefixMap, BuildHasherDefault<GenHasher>>,
    /// Entry `id` is at `queue[id - base]`; None: cancelled or cleared.
    queue: VecDeque<Option<Entry>>,
    base: u64,
    live: usize,
    peak: usize,
}

impl ExportQueue {
    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The most live entries since the last `reset_peak`.
    pub fn peak(&self) -> usize {
        self.peak
    }

    pub fn reset_peak(&mut self) {
        self.peak = self.live;
    }

    fn at(&mut self, id: u64) -> &mut Option<Entry> {
        &mut self.queue[(id - self.base) as usize]
    }

    /// Records that what `listener` (generation `gen`, on `table`) should see
    /// at `prefix` changed from `old` to `new` (both already filtered to
    /// what it may see; they differ). A new entry takes `*next_seq` (which
    /// is advanced); an existing one keeps its place.
    #[allow(clippy::too_many_arguments)]
    pub fn note(
        &mut self,
        next_seq: &mut u64,
        listener: &Arc<str>,
        gen: u64,
        table: &Arc<str>,
        prefix: Prefix,
        old: Option<Route>,
        new: Option<Route>,
    ) {
        use std::collections::hash_map::Entry as MapEntry;
        let (base, queue) = (self.base, &mut self.queue);
        match self.index.entry(gen).or_default().entry(prefix) {
            MapEntry::Occupied(o) => {
                let slot = &mut queue[(*o.get() - base) as usize];
                let pending = &mut slot.as_mut().expect("indexed entries are live").pending;
                pending.latest = new;
                if pending.latest == pending.seen {
                    *slot = None;
                    o.remove();
                    self.live -= 1;
                    self.compact_if_sparse();
                }
            }
            MapEntry::Vacant(v) => {
                if old == new {
                    return;
                }
                let seq = *next_seq;
                *next_seq += 1;
                v.insert(base + queue.len() as u64);
                let pending = Pending { gen, table: table.clone(), seen: old, latest: new };
                queue.push_back(Some(Entry { seq, listener: listener.clone(), prefix, pending }));
                self.live += 1;
                self.peak = self.peak.max(self.live);
            }
        }
    }

    fn skip_cancelled(&mut self) {
        while let Some(None) = self.queue.front() {
            self.queue.pop_front();
            self.base += 1;
        }
    }

    /// The queue position of the oldest entry.
    pub fn front_seq(&mut self) -> Option<u64> {
        self.skip_cancelled();
        self.queue.front().map(|e| e.as_ref().expect("skipped").seq)
    }

    /// Takes the oldest entry: (seq, listener, prefix, what to send).
    pub fn pop(&mut self) -> Option<(u64, Arc<str>, Prefix, Pending)> {
        self.skip_cancelled();
        let e = self.queue.pop_front()?.expect("skipped");
        self.base += 1;
        if let Some(map) = self.index.get_mut(&e.pending.gen) {
            map.remove(&e.prefix);
        }
        self.live -= 1;
        Some((e.seq, e.listener, e.prefix, e.pending))
    }

    /// Drops every entry of listener generation `gen` (it no longer hears
    /// changes).
    pub fn clear_listener(&mut self, gen: u64) {
        let Some(map) = self.index.remove(&gen) else { return };
        self.live -= map.len();
        for id in map.into_values() {
            *self.at(id) = None;
        }
        self.compact_if_sparse();
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.base += self.queue.len() as u64;
        self.queue.clear();
        self.live = 0;
    }

    /// Keeps the queue within twice the live entries (plus slack), so
    /// cancelled entries cannot make it grow: amortised O(1) per change.
    /// Renumbers the live entries from `base`.
    fn compact_if_sparse(&mut self) {
        if self.queue.len() <= 2 * self.live + COMPACT_SLACK {
            return;
        }
        let old = std::mem::take(&mut self.queue);
        for e in old.into_iter().flatten() {
            let id = self.base + self.queue.len() as u64;
            let slot = self.index.get_mut(&e.pending.gen).and_then(|m| m.get_mut(&e.prefix));
            *slot.expect("live entries are indexed") = id;
            self.queue.push_back(Some(e));
        }
    }

    /// Positions held in the queue, cancelled ones included (tests).
    #[cfg(test)]
    pub fn positions(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u32) -> Prefix {
        Prefix::parse(&format!("10.0.{}.{}/32", i >> 8, i & 255)).unwrap()
    }

    fn r(owner: &str, preference: u32) -> Option<Route> {
        Some(Route { owner: owner.into(), preference, attrs: "{}".into() })
    }

    #[test]
    fn later_changes_replace_earlier_ones_in_place() {
        let (mut q, mut seq) = (ExportQueue::default(), 0u64);
        let (l, t): (Arc<str>, Arc<str>) = ("l".into(), "master".into());
        q.note(&mut seq, &l, 1, &t, p(1), None, r("a", 1));
        q.note(&mut seq, &l, 1, &t, p(2), None, r("a", 1));
        q.note(&mut seq, &l, 1, &t, p(1), r("a", 1), r("b", 2));
        assert_eq!((q.len(), seq), (2, 2), "p1 updated in place");
        let (s, _, prefix, pending) = q.pop().unwrap();
        assert_eq!((s, prefix), (0, p(1)), "p1 keeps its first place");
        assert_eq!(pending.export(), (r("b", 2).unwrap(), false));
        // Add then withdraw of a route the listener never saw: nothing left.
        q.note(&mut seq, &l, 1, &t, p(3), None, r("a", 1));
        q.note(&mut seq, &l, 1, &t, p(3), r("a", 1), None);
        let (_, _, prefix, _) = q.pop().unwrap();
        assert_eq!(prefix, p(2));
        assert!(q.pop().is_none() && q.front_seq().is_none() && q.len() == 0);
        // A withdrawal names the route the listener saw, not the last one.
        q.note(&mut seq, &l, 1, &t, p(4), r("a", 1), r("b", 2));
        q.note(&mut seq, &l, 1, &t, p(4), r("b", 2), None);
        assert_eq!(q.pop().unwrap().3.export(), (r("a", 1).unwrap(), true));
    }

    #[test]
    fn churn_on_few_prefixes_stays_bounded() {
        let (mut q, mut seq) = (ExportQueue::default(), 0u64);
        let (l, t): (Arc<str>, Arc<str>) = ("l".into(), "master".into());
        let mut current: Vec<Option<Route>> = vec![None; 8];
        for i in 0..100_000u32 {
            let k = (i % 8) as usize;
            let new = if i % 3 == 0 { None } else { r(if i % 2 == 0 { "a" } else { "b" }, i % 5) };
            if new != current[k] {
                q.note(&mut seq, &l, 1, &t, p(k as u32), current[k].clone(), new.clone());
                current[k] = new;
            }
            assert!(q.len() <= 8 && q.positions() <= 2 * 8 + COMPACT_SLACK + 1);
        }
        // Cleared listeners leave nothing to send; other generations stay.
        q.note(&mut seq, &l, 2, &t, p(100), None, r("a", 1));
        q.clear_listener(1);
        assert_eq!(q.pop().map(|e| (e.2, e.3.gen)), Some((p(100), 2)));
        assert!(q.pop().is_none());
    }
}
