//! `mr_tun`: a TUN device with batched reads and writes.

use super::error::{mr_status, value_or};
use super::ffi::{check_options, free_handle, into_handle, try_batch, try_batch_mut, try_in, try_out, try_ref, try_str, write_c_string, Castable};
use super::udp::{backend_choice, mr_backend};
use crate::error::{Error, Result};
use crate::sync::Wait;
use crate::tun::{OutPacket, PacketSlot, Tun, TunConfig};

use std::os::raw::{c_char, c_int};

/// A TUN device handle. Thread-safe: one thread may write while another reads.
pub struct mr_tun {
    _opaque: [u8; 0],
}

impl Castable for mr_tun {
    type Rust = Tun;
    const NAME: &'static str = "mr_tun";
}

/// `mr_tun_config.flags`: keep the kernel's 4-byte packet-information
/// header on the device. Reads still return plain IP packets (the header's
/// protocol goes to `mr_packet.proto`); writes get the header added.
pub const MR_TUN_PACKET_INFO: u32 = 1;
/// `mr_tun_config.flags`: create a multi-queue device; creating another
/// handle with the same name adds a queue.
pub const MR_TUN_MULTI_QUEUE: u32 = 2;
/// `mr_tun_config.flags`: IFF_VNET_HDR with checksum, TSO and USO offloads.
/// The kernel then hands over TCP/UDP super-packets of up to 64 KiB (far
/// fewer reads); `mr_tun_read` splits them back into MTU-sized packets with
/// correct headers and checksums, so callers see ordinary packets. Cannot
/// be combined with MR_TUN_PACKET_INFO.
pub const MR_TUN_OFFLOAD: u32 = 4;
const KNOWN_TUN_FLAGS: u32 = MR_TUN_PACKET_INFO | MR_TUN_MULTI_QUEUE | MR_TUN_OFFLOAD;

/// Options for `mr_tun_create` / `mr_tun_from_fd`. Fill it with
/// `mr_tun_config_init` first, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_tun_config {
    /// sizeof(mr_tun_config), set by mr_tun_config_init.
    pub struct_size: u32,
    /// An `mr_backend` value; MR_BACKEND_AUTO by default.
    pub backend: u32,
    /// MR_TUN_* bits.
    pub flags: u32,
    /// MTU to set after creation; 0 keeps the kernel's (1500).
    pub mtu: u32,
}

/// One IP packet for `mr_tun_read` / `mr_tun_write`. The caller owns `buf`.
/// Read: `buf`/`cap` is the space (at least the device MTU); the library sets
/// `len` and `proto` (EtherType: 0x0800 IPv4, 0x86DD IPv6). Write: the first
/// `len` bytes of `buf` are one IP packet; `proto` is ignored.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mr_packet {
    pub buf: *mut u8,
    pub cap: usize,
    pub len: usize,
    pub proto: u16,
}

/// Fills `*cfg` with the defaults.
#[no_mangle]
pub extern "C" fn mr_tun_config_init(cfg: *mut mr_tun_config) -> mr_status {
    ffi_status!("mr_tun_config_init", {
        *try_out(cfg, "cfg")? = mr_tun_config {
            struct_size: std::mem::size_of::<mr_tun_config>() as u32,
            backend: mr_backend::MR_BACKEND_AUTO as u32,
            flags: 0,
            mtu: 0,
        };
        Ok(())
    })
}

fn to_config(cfg: *const mr_tun_config) -> Result<TunConfig> {
    if cfg.is_null() {
        return Ok(TunConfig::default());
    }
    let c = try_in(cfg, "cfg")?;
    check_options("mr_tun_config", c.struct_size, std::mem::size_of::<mr_tun_config>(), c.flags, KNOWN_TUN_FLAGS)?;
    let backend = backend_choice(c.backend)?;
    Ok(TunConfig {
        backend,
        packet_info: c.flags & MR_TUN_PACKET_INFO != 0,
        multi_queue: c.flags & MR_TUN_MULTI_QUEUE != 0,
        mtu: c.mtu,
        offload: c.flags & MR_TUN_OFFLOAD != 0,
    })
}

/// Creates a TUN device named `name` ("mr0", or a pattern such as "mr%d";
/// "" lets the kernel choose). Needs CAP_NET_ADMIN. On success `*out` owns
/// a new handle the caller releases with `mr_tun_free` (which also deletes
/// a non-persistent device); read the chosen name with `mr_tun_name`.
#[no_mangle]
pub extern "C" fn mr_tun_create(name: *const c_char, cfg: *const mr_tun_config, out: *mut *mut mr_tun) -> mr_status {
    ffi_status!("mr_tun_create", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let name = try_str(name, "name")?;
        let cfg = to_config(cfg)?;
        *out = into_handle::<mr_tun>(Tun::create(name, &cfg)?);
        Ok(())
    })
}

/// Wraps an open TUN fd (Android VpnService, a fd passed by a helper).
/// On success the handle owns `fd` (closed by `mr_tun_free`, set
/// non-blocking); on failure the caller still owns it. The packet-information
/// setting is read from the device; `cfg` flags other than backend are ignored.
#[no_mangle]
pub extern "C" fn mr_tun_from_fd(fd: c_int, cfg: *const mr_tun_config, out: *mut *mut mr_tun) -> mr_status {
    ffi_status!("mr_tun_from_fd", {
        let out = try_out(out, "out")?;
        *out = std::ptr::null_mut();
        let cfg = to_config(cfg)?;
        *out = into_handle::<mr_tun>(Tun::from_fd(fd, &cfg)?);
        Ok(())
    })
}

#[repr(transparent)]
struct CheckedPacket(mr_packet);

impl PacketSlot for CheckedPacket {
    fn buffer(&mut self) -> &mut [u8] {
        // SAFETY: `mr_tun_read` checked buf != NULL and cap > 0; the caller
        // promises `cap` writable bytes unused by anyone else during the call.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf, self.0.cap) }
    }
    fn fill(&mut self, len: usize, proto: u16) {
        self.0.len = len;
        self.0.proto = proto;
    }
}

impl OutPacket for CheckedPacket {
    fn packet(&self) -> &[u8] {
        // SAFETY: `mr_tun_write` checked buf != NULL and len > 0; the caller
        // promises `len` readable bytes for the duration of the call.
        unsafe { std::slice::from_raw_parts(self.0.buf, self.0.len) }
    }
}

/// `pkts[0..n]` checked for a write: n >= 1, every packet non-empty.
fn packets_to_write<'a>(pkts: *const mr_packet, n: usize) -> Result<&'a [CheckedPacket]> {
    let pkts = try_batch(pkts, n, "pkts")?;
    if let Some(i) = pkts.iter().position(|p| p.buf.is_null() || p.len == 0) {
        return Err(Error::invalid(format!("pkts[{i}] is empty (buf NULL or len 0)")));
    }
    // SAFETY: CheckedPacket is a transparent wrapper of mr_packet; every
    // element was checked above.
    Ok(unsafe { &*(pkts as *const [mr_packet] as *const [CheckedPacket]) })
}

/// Reads up to `n` packets into `pkts[0..n]`, setting `*got`. MR_OK with at
/// least one packet, or MR_WOULD_BLOCK (timeout 0), MR_TIMEOUT, MR_CLOSED,
/// MR_BUFFER_TOO_SMALL (a slot's `cap` is below the device MTU; nothing is
/// read), MR_IO.
#[no_mangle]
pub extern "C" fn mr_tun_read(t: *mut mr_tun, pkts: *mut mr_packet, n: usize, timeout_ms: i32, got: *mut usize) -> mr_status {
    ffi_status!("mr_tun_read", {
        let got = try_out(got, "got")?;
        *got = 0;
        let t = try_ref(t)?;
        let pkts = try_batch_mut(pkts, n, "pkts")?;
        for (i, p) in pkts.iter().enumerate() {
            if p.buf.is_null() || p.cap == 0 {
                return Err(Error::invalid(format!("pkts[{i}] has no buffer (buf NULL or cap 0)")));
            }
        }
        // SAFETY: CheckedPacket is a transparent wrapper; every element was checked.
        let slots = unsafe { &mut *(pkts as *mut [mr_packet] as *mut [CheckedPacket]) };
        *got = t.read(slots, Wait::from_ms(timeout_ms))?;
        Ok(())
    })
}

/// Writes `pkts[0..n]` (each `len` bytes of `buf`, one IP packet) in order,
/// setting `*written` (a prefix). MR_OK means all; otherwise MR_CLOSED,
/// MR_IO, or MR_INVALID_ARGUMENT for a packet that is not IPv4/IPv6.
/// TUN writes never wait, so `timeout_ms` only matters for future
/// backends; pass -1.
#[no_mangle]
pub extern "C" fn mr_tun_write(t: *mut mr_tun, pkts: *const mr_packet, n: usize, timeout_ms: i32, written: *mut usize) -> mr_status {
    ffi_status!("mr_tun_write", {
        let _ = timeout_ms;
        let written = try_out(written, "written")?;
        *written = 0;
        let t = try_ref(t)?;
        let slots = packets_to_write(pkts, n)?;
        let (count, error) = t.write(slots);
        *written = count;
        error.map_or(Ok(()), Err)
    })
}

/// `mr_tun_gro` / `mr_tun_disable_gro` bit: TCP segments of one flow are
/// coalesced on write (needs MR_TUN_OFFLOAD).
pub const MR_TUN_GRO_TCP: u32 = 1;
/// `mr_tun_gro` / `mr_tun_disable_gro` bit: UDP datagrams of one flow are
/// coalesced on write (needs MR_TUN_OFFLOAD and a kernel with USO, 6.2+).
pub const MR_TUN_GRO_UDP: u32 = 2;

/// Writes every packet of `pkts[0..n]` (each `len` bytes of `buf`, one IP
/// packet); a packet the kernel refuses does not stop the others. With
/// MR_TUN_OFFLOAD, TCP and UDP packets of one flow anywhere in the batch
/// are coalesced by wireguard-go's rules (addresses, ports, TCP ack and
/// sequence numbers, equal IP header fields, verified checksums; at most
/// 64 KiB) and written as one super-packet with `writev` straight from the
/// caller's buffers, which are only read, never modified or kept. Output
/// order is the order in which each output packet's first member appears.
/// Sets `*written` to how many packets were written. MR_OK if all were;
/// otherwise the status of the first failure after trying every packet:
/// MR_IO (errno in mr_last_os_error: EINVAL from a super-packet means the
/// kernel refuses coalesced packets, see `mr_tun_disable_gro`),
/// MR_INVALID_ARGUMENT for a packet that is not IPv4/IPv6, MR_CLOSED.
#[no_mangle]
pub extern "C" fn mr_tun_write_batch(t: *mut mr_tun, pkts: *const mr_packet, n: usize, written: *mut usize) -> mr_status {
    ffi_status!("mr_tun_write_batch", {
        let written = try_out(written, "written")?;
        *written = 0;
        let t = try_ref(t)?;
        let slots = packets_to_write(pkts, n)?;
        let (count, error) = t.write_batch(slots);
        *written = count;
        error.map_or(Ok(()), Err)
    })
}

/// The MR_TUN_GRO_* bits `mr_tun_write_batch` coalesces with now (0 without
/// MR_TUN_OFFLOAD; no MR_TUN_GRO_UDP where the kernel lacks USO).
#[no_mangle]
pub extern "C" fn mr_tun_gro(t: *const mr_tun, bits: *mut u32) -> mr_status {
    ffi_status!("mr_tun_gro", {
        let bits = try_out(bits, "bits")?;
        *bits = try_ref(t)?.gro();
        Ok(())
    })
}

/// Stops coalescing the given MR_TUN_GRO_* bits on write for the rest of
/// the handle's life (wireguard-go's DisableTCPGRO / DisableUDPGRO, for
/// kernels whose coalesced packets misbehave). Unknown bits are
/// MR_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn mr_tun_disable_gro(t: *mut mr_tun, bits: u32) -> mr_status {
    ffi_status!("mr_tun_disable_gro", {
        let t = try_ref(t)?;
        if bits & !(MR_TUN_GRO_TCP | MR_TUN_GRO_UDP) != 0 {
            return Err(Error::invalid(format!("bits {bits:#x} has unknown MR_TUN_GRO_* bits")));
        }
        t.disable_gro(bits);
        Ok(())
    })
}

/// Copies the device name, NUL-terminated, into `buf` of `cap` bytes;
/// `*len` gets its length (16 bytes always suffice).
#[no_mangle]
pub extern "C" fn mr_tun_name(t: *const mr_tun, buf: *mut c_char, cap: usize, len: *mut usize) -> mr_status {
    ffi_status!("mr_tun_name", {
        let t = try_ref(t)?;
        write_c_string(t.name(), buf, cap, len)
    })
}

/// The device MTU, read from the kernel.
#[no_mangle]
pub extern "C" fn mr_tun_mtu(t: *const mr_tun, mtu: *mut u32) -> mr_status {
    ffi_status!("mr_tun_mtu", {
        let mtu = try_out(mtu, "mtu")?;
        *mtu = try_ref(t)?.mtu()?;
        Ok(())
    })
}

/// Sets the device MTU (68..65535; MR_INVALID_ARGUMENT otherwise).
#[no_mangle]
pub extern "C" fn mr_tun_set_mtu(t: *mut mr_tun, mtu: u32) -> mr_status {
    ffi_status!("mr_tun_set_mtu", { try_ref(t)?.set_mtu(mtu) })
}

/// Which backend waits for packets (MR_BACKEND_URING or MR_BACKEND_BATCH);
/// MR_BACKEND_AUTO if `t` is NULL.
#[no_mangle]
pub extern "C" fn mr_tun_backend(t: *const mr_tun) -> mr_backend {
    super::panic::boundary("mr_tun_backend", || {
        let backend = try_ref(t).map(|t| mr_backend::from(t.backend()));
        value_or("mr_tun_backend", backend, mr_backend::MR_BACKEND_AUTO)
    })
}

/// A fd that polls readable while packets are waiting (then call
/// `mr_tun_read` with timeout 0 until MR_WOULD_BLOCK). Owned by the handle;
/// valid until `mr_tun_free`. -1 if `t` is NULL or closed.
#[no_mangle]
pub extern "C" fn mr_tun_fd(t: *const mr_tun) -> c_int {
    super::panic::boundary("mr_tun_fd", || value_or("mr_tun_fd", try_ref(t).and_then(Tun::ready_fd), -1))
}

/// Closes the device: a read blocked on another thread returns MR_CLOSED
/// promptly; later calls return MR_CLOSED. Idempotent; any thread.
#[no_mangle]
pub extern "C" fn mr_tun_close(t: *mut mr_tun) -> mr_status {
    ffi_status!("mr_tun_close", {
        try_ref(t)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the handle and its fd. NULL is a no-op.
/// No other thread may be using `t`.
#[no_mangle]
pub extern "C" fn mr_tun_free(t: *mut mr_tun) {
    ffi_value!("mr_tun_free", {
        drop(free_handle(t));
    })
}
