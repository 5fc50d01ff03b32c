//! Where a new finding goes: the destinations (channels and team routes) with their
//! filters, and the pure decision for one finding and one destination.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::channel::{self, Channel, Shared, Spec};
use super::config::{AlertOrigin, AlertsConfig, IgnoreEntry};
use crate::config::Config;
use crate::model::{Family, Severity};

/// Namespace globs: empty `include` admits all; `exclude` wins.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl NamespaceFilter {
    pub fn admits(&self, ns: &str) -> bool {
        let any = |globs: &[String]| globs.iter().any(|g| crate::glob::matches(g, ns));
        (self.include.is_empty() || any(&self.include)) && !any(&self.exclude)
    }
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub min_severity: Severity,
    pub families: Vec<Family>,
    pub fixable_only: bool,
    /// The section's globs, then the channel's: both must admit.
    pub namespaces: Vec<NamespaceFilter>,
}

impl Filter {
    /// Family, threshold and fixable (namespaces are the caller's).
    fn admits(&self, c: &Candidate<'_>) -> bool {
        self.families.contains(&c.family)
            && at_least(c.severity, self.min_severity)
            && (!self.fixable_only || c.fixable)
    }
}

/// One destination: one channel (Slack webhook, email route, JSON webhook) of an alert
/// channel or a team route.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Stable key in the store: `channel:<name>:<kind>` or `team:<name>:<kind>`.
    pub key: String,
    /// The channel or team name, for logs and the metrics label.
    pub name: String,
    pub channel: Arc<dyn Channel>,
    pub filter: Filter,
    /// A team route receives alerts for its namespaces only.
    pub team: Option<String>,
    pub max_per_hour: u32,
    /// Runtime, CI or both (team routes: runtime, since they route by namespace).
    pub origin: AlertOrigin,
}

impl Destination {
    /// `security (slack)`, `team payments (email)`: never the URL or the addresses.
    pub fn label(&self) -> String {
        match &self.team {
            Some(t) => format!("team {t} ({})", self.channel.kind()),
            None => format!("{} ({})", self.name, self.channel.kind()),
        }
    }

    pub fn channel_label(&self) -> String {
        match &self.team {
            Some(t) => format!("team:{t}"),
            None => self.name.clone(),
        }
    }
}

/// Every destination the configuration defines, channels first, each entry's channels
/// as `channel::build` makes them.
pub fn destinations(config: &Config, shared: &Arc<Shared>) -> Vec<Destination> {
    let a = &config.alerts;
    let section = NamespaceFilter {
        include: a.include_namespaces.clone(),
        exclude: a.exclude_namespaces.clone(),
    };
    let mut out = Vec::new();
    for ch in &a.channels {
        let filter = Filter {
            min_severity: ch.min_severity.unwrap_or(a.min_severity),
            families: ch.families.clone().unwrap_or_else(|| a.families.clone()),
            fixable_only: ch.fixable_only.unwrap_or(a.fixable_only),
            namespaces: vec![
                section.clone(),
                NamespaceFilter {
                    include: ch.include_namespaces.clone(),
                    exclude: ch.exclude_namespaces.clone(),
                },
            ],
        };
        let prefix = format!("channel:{}", ch.name);
        let spec = Spec {
            key_prefix: &prefix,
            slack: &ch.slack_webhook,
            msteams: &ch.msteams_webhook,
            email: &ch.email,
            webhook: ch.webhook.as_ref(),
        };
        for c in channel::build(&spec, shared) {
            out.push(Destination {
                key: format!("{prefix}:{}", c.kind()),
                name: ch.name.clone(),
                channel: c,
                filter: filter.clone(),
                team: None,
                max_per_hour: ch.max_per_hour.unwrap_or(a.max_per_hour),
                origin: ch.origin,
            });
        }
    }
    for (name, route) in &config.teams.routes {
        let filter = section_filter(a, &section);
        let prefix = format!("team:{name}");
        let spec = Spec {
            key_prefix: &prefix,
            slack: &route.slack_webhook,
            msteams: &route.msteams_webhook,
            email: &route.email,
            webhook: route.webhook.as_ref(),
        };
        for c in channel::build(&spec, shared) {
            out.push(Destination {
                key: format!("{prefix}:{}", c.kind()),
                name: name.clone(),
                channel: c,
                filter: filter.clone(),
                team: Some(name.clone()),
                max_per_hour: a.max_per_hour,
                origin: AlertOrigin::Runtime,
            });
        }
    }
    out
}

fn section_filter(a: &AlertsConfig, section: &NamespaceFilter) -> Filter {
    Filter {
        min_severity: a.min_severity,
        families: a.families.clone(),
        fixable_only: a.fixable_only,
        namespaces: vec![section.clone()],
    }
}

/// What is known about a new finding when it is routed.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub family: Family,
    pub severity: Severity,
    pub fixable: bool,
    /// Vulnerability ID, secret rule ID or check ID.
    pub id: &'a str,
    /// `registry/repository` (or the resource for checks).
    pub repo: &'a str,
    /// Namespaces running it (`""` for cluster-scoped reports).
    pub namespaces: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not for this destination (threshold, family, fixable, namespaces, team).
    Skip,
    /// The ignore list covers every namespace this destination would see.
    Ignored { reason: String },
    /// Alert, naming these namespaces.
    Alert { namespaces: Vec<String> },
}

/// `sev` is at or above `min` (CRITICAL is the highest).
pub fn at_least(sev: Severity, min: Severity) -> bool {
    // `Severity` orders CRITICAL first.
    sev <= min
}

pub fn decide(
    dest: &Destination,
    c: &Candidate<'_>,
    team_of: &BTreeMap<String, String>,
    ignore: &[IgnoreEntry],
    now: DateTime<Utc>,
) -> Verdict {
    if !dest.origin.runtime() || !dest.filter.admits(c) {
        return Verdict::Skip;
    }
    let f = &dest.filter;
    let visible: Vec<&String> = c
        .namespaces
        .iter()
        .filter(|ns| f.namespaces.iter().all(|nf| nf.admits(ns)))
        .filter(|ns| match &dest.team {
            Some(t) => team_of.get(ns.as_str()) == Some(t),
            None => true,
        })
        .collect();
    if visible.is_empty() {
        return Verdict::Skip;
    }
    let mut reason = None;
    let mut kept = Vec::new();
    for ns in visible {
        match ignore
            .iter()
            .find(|e| e.active(now) && ignores(e, c.id, c.repo, ns))
        {
            Some(e) => {
                reason.get_or_insert_with(|| e.describe());
            }
            None => kept.push(ns.clone()),
        }
    }
    if kept.is_empty() {
        return Verdict::Ignored {
            reason: reason.unwrap_or_default(),
        };
    }
    Verdict::Alert { namespaces: kept }
}

/// A finding new in CI results: no namespace, so the destination's family, severity and
/// fixable filters apply, its namespace globs do not (`origin: any` keeps them for the
/// runtime side), and only an ignore entry without `namespace` holds it back.
pub fn decide_ci(
    dest: &Destination,
    c: &Candidate<'_>,
    ignore: &[IgnoreEntry],
    now: DateTime<Utc>,
) -> Verdict {
    if !dest.origin.ci() || dest.team.is_some() || !dest.filter.admits(c) {
        return Verdict::Skip;
    }
    match ignores_ci(ignore, c.id, c.repo, now) {
        Some(e) => Verdict::Ignored {
            reason: e.describe(),
        },
        None => Verdict::Alert {
            namespaces: Vec::new(),
        },
    }
}

/// The active ignore entry, without a namespace, that covers a CI finding.
pub fn ignores_ci<'a>(
    ignore: &'a [IgnoreEntry],
    id: &str,
    repo: &str,
    now: DateTime<Utc>,
) -> Option<&'a IgnoreEntry> {
    ignore
        .iter()
        .find(|e| e.active(now) && e.namespace.is_none() && ignores(e, id, repo, ""))
}

/// Every field the entry gives must match.
pub fn ignores(e: &IgnoreEntry, id: &str, repo: &str, namespace: &str) -> bool {
    let m =
        |pat: &Option<String>, v: &str| pat.as_deref().is_none_or(|p| crate::glob::matches(p, v));
    m(&e.id, id) && m(&e.image, repo) && m(&e.namespace, namespace)
}

#[cfg(test)]
mod tests {
    use super::super::config::Expiry;
    use super::*;

    fn dest(team: Option<&str>) -> Destination {
        Destination {
            key: "channel:sec:slack".into(),
            name: "sec".into(),
            channel: channel::stub("slack"),
            filter: Filter {
                min_severity: Severity::Critical,
                families: vec![Family::Vulnerability, Family::Secret],
                fixable_only: false,
                namespaces: vec![NamespaceFilter {
                    include: vec![],
                    exclude: vec!["kube-*".into()],
                }],
            },
            team: team.map(str::to_owned),
            max_per_hour: 20,
            origin: AlertOrigin::Runtime,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("date")
            .with_timezone(&Utc)
    }

    fn cand<'a>(sev: Severity, ns: &'a [String]) -> Candidate<'a> {
        Candidate {
            family: Family::Vulnerability,
            severity: sev,
            fixable: false,
            id: "CVE-2026-0001",
            repo: "ghcr.io/org/api",
            namespaces: ns,
        }
    }

    #[test]
    fn threshold_family_fixable_and_namespaces() {
        let ns = vec!["shop".to_owned(), "kube-system".to_owned()];
        let d = dest(None);
        let none = BTreeMap::new();
        assert_eq!(
            decide(&d, &cand(Severity::Critical, &ns), &none, &[], now()),
            Verdict::Alert {
                namespaces: vec!["shop".into()]
            }
        );
        assert_eq!(
            decide(&d, &cand(Severity::High, &ns), &none, &[], now()),
            Verdict::Skip
        );
        let mut d2 = d.clone();
        d2.filter.min_severity = Severity::High;
        assert!(matches!(
            decide(&d2, &cand(Severity::High, &ns), &none, &[], now()),
            Verdict::Alert { .. }
        ));
        d2.filter.fixable_only = true;
        assert_eq!(
            decide(&d2, &cand(Severity::Critical, &ns), &none, &[], now()),
            Verdict::Skip
        );
        let only_kube = vec!["kube-system".to_owned()];
        assert_eq!(
            decide(&d, &cand(Severity::Critical, &only_kube), &none, &[], now()),
            Verdict::Skip
        );
        let mut c = cand(Severity::Critical, &ns);
        c.family = Family::ConfigAudit;
        assert_eq!(decide(&d, &c, &none, &[], now()), Verdict::Skip);
        assert!(at_least(Severity::Critical, Severity::High));
        assert!(!at_least(Severity::Unknown, Severity::Low));
    }

    #[test]
    fn teams_see_their_namespaces_only() {
        let ns = vec!["shop".to_owned(), "pay".to_owned()];
        let teams: BTreeMap<String, String> = [("pay".to_owned(), "payments".to_owned())].into();
        assert_eq!(
            decide(
                &dest(Some("payments")),
                &cand(Severity::Critical, &ns),
                &teams,
                &[],
                now()
            ),
            Verdict::Alert {
                namespaces: vec!["pay".into()]
            }
        );
        assert_eq!(
            decide(
                &dest(Some("web")),
                &cand(Severity::Critical, &ns),
                &teams,
                &[],
                now()
            ),
            Verdict::Skip
        );
    }

    #[test]
    fn ignore_entries_match_by_every_field_and_expire() {
        let ns = vec!["shop".to_owned(), "dev".to_owned()];
        let d = dest(None);
        let none = BTreeMap::new();
        let entry =
            |id: Option<&str>, image: Option<&str>, nsg: Option<&str>, exp: Option<&str>| {
                IgnoreEntry {
                    id: id.map(str::to_owned),
                    image: image.map(str::to_owned),
                    namespace: nsg.map(str::to_owned),
                    reason: "not reachable".into(),
                    expires: exp.map(|e| Expiry::parse(e).expect("expiry")),
                }
            };
        let c = cand(Severity::Critical, &ns);
        let by_id = [entry(Some("CVE-2026-*"), None, None, None)];
        assert!(matches!(
            decide(&d, &c, &none, &by_id, now()),
            Verdict::Ignored { reason } if reason.contains("not reachable") && reason.contains("CVE-2026-*")
        ));
        let other_image = [entry(
            Some("CVE-2026-0001"),
            Some("ghcr.io/other/*"),
            None,
            None,
        )];
        assert!(matches!(
            decide(&d, &c, &none, &other_image, now()),
            Verdict::Alert { .. }
        ));
        let dev_only = [entry(None, Some("ghcr.io/org/*"), Some("dev"), None)];
        assert_eq!(
            decide(&d, &c, &none, &dev_only, now()),
            Verdict::Alert {
                namespaces: vec!["shop".into()]
            }
        );
        let expired = [entry(Some("CVE-2026-0001"), None, None, Some("2026-11-26"))];
        assert!(matches!(
            decide(&d, &c, &none, &expired, now()),
            Verdict::Alert { .. }
        ));
        let today = [entry(Some("CVE-2026-0001"), None, None, Some("2026-11-27"))];
        assert!(matches!(
            decide(&d, &c, &none, &today, now()),
            Verdict::Ignored { .. }
        ));
    }
}
