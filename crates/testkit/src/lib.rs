//! The `testkit` crate of Switchboard (see ARCHITECTURE.md).
