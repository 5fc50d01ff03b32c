//! Every endpoint except the reimport: routing, lists with DRF limit/offset paging,
//! finding filters, finding PATCH and risk acceptances.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::model::{ADMIN_ID, SEVERITIES, State};
use super::reply::Reply;
use super::{Shared, lock};

pub(crate) enum Route {
    Reimport,
    Findings,
    Finding(String),
    RiskAcceptances,
    RiskAcceptance(String),
    Tests,
    Test(String),
    TestImports,
    Engagements,
    Engagement(String),
    Products,
    Product(String),
    ProductTypes,
    Users,
}

pub(crate) enum RouteMatch {
    Found(Route),
    /// Django's APPEND_SLASH would redirect to the path with a slash.
    AppendSlash,
    NotFound,
}

impl Route {
    pub fn allows(&self, method: &Method) -> bool {
        match self {
            Route::Reimport => method == Method::POST,
            Route::Finding(_) => method == Method::GET || method == Method::PATCH,
            Route::RiskAcceptances => method == Method::GET || method == Method::POST,
            _ => method == Method::GET,
        }
    }
}

pub(crate) fn route(path: &str) -> RouteMatch {
    if let Some(r) = match_route(path) {
        return RouteMatch::Found(r);
    }
    if !path.ends_with('/') && match_route(&format!("{path}/")).is_some() {
        return RouteMatch::AppendSlash;
    }
    RouteMatch::NotFound
}

fn match_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/api/v2/")?.strip_suffix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    // DRF's default lookup regex is `[^/.]+`.
    let id = |s: &str| (!s.is_empty() && !s.contains('.')).then(|| s.to_string());
    Some(match segments.as_slice() {
        ["reimport-scan"] => Route::Reimport,
        ["findings"] => Route::Findings,
        ["findings", i] => Route::Finding(id(i)?),
        ["risk_acceptance"] => Route::RiskAcceptances,
        ["risk_acceptance", i] => Route::RiskAcceptance(id(i)?),
        ["tests"] => Route::Tests,
        ["tests", i] => Route::Test(id(i)?),
        ["test_imports"] => Route::TestImports,
        ["engagements"] => Route::Engagements,
        ["engagements", i] => Route::Engagement(id(i)?),
        ["products"] => Route::Products,
        ["products", i] => Route::Product(id(i)?),
        ["product_types"] => Route::ProductTypes,
        ["users"] => Route::Users,
        _ => return None,
    })
}

pub(crate) struct RequestCtx {
    pub method: Method,
    pub query: String,
    /// `http://<Host header>`, used for `next`/`previous` links.
    pub base_url: String,
    pub path: String,
    pub json: Option<Value>,
}

pub(crate) fn handle(shared: &Arc<Shared>, route: Route, ctx: RequestCtx) -> Reply {
    let pairs = parse_query(&ctx.query);
    // django-filter reads the last value of a key and skips empty values.
    let params: BTreeMap<String, String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    let mut state = lock(&shared.state);
    match route {
        Route::Reimport => Reply::not_found(),
        Route::Findings => list_findings(&state, &params, &pairs, &ctx),
        Route::Finding(id) => {
            let index = id
                .parse::<u64>()
                .ok()
                .and_then(|id| state.finding_index(id));
            let Some(index) = index else {
                return Reply::detail(404, "No Finding matches the given query.");
            };
            if ctx.method == Method::PATCH {
                patch_finding(&mut state, index, ctx.json.as_ref())
            } else {
                Reply::json(200, state.finding_json(&state.findings[index]))
            }
        }
        Route::RiskAcceptances => {
            if ctx.method == Method::POST {
                create_risk_acceptance(&mut state, ctx.json.as_ref())
            } else {
                let items = state
                    .risk_acceptances
                    .iter()
                    .map(|ra| state.risk_acceptance_json(ra))
                    .collect();
                paginate(items, &pairs, &ctx)
            }
        }
        Route::RiskAcceptance(id) => {
            match state
                .risk_acceptances
                .iter()
                .find(|ra| Some(ra.id) == id.parse().ok())
            {
                Some(ra) => Reply::json(200, state.risk_acceptance_json(ra)),
                None => Reply::detail(404, "No Risk_Acceptance matches the given query."),
            }
        }
        Route::Tests => {
            let items = state
                .tests
                .iter()
                .filter(|t| matches_id(&params, "engagement", t.engagement))
                .filter(|t| {
                    params
                        .get("title")
                        .is_none_or(|v| t.title.as_deref() == Some(v.as_str()))
                })
                .filter(|t| params.get("scan_type").is_none_or(|v| &t.scan_type == v))
                .map(|t| state.test_json(t))
                .collect();
            paginate(items, &pairs, &ctx)
        }
        Route::Test(id) => match id.parse().ok().and_then(|id| state.test(id)) {
            Some(t) => Reply::json(200, state.test_json(t)),
            None => Reply::detail(404, "No Test matches the given query."),
        },
        Route::TestImports => {
            let items = state
                .test_imports
                .iter()
                .filter(|ti| matches_id(&params, "test", ti.test))
                .map(|ti| state.test_import_json(ti))
                .collect();
            paginate(items, &pairs, &ctx)
        }
        Route::Engagements => {
            let items = state
                .engagements
                .iter()
                .filter(|e| matches_id(&params, "product", e.product))
                .filter(|e| params.get("name").is_none_or(|v| &e.name == v))
                .map(|e| state.engagement_json(e))
                .collect();
            paginate(items, &pairs, &ctx)
        }
        Route::Engagement(id) => match id.parse().ok().and_then(|id| state.engagement(id)) {
            Some(e) => Reply::json(200, state.engagement_json(e)),
            None => Reply::detail(404, "No Engagement matches the given query."),
        },
        Route::Products => {
            // ApiProductFilter: `name` is icontains, `name_exact` is iexact.
            let items = state
                .products
                .iter()
                .filter(|p| {
                    params
                        .get("name")
                        .is_none_or(|v| p.name.to_lowercase().contains(&v.to_lowercase()))
                })
                .filter(|p| {
                    params
                        .get("name_exact")
                        .is_none_or(|v| p.name.to_lowercase() == v.to_lowercase())
                })
                .filter(|p| matches_id(&params, "prod_type", p.prod_type))
                .map(|p| state.product_json(p))
                .collect();
            paginate(items, &pairs, &ctx)
        }
        Route::Product(id) => match id.parse().ok().and_then(|id| state.product(id)) {
            Some(p) => Reply::json(200, state.product_json(p)),
            None => Reply::detail(404, "No Product matches the given query."),
        },
        Route::ProductTypes => {
            let items = state
                .product_types
                .iter()
                .filter(|p| params.get("name").is_none_or(|v| &p.name == v))
                .map(|p| json!({"id": p.id, "name": p.name}))
                .collect();
            paginate(items, &pairs, &ctx)
        }
        Route::Users => {
            let admin = json!({
                "id": ADMIN_ID, "username": "admin", "first_name": "", "last_name": "",
                "email": "admin@defectdojo.local", "date_joined": "2026-01-01T00:00:00Z",
                "last_login": null, "is_active": true, "is_staff": true, "is_superuser": true,
                "token_last_reset": null, "password_last_reset": null,
                "configuration_permissions": [],
            });
            paginate(vec![admin], &pairs, &ctx)
        }
    }
}

fn matches_id(params: &BTreeMap<String, String>, key: &str, value: u64) -> bool {
    params
        .get(key)
        .is_none_or(|v| v.parse::<u64>().ok() == Some(value))
}

/// django-filter `BooleanFilter` (NullBooleanField): other values do not filter.
fn bool_param(value: &str) -> Option<bool> {
    match value {
        "true" | "True" | "1" => Some(true),
        "false" | "False" | "0" => Some(false),
        _ => None,
    }
}

fn icontains(haystack: Option<&str>, needle: &str) -> bool {
    haystack.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

/// `GET /api/v2/findings/`. Unknown parameters are ignored: a misspelled filter widens
/// the result (defectdojo-real.md, "Lists and filters"). Lookups follow
/// `ApiFindingFilter`: note that `unique_id_from_tool`, `hash_code`, `title`,
/// `component_name` and `file_path` are *icontains* filters, not exact ones.
fn list_findings(
    state: &State,
    params: &BTreeMap<String, String>,
    pairs: &[(String, String)],
    ctx: &RequestCtx,
) -> Reply {
    // `test` is a ModelChoiceFilter: an unknown id is an error, not an empty page.
    if let Some(test) = params.get("test")
        && test
            .parse::<u64>()
            .ok()
            .and_then(|t| state.test(t))
            .is_none()
    {
        return Reply::field_errors(&[(
            "test".into(),
            "Select a valid choice. That choice is not one of the available choices.".into(),
            "invalid_choice",
        )]);
    }
    let mut findings: Vec<&super::Finding> = state.findings.iter().collect();
    for (key, value) in params {
        let v = value.as_str();
        findings.retain(|f| match key.as_str() {
            "test" => v.parse::<u64>().ok() == Some(f.test),
            "test__engagement" => {
                let ids: Vec<u64> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
                state
                    .test(f.test)
                    .is_some_and(|t| ids.contains(&t.engagement))
            }
            "id" => v
                .split(',')
                .filter_map(|s| s.trim().parse::<u64>().ok())
                .any(|id| id == f.id),
            "active" | "is_mitigated" | "duplicate" | "risk_accepted" | "false_p"
            | "out_of_scope" | "verified" | "under_review" | "static_finding"
            | "dynamic_finding" | "fix_available" => {
                let Some(wanted) = bool_param(v) else {
                    return true;
                };
                let actual = match key.as_str() {
                    "active" => f.active,
                    "is_mitigated" => f.is_mitigated,
                    "duplicate" => f.duplicate,
                    "risk_accepted" => f.risk_accepted,
                    "false_p" => f.false_p,
                    "out_of_scope" => f.out_of_scope,
                    "verified" => f.verified,
                    "under_review" => f.under_review,
                    "static_finding" => f.static_finding,
                    "dynamic_finding" => f.dynamic_finding,
                    _ => f.fix_available == Some(true),
                };
                actual == wanted
            }
            "unique_id_from_tool" => icontains(f.unique_id_from_tool.as_deref(), v),
            "hash_code" => icontains(Some(&f.hash_code), v),
            "title" => icontains(Some(&f.title), v),
            "exact_title" => f.title.to_lowercase() == v.to_lowercase(),
            "component_name" => icontains(f.component_name.as_deref(), v),
            "component_version" => icontains(f.component_version.as_deref(), v),
            "file_path" => icontains(f.file_path.as_deref(), v),
            "service" => f.service.as_deref() == Some(v),
            "vuln_id_from_tool" => f.vuln_id_from_tool.as_deref() == Some(v),
            "severity" => v.split(',').any(|s| s == f.severity),
            "vulnerability_id" => f.vulnerability_ids.iter().any(|id| id == v),
            "risk_acceptance" => state
                .risk_acceptances
                .iter()
                .any(|ra| Some(ra.id) == v.parse().ok() && ra.accepted_findings.contains(&f.id)),
            _ => true,
        });
    }
    if params.get("o").map(String::as_str) == Some("-id") {
        findings.reverse();
    }
    let items = findings
        .into_iter()
        .map(|f| state.finding_json(f))
        .collect();
    paginate(items, pairs, ctx)
}

/// `PATCH /api/v2/findings/<id>/`: a DRF partial update. Unknown and read-only keys
/// are ignored; `hash_code` is never recomputed.
fn patch_finding(state: &mut State, index: usize, body: Option<&Value>) -> Reply {
    let Some(Value::Object(body)) = body else {
        return Reply::field_errors(&[(
            "non_field_errors".into(),
            "Invalid data. Expected a dictionary, but got list.".into(),
            "invalid",
        )]);
    };
    let mut errors: Vec<(String, String, &'static str)> = Vec::new();
    let mut updated = state.findings[index].clone();
    for (key, value) in body {
        let k = key.as_str();
        match k {
            "severity" => match value.as_str() {
                // FindingSerializer.validate_severity
                Some(s) if SEVERITIES.contains(&s) => updated.severity = s.to_string(),
                Some(_) => errors.push((
                    key.clone(),
                    format!(
                        "Severity must be one of the following: {}",
                        super::parse::py_list_repr(
                            &SEVERITIES.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                        )
                    ),
                    "invalid",
                )),
                None => errors.push((key.clone(), "Not a valid string.".into(), "invalid")),
            },
            "title" | "description" => match value.as_str() {
                Some("") => {
                    errors.push((key.clone(), "This field may not be blank.".into(), "blank"))
                }
                Some(s) => {
                    if k == "title" {
                        updated.title = s.to_string();
                    } else {
                        updated.description = s.to_string();
                    }
                }
                None => errors.push((key.clone(), "This field may not be null.".into(), "null")),
            },
            "mitigation"
            | "impact"
            | "references"
            | "fix_version"
            | "component_name"
            | "component_version"
            | "file_path"
            | "unique_id_from_tool"
            | "vuln_id_from_tool" => {
                let v = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => {
                        errors.push((key.clone(), "Not a valid string.".into(), "invalid"));
                        continue;
                    }
                };
                let slot = match k {
                    "mitigation" => &mut updated.mitigation,
                    "impact" => &mut updated.impact,
                    "references" => &mut updated.references,
                    "fix_version" => &mut updated.fix_version,
                    "component_name" => &mut updated.component_name,
                    "component_version" => &mut updated.component_version,
                    "file_path" => &mut updated.file_path,
                    "unique_id_from_tool" => &mut updated.unique_id_from_tool,
                    _ => &mut updated.vuln_id_from_tool,
                };
                *slot = v;
            }
            "cvssv3_score" => match value {
                Value::Null => updated.cvssv3_score = None,
                Value::Number(n) => updated.cvssv3_score = n.as_f64(),
                Value::String(s) if s.trim().parse::<f64>().is_ok() => {
                    updated.cvssv3_score = s.trim().parse().ok();
                }
                _ => errors.push((key.clone(), "A valid number is required.".into(), "invalid")),
            },
            "fix_available" => match value {
                Value::Null => updated.fix_available = None,
                other => match drf_bool(other) {
                    Some(b) => updated.fix_available = Some(b),
                    None => {
                        errors.push((key.clone(), "Must be a valid boolean.".into(), "invalid"))
                    }
                },
            },
            "active" | "verified" | "false_p" | "out_of_scope" | "risk_accepted"
            | "under_review" | "duplicate" => match drf_bool(value) {
                Some(b) => match k {
                    "active" => updated.active = b,
                    "verified" => updated.verified = b,
                    "false_p" => updated.false_p = b,
                    "out_of_scope" => updated.out_of_scope = b,
                    "risk_accepted" => updated.risk_accepted = b,
                    "under_review" => updated.under_review = b,
                    _ => updated.duplicate = b,
                },
                None => errors.push((key.clone(), "Must be a valid boolean.".into(), "invalid")),
            },
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Reply::field_errors(&errors);
    }
    // FindingSerializer.validate, with PATCH semantics (missing keys keep the instance value).
    let original = &state.findings[index];
    let invariant = if (updated.active || updated.verified) && updated.duplicate {
        Some("Duplicate findings cannot be verified or active")
    } else if updated.false_p && updated.verified {
        Some("False positive findings cannot be verified.")
    } else if updated.risk_accepted && !original.risk_accepted {
        // enable_simple_risk_acceptance is off on auto-created products.
        Some(
            "Simple risk acceptance is disabled for this product, use the UI to accept this finding.",
        )
    } else if updated.active && updated.risk_accepted {
        Some("Active findings cannot be risk accepted.")
    } else {
        None
    };
    if let Some(msg) = invariant {
        return Reply::field_errors(&[("non_field_errors".into(), msg.into(), "invalid")]);
    }
    // process_risk_acceptance runs in validate(), before the fields are saved, so an
    // explicit `active` in the same PATCH wins over the re-activation it implies.
    if original.risk_accepted && !updated.risk_accepted {
        state.risk_unaccept(index);
        if !body.contains_key("active") {
            updated.active = state.findings[index].active;
        }
    }
    state.findings[index] = updated;
    Reply::json(200, state.finding_json(&state.findings[index]))
}

/// DRF `BooleanField.to_internal_value`.
fn drf_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        Value::String(s) => form_bool(s),
        _ => None,
    }
}

/// DRF `BooleanField` TRUE_VALUES / FALSE_VALUES for strings.
pub(crate) fn form_bool(s: &str) -> Option<bool> {
    match s {
        "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On"
        | "ON" | "1" => Some(true),
        "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off"
        | "Off" | "OFF" | "0" => Some(false),
        _ => None,
    }
}

/// `POST /api/v2/risk_acceptance/` (RiskAcceptanceSerializer).
fn create_risk_acceptance(state: &mut State, body: Option<&Value>) -> Reply {
    let Some(Value::Object(body)) = body else {
        return Reply::field_errors(&[(
            "non_field_errors".into(),
            "Invalid data. Expected a dictionary, but got list.".into(),
            "invalid",
        )]);
    };
    let mut errors: Vec<(String, String, &'static str)> = Vec::new();
    let name = match body.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            errors.push((
                "name".into(),
                "This field may not be blank.".into(),
                "blank",
            ));
            String::new()
        }
        _ => {
            errors.push(("name".into(), "This field is required.".into(), "required"));
            String::new()
        }
    };
    let mut finding_ids = Vec::new();
    match body.get("accepted_findings") {
        None => errors.push((
            "accepted_findings".into(),
            "This field is required.".into(),
            "required",
        )),
        Some(Value::Array(items)) => {
            for item in items {
                let id = item
                    .as_u64()
                    .or_else(|| item.as_str().and_then(|s| s.parse().ok()));
                match id {
                    Some(id) if state.finding_index(id).is_some() => finding_ids.push(id),
                    _ => errors.push((
                        "accepted_findings".into(),
                        format!(
                            "Invalid pk \"{}\" - object does not exist.",
                            value_text(item)
                        ),
                        "does_not_exist",
                    )),
                }
            }
        }
        Some(_) => errors.push((
            "accepted_findings".into(),
            "Expected a list of items but got type \"str\".".into(),
            "not_a_list",
        )),
    }
    match body.get("owner") {
        None => errors.push(("owner".into(), "This field is required.".into(), "required")),
        Some(v) if v.as_u64() == Some(ADMIN_ID) || v.as_str() == Some("1") => {}
        Some(v) => errors.push((
            "owner".into(),
            format!("Invalid pk \"{}\" - object does not exist.", value_text(v)),
            "does_not_exist",
        )),
    }
    let mut choice = |key: &str, default: &str| -> String {
        match body.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) if ["A", "V", "M", "F", "T"].contains(&s.as_str()) => s.clone(),
            Some(v) => {
                errors.push((
                    key.to_string(),
                    format!("\"{}\" is not a valid choice.", value_text(v)),
                    "invalid_choice",
                ));
                String::new()
            }
        }
    };
    let decision = choice("decision", "A");
    let recommendation = choice("recommendation", "F");
    let expiration_date = match body.get("expiration_date") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if chrono::NaiveDate::parse_from_str(
                &s.chars().take(10).collect::<String>(),
                "%Y-%m-%d",
            )
            .is_ok() =>
        {
            let day: String = s.chars().take(10).collect();
            Some(if s.len() > 10 {
                s.clone()
            } else {
                format!("{day}T00:00:00Z")
            })
        }
        Some(_) => {
            errors.push((
                "expiration_date".into(),
                "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].".into(),
                "invalid",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Reply::field_errors(&errors);
    }
    let engagements: std::collections::BTreeSet<u64> = finding_ids
        .iter()
        .filter_map(|id| state.finding_index(*id))
        .filter_map(|i| state.test(state.findings[i].test))
        .map(|t| t.engagement)
        .collect();
    if engagements.len() > 1 {
        return Reply::detail(
            403,
            "You are not permitted to add findings from multiple engagements",
        );
    }
    let id =
        state.create_risk_acceptance(name, finding_ids, decision, recommendation, expiration_date);
    let ra = state.risk_acceptances.iter().find(|ra| ra.id == id);
    match ra {
        Some(ra) => Reply::json(201, state.risk_acceptance_json(ra)),
        None => Reply::internal(),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// DRF `LimitOffsetPagination` with DefectDojo's page size of 25. `next`/`previous`
/// are absolute URLs with the query re-encoded in sorted key order, as
/// `rest_framework.utils.urls.replace_query_param` does.
fn paginate(items: Vec<Value>, pairs: &[(String, String)], ctx: &RequestCtx) -> Reply {
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let limit = get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(25);
    let offset = get("offset")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let count = items.len();
    let link = |offset: Option<usize>| -> Value {
        let mut query: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "limit" && k != "offset")
            .cloned()
            .collect();
        query.push(("limit".into(), limit.to_string()));
        if let Some(o) = offset {
            query.push(("offset".into(), o.to_string()));
        }
        query.sort_by(|a, b| a.0.cmp(&b.0));
        let encoded: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
            .collect();
        Value::String(format!(
            "{}{}?{}",
            ctx.base_url,
            ctx.path,
            encoded.join("&")
        ))
    };
    let next = if offset + limit < count {
        link(Some(offset + limit))
    } else {
        Value::Null
    };
    let previous = if offset == 0 {
        Value::Null
    } else if offset <= limit {
        link(None)
    } else {
        link(Some(offset - limit))
    };
    let results: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let mut body = Map::new();
    body.insert("count".into(), json!(count));
    body.insert("next".into(), next);
    body.insert("previous".into(), previous);
    body.insert("results".into(), Value::Array(results));
    Reply::json(200, Value::Object(body))
}

/// `application/x-www-form-urlencoded` decoding of a query string.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `urllib.parse.quote_plus`.
fn quote_plus(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
