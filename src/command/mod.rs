//! The commands: what each one prints and the exit code it ends with. `main.rs` parses
//! the arguments and calls these; outputs and the store never print a result or pick an
//! exit code.

pub mod alert;
pub mod exit;
pub mod query;
pub mod scan;
pub mod store;
pub mod summary;
