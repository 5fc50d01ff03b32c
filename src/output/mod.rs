//! Outputs: what leaves the store.

pub mod alert;
pub mod dojo;
pub mod summary;
