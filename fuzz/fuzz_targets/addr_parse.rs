//! `mr_addr_parse`: any text either fails or gives an address whose text
//! form parses back to the same address.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(addr) = meshring::addr::parse(text) {
        let again = meshring::addr::format(&addr);
        let back = meshring::addr::parse(&again).unwrap_or_else(|e| panic!("{text:?} -> {again:?} does not parse: {e}"));
        assert_eq!(back, addr, "{text:?} -> {again:?}");
    }
});
