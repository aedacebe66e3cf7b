//! The secondary's overlays above the base volume: `active` holds the
//! secondary's own writes, `hidden` holds the old contents of blocks the
//! primary overwrote since the last checkpoint (copied before the write).
//! The speculative view reads active, then hidden, then the base.
//!
//! Both overlays live on disk, as QEMU keeps its overlay images: a sparse
//! file beside the volume (`<volume>.active`, `<volume>.hidden`) with each
//! block at its own offset, and in memory only a bitmap of the blocks
//! present (one bit per volume block: 32 KiB per GiB of 4 KiB blocks, for
//! any number of dirty blocks). The files are scratch: created empty when
//! the secondary starts (a restarted secondary begins with an empty view
//! over its base), emptied by a checkpoint (truncated to zero), removed
//! when the replication is dropped. Their data sits in the page cache like
//! any file's, not in the process.

use super::dirty::DirtyMap;
use super::volume::Volume;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Blocks read or written per step of a failover commit.
const COMMIT_CHUNK: usize = 256;

/// Whole blocks by block number, in a sparse file.
pub struct BlockMap {
    file: File,
    path: PathBuf,
    present: DirtyMap,
    bs: u64,
}

impl BlockMap {
    fn create(path: PathBuf, bs: u32, blocks: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::from_io(&format!("create the overlay {}", path.display()), &e))?;
        Ok(BlockMap { file, path, present: DirtyMap::new(blocks), bs: bs as u64 })
    }

    pub fn contains(&self, block: u64) -> bool {
        self.present.contains(block)
    }

    pub fn len(&self) -> usize {
        self.present.count() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.present.count() == 0
    }

    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, block * self.bs).map_err(|e| Error::from_io(&format!("read {}", self.path.display()), &e))
    }

    /// Stores whole blocks from `block` (contiguous).
    fn put(&mut self, block: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, block * self.bs).map_err(|e| Error::from_io(&format!("write {}", self.path.display()), &e))?;
        for b in block..block + data.len() as u64 / self.bs {
            self.present.set(b);
        }
        Ok(())
    }

    /// Empties the overlay (the `make_empty` of a checkpoint): the file is
    /// truncated, its blocks freed.
    pub fn clear(&mut self) -> Result<()> {
        if self.present.count() == 0 {
            return Ok(());
        }
        self.file.set_len(0).map_err(|e| Error::from_io(&format!("truncate {}", self.path.display()), &e))?;
        self.present.clear_all();
        Ok(())
    }
}

impl Drop for BlockMap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct Layers {
    pub active: BlockMap,
    pub hidden: BlockMap,
}

/// `<volume path>.<suffix>`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

impl Layers {
    /// Empty overlays beside `base`'s file.
    pub fn create(base: &Volume) -> Result<Self> {
        let (bs, n) = (base.block_size(), base.block_count());
        Ok(Layers {
            active: BlockMap::create(beside(base.path(), "active"), bs, n)?,
            hidden: BlockMap::create(beside(base.path(), "hidden"), bs, n)?,
        })
    }

    /// Reads `buf.len()` bytes of whole blocks from `block` through the view
    /// active -> hidden -> base.
    pub fn read(&self, base: &Volume, block: u64, buf: &mut [u8]) -> Result<()> {
        base.read(block, buf)?;
        if self.active.is_empty() && self.hidden.is_empty() {
            return Ok(());
        }
        let bs = base.block_size() as usize;
        for (i, chunk) in buf.chunks_mut(bs).enumerate() {
            let b = block + i as u64;
            if self.active.contains(b) {
                self.active.read_block(b, chunk)?;
            } else if self.hidden.contains(b) {
                self.hidden.read_block(b, chunk)?;
            }
        }
        Ok(())
    }

    /// The secondary's own write: into the active layer only.
    pub fn write_active(&mut self, base: &Volume, block: u64, data: &[u8]) -> Result<()> {
        base.check_range(block, data.len())?;
        self.active.put(block, data)
    }

    /// A primary write: the old base contents of blocks the view still reads
    /// from the base go to hidden first, then the base is overwritten.
    pub fn apply_primary(&mut self, base: &Volume, block: u64, data: &[u8]) -> Result<()> {
        let n = base.check_range(block, data.len())?;
        let bs = base.block_size() as usize;
        let needs_copy = |l: &Layers, b: u64| !l.active.contains(b) && !l.hidden.contains(b);
        if (block..block + n).any(|b| needs_copy(self, b)) {
            let mut old = vec![0u8; data.len()];
            base.read(block, &mut old)?;
            // Copy runs of consecutive blocks that need it, one write each.
            let mut i = 0usize;
            while i < n as usize {
                if !needs_copy(self, block + i as u64) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n as usize && needs_copy(self, block + i as u64) {
                    i += 1;
                }
                self.hidden.put(block + start as u64, &old[start * bs..i * bs])?;
            }
        }
        base.write_raw(block, data)
    }

    /// Checkpoint: the view becomes the base (the primary's state).
    pub fn make_empty(&mut self) -> Result<()> {
        self.active.clear()?;
        self.hidden.clear()
    }

    /// Failover: the secondary's own writes go into the base; the hidden
    /// copies are dropped, so the base keeps everything the primary sent.
    /// On failure the layers are left as they were, for a retry.
    pub fn commit_active(&mut self, base: &Volume) -> Result<()> {
        let bs = base.block_size() as usize;
        let mut buf = vec![0u8; COMMIT_CHUNK * bs];
        let mut from = 0;
        loop {
            let blocks = self.active.present.blocks_from(from, COMMIT_CHUNK);
            let Some(&last) = blocks.last() else { break };
            for (i, &b) in blocks.iter().enumerate() {
                self.active.read_block(b, &mut buf[i * bs..(i + 1) * bs])?;
            }
            // One batch: on io_uring many writes in flight from one submit.
            let extents: Vec<(u64, &[u8])> = blocks.iter().enumerate().map(|(i, &b)| (b, &buf[i * bs..(i + 1) * bs])).collect();
            base.write_batch_raw(&extents)?;
            from = last + 1;
        }
        base.flush()?;
        self.make_empty()
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
        let mut l = Layers::create(&v).unwrap();
        assert!(beside(&path, "hidden").exists() && beside(&path, "active").exists(), "overlays sit beside the volume");
        v.write_raw(0, &[block(1), block(1), block(1), block(1)].concat()).unwrap();
        l.apply_primary(&v, 0, &block(2)).unwrap(); // hidden keeps 1
        l.write_active(&v, 1, &block(3)).unwrap();
        l.apply_primary(&v, 1, &block(4)).unwrap(); // active covers it: no hidden copy
        assert_eq!((read1(&l, &v, 0), read1(&l, &v, 1), read1(&l, &v, 2)), (1, 3, 1));
        assert_eq!((l.active.len(), l.hidden.len()), (1, 1));
        l.apply_primary(&v, 0, &block(5)).unwrap(); // hidden keeps the first old copy
        assert_eq!(read1(&l, &v, 0), 1);
        l.make_empty().unwrap();
        assert_eq!(std::fs::metadata(beside(&path, "hidden")).unwrap().len(), 0, "a checkpoint frees the overlay's blocks");
        assert_eq!((read1(&l, &v, 0), read1(&l, &v, 1)), (5, 4));
        l.write_active(&v, 2, &block(6)).unwrap();
        l.apply_primary(&v, 3, &block(7)).unwrap();
        // A multi-block primary write over a mix of covered and uncovered blocks.
        l.write_active(&v, 1, &block(8)).unwrap();
        l.apply_primary(&v, 0, &[block(9), block(9), block(9)].concat()).unwrap();
        assert_eq!((read1(&l, &v, 0), read1(&l, &v, 1), read1(&l, &v, 2), read1(&l, &v, 3)), (5, 8, 6, 1));
        l.commit_active(&v).unwrap();
        assert!(l.active.is_empty() && l.hidden.is_empty());
        let mut raw = vec![0u8; 2048];
        v.read(0, &mut raw).unwrap();
        assert_eq!(raw, [block(9), block(8), block(6), block(7)].concat());
        drop(l);
        assert!(!beside(&path, "hidden").exists(), "dropping the layers removes their files");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn failed_commit_keeps_layers() {
        let (v, path) = temp_volume("commitfail", 2, BackendChoice::Batch);
        let mut l = Layers::create(&v).unwrap();
        l.write_active(&v, 1, &block(9)).unwrap();
        v.fail_writes.store(true, std::sync::atomic::Ordering::Release);
        assert!(l.commit_active(&v).is_err());
        assert_eq!(l.active.len(), 1);
        v.fail_writes.store(false, std::sync::atomic::Ordering::Release);
        l.commit_active(&v).unwrap();
        let mut raw = vec![0u8; 512];
        v.read(1, &mut raw).unwrap();
        assert_eq!(raw, block(9));
        drop(l);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn commit_walks_more_than_one_chunk() {
        let n = (COMMIT_CHUNK * 2 + 10) as u64;
        let (v, path) = temp_volume("commitmany", n + 5, BackendChoice::Auto);
        let mut l = Layers::create(&v).unwrap();
        for b in (0..n).filter(|b| b % 3 != 1) {
            l.write_active(&v, b, &block((b % 251) as u8)).unwrap();
        }
        l.commit_active(&v).unwrap();
        for b in 0..n {
            let mut raw = vec![0u8; 512];
            v.read(b, &mut raw).unwrap();
            assert_eq!(raw, if b % 3 != 1 { block((b % 251) as u8) } else { block(0) }, "block {b}");
        }
        drop(l);
        std::fs::remove_file(path).unwrap();
    }
}
