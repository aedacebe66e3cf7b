//! Deciding whether a watch is answered and building its response: pure
//! functions of a request and a `TypeView`, run outside the cache lock.

use super::resource::Resource;
use super::response::{NextState, Response, ResponseKind};
use super::snapshot::TypeView;
use std::collections::{BTreeSet, HashMap};
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
    pub node: Arc<str>,
    pub type_url: Arc<str>,
    pub version_info: String,
    pub names: BTreeSet<String>,
    pub wildcard: bool,
    /// SOTW: needed only while the watch is opened (dropped when it parks).
    pub known: Known,
    pub first: bool,
    pub queue_token: Option<u64>,
}

/// What a stream already has: versions the host passed in, or (a delta
/// watch opened after the stream's previous one) that watch's answer,
/// whose next state the library kept.
#[derive(Debug)]
pub(crate) enum Known {
    Passed(HashMap<String, String>),
    After(Arc<Response>),
}

impl Default for Known {
    fn default() -> Self {
        Known::Passed(HashMap::new())
    }
}

impl Known {
    pub fn get(&self, name: &str) -> Option<&str> {
        match self {
            Known::Passed(m) => m.get(name).map(String::as_str),
            Known::After(r) => r.next_state.get(name).map(|v| &**v),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        match self {
            Known::Passed(m) => m.len(),
            Known::After(r) => r.next_state.len(),
        }
    }

    fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Known::Passed(m) => Box::new(m.keys().map(String::as_str)),
            Known::After(r) => Box::new(r.next_state.keys().map(|k| &**k)),
        }
    }
}

impl Req {
    pub fn new(r: WatchRequest, delta: bool) -> Req {
        let mut names: BTreeSet<String> = r.names.into_iter().collect();
        let star = names.remove("*");
        let wildcard = r.wildcard || star || (!delta && !r.explicit && names.is_empty());
        Req {
            node: Arc::from(r.node),
            type_url: Arc::from(r.type_url),
            version_info: r.version_info,
            names,
            wildcard,
            known: Known::Passed(r.known),
            first: r.first,
            queue_token: r.queue_token,
        }
    }

    /// The subscription a delta answer is computed for (stored in it, so a
    /// watch opened after it can tell whether it asks the same).
    pub fn same_subscription(&self, wildcard: bool, names: &BTreeSet<String>) -> bool {
        self.wildcard == wildcard && (wildcard || self.names == *names)
    }

    /// The snapshot's resources this request covers, sorted by name.
    fn scope<'a>(&'a self, view: &'a TypeView) -> Vec<&'a Arc<Resource>> {
        if self.wildcard {
            view.resources().map(|(_, r)| r).collect()
        } else if self.names.len() <= view.len() {
            self.names.iter().filter_map(|n| view.get(n)).collect()
        } else {
            view.resources().filter(|(n, _)| self.names.contains(&***n)).map(|(_, r)| r).collect()
        }
    }

    /// The ADS rule: with explicit names, answer only when every resource
    /// of the type in the snapshot is named.
    fn ads_blocked<'a>(&self, mut names_in_snapshot: impl Iterator<Item = &'a Arc<str>>) -> bool {
        !self.wildcard && names_in_snapshot.any(|n| !self.names.contains(&**n))
    }
}

/// What evaluating a watch against a snapshot decides.
#[derive(Debug)]
pub(crate) enum Outcome {
    Answer(Arc<Response>),
    /// Not yet: the watch waits for a snapshot that changes its type.
    Park,
    /// ADS with names that are not every resource of the type: never
    /// answered; go-control-plane drops such a watch (the client asks
    /// again with the right names).
    Drop,
}

/// SOTW, as go-control-plane v0.14's SnapshotCache decides
/// (pkg/cache/v3/simple.go, CreateWatch / SetSnapshot / respond):
/// answered when the type's version differs from the request's, and, when
/// the watch is opened (`at_open`), also when a covered resource's name
/// has not been returned yet (names only; the returned versions are not
/// compared). The answer carries every covered resource, and the next
/// state names each at the type's version. With ADS a watch whose names
/// leave out a resource of the type is dropped.
pub(crate) fn sotw(req: &Req, view: &TypeView, ads: bool, at_open: bool) -> Outcome {
    match sotw_decide(req, view, ads, at_open) {
        Decision::Answer => Outcome::Answer(view.shared_answer(req, false, || sotw_response(req, view, req.scope(view).into_iter().cloned().collect(), false))),
        Decision::Park => Outcome::Park,
        Decision::Drop => Outcome::Drop,
    }
}

/// What `sotw` decides, without building the answer (cheap: done under
/// the cache lock when a watch opens, so a watch that parks is parked in
/// one step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Answer,
    Park,
    Drop,
}

pub(crate) fn sotw_decide(req: &Req, view: &TypeView, ads: bool, at_open: bool) -> Decision {
    if *req.version_info == *view.version {
        let unreturned = at_open
            && if req.wildcard {
                view.resources().any(|(n, _)| !req.known.contains(n))
            } else {
                req.names.iter().any(|n| !req.known.contains(n) && view.get(n).is_some())
            };
        if !unreturned {
            return Decision::Park;
        }
    }
    if ads && req.ads_blocked(view.resources().map(|(n, _)| n)) {
        return Decision::Drop;
    }
    Decision::Answer
}

/// A SOTW response of `resources`, its next state naming each at the
/// type's version (go-control-plane's returned resources).
fn sotw_response(req: &Req, view: &TypeView, resources: Vec<Arc<Resource>>, heartbeat: bool) -> Response {
    let next_state = resources.iter().map(|r| (r.shared_name().clone(), view.version.clone())).collect();
    Response::new(ResponseKind::Sotw, heartbeat, view.version.to_string(), req.type_url.to_string(), resources, Vec::new(), next_state)
}

/// A heartbeat round (go-control-plane's sendHeartbeats): every SOTW watch
/// of a type that has TTL'd resources is answered with the covered TTL'd
/// resources (flagged; possibly none), whatever its version; with ADS and
/// names, only if the names cover every TTL'd resource (else dropped).
pub(crate) fn heartbeat(req: &Req, view: &TypeView, ads: bool) -> Option<Outcome> {
    if view.ttl_count() == 0 {
        return None;
    }
    let ttl = || view.resources().filter(|(_, r)| r.ttl().is_some());
    if ads && req.ads_blocked(ttl().map(|(n, _)| n)) {
        return Some(Outcome::Drop);
    }
    Some(Outcome::Answer(view.shared_answer(req, true, || {
        let resources: Vec<_> = req.scope(view).into_iter().filter(|r| r.ttl().is_some()).cloned().collect();
        sotw_response(req, view, resources, true)
    })))
}

/// Fetch: every covered resource (no ADS rule, no returned state).
pub(crate) fn fetch(req: &Req, view: &TypeView) -> Response {
    let resources: Vec<_> = req.scope(view).into_iter().cloned().collect();
    let next_state = resources.iter().map(|r| (r.shared_name().clone(), r.version().clone())).collect();
    Response::new(ResponseKind::Sotw, false, view.version.to_string(), req.type_url.to_string(), resources, Vec::new(), next_state)
}

/// Delta: resources whose version differs from the stream's, and removals
/// (wildcard: known names no longer in the snapshot; explicit: subscribed
/// known names no longer in it). Answered only when either is non-empty, or
/// for the first wildcard request. `next_state` is the version map the
/// stream keeps (unsubscribed names drop out of it).
///
/// A watch opened after the stream's previous answer, asking the same, on
/// a set edited from the one that answer was computed against (see
/// `TypeSet::edits_since`) looks at the edited names only: its cost
/// follows what changed, not the type's size.
pub(crate) fn delta(req: &Req, view: &TypeView) -> Option<Response> {
    if let Known::After(prev) = &req.known {
        if let (Some((basis, wildcard, names)), Some(set)) = (prev.delta_basis(), &view.set) {
            if req.same_subscription(wildcard, names) {
                if let Some(edits) = set.edits_since(basis) {
                    return delta_edits(req, view, prev, edits);
                }
            }
        }
    }
    delta_full(req, view)
}

fn answer(req: &Req, view: &TypeView, resources: Vec<Arc<Resource>>, removed: Vec<String>, next_state: NextState) -> Option<Response> {
    if resources.is_empty() && removed.is_empty() && !(req.wildcard && req.first) {
        return None;
    }
    let r = Response::new(ResponseKind::Delta, false, view.version.to_string(), req.type_url.to_string(), resources, removed, next_state);
    Some(r.with_delta_basis(req, view.set.clone(), matches!(req.known, Known::After(_))))
}

/// The fast path of `delta`: the previous answer's next state, updated by
/// the edited names alone.
fn delta_edits(req: &Req, view: &TypeView, prev: &Response, edits: &[Arc<str>]) -> Option<Response> {
    #[cfg(test)]
    EDIT_PATH_USED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut names: Vec<&Arc<str>> = edits.iter().filter(|n| req.wildcard || req.names.contains(&***n)).collect();
    names.sort_unstable();
    names.dedup();
    let mut next = prev.next_state.clone();
    let (mut resources, mut removed) = (Vec::new(), Vec::new());
    for name in names {
        match view.get(name) {
            Some(r) => {
                if next.get(&**name).is_none_or(|v| **v != **r.version()) {
                    next.insert(r.shared_name().clone(), r.version().clone());
                    resources.push(r.clone());
                }
            }
            None => {
                if next.remove(&**name).is_some() {
                    removed.push(name.to_string());
                }
            }
        }
    }
    answer(req, view, resources, removed, next)
}

/// How often `delta_edits` ran (tests check the fast path is taken).
#[cfg(test)]
pub(crate) static EDIT_PATH_USED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `delta` by a walk of every covered resource.
fn delta_full(req: &Req, view: &TypeView) -> Option<Response> {
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    let mut next = NextState::new();
    if req.wildcard {
        let mut known_seen = 0;
        for (name, r) in view.resources() {
            match req.known.get(name) {
                Some(v) => {
                    known_seen += 1;
                    if *v != **r.version() {
                        resources.push(r.clone());
                    }
                }
                None => resources.push(r.clone()),
            }
            next.insert(name.clone(), r.version().clone());
        }
        // Only when some known name was not seen is any of them gone.
        if known_seen < req.known.len() {
            removed.extend(req.known.names().filter(|n| view.get(n).is_none()).map(str::to_string));
            removed.sort();
        }
    } else {
        let changed = |r: &Arc<Resource>| req.known.get(r.name()).is_none_or(|v| *v != **r.version());
        for name in &req.names {
            match view.get(name) {
                Some(r) => {
                    next.insert(r.shared_name().clone(), r.version().clone());
                    if changed(r) {
                        resources.push(r.clone());
                    }
                }
                None if req.known.contains(name) => removed.push(name.clone()),
                None => {}
            }
        }
    }
    answer(req, view, resources, removed, next)
}
