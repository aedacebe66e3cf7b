//! The C boundary. One file per C type; no logic lives here.
