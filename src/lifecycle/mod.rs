//! The lifecycle runtime: BIRD-style protocol instances over
//! route tables.
//!
//! * `state`: the two state variables (protocol: down/start/up/stop; core:
//!   hungry/feeding/happy/flushing) and their legal transitions.
//! * `table`: prefix → candidate routes, best by preference.
//! * `exports`: pending exports, at most one per (listener, prefix).
//! * `core`: instances, commit/reconfigure/restart logic, chunked feed and
//!   flush, restart limit; pure bookkeeping under the runtime lock.
//! * `runtime`: the loop thread that runs protocol hooks (never two at once
//!   for one runtime) and the thread-safe API.
//! * `config`, `pattern`, `prefix`, `events`: input parsing and output.
//! * `kind`, `static_proto`, `netmap`: the protocol kind trait and the
//!   built-in kinds.
//!
//! # Life of an instance
//!
//! A new (or enabled) instance is started: the runtime records `start` and
//! calls the kind's `start` hook, which answers `up` (or `start`, reporting
//! `up` later, or `down` on failure). On `up` the instance is fed the
//! current best routes of its table in steps of `feed_chunk` routes, the
//! loop doing other work between steps (state `feed`), then it is `up` and
//! hears each best-route change. To stop it the runtime records `stop`,
//! begins flushing its routes (in steps too, exporting the new best routes
//! to the others) and calls `shutdown`; it is `down` when both the
//! protocol has said so and the flush has finished. A protocol that goes
//! down on its own is flushed and started again, unless it failed more than
//! `restart_limit.count` times within `restart_limit.seconds`: then it is
//! disabled with the reason in its info.

mod config;
mod core;
mod events;
mod exports;
mod kind;
mod netmap;
mod pattern;
mod prefix;
mod runtime;
mod state;
mod static_proto;
mod table;

pub use config::{check_name, parse as parse_config, Config, ProtoConfig, RestartLimit, StaticRoute, NETMAP_KIND, STATIC_KIND};
pub use kind::{Export, Kind};
pub use pattern::matches as pattern_matches;
pub use prefix::Prefix;
pub use runtime::{Api, Options, Runtime, Stats};
pub use state::{display_name, CoreState, ProtoState};

#[cfg(test)]
mod tests;
