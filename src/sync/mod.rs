//! Synchronisation primitives the handles share.

mod baton;
pub mod fault;
mod wait;

pub use baton::{Baton, BatonError, Held};
pub use fault::Fault;
pub use wait::Wait;
