//! Positioned file I/O on io_uring: one READ, WRITE or FSYNC(datasync) at a
//! time, submitted and waited for before the call returns, so the caller's
//! buffer is borrowed for exactly the life of the kernel operation.

use super::ring::Ring;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::EventFd;
use io_uring::{opcode, squeue, types, Probe};
use std::os::fd::{AsRawFd, RawFd};

const OP_TAG: u64 = 1;

pub struct FileIo {
    // The ring drops (cancel + drain) before the eventfd it polls.
    ring: Ring,
    _wake: EventFd,
    fd: RawFd,
}

impl FileIo {
    /// A private ring for `fd`. Unsupported if io_uring or its file opcodes
    /// are unavailable here.
    pub fn new(fd: RawFd) -> Result<Self> {
        if let Some(why) = &super::probe().unusable {
            return Err(Error::new(ErrorKind::Unsupported, why.clone()));
        }
        // Nobody signals this eventfd: file I/O is never interrupted halfway.
        let wake = EventFd::new()?;
        let ring = Ring::new(4, 8, wake.as_raw_fd())?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| Error::from_io("io_uring probe", &e))?;
        for (code, name) in [(opcode::Read::CODE, "READ"), (opcode::Write::CODE, "WRITE"), (opcode::Fsync::CODE, "FSYNC")] {
            if !probe.is_supported(code) {
                return Err(Error::new(ErrorKind::Unsupported, format!("io_uring lacks opcode {name}")));
            }
        }
        Ok(FileIo { ring, _wake: wake, fd })
    }

    /// Submits `entry` and returns its result once its completion is reaped.
    /// Never returns while the operation is still in the kernel.
    ///
    /// # Safety
    /// Memory referenced by `entry` must stay valid until this returns.
    unsafe fn run(&mut self, entry: squeue::Entry) -> Result<i32> {
        // SAFETY: forwarded: the caller keeps the buffer alive for this call,
        // and this function does not return before the completion is reaped.
        unsafe { self.ring.push(&entry.user_data(OP_TAG))? };
        loop {
            if let Err(e) = self.ring.wait(1, None) {
                // Drain before giving the buffer back to the caller.
                let mut result = None;
                self.ring.cancel_all(|cqe| {
                    if cqe.user_data() == OP_TAG {
                        result = Some(cqe.result());
                    }
                });
                return match result {
                    Some(r) => Ok(r),
                    None => Err(e),
                };
            }
            while let Some(cqe) = self.ring.next_completion() {
                if cqe.user_data() == OP_TAG {
                    return Ok(cqe.result());
                }
            }
        }
    }

    /// Fills `buf` from `offset`; reading past the end of the file is an error.
    pub fn read_exact_at(&mut self, mut buf: &mut [u8], mut offset: u64) -> Result<()> {
        while !buf.is_empty() {
            let len = buf.len().min(1 << 30) as u32;
            let entry = opcode::Read::new(types::Fd(self.fd), buf.as_mut_ptr(), len).offset(offset).build();
            // SAFETY: `buf` is exclusively borrowed for this whole call.
            let n = check("io_uring read", unsafe { self.run(entry)? })?;
            if n == 0 {
                return Err(Error::new(ErrorKind::Io, format!("io_uring read: end of file at offset {offset}")));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    pub fn write_all_at(&mut self, mut buf: &[u8], mut offset: u64) -> Result<()> {
        while !buf.is_empty() {
            let len = buf.len().min(1 << 30) as u32;
            let entry = opcode::Write::new(types::Fd(self.fd), buf.as_ptr(), len).offset(offset).build();
            // SAFETY: `buf` is borrowed for this whole call.
            let n = check("io_uring write", unsafe { self.run(entry)? })?;
            if n == 0 {
                return Err(Error::new(ErrorKind::Io, "io_uring write: wrote nothing"));
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    pub fn fdatasync(&mut self) -> Result<()> {
        let entry = opcode::Fsync::new(types::Fd(self.fd)).flags(types::FsyncFlags::DATASYNC).build();
        // SAFETY: an fsync request references no memory.
        check("io_uring fdatasync", unsafe { self.run(entry)? }).map(drop)
    }
}

fn check(what: &str, result: i32) -> Result<usize> {
    if result < 0 {
        return Err(Error::os(what, -result));
    }
    Ok(result as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn write_read_sync_roundtrip() {
        let path = std::env::temp_dir().join(format!("mr-fileio-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let mut io = match FileIo::new(file.as_raw_fd()) {
            Ok(io) => io,
            Err(e) => {
                eprintln!("SKIP io_uring file I/O: {e}");
                return;
            }
        };
        let data: Vec<u8> = (0..10000u32).map(|i| i as u8).collect();
        io.write_all_at(&data, 100).unwrap();
        io.fdatasync().unwrap();
        let mut back = vec![0u8; data.len()];
        io.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(back, data);
        let mut past = vec![0u8; 10];
        assert!(io.read_exact_at(&mut past, 20000).is_err());
        drop(io);
        std::fs::remove_file(path).unwrap();
    }
}
