//! What a sweep covered. A report missing from a sweep may be concluded gone only when
//! the sweep covered it: a file holding one report says nothing about the others, and a
//! list of vulnerability reports says nothing about config audits. Ending a report
//! starts a grace period after which its findings are resolved and its DefectDojo test
//! emptied (losing every risk acceptance in it), so every source states what it covered
//! and the store ends only reports inside that.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::model::ReportKind;

/// Namespace globs (`*`, `?`): empty `include` admits every namespace; `exclude` wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl NamespaceFilter {
    /// True when `namespace` is admitted. Cluster-scoped reports (namespace "") are
    /// admitted unless `""` is excluded explicitly.
    pub fn admits(&self, namespace: &str) -> bool {
        let matches = |globs: &[String]| globs.iter().any(|g| crate::glob::matches(g, namespace));
        if namespace.is_empty() {
            return !self.exclude.iter().any(|g| g.is_empty());
        }
        (self.include.is_empty() || matches(&self.include)) && !matches(&self.exclude)
    }

    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// A region of the cluster that a sweep read in full: every report of these kinds, in
/// the admitted namespaces, matching the label selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub kinds: BTreeSet<ReportKind>,
    pub namespaces: NamespaceFilter,
    /// The label selector the reports were listed with. A report is known to match the
    /// selector it was last read under; with a selector, only reports last read under
    /// that same selector are covered (one read without a selector may not match it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

impl Coverage {
    /// Every report of `kinds` in every namespace.
    pub fn all(kinds: impl IntoIterator<Item = ReportKind>) -> Coverage {
        Coverage {
            kinds: kinds.into_iter().collect(),
            namespaces: NamespaceFilter::default(),
            label_selector: None,
        }
    }

    /// True when a stored report (`kind`, `namespace`, last read under `selector`, "" for
    /// none) lies inside this coverage.
    pub fn covers(&self, kind: ReportKind, namespace: &str, selector: &str) -> bool {
        self.kinds.contains(&kind)
            && self.namespaces.admits(namespace)
            && self
                .label_selector
                .as_deref()
                .is_none_or(|own| own == selector)
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kinds.len() == ReportKind::ALL.len() {
            f.write_str("every report kind")?;
        } else {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
            f.write_str(&kinds.join(", "))?;
        }
        if self.namespaces.is_everything() {
            f.write_str(" in every namespace")?;
        } else {
            if !self.namespaces.include.is_empty() {
                write!(f, " in {}", self.namespaces.include.join(", "))?;
            }
            if !self.namespaces.exclude.is_empty() {
                write!(f, " except {}", self.namespaces.exclude.join(", "))?;
            }
        }
        if let Some(s) = &self.label_selector {
            write!(f, " matching {s:?}")?;
        }
        Ok(())
    }
}

/// What one sweep covered: the reports it read, plus the regions it read in full.
/// Only reports inside a region may start their grace period by being absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub covered: Vec<Coverage>,
}

impl Scope {
    /// Only what was read: nothing else can be concluded gone.
    pub fn read_only() -> Scope {
        Scope::default()
    }

    /// Every report kind in every namespace: a whole-cluster export read in full.
    pub fn everything() -> Scope {
        Scope {
            covered: vec![Coverage::all(ReportKind::ALL)],
        }
    }

    pub fn covers(&self, kind: ReportKind, namespace: &str, selector: &str) -> bool {
        self.covered
            .iter()
            .any(|c| c.covers(kind, namespace, selector))
    }

    pub fn is_read_only(&self) -> bool {
        self.covered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_kinds_namespaces_and_selector() {
        let c = Coverage {
            kinds: [ReportKind::VulnerabilityReport].into(),
            namespaces: NamespaceFilter {
                include: vec!["team-*".into()],
                exclude: vec!["team-x".into()],
            },
            label_selector: Some("app=web".into()),
        };
        assert!(c.covers(ReportKind::VulnerabilityReport, "team-a", "app=web"));
        assert!(!c.covers(ReportKind::ConfigAuditReport, "team-a", "app=web"));
        assert!(!c.covers(ReportKind::VulnerabilityReport, "team-x", "app=web"));
        assert!(!c.covers(ReportKind::VulnerabilityReport, "other", "app=web"));
        // Read without the selector (a file): it may not match it.
        assert!(!c.covers(ReportKind::VulnerabilityReport, "team-a", ""));
        let all = Coverage::all(ReportKind::ALL);
        assert!(all.covers(ReportKind::ClusterComplianceReport, "", "app=web"));
        assert_eq!(all.to_string(), "every report kind in every namespace");
        assert_eq!(
            c.to_string(),
            "VulnerabilityReport in team-* except team-x matching \"app=web\""
        );
    }

    #[test]
    fn read_only_covers_nothing() {
        let s = Scope::read_only();
        assert!(!s.covers(ReportKind::VulnerabilityReport, "a", ""));
        assert!(s.is_read_only());
    }

    #[test]
    fn cluster_scoped_reports_are_admitted_unless_excluded() {
        let f = NamespaceFilter {
            include: vec!["prod".into()],
            exclude: vec![],
        };
        assert!(f.admits(""));
        let f = NamespaceFilter {
            include: vec![],
            exclude: vec!["".into()],
        };
        assert!(!f.admits(""));
    }
}
