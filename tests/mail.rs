//! The shared mailer against a real SMTP server (aiosmtpd).

mod support;

use std::time::Duration;

use support::smtp::{SinkBehaviour, SmtpSink};
use trivy_digest::config::Config;
use trivy_digest::mail::{Mail, Mailer};

fn mailer(sink: &SmtpSink) -> Mailer {
    let config = Config::from_yaml(&sink.config_yaml()).expect("config");
    Mailer::new(config.smtp.as_ref().expect("smtp")).expect("mailer")
}

fn mail() -> Mail {
    Mail {
        to: vec!["sec@example.com".into(), "Team <team@example.com>".into()],
        subject: "[prod] 1 new CRITICAL in docker.io/library/nginx – ünïcode".into(),
        text: "CVE-2026-0001 openssl 3.0.1 → 3.0.2\n".into(),
        html: "<p>CVE-2026-0001 &lt;b&gt;</p>".into(),
        message_id: Some("test-1@trivy-digest".into()),
    }
}

#[tokio::test]
async fn delivers_multipart_to_every_recipient() {
    let sink = SmtpSink::start();
    mailer(&sink).send(&mail()).await.expect("sent");
    let got = sink.wait_for(1, Duration::from_secs(5));
    let m = &got[0];
    assert_eq!(m.rcpt_tos, ["sec@example.com", "team@example.com"]);
    assert_eq!(m.mail_from, "trivy-digest@example.com");
    assert_eq!(
        m.subject,
        "[prod] 1 new CRITICAL in docker.io/library/nginx – ünïcode"
    );
    assert_eq!(m.content_type, "multipart/alternative");
    assert_eq!(m.message_id, "<test-1@trivy-digest>");
    assert_eq!(
        m.text.as_deref(),
        Some("CVE-2026-0001 openssl 3.0.1 → 3.0.2\n")
    );
    assert!(
        m.html.as_deref().is_some_and(|h| h.contains("&lt;b&gt;")),
        "{m:?}"
    );
}

#[tokio::test]
async fn transient_refusals_are_retried() {
    let sink = SmtpSink::start_with(SinkBehaviour {
        fail_first: 2,
        reject: false,
    });
    mailer(&sink).send(&mail()).await.expect("third attempt");
    assert_eq!(sink.refused(), 2);
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[tokio::test]
async fn permanent_refusal_is_not_retried() {
    let sink = SmtpSink::start_with(SinkBehaviour {
        fail_first: 0,
        reject: true,
    });
    let e = mailer(&sink).send(&mail()).await.expect_err("550");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("550"), "{e}");
    assert_eq!(sink.refused(), 1);
    assert!(sink.messages().is_empty());
}
