//! Library version (the header also has `MR_VERSION_*` macros from build.rs).

use std::os::raw::c_char;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as "major.minor.patch", static, never freed.
#[no_mangle]
pub extern "C" fn mr_version() -> *const c_char {
    ffi_value!("mr_version", { VERSION.as_ptr().cast() })
}

/// major * 1000000 + minor * 1000 + patch. Compare with `MR_VERSION_NUMBER`
/// to check the header matches the library loaded at run time.
#[no_mangle]
pub extern "C" fn mr_version_number() -> u32 {
    ffi_value!("mr_version_number", { version_number() })
}

fn version_number() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000 + part(env!("CARGO_PKG_VERSION_MINOR")) * 1_000 + part(env!("CARGO_PKG_VERSION_PATCH"))
}
