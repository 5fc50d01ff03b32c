//! `/summary/` on the metrics port (`summary.serve`): the index of months and each month
//! rendered read-only, for the cluster or a team (`?team=NAME`). The pages carry
//! vulnerability data: the setting is off by default and `run` warns when it is on.

use std::sync::Arc;

use anyhow::Result;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::deliver;
use super::month::Month;
use super::render::{self, IndexMonth, IndexTeam};
use super::report::{self, Scope};
use crate::config::Config;
use crate::store::Store;

pub struct SummaryWeb {
    pub config: Config,
    /// Injected in tests.
    pub clock: crate::output::Clock,
}

impl SummaryWeb {
    pub fn new(config: Config) -> SummaryWeb {
        SummaryWeb {
            config,
            clock: crate::output::system_clock(),
        }
    }
}

pub fn router(web: Arc<SummaryWeb>) -> Router {
    Router::new()
        .route(
            "/summary",
            get(|| async { Redirect::permanent("/summary/") }),
        )
        .route("/summary/", get(index))
        .route("/summary/{month}", get(month))
        .with_state(web)
}

#[derive(Debug, Deserialize)]
struct TeamQuery {
    team: Option<String>,
}

/// Scripts, frames and remote content are refused even if escaping ever failed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn page(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

fn team_scope(team: Option<String>) -> Scope {
    match team {
        Some(t) if !t.trim().is_empty() => Scope::Team(t.trim().to_owned()),
        _ => Scope::Cluster,
    }
}

async fn index(State(web): State<Arc<SummaryWeb>>, Query(q): Query<TeamQuery>) -> Response {
    let now = (web.clock)();
    let w = web.clone();
    let team = q.team.clone();
    let r =
        tokio::task::spawn_blocking(move || render_index(&w.config, team.as_deref(), now)).await;
    match r {
        Ok(Ok(body)) => page("text/html; charset=utf-8", body),
        Ok(Err(e)) => {
            tracing::error!("/summary/: {e:#}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the store; see the log".into(),
            )
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("render task: {e}"),
        ),
    }
}

fn render_index(config: &Config, team: Option<&str>, now: DateTime<Utc>) -> Result<String> {
    let store = Store::open_at(&config.store)?;
    let tz = config.summary.timezone.tz();
    let earliest: Option<i64> =
        store
            .conn()
            .query_row("SELECT MIN(at) FROM finding_events", [], |r| r.get(0))?;
    let q = |m: Month| match team {
        Some(t) => format!("{m}?team={}", urlencode(t)),
        None => m.to_string(),
    };
    let mut months = Vec::new();
    if let Some(first) = earliest.and_then(|s| DateTime::from_timestamp(s, 0)) {
        let first = Month::containing(first, tz);
        let mut m = Month::containing(now, tz);
        // At most ten years of links.
        while m >= first && months.len() < 120 {
            months.push(IndexMonth {
                label: m.long_name(),
                href: format!("/summary/{}", q(m)),
                partial: now < m.end(tz),
            });
            m = m.prev();
        }
    }
    let teams: Vec<IndexTeam> = if team.is_none() {
        deliver::audiences(config)
            .into_iter()
            .filter_map(|a| match a.scope {
                Scope::Team(t) => Some(IndexTeam {
                    href: format!("/summary/?team={}", urlencode(&t)),
                    name: t,
                }),
                Scope::Cluster | Scope::OneCluster(_) => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    render::index(&config.cluster, team, &months, &teams)
}

async fn month(
    State(web): State<Arc<SummaryWeb>>,
    Path(month): Path<String>,
    Query(q): Query<TeamQuery>,
) -> Response {
    let (name, text) = match month.strip_suffix(".txt") {
        Some(m) => (m.to_owned(), true),
        None => (month.clone(), false),
    };
    let m: Month = match name.parse() {
        Ok(m) => m,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let now = (web.clock)();
    if m.start(web.config.summary.timezone.tz()) > now {
        return error(StatusCode::NOT_FOUND, format!("month {m} has not started"));
    }
    let w = web.clone();
    let scope = team_scope(q.team);
    let r = tokio::task::spawn_blocking(move || -> Result<String> {
        let store = Store::open_at(&w.config.store)?;
        let s = report::build(&store, &deliver::options(&w.config, m, scope, now))?;
        if text {
            render::text_with(&s, &w.config.summary.templates)
        } else {
            render::html_with(&s, &w.config.summary.templates)
        }
    })
    .await;
    match r {
        Ok(Ok(body)) if text => page("text/plain; charset=utf-8", body),
        Ok(Ok(body)) => page("text/html; charset=utf-8", body),
        Ok(Err(e)) => {
            tracing::error!("/summary/{m}: {e:#}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render this month; see the log".into(),
            )
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("render task: {e}"),
        ),
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
