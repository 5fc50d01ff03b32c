//! The inventory's question and answer: one shape for `query --format json` and for
//! `/api/v1/` (api.rs), built by one function so the two can never drift apart.
//! The lookups themselves are `store::lookup`; text output stays in `command::query`.

use anyhow::Result;
use serde::{Serialize, Serializer};

use crate::store::Store;
use crate::store::lookup::{self, Filter, FindingHit, PackageHit, RepositoryHit};
use crate::version::VersionReq;

/// What was asked, echoed as `query` in the answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Query {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cve: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// With `package`: written back as it was parsed (`<2.17.1`, `>=2.0,<2.17.1`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "version_text"
    )]
    pub version: Option<VersionReq>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Also image contents that ran once but run nowhere now.
    pub all: bool,
}

fn version_text<S: Serializer>(v: &Option<VersionReq>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// The answer: each list is present when it was asked for, empty when nothing matched.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub query: Query,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<FindingHit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<PackageHit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepositoryHit>>,
}

impl Answer {
    pub fn is_empty(&self) -> bool {
        self.findings.as_ref().is_none_or(Vec::is_empty)
            && self.packages.as_ref().is_none_or(Vec::is_empty)
            && self.repositories.as_ref().is_none_or(Vec::is_empty)
    }

    /// The JSON both `query --format json` and `/api/v1/` send, byte for byte.
    pub fn to_json(&self) -> Result<String> {
        Ok(format!("{}\n", serde_json::to_string_pretty(self)?))
    }
}

/// Answers `query` from the store.
pub fn answer(store: &Store, query: Query) -> Result<Answer> {
    let filter = Filter {
        include_past: query.all,
    };
    let mut a = Answer {
        findings: None,
        packages: None,
        repositories: None,
        query,
    };
    let q = &a.query;
    if let Some(id) = &q.cve {
        a.findings = Some(lookup::by_id(store, id.trim(), filter)?);
    }
    if let Some(name) = &q.package {
        a.packages = Some(lookup::by_package(store, name, q.version.as_ref(), filter)?);
    }
    if let Some(repo) = &q.image {
        a.repositories = Some(lookup::by_image(store, repo, filter)?);
    }
    Ok(a)
}
