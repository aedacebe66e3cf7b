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
use serde_json::{Map, Value};
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

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| invalid(format!("{what} must be a JSON object")))
}

fn string<'a>(value: &'a Value, what: &str) -> Result<&'a str> {
    value.as_str().ok_or_else(|| invalid(format!("{what} must be a string")))
}

fn number(value: &Value, what: &str, max: u64) -> Result<u64> {
    value.as_u64().filter(|n| *n <= max).ok_or_else(|| invalid(format!("{what} must be an integer 0..={max}")))
}

/// Attributes as compact JSON text; an object (or absent: `{}`).
pub fn attrs_text(value: Option<&Value>, what: &str) -> Result<Arc<str>> {
    match value {
        None | Some(Value::Null) => Ok("{}".into()),
        Some(v @ Value::Object(_)) => Ok(v.to_string().into()),
        Some(_) => Err(invalid(format!("{what} must be a JSON object"))),
    }
}

fn parse_routes(value: &Value, what: &str) -> Result<Vec<StaticRoute>> {
    let list = value.as_array().ok_or_else(|| invalid(format!("{what} must be an array")))?;
    let mut seen = HashSet::new();
    let mut routes = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let what = format!("{what}[{i}]");
        let map = object(item, &what)?;
        let mut prefix = None;
        let mut attrs = None;
        for (key, v) in map {
            match key.as_str() {
                "prefix" => prefix = Some(Prefix::parse(string(v, &format!("{what}.prefix"))?).map_err(|e| invalid(format!("{what}: {e}")))?),
                "attrs" => attrs = Some(v),
                _ => return Err(invalid(format!("{what}: unknown field {key:?}"))),
            }
        }
        let prefix = prefix.ok_or_else(|| invalid(format!("{what}: prefix is missing")))?;
        if !seen.insert(prefix) {
            return Err(invalid(format!("{what}: prefix {prefix} appears twice")));
        }
        routes.push(StaticRoute { prefix, attrs: attrs_text(attrs, &format!("{what}.attrs"))? });
    }
    Ok(routes)
}

fn parse_protocol(value: &Value, i: usize, tables: &[Arc<str>], known_kind: &dyn Fn(&str) -> bool) -> Result<ProtoConfig> {
    let what = format!("protocols[{i}]");
    let map = object(value, &what)?;
    let name = string(map.get("name").ok_or_else(|| invalid(format!("{what}: name is missing")))?, &format!("{what}.name"))?;
    check_name("protocol name", name)?;
    let what = format!("protocol {name:?}");
    let kind = string(map.get("kind").ok_or_else(|| invalid(format!("{what}: kind is missing")))?, &format!("{what}.kind"))?;
    if !known_kind(kind) {
        return Err(invalid(format!("{what}: unknown kind {kind:?} (register it with mr_runtime_register_kind first)")));
    }
    let mut proto = ProtoConfig {
        name: name.into(),
        kind: kind.into(),
        disabled: false,
        preference: default_preference(kind),
        table: tables[0].clone(),
        routes: Vec::new(),
        config: "null".into(),
    };
    for (key, v) in map {
        match key.as_str() {
            "name" | "kind" => {}
            "disabled" => proto.disabled = v.as_bool().ok_or_else(|| invalid(format!("{what}: disabled must be true or false")))?,
            "preference" => proto.preference = number(v, &format!("{what}: preference"), u32::MAX as u64)? as u32,
            "table" => {
                let t = string(v, &format!("{what}: table"))?;
                proto.table = tables.iter().find(|x| &***x == t).cloned().ok_or_else(|| invalid(format!("{what}: table {t:?} is not in tables")))?;
            }
            "routes" if kind == STATIC_KIND => proto.routes = parse_routes(v, &format!("{what}: routes"))?,
            "config" => proto.config = v.to_string().into(),
            _ => return Err(invalid(format!("{what}: unknown field {key:?}"))),
        }
    }
    Ok(proto)
}

/// Parses and validates a whole configuration. `known_kind` says which
/// kinds exist. MR_PARSE for JSON syntax, MR_INVALID_ARGUMENT (naming the
/// offending protocol and field) for everything else.
pub fn parse(json: &str, known_kind: &dyn Fn(&str) -> bool) -> Result<Config> {
    let root: Value = serde_json::from_str(json).map_err(|e| Error::new(ErrorKind::Parse, format!("config is not JSON: {e}")))?;
    let map = object(&root, "config")?;
    let mut config = Config::default();
    let mut protocols = &Value::Null;
    for (key, v) in map {
        match key.as_str() {
            "protocols" => protocols = v,
            "tables" => {
                let list = v.as_array().ok_or_else(|| invalid("tables must be an array of names".into()))?;
                for t in list {
                    let t = string(t, "tables[]")?;
                    check_name("table name", t)?;
                    if config.tables.iter().any(|x| &**x == t) {
                        return Err(invalid(format!("table {t:?} appears twice")));
                    }
                    config.tables.push(t.into());
                }
                if config.tables.is_empty() {
                    return Err(invalid("tables must name at least one table".into()));
                }
            }
            "restart_limit" => {
                let m = object(v, "restart_limit")?;
                for (k, x) in m {
                    match k.as_str() {
                        "count" => config.restart_limit.count = number(x, "restart_limit.count", u32::MAX as u64)? as u32,
                        "seconds" => config.restart_limit.window = Duration::from_secs(number(x, "restart_limit.seconds", 1 << 32)?),
                        _ => return Err(invalid(format!("restart_limit: unknown field {k:?}"))),
                    }
                }
            }
            _ => return Err(invalid(format!("config: unknown field {key:?}"))),
        }
    }
    if config.tables.is_empty() {
        config.tables.push("master".into());
    }
    let list = match protocols {
        Value::Null => &Vec::new(),
        Value::Array(list) => list,
        _ => return Err(invalid("protocols must be an array".into())),
    };
    let mut names = HashSet::new();
    for (i, item) in list.iter().enumerate() {
        let proto = parse_protocol(item, i, &config.tables, known_kind)?;
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

    fn known(kind: &str) -> bool {
        matches!(kind, "static" | "netmap" | "host")
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
            (r#"{"protocols":[{"name":"a","kind":"nope"}]}"#, ErrorKind::InvalidArgument, "unknown kind"),
            (r#"{"protocols":[{"name":"a","kind":"host"},{"name":"a","kind":"host"}]}"#, ErrorKind::InvalidArgument, "twice"),
            (r#"{"protocols":[{"name":"a*","kind":"host"}]}"#, ErrorKind::InvalidArgument, "valid name"),
            (r#"{"protocols":[{"kind":"host"}]}"#, ErrorKind::InvalidArgument, "name is missing"),
            (r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"10.0.0.1/8"}]}]}"#, ErrorKind::InvalidArgument, "host bits"),
            (r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"1.0.0.0/8"},{"prefix":"1.0.0.0/8"}]}]}"#, ErrorKind::InvalidArgument, "twice"),
            (r#"{"protocols":[{"name":"s","kind":"host","routes":[]}]}"#, ErrorKind::InvalidArgument, "unknown field"),
            (r#"{"protocols":[{"name":"s","kind":"host","table":"x"}]}"#, ErrorKind::InvalidArgument, "not in tables"),
            (r#"{"protocols":[{"name":"s","kind":"host","preference":-1}]}"#, ErrorKind::InvalidArgument, "preference"),
            (r#"{"tables":[]}"#, ErrorKind::InvalidArgument, "at least one"),
            (r#"{"colour":1}"#, ErrorKind::InvalidArgument, "unknown field"),
        ] {
            let e = parse(json, &known).unwrap_err();
            assert_eq!(e.kind, kind, "{json}");
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
    }
}
