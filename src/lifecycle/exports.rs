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

struct Slot {
    seq: u64,
    listener: Arc<str>,
    pending: Pending,
}

/// Hashes the instance generations that key the outer map: small unique
/// integers the runtime hands out, so a multiplicative mix is enough (the
/// prefix maps keep the standard keyed hasher: prefixes come from outside).
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

/// Below this many stale positions the order list is not compacted.
const COMPACT_SLACK: usize = 1024;

#[derive(Default)]
pub(crate) struct ExportQueue {
    /// Per listener generation: prefix -> its pending export.
    slots: HashMap<u64, HashMap<Prefix, Slot>, BuildHasherDefault<GenHasher>>,
    /// Queue positions in `seq` order; a position whose slot is gone or was
    /// re-queued under a later `seq` is stale and skipped.
    order: VecDeque<(u64, u64, Prefix)>,
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
        use std::collections::hash_map::Entry;
        match self.slots.entry(gen).or_default().entry(prefix) {
            Entry::Occupied(mut o) => {
                let pending = &mut o.get_mut().pending;
                pending.latest = new;
                if pending.latest == pending.seen {
                    o.remove();
                    self.live -= 1;
                    self.compact_if_sparse();
                }
            }
            Entry::Vacant(v) => {
                if old == new {
                    return;
                }
                let seq = *next_seq;
                *next_seq += 1;
                let pending = Pending { gen, table: table.clone(), seen: old, latest: new };
                v.insert(Slot { seq, listener: listener.clone(), pending });
                self.order.push_back((seq, gen, prefix));
                self.live += 1;
                self.peak = self.peak.max(self.live);
                self.compact_if_sparse();
            }
        }
    }

    fn is_live(&self, seq: u64, gen: u64, prefix: &Prefix) -> bool {
        self.slots.get(&gen).and_then(|m| m.get(prefix)).is_some_and(|s| s.seq == seq)
    }

    /// The queue position of the oldest entry.
    pub fn front_seq(&mut self) -> Option<u64> {
        while let Some((seq, gen, prefix)) = self.order.front() {
            if self.is_live(*seq, *gen, prefix) {
                return Some(*seq);
            }
            self.order.pop_front();
        }
        None
    }

    /// Takes the oldest entry: (seq, listener, prefix, what to send).
    pub fn pop(&mut self) -> Option<(u64, Arc<str>, Prefix, Pending)> {
        while let Some((seq, gen, prefix)) = self.order.pop_front() {
            let Some(map) = self.slots.get_mut(&gen) else { continue };
            let Some(slot) = map.remove(&prefix) else { continue };
            if slot.seq != seq {
                map.insert(prefix, slot); // a stale position of a re-queued prefix
                continue;
            }
            self.live -= 1;
            return Some((seq, slot.listener, prefix, slot.pending));
        }
        None
    }

    /// Drops every entry of listener generation `gen` (it no longer hears
    /// changes).
    pub fn clear_listener(&mut self, gen: u64) {
        if let Some(map) = self.slots.remove(&gen) {
            self.live -= map.len();
            self.compact_if_sparse();
        }
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.order.clear();
        self.live = 0;
    }

    /// Keeps the order list within twice the live entries (plus slack), so
    /// cancelled entries cannot make it grow: amortised O(1) per change.
    fn compact_if_sparse(&mut self) {
        if self.order.len() <= 2 * self.live + COMPACT_SLACK {
            return;
        }
        let slots = &self.slots;
        self.order.retain(|(seq, gen, prefix)| slots.get(gen).and_then(|m| m.get(prefix)).is_some_and(|s| s.seq == *seq));
    }

    /// Positions held in the order list, stale ones included (tests).
    #[cfg(test)]
    pub fn positions(&self) -> usize {
        self.order.len()
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
