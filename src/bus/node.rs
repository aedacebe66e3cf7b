//! A stored `tailcfg.Node`: its JSON text, compact with sorted keys (so two
//! nodes are equal exactly when their texts are), plus the two fields the
//! bus reads on every delta (`User`; the `ID` is the store's key).
//!
//! Memory is the text plus about 100 bytes (two allocations and the map
//! entry), where a parsed `serde_json::Value` tree cost five to six times
//! the text. Encoding a node into a Notify is a copy of its text. Patching
//! one parses it, sets the fields and writes it again: O(size of the node),
//! which the delta pays anyway.

use serde_json::{Map, Value};

/// `Node::user` of a node without an integer `User`.
const NO_USER: i64 = i64::MIN;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// `User`, or `NO_USER` (an i64, not an Option: 8 bytes less per node).
    user: i64,
    json: Box<str>,
}

impl Node {
    /// From a node object `parse::check_node` validated (integer `ID`).
    pub fn from_map(map: &Map<String, Value>) -> Node {
        let user = map.get("User").and_then(Value::as_i64).unwrap_or(NO_USER);
        let json = serde_json::to_string(map).expect("a JSON map always encodes");
        Node { user, json: json.into_boxed_str() }
    }

    pub fn from_value(value: &Value) -> Node {
        match value {
            Value::Object(map) => Node::from_map(map),
            _ => Node::from_map(&Map::new()),
        }
    }

    /// `from_value` for bulk input: the text is written into `scratch`
    /// (reused from node to node) and the parsed value is freed before the
    /// node's one exact-size allocation is made. Building a large store
    /// then leaves no holes between the stored nodes, so the process's
    /// memory is the nodes themselves.
    pub fn from_owned(value: Value, scratch: &mut Vec<u8>) -> Node {
        let user = value.get("User").and_then(Value::as_i64).unwrap_or(NO_USER);
        scratch.clear();
        serde_json::to_writer(&mut *scratch, &value).expect("a JSON value always encodes");
        drop(value);
        let text = std::str::from_utf8(scratch).expect("serde_json writes UTF-8");
        Node { user, json: Box::from(text) }
    }

    pub fn user(&self) -> Option<i64> {
        (self.user != NO_USER).then_some(self.user)
    }

    /// The users a node refers to: its `User` and, if it names one, its
    /// `Sharer` (tailscaled sends both profiles with the node). The sharer
    /// is rare, so it is read from the text only when the text has one.
    pub fn users(&self) -> impl Iterator<Item = i64> {
        let sharer = if self.json.contains("\"Sharer\":") {
            self.to_map().get("Sharer").and_then(Value::as_i64).filter(|s| *s != 0)
        } else {
            None
        };
        self.user().into_iter().chain(sharer)
    }

    /// The node as JSON text (an object, compact, keys sorted).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The node's fields, parsed (to patch or inspect it).
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.json).expect("a stored node is a JSON object")
    }

    #[cfg(test)]
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// One field, parsed (parses the whole node: for rare checks).
    pub fn get(&self, field: &str) -> Option<Value> {
        self.to_map().remove(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_canonical_and_fields_are_kept() {
        let a = Node::from_value(&json!({"User": 7, "ID": 3, "Name": "x", "Extra": {"b": 1, "a": [1, 2]}}));
        let b = Node::from_value(&serde_json::from_str(r#"{ "Name":"x","Extra":{"a":[1,2],"b":1}, "ID":3,"User":7 }"#).unwrap());
        assert_eq!(a, b, "same fields, different order and spacing: equal");
        assert_eq!(a.json(), r#"{"Extra":{"a":[1,2],"b":1},"ID":3,"Name":"x","User":7}"#);
        assert_eq!(a.user(), Some(7));
        assert_eq!(a.get("Name"), Some(json!("x")));
        assert_eq!(Node::from_value(&json!({"ID": 4})).user(), None);
    }
}
