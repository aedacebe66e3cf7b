//! meshring: the node side of a mesh VPN behind a C ABI.
//!
//! Logic lives in safe modules; `ffi` is the only C-facing surface.

pub mod addr;
pub mod bus;
pub mod cache;
pub mod error;
pub mod lifecycle;
pub mod ffi;
pub mod json;
pub mod readiness;
pub mod replication;
pub mod sync;
pub mod sys;
pub mod tun;
pub mod udp;
pub mod uring;
