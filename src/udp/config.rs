//! UDP handle configuration and backend choice.

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Batch,
}

/// Which backend the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring if it works here, else batch (or what MESHRING_BACKEND says).
    Auto,
    Uring,
    Batch,
}

#[derive(Debug, Clone)]
pub struct UdpConfig {
    pub backend: BackendChoice,
    pub gso: bool,
    pub gro: bool,
    pub v6only: bool,
    pub reuse_port: bool,
    /// IP_PKTINFO / IPV6_RECVPKTINFO: receives report the local address
    /// each datagram was sent to (and sends may choose their source).
    pub pktinfo: bool,
    /// Receive buffers the kernel can fill ahead of the caller (io_uring).
    pub recv_buffers: u16,
    /// Largest datagram received whole; larger ones are dropped and counted.
    /// 0 = 2048, or 65535 with GRO.
    pub max_datagram: usize,
    /// Datagrams per io_uring submit / per sendmmsg, and batch receive size.
    pub batch: usize,
    pub so_rcvbuf: i32,
    pub so_sndbuf: i32,
    /// io_uring receive through multishot RECVMSG on a provided-buffer ring
    /// (the kernel receives ahead; each datagram is copied out) instead of
    /// io_uring readiness + `recvmmsg` into the caller's buffers (the default:
    /// see `make bench`).
    pub multishot_recv: bool,
    /// Test hook: use single-shot RECVMSG even where multishot works.
    pub force_single_shot: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            backend: BackendChoice::Auto,
            gso: false,
            gro: false,
            v6only: false,
            reuse_port: false,
            pktinfo: false,
            recv_buffers: 1024,
            max_datagram: 0,
            batch: 128,
            so_rcvbuf: 0,
            so_sndbuf: 0,
            multishot_recv: false,
            force_single_shot: false,
        }
    }
}

impl UdpConfig {
    pub fn max_datagram(&self) -> usize {
        match self.max_datagram {
            0 if self.gro => 65535,
            0 => 2048,
            n => n.min(65535),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.max_datagram > 65535 {
            return Err(Error::invalid(format!("max_datagram {} exceeds 65535", self.max_datagram)));
        }
        if self.gro && self.max_datagram != 0 && self.max_datagram < 65535 {
            return Err(Error::invalid("gro needs max_datagram 0 or 65535: coalesced datagrams reach 64 KiB"));
        }
        if self.batch == 0 || self.batch > 1024 {
            return Err(Error::invalid(format!("batch {} must be 1..=1024", self.batch)));
        }
        if self.recv_buffers == 0 || self.recv_buffers > 32768 {
            return Err(Error::invalid(format!("recv_buffers {} must be 1..=32768", self.recv_buffers)));
        }
        Ok(())
    }

    /// Resolves `Auto` with `MESHRING_BACKEND` (batch | uring | auto).
    pub fn resolved_choice(&self) -> Result<BackendChoice> {
        self.backend.resolved()
    }
}

impl BackendChoice {
    /// `Auto` refined by `MESHRING_BACKEND` (batch | uring | auto); an
    /// explicit choice in a config wins over the environment.
    pub fn resolved(self) -> Result<BackendChoice> {
        if self != BackendChoice::Auto {
            return Ok(self);
        }
        match std::env::var("MESHRING_BACKEND").ok().as_deref().map(str::trim) {
            None | Some("") | Some("auto") => Ok(BackendChoice::Auto),
            Some("batch") => Ok(BackendChoice::Batch),
            Some("uring") => Ok(BackendChoice::Uring),
            Some(other) => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("MESHRING_BACKEND={other:?} is not one of auto, uring, batch"),
            )),
        }
    }
}
