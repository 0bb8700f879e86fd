//! The `server` crate of Switchboard (see ARCHITECTURE.md).
