//! Millpond's compute pool: QUIC/TLS links between Millpond instances (design.md §4).
//!
//! Not built yet: the pool is its own issue. The crate exists so that the workspace has its
//! final shape and the dependency direction `app → net → core` is fixed from the start.

pub use millpond_core as core;
