//! `mr_snapshot_add_packed` (the MRS1 encoding a host builds a snapshot
//! with): any buffer is either added whole or refused with the snapshot
//! unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshring::cache::Snapshot;

/// Everything a snapshot holds, in order, to compare before and after.
fn contents(s: &Snapshot) -> Vec<(String, String, Vec<(String, Vec<u8>)>)> {
    s.type_urls()
        .map(|t| {
            let set = s.type_set(t);
            let resources = set
                .map(|set| set.resources().iter().map(|(n, r)| (n.to_string(), r.bytes().to_vec())).collect())
                .unwrap_or_default();
            (t.to_string(), s.version(t).to_string(), resources)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut s = Snapshot::new("v0");
    s.add("type.example/a", "kept", b"x".to_vec(), None).expect("add");
    // The input twice: the second add of the same resources must be refused
    // as duplicates if the first was accepted.
    for round in 0..2 {
        let before = contents(&s);
        match s.add_packed(data) {
            Ok(()) => assert!(round == 0 || contents(&s) == before, "a second identical add changed the snapshot"),
            Err(_) => assert!(contents(&s) == before, "a refused buffer changed the snapshot"),
        }
    }
});
