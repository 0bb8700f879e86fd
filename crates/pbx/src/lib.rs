//! The `pbx` crate of Switchboard (see ARCHITECTURE.md).
