//! What a summary override template (`summary.templates.html`, `.text`) reads: the
//! month's numbers as a stable, documented structure (README, "Message templates"),
//! built from `report::Summary` and never the internal types themselves.

use serde::Serialize;

use super::report::{self, Capped, Scope, Summary};

#[derive(Debug, Clone, Serialize)]
pub struct SummaryContext {
    pub cluster: String,
    /// `2026-10`.
    pub month: String,
    /// `October 2026`.
    pub month_name: String,
    /// `cluster` or `team`.
    pub scope: &'static str,
    /// The team's name (a team view), else none.
    pub team: Option<String>,
    /// `whole cluster` or `team payments`.
    pub scope_label: String,
    /// The team's namespaces (empty for the cluster).
    pub team_namespaces: Vec<String>,
    /// `2026-10-01 to 2026-10-31`.
    pub period: String,
    pub timezone: String,
    /// The month is not over: numbers are to date.
    pub partial: bool,
    pub generated_at: String,
    /// The mail's subject.
    pub subject: String,
    /// Image repositories, digests, workloads and namespaces seen in the month.
    pub images: u64,
    pub digests: u64,
    pub workloads: u64,
    pub namespaces: u64,
    /// Open vulnerabilities at month end (triaged ones left out).
    pub open: Counts,
    /// `September 2026`.
    pub previous_month: String,
    /// Open at month end minus open at the previous month's end.
    pub total_delta: i64,
    /// Per severity, critical first.
    pub changes: Vec<Change>,
    pub new: Counts,
    pub fixed: Counts,
    pub reopened: u64,
    /// Six months, oldest first.
    pub trend: Vec<TrendMonth>,
    /// Mean time to fix, critical then high.
    pub mttf: Vec<TimeToFix>,
    pub fixable: Fixable,
    pub oldest_criticals: List<OldFinding>,
    pub top_images: List<Image>,
    pub top_namespaces: List<Namespace>,
    /// Findings triaged in DefectDojo (risk accepted, false positive, out of scope).
    pub accepted: List<Accepted>,
    pub accepted_counts: Vec<StateCount>,
    /// The other report families (secrets, config audit, …).
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
    pub total: u64,
}

impl From<report::Counts> for Counts {
    fn from(c: report::Counts) -> Counts {
        Counts {
            critical: c.critical,
            high: c.high,
            medium: c.medium,
            low: c.low,
            unknown: c.unknown,
            total: c.total(),
        }
    }
}

/// A top list: `items`, and how many more were left out.
#[derive(Debug, Clone, Serialize)]
pub struct List<T> {
    pub items: Vec<T>,
    pub more: usize,
}

fn list<A, T>(c: &Capped<A>, f: impl Fn(&A) -> T) -> List<T> {
    List {
        items: c.items.iter().map(f).collect(),
        more: c.more,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `Critical`, `High`, ….
    pub severity: &'static str,
    pub now: u64,
    pub before: u64,
    pub delta: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendMonth {
    /// `2026-10`.
    pub month: String,
    /// `Oct 2026`.
    pub label: String,
    pub open: Counts,
    pub new: u64,
    pub fixed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeToFix {
    pub severity: &'static str,
    pub fixed: u64,
    /// Mean days with one decimal (`12.5`); none when nothing was fixed.
    pub mean_days: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fixable {
    pub open: u64,
    pub fixable: u64,
    pub percent: u32,
    pub open_critical_high: u64,
    pub fixable_critical_high: u64,
    pub percent_critical_high: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct OldFinding {
    pub id: String,
    pub title: String,
    pub package: String,
    pub installed: String,
    pub fixed_version: String,
    /// The image repository or resource.
    pub subject: String,
    pub family: &'static str,
    pub age_days: i64,
    /// `2026-03-02`.
    pub first_seen: String,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub repository: String,
    pub digests: List<String>,
    pub workloads: List<String>,
    pub namespaces: Vec<String>,
    pub open: Counts,
    pub fixable: u64,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    pub name: String,
    pub critical: u64,
    pub high: u64,
    pub images: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// `risk accepted`, `false positive`, `out of scope`.
    pub state: &'static str,
    pub severity: &'static str,
    pub id: String,
    pub title: String,
    pub subject: String,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    pub state: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// `secret`, `config-audit`, `rbac`, `infra`, `compliance`.
    pub family: &'static str,
    /// `Exposed secrets`.
    pub title: &'static str,
    /// What a subject of this family is: `image`, `resource`, `report`.
    pub subject_noun: &'static str,
    pub open: Counts,
    pub delta: i64,
    pub new: u64,
    pub fixed: u64,
    pub top: List<Subject>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    pub subject: String,
    pub open: Counts,
    pub link: Option<String>,
}

impl From<&Summary> for SummaryContext {
    fn from(s: &Summary) -> SummaryContext {
        SummaryContext {
            cluster: s.cluster.clone(),
            month: s.month.to_string(),
            month_name: s.month_name.clone(),
            scope: match s.scope {
                Scope::Cluster => "cluster",
                Scope::Team(_) => "team",
                Scope::OneCluster(_) => "one_cluster",
            },
            team: match &s.scope {
                Scope::Cluster | Scope::OneCluster(_) => None,
                Scope::Team(t) => Some(t.clone()),
            },
            scope_label: s.scope_label.clone(),
            team_namespaces: s.team_namespaces.clone(),
            period: s.period.clone(),
            timezone: s.timezone.clone(),
            partial: s.partial,
            generated_at: s.generated_at.clone(),
            subject: s.subject(),
            images: s.images,
            digests: s.digests,
            workloads: s.workloads,
            namespaces: s.namespaces,
            open: s.open.into(),
            previous_month: s.previous_month.clone(),
            total_delta: s.total_delta.0,
            changes: s
                .changes
                .iter()
                .map(|c| Change {
                    severity: c.label,
                    now: c.now,
                    before: c.before,
                    delta: c.delta.0,
                })
                .collect(),
            new: s.new.into(),
            fixed: s.fixed.into(),
            reopened: s.reopened,
            trend: s
                .trend
                .iter()
                .map(|t| TrendMonth {
                    month: t.month.to_string(),
                    label: t.label.clone(),
                    open: t.open.into(),
                    new: t.new,
                    fixed: t.fixed,
                })
                .collect(),
            mttf: s
                .mttf
                .iter()
                .map(|m| TimeToFix {
                    severity: m.label,
                    fixed: m.fixed,
                    mean_days: m.mean_days.clone(),
                })
                .collect(),
            fixable: Fixable {
                open: s.fixable.open,
                fixable: s.fixable.fixable,
                percent: s.fixable.percent,
                open_critical_high: s.fixable.open_critical_high,
                fixable_critical_high: s.fixable.fixable_critical_high,
                percent_critical_high: s.fixable.percent_critical_high,
            },
            oldest_criticals: list(&s.oldest_criticals, |f| OldFinding {
                id: f.id.clone(),
                title: f.title.clone(),
                package: f.package.clone(),
                installed: f.installed.clone(),
                fixed_version: f.fixed_version.clone(),
                subject: f.subject.clone(),
                family: f.family,
                age_days: f.age_days,
                first_seen: f.first_seen.clone(),
                link: f.link.clone(),
            }),
            top_images: list(&s.top_images, |i| Image {
                repository: i.repository.clone(),
                digests: list(&i.digests, String::clone),
                workloads: list(&i.workloads, String::clone),
                namespaces: i.namespaces.clone(),
                open: i.open.into(),
                fixable: i.fixable,
                link: i.link.clone(),
            }),
            top_namespaces: list(&s.top_namespaces, |n| Namespace {
                name: n.name.clone(),
                critical: n.critical,
                high: n.high,
                images: n.images,
            }),
            accepted: list(&s.accepted, |a| Accepted {
                state: a.state,
                severity: a.severity,
                id: a.id.clone(),
                title: a.title.clone(),
                subject: a.subject.clone(),
                link: a.link.clone(),
            }),
            accepted_counts: s
                .accepted_counts
                .iter()
                .map(|(state, count)| StateCount {
                    state,
                    count: *count,
                })
                .collect(),
            sections: s
                .sections
                .iter()
                .map(|sec| Section {
                    family: sec.family.as_str(),
                    title: sec.title,
                    subject_noun: sec.subject_noun,
                    open: sec.open.into(),
                    delta: sec.delta.0,
                    new: sec.new,
                    fixed: sec.fixed,
                    top: list(&sec.top, |r| Subject {
                        subject: r.subject.clone(),
                        open: r.open.into(),
                        link: r.link.clone(),
                    }),
                })
                .collect(),
        }
    }
}
