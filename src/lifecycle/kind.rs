//! What a protocol kind implements. Host kinds (C vtables, Go) and the
//! built-in `static` and `netmap` kinds all go through this trait.
//!
//! Every method runs on the runtime's loop thread, one call at a time per
//! runtime, without any runtime lock held: a method may call back into the
//! runtime (`Api::import`, `Api::notify_state`, `Api::show_route`, ...).

use super::config::ProtoConfig;
use super::prefix::Prefix;
use super::runtime::Api;
use super::state::ProtoState;

/// One best-route change sent to a protocol.
#[derive(Debug, Clone, Copy)]
pub struct Export<'a> {
    pub table: &'a str,
    pub prefix: Prefix,
    /// The protocol that imported the route.
    pub owner: &'a str,
    pub preference: u32,
    /// JSON object text.
    pub attrs: &'a str,
    /// The protocol no longer has a route to `prefix` from this table
    /// (`owner`, `preference` and `attrs` describe the route that went).
    pub withdrawn: bool,
}

pub trait Kind: Send + Sync {
    /// Brings `proto` up. Return `Up` when done, `Start` to report `Up`
    /// later with `notify_state`, `Down` for a failure (counted by the
    /// restart limit).
    fn start(&self, api: &Api, proto: &str, config: &ProtoConfig) -> ProtoState;

    /// Takes `proto` down. Return `Down` when done or `Stop` to report
    /// `Down` later. Its routes are flushed by the runtime either way.
    fn shutdown(&self, api: &Api, proto: &str) -> ProtoState;

    /// Whether `proto` switched from `old` to `new` in place (only asked
    /// when name, kind, table, preference and disabled are unchanged);
    /// `false` makes the runtime restart it with `new`.
    fn reconfigure(&self, api: &Api, proto: &str, old: &ProtoConfig, new: &ProtoConfig) -> bool;

    /// A best-route change in `proto`'s table (never `proto`'s own routes);
    /// changes to one prefix still pending are coalesced to the latest
    /// (module `exports`).
    fn export(&self, api: &Api, proto: &str, route: &Export<'_>);
}
