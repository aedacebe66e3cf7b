//! Synchronisation primitives the handles share.

mod baton;
mod wait;

pub use baton::{Baton, BatonError, Held};
pub use wait::Wait;
