//! The configuration a commit installs, parsed and validated as a whole
//! before anything changes.
//!
//! ```json
//! {"tables": ["master"],
//!  "restart_limit": {"count": 5, "seconds": 60},
//!  "protocols": [
//!    {"name": "static1", "kind": "static", "preference": 200, "table": "master",
//!     "routes": [{"prefix": "198.18.0.0/24", "attrs": {"via": "lan"}}]},
//!    {"name": "nm", "kind": "netmap"},
//!    {"name": "h1", "kind": "myhost", "disabled": true, "config": {"any": "json"}}]}
//! ```
//!
//! Every field but `protocols[].name` and `protocols[].kind` is optional:
//! `tables` defaults to `["master"]`, `table` to the first table,
//! `preference` to the kind's default (static 200, netmap 150, host kinds
//! 100), `disabled` to false, `restart_limit` to 5 failures in 60 s
//! (`count` 0 = no limit). `routes` belongs to `static` only; `config` is
//! passed verbatim (as JSON text) to a host kind's `start` and
//! `reconfigure`. Unknown fields are errors, so typos do not pass silently.

use super::prefix::Prefix;
use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

pub const STATIC_KIND: &str = "static";
pub const NETMAP_KIND: &str = "netmap";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: Prefix,
    pub attrs: Arc<str>,
}

/// One protocol instance's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoConfig {
    pub name: Arc<str>,
    pub kind: Arc<str>,
    pub disabled: bool,
    pub preference: u32,
    pub table: Arc<str>,
    pub routes: Vec<StaticRoute>,
    /// The `config` member as JSON text (`null` when absent).
    pub config: Arc<str>,
}

impl ProtoConfig {
    /// Whether the two differ only in what the protocol itself can take
    /// in place (its own `config` or static `routes`): the runtime then
    /// asks the protocol instead of restarting it.
    pub fn same_core(&self, other: &ProtoConfig) -> bool {
        self.kind == other.kind && self.preference == other.preference && self.table == other.table && self.disabled == other.disabled
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    pub count: u32,
    pub window: Duration,
}

impl Default for RestartLimit {
    fn default() -> Self {
        RestartLimit { count: 5, window: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub tables: Vec<Arc<str>>,
    pub protocols: Vec<Arc<ProtoConfig>>,
    pub restart_limit: RestartLimit,
}

fn invalid(message: String) -> Error {
    Error::invalid(message)
}

/// Protocol and table names: 1..=64 of `A-Z a-z 0-9 _ - . :`, so they can
/// never contain a glob character or need quoting.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{what} {name:?} is not a valid name (1-64 of A-Z a-z 0-9 _ - . :)")))
    }
}

fn default_preference(kind: &str) -> u32 {
    match kind {
        STATIC_KIND => 200,
        NETMAP_KIND => 150,
        _ => 100,
    }
}

/// Attributes as JSON text: an object, kept as written (absent or null: `{}`).
pub fn attrs_text(raw: Option<&RawValue>, what: &dyn Fn() -> String) -> Result<Arc<str>> {
    match raw.map(|r| r.get().trim()) {
        None | Some("null") => Ok("{}".into()),
        Some(text) if text.starts_with('{') => Ok(text.into()),
        Some(_) => Err(invalid(format!("{} must be a JSON object", what()))),
    }
}

// The wire shapes: borrowed from the input where possible, so that a large
// config costs one pass and few allocations; unknown fields are errors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig<'a> {
    #[serde(borrow, default)]
    protocols: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    tables: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    restart_limit: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    count: Option<u32>,
    seconds: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProto<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    disabled: bool,
    preference: Option<u32>,
    #[serde(borrow, default)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    routes: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    config: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute<'a> {
    #[serde(borrow)]
    prefix: Cow<'a, str>,
    #[serde(borrow, default)]
    attrs: Option<&'a RawValue>,
}

/// A JSON object into `T` (serde would also take an array for a struct).
fn object<'a, T: Deserialize<'a>>(raw: &'a str, what: &dyn Fn() -> String) -> Result<T> {
    if !raw.trim_start().starts_with('{') {
        return Err(invalid(format!("{} must be a JSON object", what())));
    }
    serde_json::from_str(raw).map_err(|e| invalid(format!("{}: {e}", what())))
}

fn parse_protocol(raw: &str, i: usize, tables: &[Arc<str>], kinds: &dyn Fn(&str) -> Option<Arc<str>>) -> Result<ProtoConfig> {
    let p: RawProto = object(raw, &|| format!("protocols[{i}]"))?;
    check_name("protocol name", &p.name)?;
    let name = &*p.name;
    let kind = kinds(&p.kind).ok_or_else(|| {
        invalid(format!("protocol {name:?}: unknown kind {:?} (register it with mr_runtime_register_kind first)", p.kind))
    })?;
    let table = match &p.table {
        None => tables[0].clone(),
        Some(t) => tables.iter().find(|x| ***x == **t).cloned().ok_or_else(|| invalid(format!("protocol {name:?}: table {t:?} is not in tables")))?,
    };
    let routes = match p.routes {
        None => Vec::new(),
        Some(_) if &*kind != STATIC_KIND => return Err(invalid(format!("protocol {name:?}: routes belong to kind static only"))),
        Some(list) => {
            let mut seen = HashSet::with_capacity(list.len());
            let mut routes = Vec::with_capacity(list.len());
            for (j, r) in list.into_iter().enumerate() {
                let r: RawRoute = object(r.get(), &|| format!("protocol {name:?}: routes[{j}]"))?;
                let prefix = Prefix::parse(&r.prefix).map_err(|e| invalid(format!("protocol {name:?}: routes[{j}]: {e}")))?;
                if !seen.insert(prefix) {
                    return Err(invalid(format!("protocol {name:?}: routes[{j}]: prefix {prefix} appears twice")));
                }
                let attrs = attrs_text(r.attrs, &|| format!("protocol {name:?}: routes[{j}].attrs"))?;
                routes.push(StaticRoute { prefix, attrs });
            }
            routes
        }
    };
    Ok(ProtoConfig {
        name: name.into(),
        preference: p.preference.unwrap_or_else(|| default_preference(&kind)),
        kind,
        disabled: p.disabled,
        table,
        routes,
        config: p.config.map(|c| c.get().trim()).unwrap_or("null").into(),
    })
}

/// Parses and validates a whole configuration. `kinds` maps a kind name to
/// its shared name (None: unknown). MR_PARSE for JSON syntax,
/// MR_INVALID_ARGUMENT (naming the offending protocol and field) for
/// everything else.
pub fn parse(json: &str, kinds: &dyn Fn(&str) -> Option<Arc<str>>) -> Result<Config> {
    crate::json::check_depth(json.as_bytes(), "config")?;
    let (mut config, list) = parse_top(json)?;
    config.protocols = parse_all(&list, &config.tables, kinds)?;
    Ok(config)
}

/// Every protocol parsed and validated, names checked for duplicates.
fn parse_all(list: &[&RawValue], tables: &[Arc<str>], kinds: &dyn Fn(&str) -> Option<Arc<str>>) -> Result<Vec<Arc<ProtoConfig>>> {
    let mut names = HashSet::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let proto = parse_protocol(item.get(), i, tables, kinds)?;
        if !names.insert(proto.name.clone()) {
            return Err(duplicate(&proto.name));
        }
        out.push(Arc::new(proto));
    }
    Ok(out)
}

fn duplicate(name: &str) -> Error {
    invalid(format!("protocol name {name:?} appears twice"))
}

/// The top level: tables and restart limit parsed, protocols left as raw
/// JSON (one syntax-checking pass over the text).
fn parse_top(json: &str) -> Result<(Config, Vec<&RawValue>)> {
    // Syntax errors are MR_PARSE, shape errors MR_INVALID_ARGUMENT.
    let raw: RawConfig = serde_json::from_str(json).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::new(ErrorKind::Parse, format!("config is not JSON: {e}"))
        } else {
            invalid(format!("config: {e}"))
        }
    })?;
    if !json.trim_start().starts_with('{') {
        return Err(invalid("config must be a JSON object".into()));
    }
    let mut config = Config::default();
    for t in raw.tables.unwrap_or_default() {
        check_name("table name", &t)?;
        if config.tables.iter().any(|x| **x == *t) {
            return Err(invalid(format!("table {t:?} appears twice")));
        }
        config.tables.push(t.as_ref().into());
    }
    if config.tables.is_empty() {
        config.tables.push("master".into());
    }
    if let Some(limit) = raw.restart_limit {
        let limit: RawLimit = object(limit.get(), &|| "restart_limit".to_string())?;
        config.restart_limit.count = limit.count.unwrap_or(config.restart_limit.count);
        config.restart_limit.window = limit.seconds.map(|s| Duration::from_secs(s as u64)).unwrap_or(config.restart_limit.window);
    }
    Ok((config, raw.protocols.unwrap_or_default()))
}

/// What the last successful commit applied, kept so that the next one can
/// take every protocol whose JSON text is unchanged as it is, without
/// parsing or comparing it again. Its protocols are `Config::protocols` of
/// that commit, in the same order as `spans`.
#[derive(Default)]
pub struct Applied {
    /// The whole config text (None before the first commit).
    text: Option<Arc<str>>,
    /// Each protocol's JSON in `text`.
    spans: Vec<Range<usize>>,
    /// The protocol names.
    names: HashSet<Arc<str>>,
}

/// What a commit changes, worked out before anything is changed.
pub struct Plan {
    /// The whole new configuration.
    pub config: Config,
    /// False: only `changed` and `dropped` need looking at, every other
    /// protocol is exactly what the previous commit applied.
    pub incremental: bool,
    /// Protocols whose text is new or changed (parsed and validated now),
    /// in config order. Everything when not incremental.
    pub changed: Vec<Arc<ProtoConfig>>,
    /// Names of previously applied protocols that are not in this config
    /// (when incremental).
    pub dropped: Vec<Arc<str>>,
    /// The whole text is the previous one (soft commits only): nothing
    /// changes at all, and `config` is not filled in.
    pub same_text: bool,
    /// How many protocol texts were scanned (the rest were known unchanged
    /// from a byte comparison with the applied text).
    pub scanned: usize,
    /// Names of previously applied protocols whose text is not kept
    /// (dropped, or replaced by a changed protocol of the same name).
    not_kept: Vec<Arc<str>>,
    text: Arc<str>,
    spans: Vec<Range<usize>>,
}

impl Applied {
    /// Records `plan` (whose `config` has been taken) as applied.
    pub fn record(&mut self, plan: Plan, config: &Config) {
        if plan.same_text {
            return;
        }
        if plan.incremental {
            for name in &plan.not_kept {
                self.names.remove(name);
            }
            for p in &plan.changed {
                self.names.insert(p.name.clone());
            }
        } else {
            self.names = config.protocols.iter().map(|p| p.name.clone()).collect();
        }
        self.text = Some(plan.text);
        self.spans = plan.spans;
    }
}

/// Parses and validates `json` against what the previous commit applied
/// (`prev`, whose protocols are `prev_config.protocols`): a protocol whose
/// JSON text is byte-for-byte the one applied before, with the same
/// tables, is taken as it was (it was validated then, kinds are never
/// unregistered, and its result depends only on its text and the tables);
/// only new or changed texts are parsed. Duplicate names are still found
/// across the whole config. Errors as for `parse`.
///
/// Two ways to find the unchanged texts, the first that applies wins:
/// * `window`: the new text is compared byte-wise with the previous one;
///   when the difference lies inside the protocols array, only the
///   protocols in the differing window are scanned, and the common head
///   and tail are known valid (same bytes in the same parser state as
///   before). Cost per unchanged protocol: a memory comparison.
/// * otherwise one syntax pass splits the config into per-protocol texts,
///   compared with the applied ones.
pub fn plan(json: &str, kinds: &dyn Fn(&str) -> Option<Arc<str>>, prev: &Applied, prev_config: &Config, hard: bool) -> Result<Plan> {
    crate::json::check_depth(json.as_bytes(), "config")?;
    if let Some(t) = &prev.text {
        if !hard && **t == *json {
            return Ok(Plan {
                config: Config::default(),
                incremental: true,
                changed: Vec::new(),
                dropped: Vec::new(),
                same_text: true,
                scanned: 0,
                not_kept: Vec::new(),
                text: t.clone(),
                spans: Vec::new(),
            });
        }
        if prev.spans.len() == prev_config.protocols.len() {
            if let Some(Ok(plan)) = window(json, kinds, t, prev, prev_config) {
                return Ok(plan);
            }
        }
    }
    let (mut config, list) = parse_top(json)?;
    let base = json.as_ptr() as usize;
    let spans: Vec<Range<usize>> = list
        .iter()
        .map(|r| {
            let start = r.get().as_ptr() as usize - base;
            start..start + r.get().len()
        })
        .collect();
    let prev_text = match &prev.text {
        Some(t) if config.tables == prev_config.tables && prev.spans.len() == prev_config.protocols.len() => t,
        _ => {
            config.protocols = parse_all(&list, &config.tables, kinds)?;
            let changed = config.protocols.clone();
            let scanned = spans.len();
            return Ok(Plan { config, incremental: false, changed, dropped: Vec::new(), same_text: false, scanned, not_kept: Vec::new(), text: json.into(), spans });
        }
    };
    let old = |j: usize| &prev_text[prev.spans[j].clone()];
    let (n, m) = (list.len(), prev.spans.len());
    // Same texts at the start and at the end (the usual edit touches a few
    // protocols in the middle), then match the rest by text.
    let mut head = 0;
    while head < n.min(m) && list[head].get() == old(head) {
        head += 1;
    }
    let mut tail = 0;
    while tail < n.min(m) - head && list[n - 1 - tail].get() == old(m - 1 - tail) {
        tail += 1;
    }
    let mut plan = reuse(json, config, kinds, prev, prev_config, prev_text, head..n - tail, head..m - tail, spans)?;
    plan.scanned = n;
    Ok(plan)
}

/// The common part of both ways: protocols `..new_mid.start` and
/// `new_mid.end..` of the new config (`spans` into `json`) are
/// `..prev_mid.start` and `prev_mid.end..` of the applied one; those in
/// between are matched by text or parsed.
#[allow(clippy::too_many_arguments)]
fn reuse(
    json: &str,
    mut config: Config,
    kinds: &dyn Fn(&str) -> Option<Arc<str>>,
    prev: &Applied,
    prev_config: &Config,
    prev_text: &str,
    new_mid: Range<usize>,
    prev_mid: Range<usize>,
    spans: Vec<Range<usize>>,
) -> Result<Plan> {
    let old = |j: usize| &prev_text[prev.spans[j].clone()];
    let by_text: HashMap<&str, usize> = prev_mid.clone().map(|j| (old(j), j)).collect();
    let mut reused = vec![false; prev_mid.len()];
    let mut protocols = Vec::with_capacity(spans.len());
    protocols.extend_from_slice(&prev_config.protocols[..prev_mid.start]);
    let mut changed = Vec::new();
    let new_mid_len = new_mid.len();
    for i in new_mid {
        let raw = &json[spans[i].clone()];
        if let Some(&j) = by_text.get(raw) {
            let p = &prev_config.protocols[j];
            if std::mem::replace(&mut reused[j - prev_mid.start], true) {
                return Err(duplicate(&p.name));
            }
            protocols.push(p.clone());
        } else {
            let p = Arc::new(parse_protocol(raw, i, &config.tables, kinds)?);
            protocols.push(p.clone());
            changed.push(p);
        }
    }
    protocols.extend_from_slice(&prev_config.protocols[prev_mid.end..]);
    // A changed protocol's name may repeat another changed one, or a kept
    // one: every applied name but those of the protocols not kept.
    let not_kept: Vec<Arc<str>> =
        prev_mid.clone().filter(|j| !reused[j - prev_mid.start]).map(|j| prev_config.protocols[j].name.clone()).collect();
    let not_kept_set: HashSet<&str> = not_kept.iter().map(|n| &**n).collect();
    let mut changed_names = HashSet::with_capacity(changed.len());
    for p in &changed {
        if !changed_names.insert(&*p.name) || (prev.names.contains(&*p.name) && !not_kept_set.contains(&*p.name)) {
            return Err(duplicate(&p.name));
        }
    }
    let dropped = not_kept.iter().filter(|n| !changed_names.contains(&***n)).cloned().collect();
    config.protocols = protocols;
    let scanned = new_mid_len;
    Ok(Plan { config, incremental: true, changed, dropped, same_text: false, scanned, not_kept, text: json.into(), spans })
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 64 <= n && a[i..i + 64] == b[i..i + 64] {
        i += 64;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + 64 <= n && a[n - i - 64..n - i] == b[n - i - 64..n - i] {
        i += 64;
    }
    while i < n && a[n - 1 - i] == b[n - 1 - i] {
        i += 1;
    }
    i
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// The byte-window way of `plan`; None (or an error, which the caller
/// re-derives the ordinary way) when the difference is not confined to the
/// protocols array.
///
/// Why it is sound: the new text equals the applied one up to byte `l`.
/// Scanning starts after the last applied protocol that ends within `l`
/// (or after the array's `[`), in the same parser state as the applied
/// text had there. Protocols are then scanned one at a time, until the
/// scan stands just after a protocol at a point from which the rest of the
/// new text equals the rest of the applied text, and the applied text had
/// a protocol ending at the corresponding point: from there on both texts
/// are the same bytes read in the same state, and the applied one was
/// valid, so the new one is too and holds the same protocols (and the same
/// top-level fields) as the applied one did after that point.
fn window(json: &str, kinds: &dyn Fn(&str) -> Option<Arc<str>>, prev_text: &str, prev: &Applied, prev_config: &Config) -> Option<Result<Plan>> {
    let spans = &prev.spans;
    let m = spans.len();
    if m == 0 {
        return None;
    }
    let (a, b) = (prev_text.as_bytes(), json.as_bytes());
    let l = common_prefix(a, b);
    let same_tail = common_suffix(a, b);
    let head = spans.partition_point(|r| r.end <= l);
    let (mut pos, mut first) = if head > 0 {
        (spans[head - 1].end, false)
    } else {
        let before = prev_text[..spans[0].start].trim_end_matches([' ', '\t', '\n', '\r']);
        if !before.ends_with('[') || before.len() > l {
            return None;
        }
        (before.len(), true)
    };
    let mut mid: Vec<Range<usize>> = Vec::new();
    let synced = loop {
        if !first && b.len() - pos <= same_tail {
            // The rest is the same bytes: does the applied text have a
            // protocol ending at the same point (at or after the head)?
            let q = (pos + a.len()).checked_sub(b.len())?;
            if let Ok(k) = spans.binary_search_by(|r| r.end.cmp(&q)) {
                if k + 1 >= head {
                    break k + 1;
                }
            }
        }
        pos = skip_ws(b, pos);
        match b.get(pos) {
            Some(b',') if !first => pos += 1,
            _ if first => {}
            _ => return None,
        }
        let rest = json.get(pos..)?;
        let raw: &RawValue = serde_json::Deserializer::from_str(rest).into_iter::<&RawValue>().next()?.ok()?;
        let start = raw.get().as_ptr() as usize - json.as_ptr() as usize;
        pos = start + raw.get().len();
        mid.push(start..pos);
        first = false;
    };
    // New spans: the head as it was, the window, the tail shifted.
    let mut new_spans = Vec::with_capacity(head + mid.len() + (m - synced));
    new_spans.extend_from_slice(&spans[..head]);
    let mid_range = head..head + mid.len();
    new_spans.extend(mid);
    new_spans.extend(spans[synced..].iter().map(|r| (r.start + b.len() - a.len())..(r.end + b.len() - a.len())));
    let config = Config { tables: prev_config.tables.clone(), protocols: Vec::new(), restart_limit: prev_config.restart_limit };
    Some(reuse(json, config, kinds, prev, prev_config, prev_text, mid_range, head..synced, new_spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(kind: &str) -> Option<Arc<str>> {
        matches!(kind, "static" | "netmap" | "host").then(|| kind.into())
    }

    #[test]
    fn full_config_parses_with_defaults() {
        let c = parse(
            r#"{"tables":["master","t2"],"restart_limit":{"count":3,"seconds":10},
               "protocols":[{"name":"s1","kind":"static","routes":[{"prefix":"10.0.0.0/8","attrs":{"a":1}},{"prefix":"fd00::/8"}]},
                            {"name":"nm","kind":"netmap","table":"t2"},
                            {"name":"h","kind":"host","disabled":true,"preference":7,"config":{"x":[1,2]}}]}"#,
            &known,
        )
        .unwrap();
        assert_eq!(c.restart_limit, RestartLimit { count: 3, window: Duration::from_secs(10) });
        assert_eq!(c.protocols.len(), 3);
        let s = &c.protocols[0];
        assert_eq!((s.preference, &*s.table, s.routes.len(), &*s.routes[0].attrs, &*s.routes[1].attrs), (200, "master", 2, r#"{"a":1}"#, "{}"));
        assert_eq!((c.protocols[1].preference, &*c.protocols[1].table), (150, "t2"));
        let h = &c.protocols[2];
        assert_eq!((h.disabled, h.preference, &*h.config), (true, 7, r#"{"x":[1,2]}"#));
        let empty = parse("{}", &known).unwrap();
        assert_eq!((empty.tables.len(), empty.protocols.len()), (1, 0));
    }

    #[test]
    fn errors_name_the_problem() {
        for (json, kind, needle) in [
            ("{", ErrorKind::Parse, "not JSON"),
            ("[]", ErrorKind::InvalidArgument, "object"),
            (r#"{"protocols":[["a","host"]]}"#, ErrorKind::InvalidArgument, "protocols[0] must be a JSON object"),
            (r#"{"restart_limit":[1,2]}"#, ErrorKind::InvalidArgument, "restart_limit must be"),
            (r#"{"protocols":[{"name":"s","kind":"static","routes":[["1.0.0.0/8"]]}]}"#, ErrorKind::InvalidArgument, "routes[0] must be"),
            (r#"{"protocols":[{"name":"a","kind":"nope"}]}"#, ErrorKind::InvalidArgument, "unknown kind"),
            (r#"{"protocols":[{"name":"a","kind":"host"},{"name":"a","kind":"host"}]}"#, ErrorKind::InvalidArgument, "twice"),
            (r#"{"protocols":[{"name":"a*","kind":"host"}]}"#, ErrorKind::InvalidArgument, "valid name"),
            (r#"{"protocols":[{"kind":"host"}]}"#, ErrorKind::InvalidArgument, "protocols[0]: missing field `name`"),
            (r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"10.0.0.1/8"}]}]}"#, ErrorKind::InvalidArgument, "host bits"),
            (r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"1.0.0.0/8"},{"prefix":"1.0.0.0/8"}]}]}"#, ErrorKind::InvalidArgument, "twice"),
            (r#"{"protocols":[{"name":"s","kind":"host","routes":[]}]}"#, ErrorKind::InvalidArgument, "static only"),
            (r#"{"protocols":[{"name":"s","kind":"host","colour":1}]}"#, ErrorKind::InvalidArgument, "unknown field `colour`"),
            (r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"1.0.0.0/8","attrs":[1]}]}]}"#, ErrorKind::InvalidArgument, "attrs must be"),
            (r#"{"protocols":[{"name":"s","kind":"host","table":"x"}]}"#, ErrorKind::InvalidArgument, "not in tables"),
            (r#"{"protocols":[{"name":"s","kind":"host","preference":-1}]}"#, ErrorKind::InvalidArgument, "protocols[0]"),
            (r#"{"colour":1}"#, ErrorKind::InvalidArgument, "unknown field"),
        ] {
            let e = parse(json, &known).unwrap_err();
            assert_eq!(e.kind, kind, "{json}");
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
    }

    thread_local! {
        static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Commits `json` on top of `state` both ways: the incremental plan must
    /// give exactly what a full parse gives (or the same kind of error, and
    /// then leave `state` alone). Returns (changed, dropped) names.
    fn step(state: &mut (Applied, Config), json: &str) -> std::result::Result<(Vec<String>, Vec<String>), ErrorKind> {
        let full = parse(json, &known);
        let inc = plan(json, &known, &state.0, &state.1, false);
        let mut inc = match (full, inc) {
            (Err(f), Err(i)) => {
                assert_eq!(f.kind, i.kind, "{json}: {} vs {}", f.message, i.message);
                return Err(i.kind);
            }
            (Ok(full), Ok(inc)) => {
                if !inc.same_text {
                    assert_eq!(inc.config.protocols, full.protocols, "{json}");
                    assert_eq!((&inc.config.tables, inc.config.restart_limit), (&full.tables, full.restart_limit));
                }
                inc
            }
            (f, i) => panic!("{json}: full {:?} vs incremental {:?}", f.err(), i.err().map(|e| e.message)),
        };
        let names = |v: &[Arc<str>]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let changed = inc.changed.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        let result = (names(&changed), names(&inc.dropped));
        SCANNED.with(|s| s.set(inc.scanned));
        if !inc.same_text {
            let config = std::mem::take(&mut inc.config);
            state.0.record(inc, &config);
            state.1 = config;
        }
        Ok(result)
    }

    fn protos(list: &[(&str, &str)]) -> String {
        let items: Vec<String> = list.iter().map(|(n, c)| format!(r#"{{"name":"{n}","kind":"host","config":{c}}}"#)).collect();
        format!(r#"{{"protocols":[{}]}}"#, items.join(","))
    }

    #[test]
    fn incremental_plan_parses_only_changed_texts_and_agrees_with_a_full_parse() {
        let mut st = (Applied::default(), Config::default());
        let base: Vec<(String, String)> = (0..20).map(|i| (format!("p{i}"), "0".to_string())).collect();
        type Edit<'a> = &'a dyn Fn(&mut Vec<(String, String)>);
        let with = |edit: Edit| {
            let mut v = base.clone();
            edit(&mut v);
            let refs: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            protos(&refs)
        };
        let all: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        assert_eq!(step(&mut st, &with(&|_| {})), Ok((all.clone(), vec![])), "first commit: everything");
        assert_eq!(step(&mut st, &with(&|_| {})), Ok((vec![], vec![])), "same text");
        assert_eq!(step(&mut st, &with(&|v| v[7].1 = "1".into())), Ok((vec!["p7".into()], vec![])), "one changed");
        assert_eq!(SCANNED.with(|s| s.get()), 1, "only the changed text was scanned");
        assert_eq!(step(&mut st, &with(&|_| {})), Ok((vec!["p7".into()], vec![])), "and back");
        assert_eq!(step(&mut st, &with(&|v| v[0].1 = "2".into())), Ok((vec!["p0".into()], vec![])), "first one");
        assert_eq!(step(&mut st, &with(&|v| v[19].1 = "2".into())), Ok((vec!["p0".into(), "p19".into()], vec![])), "last one, first back");
        assert_eq!(step(&mut st, &with(&|v| drop(v.remove(5)))), Ok((vec!["p19".into()], vec!["p5".into()])), "removed, last back");
        assert!(SCANNED.with(|s| s.get()) < 20, "a window, not the whole config");
        assert_eq!(step(&mut st, &with(&|v| v.insert(5, ("new".into(), "0".into())))), Ok((vec!["new".into(), "p5".into()], vec![])), "inserted");
        assert_eq!(step(&mut st, &with(&|v| v.swap(2, 15))), Ok((vec![], vec!["new".into()])), "reordered: nothing to parse");
        assert_eq!(step(&mut st, &with(&|v| v[3].0 = "renamed".into())), Ok((vec!["renamed".into()], vec!["p3".into()])), "renamed");
        // Duplicates: a changed protocol taking a kept one's name, the same
        // text twice, two changed ones with one name. Nothing is recorded.
        assert_eq!(step(&mut st, &with(&|v| v[3].0 = "p4".into())), Err(ErrorKind::InvalidArgument));
        assert_eq!(step(&mut st, &with(&|v| v[3] = v[10].clone())), Err(ErrorKind::InvalidArgument));
        assert_eq!(step(&mut st, &with(&|v| v.push(v[3].clone()))), Err(ErrorKind::InvalidArgument));
        assert_eq!(step(&mut st, &with(&|v| v.extend([("x".into(), "1".into()), ("x".into(), "2".into())]))), Err(ErrorKind::InvalidArgument));
        assert_eq!(step(&mut st, &with(&|v| v[9].1 = "{".into())), Err(ErrorKind::Parse));
        assert_eq!(step(&mut st, &with(&|v| v[9].1 = "1,\"colour\":2".into())), Err(ErrorKind::InvalidArgument));
        // Two texts trading names: p4's text is kept (it only moved), p3 is new.
        assert_eq!(step(&mut st, &with(&|v| v[3].0 = "p4".into())).map_err(|_| ()), Err(()));
        let swapped = step(&mut st, &with(&|v| {
            v[3].0 = "p4".into();
            v[4].0 = "p3".into();
        }));
        assert_eq!(swapped, Ok((vec!["p3".into()], vec!["renamed".into()])));
        // Tables changing makes every protocol be parsed again.
        let refs: Vec<(&str, &str)> = base.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let tabled = protos(&refs).replacen('{', r#"{"tables":["t0"],"#, 1);
        assert_eq!(step(&mut st, &tabled).map(|(c, _)| c.len()), Ok(20));
        assert_eq!(step(&mut st, &tabled.replace(r#""p2","kind":"host""#, r#""p2","kind":"host","table":"nope""#)), Err(ErrorKind::InvalidArgument));
        assert_eq!(step(&mut st, &tabled.replace(r#""p2","kind":"host""#, r#""p2","kind":"nope""#)), Err(ErrorKind::InvalidArgument));
        assert_eq!(step(&mut st, &tabled.replace(r#""p2","kind":"host""#, r#""p2","kind":"host","table":"t0""#)), Ok((vec!["p2".into()], vec![])));
    }

    #[test]
    fn incremental_plan_survives_random_edits() {
        // Byte edits anywhere (inside and outside the protocols array, in
        // strings, between tokens): every result must equal a full parse.
        let texts = [
            r#"{"tables":["master","t"],"protocols":[{"name":"a","kind":"host","config":{"x":"]},{"}},{"name":"b","kind":"static","routes":[{"prefix":"10.0.0.0/8"}]},{"name":"c","kind":"host","table":"t"}],"restart_limit":{"count":1}}"#,
            "{ \"protocols\" : [\n {\"name\":\"a\",\"kind\":\"host\"} ,\n {\"name\":\"b\",\"kind\":\"host\",\"config\":[1,2]},\n{\"name\":\"c\",\"kind\":\"netmap\"}\n ] , \"tables\":[\"m\"] }",
        ];
        let alphabet = b" \n{}[],:\"0a\\xnamekind";
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut ok, mut err) = (0, 0);
        for text in texts {
            let mut st = (Applied::default(), Config::default());
            step(&mut st, text).unwrap();
            let mut current = text.to_string();
            for _ in 0..3000 {
                let mut bytes = current.clone().into_bytes();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % (bytes.len() + 1);
                    match next() % 3 {
                        0 if at < bytes.len() => drop(bytes.remove(at)),
                        1 if at < bytes.len() => bytes[at] = alphabet[next() as usize % alphabet.len()],
                        _ => bytes.insert(at, alphabet[next() as usize % alphabet.len()]),
                    }
                }
                let Ok(edited) = String::from_utf8(bytes) else { continue };
                match step(&mut st, &edited) {
                    Ok(_) => {
                        ok += 1;
                        current = edited;
                    }
                    Err(_) => err += 1,
                }
            }
        }
        eprintln!("random edits: {ok} accepted, {err} rejected");
        assert!(ok > 50 && err > 50, "{ok} accepted, {err} rejected");
    }
}
