//! The `sdp` crate of Switchboard (see ARCHITECTURE.md).
