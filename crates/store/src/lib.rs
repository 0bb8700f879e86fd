//! The `store` crate of Switchboard (see ARCHITECTURE.md).
