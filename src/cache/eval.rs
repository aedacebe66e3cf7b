//! Deciding whether a watch is answered and building its response: pure
//! functions of a request and a `TypeView`, run outside the cache lock.

use super::resource::Resource;
use super::response::{Response, ResponseKind};
use super::snapshot::TypeView;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A watch or fetch request as the cache keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// The node key (the host hashes its `core.Node`; empty is allowed).
    pub node: String,
    pub type_url: String,
    /// SOTW / fetch: the version the stream last acknowledged ("" at first).
    pub version_info: String,
    /// SOTW: requested names; delta: subscribed names. `"*"` means wildcard.
    pub names: Vec<String>,
    /// Wildcard subscription. SOTW also treats an empty `names` as wildcard
    /// (legacy xDS); delta only this flag (or `"*"`).
    pub wildcard: bool,
    /// SOTW: resources already returned on the stream (name -> version, the
    /// `next_state` of earlier responses); delta: the stream's resource
    /// versions (initial_resource_versions, then each `next_state`).
    pub known: HashMap<String, String>,
    /// Delta: first request for this type on the stream (a wildcard watch
    /// is then answered even when empty, so the client can finish init).
    pub first: bool,
    /// SOTW: `names` is an explicit subscription even when empty (a
    /// go-control-plane v0.14 stream that left wildcard subscribes to
    /// nothing), instead of the legacy "empty means wildcard".
    pub explicit: bool,
    /// Report the watch's answer through the cache's ready queue
    /// (`Cache::take_ready`) under this host token.
    pub queue_token: Option<u64>,
}

/// The normalized request, shared by the parked watch and its evaluation.
#[derive(Debug)]
pub(crate) struct Req {
    pub node: String,
    pub type_url: String,
    pub version_info: String,
    pub names: BTreeSet<String>,
    pub wildcard: bool,
    /// Shared strings: a response's next state keeps them by reference.
    pub known: HashMap<Arc<str>, Arc<str>>,
    pub first: bool,
}

impl Req {
    pub fn new(r: WatchRequest, delta: bool) -> Req {
        let mut names: BTreeSet<String> = r.names.into_iter().collect();
        let star = names.remove("*");
        let wildcard = r.wildcard || star || (!delta && !r.explicit && names.is_empty());
        let known = r.known.into_iter().map(|(n, v)| (Arc::from(n), Arc::from(v))).collect();
        Req { node: r.node, type_url: r.type_url, version_info: r.version_info, names, wildcard, known, first: r.first }
    }

    fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// The snapshot's resources this request covers, sorted by name.
    fn scope<'a>(&'a self, view: &'a TypeView) -> Vec<&'a Arc<Resource>> {
        if self.wildcard {
            view.resources().map(|(_, r)| r).collect()
        } else if self.names.len() <= view.len() {
            self.names.iter().filter_map(|n| view.get(n)).collect()
        } else {
            view.resources().filter(|(n, _)| self.names.contains(*n)).map(|(_, r)| r).collect()
        }
    }

    fn returned_at(&self, r: &Resource) -> bool {
        self.known.get(r.name()).is_some_and(|v| **v == **r.version())
    }

    /// Returned state kept from the request: subscribed names only.
    fn kept_state(&self) -> BTreeMap<Arc<str>, Arc<str>> {
        self.known.iter().filter(|(n, _)| self.subscribed(n)).map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// The ADS rule: with explicit names, answer only when every resource
    /// of the type in the snapshot is named.
    fn ads_blocked<'a>(&self, mut names_in_snapshot: impl Iterator<Item = &'a String>) -> bool {
        !self.wildcard && names_in_snapshot.any(|n| !self.names.contains(n))
    }
}

/// SOTW: answered when the type's version differs from the request's, or a
/// covered resource has not been returned at its current version (new
/// names, and new resources for wildcard), or (full-state types) a returned
/// resource is gone. Full-state types get every covered resource; other
/// types only those not yet returned at their current version. `None`: park.
pub(crate) fn sotw(req: &Req, view: &TypeView, full_state: bool, ads: bool) -> Option<Response> {
    let scope = req.scope(view);
    let version_differs = req.version_info != view.version;
    let unreturned = scope.iter().any(|r| !req.returned_at(r));
    let gone = full_state && req.known.keys().any(|n| req.subscribed(n) && view.get(n).is_none());
    if !(version_differs || unreturned || gone) {
        return None;
    }
    if ads && req.ads_blocked(view.resources().map(|(n, _)| n)) {
        return None;
    }
    let (resources, next_state) = if full_state {
        let next = scope.iter().map(|r| (r.shared_name().clone(), r.version().clone())).collect();
        (scope.into_iter().cloned().collect::<Vec<_>>(), next)
    } else {
        let mut next = req.kept_state();
        let sent: Vec<_> = scope.into_iter().filter(|r| !req.returned_at(r)).cloned().collect();
        for r in &sent {
            next.insert(r.shared_name().clone(), r.version().clone());
        }
        (sent, next)
    };
    Some(Response {
        kind: ResponseKind::Sotw,
        heartbeat: false,
        version: view.version.clone(),
        type_url: req.type_url.clone(),
        resources,
        removed: Vec::new(),
        next_state,
    })
}

/// Whether a heartbeat round should answer this SOTW watch: it covers at
/// least one TTL'd resource (and, in ADS mode with names, names all of them).
pub(crate) fn wants_heartbeat(req: &Req, view: &TypeView, ads: bool) -> bool {
    if view.ttl_count() == 0 {
        return false;
    }
    let ttl = || view.resources().filter(|(_, r)| r.ttl().is_some());
    if ads && req.ads_blocked(ttl().map(|(n, _)| n)) {
        return false;
    }
    ttl().any(|(n, _)| req.subscribed(n))
}

/// The heartbeat for a watch `wants_heartbeat` accepted: the covered TTL'd
/// resources at the current version, flagged.
pub(crate) fn heartbeat(req: &Req, view: &TypeView) -> Response {
    let resources: Vec<_> = req.scope(view).into_iter().filter(|r| r.ttl().is_some()).cloned().collect();
    let mut next_state = req.kept_state();
    for r in &resources {
        next_state.insert(r.shared_name().clone(), r.version().clone());
    }
    Response {
        kind: ResponseKind::Sotw,
        heartbeat: true,
        version: view.version.clone(),
        type_url: req.type_url.clone(),
        resources,
        removed: Vec::new(),
        next_state,
    }
}

/// Fetch: every covered resource (no ADS rule, no returned state).
pub(crate) fn fetch(req: &Req, view: &TypeView) -> Response {
    let resources: Vec<_> = req.scope(view).into_iter().cloned().collect();
    let next_state = resources.iter().map(|r| (r.shared_name().clone(), r.version().clone())).collect();
    Response {
        kind: ResponseKind::Sotw,
        heartbeat: false,
        version: view.version.clone(),
        type_url: req.type_url.clone(),
        resources,
        removed: Vec::new(),
        next_state,
    }
}

/// Delta: resources whose version differs from the stream's, and removals
/// (wildcard: known names no longer in the snapshot; explicit: subscribed
/// known names no longer in it). Answered only when either is non-empty, or
/// for the first wildcard request. `next_state` is the version map the
/// stream keeps (unsubscribed names drop out of it).
pub(crate) fn delta(req: &Req, view: &TypeView) -> Option<Response> {
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    let next_state: BTreeMap<Arc<str>, Arc<str>>;
    if req.wildcard {
        // One pass in name order; the next state is built in bulk from it.
        let mut next = Vec::with_capacity(view.len());
        let mut known_seen = 0;
        for (_, r) in view.resources() {
            match req.known.get(r.name()) {
                Some(v) => {
                    known_seen += 1;
                    if **v != **r.version() {
                        resources.push(r.clone());
                    }
                }
                None => resources.push(r.clone()),
            }
            next.push((r.shared_name().clone(), r.version().clone()));
        }
        next_state = next.into_iter().collect();
        // Only when some known name was not seen is any of them gone.
        if known_seen < req.known.len() {
            removed.extend(req.known.keys().filter(|n| view.get(n).is_none()).map(|n| n.to_string()));
            removed.sort();
        }
    } else {
        let mut next = BTreeMap::new();
        let changed = |r: &Arc<Resource>| req.known.get(r.name()).is_none_or(|v| **v != **r.version());
        for name in &req.names {
            match view.get(name) {
                Some(r) => {
                    next.insert(r.shared_name().clone(), r.version().clone());
                    if changed(r) {
                        resources.push(r.clone());
                    }
                }
                None if req.known.contains_key(name.as_str()) => removed.push(name.clone()),
                None => {}
            }
        }
        next_state = next;
    }
    if resources.is_empty() && removed.is_empty() && !(req.wildcard && req.first) {
        return None;
    }
    Some(Response {
        kind: ResponseKind::Delta,
        heartbeat: false,
        version: view.version.clone(),
        type_url: req.type_url.clone(),
        resources,
        removed,
        next_state,
    })
}
