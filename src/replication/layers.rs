//! The secondary's overlays above the base volume: `active` holds the
//! secondary's own writes, `hidden` holds the old contents of blocks the
//! primary overwrote since the last checkpoint (copied before the write).
//! The speculative view reads active, then hidden, then the base.

use super::volume::Volume;
use crate::error::Result;
use std::collections::HashMap;

/// Whole blocks by block number, kept in memory.
#[derive(Default)]
pub struct BlockMap {
    blocks: HashMap<u64, Box<[u8]>>,
}

impl BlockMap {
    pub fn get(&self, block: u64) -> Option<&[u8]> {
        self.blocks.get(&block).map(|b| &b[..])
    }

    pub fn contains(&self, block: u64) -> bool {
        self.blocks.contains_key(&block)
    }

    pub fn put(&mut self, block: u64, data: &[u8]) {
        match self.blocks.get_mut(&block) {
            Some(slot) => slot.copy_from_slice(data),
            None => {
                self.blocks.insert(block, data.into());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Empties the map (the `make_empty` of a checkpoint).
    pub fn clear(&mut self) {
        self.blocks = HashMap::new();
    }

    /// The blocks in ascending order.
    pub fn sorted(&self) -> Vec<(u64, &[u8])> {
        let mut v: Vec<_> = self.blocks.iter().map(|(&b, d)| (b, &d[..])).collect();
        v.sort_unstable_by_key(|(b, _)| *b);
        v
    }
}

#[derive(Default)]
pub struct Layers {
    pub active: BlockMap,
    pub hidden: BlockMap,
}

impl Layers {
    /// Reads `buf.len()` bytes of whole blocks from `block` through the view
    /// active -> hidden -> base.
    pub fn read(&self, base: &Volume, block: u64, buf: &mut [u8]) -> Result<()> {
        base.read(block, buf)?;
        let bs = base.block_size() as usize;
        for (i, chunk) in buf.chunks_mut(bs).enumerate() {
            let b = block + i as u64;
            if let Some(data) = self.active.get(b).or_else(|| self.hidden.get(b)) {
                chunk.copy_from_slice(data);
            }
        }
        Ok(())
    }

    /// The secondary's own write: into the active layer only.
    pub fn write_active(&mut self, base: &Volume, block: u64, data: &[u8]) -> Result<()> {
        base.check_range(block, data.len())?;
        for (i, chunk) in data.chunks(base.block_size() as usize).enumerate() {
            self.active.put(block + i as u64, chunk);
        }
        Ok(())
    }

    /// A primary write: the old base contents of blocks the view still reads
    /// from the base go to hidden first, then the base is overwritten.
    pub fn apply_primary(&mut self, base: &Volume, block: u64, data: &[u8]) -> Result<()> {
        let n = base.check_range(block, data.len())?;
        let bs = base.block_size() as usize;
        let needs_copy = |b: u64| !self.active.contains(b) && !self.hidden.contains(b);
        if (block..block + n).any(needs_copy) {
            let mut old = vec![0u8; data.len()];
            base.read(block, &mut old)?;
            for (i, chunk) in old.chunks(bs).enumerate() {
                let b = block + i as u64;
                if !self.active.contains(b) && !self.hidden.contains(b) {
                    self.hidden.put(b, chunk);
                }
            }
        }
        base.write_raw(block, data)
    }

    /// Checkpoint: the view becomes the base (the primary's state).
    pub fn make_empty(&mut self) {
        self.active.clear();
        self.hidden.clear();
    }

    /// Failover: the secondary's own writes go into the base; the hidden
    /// copies are dropped, so the base keeps everything the primary sent.
    /// On failure the layers are left as they were, for a retry.
    pub fn commit_active(&mut self, base: &Volume) -> Result<()> {
        // One batch: on io_uring many writes in flight from one submit.
        base.write_batch_raw(&self.active.sorted())?;
        base.flush()?;
        self.make_empty();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::volume::tests::temp_volume;
    use crate::udp::BackendChoice;

    fn block(fill: u8) -> Vec<u8> {
        vec![fill; 512]
    }

    fn read1(l: &Layers, v: &Volume, b: u64) -> u8 {
        let mut buf = vec![0u8; 512];
        l.read(v, b, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == buf[0]));
        buf[0]
    }

    #[test]
    fn view_reads_active_then_hidden_then_base() {
        let (v, path) = temp_volume("layers", 4, BackendChoice::Batch);
        let mut l = Layers::default();
        v.write_raw(0, &[block(1), block(1), block(1), block(1)].concat()).unwrap();
        l.apply_primary(&v, 0, &block(2)).unwrap(); // hidden keeps 1
        l.write_active(&v, 1, &block(3)).unwrap();
        l.apply_primary(&v, 1, &block(4)).unwrap(); // active covers it: no hidden copy
        assert_eq!((read1(&l, &v, 0), read1(&l, &v, 1), read1(&l, &v, 2)), (1, 3, 1));
        assert_eq!((l.active.len(), l.hidden.len()), (1, 1));
        l.apply_primary(&v, 0, &block(5)).unwrap(); // hidden keeps the first old copy
        assert_eq!(read1(&l, &v, 0), 1);
        l.make_empty();
        assert_eq!((read1(&l, &v, 0), read1(&l, &v, 1)), (5, 4));
        l.write_active(&v, 2, &block(6)).unwrap();
        l.apply_primary(&v, 3, &block(7)).unwrap();
        l.commit_active(&v).unwrap();
        assert!(l.active.is_empty() && l.hidden.is_empty());
        let mut raw = vec![0u8; 2048];
        v.read(0, &mut raw).unwrap();
        assert_eq!(raw, [block(5), block(4), block(6), block(7)].concat());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn failed_commit_keeps_layers() {
        let (v, path) = temp_volume("commitfail", 2, BackendChoice::Batch);
        let mut l = Layers::default();
        l.write_active(&v, 1, &block(9)).unwrap();
        v.fail_writes.store(true, std::sync::atomic::Ordering::Release);
        assert!(l.commit_active(&v).is_err());
        assert_eq!(l.active.len(), 1);
        v.fail_writes.store(false, std::sync::atomic::Ordering::Release);
        l.commit_active(&v).unwrap();
        let mut raw = vec![0u8; 512];
        v.read(1, &mut raw).unwrap();
        assert_eq!(raw, block(9));
        std::fs::remove_file(path).unwrap();
    }
}
