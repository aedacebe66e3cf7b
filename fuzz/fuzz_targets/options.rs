//! Bus and runtime options (`mr_bus_new` / `mr_runtime_new`): any text is
//! either accepted or refused with an error; accepted options give a
//! working handle.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(options) = meshring::bus::Bus::options_from_json(Some(text)) {
        if let Ok(bus) = meshring::bus::Bus::new(options) {
            bus.apply(br#"{"Peers":[{"ID":1}]}"#).expect("a valid update on a new bus");
        }
    }
    if let Ok(options) = meshring::lifecycle::Options::from_json(Some(text)) {
        let rt = meshring::lifecycle::Runtime::new(options).expect("runtime");
        rt.commit(r#"{"protocols":[{"name":"s","kind":"static","routes":[{"prefix":"198.18.0.0/24"}]}]}"#, false)
            .expect("a valid config on a new runtime");
    }
});
