//! Picks, per kind of operation, the faster of two I/O paths by measuring
//! them. An AUTO volume with io_uring uses one chooser for single-block
//! reads, one for writes and one for multi-block batches.
//!
//! Why measure instead of a fixed rule: whether io_uring beats a plain
//! syscall depends on the file system and the request. A buffered ext4
//! write cannot complete with IOCB_NOWAIT, so io_uring hands every one to
//! an io-wq worker thread (one cross-thread wake-up per write, ~30x a
//! pwrite(2) for one 4 KiB block on kernel 6.18), while a read from the
//! page cache completes inline and costs about a pread(2) plus ring
//! overhead. On O_DIRECT or NOWAIT-capable file systems the answer differs.
//!
//! The first `TRIAL` operations of a kind alternate between the two paths
//! and are timed; the path with the lower median wins (ties go to the plain
//! syscall). The trial is repeated every `RETRIAL_EVERY` operations, so a
//! change of conditions (cache pressure, another file system) is noticed,
//! at a cost of a few slow operations per million.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPath {
    Uring,
    Plain,
}

/// Timed operations per path in one trial.
/// cbindgen:ignore
pub const TRIAL: usize = 16;
/// Operations on the chosen path before the next trial.
/// cbindgen:ignore
pub const RETRIAL_EVERY: u64 = 1 << 20;

const UNDECIDED: u8 = 0;
const URING: u8 = 1;
const PLAIN: u8 = 2;

#[derive(Default)]
struct Trial {
    uring: Vec<u64>,
    plain: Vec<u64>,
    /// Trial operations handed out (alternating), including unfinished ones.
    started: usize,
}

pub struct Chooser {
    choice: AtomicU8,
    ops: AtomicU64,
    trial: Mutex<Trial>,
}

impl Default for Chooser {
    fn default() -> Self {
        Self::new()
    }
}

impl Chooser {
    pub fn new() -> Self {
        Chooser { choice: AtomicU8::new(UNDECIDED), ops: AtomicU64::new(0), trial: Mutex::new(Trial::default()) }
    }

    /// The path for the next operation, and whether it is a timed trial
    /// operation (then report its duration to `record`).
    pub fn pick(&self) -> (IoPath, bool) {
        let choice = self.choice.load(Ordering::Relaxed);
        if choice != UNDECIDED {
            if self.ops.fetch_add(1, Ordering::Relaxed) + 1 >= RETRIAL_EVERY {
                self.ops.store(0, Ordering::Relaxed);
                self.choice.store(UNDECIDED, Ordering::Relaxed);
            }
            return (if choice == URING { IoPath::Uring } else { IoPath::Plain }, false);
        }
        let mut t = self.trial.lock().unwrap_or_else(|p| p.into_inner());
        let path = if t.started % 2 == 0 { IoPath::Uring } else { IoPath::Plain };
        t.started += 1;
        (path, true)
    }

    /// Reports a trial operation's duration; decides once both paths have
    /// `TRIAL` samples.
    pub fn record(&self, path: IoPath, nanos: u64) {
        let mut t = self.trial.lock().unwrap_or_else(|p| p.into_inner());
        match path {
            IoPath::Uring => t.uring.push(nanos),
            IoPath::Plain => t.plain.push(nanos),
        }
        if t.uring.len() >= TRIAL && t.plain.len() >= TRIAL {
            let winner = if median(&mut t.uring) < median(&mut t.plain) { URING } else { PLAIN };
            log::debug!(
                "volume I/O: io_uring median {} ns, plain median {} ns: using {}",
                median(&mut t.uring),
                median(&mut t.plain),
                if winner == URING { "io_uring" } else { "the plain syscall" }
            );
            *t = Trial::default();
            self.ops.store(0, Ordering::Relaxed);
            self.choice.store(winner, Ordering::Relaxed);
        }
    }

    /// The decided path; None during a trial.
    #[cfg(test)]
    pub fn chosen(&self) -> Option<IoPath> {
        match self.choice.load(Ordering::Relaxed) {
            URING => Some(IoPath::Uring),
            PLAIN => Some(IoPath::Plain),
            _ => None,
        }
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_trial(c: &Chooser, uring_ns: u64, plain_ns: u64) {
        while c.chosen().is_none() {
            let (path, timed) = c.pick();
            assert!(timed);
            c.record(path, if path == IoPath::Uring { uring_ns } else { plain_ns });
        }
    }

    #[test]
    fn trial_alternates_then_picks_the_faster() {
        let c = Chooser::new();
        assert_eq!(c.pick(), (IoPath::Uring, true));
        assert_eq!(c.pick(), (IoPath::Plain, true));
        c.record(IoPath::Uring, 40_000);
        c.record(IoPath::Plain, 1_500);
        run_trial(&c, 40_000, 1_500);
        assert_eq!(c.chosen(), Some(IoPath::Plain));
        assert_eq!(c.pick(), (IoPath::Plain, false));

        let c = Chooser::new();
        run_trial(&c, 800, 1_500);
        assert_eq!(c.pick(), (IoPath::Uring, false));
    }

    #[test]
    fn ties_and_outliers() {
        // A tie goes to the plain syscall.
        let c = Chooser::new();
        run_trial(&c, 1_000, 1_000);
        assert_eq!(c.chosen(), Some(IoPath::Plain));
        // One huge outlier on the plain path does not move the median.
        let c = Chooser::new();
        c.record(IoPath::Plain, 10_000_000);
        run_trial(&c, 5_000, 1_000);
        assert_eq!(c.chosen(), Some(IoPath::Plain));
    }

    #[test]
    fn retrial_after_many_operations() {
        let c = Chooser::new();
        run_trial(&c, 5_000, 1_000);
        for _ in 0..RETRIAL_EVERY - 1 {
            assert_eq!(c.pick(), (IoPath::Plain, false));
        }
        // The last operation of the period still runs on the chosen path; a new trial follows.
        assert_eq!(c.pick(), (IoPath::Plain, false));
        assert_eq!(c.chosen(), None);
        run_trial(&c, 500, 1_000);
        assert_eq!(c.chosen(), Some(IoPath::Uring));
    }
}
