//! Limits every JSON input shares.
//!
//! Every JSON text a host hands the library (bus updates and events, bus
//! and runtime options, runtime configurations, route attributes) is
//! checked against [`MAX_DEPTH`] before it is parsed: nesting deeper than
//! that is `ErrorKind::Parse` and changes nothing. Parts of an input the
//! library passes through untouched (`DNSConfig`, `PacketFilter`,
//! `DERPMap`, a protocol's `config`, route `attrs`) end up inside its
//! output (Notify messages, `show route`), a few levels deeper; the limit
//! keeps every such output readable by strict decoders (serde_json stops
//! at 128 levels, Go's encoding/json at 10000).

use crate::error::{Error, ErrorKind, Result};

/// The deepest nesting of arrays and objects any JSON input may have (the
/// top-level object counts as 1). C sees it as `MR_JSON_MAX_DEPTH`.
/// cbindgen:ignore
pub const MAX_DEPTH: usize = 64;

/// Parse error when `json` nests arrays/objects deeper than `MAX_DEPTH`.
/// One pass, no allocation; brackets inside strings do not count, and
/// malformed text is left to the parser that follows.
pub fn check_depth(json: &[u8], what: &str) -> Result<()> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &b) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Error::new(
                        ErrorKind::Parse,
                        format!("{what}: JSON nested deeper than {MAX_DEPTH} levels (at byte {at})"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1))
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(check_depth(nested(MAX_DEPTH).as_bytes(), "x").is_ok());
        let e = check_depth(nested(MAX_DEPTH + 1).as_bytes(), "x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parse);
        assert!(e.message.contains("deeper than 64"), "{e}");
        let s = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(1000), "{".repeat(1000));
        assert!(check_depth(s.as_bytes(), "x").is_ok(), "brackets in a string, with an escaped quote");
        // Siblings do not add up.
        let wide = format!("[{}]", vec![nested(MAX_DEPTH - 1); 50].join(","));
        assert!(check_depth(wide.as_bytes(), "x").is_ok());
        // serde_json reads the deepest accepted input (its own limit is 128).
        let v: serde_json::Value = serde_json::from_str(&nested(MAX_DEPTH)).unwrap();
        assert!(v.is_object());
    }
}
