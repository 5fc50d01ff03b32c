//! Sample data for `config check`, which renders every message template override against
//! it: alert messages of each kind (an image with a couple of findings, a digest of two
//! images, a test) and a small month's summary. The one place such samples are built.

use crate::model::{Family, Severity};
use crate::output::alert::compose::{AlertFinding, Group, ImageRef, Message, WorkloadRef};
use crate::output::summary::month::Month;
use crate::output::summary::report::{
    AcceptedRow, Capped, CiSplit, Counts, Delta, FamilySection, FixableShare, ImageRow, Mttf,
    NamespaceRow, OldFinding, Scope, SeverityDelta, SubjectRow, Summary, TrendRow,
};

use crate::output::alert::SendError;
use crate::output::alert::channel::{email, slack};
use crate::output::alert::config::AlertTemplates;
use crate::output::summary::config::SummaryTemplates;
use crate::output::summary::render;

pub const CLUSTER: &str = "prod";

fn finding(id: &str, severity: Severity, package: &str, fixed: &str, title: &str) -> AlertFinding {
    AlertFinding {
        family: Family::Vulnerability,
        severity,
        id: id.into(),
        title: title.into(),
        package: package.into(),
        installed: "3.0.1".into(),
        fixed: fixed.into(),
        score: Some(9.8),
        link: Some(format!(
            "https://avd.aquasec.com/nvd/{}",
            id.to_ascii_lowercase()
        )),
        path: String::new(),
    }
}

fn group(repo: &str, namespace: &str, with_dojo: bool) -> Group {
    Group {
        repo: repo.into(),
        images: vec![ImageRef {
            digest: Some(format!("sha256:{}", "4f".repeat(32))),
            tag: Some("1.4.2".into()),
        }],
        findings: vec![
            finding(
                "CVE-2026-0001",
                Severity::Critical,
                "openssl",
                "3.0.9",
                "openssl: buffer overflow in X.509 <name> checking & more",
            ),
            AlertFinding {
                score: None,
                link: None,
                ..finding(
                    "CVE-2026-0002",
                    Severity::High,
                    "zlib",
                    "",
                    "zlib: heap overflow in inflate",
                )
            },
        ],
        workloads: vec![
            WorkloadRef {
                namespace: namespace.into(),
                kind: "Deployment".into(),
                name: "api".into(),
            },
            WorkloadRef {
                namespace: namespace.into(),
                kind: "CronJob".into(),
                name: "nightly-report".into(),
            },
        ],
        namespaces: vec![namespace.into()],
        dojo_links: if with_dojo {
            vec!["https://defectdojo.example.com/test/42".into()]
        } else {
            Vec::new()
        },
        item_ids: vec![1, 2],
        ci_artifacts: Vec::new(),
        ci_item_ids: Vec::new(),
    }
}

/// One message of each kind a template must handle.
pub fn alert_messages() -> Vec<Message> {
    vec![
        Message::Image(group("ghcr.io/example/api", "shop", true)),
        Message::Digest(vec![
            group("ghcr.io/example/api", "shop", true),
            group("docker.io/library/nginx", "edge", false),
        ]),
        Message::Test {
            destination: "channel security".into(),
        },
    ]
}

fn counts(critical: u64, high: u64, medium: u64, low: u64) -> Counts {
    Counts {
        critical,
        high,
        medium,
        low,
        unknown: 0,
    }
}

fn capped<T>(items: Vec<T>, more: usize) -> Capped<T> {
    Capped { items, more }
}

/// A small month: two images in two namespaces, one accepted risk, one secret.
pub fn summary(scope: Scope) -> Summary {
    let month = Month {
        year: 2026,
        month: 10,
    };
    let open = counts(3, 5, 12, 4);
    let before = counts(4, 5, 10, 4);
    let changes = [
        (Severity::Critical, "Critical", "critical"),
        (Severity::High, "High", "high"),
        (Severity::Medium, "Medium", "medium"),
        (Severity::Low, "Low", "low"),
        (Severity::Unknown, "Unknown", "unknown"),
    ]
    .into_iter()
    .map(|(s, label, class)| {
        let get = |c: &Counts| match s {
            Severity::Critical => c.critical,
            Severity::High => c.high,
            Severity::Medium => c.medium,
            Severity::Low => c.low,
            Severity::Unknown => c.unknown,
        };
        SeverityDelta {
            label,
            class,
            now: get(&open),
            before: get(&before),
            delta: Delta(get(&open) as i64 - get(&before) as i64),
        }
    })
    .collect();
    let mut trend = Vec::new();
    let mut m = month;
    for _ in 0..5 {
        m = m.prev();
    }
    for i in 0..6u64 {
        trend.push(TrendRow {
            month: m,
            label: format!("{} {}", m.short_name(), m.year),
            open: counts(3 + i % 2, 5, 10 + i, 4),
            new: 2 + i,
            fixed: 1 + i,
            pct_critical: 15,
            pct_high: 20,
            pct_other: 55,
            pct_rest: 10,
        });
        m = m.next();
    }
    let (scope_label, team_namespaces) = match &scope {
        Scope::Cluster => ("whole cluster".to_owned(), Vec::new()),
        Scope::Team(t) => (format!("team {t}"), vec!["shop".to_owned()]),
        Scope::OneCluster(c) => (format!("cluster {c}"), Vec::new()),
    };
    Summary {
        cluster: CLUSTER.into(),
        month,
        month_name: month.long_name(),
        scope,
        scope_label,
        team_namespaces,
        period: "2026-10-01 to 2026-10-31".into(),
        timezone: "Europe/Berlin".into(),
        partial: false,
        generated_at: "2026-11-01 08:00".into(),
        images: 2,
        digests: 3,
        workloads: 4,
        namespaces: 2,
        open,
        previous_month: month.prev().long_name(),
        changes,
        total_delta: Delta(open.total() as i64 - before.total() as i64),
        new: counts(1, 2, 3, 0),
        ci: Some(CiSplit {
            known_before_deploy: counts(1, 0, 1, 0),
            first_seen_at_runtime: counts(0, 2, 2, 0),
        }),
        fixed: counts(2, 2, 1, 0),
        reopened: 1,
        trend,
        mttf: vec![
            Mttf {
                label: "Critical",
                fixed: 2,
                mean_days: Some("6.5".into()),
            },
            Mttf {
                label: "High",
                fixed: 0,
                mean_days: None,
            },
        ],
        oldest_criticals: capped(
            vec![OldFinding {
                id: "CVE-2026-0001".into(),
                title: "openssl: buffer overflow in X.509 <name> checking".into(),
                package: "openssl".into(),
                installed: "3.0.1".into(),
                fixed_version: "3.0.9".into(),
                subject: "ghcr.io/example/api".into(),
                family: "vulnerability",
                age_days: 41,
                first_seen: "2026-09-20".into(),
                link: Some("https://defectdojo.example.com/test/42".into()),
            }],
            2,
        ),
        top_images: capped(
            vec![
                ImageRow {
                    repository: "ghcr.io/example/api".into(),
                    digests: capped(vec!["sha256:4f4f4f4f4f4f".into()], 1),
                    workloads: capped(vec!["shop/Deployment/api".into()], 0),
                    namespaces: vec!["shop".into()],
                    open: counts(2, 3, 7, 2),
                    fixable: 4,
                    link: Some("https://defectdojo.example.com/test/42".into()),
                },
                ImageRow {
                    repository: "docker.io/library/nginx".into(),
                    digests: capped(vec!["sha256:0a0a0a0a0a0a".into()], 0),
                    workloads: capped(Vec::new(), 0),
                    namespaces: vec!["edge".into()],
                    open: counts(1, 2, 5, 2),
                    fixable: 1,
                    link: None,
                },
            ],
            0,
        ),
        top_namespaces: capped(
            vec![
                NamespaceRow {
                    name: "shop".into(),
                    critical: 2,
                    high: 3,
                    images: 1,
                },
                NamespaceRow {
                    name: "edge".into(),
                    critical: 1,
                    high: 2,
                    images: 1,
                },
            ],
            0,
        ),
        fixable: FixableShare {
            open: 24,
            fixable: 10,
            percent: 42,
            open_critical_high: 8,
            fixable_critical_high: 5,
            percent_critical_high: 63,
        },
        accepted: capped(
            vec![AcceptedRow {
                state: "risk accepted",
                severity: "High",
                severity_class: "high",
                id: "CVE-2025-1111".into(),
                title: "curl: cookie leak".into(),
                subject: "docker.io/library/nginx".into(),
                link: None,
            }],
            0,
        ),
        accepted_counts: vec![("risk accepted", 1)],
        sections: vec![FamilySection {
            family: Family::Secret,
            title: "Exposed secrets",
            subject_noun: "image",
            open: counts(1, 0, 0, 0),
            delta: Delta(1),
            new: 1,
            fixed: 0,
            top: capped(
                vec![SubjectRow {
                    subject: "ghcr.io/example/api".into(),
                    open: counts(1, 0, 0, 0),
                    link: None,
                }],
                0,
            ),
        }],
    }
}

/// `config check`: renders every configured override against the samples (each message
/// kind; the summary of the cluster and of a team). Each error names the config key, the
/// file and the line, and the sample it failed on.
pub fn check_templates(alerts: &AlertTemplates, summary: &SummaryTemplates) -> Vec<String> {
    let mut errors: Vec<String> = Vec::new();
    let mut push = |e: String, on: &str| {
        // One mistake fails every sample alike: say it once.
        if !errors.iter().any(|x| x.starts_with(&e)) {
            errors.push(format!("{e} (sample {on})"));
        }
    };
    for m in alert_messages() {
        let on = format!("{} message", m.kind());
        if let Some(f) = &alerts.slack {
            let r = f
                .get()
                .map_err(|e| SendError::Permanent(e.to_string()))
                .and_then(|t| slack::custom_payload(&m, CLUSTER, 10, t));
            if let Err(e) = r {
                push(e.to_string(), &on);
            }
        }
        if alerts.email_html.is_some() || alerts.email_text.is_some() {
            let to = ["security@example.com".to_owned()];
            if let Err(e) =
                email::render_with(&m, CLUSTER, &to, "channel:security:email", 10, alerts)
            {
                push(e.to_string(), &on);
            }
        }
    }
    if !summary.is_empty() {
        for scope in [Scope::Cluster, Scope::Team("payments".into())] {
            let on = format!("{} summary", scope.id());
            let s = self::summary(scope);
            for r in [
                render::html_with(&s, summary),
                render::text_with(&s, summary),
            ] {
                if let Err(e) = r {
                    push(format!("{e:#}"), &on);
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    /// The built-in templates render the sample: it has every field they read.
    #[test]
    fn built_in_templates_render_the_samples() {
        use crate::output::summary::render;
        for scope in [super::Scope::Cluster, super::Scope::Team("payments".into())] {
            let s = super::summary(scope);
            assert!(
                render::html(&s)
                    .expect("html")
                    .contains("ghcr.io/example/api")
            );
            assert!(render::text(&s).expect("text").contains("CVE-2026-0001"));
        }
        for m in super::alert_messages() {
            crate::output::alert::channel::email::render(&m, "prod", &[], "k", 10).expect("email");
        }
    }
}
