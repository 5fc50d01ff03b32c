//! JSON over HTTP for the webhook channels (Slack, generic webhook): one POST with the
//! shared capped backoff honouring `Retry-After` (`retry::Backoff::next`).

use std::time::Duration;

use serde_json::Value;

use super::slack::truncate;
use crate::output::alert::SendError;
use crate::retry::{Backoff, retry_after};
use crate::secret::Secret;

/// Posts `body` as JSON to `url`. `Ok` only when the server accepted (2xx). 429, 5xx
/// and network errors (timeouts included) are retried with the backoff (a
/// `Retry-After` replaces the wait, up to `Backoff::retry_after_cap`); other 4xx are
/// permanent, with the server's answer in the error. `service` names the server in
/// logs. Errors never contain the URL or the headers.
pub async fn post_json(
    http: &reqwest::Client,
    url: &Secret,
    authorization: Option<&Secret>,
    body: &Value,
    backoff: &Backoff,
    service: &str,
) -> Result<(), SendError> {
    post_json_judged(http, url, authorization, body, backoff, service, |_, _| {
        Success::Accepted
    })
    .await
}

/// What a 2xx answer means, for a server whose 2xx is not always an acceptance.
#[derive(Debug, PartialEq, Eq)]
pub enum Success {
    Accepted,
    /// Failed, worth retrying (the reason, from the server's answer).
    Retry(String),
}

/// [`post_json`], with `judge(status, body)` deciding what a 2xx answer means.
pub async fn post_json_judged(
    http: &reqwest::Client,
    url: &Secret,
    authorization: Option<&Secret>,
    body: &Value,
    backoff: &Backoff,
    service: &str,
    judge: fn(u16, &str) -> Success,
) -> Result<(), SendError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut req = http.post(url.expose()).json(body);
        if let Some(a) = authorization {
            let mut v = reqwest::header::HeaderValue::from_str(a.expose()).map_err(|_| {
                SendError::Permanent("the Authorization value is not a valid header value".into())
            })?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        let (err, retry_after) = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = retry_after(&resp);
                let text = resp.text().await.unwrap_or_default();
                let answer = truncate(text.trim(), 200);
                let code = status.as_u16();
                if status.is_success() {
                    match judge(code, &answer) {
                        Success::Accepted => return Ok(()),
                        Success::Retry(why) => (format!("HTTP {code}: {why}"), retry_after),
                    }
                } else if code == 429 || status.is_server_error() {
                    (format!("HTTP {code}: {answer}"), retry_after)
                } else {
                    return Err(SendError::Permanent(format!("HTTP {code}: {answer}")));
                }
            }
            Err(e) => (describe(e), None),
        };
        let next = backoff.next(attempt, retry_after);
        let note = next.log(service, "post", attempt, &err);
        match next.wait() {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                return Err(SendError::Transient(match note {
                    Some(n) => format!("{err}; {n}"),
                    None => err,
                }));
            }
        }
    }
}

/// reqwest errors print the URL, and a webhook URL is the credential: strip it, keep
/// the cause chain. Every reqwest error here goes through this.
fn describe(e: reqwest::Error) -> String {
    crate::errors::describe_reqwest(&e.without_url())
}

pub fn client(timeout: Duration) -> Result<reqwest::Client, SendError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("trivy-digest/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SendError::Permanent(format!("HTTP client: {}", describe(e))))
}
