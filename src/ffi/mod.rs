//! The C boundary. One file per C type plus the shared plumbing
//! (`panic`, `error`, `ffi`). Functions here convert arguments, call the
//! safe modules, and convert results; no logic lives here.

#![allow(non_camel_case_types)]

#[macro_use]
mod panic;
mod addr;
mod bus;
mod bytes;
mod error;
mod ffi;
mod log;
mod tun;
mod udp;
mod userdata;
mod version;
mod watcher;

pub use addr::*;
pub use bus::*;
pub use bytes::*;
pub use error::*;
pub use log::*;
pub use tun::*;
pub use udp::*;
pub use version::*;
pub use watcher::*;
