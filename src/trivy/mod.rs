//! Trivy Operator reports: tolerant parsing of every shape seen in the wild and
//! normalization into `model::Report`.

mod ci;
pub mod crd;
mod normalize;
pub mod workload;

pub use normalize::{ObjectError, Parsed, parse_object};
