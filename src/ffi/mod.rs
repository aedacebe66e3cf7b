//! The C boundary. One file per C type plus the shared plumbing
//! (`panic`, `error`, `ffi`). Functions here convert arguments, call the
//! safe modules, and convert results; no logic lives here.

#![allow(non_camel_case_types)]

#[macro_use]
mod panic;
mod addr;
mod bus;
mod bytes;
mod cache;
mod cache_watch;
mod error;
mod ffi;
mod log;
mod proto;
mod repl;
mod runtime;
mod snapshot;
mod tun;
mod udp;
mod userdata;
mod version;
mod volume;
mod watcher;

pub use addr::*;
pub use bus::*;
pub use bytes::*;
pub use cache::*;
pub use cache_watch::*;
pub use error::*;
pub use log::*;
pub use proto::*;
pub use repl::*;
pub use runtime::*;
pub use snapshot::*;
pub use tun::*;
pub use udp::*;
pub use version::*;
pub use volume::*;
pub use watcher::*;
