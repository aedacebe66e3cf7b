//! Host `void *userdata` carried across threads.

use std::os::raw::c_void;

/// An opaque host pointer. The library never dereferences it, only passes
/// it back to the host's callback, whose contract says which threads call it.
#[derive(Clone, Copy)]
pub(crate) struct Userdata(pub *mut c_void);

// SAFETY: never dereferenced by the library; thread-safety of what it points
// to is the host's promise when it registers a callback.
unsafe impl Send for Userdata {}
// SAFETY: as above.
unsafe impl Sync for Userdata {}
