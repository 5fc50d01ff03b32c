//! Slack incoming webhooks: Block Kit payloads within Slack's limits, report text escaped
//! so it can neither mention (`<!channel>`) nor link (`<http://evil|click>`), and delivery
//! with capped backoff honouring `Retry-After`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::http::post_json;
use super::{Channel, Shared, Spec};
use crate::output::alert::SendError;
use crate::output::alert::compose::{Group, Message, join_limited};
use crate::output::alert::template::AlertContext;
use crate::output::custom_template::CustomTemplate;
use crate::secret::Secret;

pub use super::mrkdwn::{escape, link};

/// Slack's documented limits (Block Kit reference).
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Findings listed as their own section; more are counted.
const MAX_FINDING_SECTIONS: usize = 20;
/// Images listed in a digest message.
const DIGEST_TOP: usize = 10;

/// At most `max` characters, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut o: String = s.chars().take(max.saturating_sub(1)).collect();
    o.push('…');
    o
}

/// Plain text (headers) is not parsed for mentions or links; angle brackets are still
/// dropped so that no field of the payload carries `<!channel>` verbatim.
fn plain(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_control() && *c != '<' && *c != '>')
        .collect();
    truncate(cleaned.trim(), max)
}

/// Joins escaped lines up to `max` characters; the rest is counted as "and N more".
fn lines_within(lines: &[String], max: usize, what: &str) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let more = format!("\nand {} more {what}", lines.len() - i);
        if out.chars().count() + l.chars().count() + 1 + more.chars().count() > max {
            out.push_str(more.trim_start_matches('\n'));
            return out;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(l);
    }
    out
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&text, MAX_SECTION_TEXT)})
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": mrkdwn(text)})
}

fn context(texts: Vec<String>) -> Value {
    let elements: Vec<Value> = texts
        .into_iter()
        .take(MAX_CONTEXT_ELEMENTS)
        .map(mrkdwn)
        .collect();
    json!({"type": "context", "elements": elements})
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": plain(text, MAX_HEADER_TEXT), "emoji": true}})
}

fn finding_text(f: &crate::output::alert::compose::AlertFinding) -> String {
    let id = truncate(&f.id, 100);
    // An absurdly long link is dropped rather than cut (a cut link would be broken): at
    // most 500 bytes, escaped to at most 2500, stays whole within the section's 3000.
    let id = match &f.link {
        Some(u) if u.len() <= 500 => link(u, &id),
        _ => escape(&id),
    };
    let mut s = format!("*{id}*  {}", f.severity);
    if let Some(score) = f.score {
        s.push_str(&format!(" · {score:.1}"));
    }
    let versions = f.versions();
    if !versions.is_empty() {
        s.push_str(&format!("\n{}", escape(&truncate(&versions, 300))));
    }
    if !f.title.is_empty() {
        s.push_str(&format!("\n_{}_", escape(&truncate(&f.title, 400))));
    }
    s
}

fn image_blocks(g: &Group, cluster: &str, max_findings: usize) -> Vec<Value> {
    let mut blocks = vec![header(&g.title())];
    let images: Vec<String> = g
        .images
        .iter()
        .map(|i| match &i.tag {
            Some(t) => format!(
                "`{}` (tag {})",
                escape(&i.short_digest()),
                escape(&truncate(t, 80))
            ),
            None => format!("`{}`", escape(&i.short_digest())),
        })
        .collect();
    let namespaces: Vec<String> = g.namespace_labels().map(escape).collect();
    let field = |label: &str, value: String| json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{value}"), MAX_FIELD_TEXT)});
    let mut fields = vec![
        field("Cluster", escape(&truncate(cluster, 200))),
        field("Image", escape(&truncate(&g.repo, 500))),
        field(
            if images.len() > 1 {
                "Digests"
            } else {
                "Digest"
            },
            if images.is_empty() {
                "(none recorded)".into()
            } else {
                join_limited(&images, 5)
            },
        ),
        field("Namespaces", join_limited(&namespaces, 20)),
    ];
    fields.truncate(MAX_FIELDS);
    blocks.push(json!({"type": "section", "fields": fields}));
    blocks.push(json!({"type": "divider"}));
    let shown = max_findings.min(MAX_FINDING_SECTIONS);
    for f in g.findings.iter().take(shown) {
        blocks.push(section(finding_text(f)));
    }
    if g.findings.len() > shown {
        blocks.push(context(vec![format!(
            "and {} more new findings",
            g.findings.len() - shown
        )]));
    }
    let workloads: Vec<String> = g
        .workloads
        .iter()
        .map(|w| format!("• {}", escape(&w.to_string())))
        .collect();
    if !workloads.is_empty() {
        let head = format!(
            "*Running in {} workload{}*\n",
            workloads.len(),
            if workloads.len() == 1 { "" } else { "s" }
        );
        let body = lines_within(&workloads, MAX_SECTION_TEXT - head.len(), "workloads");
        blocks.push(section(format!("{head}{body}")));
    }
    if let Some(url) = g.dojo_links.first() {
        blocks.push(section(link(url, "Open in DefectDojo")));
    }
    blocks
}

fn digest_blocks(groups: &[Group], title: &str, cluster: &str) -> Vec<Value> {
    let mut blocks = vec![
        header(title),
        section(format!(
            "More new findings than this channel's hourly message cap in cluster *{}*. The top {} images:",
            escape(&truncate(cluster, 200)),
            groups.len().min(DIGEST_TOP)
        )),
    ];
    for g in groups.iter().take(DIGEST_TOP) {
        let ids: Vec<String> = g
            .findings
            .iter()
            .map(|f| escape(&truncate(&f.id, 60)))
            .collect();
        let ns: Vec<String> = g.namespaces.iter().map(|n| escape(n)).collect();
        let mut text = format!(
            "*{}*: {}\n{}",
            escape(&truncate(&g.repo, 300)),
            crate::output::alert::compose::counts_text(&g.counts()),
            join_limited(&ids, 8)
        );
        if !ns.is_empty() {
            text.push_str(&format!("\nin {}", join_limited(&ns, 10)));
        }
        if let Some(url) = g.dojo_links.first() {
            // Appended after the cut, so hostile report text cannot push it out half-way.
            let l = format!(" · {}", link(url, "DefectDojo"));
            text = truncate(&text, MAX_SECTION_TEXT.saturating_sub(l.chars().count()));
            text.push_str(&l);
        }
        blocks.push(section(text));
    }
    if groups.len() > DIGEST_TOP {
        blocks.push(context(vec![format!(
            "and {} more images",
            groups.len() - DIGEST_TOP
        )]));
    }
    blocks
}

/// The webhook body: Block Kit blocks and the `text` fallback shown in notifications.
pub fn payload(msg: &Message, cluster: &str, max_findings: usize) -> Value {
    let title = msg.title();
    let mut blocks = match msg {
        Message::Image(g) => image_blocks(g, cluster, max_findings),
        Message::Digest(groups) => digest_blocks(groups, &title, cluster),
        Message::Test { destination } => vec![
            header("trivy-digest test alert"),
            section(format!(
                "Test message from cluster *{}* for {}. New findings at or above the alert threshold will be posted here.",
                escape(&truncate(cluster, 200)),
                escape(destination)
            )),
        ],
    };
    blocks.push(context(vec![format!(
        "trivy-digest · cluster {}",
        escape(&truncate(cluster, 200))
    )]));
    blocks.truncate(MAX_BLOCKS);
    json!({"text": fallback(msg, cluster), "blocks": blocks})
}

/// The `text` fallback shown in notifications.
fn fallback(msg: &Message, cluster: &str) -> Value {
    let text = match msg {
        Message::Test { .. } => format!("[{}] trivy-digest test alert", cluster),
        _ => format!("[{}] {}", cluster, msg.title()),
    };
    Value::String(escape(&truncate(&text, 3000)))
}

/// Splits mrkdwn into sections of at most `MAX_SECTION_TEXT` characters at line breaks
/// (a longer line is cut), at most `max` of them; blank sections (which Slack refuses)
/// are left out.
fn sections_of(text: &str, max: usize) -> Vec<Value> {
    let mut chunks: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut len = 0;
    for line in text.lines() {
        let line = truncate(line, MAX_SECTION_TEXT);
        let n = line.chars().count();
        if len > 0 && len + 1 + n > MAX_SECTION_TEXT {
            chunks.push(std::mem::take(&mut cur));
            len = 0;
        }
        if len > 0 {
            cur.push('\n');
            len += 1;
        }
        cur.push_str(&line);
        len += n;
    }
    chunks.push(cur);
    chunks
        .into_iter()
        .filter(|c| !c.trim().is_empty())
        .take(max)
        .map(section)
        .collect()
}

/// With `alerts.templates.slack`: the template renders the body (mrkdwn); the header,
/// the footer and the notification text stay built-in, and the body is cut into
/// sections within Slack's limits, so the payload is valid Block Kit whatever the
/// template prints.
pub fn custom_payload(
    msg: &Message,
    cluster: &str,
    max_findings: usize,
    template: &CustomTemplate,
) -> Result<Value, SendError> {
    let ctx = AlertContext::new(msg, cluster, max_findings);
    let body = template
        .render(&ctx)
        .map_err(|e| SendError::Permanent(format!("rendering the Slack message: {e}")))?;
    let head = match msg {
        Message::Test { .. } => "trivy-digest test alert".to_owned(),
        _ => msg.title(),
    };
    let mut blocks = vec![header(&head)];
    // Room for the header and the footer.
    let sections = sections_of(&body, MAX_BLOCKS - 2);
    if sections.is_empty() {
        return Err(SendError::Permanent(format!(
            "rendering the Slack message: {} ({}) rendered no text",
            template.key(),
            template.path().display()
        )));
    }
    blocks.extend(sections);
    blocks.push(context(vec![format!(
        "trivy-digest · cluster {}",
        escape(&truncate(cluster, 200))
    )]));
    Ok(json!({"text": fallback(msg, cluster), "blocks": blocks}))
}

/// A channel's or team route's Slack incoming webhook.
pub struct Slack {
    url: Secret,
    shared: Arc<Shared>,
}

pub fn build(spec: &Spec<'_>, shared: &Arc<Shared>) -> Option<Arc<dyn Channel>> {
    let url = spec.slack.get()?.clone();
    Some(Arc::new(Slack {
        url,
        shared: shared.clone(),
    }))
}

impl Channel for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    /// 429, 5xx and network errors are retried; other 4xx (`invalid_blocks`,
    /// `no_service`, `channel_is_archived`) are permanent.
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let s = &self.shared;
            let body = match &s.templates.slack {
                Some(f) => {
                    let t = f.get().map_err(|e| SendError::Permanent(e.to_string()))?;
                    custom_payload(msg, &s.cluster, s.max_findings, t)?
                }
                None => payload(msg, &s.cluster, s.max_findings),
            };
            post_json(&s.http, &self.url, None, &body, &s.backoff, "Slack webhook").await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Severity};
    use crate::output::alert::compose::{AlertFinding, ImageRef, WorkloadRef};

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
            findings: (0..n)
                .map(|i| {
                    finding(
                        i,
                        "<!channel> <script>alert(1)</script> <http://evil|click>",
                    )
                })
                .collect(),
            workloads: (0..workloads)
                .map(|i| WorkloadRef {
                    namespace: "shop".into(),
                    kind: "Deployment".into(),
                    name: format!("api-{i}-{}", "x".repeat(60)),
                })
                .collect(),
            namespaces: vec!["shop".into()],
            dojo_links: vec!["https://dojo.example.com/test/7".into()],
            item_ids: vec![1],
            ci_artifacts: Vec::new(),
            ci_item_ids: Vec::new(),
        }
    }

    /// Every text of the payload, mrkdwn and plain.
    fn texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get("text") {
                    out.push(t.clone());
                }
                for x in m.values() {
                    texts(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            _ => {}
        }
    }

    fn check_limits(p: &Value) {
        let blocks = p["blocks"].as_array().expect("blocks");
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        assert!(p["text"].as_str().is_some_and(|t| !t.is_empty()));
        for b in blocks {
            match b["type"].as_str() {
                Some("header") => {
                    assert!(
                        b["text"]["text"].as_str().expect("t").chars().count() <= MAX_HEADER_TEXT
                    )
                }
                Some("section") => {
                    if let Some(t) = b["text"]["text"].as_str() {
                        assert!(t.chars().count() <= MAX_SECTION_TEXT, "{}", t.len());
                    }
                    if let Some(f) = b["fields"].as_array() {
                        assert!(f.len() <= MAX_FIELDS);
                        for x in f {
                            assert!(
                                x["text"].as_str().expect("t").chars().count() <= MAX_FIELD_TEXT
                            );
                        }
                    }
                }
                Some("context") => {
                    assert!(b["elements"].as_array().expect("e").len() <= MAX_CONTEXT_ELEMENTS)
                }
                Some("divider") => {}
                other => panic!("unexpected block {other:?}"),
            }
        }
    }

    #[test]
    fn escaping_and_links() {
        assert_eq!(escape("a & <!channel> >"), "a &amp; &lt;!channel&gt; &gt;");
        assert_eq!(
            link("https://x.example/a?b=1&c=<2>|3", "CVE|1 <b>"),
            "<https://x.example/a?b=1&amp;c=%3C2%3E%7C3|CVE/1 &lt;b&gt;>"
        );
        assert_eq!(link("javascript:alert(1)", "x<"), "x&lt;");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn report_text_cannot_mention_or_link() {
        let p = payload(&Message::Image(group(3, 3)), "prod <!here>", 10);
        check_limits(&p);
        let mut all = Vec::new();
        texts(&p, &mut all);
        for t in &all {
            assert!(!t.contains("<!"), "{t}");
            assert!(!t.contains("<script"), "{t}");
            assert!(!t.contains("<http://evil"), "{t}");
        }
        let json = p.to_string();
        assert!(json.contains("&lt;!channel&gt;"), "{json}");
        assert!(json.contains("<https://dojo.example.com/test/7|Open in DefectDojo>"));
        assert_eq!(
            p["text"],
            "[prod &lt;!here&gt;] 3 new CRITICAL in ghcr.io/org/api"
        );
    }

    #[test]
    fn long_lists_stay_within_limits() {
        let p = payload(&Message::Image(group(200, 500)), "prod", 60);
        check_limits(&p);
        let json = p.to_string();
        assert!(json.contains("and 180 more new findings"), "{json}");
        assert!(json.contains("more workloads"), "{json}");
        let groups: Vec<Group> = (0..42).map(|_| group(5, 2)).collect();
        let msg = Message::Digest(groups);
        let p = payload(&msg, "prod", 10);
        check_limits(&p);
        assert_eq!(msg.title(), "42 images with 210 new CRITICAL findings");
        assert!(p.to_string().contains("and 32 more images"));
        let long = "x".repeat(10_000);
        let mut g = group(1, 1);
        g.repo = long.clone();
        g.findings[0].title = long.clone();
        g.findings[0].id = long;
        check_limits(&payload(&Message::Image(g), "prod", 10));
    }

    /// Every `<` of a mrkdwn text opens a link that is closed: none was cut in half.
    fn links_whole(t: &str) {
        let mut rest = t;
        while let Some(i) = rest.find('<') {
            let after = &rest[i + 1..];
            let end = after.find('>').unwrap_or_else(|| panic!("link cut: {t}"));
            assert!(after[..end].starts_with("http"), "{t}");
            rest = &after[end + 1..];
        }
    }

    #[test]
    fn hostile_text_never_cuts_a_link() {
        // `&` escapes to five characters: report text that grows past the section limit.
        let amps = "&".repeat(5000);
        let mut g = group(1, 1);
        g.repo = amps.clone();
        g.findings[0].id = amps.clone();
        g.findings[0].title = amps.clone();
        g.findings[0].package = amps.clone();
        // The longest link kept (500 bytes), all of it escaped.
        g.findings[0].link = Some(format!("https://x.example/{}", &amps[..482]));
        g.namespaces = (0..10).map(|i| format!("{i}{}", &amps[..62])).collect();
        let mut gs: Vec<Group> = (0..3).map(|_| g.clone()).collect();
        for (i, g) in gs.iter_mut().enumerate() {
            g.findings = (0..8)
                .map(|j| {
                    let mut f = finding(i * 8 + j, "t");
                    f.id = format!("{j}{}", &amps[..100]);
                    f
                })
                .collect();
        }
        let image = payload(&Message::Image(g), "prod", 10);
        let digest = payload(&Message::Digest(gs), "prod", 10);
        for p in [&image, &digest] {
            check_limits(p);
            for b in p["blocks"].as_array().expect("blocks") {
                if let Some(t) = b["text"]["text"]
                    .as_str()
                    .filter(|_| b["type"] == "section")
                {
                    links_whole(t);
                }
            }
        }
        let json = image.to_string();
        assert!(json.contains("<https://x.example/&amp;&amp;"), "{json}");
        let json = digest.to_string();
        assert_eq!(
            json.matches("|DefectDojo>").count(),
            3,
            "each image keeps its DefectDojo link: {json}"
        );
        // A link within the limit is kept, as a link.
        let p = payload(&Message::Image(group(1, 1)), "prod", 10).to_string();
        assert!(
            p.contains("<https://avd.aquasec.com/nvd/cve-2026-0000|CVE-2026-0000>"),
            "{p}"
        );
    }

    /// An override's body is cut into sections within Slack's limits, around the
    /// built-in header and footer; a body with no text is an error, not an empty block.
    #[test]
    fn custom_body_stays_valid_block_kit() {
        use crate::output::custom_template::{CustomTemplate, Escape};
        let t = |src: &str| {
            CustomTemplate::compile(
                "alerts.templates.slack",
                std::path::Path::new("s.j2"),
                src.into(),
                Escape::Slack,
            )
            .expect("compiles")
        };
        let long = t(
            "{% for i in range(400) %}{{ groups[0].findings[0].title }} {{ i }}\n{% endfor %}{{ 'x' * 5000 }}",
        );
        let p = custom_payload(&Message::Image(group(3, 1)), "prod", 10, &long).expect("payload");
        check_limits(&p);
        let blocks = p["blocks"].as_array().expect("blocks");
        assert!(
            blocks.len() > 4,
            "split into several sections: {}",
            blocks.len()
        );
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[blocks.len() - 1]["type"], "context");
        let json = p.to_string();
        assert!(!json.contains("<!channel>"), "variables are escaped");
        let e = custom_payload(
            &Message::Image(group(1, 1)),
            "prod",
            10,
            &t("  \n{% if false %}x{% endif %}\n"),
        )
        .expect_err("blank");
        assert!(e.to_string().contains("rendered no text"), "{e}");
    }
}
