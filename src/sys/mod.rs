//! Thin wrappers over the Linux syscalls the handles use. Every `unsafe`
//! block outside `ffi` and `uring` lives here.

mod cmsg;
mod crc32c;
mod csum;
mod eventfd;
mod mmsg;
mod poll;
mod random;
mod sockaddr;
mod socket;
mod tun;

pub use crc32c::crc32c_hw;
pub use csum::sum_blocks_hw;
pub use cmsg::{gro_segment_size, parse as parse_control, Control, ControlBuf, LocalInfo, CONTROL_SPACE, GRO_CONTROL_SPACE, GSO_CONTROL_SPACE};
pub use eventfd::EventFd;
pub use mmsg::{recvmmsg, sendmmsg, MmsgBatch, Outgoing, Payload, Received};
pub use random::fill_random;
pub use poll::{is_readable, wait_readable_or_woken, wait_writable_or_woken, PollResult};
pub use sockaddr::{sockaddr_from_bytes, RawSockAddr};
pub use socket::*;
pub use tun::{control_socket, enable_offloads, enter_new_netns, interface_mtu, open_tun, read_packet, set_interface_mtu, set_nonblocking, tun_info, write_packet, write_parts};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}
