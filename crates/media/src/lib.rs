//! The `media` crate of Switchboard (see ARCHITECTURE.md).
