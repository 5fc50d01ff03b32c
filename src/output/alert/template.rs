//! What an alert override template (`alerts.templates.*`) reads: one context for every
//! channel and every message kind, documented in the README ("Message templates").
//! Built from the composed message; its fields are the stable interface, so rename none.

use serde::Serialize;

use super::compose::{AlertFinding, Group, Message, counts_text};

/// The context of every alert template.
#[derive(Debug, Clone, Serialize)]
pub struct AlertContext {
    /// `image` (new findings of one image repository), `digest` (the hourly cap was
    /// reached: several images in one message) or `test` (`alert --test`).
    pub kind: &'static str,
    pub cluster: String,
    /// `2 new CRITICAL in ghcr.io/org/api`, `3 images with 7 new CRITICAL findings`,
    /// `test alert`.
    pub title: String,
    /// The channel or team route (`alert --test` only; empty otherwise).
    pub destination: String,
    /// One for `image`, the images of a `digest` (at most `max_groups`), none for `test`.
    pub groups: Vec<GroupContext>,
    /// Images of a digest left out of `groups`.
    pub more_groups: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupContext {
    /// The image repository: `ghcr.io/org/api`.
    pub repo: String,
    /// `2 new CRITICAL, 1 new HIGH in ghcr.io/org/api`.
    pub title: String,
    pub counts: CountsContext,
    /// `2 new CRITICAL, 1 new HIGH`.
    pub counts_text: String,
    pub images: Vec<ImageContext>,
    /// Namespaces running it; `(cluster)` for cluster-scoped workloads.
    pub namespaces: Vec<String>,
    /// Most severe first, at most `alerts.max_findings_per_message`.
    pub findings: Vec<FindingContext>,
    pub more_findings: usize,
    pub workloads: Vec<WorkloadContext>,
    /// The DefectDojo test of the image, when known.
    pub dojo_link: Option<String>,
    /// `runtime` (new in the cluster's reports) or `ci` (new in CI results).
    pub origin: &'static str,
    /// With `ci`: what CI named the image (`nginx:alpine`).
    pub ci_artifacts: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CountsContext {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub unknown: usize,
    pub total: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageContext {
    /// `sha256:…` (none when the report named none).
    pub digest: Option<String>,
    /// `sha256:0123456789ab`.
    pub short_digest: String,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingContext {
    /// `CVE-2026-0001`, a secret rule, a check ID.
    pub id: String,
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, `UNKNOWN`.
    pub severity: &'static str,
    /// `vulnerability`, `secret`, ….
    pub family: &'static str,
    pub title: String,
    pub package: String,
    pub installed: String,
    /// The fixed version; empty when no fix is known.
    pub fixed: String,
    /// `openssl 3.0.1 → 3.0.9`, `openssl 3.0.1 → no fix yet`, a secret's file.
    pub versions: String,
    /// CVSS score, when the report has one.
    pub score: Option<f64>,
    /// An http(s) link from the report.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadContext {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

fn finding(f: &AlertFinding) -> FindingContext {
    FindingContext {
        id: f.id.clone(),
        severity: f.severity.as_str(),
        family: f.family.as_str(),
        title: f.title.clone(),
        package: f.package.clone(),
        installed: f.installed.clone(),
        fixed: f.fixed.clone(),
        versions: f.versions(),
        score: f.score,
        link: f.link.clone(),
    }
}

fn group(g: &Group, max_findings: usize) -> GroupContext {
    let mut counts = CountsContext::default();
    for f in &g.findings {
        use crate::model::Severity::*;
        match f.severity {
            Critical => counts.critical += 1,
            High => counts.high += 1,
            Medium => counts.medium += 1,
            Low => counts.low += 1,
            Unknown => counts.unknown += 1,
        }
        counts.total += 1;
    }
    GroupContext {
        repo: g.repo.clone(),
        title: g.title(),
        counts,
        counts_text: counts_text(&g.counts()),
        images: g
            .images
            .iter()
            .map(|i| ImageContext {
                digest: i.digest.clone(),
                short_digest: i.short_digest(),
                tag: i.tag.clone(),
            })
            .collect(),
        namespaces: g.namespace_labels().map(str::to_owned).collect(),
        findings: g.findings.iter().take(max_findings).map(finding).collect(),
        more_findings: g.findings.len().saturating_sub(max_findings),
        workloads: g
            .workloads
            .iter()
            .map(|w| WorkloadContext {
                namespace: w.namespace.clone(),
                kind: w.kind.clone(),
                name: w.name.clone(),
            })
            .collect(),
        dojo_link: g.dojo_links.first().cloned(),
        origin: if g.is_ci() { "ci" } else { "runtime" },
        ci_artifacts: g.ci_artifacts.clone(),
    }
}

/// Images listed in a digest's context, as the built-in messages list.
pub const MAX_GROUPS: usize = 10;

impl AlertContext {
    pub fn new(msg: &Message, cluster: &str, max_findings: usize) -> AlertContext {
        let (groups, more_groups, destination) = match msg {
            Message::Image(g) => (vec![group(g, max_findings)], 0, String::new()),
            Message::Digest(gs) => (
                gs.iter()
                    .take(MAX_GROUPS)
                    .map(|g| group(g, max_findings))
                    .collect(),
                gs.len().saturating_sub(MAX_GROUPS),
                String::new(),
            ),
            Message::Test { destination } => (Vec::new(), 0, destination.clone()),
        };
        AlertContext {
            kind: msg.kind(),
            cluster: cluster.to_owned(),
            title: msg.title(),
            destination,
            groups,
            more_groups,
        }
    }
}
