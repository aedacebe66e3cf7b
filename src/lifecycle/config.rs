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
use std::collections::HashSet;
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

fn parse_protocol(raw: &RawValue, i: usize, tables: &[Arc<str>], kinds: &dyn Fn(&str) -> Option<Arc<str>>) -> Result<ProtoConfig> {
    let p: RawProto = object(raw.get(), &|| format!("protocols[{i}]"))?;
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
    // One pass: syntax errors are MR_PARSE, shape errors MR_INVALID_ARGUMENT.
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
    let list = raw.protocols.unwrap_or_default();
    let mut names = HashSet::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        let proto = parse_protocol(item, i, &config.tables, kinds)?;
        if !names.insert(proto.name.clone()) {
            return Err(invalid(format!("protocol name {:?} appears twice", proto.name)));
        }
        config.protocols.push(Arc::new(proto));
    }
    Ok(config)
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
}
