//! The runtime's state behind its lock: instances, tables, the effect
//! queue and the chunked feed/flush work. Pure bookkeeping: nothing here
//! calls a protocol; calls to protocols are queued as `Effect`s that the
//! loop thread runs with the lock released.

use super::config::{Applied, Config, Plan, ProtoConfig, RestartLimit};
use super::events::Events;
use super::exports::{ExportQueue, Pending};
use super::kind::Kind;
use super::prefix::Prefix;
use super::state::{self, Action, CoreState, ProtoState};
use super::table::{BestChange, Route, Table};
use crate::error::{Error, ErrorKind, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Work the loop thread does outside the lock, in queue order.
pub(crate) enum Effect {
    Start { name: Arc<str>, gen: u64 },
    Shutdown { name: Arc<str>, gen: u64 },
    Reconfigure { name: Arc<str>, gen: u64, new: Arc<ProtoConfig> },
    Publish(Arc<[u8]>),
}

impl Effect {
    /// The protocol whose hook this calls (None: a bus publication).
    pub fn protocol(&self) -> Option<&Arc<str>> {
        match self {
            Effect::Start { name, .. } | Effect::Shutdown { name, .. } | Effect::Reconfigure { name, .. } => Some(name),
            Effect::Publish(_) => None,
        }
    }
}

/// The next thing the loop runs: an effect or a (coalesced) export.
pub(crate) enum Job {
    Effect(Effect),
    Export { name: Arc<str>, prefix: Prefix, pending: Pending },
}

/// Who reported a state: a protocol (its hook's return value or the host
/// calling `notify_state`) or the runtime itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Protocol,
    Runtime,
}

pub(crate) struct Instance {
    pub gen: u64,
    pub cfg: Arc<ProtoConfig>,
    pub kind: Arc<dyn Kind>,
    pub ps: ProtoState,
    pub cs: CoreState,
    pub disabled: bool,
    /// Going down to be replaced (`next` = Some) or removed (None).
    pub reconfiguring: bool,
    pub next: Option<(Arc<ProtoConfig>, bool)>,
    /// A configuration waiting for the protocol's reconfigure verdict.
    pub pending: Option<Arc<ProtoConfig>>,
    /// The start hook ran for the current start (so shutdown must run too).
    pub started: bool,
    /// The runtime asked it to stop (so its going down is no failure).
    pub stop_requested: bool,
    pub since: SystemTime,
    pub info: String,
    /// While feeding: the last prefix sent (None: nothing yet).
    pub cursor: Option<Prefix>,
    /// Prefixes this instance has a route to.
    pub routes: BTreeSet<Prefix>,
    failures: VecDeque<Instant>,
}

impl Instance {
    /// The configuration this name is heading for (None: being removed).
    pub fn latest(&self) -> Option<(&Arc<ProtoConfig>, bool)> {
        if self.reconfiguring {
            self.next.as_ref().map(|(c, d)| (c, *d))
        } else {
            Some((self.pending.as_ref().unwrap_or(&self.cfg), self.disabled))
        }
    }

    /// May import and withdraw routes now.
    pub fn accepts_routes(&self) -> bool {
        matches!(self.ps, ProtoState::Start | ProtoState::Up) && self.cs != CoreState::Flushing
    }

    fn goal_down(&self) -> bool {
        self.disabled || self.reconfiguring
    }

    /// Receives changes of `prefix` as they happen.
    fn hears(&self, prefix: &Prefix) -> bool {
        match self.cs {
            CoreState::Happy => true,
            CoreState::Feeding => self.cursor.is_some_and(|c| *prefix <= c),
            _ => false,
        }
    }
}

/// One feed step's routes, sent by the loop outside the lock.
pub(crate) struct FeedBatch {
    pub table: Arc<str>,
    pub kind: Arc<dyn Kind>,
    pub routes: Vec<(Prefix, Route)>,
}

/// A peer's routes as the netmap kind imports them.
pub(crate) struct Peer {
    pub prefixes: Vec<Prefix>,
    pub attrs: Arc<str>,
}

pub(crate) struct Core {
    pub closed: bool,
    pub kinds: HashMap<Arc<str>, Arc<dyn Kind>>,
    pub protos: BTreeMap<Arc<str>, Instance>,
    pub tables: BTreeMap<Arc<str>, Table>,
    pub config: Config,
    /// The text of the config last committed (see `config::plan`).
    pub applied: Applied,
    /// Hook calls other than exports, with their queue position.
    pub effects: VecDeque<(u64, Effect)>,
    /// Exports, at most one per (listener, prefix): see `exports`.
    pub exports: ExportQueue,
    /// The next queue position: effects and exports share one sequence,
    /// so they run in the order they were queued, and commands wait until
    /// everything queued before them has run.
    pub next_seq: u64,
    /// The position the loop is running with the lock released.
    pub running: Option<u64>,
    /// The protocol whose hook is running (with the lock released).
    pub running_effect: Option<Arc<str>>,
    /// The earliest queue position the loop discarded when it stopped
    /// (close): work at or after it never ran.
    pub discarded_from: Option<u64>,
    /// Names with a feed or flush in progress, served round-robin.
    pub work: VecDeque<Arc<str>>,
    pub events: Events,
    pub peers: HashMap<i64, Peer>,
    /// Per prefix, the peers whose AllowedIPs list it; a netmap instance
    /// routes it with the attrs of the lowest id (see `netmap`).
    pub advertisers: BTreeMap<Prefix, BTreeSet<i64>>,
    pub publish: bool,
    /// The loop is running an effect or a step with the lock released.
    pub busy: bool,
    /// The loop sleeps on `wake` (so new work must signal it).
    pub loop_asleep: bool,
    /// Threads sleeping on `progress` / `event` (signal only if any).
    pub progress_waiters: u32,
    pub event_waiters: u32,
    next_gen: u64,
}

const ACCEPT_STATES: &str = "it is not starting or up";

impl Core {
    pub fn new(events: Events) -> Core {
        let mut tables = BTreeMap::new();
        tables.insert(Arc::<str>::from("master"), Table::default());
        Core {
            closed: false,
            kinds: HashMap::new(),
            protos: BTreeMap::new(),
            tables,
            config: Config { tables: vec!["master".into()], protocols: Vec::new(), restart_limit: RestartLimit::default() },
            applied: Applied::default(),
            effects: VecDeque::new(),
            exports: ExportQueue::default(),
            next_seq: 0,
            running: None,
            running_effect: None,
            discarded_from: None,
            work: VecDeque::new(),
            events,
            peers: HashMap::new(),
            advertisers: BTreeMap::new(),
            publish: false,
            busy: false,
            loop_asleep: false,
            progress_waiters: 0,
            event_waiters: 0,
            next_gen: 1,
        }
    }

    pub fn push(&mut self, effect: Effect) {
        self.effects.push_back((self.next_seq, effect));
        self.next_seq += 1;
    }

    /// Effects and exports waiting for the loop.
    pub fn queued(&self) -> usize {
        self.effects.len() + self.exports.len()
    }

    /// Takes the oldest effect or export.
    pub fn next_job(&mut self) -> Option<(u64, Job)> {
        let effect = self.effects.front().map(|(seq, _)| *seq);
        let export = self.exports.front_seq();
        match (effect, export) {
            (Some(e), Some(x)) if x < e => self.pop_export(),
            (Some(_), _) => self.effects.pop_front().map(|(seq, e)| (seq, Job::Effect(e))),
            (None, Some(_)) => self.pop_export(),
            (None, None) => None,
        }
    }

    fn pop_export(&mut self) -> Option<(u64, Job)> {
        self.exports.pop().map(|(seq, name, prefix, pending)| (seq, Job::Export { name, prefix, pending }))
    }

    /// Whether everything queued before position `target` has run.
    pub fn finished_before(&mut self, target: u64) -> bool {
        self.running.is_none_or(|s| s >= target)
            && self.effects.front().is_none_or(|(s, _)| *s >= target)
            && self.exports.front_seq().is_none_or(|s| s >= target)
    }

    pub fn instance(&self, name: &str) -> Result<&Instance> {
        self.protos.get(name).ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no protocol named {name:?}")))
    }

    fn instance_mut(&mut self, name: &str) -> Result<&mut Instance> {
        self.protos.get_mut(name).ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no protocol named {name:?}")))
    }

    /// The live instance `name` if it is still generation `gen`.
    pub fn current(&mut self, name: &str, gen: u64) -> Option<&mut Instance> {
        self.protos.get_mut(name).filter(|i| i.gen == gen)
    }

    fn create(&mut self, cfg: Arc<ProtoConfig>, disabled: bool) -> Result<()> {
        let kind = self.kinds.get(&*cfg.kind).cloned().ok_or_else(|| Error::invalid(format!("unknown kind {:?}", cfg.kind)))?;
        // Its table exists while it does (`drop_unused_tables` keeps it).
        self.tables.entry(cfg.table.clone()).or_default();
        let gen = self.next_gen;
        self.next_gen += 1;
        let name = cfg.name.clone();
        let inst = Instance {
            gen,
            cfg,
            kind,
            ps: ProtoState::Down,
            cs: CoreState::Hungry,
            disabled,
            reconfiguring: false,
            next: None,
            pending: None,
            started: false,
            stop_requested: false,
            since: SystemTime::now(),
            info: if disabled { "disabled".into() } else { String::new() },
            cursor: None,
            routes: BTreeSet::new(),
            failures: VecDeque::new(),
        };
        self.protos.insert(name.clone(), inst);
        self.announce(&name);
        Ok(())
    }

    /// Records a state event for `name` (and queues its bus copy).
    pub fn announce(&mut self, name: &str) {
        let Some(inst) = self.protos.get(name) else { return };
        let json = self.events.push_state(name, inst);
        if self.publish {
            self.push(Effect::Publish(json));
        }
    }

    /// Drives `name` towards its goal: BIRD's "rethink goal". Starts it
    /// (queueing the start hook), shuts it down (queueing the shutdown
    /// hook), or replaces/removes it once it is down after a commit.
    pub fn rethink(&mut self, name: &str) {
        loop {
            let Some(inst) = self.protos.get_mut(name) else { return };
            if inst.reconfiguring && inst.ps == ProtoState::Down && inst.cs == CoreState::Hungry {
                let inst = self.protos.remove(name).expect("present");
                let name: Arc<str> = inst.cfg.name.clone();
                let json = self.events.push_removed(&name);
                if self.publish {
                    self.push(Effect::Publish(json));
                }
                self.drop_unused_tables();
                match inst.next {
                    Some((cfg, disabled)) => {
                        self.create(cfg, disabled).expect("kind checked at commit");
                        continue;
                    }
                    None => return,
                }
            }
            let gen = inst.gen;
            let name: Arc<str> = inst.cfg.name.clone();
            if inst.goal_down() {
                if matches!(inst.ps, ProtoState::Start | ProtoState::Up) {
                    inst.stop_requested = true;
                    self.report(&name, ProtoState::Stop, Source::Runtime, None).expect("start/up -> stop is legal");
                    self.push(Effect::Shutdown { name, gen });
                }
            } else if inst.ps == ProtoState::Down && inst.cs == CoreState::Hungry {
                inst.started = false;
                self.report(&name, ProtoState::Start, Source::Runtime, None).expect("down -> start is legal");
                self.push(Effect::Start { name, gen });
            }
            return;
        }
    }

    /// Applies a state report; the one place where the two states change.
    pub fn report(&mut self, name: &str, to: ProtoState, source: Source, info: Option<&str>) -> Result<()> {
        let limit = self.config.restart_limit;
        let inst = self.instance_mut(name)?;
        if source == Source::Protocol && matches!(to, ProtoState::Start | ProtoState::Up) && !inst.started {
            return Err(Error::new(ErrorKind::State, format!("protocol {name:?} was not asked to start")));
        }
        let step = state::notify(inst.ps, inst.cs, to)
            .map_err(|e| Error::new(ErrorKind::State, format!("protocol {name:?}: {}", e.message)))?;
        if let Some(info) = info {
            inst.info = info.to_string();
        }
        if step.action == Action::Nothing {
            return Ok(());
        }
        let failed = source == Source::Protocol
            && matches!(to, ProtoState::Down | ProtoState::Stop)
            && !inst.goal_down()
            && !inst.stop_requested;
        if failed && count_failure(inst, limit) {
            inst.disabled = true;
            let last = if inst.info.is_empty() { String::new() } else { format!("; last: {}", inst.info) };
            inst.info = format!(
                "disabled: restart limit ({} failures in {} s) exceeded{last}",
                limit.count,
                limit.window.as_secs()
            );
        }
        inst.ps = step.proto;
        inst.cs = step.core;
        inst.since = SystemTime::now();
        if step.proto == ProtoState::Down && step.core == CoreState::Hungry {
            inst.started = false;
            inst.stop_requested = false;
        }
        let (name, gen): (Arc<str>, u64) = (inst.cfg.name.clone(), inst.gen);
        match step.action {
            Action::StartFeed => {
                inst.cursor = None;
                self.work.push_back(name.clone());
            }
            Action::StartFlush => {
                inst.cursor = None;
                self.work.push_back(name.clone());
                // It hears no more changes: what was pending for it goes.
                self.exports.clear_listener(gen);
            }
            _ => {}
        }
        self.announce(&name);
        if step.action == Action::FellDown {
            self.rethink(&name);
        }
        Ok(())
    }

    /// Queues the export of `change` to every other instance on `table`
    /// that hears it, coalesced with what is still pending for the same
    /// listener and prefix (module doc of `exports`).
    fn exports(&mut self, table: &Arc<str>, change: BestChange) {
        for (name, inst) in &self.protos {
            if inst.cfg.table != *table || !inst.hears(&change.prefix) {
                continue;
            }
            let visible = |r: &Option<Route>| r.as_ref().filter(|r| r.owner != *name).cloned();
            let (old, new) = (visible(&change.old), visible(&change.new));
            if old != new {
                self.exports.note(&mut self.next_seq, name, inst.gen, table, change.prefix, old, new);
            }
        }
    }

    /// Imports (or replaces) `name`'s route to `prefix`.
    pub fn import(&mut self, name: &str, prefix: Prefix, preference: Option<u32>, attrs: Arc<str>) -> Result<()> {
        let inst = self.instance_mut(name)?;
        if !inst.accepts_routes() {
            return Err(Error::new(ErrorKind::State, format!("protocol {name:?} cannot import: {ACCEPT_STATES}")));
        }
        inst.routes.insert(prefix);
        let route = Route { owner: inst.cfg.name.clone(), preference: preference.unwrap_or(inst.cfg.preference), attrs };
        let table = inst.cfg.table.clone();
        let change = self.tables.get_mut(&table).expect("instance table exists").import(prefix, route);
        if let Some(change) = change {
            self.exports(&table, change);
        }
        Ok(())
    }

    /// Removes `name`'s route to `prefix`. `must_exist`: NotFound if absent.
    pub fn withdraw(&mut self, name: &str, prefix: &Prefix, must_exist: bool) -> Result<()> {
        let inst = self.instance_mut(name)?;
        if !inst.accepts_routes() {
            return Err(Error::new(ErrorKind::State, format!("protocol {name:?} cannot withdraw: {ACCEPT_STATES}")));
        }
        if !inst.routes.remove(prefix) {
            if must_exist {
                return Err(Error::new(ErrorKind::NotFound, format!("protocol {name:?} has no route to {prefix}")));
            }
            return Ok(());
        }
        self.withdraw_owned(name, prefix);
        Ok(())
    }

    fn withdraw_owned(&mut self, name: &str, prefix: &Prefix) {
        let table = self.protos[name].cfg.table.clone();
        let change = self.tables.get_mut(&table).expect("instance table exists").withdraw(prefix, name);
        if let Some(change) = change {
            self.exports(&table, change);
        }
    }

    /// One bounded step of `name`'s feed: up to `chunk` best routes after
    /// its cursor (its own routes skipped). Returns what to send; the
    /// caller sends it outside the lock. Finishing the table makes it happy.
    pub fn feed_step(&mut self, name: &str, chunk: usize) -> Option<FeedBatch> {
        let inst = self.protos.get(name)?;
        if inst.cs != CoreState::Feeding {
            return None;
        }
        let table = self.tables.get(&inst.cfg.table).expect("instance table exists");
        let mut batch = Vec::with_capacity(chunk.min(table.len()));
        let mut last = inst.cursor;
        let mut scanned = 0;
        for (prefix, route) in table.best_after(inst.cursor, chunk) {
            scanned += 1;
            last = Some(prefix);
            if route.owner != inst.cfg.name {
                batch.push((prefix, route.clone()));
            }
        }
        let (kind, table_name, name) = (inst.kind.clone(), inst.cfg.table.clone(), inst.cfg.name.clone());
        let inst = self.protos.get_mut(name.as_ref()).expect("present");
        inst.cursor = last;
        if scanned < chunk {
            inst.cs = CoreState::Happy;
            inst.since = SystemTime::now();
            self.announce(&name);
        } else {
            self.work.push_back(name.clone());
        }
        Some(FeedBatch { table: table_name, kind, routes: batch })
    }

    /// One bounded step of `name`'s flush: withdraws up to `chunk` of its
    /// routes; when none are left it is hungry (and down if it said so).
    pub fn flush_step(&mut self, name: &str, chunk: usize) {
        let Some(inst) = self.protos.get_mut(name) else { return };
        if inst.cs != CoreState::Flushing {
            return;
        }
        let mut batch = Vec::with_capacity(chunk.min(inst.routes.len()));
        while batch.len() < chunk {
            match inst.routes.pop_first() {
                Some(p) => batch.push(p),
                None => break,
            }
        }
        let finished = inst.routes.is_empty();
        for prefix in &batch {
            self.withdraw_owned(name, prefix);
        }
        let name: Arc<str> = self.protos[name].cfg.name.clone();
        if !finished {
            self.work.push_back(name);
            return;
        }
        let inst = self.protos.get_mut(&name).expect("present");
        inst.cs = CoreState::Hungry;
        inst.since = SystemTime::now();
        let down = inst.ps == ProtoState::Down;
        if down {
            inst.started = false;
            inst.stop_requested = false;
        }
        self.announce(&name);
        if down {
            self.rethink(&name);
        }
    }

    /// Installs a validated configuration (see `runtime::Api::commit`).
    /// A soft commit of an incremental plan looks only at the protocols
    /// whose text changed and those dropped: every other one is what the
    /// previous commit applied, so it has nothing to do (the configuration
    /// an instance is heading for only ever comes from commits).
    pub fn install(&mut self, mut plan: Plan, hard: bool) -> Vec<Arc<str>> {
        if plan.same_text && !hard {
            return Vec::new();
        }
        let config = std::mem::take(&mut plan.config);
        for t in &config.tables {
            if !self.tables.contains_key(t) {
                self.tables.insert(t.clone(), Table::default());
            }
        }
        let incremental = plan.incremental && !hard;
        let gone: Vec<Arc<str>> = if incremental {
            std::mem::take(&mut plan.dropped)
        } else {
            let wanted: std::collections::HashSet<&str> = config.protocols.iter().map(|p| &*p.name).collect();
            self.protos.keys().filter(|n| !wanted.contains(&***n)).cloned().collect()
        };
        let todo: Vec<Arc<ProtoConfig>> = if incremental { plan.changed.clone() } else { config.protocols.clone() };
        // The new configuration is current before any instance moves: a
        // protocol removed below drops the tables nobody uses any more, and
        // the tables the new configuration names must count as used then.
        self.applied.record(plan, &config);
        self.config = config;
        let mut touched = Vec::with_capacity(gone.len() + todo.len());
        for name in gone {
            let Some(inst) = self.protos.get_mut(&name) else { continue };
            if inst.reconfiguring && inst.next.is_none() {
                continue;
            }
            inst.reconfiguring = true;
            inst.next = None;
            inst.pending = None;
            inst.info = "removed by commit".into();
            touched.push(name.clone());
            self.rethink(&name);
        }
        for nc in &todo {
            let Some(inst) = self.protos.get_mut(&nc.name) else {
                self.create(nc.clone(), nc.disabled).expect("kind checked");
                touched.push(nc.name.clone());
                self.rethink(&nc.name);
                continue;
            };
            let disabled = match inst.latest() {
                Some((latest, disabled)) if latest.disabled == nc.disabled => disabled,
                _ => nc.disabled,
            };
            let latest = inst.latest().map(|(c, _)| c.clone());
            if !hard && latest.as_deref() == Some(&**nc) {
                continue; // unchanged: nothing to do, whatever its state
            }
            touched.push(nc.name.clone());
            let in_place = !hard
                && !inst.reconfiguring
                && inst.ps != ProtoState::Down
                && latest.as_deref().is_some_and(|l| l.same_core(nc));
            if in_place {
                inst.pending = Some(nc.clone());
                let (name, gen) = (nc.name.clone(), inst.gen);
                self.push(Effect::Reconfigure { name, gen, new: nc.clone() });
            } else {
                self.restart_with(&nc.name, nc.clone(), disabled);
            }
        }
        self.drop_unused_tables();
        touched
    }

    /// Whether the runtime still owes `name` a hook call it decided on:
    /// one queued (or running), or a start that follows the flush now in
    /// progress (a restart, or a replacement after a commit). A protocol
    /// that is itself slow to report its state owes nothing.
    pub fn owes_hook(&self, name: &str) -> bool {
        let queued = |e: &Effect| e.protocol().is_some_and(|n| &**n == name);
        if self.running_effect.as_deref() == Some(name) || self.effects.iter().any(|(_, e)| queued(e)) {
            return true;
        }
        let Some(inst) = self.protos.get(name) else { return false };
        let start_follows = if inst.reconfiguring { inst.next.as_ref().is_some_and(|(_, disabled)| !disabled) } else { !inst.disabled };
        inst.cs == CoreState::Flushing && inst.ps == ProtoState::Down && start_follows
    }

    /// Shuts `name` down and brings `cfg` up in its place.
    pub fn restart_with(&mut self, name: &str, cfg: Arc<ProtoConfig>, disabled: bool) {
        let inst = self.protos.get_mut(name).expect("present");
        inst.reconfiguring = true;
        inst.pending = None;
        inst.next = Some((cfg, disabled));
        self.rethink(name);
    }

    /// Tables neither configured nor used by any instance go away.
    fn drop_unused_tables(&mut self) {
        if self.tables.len() == self.config.tables.len() {
            return; // every table is a configured one (names are unique)
        }
        let used: BTreeSet<Arc<str>> =
            self.protos.values().map(|i| i.cfg.table.clone()).chain(self.config.tables.iter().cloned()).collect();
        self.tables.retain(|name, _| used.contains(name));
    }

    /// enable (`Some(false)`), disable (`Some(true)`) or restart (`None`)
    /// every instance whose name matches `pattern`; the names matched.
    pub fn command(&mut self, pattern: &str, disable: Option<bool>) -> Vec<Arc<str>> {
        let names: Vec<Arc<str>> = self.protos.keys().filter(|n| super::pattern::matches(pattern, n)).cloned().collect();
        for name in &names {
            let inst = self.protos.get_mut(name).expect("present");
            match disable {
                Some(true) if !inst.disabled => {
                    inst.disabled = true;
                    inst.info = "disabled".into();
                }
                Some(false) if inst.disabled => {
                    inst.disabled = false;
                    inst.failures.clear();
                    inst.info.clear();
                }
                None if !inst.disabled => {
                    inst.disabled = true;
                    self.rethink(name);
                    let inst = self.protos.get_mut(name).expect("present");
                    inst.disabled = false;
                    inst.info = "restarted".into();
                }
                _ => continue,
            }
            if self.protos.contains_key(name) {
                self.announce(name);
            }
            self.rethink(name);
        }
        names
    }
}

/// Records a failure now; true when the restart limit is exceeded.
fn count_failure(inst: &mut Instance, limit: RestartLimit) -> bool {
    if limit.count == 0 {
        return false;
    }
    let now = Instant::now();
    inst.failures.push_back(now);
    while inst.failures.front().is_some_and(|t| now.duration_since(*t) > limit.window) {
        inst.failures.pop_front();
    }
    inst.failures.len() > limit.count as usize
}
