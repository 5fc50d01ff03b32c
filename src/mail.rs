//! Outgoing mail over SMTP (lettre), shared by alerts and summaries: one multipart
//! message (plain text and HTML) per send, delivery retried with the shared backoff, and
//! errors sorted into what a retry can fix and what it cannot.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::retry::Backoff;
use crate::retry::RetryConfig;
use crate::secret::Secret;
use crate::settings::HumanDuration;

/// How mail leaves: STARTTLS on the submission port, TLS from the first byte, or plain
/// (a relay on localhost or inside the cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// File holding the password (env `SMTP_PASSWORD` or `SMTP_PASSWORD_FILE` win).
    pub password_file: Option<PathBuf>,
    #[serde(skip_deserializing)]
    pub password: Option<Secret>,
    /// Sender, e.g. `trivy-digest <trivy-digest@example.com>`.
    pub from: String,
    /// Per connection and per command.
    pub timeout: HumanDuration,
    pub retry: RetryConfig,
    /// PEM bundle of extra CA certificates.
    pub ca_bundle: Option<PathBuf>,
    /// Turns off TLS verification; logs a warning on every start.
    pub insecure_skip_tls_verify: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: None,
            tls: SmtpTls::Starttls,
            username: None,
            password_file: None,
            password: None,
            from: String::new(),
            timeout: HumanDuration(Duration::from_secs(30)),
            retry: RetryConfig::default(),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
        }
    }
}

impl SmtpConfig {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

/// One email: every recipient gets the same message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// A stable Message-ID (without angle brackets) lets mail clients and relays drop a
    /// duplicate if one is ever sent twice; `None` lets lettre make one.
    pub message_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("smtp configuration: {0}")]
    Config(String),
    #[error("address {address:?}: {message}")]
    Address { address: String, message: String },
    #[error("cannot build the message: {0}")]
    Build(String),
    /// The server refused for good (5xx): retrying the same message cannot help.
    #[error("smtp server refused: {0}")]
    Permanent(String),
    /// Connection, TLS, timeout or 4xx: worth another attempt later.
    #[error("smtp delivery failed: {0}")]
    Transient(String),
}

impl MailError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, MailError::Transient(_))
    }
}

/// Parses `Name <addr@host>` or `addr@host`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    s.trim().parse::<Mailbox>().map_err(|e| e.to_string())
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    backoff: Backoff,
    /// `host:port`, for logs and errors.
    endpoint: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> Result<Mailer, MailError> {
        let from = parse_mailbox(&config.from).map_err(|message| MailError::Address {
            address: config.from.clone(),
            message,
        })?;
        let port = config.effective_port();
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(config)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(config)?),
        };
        if config.insecure_skip_tls_verify && config.tls != SmtpTls::None {
            tracing::warn!(
                host = %config.host,
                "smtp.insecure_skip_tls_verify is on: the mail server's certificate is not checked"
            );
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(port)
            .tls(tls)
            .timeout(Some(config.timeout.0));
        if let Some(user) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            backoff: Backoff::from_config(&config.retry),
            endpoint: format!("{}:{port}", config.host),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Builds the multipart/alternative message (plain text first, as RFC 2046 orders by
    /// preference).
    pub fn build(&self, mail: &Mail) -> Result<Message, MailError> {
        if mail.to.is_empty() {
            return Err(MailError::Build("no recipients".into()));
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(mail.message_id.as_ref().map(|id| format!("<{id}>")));
        for to in &mail.to {
            let mailbox = parse_mailbox(to).map_err(|message| MailError::Address {
                address: to.clone(),
                message,
            })?;
            builder = builder.to(mailbox);
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(mail.html.clone()),
                    ),
            )
            .map_err(|e| MailError::Build(e.to_string()))
    }

    /// One attempt.
    pub async fn send_once(&self, mail: &Mail) -> Result<(), MailError> {
        let message = self.build(mail)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&self.endpoint, &e)),
        }
    }

    /// Sends with capped, jittered backoff; returns the last error when attempts run out
    /// or the server refused for good. `Ok` means the server accepted the message.
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(mail).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => match self.backoff.delay(attempt, None) {
                    Some(wait) => {
                        tracing::warn!(
                            endpoint = %self.endpoint, subject = %mail.subject, attempt,
                            error = %e, "mail not sent; retrying in {}", humantime::format_duration(round(wait))
                        );
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(config.host.clone())
        .dangerous_accept_invalid_certs(config.insecure_skip_tls_verify);
    if let Some(path) = &config.ca_bundle {
        let pem = std::fs::read(path)
            .map_err(|e| MailError::Config(format!("smtp.ca_bundle {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| MailError::Config(format!("smtp.ca_bundle {}: {e}", path.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| MailError::Config(format!("smtp TLS for {}: {e}", config.host)))
}

fn classify(endpoint: &str, e: &lettre::transport::smtp::Error) -> MailError {
    let message = format!("{endpoint}: {e}");
    // 5xx, and what lettre itself refuses (a login the server offers no mechanism for):
    // both need a configuration change, not another attempt.
    if e.is_permanent() || e.is_client() {
        MailError::Permanent(message)
    } else {
        MailError::Transient(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(1),
            tls: SmtpTls::None,
            from: "trivy-digest <td@example.com>".into(),
            ..Default::default()
        }
    }

    #[test]
    fn builds_multipart_alternative_with_stable_id() {
        let m = Mailer::new(&config()).expect("mailer");
        let msg = m
            .build(&Mail {
                to: vec!["a@example.com".into(), "B <b@example.com>".into()],
                subject: "[prod] 3 new CRITICAL in docker.io/library/nginx".into(),
                text: "plain".into(),
                html: "<p>html</p>".into(),
                message_id: Some("summary-2026-10.abc@trivy-digest".into()),
            })
            .expect("message");
        let raw = String::from_utf8(msg.formatted()).expect("utf8");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("Message-ID: <summary-2026-10.abc@trivy-digest>"),
            "{raw}"
        );
        assert!(raw.find("text/plain") < raw.find("text/html"), "{raw}");
        assert!(
            raw.contains("To: a@example.com, B <b@example.com>"),
            "{raw}"
        );
    }

    #[test]
    fn bad_addresses_name_the_address() {
        let m = Mailer::new(&config()).expect("mailer");
        let e = m
            .build(&Mail {
                to: vec!["not an address".into()],
                subject: "s".into(),
                text: String::new(),
                html: String::new(),
                message_id: None,
            })
            .expect_err("bad address");
        assert!(e.to_string().contains("not an address"), "{e}");
        let mut c = config();
        c.from = "nope".into();
        assert!(Mailer::new(&c).is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        let mut c = config();
        c.retry.max_attempts = 1;
        let m = Mailer::new(&c).expect("mailer");
        let e = m
            .send(&Mail {
                to: vec!["a@example.com".into()],
                subject: "s".into(),
                text: "t".into(),
                html: "h".into(),
                message_id: None,
            })
            .await
            .expect_err("port 1 refuses");
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}
