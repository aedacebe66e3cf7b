//! `Runtime`: the loop thread and the thread-safe API around `Core`.
//!
//! Every host call locks the core, checks and applies its change
//! synchronously (so it can return a precise status), and queues the
//! protocol calls it implies as effects. The one loop thread per runtime
//! runs those effects in order with the lock released, and between them
//! does the chunked work: one feed or flush step of at most `feed_chunk`
//! routes at a time, so other work never waits behind a large table.
//!
//! Commands that start or stop protocols (`commit`, `enable`, `disable`,
//! `restart`) wait until the loop has run the effects they queued (unless
//! called on the loop thread, from inside a protocol hook).

use super::config::{self, NETMAP_KIND, STATIC_KIND};
use super::core::{Core, Effect, FeedBatch, Job, Source};
use super::events::{describe, Events};
use super::kind::{Export, Kind};
use super::prefix::Prefix;
use super::state::{CoreState, ProtoState};
use crate::bus::{Bus, BusLink, Watcher, WATCH_CHUNKED_INITIAL, WATCH_INITIAL_STATUS, WATCH_PEER_CHANGES};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::{Fault, Wait};
use crate::sys::EventFd;
use serde_json::{json, Value};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use parking_lot::{Condvar, Mutex as CoreMutex, MutexGuard};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runtime tuning; `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Routes per feed or flush step (2048).
    pub feed_chunk: usize,
    /// State events kept for `next_event` before the oldest are dropped (4096).
    pub event_backlog: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { feed_chunk: 2048, event_backlog: 4096 }
    }
}

impl Options {
    /// `{"feed_chunk":2048,"event_backlog":4096}`, every field optional;
    /// `None` = defaults.
    pub fn from_json(json: Option<&str>) -> Result<Options> {
        let mut options = Options::default();
        let Some(json) = json else { return Ok(options) };
        crate::json::check_depth(json.as_bytes(), "runtime options")?;
        let value: Value = serde_json::from_str(json).map_err(|e| Error::new(ErrorKind::Parse, format!("runtime options: {e}")))?;
        let map = value.as_object().ok_or_else(|| Error::invalid("runtime options must be a JSON object"))?;
        for (key, v) in map {
            let n = v.as_u64().filter(|n| *n >= 1 && *n <= 1 << 24);
            let n = n.ok_or_else(|| Error::invalid(format!("runtime option {key} must be an integer 1..=16777216")))? as usize;
            match key.as_str() {
                "feed_chunk" => options.feed_chunk = n,
                "event_backlog" => options.event_backlog = n,
                _ => return Err(Error::invalid(format!("unknown runtime option {key:?}"))),
            }
        }
        Ok(options)
    }
}

/// Which condvar a caller sleeps on (each has a waiter count in `Core`, so
/// the loop signals only when someone listens).
#[derive(Clone, Copy)]
enum Sleeper {
    Progress,
    Event,
}

/// Loop measurements (for benchmarks and diagnostics).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// The longest single feed or flush step, delivery included.
    pub max_step: Duration,
    pub feed_steps: u64,
    pub flush_steps: u64,
    /// Exports waiting now, and at most since the last `reset_stats`
    /// (at most one per listener and prefix: they are coalesced).
    pub pending_exports: usize,
    pub max_pending_exports: usize,
}

struct BusAttachment {
    link: BusLink,
    watcher: Arc<Watcher>,
}

/// The shared part of a runtime: every method is thread-safe. Protocol
/// hooks receive `&Api` to call back in.
pub struct Api {
    /// A fair mutex: between two feed or flush steps the loop hands the
    /// lock to a host call that waits for it (`MutexGuard::bump`), so no
    /// call waits longer than one step however large the table.
    core: CoreMutex<Core>,
    /// Wakes the loop.
    wake: Condvar,
    /// Signalled whenever the loop finishes an effect or goes idle.
    progress: Condvar,
    /// Signalled on new events and on close.
    event: Condvar,
    ready: Arc<EventFd>,
    options: Options,
    bus: Mutex<Option<BusAttachment>>,
    max_step_ns: AtomicU64,
    feed_steps: AtomicU64,
    flush_steps: AtomicU64,
    /// Set when the loop (or the bus thread) panicked: every call then
    /// fails with Panic and this reason.
    fault: Fault,
}

const CLOSED: &str = "runtime is closed";

thread_local! {
    /// On a loop thread: the address of its `Api` (0 elsewhere). A plain
    /// integer, so asking costs no allocation on host threads.
    static LOOP_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn prefix_arg(text: &str) -> Result<Prefix> {
    Prefix::parse(text)
}

/// A JSON object text, or `{}` for None.
fn attrs_arg(text: Option<&str>) -> Result<Arc<str>> {
    let Some(text) = text else { return Ok("{}".into()) };
    crate::json::check_depth(text.as_bytes(), "attrs")?;
    let raw: &serde_json::value::RawValue =
        serde_json::from_str(text).map_err(|e| Error::new(ErrorKind::Parse, format!("attrs: {e}")))?;
    config::attrs_text(Some(raw), &|| "attrs".to_string())
}

impl Api {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock()
    }

    /// The core, or Closed (Panic with the reason after a loop panic).
    fn open(&self) -> Result<MutexGuard<'_, Core>> {
        let core = self.lock();
        if core.closed {
            return Err(self.closed_error());
        }
        Ok(core)
    }

    /// Why a closed runtime refuses work: closed by the host, or shut down
    /// by a panic on one of its threads.
    fn closed_error(&self) -> Error {
        self.fault.check().err().unwrap_or_else(|| Error::closed(CLOSED))
    }

    /// Whether the caller is this runtime's loop thread (a protocol hook).
    fn on_loop(&self) -> bool {
        LOOP_OF.with(|l| l.get() == self as *const Api as usize)
    }

    /// Wakes the loop, then (off the loop thread) waits until it has run
    /// every effect queued so far and every hook those cause in turn for
    /// the protocols in `touched` (the start after a restart's shutdown and
    /// flush, say). Closed if the runtime closes before all of that ran:
    /// what was asked may then never have been done.
    fn kick_and_wait(&self, core: MutexGuard<'_, Core>, touched: &[Arc<str>]) -> Result<()> {
        let mut target = core.next_seq;
        self.kick(core);
        if self.on_loop() {
            return Ok(());
        }
        let mut core = self.lock();
        loop {
            if core.closed {
                if core.discarded_from.is_some_and(|d| d < target) || touched.iter().any(|n| core.owes_hook(n)) {
                    return Err(self.closed_error());
                }
                if core.running.is_none() {
                    return Ok(());
                }
            } else if core.finished_before(target) {
                if !touched.iter().any(|n| core.owes_hook(n)) {
                    return Ok(());
                }
                target = core.next_seq;
            }
            core.progress_waiters += 1;
            self.progress.wait(&mut core);
            core.progress_waiters -= 1;
        }
    }

    /// Runs `f` on the open core, then wakes whoever must hear of it.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
        let mut core = self.open()?;
        let result = f(&mut core);
        self.kick(core);
        result
    }

    /// Releases the core, waking the loop if it sleeps with work to do and
    /// event readers if events wait for them (no syscall otherwise).
    fn kick(&self, core: MutexGuard<'_, Core>) {
        let wake_loop = core.loop_asleep && (core.queued() > 0 || !core.work.is_empty());
        let events = core.event_waiters > 0 && core.events.pending();
        drop(core);
        if events {
            self.event.notify_all();
        }
        if wake_loop {
            self.wake.notify_one();
        }
    }

    /// Adds a protocol kind. Names are 1-64 of `A-Z a-z 0-9 _ - . :`;
    /// `static` and `netmap` are built in. InvalidArgument for a bad or
    /// taken name, Closed after close.
    pub fn register_kind(&self, name: &str, kind: Arc<dyn Kind>) -> Result<()> {
        config::check_name("kind name", name)?;
        let mut core = self.open()?;
        if core.kinds.contains_key(name) {
            return Err(Error::invalid(format!("kind {name:?} is already registered")));
        }
        core.kinds.insert(name.into(), kind);
        Ok(())
    }

    /// Installs a configuration (module doc of `config` for the format):
    /// same name and kind → reconfigure in place when only the protocol's
    /// own settings changed and it agrees, restart otherwise; gone → shut
    /// down and removed; new → started. `hard` restarts every protocol that
    /// stays (BIRD's forced reconfiguration); soft leaves unchanged ones
    /// alone. All or nothing: a config that fails validation changes
    /// nothing (Parse / InvalidArgument). Cost: protocols whose JSON text
    /// is the one the previous commit applied are recognised by a byte
    /// comparison and not parsed or looked at again (`config::plan`).
    /// Waits for the hooks it caused (as do enable/disable/restart); Closed
    /// if the runtime is closed before they have all run.
    pub fn commit(&self, json: &str, hard: bool) -> Result<()> {
        let mut core = self.open()?;
        let plan = {
            let kinds = &core.kinds;
            config::plan(json, &|k| kinds.get_key_value(k).map(|(name, _)| name.clone()), &core.applied, &core.config, hard)?
        };
        let touched = core.install(plan, hard);
        self.kick_and_wait(core, &touched)
    }

    fn command(&self, pattern: &str, disable: Option<bool>) -> Result<usize> {
        let mut core = self.open()?;
        let touched = core.command(pattern, disable);
        let n = touched.len();
        self.kick_and_wait(core, &touched)?;
        if n == 0 {
            return Err(Error::new(ErrorKind::NotFound, format!("no protocol matches {pattern:?}")));
        }
        Ok(n)
    }

    /// Enables the matching protocols (`*`, `?` globs); how many matched
    /// (NotFound for none). Also resets a restart-limit disable.
    pub fn enable(&self, pattern: &str) -> Result<usize> {
        self.command(pattern, Some(false))
    }

    /// Disables the matching protocols: they go down and stay down, also
    /// across commits, until enabled.
    pub fn disable(&self, pattern: &str) -> Result<usize> {
        self.command(pattern, Some(true))
    }

    /// Takes the matching enabled protocols down and up again.
    pub fn restart(&self, pattern: &str) -> Result<usize> {
        self.command(pattern, None)
    }

    /// A protocol reports its state (start → up, stop → down, or a failure:
    /// down/stop while the runtime wants it up). State for an illegal
    /// transition, NotFound for an unknown (or removed) protocol. `info`
    /// replaces the text `show protocols` prints.
    pub fn notify_state(&self, proto: &str, state: ProtoState, info: Option<&str>) -> Result<()> {
        self.with_core(|core| core.report(proto, state, Source::Protocol, info))
    }

    /// Imports (or replaces) `proto`'s route to `prefix` (text form);
    /// `preference` None = the protocol's. State unless the protocol is
    /// starting or up; InvalidArgument for a bad prefix; Parse for bad attrs.
    pub fn import(&self, proto: &str, prefix: &str, preference: Option<u32>, attrs: Option<&str>) -> Result<()> {
        let prefix = prefix_arg(prefix)?;
        let attrs = attrs_arg(attrs)?;
        self.import_parsed(proto, prefix, preference, attrs)
    }

    pub fn import_parsed(&self, proto: &str, prefix: Prefix, preference: Option<u32>, attrs: Arc<str>) -> Result<()> {
        self.with_core(|core| core.import(proto, prefix, preference, attrs))
    }

    /// Withdraws `proto`'s route to `prefix`; NotFound if it has none.
    pub fn withdraw(&self, proto: &str, prefix: &str) -> Result<()> {
        let prefix = prefix_arg(prefix)?;
        self.withdraw_parsed(proto, &prefix, true)
    }

    pub(crate) fn withdraw_parsed(&self, proto: &str, prefix: &Prefix, must_exist: bool) -> Result<()> {
        self.with_core(|core| core.withdraw(proto, prefix, must_exist))
    }

    /// `show protocols`: a JSON array of instances by name (name, kind,
    /// table, state, proto_state, core_state, since_ms, info, disabled,
    /// preference, routes).
    pub fn show_protocols(&self) -> Result<Vec<u8>> {
        let core = self.open()?;
        let list: Vec<Value> = core.protos.iter().map(|(n, i)| describe(n, i)).collect();
        Ok(Value::Array(list).to_string().into_bytes())
    }

    /// One instance's `show protocols` object; NotFound if absent.
    pub fn show_protocol(&self, proto: &str) -> Result<Value> {
        let core = self.open()?;
        Ok(describe(proto, core.instance(proto)?))
    }

    /// `show route`: `{"routes":[{"table","prefix","proto","preference",
    /// "best","attrs"}...]}` in prefix order, every candidate (best first).
    /// `prefix` keeps routes equal to or inside it; `proto` (a glob) keeps
    /// routes imported by matching protocols.
    pub fn show_route(&self, prefix: Option<&str>, proto: Option<&str>) -> Result<Vec<u8>> {
        let within = prefix.map(prefix_arg).transpose()?;
        let core = self.open()?;
        let mut out = String::from("{\"routes\":[");
        let mut first = true;
        for (table_name, table) in &core.tables {
            for (p, routes) in table.walk(within) {
                for (i, r) in routes.iter().enumerate() {
                    if proto.is_some_and(|pat| !super::pattern::matches(pat, &r.owner)) {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let head = json!({"table": &**table_name, "prefix": p.to_string(), "proto": &*r.owner, "preference": r.preference, "best": i == 0});
                    let head = head.to_string();
                    out.push_str(&head[..head.len() - 1]);
                    out.push_str(",\"attrs\":");
                    out.push_str(&r.attrs);
                    out.push('}');
                }
            }
        }
        out.push_str("]}");
        Ok(out.into_bytes())
    }

    /// The next state event (`{"Protocol":{...}}`, see `show_protocols`;
    /// `"state":"removed"` when a commit removed it). WouldBlock / Timeout
    /// per `wait`; Closed after close.
    pub fn next_event(&self, wait: Wait) -> Result<Arc<[u8]>> {
        let deadline = wait.deadline();
        let mut core = self.lock();
        loop {
            // After a panic the events up to it (the panic's own last) are
            // still delivered; after a plain close nothing is.
            if core.closed && !self.fault.is_set() {
                return Err(Error::closed(CLOSED));
            }
            if let Some(e) = core.events.pop() {
                return Ok(e);
            }
            if core.closed {
                return Err(self.closed_error());
            }
            core = self.sleep(Sleeper::Event, core, wait, deadline, "no event pending")?;
        }
    }

    /// Sleeps on `cv` until woken or until `wait` has run out, which is
    /// WouldBlock (`Wait::Never`) or Timeout; `what` says what was missing.
    fn sleep<'a>(
        &self,
        on: Sleeper,
        mut core: MutexGuard<'a, Core>,
        wait: Wait,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<MutexGuard<'a, Core>> {
        if wait.is_never() {
            return Err(Error::new(ErrorKind::WouldBlock, what));
        }
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(Error::new(ErrorKind::Timeout, what));
                }
                Some(d - now)
            }
        };
        let (cv, count): (&Condvar, fn(&mut Core) -> &mut u32) = match on {
            Sleeper::Progress => (&self.progress, |c| &mut c.progress_waiters),
            Sleeper::Event => (&self.event, |c| &mut c.event_waiters),
        };
        *count(&mut core) += 1;
        match timeout {
            None => cv.wait(&mut core),
            Some(t) => {
                cv.wait_for(&mut core, t);
            }
        }
        *count(&mut core) -= 1;
        Ok(core)
    }

    /// Readable while events are pending (and after close).
    pub fn event_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Waits until no effect, feed or flush is pending (protocols that are
    /// themselves still starting or stopping do not count). WouldBlock /
    /// Timeout per `wait`; Closed after close.
    pub fn wait_idle(&self, wait: Wait) -> Result<()> {
        let deadline = wait.deadline();
        let mut core = self.open()?;
        loop {
            if core.queued() == 0 && core.work.is_empty() && !core.busy {
                return Ok(());
            }
            if self.on_loop() {
                return Err(Error::new(ErrorKind::State, "wait_idle from a protocol hook would wait for itself"));
            }
            core = self.sleep(Sleeper::Progress, core, wait, deadline, "the runtime is still busy")?;
            if core.closed {
                return Err(self.closed_error());
            }
        }
    }

    /// Feeds `netmap` protocols from `bus` (peers' AllowedIPs become routes)
    /// and publishes state events on it. One bus per runtime (State for a
    /// second one).
    pub fn attach_bus(self: &Arc<Self>, bus: &Bus) -> Result<JoinHandle<()>> {
        let mut slot = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(Error::new(ErrorKind::State, "a bus is already attached"));
        }
        let core = self.open()?;
        drop(core);
        let watcher = Arc::new(bus.watch(WATCH_INITIAL_STATUS | WATCH_PEER_CHANGES | WATCH_CHUNKED_INITIAL)?);
        *slot = Some(BusAttachment { link: bus.link(), watcher: watcher.clone() });
        drop(slot);
        self.lock().publish = true;
        let api = self.clone();
        std::thread::Builder::new()
            .name("meshring-rt-bus".into())
            .spawn(move || {
                crate::sync::fault::guard("lifecycle runtime bus thread", &api.fault, || api.panicked(), || {
                    while let Ok(message) = watcher.next(Wait::Forever) {
                        api.apply_notify(&message);
                    }
                });
            })
            .map_err(|e| Error::from_io("spawning the bus thread", &e))
    }

    fn apply_notify(&self, message: &[u8]) {
        let Some(changes) = super::netmap::peer_changes(message) else { return };
        let mut core = self.lock();
        if core.closed {
            return;
        }
        for (id, peer) in changes {
            core.set_peer(id, peer);
        }
        self.kick(core);
    }

    /// Starts the `Stats` maxima and counts afresh.
    pub fn reset_stats(&self) {
        self.max_step_ns.store(0, Relaxed);
        self.feed_steps.store(0, Relaxed);
        self.flush_steps.store(0, Relaxed);
        self.lock().exports.reset_peak();
    }

    pub fn stats(&self) -> Stats {
        let (pending_exports, max_pending_exports) = {
            let core = self.lock();
            (core.exports.len(), core.exports.peak())
        };
        Stats {
            max_step: Duration::from_nanos(self.max_step_ns.load(Relaxed)),
            feed_steps: self.feed_steps.load(Relaxed),
            flush_steps: self.flush_steps.load(Relaxed),
            pending_exports,
            max_pending_exports,
        }
    }

    /// Makes every later call fail with Closed and stops the loop.
    fn shut(&self) {
        let mut core = self.lock();
        core.closed = true;
        drop(core);
        if let Some(bus) = self.bus.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bus.watcher.close();
        }
        self.ready.signal();
        self.wake.notify_all();
        self.progress.notify_all();
        self.event.notify_all();
    }

    /// After a panic on one of the runtime's threads (already recorded in
    /// `fault`): queues a `{"Runtime":{"state":"panicked","reason":..}}`
    /// event, then shuts the runtime as `close` does. What is left: the
    /// protocols' hooks are never called again (the loop is gone; a
    /// protocol whose hook was running when the panic hit is not told),
    /// every call returns Panic with the reason, `next_event` still hands
    /// out the events queued up to the panic and this one; free as usual.
    fn panicked(&self) {
        let reason = self.fault.reason().map(|r| r.to_string()).unwrap_or_default();
        {
            let mut core = self.lock();
            core.events.push_runtime_panic(&reason);
            let first = [core.running, core.effects.front().map(|(s, _)| *s), core.exports.front_seq()].into_iter().flatten().min();
            if first.is_some() {
                core.discarded_from = core.discarded_from.into_iter().chain(first).min();
            }
            core.running = None;
            core.running_effect = None;
            core.busy = false;
        }
        self.shut();
    }

    /// Runs one effect or export with the lock released for the protocol call.
    fn run_job<'a>(&'a self, mut core: MutexGuard<'a, Core>, job: Job) -> MutexGuard<'a, Core> {
        let effect = match job {
            Job::Effect(effect) => effect,
            Job::Export { name, prefix, pending } => {
                let Some(inst) = core.current(&name, pending.gen) else { return core };
                if !matches!(inst.cs, CoreState::Happy | CoreState::Feeding) {
                    return core;
                }
                let kind = inst.kind.clone();
                drop(core);
                let table = pending.table.clone();
                let (route, withdrawn) = pending.export();
                let export = Export {
                    table: &table,
                    prefix,
                    owner: &route.owner,
                    preference: route.preference,
                    attrs: &route.attrs,
                    withdrawn,
                };
                kind.export(self, &name, &export);
                return self.lock();
            }
        };
        match effect {
            Effect::Start { name, gen } => {
                let Some(inst) = core.current(&name, gen) else { return core };
                if inst.ps != ProtoState::Start || inst.started || inst.disabled || inst.reconfiguring {
                    return core;
                }
                inst.started = true;
                let (kind, cfg) = (inst.kind.clone(), inst.cfg.clone());
                drop(core);
                let state = kind.start(self, &name, &cfg);
                core = self.lock();
                if core.current(&name, gen).is_some() {
                    if let Err(e) = core.report(&name, state, Source::Protocol, None) {
                        log::warn!("start hook of {name}: {e}");
                    }
                }
            }
            Effect::Shutdown { name, gen } => {
                let Some(inst) = core.current(&name, gen) else { return core };
                if !inst.started {
                    let _ = core.report(&name, ProtoState::Down, Source::Runtime, None);
                    return core;
                }
                let kind = inst.kind.clone();
                drop(core);
                let state = kind.shutdown(self, &name);
                core = self.lock();
                if core.current(&name, gen).is_some() {
                    if let Err(e) = core.report(&name, state, Source::Runtime, None) {
                        log::warn!("shutdown hook of {name}: {e}");
                    }
                }
            }
            Effect::Reconfigure { name, gen, new } => {
                let Some(inst) = core.current(&name, gen) else { return core };
                if !inst.pending.as_ref().is_some_and(|p| Arc::ptr_eq(p, &new)) {
                    return core; // superseded by a later commit
                }
                if inst.ps == ProtoState::Down || inst.reconfiguring {
                    let disabled = inst.disabled;
                    core.restart_with(&name, new, disabled);
                    return core;
                }
                let (kind, old) = (inst.kind.clone(), inst.cfg.clone());
                drop(core);
                let in_place = kind.reconfigure(self, &name, &old, &new);
                core = self.lock();
                let Some(inst) = core.current(&name, gen) else { return core };
                if !inst.pending.as_ref().is_some_and(|p| Arc::ptr_eq(p, &new)) {
                    return core;
                }
                inst.pending = None;
                if in_place {
                    inst.cfg = new;
                    inst.info = "reconfigured".into();
                    core.announce(&name);
                } else {
                    let disabled = inst.disabled;
                    core.restart_with(&name, new, disabled);
                }
            }
            Effect::Publish(json) => {
                drop(core);
                let link = self.bus.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|b| b.link.clone());
                if let Some(link) = link {
                    let _ = link.publish(&json);
                }
                core = self.lock();
            }
        }
        core
    }

    /// One feed or flush step for `name`.
    fn run_step<'a>(&'a self, mut core: MutexGuard<'a, Core>, name: Arc<str>) -> MutexGuard<'a, Core> {
        let started = Instant::now();
        let chunk = self.options.feed_chunk;
        match core.protos.get(&name).map(|i| i.cs) {
            Some(CoreState::Feeding) => {
                if let Some(FeedBatch { table, kind, routes }) = core.feed_step(&name, chunk) {
                    drop(core);
                    for (prefix, route) in &routes {
                        let export = Export {
                            table: &table,
                            prefix: *prefix,
                            owner: &route.owner,
                            preference: route.preference,
                            attrs: &route.attrs,
                            withdrawn: false,
                        };
                        kind.export(self, &name, &export);
                    }
                    core = self.lock();
                    self.feed_steps.fetch_add(1, Relaxed);
                }
            }
            Some(CoreState::Flushing) => {
                core.flush_step(&name, chunk);
                self.flush_steps.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        self.max_step_ns.fetch_max(started.elapsed().as_nanos() as u64, Relaxed);
        core
    }

    fn run_loop(&self) {
        // Effects (hook calls) go first. With a feed or flush pending, a
        // step gets its turn after EFFECT_BURST effects in a row, or after
        // FLOOD_BURST while more than a chunk of effects is queued: so a
        // flush step's own exports are delivered before the next step adds
        // more (the queue stays near one chunk), and a flood of effects from
        // host calls still cannot starve a feed.
        const EFFECT_BURST: u32 = 256;
        const FLOOD_BURST: u32 = 4096;
        let high_water = self.options.feed_chunk;
        let mut burst = 0;
        let mut core = self.lock();
        loop {
            if core.event_waiters > 0 && core.events.pending() {
                self.event.notify_all();
            }
            if core.closed {
                break;
            }
            let limit = if core.queued() > high_water { FLOOD_BURST } else { EFFECT_BURST };
            if core.work.is_empty() || burst < limit {
                if let Some((seq, job)) = core.next_job() {
                    core.busy = true;
                    core.running = Some(seq);
                    if let Job::Effect(e) = &job {
                        core.running_effect = e.protocol().cloned();
                    }
                    core = self.run_job(core, job);
                    core.running = None;
                    core.running_effect = None;
                    core.busy = false;
                    burst += 1;
                    if core.progress_waiters > 0 {
                        self.progress.notify_all();
                    }
                    continue;
                }
            }
            burst = 0;
            if let Some(name) = core.work.pop_front() {
                core.busy = true;
                core = self.run_step(core, name);
                core.busy = false;
                if core.progress_waiters > 0 {
                    self.progress.notify_all();
                }
                // A flush step keeps the lock throughout (a feed step lets
                // it go while it delivers): hand it to any host call that
                // waits, so none waits longer than one step.
                MutexGuard::bump(&mut core);
                continue;
            }
            if core.progress_waiters > 0 {
                self.progress.notify_all();
            }
            core.loop_asleep = true;
            self.wake.wait(&mut core);
            core.loop_asleep = false;
        }
        // Closed: release every protocol kind here, on the loop thread.
        let first = core.effects.front().map(|(s, _)| *s).into_iter().chain(core.exports.front_seq()).min();
        if first.is_some() {
            core.discarded_from = core.discarded_from.into_iter().chain(first).min();
        }
        let kinds = std::mem::take(&mut core.kinds);
        let protos = std::mem::take(&mut core.protos);
        core.effects.clear();
        core.exports.clear();
        core.work.clear();
        drop(core);
        drop(protos);
        drop(kinds);
        self.progress.notify_all();
        self.event.notify_all();
    }
}

/// A runtime: owns the loop thread. Dereferences to `Api`. Dropping it
/// closes it.
pub struct Runtime {
    api: Arc<Api>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::ops::Deref for Runtime {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Runtime {
    /// A runtime with the built-in `static` and `netmap` kinds and one
    /// table, `master`, and its loop thread running.
    pub fn new(options: Options) -> Result<Runtime> {
        let ready = Arc::new(EventFd::new()?);
        let mut core = Core::new(Events::new(options.event_backlog, ready.clone()));
        core.kinds.insert(STATIC_KIND.into(), Arc::new(super::static_proto::StaticKind));
        core.kinds.insert(NETMAP_KIND.into(), Arc::new(super::netmap::NetmapKind));
        let api = Arc::new(Api {
            core: CoreMutex::new(core),
            wake: Condvar::new(),
            progress: Condvar::new(),
            event: Condvar::new(),
            ready,
            options,
            bus: Mutex::new(None),
            max_step_ns: AtomicU64::new(0),
            feed_steps: AtomicU64::new(0),
            flush_steps: AtomicU64::new(0),
            fault: Fault::new(),
        });
        let runner = api.clone();
        let thread = std::thread::Builder::new()
            .name("meshring-rt".into())
            .spawn(move || {
                LOOP_OF.with(|l| l.set(Arc::as_ptr(&runner) as usize));
                // A panic (a bug) must not leave callers waiting for a loop
                // that is gone: the runtime shuts down and says why.
                crate::sync::fault::guard("lifecycle runtime loop", &runner.fault, || runner.panicked(), || runner.run_loop());
            })
            .map_err(|e| Error::from_io("spawning the runtime loop", &e))?;
        Ok(Runtime { api, threads: Mutex::new(vec![thread]) })
    }

    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// See `Api::attach_bus`.
    pub fn attach_bus(&self, bus: &Bus) -> Result<()> {
        let thread = self.api.attach_bus(bus)?;
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
        Ok(())
    }

    /// Closes the runtime: later calls fail with Closed, blocked waits
    /// return Closed, and (unless called from a protocol hook) no hook runs
    /// after this returns; the kinds are released on the loop thread.
    /// Idempotent.
    pub fn close(&self) {
        self.api.shut();
        if self.api.on_loop() {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.close();
    }
}
