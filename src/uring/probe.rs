//! What the running kernel's io_uring supports, checked once per process.

use io_uring::{opcode, IoUring, Probe};
use once_cell::sync::OnceCell;

#[derive(Debug, Clone)]
pub struct Features {
    /// Why io_uring can't be used at all (setup failed, opcodes missing), if so.
    pub unusable: Option<String>,
    /// Multishot RECVMSG on a provided-buffer ring (kernel 6.0+).
    pub multishot_recvmsg: bool,
}

pub fn probe() -> &'static Features {
    static FEATURES: OnceCell<Features> = OnceCell::new();
    FEATURES.get_or_init(run_probe)
}

fn run_probe() -> Features {
    let unusable = |why: String| Features { unusable: Some(why), multishot_recvmsg: false };
    let ring = match IoUring::new(4) {
        Ok(ring) => ring,
        Err(e) => return unusable(format!("io_uring_setup failed: {e}")),
    };
    if !ring.params().is_feature_ext_arg() {
        return unusable("kernel lacks IORING_FEAT_EXT_ARG (needs 5.11+) for timed waits".into());
    }
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return unusable(format!("io_uring probe failed: {e}"));
    }
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return unusable(format!("io_uring lacks opcode {name}"));
        }
    }
    // Provided-buffer rings arrived in 5.19 and multishot recvmsg in 6.0;
    // opcode probing can't see either, so try registering a tiny ring.
    let multishot_recvmsg = super::buf_ring::BufRing::new(2, 64)
        .and_then(|bufs| bufs.register(&ring.submitter(), 0).map(|_| bufs))
        .is_ok()
        && kernel_at_least(6, 0);
    Features { unusable: None, multishot_recvmsg }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (have_major, have_minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (have_major, have_minor) >= (major, minor)
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_reports_consistently() {
        let f = super::probe();
        if let Some(why) = &f.unusable {
            eprintln!("io_uring unusable here: {why}");
            assert!(!f.multishot_recvmsg);
        }
    }
}
