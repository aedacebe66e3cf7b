//! Generates include/meshring.h with cbindgen. The header is committed;
//! `make header-check` fails when it differs from a fresh generation.

use std::path::PathBuf;

const PREAMBLE: &str = "\
/*
 * meshring: io_uring UDP and TUN, a notify bus and an xDS snapshot cache
 * for the node side of a mesh VPN, behind one C ABI.
 *
 * Conventions (every function follows them):
 *  - Fallible calls return mr_status (MR_OK = 0) and write results through
 *    out parameters; on failure mr_last_error() describes what went wrong.
 *  - Handles are opaque. mr_X_close() is idempotent, callable from any
 *    thread, and makes blocked and later calls return MR_CLOSED promptly;
 *    mr_X_free() closes if needed and releases the handle (NULL is a no-op).
 *  - timeout_ms: < 0 waits forever, 0 never blocks (MR_WOULD_BLOCK),
 *    > 0 waits at most that long (MR_TIMEOUT).
 *  - Memory the library returns as mr_bytes is released with mr_bytes_free.
 *  - JSON inputs nest at most MR_JSON_MAX_DEPTH levels (deeper: MR_PARSE).
 *  - No panic crosses this boundary: internal failures return MR_PANIC.
 *    A panic on one of a handle's own threads (runtime loop, bus ticker,
 *    cache heartbeat, replication workers) shuts that handle down: every
 *    later call on it returns MR_PANIC with the reason in mr_last_error,
 *    its readiness fd turns readable, and mr_X_free releases it as usual.
 */
";

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let major: u32 = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap().parse().unwrap();
    let minor: u32 = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap().parse().unwrap();
    let patch: u32 = std::env::var("CARGO_PKG_VERSION_PATCH").unwrap().parse().unwrap();
    let version_macros = format!(
        "\n/* The version of this header; compare with mr_version_number() at run time. */\n\
         #define MR_VERSION \"{major}.{minor}.{patch}\"\n\
         #define MR_VERSION_MAJOR {major}\n\
         #define MR_VERSION_MINOR {minor}\n\
         #define MR_VERSION_PATCH {patch}\n\
         #define MR_VERSION_NUMBER {}\n",
        major * 1_000_000 + minor * 1_000 + patch
    );
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .with_header(PREAMBLE)
        .with_after_include(version_macros)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            // Keep `cargo build` usable while the sources are mid-edit; the
            // header check in `make test` catches a header that fell behind.
            println!("cargo:warning=cbindgen failed, header not regenerated: {e}");
            return;
        }
    };
    let out = crate_dir.join("include").join("meshring.h");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    if std::fs::read(&out).ok().as_deref() != Some(&fresh[..]) {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, &fresh).unwrap();
    }
}
