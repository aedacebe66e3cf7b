//! `mr_snapshot_add_packed` (the MRS1 encoding a host builds a snapshot
//! with) and `mr_snapshot_edit_packed` (MRE1, the edits that keep it
//! current): any buffer is either applied whole or refused with the
//! snapshot unchanged, and an applied edit leaves every type it names
//! remembering the edit.

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
    // An MRE1 input is an edit of a small snapshot.
    if data.starts_with(b"MRE1") {
        let mut s = Snapshot::new("v0");
        for n in ["a", "b", "kept"] {
            s.add("type.example/a", n, n.as_bytes().to_vec(), None).expect("add");
        }
        let base = std::sync::Arc::new(s.clone());
        let before = contents(&s);
        match s.apply_edit_packed(data) {
            Ok(()) => {
                if let (Some(now), Some(was)) = (s.type_set("type.example/a"), base.type_set("type.example/a")) {
                    assert!(std::sync::Arc::ptr_eq(now, was) || now.edits_since(was).is_some(), "an edited set forgot its origin");
                }
            }
            Err(_) => assert!(contents(&s) == before, "a refused edit changed the snapshot"),
        }
        return;
    }
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
