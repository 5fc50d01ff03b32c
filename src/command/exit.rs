//! Exit codes (documented in the README).

pub const OK: i32 = 0;
pub const FATAL: i32 = 1;
/// Command-line usage error (clap's own code).
pub const USAGE: i32 = 2;
/// The sweep completed, but some input could not be read (see `skipped`).
pub const SKIPPED: i32 = 3;
/// DefectDojo did not take everything: pushes refused or still queued.
pub const EXPORT: i32 = 4;
/// The sweep read no report at all (and `--allow-empty` was not given): nothing was
/// marked gone.
pub const EMPTY: i32 = 5;
/// `query` found nothing (as `grep` does; errors stay 1).
pub const NOT_FOUND: i32 = 6;
