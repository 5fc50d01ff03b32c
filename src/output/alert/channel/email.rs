//! Alert emails: plain text and HTML (askama templates in `templates/alert/`, HTML
//! autoescaped), sent through the shared mailer.

use std::sync::Arc;

use askama::Template;
use futures_util::future::BoxFuture;

use super::{Channel, Shared, Spec};
use crate::mail::{Mail, MailError, Mailer};
use crate::output::alert::SendError;
use crate::output::alert::compose::{Group, Message, counts_text, join_limited};
use crate::output::alert::config::AlertTemplates;
use crate::output::alert::template::AlertContext;
use crate::output::custom_template::TemplateFile;

/// Workloads listed per image; more are counted.
const MAX_WORKLOADS: usize = 50;
const DIGEST_TOP: usize = 10;

pub struct FindingRow {
    pub id: String,
    pub severity: String,
    pub score: String,
    pub versions: String,
    pub title: String,
    pub link: String,
}

/// A template showing a view that its text and HTML parts share: the template reads the
/// view's fields directly.
macro_rules! view_template {
    ($name:ident, $path:tt, $view:ty) => {
        #[derive(Template)]
        #[template(path = $path)]
        struct $name<'a> {
            v: &'a $view,
        }

        impl std::ops::Deref for $name<'_> {
            type Target = $view;
            fn deref(&self) -> &$view {
                self.v
            }
        }
    };
}

view_template!(ImageText, "alert/image.txt", ImageView);
view_template!(ImageHtml, "alert/image.html", ImageView);
view_template!(DigestText, "alert/digest.txt", DigestView);
view_template!(DigestHtml, "alert/digest.html", DigestView);

/// What both image templates show.
pub struct ImageView {
    pub title: String,
    pub cluster: String,
    pub repo: String,
    pub images: Vec<String>,
    pub namespaces: String,
    pub findings: Vec<FindingRow>,
    pub more_findings: usize,
    pub workloads: Vec<String>,
    pub workload_total: usize,
    pub more_workloads: usize,
    pub dojo_link: String,
}

pub struct DigestRow {
    pub repo: String,
    pub counts: String,
    pub ids: String,
    pub namespaces: String,
    pub dojo_link: String,
}

/// What both digest templates show.
pub struct DigestView {
    pub title: String,
    pub cluster: String,
    pub top: Vec<DigestRow>,
    pub more_images: usize,
}

#[derive(Template)]
#[template(path = "alert/test.txt")]
struct TestText<'a> {
    cluster: &'a str,
    destination: &'a str,
}

#[derive(Template)]
#[template(path = "alert/test.html")]
struct TestHtml<'a> {
    cluster: &'a str,
    destination: &'a str,
}

fn namespaces(g: &Group) -> String {
    let ns: Vec<String> = g.namespace_labels().map(str::to_owned).collect();
    join_limited(&ns, 30)
}

pub fn image_view(g: &Group, cluster: &str, max_findings: usize) -> ImageView {
    let findings = g
        .findings
        .iter()
        .take(max_findings)
        .map(|f| FindingRow {
            id: f.id.clone(),
            severity: f.severity.to_string(),
            score: f.score_text(),
            versions: f.versions(),
            title: f.title.chars().take(400).collect(),
            link: f.link.clone().unwrap_or_default(),
        })
        .collect();
    ImageView {
        title: g.title(),
        cluster: cluster.to_owned(),
        repo: g.repo.clone(),
        images: g
            .images
            .iter()
            .map(|i| match (&i.digest, &i.tag) {
                (Some(d), Some(t)) => format!("{d} (tag {t})"),
                (Some(d), None) => d.clone(),
                (None, Some(t)) => format!("(no digest, tag {t})"),
                (None, None) => "(no digest)".into(),
            })
            .collect(),
        namespaces: namespaces(g),
        findings,
        more_findings: g.findings.len().saturating_sub(max_findings),
        workloads: g
            .workloads
            .iter()
            .take(MAX_WORKLOADS)
            .map(|w| w.to_string())
            .collect(),
        workload_total: g.workloads.len(),
        more_workloads: g.workloads.len().saturating_sub(MAX_WORKLOADS),
        dojo_link: g.dojo_links.first().cloned().unwrap_or_default(),
    }
}

fn digest_rows(groups: &[Group]) -> Vec<DigestRow> {
    groups
        .iter()
        .take(DIGEST_TOP)
        .map(|g| {
            let ids: Vec<String> = g.findings.iter().map(|f| f.id.clone()).collect();
            DigestRow {
                repo: g.repo.clone(),
                counts: counts_text(&g.counts()),
                ids: join_limited(&ids, 8),
                namespaces: namespaces(g),
                dojo_link: g.dojo_links.first().cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// The email for `msg` with the built-in templates.
pub fn render(
    msg: &Message,
    cluster: &str,
    to: &[String],
    destination_key: &str,
    max_findings: usize,
) -> Result<Mail, SendError> {
    render_with(
        msg,
        cluster,
        to,
        destination_key,
        max_findings,
        &AlertTemplates::default(),
    )
}

/// The email for `msg`: subject `[cluster] 3 new CRITICAL in registry/repo`; each part
/// from its override in `templates` when configured (the subject stays built-in).
pub fn render_with(
    msg: &Message,
    cluster: &str,
    to: &[String],
    destination_key: &str,
    max_findings: usize,
    templates: &AlertTemplates,
) -> Result<Mail, SendError> {
    let r = |e: askama::Error| SendError::Permanent(format!("rendering the alert email: {e}"));
    let title = msg.title();
    let (subject, text, html) = match msg {
        Message::Image(g) => {
            let v = image_view(g, cluster, max_findings);
            (
                format!("[{cluster}] {title}"),
                ImageText { v: &v }.render().map_err(r)?,
                ImageHtml { v: &v }.render().map_err(r)?,
            )
        }
        Message::Digest(groups) => {
            let v = DigestView {
                title: title.clone(),
                cluster: cluster.to_owned(),
                top: digest_rows(groups),
                more_images: groups.len().saturating_sub(DIGEST_TOP),
            };
            (
                format!("[{cluster}] {title}"),
                DigestText { v: &v }.render().map_err(r)?,
                DigestHtml { v: &v }.render().map_err(r)?,
            )
        }
        Message::Test { destination } => (
            format!("[{cluster}] trivy-digest test alert"),
            TestText {
                cluster,
                destination,
            }
            .render()
            .map_err(r)?,
            TestHtml {
                cluster,
                destination,
            }
            .render()
            .map_err(r)?,
        ),
    };
    let custom = |f: &TemplateFile, part: &str| -> Result<String, SendError> {
        let ctx = AlertContext::new(msg, cluster, max_findings);
        f.get()
            .and_then(|t| t.render(&ctx))
            .map_err(|e| SendError::Permanent(format!("rendering the alert email's {part}: {e}")))
    };
    let text = match &templates.email_text {
        Some(f) => custom(f, "text part")?,
        None => text,
    };
    let html = match &templates.email_html {
        Some(f) => custom(f, "HTML part")?,
        None => html,
    };
    // Subjects are one line whatever the report data holds.
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(250)
        .collect();
    Ok(Mail {
        to: to.to_vec(),
        subject,
        text,
        html,
        message_id: match msg {
            Message::Test { .. } => None,
            _ => Some(msg.stable_id(destination_key)),
        },
    })
}

pub async fn send(mailer: &Mailer, mail: &Mail) -> Result<(), SendError> {
    mailer.send(mail).await.map_err(|e| match e {
        MailError::Transient(_) => SendError::Transient(e.to_string()),
        _ => SendError::Permanent(e.to_string()),
    })
}

/// An email route: its recipients, through the shared mailer.
pub struct Email {
    to: Vec<String>,
    /// The destination key, part of the stable Message-ID.
    key: String,
    shared: Arc<Shared>,
}

/// Team routes without an `smtp` section have no mailer and so no email channel
/// (channels with recipients need one: a configuration error).
pub fn build(spec: &Spec<'_>, shared: &Arc<Shared>) -> Option<Arc<dyn Channel>> {
    if spec.email.is_empty() || shared.mailer.is_none() {
        return None;
    }
    Some(Arc::new(Email {
        to: spec.email.to_vec(),
        key: format!("{}:email", spec.key_prefix),
        shared: shared.clone(),
    }))
}

impl Channel for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let s = &self.shared;
            let Some(mailer) = &s.mailer else {
                return Err(SendError::Permanent("no smtp section to send with".into()));
            };
            let mail = render_with(
                msg,
                &s.cluster,
                &self.to,
                &self.key,
                s.max_findings,
                &s.templates,
            )?;
            send(mailer, &mail).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Severity};
    use crate::output::alert::compose::{AlertFinding, ImageRef, WorkloadRef};

    fn group() -> Group {
        Group {
            repo: "ghcr.io/org/api".into(),
            images: vec![ImageRef {
                digest: Some(format!("sha256:{}", "b".repeat(64))),
                tag: Some("2.0".into()),
            }],
            findings: vec![AlertFinding {
                family: Family::Vulnerability,
                severity: Severity::Critical,
                id: "CVE-2026-0001".into(),
                title: "<script>alert(1)</script> & <!channel>".into(),
                package: "openssl".into(),
                installed: "3.0.1".into(),
                fixed: "3.0.9".into(),
                score: Some(9.8),
                link: Some("https://avd.aquasec.com/nvd/cve-2026-0001?a=1&b=\"x\"".into()),
                path: String::new(),
            }],
            workloads: vec![WorkloadRef {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: "api".into(),
            }],
            namespaces: vec!["shop".into()],
            dojo_links: vec!["https://dojo.example.com/test/3".into()],
            item_ids: vec![4, 5],
            ci_artifacts: Vec::new(),
            ci_item_ids: Vec::new(),
        }
    }

    fn image_mail() -> Mail {
        render(
            &Message::Image(group()),
            "prod",
            &["sec@example.com".into()],
            "channel:sec:email",
            10,
        )
        .expect("render")
    }

    #[test]
    fn image_email_escapes_html_and_keeps_text_plain() {
        let m = image_mail();
        assert_eq!(m.subject, "[prod] 1 new CRITICAL in ghcr.io/org/api");
        assert!(m.html.contains("&#60;script&#62;"), "{}", m.html);
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(m.html.contains("b=&#34;x&#34;\""), "{}", m.html);
        assert!(m.text.contains("<script>alert(1)</script>"), "{}", m.text);
        assert!(m.text.contains("openssl 3.0.1 → 3.0.9"), "{}", m.text);
        assert!(m.text.contains("shop/Deployment/api"), "{}", m.text);
        assert!(
            m.text
                .contains("DefectDojo: https://dojo.example.com/test/3"),
            "{}",
            m.text
        );
        let again = image_mail();
        assert_eq!(m.message_id, again.message_id, "stable across a re-send");
    }

    #[test]
    fn digest_email() {
        let groups: Vec<Group> = (0..12).map(|_| group()).collect();
        let m = render(
            &Message::Digest(groups),
            "prod",
            &["a@example.com".into()],
            "k",
            10,
        )
        .expect("render");
        assert_eq!(m.subject, "[prod] 12 images with 12 new CRITICAL findings");
        assert!(m.text.contains("and 2 more images"), "{}", m.text);
        assert!(m.html.contains("and 2 more images"));
    }
}
