//! The DefectDojo v2 API calls we make, with errors classified as DefectDojo 3.2.0
//! really answers them (research/defectdojo-real.md): 403 for a missing or wrong token,
//! 400 with a `message` (often a Python list repr) for a payload it refuses, 5xx/429 and
//! network failures for a server that is down or busy. Redirects are never followed (a
//! followed 301/302 turns the reimport POST into a GET): any 3xx, and a 404/405 from an
//! API endpoint, mean `defectdojo.url` is not where the API answers.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url, multipart};
use serde::Deserialize;

use crate::config::DojoConfig;
use crate::errors::describe_reqwest;
use crate::retry::{Backoff, retry_after};
use crate::secret::Secret;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DojoError {
    /// 403: the token is wrong or missing. Never retried: every call would fail the same way.
    #[error("DefectDojo refused the API token (HTTP 403): {0}")]
    Auth(String),
    /// `defectdojo.url` does not lead to the API (a redirect, or 404/405 from an
    /// endpoint). Stops the export like a bad token: every call would fail the same way.
    #[error("{0}")]
    Address(AddressError),
    /// 400 and other 4xx: our request is wrong. Not retried; the server's message is kept.
    #[error("DefectDojo refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    /// 413: the upload is larger than DefectDojo or a proxy in front of it takes.
    #[error(
        "DefectDojo (or a proxy in front of it) refused the upload as too large (HTTP 413{}): {message}. \
         Split the test with the mapping, e.g. defectdojo.test: '{{{{ namespace }}}}/{{{{ subject }}}}' \
         for one test per namespace (or add '{{{{ workload_name }}}}' for one per workload), or raise \
         the body limit of the proxy (nginx client_max_body_size, ingress-nginx annotation \
         nginx.ingress.kubernetes.io/proxy-body-size) and DefectDojo's DD_SCAN_FILE_MAX_SIZE",
        bytes.map(|b| format!(", {}", human_bytes(b))).unwrap_or_default()
    )]
    TooLarge {
        bytes: Option<usize>,
        message: String,
    },
    /// `PATCH /api/v2/findings/<id>/` answered "No Finding matches the given query.":
    /// the finding was deleted in DefectDojo.
    #[error("DefectDojo finding {id} no longer exists: {message}")]
    FindingGone { id: i64, message: String },
    /// 5xx, 408, 429, timeouts, refused or dropped connections: worth retrying later.
    #[error("DefectDojo unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer we cannot read.
    #[error("unexpected answer from DefectDojo: {0}")]
    Protocol(String),
    #[error("DefectDojo client setup: {0}")]
    Setup(String),
}

/// Why `defectdojo.url` is wrong, naming the URL that was called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// A 3xx. `base` is the `defectdojo.url` the redirect implies, when the target keeps
    /// the API path.
    Redirect {
        status: u16,
        method: String,
        url: String,
        location: Option<String>,
        base: Option<String>,
    },
    /// 404 or 405 from an API endpoint: usually a missing path prefix, or a proxy that
    /// does not forward to DefectDojo.
    NotHere {
        status: u16,
        method: String,
        url: String,
        message: String,
    },
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::Redirect {
                status,
                method,
                url,
                location: Some(location),
                base,
            } => {
                write!(
                    f,
                    "DefectDojo answered {status} to {method} {url}, redirecting to {location}; \
                     set defectdojo.url to that address"
                )?;
                if let Some(b) = base {
                    write!(f, " ({b})")?;
                }
                write!(
                    f,
                    " (redirects are not followed: they would turn the POST into a GET)"
                )
            }
            AddressError::Redirect {
                status,
                method,
                url,
                location: None,
                ..
            } => write!(
                f,
                "DefectDojo answered {status} to {method} {url} without a Location; \
                 set defectdojo.url to the address DefectDojo's API answers at"
            ),
            AddressError::NotHere {
                status,
                method,
                url,
                message,
            } => write!(
                f,
                "DefectDojo answered {status} to {method} {url} ({message}): this is not \
                 DefectDojo's API; check defectdojo.url (a missing path prefix, or a proxy \
                 that does not forward /api/v2/)"
            ),
        }
    }
}

fn human_bytes(b: usize) -> String {
    if b >= 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

impl DojoError {
    pub fn retryable(&self) -> bool {
        matches!(self, DojoError::Unavailable { .. })
    }
}

pub struct DojoClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    backoff: Backoff,
}

/// The parts of a reimport answer we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ReimportAnswer {
    pub test: Option<i64>,
    pub test_id: Option<i64>,
    #[serde(default)]
    pub statistics: serde_json::Value,
}

impl ReimportAnswer {
    pub fn test_id(&self) -> Option<i64> {
        self.test_id.or(self.test)
    }
}

/// A finding as listed by `GET /api/v2/findings/`.
#[derive(Debug, Clone, Deserialize)]
pub struct DojoFinding {
    pub id: i64,
    #[serde(default)]
    pub unique_id_from_tool: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub mitigation: Option<String>,
    #[serde(default)]
    pub impact: Option<String>,
    #[serde(default)]
    pub references: Option<String>,
    #[serde(default)]
    pub fix_available: Option<bool>,
    #[serde(default)]
    pub fix_version: Option<String>,
    #[serde(default)]
    pub cvssv3_score: Option<f64>,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub is_mitigated: bool,
    #[serde(default)]
    pub risk_accepted: bool,
    #[serde(default)]
    pub false_p: bool,
    #[serde(default)]
    pub out_of_scope: bool,
}

/// A test as listed by `GET /api/v2/tests/`: what ownership needs.
#[derive(Debug, Clone, Deserialize)]
pub struct DojoTest {
    pub id: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub build_id: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    id: i64,
    name: String,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default)]
    next: Option<String>,
    results: Vec<T>,
}

const PAGE_SIZE: usize = 100;

impl DojoClient {
    pub fn new(cfg: &DojoConfig) -> Result<DojoClient, DojoError> {
        let token = cfg
            .token
            .clone()
            .ok_or_else(|| DojoError::Setup("no API token configured".into()))?;
        let mut base = Url::parse(&cfg.url)
            .map_err(|e| DojoError::Setup(format!("url {:?}: {e}", cfg.url)))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut builder = reqwest::Client::builder()
            // A followed 301/302 turns a POST into a GET; a redirect is a wrong URL.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout.0)
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("trivy-digest/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_bundle {
            let pem = std::fs::read(path)
                .map_err(|e| DojoError::Setup(format!("ca_bundle {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| DojoError::Setup(format!("ca_bundle {}: {e}", path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        if cfg.insecure_skip_tls_verify {
            tracing::warn!(
                "defectdojo.insecure_skip_tls_verify is on: the DefectDojo server's certificate is not verified"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| DojoError::Setup(e.to_string()))?;
        Ok(DojoClient {
            http,
            base,
            token,
            backoff: Backoff::from_config(&cfg.retry),
        })
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    fn url(&self, path: &str) -> Result<Url, DojoError> {
        self.base
            .join(path)
            .map_err(|e| DojoError::Setup(format!("url {path}: {e}")))
    }

    /// `POST /api/v2/reimport-scan/`, multipart: the form fields and the file.
    pub async fn reimport(
        &self,
        form: &[(String, String)],
        file: &[u8],
    ) -> Result<ReimportAnswer, DojoError> {
        let url = self.url("api/v2/reimport-scan/")?;
        self.with_retry("reimport-scan", || {
            let mut f = multipart::Form::new();
            for (k, v) in form {
                f = f.text(k.clone(), v.clone());
            }
            let part = multipart::Part::bytes(file.to_vec())
                .file_name("findings.json")
                .mime_str("application/json");
            let part = match part {
                Ok(p) => p,
                Err(e) => return Err(DojoError::Setup(e.to_string())),
            };
            f = f.part("file", part);
            Ok(self.request(Method::POST, url.clone()).multipart(f))
        })
        .await
        .map_err(|e| match e {
            DojoError::TooLarge { message, .. } => DojoError::TooLarge {
                bytes: Some(file.len()),
                message,
            },
            e => e,
        })
    }

    /// Every finding of a test, paged.
    pub async fn test_findings(&self, dd_test_id: i64) -> Result<Vec<DojoFinding>, DojoError> {
        self.list_all(
            "list findings",
            "api/v2/findings/",
            &[("test", &dd_test_id.to_string())],
        )
        .await
    }

    /// The product DefectDojo's reimport would use for `name` (`Product.name` is unique;
    /// `name_exact` is a case-insensitive filter, so the exact name is picked here).
    pub async fn product_id(&self, name: &str) -> Result<Option<i64>, DojoError> {
        let found: Vec<Named> = self
            .list_all("find product", "api/v2/products/", &[("name_exact", name)])
            .await?;
        Ok(found.into_iter().find(|p| p.name == name).map(|p| p.id))
    }

    /// The engagement a reimport would use: the last one of that name in the product
    /// (engagement names are not unique; DefectDojo takes the highest id).
    pub async fn engagement_id(&self, product: i64, name: &str) -> Result<Option<i64>, DojoError> {
        let found: Vec<Named> = self
            .list_all(
                "find engagement",
                "api/v2/engagements/",
                &[("product", &product.to_string()), ("name", name)],
            )
            .await?;
        Ok(found
            .into_iter()
            .filter(|e| e.name == name)
            .map(|e| e.id)
            .max())
    }

    /// The test a reimport with this title and scan type would update: the last one in
    /// the engagement.
    pub async fn latest_test(
        &self,
        engagement: i64,
        title: &str,
        scan_type: &str,
    ) -> Result<Option<DojoTest>, DojoError> {
        let found: Vec<DojoTest> = self
            .list_all(
                "find test",
                "api/v2/tests/",
                &[
                    ("engagement", &engagement.to_string()),
                    ("title", title),
                    ("scan_type", scan_type),
                ],
            )
            .await?;
        Ok(found
            .into_iter()
            .filter(|t| t.title.as_deref() == Some(title))
            .max_by_key(|t| t.id))
    }

    /// Every item of a paged list.
    async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<T>, DojoError> {
        let mut url = self.url(path)?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in filters {
                q.append_pair(k, v);
            }
            q.append_pair("limit", &PAGE_SIZE.to_string())
                .append_pair("offset", "0");
        }
        let mut out = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(u) = next.take() {
            pages += 1;
            if pages > 100_000 {
                return Err(DojoError::Protocol(format!(
                    "{what}: the list does not end"
                )));
            }
            let page: Page<T> = self
                .with_retry(what, || Ok(self.request(Method::GET, u.clone())))
                .await?;
            out.extend(page.results);
            if let Some(n) = page.next {
                // `next` is absolute; keep our scheme/host in case a proxy rewrote it.
                let parsed =
                    Url::parse(&n).map_err(|e| DojoError::Protocol(format!("next {n:?}: {e}")))?;
                let mut same = u.clone();
                same.set_query(parsed.query());
                next = Some(same);
            }
        }
        Ok(out)
    }

    /// The findings with these ids (`GET /api/v2/findings/?id=1,2,3`), for their current
    /// triage state; at most `PAGE_SIZE` ids per call.
    pub async fn findings_by_id(&self, ids: &[i64]) -> Result<Vec<DojoFinding>, DojoError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(PAGE_SIZE) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let mut url = self.url("api/v2/findings/")?;
            url.query_pairs_mut()
                .append_pair("id", &list.join(","))
                .append_pair("limit", &PAGE_SIZE.to_string());
            let page: Page<DojoFinding> = self
                .with_retry("read findings", || {
                    Ok(self.request(Method::GET, url.clone()))
                })
                .await?;
            out.extend(page.results);
        }
        Ok(out)
    }

    /// `PATCH /api/v2/findings/<id>/` with a JSON body.
    pub async fn patch_finding(&self, id: i64, body: &serde_json::Value) -> Result<(), DojoError> {
        let url = self.url(&format!("api/v2/findings/{id}/"))?;
        let answer: Result<serde_json::Value, DojoError> = self
            .with_retry("patch finding", || {
                Ok(self.request(Method::PATCH, url.clone()).json(body))
            })
            .await;
        match answer {
            Ok(_) => Ok(()),
            // Django's `get_object_or_404` text: the route exists, the finding does not.
            Err(DojoError::Address(AddressError::NotHere {
                status: 404,
                message,
                ..
            })) if message.starts_with("No ") && message.ends_with(" matches the given query.") => {
                Err(DojoError::FindingGone { id, message })
            }
            Err(e) => Err(e),
        }
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("Authorization", format!("Token {}", self.token.expose()))
            .header("Accept", "application/json")
    }

    async fn with_retry<T, F>(&self, what: &str, build: F) -> Result<T, DojoError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn() -> Result<reqwest::RequestBuilder, DojoError>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = match build() {
                Ok(req) => send(req).await,
                Err(e) => return Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(DojoError::Unavailable {
                    reason,
                    retry_after,
                }) => {
                    let next = self.backoff.next(attempt, retry_after);
                    let note = next.log("DefectDojo", what, attempt, &reason);
                    match next.wait() {
                        Some(d) => tokio::time::sleep(d).await,
                        None => {
                            let reason = match note {
                                Some(n) => format!("{reason}; {n}"),
                                None => reason,
                            };
                            return Err(DojoError::Unavailable {
                                reason,
                                retry_after,
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

async fn send<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<T, DojoError> {
    let (http, req) = req.build_split();
    let req = req.map_err(|e| DojoError::Setup(describe_reqwest(&e)))?;
    // The URL may stay in the text: it holds no credential (the token is a header).
    let method = req.method().clone();
    let url = req.url().clone();
    let resp = http
        .execute(req)
        .await
        .map_err(|e| DojoError::Unavailable {
            reason: describe_reqwest(&e),
            retry_after: None,
        })?;
    let status = resp.status();
    let retry_after = retry_after(&resp);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await.map_err(|e| DojoError::Unavailable {
        reason: format!("reading the answer: {}", describe_reqwest(&e)),
        retry_after: None,
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| DojoError::Protocol(format!("HTTP {status}: {e}: {}", snippet(&body))));
    }
    Err(match status.as_u16() {
        300..=399 => redirect(status, &method, &url, location.as_deref()),
        404 | 405 => DojoError::Address(AddressError::NotHere {
            status: status.as_u16(),
            method: method.to_string(),
            url: url.to_string(),
            message: server_message(&body),
        }),
        _ => classify(status, &body, retry_after),
    })
}

/// A 3xx as an error naming where the server points, and the `defectdojo.url` that
/// implies when the target keeps the path we called (`…/api/v2/…`).
fn redirect(status: StatusCode, method: &Method, url: &Url, location: Option<&str>) -> DojoError {
    let target = location.and_then(|l| url.join(l).ok());
    let base = target.as_ref().and_then(|t| {
        let api = url.path().find("api/v2/")?;
        let tail = &url.path()[api..];
        let prefix = t.path().strip_suffix(tail)?;
        let mut b = t.clone();
        b.set_path(prefix);
        b.set_query(None);
        b.set_fragment(None);
        Some(b.to_string())
    });
    DojoError::Address(AddressError::Redirect {
        status: status.as_u16(),
        method: method.to_string(),
        url: url.to_string(),
        location: target
            .map(|t| t.to_string())
            .or(location.map(str::to_owned)),
        base,
    })
}

/// The error for an answer that does not depend on the URL called (`send` turns 3xx,
/// 404 and 405 into `Address` errors naming it).
fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> DojoError {
    let message = server_message(body);
    match status.as_u16() {
        403 | 401 => DojoError::Auth(message),
        413 => DojoError::TooLarge {
            bytes: None,
            message,
        },
        408 | 429 | 500..=599 => DojoError::Unavailable {
            reason: format!("HTTP {}: {message}", status.as_u16()),
            retry_after,
        },
        s => DojoError::Refused { status: s, message },
    }
}

/// `detail` or `message` of the body, the field errors beside them, or the raw text.
fn server_message(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => {
            if let Some(serde_json::Value::String(d)) = m.get("detail") {
                return d.clone();
            }
            let mut parts = Vec::new();
            if let Some(serde_json::Value::String(msg)) = m.get("message") {
                parts.push(msg.clone());
            }
            for (k, v) in &m {
                if k != "message" && k != "pro" && k != "detail" {
                    parts.push(format!("{k}: {v}"));
                }
            }
            if parts.is_empty() {
                snippet(body)
            } else {
                parts.join("; ")
            }
        }
        Ok(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        _ => snippet(body),
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else if s.is_empty() {
        "(empty body)".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_as_the_server_writes_them() {
        assert_eq!(
            server_message(br#"{"detail":"Invalid token."}"#),
            "Invalid token."
        );
        assert_eq!(
            server_message(
                br#"{"message":"[\"Not allowed fields are present: ['bogus']\"]","pro":["x"]}"#
            ),
            "[\"Not allowed fields are present: ['bogus']\"]"
        );
        assert_eq!(
            server_message(br#"["Product \"Nope\" does not exist"]"#),
            "Product \"Nope\" does not exist"
        );
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, b"{}", None),
            DojoError::Auth(_)
        ));
        assert!(classify(StatusCode::BAD_GATEWAY, b"", None).retryable());
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, b"", None).retryable());
        assert!(!classify(StatusCode::BAD_REQUEST, b"", None).retryable());
        assert!(!classify(StatusCode::UNSUPPORTED_MEDIA_TYPE, b"", None).retryable());
    }

    #[test]
    fn timeouts_are_retried_and_too_large_says_how_to_split() {
        assert!(classify(StatusCode::REQUEST_TIMEOUT, b"", None).retryable());
        let e = classify(StatusCode::PAYLOAD_TOO_LARGE, b"<html>413</html>", None);
        assert!(matches!(e, DojoError::TooLarge { .. }), "{e:?}");
        assert!(e.to_string().contains("{{ namespace }}"), "{e}");
        assert!(e.to_string().contains("client_max_body_size"), "{e}");
    }

    #[test]
    fn a_redirect_names_the_address_to_configure() {
        let url = Url::parse("http://dojo.example/api/v2/reimport-scan/").expect("url");
        let e = redirect(
            StatusCode::PERMANENT_REDIRECT,
            &Method::POST,
            &url,
            Some("https://dojo.example/defectdojo/api/v2/reimport-scan/"),
        );
        assert_eq!(
            e.to_string(),
            "DefectDojo answered 308 to POST http://dojo.example/api/v2/reimport-scan/, \
             redirecting to https://dojo.example/defectdojo/api/v2/reimport-scan/; set \
             defectdojo.url to that address (https://dojo.example/defectdojo/) (redirects are \
             not followed: they would turn the POST into a GET)"
        );
        // A relative Location is resolved; one elsewhere gives no base.
        let e = redirect(
            StatusCode::FOUND,
            &Method::GET,
            &url,
            Some("/login/?next=/api/"),
        );
        assert!(
            e.to_string()
                .contains("redirecting to http://dojo.example/login/?next=/api/;"),
            "{e}"
        );
        assert!(matches!(
            e,
            DojoError::Address(AddressError::Redirect { base: None, .. })
        ));
    }
}
