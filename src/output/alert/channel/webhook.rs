//! A generic JSON webhook: each message POSTed as one JSON document (`version` 1, see
//! `body`), with an optional `Authorization` header. Delivered like Slack: 429 with
//! `Retry-After`, 5xx and timeouts retried with the shared backoff; other 4xx are
//! permanent, with the receiver's answer in the error. The URL and the header are
//! secrets: read from a file or an environment variable, never logged.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::http::post_json;
use super::{Channel, Shared, Spec};
use crate::output::alert::SendError;
use crate::output::alert::compose::{Group, Message};
use crate::secret::Secret;

/// The body's `version`: bumped only when a field changes meaning or goes away.
pub const BODY_VERSION: u32 = 1;
/// Workloads listed per image; more are counted in `more_workloads`.
const MAX_WORKLOADS: usize = 50;
/// Images listed in a digest message; more are counted in `more`.
const DIGEST_TOP: usize = 10;

pub struct Webhook {
    url: Secret,
    authorization: Option<Secret>,
    /// The destination key, part of the message `id`.
    key: String,
    shared: Arc<Shared>,
}

pub fn build(spec: &Spec<'_>, shared: &Arc<Shared>) -> Option<Arc<dyn Channel>> {
    let w = spec.webhook?;
    Some(Arc::new(Webhook {
        url: w.url.get()?.clone(),
        authorization: w.authorization.get().cloned(),
        key: format!("{}:webhook", spec.key_prefix),
        shared: shared.clone(),
    }))
}

impl Channel for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let s = &self.shared;
            let body = body(msg, &s.cluster, &self.key, s.max_findings);
            post_json(
                &s.http,
                &self.url,
                self.authorization.as_ref(),
                &body,
                &s.backoff,
                "JSON webhook",
            )
            .await
        })
    }
}

/// The JSON document for `msg` (documented in README.md, "Alerts → Channels").
pub fn body(msg: &Message, cluster: &str, destination_key: &str, max_findings: usize) -> Value {
    let mut v = json!({
        "version": BODY_VERSION,
        "kind": msg.kind(),
        "cluster": cluster,
        "title": msg.title(),
    });
    let extra = match msg {
        Message::Image(g) => {
            let mut img = image(g, max_findings);
            img["id"] = json!(msg.stable_id(destination_key));
            img
        }
        Message::Digest(groups) => json!({
            "id": msg.stable_id(destination_key),
            "images": groups.iter().take(DIGEST_TOP).map(digest_row).collect::<Vec<_>>(),
            "more": groups.len().saturating_sub(DIGEST_TOP),
        }),
        Message::Test { destination } => json!({
            "title": "trivy-digest test alert",
            "destination": destination,
        }),
    };
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

fn image(g: &Group, max_findings: usize) -> Value {
    let findings: Vec<Value> = g
        .findings
        .iter()
        .take(max_findings)
        .map(|f| {
            json!({
                "id": f.id,
                "family": f.family.as_str(),
                "severity": f.severity.as_str(),
                "score": f.score,
                "package": f.package,
                "installed": f.installed,
                "fixed": f.fixed,
                "title": f.title,
                "link": f.link,
                "path": f.path,
            })
        })
        .collect();
    let workloads: Vec<Value> = g
        .workloads
        .iter()
        .take(MAX_WORKLOADS)
        .map(|w| json!({"namespace": w.namespace, "kind": w.kind, "name": w.name}))
        .collect();
    json!({
        "image": {
            "repository": g.repo,
            "digests": g.images.iter().map(|i| json!({"digest": i.digest, "tag": i.tag})).collect::<Vec<_>>(),
        },
        "namespaces": g.namespaces,
        // Fields added in version 1: where the findings are new, and what CI named it.
        "origin": if g.is_ci() { "ci" } else { "runtime" },
        "ci_artifacts": g.ci_artifacts,
        "findings": findings,
        "more": g.findings.len().saturating_sub(max_findings),
        "workloads": workloads,
        "more_workloads": g.workloads.len().saturating_sub(MAX_WORKLOADS),
        "defectdojo_url": g.dojo_links.first(),
    })
}

fn digest_row(g: &Group) -> Value {
    let counts: serde_json::Map<String, Value> = g
        .counts()
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "repository": g.repo,
        "counts": counts,
        "findings": g.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        "namespaces": g.namespaces,
        "defectdojo_url": g.dojo_links.first(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Severity};
    use crate::output::alert::compose::{AlertFinding, ImageRef, WorkloadRef};

    fn group(findings: usize, workloads: usize) -> Group {
        Group {
            repo: "ghcr.io/org/api".into(),
            images: vec![ImageRef {
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                tag: None,
            }],
            findings: (0..findings)
                .map(|i| AlertFinding {
                    family: Family::Vulnerability,
                    severity: Severity::Critical,
                    id: format!("CVE-2026-{i:04}"),
                    title: "<!channel> \"quoted\"".into(),
                    package: "openssl".into(),
                    installed: "3.0.1".into(),
                    fixed: String::new(),
                    score: None,
                    link: None,
                    path: String::new(),
                })
                .collect(),
            workloads: (0..workloads)
                .map(|i| WorkloadRef {
                    namespace: "shop".into(),
                    kind: "Deployment".into(),
                    name: format!("api-{i}"),
                })
                .collect(),
            namespaces: vec!["shop".into()],
            dojo_links: vec![],
            item_ids: vec![1, 2],
            ci_artifacts: Vec::new(),
            ci_item_ids: Vec::new(),
        }
    }

    #[test]
    fn the_image_body_lists_what_the_message_says_and_counts_the_rest() {
        let msg = Message::Image(group(12, 60));
        let b = body(&msg, "prod", "channel:siem:webhook", 10);
        assert_eq!(b["version"], 1);
        assert_eq!(b["kind"], "image");
        assert_eq!(b["title"], "12 new CRITICAL in ghcr.io/org/api");
        assert_eq!(b["findings"].as_array().map(Vec::len), Some(10));
        assert_eq!(b["more"], 2);
        assert_eq!(b["workloads"].as_array().map(Vec::len), Some(50));
        assert_eq!(b["more_workloads"], 10);
        // Report text is data here, kept verbatim (JSON escapes it).
        assert_eq!(b["findings"][0]["title"], "<!channel> \"quoted\"");
        assert!(b["findings"][0]["link"].is_null());
        assert!(b["image"]["digests"][0]["tag"].is_null());
        assert_eq!(
            b["id"],
            msg.stable_id("channel:siem:webhook"),
            "the same id as a re-send"
        );
        assert_eq!(b["origin"], "runtime");

        // Findings new in CI: said so, with what CI scanned, and another id.
        let mut g = group(1, 0);
        g.item_ids.clear();
        g.ci_item_ids = vec![1, 2];
        g.ci_artifacts = vec!["ghcr.io/org/api:1.4".into()];
        g.namespaces.clear();
        let ci = Message::Image(g);
        let b = body(&ci, "prod", "channel:siem:webhook", 10);
        assert_eq!(b["origin"], "ci");
        assert_eq!(b["ci_artifacts"][0], "ghcr.io/org/api:1.4");
        assert_eq!(b["title"], "1 new CRITICAL in ghcr.io/org/api (seen in CI)");
        assert_ne!(b["id"], msg.stable_id("channel:siem:webhook"));
    }

    #[test]
    fn the_digest_body_keeps_the_top_images() {
        let msg = Message::Digest((0..13).map(|_| group(2, 1)).collect());
        let b = body(&msg, "prod", "k", 10);
        assert_eq!(b["kind"], "digest");
        assert_eq!(b["images"].as_array().map(Vec::len), Some(10));
        assert_eq!(b["more"], 3);
        assert_eq!(b["images"][0]["counts"]["CRITICAL"], 2);
        let t = body(
            &Message::Test {
                destination: "siem (webhook)".into(),
            },
            "prod",
            "k",
            10,
        );
        assert_eq!(t["kind"], "test");
        assert_eq!(t["title"], "trivy-digest test alert");
        assert!(t.get("id").is_none());
    }
}
