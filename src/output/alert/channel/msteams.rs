//! Microsoft Teams: incoming webhooks (Office 365 connectors) and their replacement,
//! Workflows' "Post to a channel when a webhook request is received". Both take a
//! `message` whose one attachment is an Adaptive Card.
//!
//! What the services do, as documented or reported (sources in the comments):
//! - A message is at most 28 KB, larger ones are refused ("Create Incoming Webhooks",
//!   learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook;
//!   Workflows' actions fail with "Request Entity too large", learn.microsoft.com/connectors/teams).
//! - More than 4 requests a second are throttled, with HTTP 429 (same page).
//! - Workflows renders Adaptive Cards up to version 1.4 only: 1.5 shows "this card couldn't
//!   be displayed" (github.com/microsoft/AdaptiveCards/issues/8965, /7676).
//! - Workflows answers 202 Accepted with no body; classic connectors answer 200 and `1` on
//!   success, but also 200 with an error text for what they consider retryable, e.g.
//!   "Microsoft Teams endpoint returned HTTP error 429" (github.com/MicrosoftDocs/msteams-docs
//!   issues 9698, 7425). A bad card is a 400 ("Bad payload received by generic incoming
//!   webhook").
//! - TextBlock text and FactSet facts are Markdown (bold, italic, lists, `[title](url)`);
//!   RichTextBlock's TextRuns are not ("Text features", learn.microsoft.com/adaptive-cards).
//!   So every text here is a TextRun: report text (titles, packages, image names) can
//!   neither format nor link, and needs no escape that some clients would show verbatim
//!   (backslash escapes render inconsistently on mobile: AdaptiveCards issue 5590).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::http::{Success, post_json_judged};
use super::slack::truncate;
use super::{Channel, Shared, Spec};
use crate::output::alert::SendError;
use crate::output::alert::compose::{AlertFinding, Group, Message, counts_text, join_limited};
use crate::secret::Secret;

/// The services' documented limit on the serialized message (28 KB).
pub const MAX_PAYLOAD_BYTES: usize = 28 * 1024;
/// What a card may take: below the limit, because the services count the message as
/// they store it, and users report refusals from about 21 KB (rubydoc.info msteams_hermes).
pub const PAYLOAD_BUDGET: usize = 20_000;
/// The highest version Workflows renders (see the module comment).
pub const CARD_VERSION: &str = "1.4";
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
/// Images listed in a digest card.
const DIGEST_TOP: usize = 10;
/// Workloads listed per image; more are counted.
const MAX_WORKLOADS: usize = 15;

/// Report text as a TextRun's text: control characters (line breaks in a title) become
/// spaces, and the length is bounded.
fn clean(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(s.trim(), max)
}

/// One TextRun. Never Markdown, whatever the text.
#[derive(Default)]
struct Run {
    text: String,
    bold: bool,
    subtle: bool,
    italic: bool,
    size: Option<&'static str>,
    /// An http(s) URL opened on click.
    link: Option<String>,
}

fn run(text: impl Into<String>) -> Run {
    Run {
        text: text.into(),
        ..Run::default()
    }
}

impl Run {
    fn bold(mut self) -> Run {
        self.bold = true;
        self
    }
    fn subtle(mut self) -> Run {
        self.subtle = true;
        self
    }
    fn italic(mut self) -> Run {
        self.italic = true;
        self
    }
    fn size(mut self, s: &'static str) -> Run {
        self.size = Some(s);
        self
    }
    fn link(mut self, url: Option<&str>) -> Run {
        self.link = url.and_then(http_url);
        self
    }
    fn json(self) -> Value {
        let mut v = json!({"type": "TextRun", "text": self.text});
        if self.bold {
            v["weight"] = json!("Bolder");
        }
        if self.subtle {
            v["isSubtle"] = json!(true);
        }
        if self.italic {
            v["italic"] = json!(true);
        }
        if let Some(s) = self.size {
            v["size"] = json!(s);
        }
        if let Some(u) = self.link {
            v["selectAction"] = json!({"type": "Action.OpenUrl", "url": u});
        }
        v
    }
}

/// An http(s) URL of a sane length, or none: a cut URL would be broken, a long one is
/// dropped (the text stays).
fn http_url(u: &str) -> Option<String> {
    let u = u.trim();
    ((u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 500
        && !u.chars().any(|c| c.is_control() || c == ' '))
    .then(|| u.to_owned())
}

/// One line of runs.
fn line(runs: Vec<Run>) -> Value {
    json!({
        "type": "RichTextBlock",
        "inlines": runs.into_iter().map(Run::json).collect::<Vec<_>>(),
    })
}

/// A line set apart from the one above it.
fn separated(mut v: Value) -> Value {
    v["separator"] = json!(true);
    v["spacing"] = json!("Medium");
    v
}

fn fact(label: &'static str, value: String) -> Value {
    line(vec![run(format!("{label}: ")).bold(), run(value)])
}

fn finding_lines(f: &AlertFinding) -> Vec<Value> {
    let mut head = vec![
        run(clean(&f.id, 100)).bold().link(f.link.as_deref()),
        run(format!("  {}", f.severity)),
    ];
    if let Some(score) = f.score {
        head.push(run(format!(" · {score:.1}")));
    }
    let mut out = vec![separated(line(head))];
    let versions = f.versions();
    if !versions.is_empty() {
        out.push(line(vec![run(clean(&versions, 300))]));
    }
    if !f.title.is_empty() {
        out.push(line(vec![run(clean(&f.title, 400)).italic().subtle()]));
    }
    out
}

fn image_body(g: &Group, cluster: &str, shown: usize) -> Vec<Value> {
    let mut body = vec![line(vec![
        run(clean(&g.title(), 300)).bold().size("Medium"),
    ])];
    let digests: Vec<String> = g
        .images
        .iter()
        .map(|i| match &i.tag {
            Some(t) => format!("{} (tag {})", i.short_digest(), clean(t, 80)),
            None => i.short_digest(),
        })
        .map(|d| clean(&d, 120))
        .collect();
    let namespaces: Vec<String> = g.namespace_labels().map(|n| clean(n, 63)).collect();
    body.push(fact("Cluster", clean(cluster, 200)));
    body.push(fact("Image", clean(&g.repo, 500)));
    body.push(fact(
        if digests.len() > 1 {
            "Digests"
        } else {
            "Digest"
        },
        if digests.is_empty() {
            "(none recorded)".into()
        } else {
            join_limited(&digests, 5)
        },
    ));
    body.push(fact("Namespaces", join_limited(&namespaces, 20)));
    for f in g.findings.iter().take(shown) {
        body.extend(finding_lines(f));
    }
    if g.findings.len() > shown {
        body.push(separated(line(vec![
            run(format!(
                "and {} more new findings",
                g.findings.len() - shown
            ))
            .subtle(),
        ])));
    }
    if !g.workloads.is_empty() {
        let n = g.workloads.len();
        body.push(separated(line(vec![
            run(format!(
                "Running in {n} workload{}",
                if n == 1 { "" } else { "s" }
            ))
            .bold(),
        ])));
        for w in g.workloads.iter().take(MAX_WORKLOADS) {
            body.push(line(vec![run(format!("• {}", clean(&w.to_string(), 120)))]));
        }
        if n > MAX_WORKLOADS {
            body.push(line(vec![
                run(format!("and {} more workloads", n - MAX_WORKLOADS)).subtle(),
            ]));
        }
    }
    body
}

fn digest_body(groups: &[Group], title: &str, cluster: &str, shown: usize) -> Vec<Value> {
    let mut body = vec![
        line(vec![run(clean(title, 300)).bold().size("Medium")]),
        line(vec![
            run("More new findings than this channel's hourly message cap in cluster "),
            run(clean(cluster, 200)).bold(),
            run(format!(". The top {} images:", groups.len().min(shown))),
        ]),
    ];
    for g in groups.iter().take(shown) {
        let mut head = vec![
            run(clean(&g.repo, 300)).bold(),
            run(format!(": {}", counts_text(&g.counts()))),
        ];
        if let Some(url) = g.dojo_links.first().and_then(|u| http_url(u)) {
            head.push(run(" · "));
            head.push(run("DefectDojo").link(Some(&url)));
        }
        body.push(separated(line(head)));
        let ids: Vec<String> = g.findings.iter().map(|f| clean(&f.id, 60)).collect();
        body.push(line(vec![run(join_limited(&ids, 8))]));
        if !g.namespaces.is_empty() {
            let ns: Vec<String> = g.namespace_labels().map(|n| clean(n, 63)).collect();
            body.push(line(vec![
                run(format!("in {}", join_limited(&ns, 10))).subtle(),
            ]));
        }
    }
    if groups.len() > shown {
        body.push(separated(line(vec![
            run(format!("and {} more images", groups.len() - shown)).subtle(),
        ])));
    }
    body
}

/// The card for `msg` listing `shown` findings (an image) or images (a digest).
fn card(msg: &Message, cluster: &str, shown: usize) -> Value {
    let title = msg.title();
    let mut body = match msg {
        Message::Image(g) => image_body(g, cluster, shown),
        Message::Digest(groups) => digest_body(groups, &title, cluster, shown),
        Message::Test { destination } => vec![
            line(vec![run("trivy-digest test alert").bold().size("Medium")]),
            line(vec![
                run("Test message from cluster "),
                run(clean(cluster, 200)).bold(),
                run(format!(
                    " for {}. New findings at or above the alert threshold will be posted here.",
                    clean(destination, 200)
                )),
            ]),
        ],
    };
    body.push(separated(line(vec![
        run(format!("trivy-digest · cluster {}", clean(cluster, 200))).subtle(),
    ])));
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        // Teams-specific: use the channel's width rather than a narrow bubble.
        "msteams": {"width": "Full"},
    });
    if let Message::Image(g) = msg
        && let Some(url) = g.dojo_links.first().and_then(|u| http_url(u))
    {
        content["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in DefectDojo", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CARD_CONTENT_TYPE,
            "contentUrl": null,
            "content": content,
        }],
    })
}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// The webhook body: at most `max_findings` findings (or [`DIGEST_TOP`] images), fewer
/// when the card would exceed [`PAYLOAD_BUDGET`]; those left out are counted on the card.
pub fn payload(msg: &Message, cluster: &str, max_findings: usize) -> Value {
    let most = match msg {
        Message::Image(g) => g.findings.len().min(max_findings),
        Message::Digest(groups) => groups.len().min(DIGEST_TOP),
        Message::Test { .. } => 0,
    };
    let full = card(msg, cluster, most);
    if size(&full) <= PAYLOAD_BUDGET {
        return full;
    }
    // The largest count that fits: the size grows with the count.
    let (mut lo, mut hi) = (0usize, most);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if size(&card(msg, cluster, mid)) <= PAYLOAD_BUDGET {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    card(msg, cluster, lo)
}

/// A 2xx is not always an acceptance (see the module comment): Workflows' 202, or a
/// classic connector's 200 with a count (`1`) or nothing, is; a 200 with any other text
/// is the connector's retryable failure.
fn judge(status: u16, body: &str) -> Success {
    if status != 200 || body.is_empty() || body.parse::<u64>().is_ok() {
        Success::Accepted
    } else {
        Success::Retry(body.to_owned())
    }
}

/// A channel's or team route's Teams webhook.
pub struct MsTeams {
    url: Secret,
    shared: Arc<Shared>,
}

pub fn build(spec: &Spec<'_>, shared: &Arc<Shared>) -> Option<Arc<dyn Channel>> {
    let url = spec.msteams.get()?.clone();
    Some(Arc::new(MsTeams {
        url,
        shared: shared.clone(),
    }))
}

impl Channel for MsTeams {
    fn kind(&self) -> &'static str {
        "msteams"
    }

    /// 429, 5xx, network errors and a connector's 200-with-an-error are retried (with
    /// `Retry-After`); other 4xx (400 bad card, 413 too large, 404 removed) are permanent.
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let s = &self.shared;
            let body = payload(msg, &s.cluster, s.max_findings);
            post_json_judged(
                &s.http,
                &self.url,
                None,
                &body,
                &s.backoff,
                "Teams webhook",
                judge,
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Severity};
    use crate::output::alert::compose::{ImageRef, WorkloadRef};

    const HOSTILE: &str = "**bold** _it_ [click](https://evil.example) <b>x</b>\n- list";

    fn finding(i: usize, title: &str) -> AlertFinding {
        AlertFinding {
            family: Family::Vulnerability,
            severity: Severity::Critical,
            id: format!("CVE-2026-{i:04}"),
            title: title.into(),
            package: "openssl".into(),
            installed: "3.0.1".into(),
            fixed: "3.0.9".into(),
            score: Some(9.8),
            link: Some(format!("https://avd.aquasec.com/nvd/cve-2026-{i:04}")),
            path: String::new(),
        }
    }

    fn group(n: usize, workloads: usize) -> Group {
        Group {
            repo: "ghcr.io/org/api".into(),
            images: vec![ImageRef {
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                tag: Some("1.0".into()),
            }],
            findings: (0..n).map(|i| finding(i, HOSTILE)).collect(),
            workloads: (0..workloads)
                .map(|i| WorkloadRef {
                    namespace: "shop".into(),
                    kind: "Deployment".into(),
                    name: format!("api-{i}"),
                })
                .collect(),
            namespaces: vec!["shop".into()],
            dojo_links: vec!["https://dojo.example.com/test/7".into()],
            item_ids: vec![1],
            ci_artifacts: Vec::new(),
            ci_item_ids: Vec::new(),
        }
    }

    /// Every element of the card body: no Markdown-rendering element (TextBlock, FactSet)
    /// anywhere, every text a TextRun.
    fn check_elements(v: &Value, runs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(t) = m.get("type").and_then(Value::as_str) {
                    assert!(
                        !matches!(t, "TextBlock" | "FactSet"),
                        "a Markdown element: {v}"
                    );
                    if t == "TextRun" {
                        runs.push(m["text"].as_str().expect("text").to_owned());
                    }
                }
                m.values().for_each(|x| check_elements(x, runs));
            }
            Value::Array(a) => a.iter().for_each(|x| check_elements(x, runs)),
            _ => {}
        }
    }

    #[test]
    fn the_envelope_is_what_teams_takes() {
        let p = payload(&Message::Image(group(3, 2)), "prod", 10);
        assert_eq!(p["type"], "message");
        let a = &p["attachments"][0];
        assert_eq!(a["contentType"], CARD_CONTENT_TYPE);
        assert!(a["contentUrl"].is_null());
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["version"], "1.4");
        assert_eq!(
            a["content"]["actions"][0]["url"],
            "https://dojo.example.com/test/7"
        );
    }

    #[test]
    fn report_text_is_never_markdown() {
        let mut g = group(2, 1);
        g.repo = format!("ghcr.io/{HOSTILE}");
        let p = payload(&Message::Image(g), "prod [x](https://e.example)", 10);
        let mut runs = Vec::new();
        check_elements(&p, &mut runs);
        assert!(
            runs.iter()
                .any(|r| r == "**bold** _it_ [click](https://evil.example) <b>x</b> - list"),
            "the title, kept verbatim in a TextRun, line break flattened: {runs:?}"
        );
        // The only links are the ones trivy-digest made.
        let json = p.to_string();
        assert!(!json.contains("\"url\":\"https://evil.example"), "{json}");
        assert!(json.contains("\"url\":\"https://avd.aquasec.com/nvd/cve-2026-0000\""));
    }

    #[test]
    fn cards_stay_under_the_limit_and_count_what_is_left_out() {
        let msg = Message::Image(group(500, 500));
        let p = payload(&msg, "prod", 500);
        let n = size(&p);
        assert!(n <= PAYLOAD_BUDGET, "{n} bytes");
        let mut runs = Vec::new();
        check_elements(&p, &mut runs);
        let shown = runs.iter().filter(|r| r.starts_with("CVE-2026-")).count();
        let more: usize = runs
            .iter()
            .find_map(|r| r.strip_prefix("and ")?.strip_suffix(" more new findings"))
            .and_then(|n| n.parse().ok())
            .expect("and N more new findings");
        assert!(shown > 10, "{shown} shown");
        assert_eq!(shown + more, 500, "every finding shown or counted");
        assert!(
            runs.iter().any(|r| r == "and 485 more workloads"),
            "{runs:?}"
        );
        // Hostile lengths and four-byte characters everywhere still fit.
        let long = "𝕏".repeat(10_000);
        let mut g = group(50, 50);
        g.repo = long.clone();
        g.namespaces = (0..100).map(|i| format!("{i}{}", &long[..200])).collect();
        for f in &mut g.findings {
            f.title = long.clone();
            f.id = long.clone();
            f.package = long.clone();
        }
        for w in &mut g.workloads {
            w.name = long.clone();
        }
        let p = payload(&Message::Image(g.clone()), &long, 50);
        assert!(size(&p) <= PAYLOAD_BUDGET, "{}", size(&p));
        let digest = Message::Digest((0..40).map(|_| g.clone()).collect());
        let p = payload(&digest, "prod", 10);
        assert!(size(&p) <= PAYLOAD_BUDGET, "{}", size(&p));
        assert!(p.to_string().contains("more images"));
    }

    #[test]
    fn a_connector_200_with_an_error_text_is_not_an_acceptance() {
        assert_eq!(judge(202, ""), Success::Accepted);
        assert_eq!(judge(200, "1"), Success::Accepted);
        assert_eq!(judge(200, ""), Success::Accepted);
        assert!(matches!(
            judge(
                200,
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429"
            ),
            Success::Retry(_)
        ));
    }
}
