//! The generated header exports only the C API's own names: every macro
//! `MR_*`, every function and type `mr_*`. cbindgen copies any public Rust
//! constant it finds, so a new `pub const` in a safe module needs a
//! `/// cbindgen:ignore` line; this test catches the ones that slip through.

const HEADER: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/include/meshring.h"));

#[test]
fn every_macro_is_mr_prefixed() {
    for line in HEADER.lines() {
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            assert!(name.starts_with("MR_") || name == "MESHRING_H", "unprefixed macro in meshring.h: {name}");
        }
    }
}

#[test]
fn every_type_and_function_is_mr_prefixed() {
    let mut in_comment = false;
    for line in HEADER.lines() {
        let line = line.trim();
        if in_comment || line.starts_with("/*") {
            in_comment = !line.ends_with("*/");
            continue;
        }
        if let Some(rest) = line.strip_prefix("typedef struct ").or_else(|| line.strip_prefix("typedef enum ")) {
            let name = rest.split_whitespace().next().unwrap_or("");
            assert!(name.starts_with("mr_"), "unprefixed type in meshring.h: {line}");
        }
        // Function declarations end with ");" and are not inside comments.
        if let Some(rest) = line.strip_prefix("typedef ").filter(|r| r.contains("(*")) {
            let name = rest.split("(*").nth(1).and_then(|r| r.split(')').next()).unwrap_or("");
            assert!(name.starts_with("mr_"), "unprefixed callback type in meshring.h: {line}");
            continue;
        }
        if line.ends_with(");") && !line.starts_with('*') && line.contains('(') {
            let before_paren = &line[..line.find('(').unwrap()];
            let name = before_paren.rsplit(|c: char| c == ' ' || c == '*').next().unwrap_or("");
            assert!(name.starts_with("mr_"), "unprefixed function in meshring.h: {line}");
        }
    }
}
