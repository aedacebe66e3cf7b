//! Snapshots: per type URL a version and a set of named resources, plus
//! optional host-declared references checked by `consistent`.

use super::eval::Req;
use super::resource::Resource;
use super::response::Response;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// One type's resources by name: a persistent ordered map, so copying a
/// set to edit it costs O(1) and an edit O(log n), however many resources
/// the type has.
pub type Resources = imbl::OrdMap<Arc<str>, Arc<Resource>>;

/// How many ancestors an edited set remembers (see `Lineage`).
const LINEAGE_DEPTH: usize = 4;
/// Past this many edits since an ancestor, comparing whole sets is as
/// cheap: the ancestor is forgotten.
const LINEAGE_MAX_EDITS: usize = 4096;

/// Where an edited set came from: the sets it was copied from (nearest
/// first) and the names added, removed or replaced since each. A delta
/// stream that last saw an ancestor, and a SetSnapshot that replaces one,
/// then look at just those names instead of every resource. The
/// ancestors are weak: a set nobody holds any more is not kept alive.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lineage {
    ancestors: Vec<(Weak<TypeSet>, Vec<Arc<str>>)>,
}

impl Lineage {
    /// The lineage of a copy of `parent` about to be edited.
    fn descend(parent: &Arc<TypeSet>) -> Lineage {
        let mut ancestors = Vec::with_capacity(LINEAGE_DEPTH);
        ancestors.push((Arc::downgrade(parent), Vec::new()));
        for (a, names) in &parent.lineage.ancestors {
            if ancestors.len() == LINEAGE_DEPTH {
                break;
            }
            if a.strong_count() > 0 {
                ancestors.push((a.clone(), names.clone()));
            }
        }
        Lineage { ancestors }
    }

    fn record(&mut self, name: &Arc<str>) {
        for (_, names) in &mut self.ancestors {
            names.push(name.clone());
        }
        self.ancestors.retain(|(_, names)| names.len() <= LINEAGE_MAX_EDITS);
    }
}

/// Derived data kept beside a value (a memo): shared by the threads that
/// read the value, never copied with it (a clone, made to edit, starts
/// empty, as the edit may change what was derived).
#[derive(Default)]
pub(crate) struct Memo<T>(Mutex<T>);

impl<T: Default> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Memo::default()
    }
}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl<T> Memo<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How many distinct SOTW answers (version, scope, heartbeat) one type's
/// resources remember: a fleet usually asks a type in one or a few ways.
const MEMO_ANSWERS: usize = 8;

/// The SOTW answers built from one `TypeSet`, so every watch asking the
/// same thing of the same state shares one response (and one encoding).
#[derive(Default)]
pub(crate) struct Answers {
    entries: Vec<Arc<Response>>,
    next: usize,
}

/// The resources of one type. Shared (`Arc`) between snapshots and the
/// watches answered from it; a host edit after sharing copies it (O(1):
/// the map is persistent, the resources stay shared) and remembers what
/// it came from (`Lineage`).
#[derive(Debug, Default)]
pub struct TypeSet {
    /// Overrides the snapshot's default version for this type.
    pub(crate) version: Option<Arc<str>>,
    pub(crate) resources: Resources,
    /// Resources with a TTL (for heartbeats), kept in step with `resources`.
    pub(crate) ttl_count: usize,
    answers: Memo<Answers>,
    lineage: Lineage,
}

impl TypeSet {
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The names edited since `ancestor`, if this set descends from it
    /// (recently enough to remember); empty for the set itself.
    pub fn edits_since(&self, ancestor: &Arc<TypeSet>) -> Option<&[Arc<str>]> {
        if std::ptr::eq(self, Arc::as_ptr(ancestor)) {
            return Some(&[]);
        }
        let at = Arc::as_ptr(ancestor);
        self.lineage.ancestors.iter().find(|(a, _)| std::ptr::eq(a.as_ptr(), at)).map(|(_, names)| names.as_slice())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(name)
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    fn same_content(&self, other: &TypeSet) -> bool {
        self.resources.len() == other.resources.len()
            && self.resources.iter().zip(other.resources.iter()).all(|((n1, r1), (n2, r2))| n1 == n2 && (Arc::ptr_eq(r1, r2) || r1.same_as(r2)))
    }

    /// Same resources as `other`: by lineage when one was edited from the
    /// other (only the edited names are compared), else by a full walk.
    fn same_resources(self: &Arc<Self>, other: &Arc<TypeSet>) -> bool {
        if Arc::ptr_eq(self, other) {
            return true;
        }
        let edits = self.edits_since(other).map(|e| (e, self, other)).or_else(|| other.edits_since(self).map(|e| (e, other, self)));
        match edits {
            Some((names, new, old)) => {
                new.resources.len() == old.resources.len()
                    && names.iter().all(|n| match (new.resources.get(&**n), old.resources.get(&**n)) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.same_as(b),
                        (None, None) => true,
                        _ => false,
                    })
            }
            None => self.same_content(other),
        }
    }
}

/// A reference from one resource to another, declared by the host (the
/// cache cannot look inside opaque bytes): e.g. a cluster naming its
/// `ClusterLoadAssignment`, a listener naming its route configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub from_type: String,
    pub from_name: String,
    pub to_type: String,
    pub to_name: String,
}

/// A snapshot: one version per type URL (a default for every type, as
/// go-control-plane's `NewSnapshot(version, ...)` gives every type the same
/// version, overridable per type) and the resources of each type.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    default_version: Arc<str>,
    types: BTreeMap<String, Arc<TypeSet>>,
    references: BTreeSet<Reference>,
    /// Which types are served identically by one earlier snapshot (the one
    /// a node held before this): a snapshot set for a whole fleet compares
    /// its types with the previous one once, not once per node.
    diff: Memo<Option<(Weak<Snapshot>, Arc<Diff>)>>,
}

/// Types two snapshots hold (sorted), each with whether both serve it
/// identically; types neither holds are the same iff the default versions
/// are.
#[derive(Debug)]
pub(crate) struct Diff {
    listed: Vec<(String, bool)>,
    others_same: bool,
}

impl Diff {
    /// Whether a watch of `type_url` sees no change.
    pub fn unchanged(&self, type_url: &str) -> bool {
        match self.listed.binary_search_by(|(t, _)| t.as_str().cmp(type_url)) {
            Ok(i) => self.listed[i].1,
            Err(_) => self.others_same,
        }
    }
}

impl Snapshot {
    pub fn new(version: impl Into<String>) -> Snapshot {
        Snapshot { default_version: Arc::from(version.into()), ..Default::default() }
    }

    /// Adds a resource. InvalidArgument for an empty type URL or name, or a
    /// name already present for that type.
    pub fn add(&mut self, type_url: &str, name: &str, bytes: impl Into<Arc<[u8]>>, ttl: Option<Duration>) -> Result<()> {
        self.add_resource(type_url, Arc::new(Resource::new(name, bytes, ttl)))
    }

    /// Adds a resource object as is (lets several snapshots share one).
    pub fn add_resource(&mut self, type_url: &str, resource: Arc<Resource>) -> Result<()> {
        if type_url.is_empty() {
            return Err(Error::invalid("type URL is empty"));
        }
        if resource.name().is_empty() {
            return Err(Error::invalid("resource name is empty"));
        }
        if self.types.get(type_url).is_some_and(|t| t.resources.contains_key(resource.name())) {
            return Err(Error::invalid(format!("duplicate resource {:?} of type {type_url}", resource.name())));
        }
        let set = self.edit_set(type_url);
        set.ttl_count += usize::from(resource.ttl().is_some());
        let name = resource.shared_name().clone();
        set.lineage.record(&name);
        set.resources.insert(name, resource);
        Ok(())
    }

    /// The type's set, made this snapshot's own to edit: a set shared with
    /// another snapshot (or a cache) is copied first, remembering it.
    fn edit_set(&mut self, type_url: &str) -> &mut TypeSet {
        if !self.types.contains_key(type_url) {
            self.types.insert(type_url.to_string(), Arc::default());
        }
        let entry = self.types.get_mut(type_url).expect("inserted above");
        if Arc::get_mut(entry).is_none() {
            let parent = entry.clone();
            *entry = Arc::new(TypeSet {
                version: parent.version.clone(),
                resources: parent.resources.clone(),
                ttl_count: parent.ttl_count,
                answers: Memo::default(),
                lineage: Lineage::descend(&parent),
            });
        }
        Arc::get_mut(entry).expect("unique after the copy")
    }

    /// Removes a resource (to replace it: remove, then add). NotFound if
    /// the type has no resource of that name.
    pub fn remove(&mut self, type_url: &str, name: &str) -> Result<()> {
        let missing = || Error::new(crate::error::ErrorKind::NotFound, format!("no resource {name:?} of type {type_url}"));
        if !self.types.get(type_url).is_some_and(|t| t.resources.contains_key(name)) {
            return Err(missing());
        }
        let set = self.edit_set(type_url);
        if let Some(r) = set.resources.remove(name) {
            set.ttl_count -= usize::from(r.ttl().is_some());
            set.lineage.record(r.shared_name());
        }
        Ok(())
    }

    /// Sets the version of one type (default: the snapshot's version).
    pub fn set_version(&mut self, type_url: &str, version: &str) -> Result<()> {
        if type_url.is_empty() {
            return Err(Error::invalid("type URL is empty"));
        }
        self.edit_set(type_url).version = Some(Arc::from(version));
        Ok(())
    }

    /// Sets the snapshot's default version (the version of every type
    /// without its own).
    pub fn set_default_version(&mut self, version: &str) {
        if *self.default_version != *version {
            self.default_version = Arc::from(version);
        }
    }

    /// Gives a type the default version again.
    pub fn clear_version(&mut self, type_url: &str) {
        if self.types.get(type_url).is_some_and(|t| t.version.is_some()) {
            self.edit_set(type_url).version = None;
        }
    }

    /// Declares that resource `from_name` of `from_type` refers to
    /// `to_name` of `to_type`; checked by `consistent`.
    pub fn add_reference(&mut self, from_type: &str, from_name: &str, to_type: &str, to_name: &str) -> Result<()> {
        if [from_type, from_name, to_type, to_name].iter().any(|s| s.is_empty()) {
            return Err(Error::invalid("reference with an empty type URL or name"));
        }
        self.references.insert(Reference {
            from_type: from_type.into(),
            from_name: from_name.into(),
            to_type: to_type.into(),
            to_name: to_name.into(),
        });
        Ok(())
    }

    /// The version of a type: its own, or the snapshot's default (also for
    /// types the snapshot holds nothing of, as go-control-plane gives every
    /// type a version).
    pub fn version(&self, type_url: &str) -> &str {
        self.shared_version(type_url)
    }

    fn shared_version(&self, type_url: &str) -> &Arc<str> {
        self.types.get(type_url).and_then(|t| t.version.as_ref()).unwrap_or(&self.default_version)
    }

    pub fn default_version(&self) -> &str {
        &self.default_version
    }

    pub fn type_set(&self, type_url: &str) -> Option<&Arc<TypeSet>> {
        self.types.get(type_url)
    }

    /// Type URLs with resources or an own version.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.references.iter()
    }

    fn contains(&self, type_url: &str, name: &str) -> bool {
        self.types.get(type_url).is_some_and(|t| t.resources.contains_key(name))
    }

    /// The counterpart of go-control-plane's `Snapshot.Consistent`: every
    /// declared reference starts at a resource of the snapshot and resolves
    /// to one. Unlike go-control-plane (which knows the Envoy types), extra
    /// resources that nothing references are allowed. InvalidArgument
    /// naming the first dangling reference.
    pub fn consistent(&self) -> Result<()> {
        for r in &self.references {
            if !self.contains(&r.from_type, &r.from_name) {
                return Err(Error::invalid(format!(
                    "inconsistent snapshot: reference from missing resource {:?} of type {}",
                    r.from_name, r.from_type
                )));
            }
            if !self.contains(&r.to_type, &r.to_name) {
                return Err(Error::invalid(format!(
                    "inconsistent snapshot: {} {:?} refers to missing {} {:?}",
                    r.from_type, r.from_name, r.to_type, r.to_name
                )));
            }
        }
        Ok(())
    }

    /// What a watch of `type_url` sees.
    pub(crate) fn view(&self, type_url: &str) -> TypeView {
        TypeView { version: self.shared_version(type_url).clone(), set: self.types.get(type_url).cloned() }
    }

    /// Which types this snapshot serves as `previous` did, computed once
    /// per pair (the first node to move from `previous` to this snapshot
    /// pays; the others look it up). Unchanged resources also take their
    /// old versions here, so only changed bytes are ever hashed.
    pub(crate) fn diff_from(&self, previous: &Arc<Snapshot>) -> Arc<Diff> {
        let mut memo = self.diff.lock();
        if let Some((p, d)) = memo.as_ref() {
            if std::ptr::eq(p.as_ptr(), Arc::as_ptr(previous)) {
                return d.clone();
            }
        }
        self.inherit_versions(previous);
        let mut listed: Vec<(String, bool)> = previous.type_urls().chain(self.type_urls()).map(|t| (t.to_string(), false)).collect();
        listed.sort_unstable();
        listed.dedup();
        for (t, same) in &mut listed {
            *same = previous.view(t).same(&self.view(t));
        }
        let d = Arc::new(Diff { listed, others_same: previous.default_version == self.default_version });
        *memo = Some((Arc::downgrade(previous), d.clone()));
        d
    }

    /// Gives each resource the version of the same-named resource in
    /// `previous` when the bytes are equal, so only changed bytes are hashed.
    fn inherit_versions(&self, previous: &Snapshot) {
        for (type_url, set) in &self.types {
            let Some(old) = previous.types.get(type_url) else { continue };
            if Arc::ptr_eq(set, old) {
                continue;
            }
            if let Some(names) = set.edits_since(old) {
                // Edited from the old set: only the edited names can differ.
                for n in names {
                    if let (Some(r), Some(o)) = (set.resources.get(&**n), old.resources.get(&**n)) {
                        if !Arc::ptr_eq(r, o) {
                            r.inherit_version(o);
                        }
                    }
                }
                continue;
            }
            // Both maps are in name order: one merged pass, no lookups.
            let mut olds = old.resources.iter().peekable();
            for (name, r) in set.resources.iter() {
                while olds.next_if(|(o, _)| *o < name).is_some() {}
                if let Some((_, o)) = olds.next_if(|(o, _)| *o == name) {
                    if !Arc::ptr_eq(r, o) {
                        r.inherit_version(o);
                    }
                }
            }
        }
    }
}

/// One type of one snapshot, as a watch evaluates it: owned, so responses
/// are built after the cache lock is released.
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeView {
    pub version: Arc<str>,
    pub set: Option<Arc<TypeSet>>,
}

impl TypeView {
    /// No change a watch could see (cheap: pointer equality first).
    pub fn same(&self, other: &TypeView) -> bool {
        self.version == other.version
            && match (&self.set, &other.set) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same_resources(b),
                (Some(a), None) | (None, Some(a)) => a.is_empty(),
            }
    }

    /// Pointer-level identity: evaluated against exactly this state.
    pub fn identical(&self, other: &TypeView) -> bool {
        self.version == other.version
            && match (&self.set, &other.set) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }

    pub fn resources(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Resource>)> {
        self.set.iter().flat_map(|s| s.resources.iter())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.set.as_ref().and_then(|s| s.resources.get(name))
    }

    pub fn len(&self) -> usize {
        self.set.as_ref().map_or(0, |s| s.len())
    }

    pub fn ttl_count(&self) -> usize {
        self.set.as_ref().map_or(0, |s| s.ttl_count)
    }

    /// The SOTW answer (or heartbeat) to `req` from this state: built once
    /// by `build`, then shared with every watch that asks the same (same
    /// type, version, names or wildcard).
    pub fn shared_answer(&self, req: &Req, heartbeat: bool, build: impl FnOnce() -> Response) -> Arc<Response> {
        let Some(set) = &self.set else { return Arc::new(build()) };
        let same = |r: &Response| {
            r.heartbeat == heartbeat && r.version == *self.version && *r.type_url == *req.type_url && r.scope_matches(req)
        };
        if let Some(r) = set.answers.lock().entries.iter().find(|r| same(r)) {
            return r.clone();
        }
        let r = Arc::new(build().with_scope(req));
        let mut memo = set.answers.lock();
        if let Some(found) = memo.entries.iter().find(|e| same(e)) {
            return found.clone(); // built meanwhile by another thread
        }
        if memo.entries.len() < MEMO_ANSWERS {
            memo.entries.push(r.clone());
        } else {
            let i = memo.next;
            memo.entries[i] = r.clone();
            memo.next = (i + 1) % MEMO_ANSWERS;
        }
        r
    }
}

/// The value behind an `mr_snapshot` handle: a snapshot being built by the
/// host, thread-safe, copy-on-write once it has been handed to a cache
/// (later edits never change what the cache serves).
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    inner: Mutex<Arc<Snapshot>>,
}

impl SnapshotBuilder {
    pub fn new(version: &str) -> SnapshotBuilder {
        SnapshotBuilder { inner: Mutex::new(Arc::new(Snapshot::new(version))) }
    }

    pub fn from_snapshot(snapshot: Arc<Snapshot>) -> SnapshotBuilder {
        SnapshotBuilder { inner: Mutex::new(snapshot) }
    }

    pub fn edit<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(Arc::make_mut(&mut guard))
    }

    /// The current state, frozen (shared, not copied).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
