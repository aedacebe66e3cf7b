//! The primary's dirty-block bitmap: blocks whose current content the
//! secondary may not have. A reconnecting secondary is resynced from it.

pub struct DirtyMap {
    words: Vec<u64>,
    count: u64,
}

impl DirtyMap {
    pub fn new(blocks: u64) -> Self {
        DirtyMap { words: vec![0; blocks.div_ceil(64) as usize], count: 0 }
    }

    pub fn set(&mut self, block: u64) {
        let (w, bit) = ((block / 64) as usize, 1u64 << (block % 64));
        if self.words[w] & bit == 0 {
            self.words[w] |= bit;
            self.count += 1;
        }
    }

    pub fn clear(&mut self, block: u64) {
        let (w, bit) = ((block / 64) as usize, 1u64 << (block % 64));
        if self.words[w] & bit != 0 {
            self.words[w] &= !bit;
            self.count -= 1;
        }
    }

    pub fn contains(&self, block: u64) -> bool {
        self.words[(block / 64) as usize] & (1u64 << (block % 64)) != 0
    }

    /// Clears every block, keeping the map's size (no new allocation).
    pub fn clear_all(&mut self) {
        self.words.fill(0);
        self.count = 0;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Up to `max` set blocks from `from` on, in order.
    pub fn blocks_from(&self, from: u64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut i = (from / 64) as usize;
        let mut w = match self.words.get(i) {
            Some(&w) => w & (!0u64 << (from % 64)),
            None => return out,
        };
        loop {
            while w != 0 {
                if out.len() == max {
                    return out;
                }
                out.push(i as u64 * 64 + w.trailing_zeros() as u64);
                w &= w - 1;
            }
            i += 1;
            match self.words.get(i) {
                Some(&next) => w = next,
                None => return out,
            }
        }
    }

    /// Every dirty block, in order.
    pub fn blocks(&self) -> Vec<u64> {
        self.blocks_from(0, usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::DirtyMap;

    #[test]
    fn set_clear_count_and_list() {
        let mut d = DirtyMap::new(130);
        for b in [0, 63, 64, 129, 64] {
            d.set(b);
        }
        assert_eq!(d.count(), 4);
        assert_eq!(d.blocks(), vec![0, 63, 64, 129]);
        d.clear(63);
        d.clear(63);
        assert!(!d.contains(63) && d.contains(129));
        assert_eq!(d.count(), 3);
        assert_eq!(d.blocks_from(1, 10), vec![64, 129]);
        assert_eq!(d.blocks_from(0, 2), vec![0, 64]);
        assert_eq!(d.blocks_from(65, 10), vec![129]);
        assert_eq!(d.blocks_from(130, 10), Vec::<u64>::new());
    }
}
