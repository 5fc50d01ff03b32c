//! The shared mailer against a real SMTP server (aiosmtpd).

mod support;

use std::time::Duration;

use support::smtp::{SinkBehaviour, SinkTls, SmtpSink};
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
        ..Default::default()
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
        ..Default::default()
    });
    let e = mailer(&sink).send(&mail()).await.expect_err("550");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("550"), "{e}");
    assert_eq!(sink.refused(), 1);
    assert!(sink.messages().is_empty());
}

fn tls_mailer(sink: &SmtpSink, tls: &str, password: &str, ca: bool) -> Mailer {
    let mut yaml = format!(
        "smtp:\n  host: 127.0.0.1\n  port: {}\n  tls: {tls}\n  username: alerts\n  from: td@example.com\n  timeout: 10s\n  retry:\n    max_attempts: 2\n    initial_backoff: 50ms\n    max_backoff: 100ms\n",
        sink.port
    );
    if ca {
        yaml.push_str(&format!("  ca_bundle: {}\n", sink.ca_path().display()));
    }
    let mut config = Config::from_yaml(&yaml).expect("config");
    let smtp = config.smtp.as_mut().expect("smtp");
    smtp.password = Some(trivy_digest::secret::Secret::new(password));
    Mailer::new(smtp).expect("mailer")
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_login() {
    let sink = SmtpSink::start_with(SinkBehaviour {
        tls: Some(SinkTls::Starttls),
        auth: Some(("alerts", "s3cret")),
        ..Default::default()
    });
    tls_mailer(&sink, "starttls", "s3cret", true)
        .send(&mail())
        .await
        .expect("sent over STARTTLS");
    let m = &sink.wait_for(1, Duration::from_secs(5))[0];
    assert!(m.tls, "{m:?}");
    assert_eq!(m.login.as_deref(), Some("alerts"));
}

#[tokio::test]
async fn implicit_tls() {
    let sink = SmtpSink::start_with(SinkBehaviour {
        tls: Some(SinkTls::Implicit),
        auth: Some(("alerts", "s3cret")),
        ..Default::default()
    });
    tls_mailer(&sink, "tls", "s3cret", true)
        .send(&mail())
        .await
        .expect("sent over TLS");
    assert!(sink.wait_for(1, Duration::from_secs(5))[0].tls);
}

#[tokio::test]
async fn a_wrong_password_is_refused_for_good() {
    let sink = SmtpSink::start_with(SinkBehaviour {
        tls: Some(SinkTls::Starttls),
        auth: Some(("alerts", "s3cret")),
        ..Default::default()
    });
    let e = tls_mailer(&sink, "starttls", "wrong", true)
        .send(&mail())
        .await
        .expect_err("535");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("535"), "{e}");
    assert!(!e.to_string().contains("wrong"), "the password leaked: {e}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn an_unknown_certificate_is_not_trusted() {
    let sink = SmtpSink::start_with(SinkBehaviour {
        tls: Some(SinkTls::Starttls),
        ..Default::default()
    });
    let e = tls_mailer(&sink, "starttls", "unused", false)
        .send(&mail())
        .await
        .expect_err("self-signed certificate without ca_bundle");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_login_the_server_cannot_take_is_a_configuration_error() {
    // The server offers no AUTH over this connection: retrying cannot help.
    let sink = SmtpSink::start_with(SinkBehaviour {
        tls: Some(SinkTls::Implicit),
        ..Default::default()
    });
    let e = tls_mailer(&sink, "tls", "s3cret", true)
        .send(&mail())
        .await
        .expect_err("no AUTH offered");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("authentication"), "{e}");
}
