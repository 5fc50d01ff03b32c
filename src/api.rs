//! `/api/v1/` on the metrics port (`api.serve`): the inventory `query` answers, as
//! read-only JSON. The answers are built by `inventory::answer`, so they are exactly what
//! `query --format json` prints. They carry vulnerability data: the setting is off by
//! default and `run` warns when it is on (as for `/summary/`).
//!
//! A search without hits is an answer (200, empty list), not a missing resource; only a
//! path that names no endpoint is a 404.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::inventory;
use crate::store::Store;
use crate::version::VersionReq;

/// The `api:` section of the configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the inventory read-only as JSON at `/api/v1/` on `run.listen`. Off by
    /// default: the answers show vulnerability data to whoever reaches the port.
    pub serve: bool,
}

/// Ids, names, repositories and version requirements longer than this are refused:
/// they come from the network, and no real one is near it.
pub const MAX_PARAM_BYTES: usize = 512;

pub struct ApiWeb {
    pub store: crate::store::StoreLocation,
}

impl ApiWeb {
    pub fn new(config: &crate::config::Config) -> ApiWeb {
        ApiWeb {
            store: config.store.clone(),
        }
    }
}

pub fn router(web: Arc<ApiWeb>) -> Router {
    Router::new()
        .route("/api/v1", get(|| async { Redirect::permanent("/api/v1/") }))
        .route("/api/v1/", get(index))
        // Wildcards: repositories and package names (`ghcr.io/org/app`, `@babel/core`,
        // `golang.org/x/net`) contain slashes; ids take the same form for one rule.
        .route("/api/v1/cves/{*id}", get(cve))
        .route("/api/v1/packages/{*name}", get(package))
        .route("/api/v1/images/{*repo}", get(image))
        // A wildcard needs a character: these would otherwise be "no such endpoint".
        .route("/api/v1/cves/", get(|| async { empty("id") }))
        .route("/api/v1/packages/", get(|| async { empty("name") }))
        .route("/api/v1/images/", get(|| async { empty("repo") }))
        .route("/api/v1/{*rest}", get(unknown))
        .with_state(web)
        .layer(axum::middleware::map_response(headers))
}

/// On every answer of this router, errors and 405s included: never cached (the data
/// changes and is sensitive), never sniffed or framed as something else.
async fn headers(mut res: Response) -> Response {
    if res.status() == StatusCode::METHOD_NOT_ALLOWED
        && !res.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = res.headers().get(header::ALLOW).cloned();
        res = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: only GET and HEAD".into(),
        );
        if let Some(a) = allow {
            res.headers_mut().insert(header::ALLOW, a);
        }
    }
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

const JSON: &str = "application/json; charset=utf-8";

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, JSON)], Body::from(body)).into_response()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::to_string(&ErrorBody { error: &message })
        // A struct of one string always serializes; the fallback keeps this total.
        .unwrap_or_else(|_| r#"{"error":"error"}"#.to_owned());
    json(status, body + "\n")
}

fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn empty(param: &str) -> Response {
    bad_request(format!("{param}: must not be empty"))
}

async fn unknown() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; GET /api/v1/ lists them".into(),
    )
}

#[derive(Serialize)]
struct Endpoint {
    path: &'static str,
    parameters: &'static [&'static str],
    answers: &'static str,
}

#[derive(Serialize)]
struct Index {
    endpoints: &'static [Endpoint],
    notes: &'static [&'static str],
}

const INDEX: Index = Index {
    endpoints: &[
        Endpoint {
            path: "/api/v1/cves/{id}",
            parameters: &["all"],
            answers: "findings: a vulnerability, check or secret rule id in every image \
                      repository, where it runs, since when, whether a fix exists",
        },
        Endpoint {
            path: "/api/v1/packages/{name}",
            parameters: &["version", "all"],
            answers: "packages: SBOM contents named so (the whole name or its last segment) \
                      and the images holding them; version: `2.14`, `<2.17.1`, `>=2.0,<2.17.1`",
        },
        Endpoint {
            path: "/api/v1/images/{repo}",
            parameters: &["all"],
            answers: "repositories: an image repository's contents, where they run, their \
                      open findings and package counts",
        },
    ],
    notes: &[
        "{id}, {name} and {repo} are the rest of the path, slashes included \
         (/api/v1/images/ghcr.io/org/app); percent-encode other reserved characters",
        "all=true also lists image contents that ran once but run nowhere now",
        "no match is 200 with an empty list; a bad parameter is 400 with {\"error\": ...}",
        "the same JSON as `trivy-digest query --format json`",
    ],
};

async fn index() -> Response {
    match serde_json::to_string_pretty(&INDEX) {
        Ok(s) => json(StatusCode::OK, s + "\n"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("index: {e}")),
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Value = Result<Path<String>, PathRejection>;

/// The parameters an endpoint takes; an unknown or repeated one is refused rather than
/// ignored (`?versoin=<2` must not answer for every version).
#[derive(Default)]
struct Options {
    all: bool,
    version: Option<VersionReq>,
}

fn options(params: Params, allowed: &[&str]) -> Result<Options, String> {
    let Query(pairs) = params.map_err(|e| format!("query string: {}", e.body_text()))?;
    let mut seen: Vec<&str> = Vec::new();
    let mut o = Options::default();
    for (k, v) in &pairs {
        let Some(&name) = allowed.iter().find(|a| **a == k) else {
            return Err(format!(
                "{}: unknown parameter; this endpoint takes {}",
                shown(k),
                allowed.join(", ")
            ));
        };
        if seen.contains(&name) {
            return Err(format!("{name}: given more than once"));
        }
        seen.push(name);
        match name {
            "all" => {
                o.all = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("all {:?}: expected true or false", shown(v))),
                }
            }
            "version" => {
                let v = checked("version", v.clone())?;
                o.version = Some(VersionReq::parse(&v).map_err(|e| format!("version: {e}"))?);
            }
            _ => {}
        }
    }
    Ok(o)
}

/// A path value: decoded, trimmed, non-empty, bounded, without control characters.
fn value(param: &str, v: Value) -> Result<String, String> {
    let Path(v) = v.map_err(|e| format!("{param}: {}", e.body_text()))?;
    checked(param, v)
}

fn checked(param: &str, v: String) -> Result<String, String> {
    if v.len() > MAX_PARAM_BYTES {
        return Err(format!(
            "{param}: longer than {MAX_PARAM_BYTES} bytes ({})",
            v.len()
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{param}: contains a control character"));
    }
    let t = v.trim();
    if t.is_empty() {
        return Err(format!("{param}: must not be empty"));
    }
    Ok(t.to_owned())
}

/// A parameter name echoed in an error, bounded (it comes from the network).
fn shown(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_owned();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

async fn cve(State(web): State<Arc<ApiWeb>>, id: Value, params: Params) -> Response {
    let q = value("id", id).and_then(|id| {
        let o = options(params, &["all"])?;
        Ok(inventory::Query {
            cve: Some(id),
            all: o.all,
            ..Default::default()
        })
    });
    respond(web, "/api/v1/cves/", q).await
}

async fn package(State(web): State<Arc<ApiWeb>>, name: Value, params: Params) -> Response {
    let q = value("name", name).and_then(|name| {
        let o = options(params, &["version", "all"])?;
        Ok(inventory::Query {
            package: Some(name),
            version: o.version,
            all: o.all,
            ..Default::default()
        })
    });
    respond(web, "/api/v1/packages/", q).await
}

async fn image(State(web): State<Arc<ApiWeb>>, repo: Value, params: Params) -> Response {
    let q = value("repo", repo).and_then(|repo| {
        let o = options(params, &["all"])?;
        Ok(inventory::Query {
            image: Some(repo),
            all: o.all,
            ..Default::default()
        })
    });
    respond(web, "/api/v1/images/", q).await
}

/// Answers from the store off the async runtime (SQLite blocks), as `/summary/` does.
async fn respond(
    web: Arc<ApiWeb>,
    endpoint: &str,
    query: Result<inventory::Query, String>,
) -> Response {
    let query = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let r = tokio::task::spawn_blocking(move || {
        let store = Store::open_at(&web.store)?;
        inventory::answer(&store, query)?.to_json()
    })
    .await;
    match r {
        Ok(Ok(body)) => json(StatusCode::OK, body),
        Ok(Err(e)) => {
            // The cause (it may name the store's path) goes to the log only.
            tracing::error!("{endpoint}: {e:#}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the store; see the log".into(),
            )
        }
        Err(e) => {
            tracing::error!("{endpoint}: answer task: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer failed; see the log".into(),
            )
        }
    }
}
