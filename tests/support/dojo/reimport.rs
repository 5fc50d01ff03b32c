//! `POST /api/v2/reimport-scan/`, following the 3.2.0 code path: the
//! `UserHasReimportPermission` lookups, `ReImportScanSerializer` validation, then
//! either `DefaultReImporter` (the test exists) or `DefaultImporter` into a new test
//! (auto_create_context), with the statistics and import history they record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use serde_json::{Map, Value, json};

use super::api::form_bool;
use super::model::{
    ADMIN_ID, Finding, SEVERITIES, State, Test, TestImport, TestMeta, now_ts, severity_rank, today,
};
use super::parse::{
    GENERIC, ParseError, ParsedFinding, TRIVY_OPERATOR, hash_code, parse_generic,
    parse_trivy_operator, py_list_repr, titlecase,
};
use super::reply::Reply;
use super::{Captured, Shared, lock};

const SCAN_TYPES: [&str; 2] = [GENERIC, TRIVY_OPERATOR];
/// `DD_SCAN_FILE_MAX_SIZE`, in MB.
const SCAN_FILE_MAX_MB: usize = 100;

#[derive(Default)]
struct Form {
    /// Text fields; a repeated key keeps its last value (`QueryDict.get`).
    fields: BTreeMap<String, String>,
    file: Option<Vec<u8>>,
    /// `file` was sent as a plain text field.
    file_is_text: bool,
}

impl Form {
    fn captured(&self) -> Captured {
        let mut form = self.fields.clone();
        if !self.file_is_text {
            form.remove("file");
        }
        Captured {
            form,
            file: self.file.clone(),
            json_body: None,
        }
    }

    /// A value as the permission class sees it: `convert_querydict_to_dict` drops empty
    /// values. For non-required serializer fields DRF treats `""` from a form as absent
    /// too, so this is also the serializer's view of optional fields.
    fn given(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Validated `ReImportScanSerializer` data (plus what `setup_common_context` derives).
struct Options {
    scan_type: String,
    minimum_severity: String,
    /// Overrides for new findings; `None` when the field was not sent.
    active: Option<bool>,
    verified: Option<bool>,
    scan_date: Option<String>,
    product_type_name: Option<String>,
    product_name: Option<String>,
    engagement_name: Option<String>,
    test_title: Option<String>,
    service: Option<String>,
    version: Option<String>,
    build_id: Option<String>,
    branch_tag: Option<String>,
    commit_hash: Option<String>,
    group_by: Option<String>,
    deduplication_execution_mode: Option<String>,
    tags: Vec<String>,
    booleans: Vec<(&'static str, bool)>,
}

impl Options {
    /// The serializer has no length limits on these; the columns do (`Test.version` is
    /// varchar(100), the others varchar(150)), so a longer value is a database error: a
    /// 500 with the generic body.
    fn meta_fits(&self) -> bool {
        let fits =
            |v: &Option<String>, max: usize| v.as_ref().is_none_or(|s| s.chars().count() <= max);
        fits(&self.version, 100)
            && fits(&self.branch_tag, 150)
            && fits(&self.build_id, 150)
            && fits(&self.commit_hash, 150)
    }

    /// `update_test_meta`: each value, `""` when the request had none (the importer's
    /// default), unless it is whitespace.
    fn apply_meta(&self, meta: &mut TestMeta) {
        let set = |field: &mut Option<String>, v: &Option<String>| {
            let v = v.clone().unwrap_or_default();
            if v.is_empty() || !v.chars().all(char::is_whitespace) {
                *field = Some(v);
            }
        };
        set(&mut meta.version, &self.version);
        set(&mut meta.branch_tag, &self.branch_tag);
        set(&mut meta.build_id, &self.build_id);
        set(&mut meta.commit_hash, &self.commit_hash);
    }

    fn flag(&self, name: &str) -> bool {
        self.booleans
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, v)| *v)
    }
}

pub(crate) async fn handle(shared: &Arc<Shared>, req: Request) -> (Reply, Captured) {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let form = if content_type.starts_with("multipart/form-data") {
        match read_multipart(req).await {
            Ok(form) => form,
            Err(reply) => return (reply, Captured::default()),
        }
    } else {
        // Only MultiPartParser is configured on the import views: JSON (or anything
        // else with a body) is a 415 — defectdojo-real.md, "Request".
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let captured = Captured {
            json_body: serde_json::from_slice(&body).ok(),
            ..Captured::default()
        };
        if !body.is_empty() || !content_type.is_empty() {
            let reply = Reply::detail(
                415,
                &format!("Unsupported media type \"{content_type}\" in request."),
            );
            return (reply, captured);
        }
        Form::default()
    };
    let captured = form.captured();
    (reimport(shared, &form).await, captured)
}

/// The log view of a multipart request that is not processed (fault injection).
pub(crate) async fn capture_form(req: Request) -> Captured {
    read_multipart(req)
        .await
        .map(|form| form.captured())
        .unwrap_or_default()
}

async fn read_multipart(req: Request) -> Result<Form, Reply> {
    let parse_error = |e: String| Reply::detail(400, &format!("Multipart form parse error - {e}"));
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| parse_error(e.body_text()))?;
    let mut form = Form::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(parse_error(e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| parse_error(e.body_text()))?;
        match file_name {
            // Django skips file parts without a file name.
            Some(f) if f.is_empty() => {}
            Some(_) => {
                if name == "file" {
                    form.file = Some(data.to_vec());
                    form.file_is_text = false;
                }
            }
            None => {
                if name == "file" {
                    form.file_is_text = true;
                }
                form.fields
                    .insert(name, String::from_utf8_lossy(&data).into_owned());
            }
        }
    }
    Ok(form)
}

async fn reimport(shared: &Arc<Shared>, form: &Form) -> Reply {
    let resolved_test = {
        let state = lock(&shared.state);
        match permission_check(&state, form) {
            Ok(test) => test,
            Err(reply) => return reply,
        }
    };
    let opts = match validate(form) {
        Ok(opts) => opts,
        Err(reply) => return reply,
    };
    let file = form.file.as_deref().unwrap_or_default();
    if let Some(test_id) = resolved_test {
        if !opts.meta_fits() {
            return Reply::internal();
        }
        let mut state = lock(&shared.state);
        return reimport_into_test(&mut state, test_id, &opts, file);
    }
    if !opts.flag("auto_create_context") {
        // Reached with auto_create_context=false: the permission class only checked that
        // the raw string was non-empty (truthy), the serializer parsed it as False.
        return Reply::detail(404, "A test could not be found!");
    }
    let engagement = match get_or_create_engagement(shared, &opts).await {
        Ok(e) => e,
        Err(reply) => return reply,
    };
    if !opts.meta_fits() {
        // Test.objects.create fails in the database; the engagement stays.
        return Reply::internal();
    }
    let mut state = lock(&shared.state);
    import_into_new_test(&mut state, engagement, &opts, file)
}

/// `UserHasReimportPermission.has_permission`: runs before serializer validation; its
/// `ValidationError(str)`s come back as bare JSON lists.
fn permission_check(state: &State, form: &Form) -> Result<Option<u64>, Reply> {
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    for key in ["test", "engagement", "product"] {
        if form.given(key).is_some_and(|v| !digits(v)) {
            return Err(Reply::bare_list(&format!("{key} must be an integer")));
        }
    }
    let test_id: Option<u64> = form.given("test").and_then(|t| t.parse().ok());
    let scan_type = form.given("scan_type");
    let product_type_name = form.given("product_type_name");
    let product_name = form.given("product_name");
    let engagement_name = form.given("engagement_name");
    let test_title = form.given("test_title");

    let product_type = product_type_name.and_then(|n| state.product_type_by_name(n));
    let product = match product_name.and_then(|n| state.product_by_name(n)) {
        Some(p) => {
            let existing = state
                .product_types
                .iter()
                .find(|pt| pt.id == p.prod_type)
                .map(|pt| pt.name.as_str())
                .unwrap_or_default();
            if let Some(supplied) = product_type_name.filter(|s| *s != existing) {
                return Err(Reply::bare_list(&format!(
                    "The fetched product has a conflict with the supplied product type name: \
                     existing product type name - {existing} vs supplied product type name - {supplied}"
                )));
            }
            Some(p)
        }
        None => None,
    };
    let engagement = product.and_then(|p| latest_engagement(state, p.id, engagement_name));
    let test = match test_id {
        Some(id) => state.test(id),
        None => engagement.and_then(|e| latest_test(state, e, test_title, scan_type)),
    };

    if let Some(test) = test {
        let test_engagement = state.engagement(test.engagement);
        let test_product = test_engagement.and_then(|e| state.product(e.product));
        let inconsistent = |what: &str| {
            Reply::bare_list(&format!(
                "The provided identifiers are inconsistent — the test does not belong to the specified {what}."
            ))
        };
        // Resolved objects are compared by id, unresolved names by name.
        let product_ok = match (product, product_name) {
            (Some(p), _) => test_product.map(|tp| tp.id) == Some(p.id),
            (None, Some(name)) => test_product.map(|tp| tp.name.as_str()) == Some(name),
            (None, None) => true,
        };
        if !product_ok {
            return Err(inconsistent("product"));
        }
        let engagement_ok = match (engagement, engagement_name) {
            (Some(e), _) => test.engagement == e,
            (None, Some(name)) => test_engagement.map(|e| e.name.as_str()) == Some(name),
            (None, None) => true,
        };
        if !engagement_ok {
            return Err(inconsistent("engagement"));
        }
        return Ok(Some(test.id));
    }
    if let Some(id) = test_id {
        return Err(Reply::bare_list(&format!("Test \"{id}\" does not exist")));
    }

    let Some(product_name) = product_name else {
        return Err(Reply::bare_list("product_name parameter missing"));
    };
    let Some(engagement_name) = engagement_name else {
        return Err(Reply::bare_list("engagement_name parameter missing"));
    };
    // The raw form string decides here: even "false" is truthy.
    if form.given("auto_create_context").is_none() {
        // raise_no_auto_create_import_validation_error
        if let Some(pt) = product_type_name
            && product_type.is_none()
        {
            return Err(Reply::bare_list(&format!(
                "Product Type \"{pt}\" does not exist"
            )));
        }
        if product.is_none() {
            return Err(Reply::bare_list(&match product_type_name {
                Some(pt) => {
                    format!("Product \"{product_name}\" does not exist in Product_Type \"{pt}\"")
                }
                None => format!("Product \"{product_name}\" does not exist"),
            }));
        }
        if engagement.is_none() {
            return Err(Reply::bare_list(&format!(
                "Engagement \"{engagement_name}\" does not exist in Product \"{product_name}\""
            )));
        }
        return Err(Reply::bare_list(&match (test_title, scan_type) {
            (Some(title), _) => format!(
                "Test \"{title}\" with scan_type \"{}\" does not exist in Engagement \"{engagement_name}\"",
                scan_type.unwrap_or("None")
            ),
            (None, Some(st)) => {
                format!(
                    "Test with scan_type \"{st}\" does not exist in Engagement \"{engagement_name}\""
                )
            }
            (None, None) => {
                "Need test_id or product_name + engagement_name + scan_type to perform reimport"
                    .into()
            }
        }));
    }
    // check_auto_create_permission
    if engagement.is_none() && product.is_none() && product_type_name.is_none() {
        return Err(Reply::bare_list(&format!(
            "Product \"{product_name}\" does not exist and no product_type_name provided to create the new product in"
        )));
    }
    Ok(None)
}

/// "engagement name is not unique unfortunately": the last one wins.
fn latest_engagement(state: &State, product: u64, name: Option<&str>) -> Option<u64> {
    let name = name?;
    state
        .engagements
        .iter()
        .filter(|e| e.product == product && e.name == name)
        .map(|e| e.id)
        .max()
}

/// `get_target_test_if_exists`: the last test of the engagement with this title and
/// scan type — or, without a title, the last test of that scan type at all. That is
/// the documented trap: a reimport without `test_title` merges into an unrelated test.
fn latest_test<'a>(
    state: &'a State,
    engagement: u64,
    title: Option<&str>,
    scan_type: Option<&str>,
) -> Option<&'a Test> {
    let scan_type = scan_type?;
    state
        .tests
        .iter()
        .filter(|t| t.engagement == engagement && t.scan_type == scan_type)
        .filter(|t| title.is_none_or(|title| t.title.as_deref() == Some(title)))
        .max_by_key(|t| t.id)
}

fn validate(form: &Form) -> Result<Options, Reply> {
    let mut errors: Vec<(String, String, &'static str)> = Vec::new();
    let mut invalid = |field: &str, msg: String, code: &'static str| {
        errors.push((field.to_string(), msg, code));
    };
    let choice =
        |field: &str, choices: &[&str], invalid: &mut dyn FnMut(&str, String, &'static str)| {
            form.given(field).and_then(|v| {
                if choices.contains(&v) {
                    Some(v.to_string())
                } else {
                    invalid(
                        field,
                        format!("\"{v}\" is not a valid choice."),
                        "invalid_choice",
                    );
                    None
                }
            })
        };
    let mut booleans: Vec<(&'static str, bool)> = Vec::new();
    let mut overrides: BTreeMap<&'static str, bool> = BTreeMap::new();
    let mut boolean = |field: &'static str,
                       default: bool,
                       invalid: &mut dyn FnMut(&str, String, &'static str)| {
        // Absent from a form: BooleanField's default_empty_html (False) or the default.
        let value = match form.given(field) {
            None => default,
            Some(v) => match form_bool(v) {
                Some(b) => {
                    overrides.insert(field, b);
                    b
                }
                None => {
                    invalid(field, "Must be a valid boolean.".into(), "invalid");
                    default
                }
            },
        };
        booleans.push((field, value));
    };
    let text = |field: &str| form.given(field).map(str::to_string);

    // Field declaration order, which is the order of DRF's error dict.
    let scan_date = form.given("scan_date").and_then(|d| {
        match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(date) if date > chrono::Utc::now().date_naive() => {
                invalid(
                    "scan_date",
                    "The scan_date cannot be in the future!".into(),
                    "invalid",
                );
                None
            }
            Ok(date) => Some(date.to_string()),
            Err(_) => {
                invalid(
                    "scan_date",
                    "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.".into(),
                    "invalid",
                );
                None
            }
        }
    });
    let minimum_severity =
        choice("minimum_severity", &SEVERITIES, &mut invalid).unwrap_or_else(|| "Info".into());
    boolean("active", false, &mut invalid);
    boolean("verified", false, &mut invalid);
    if form.file_is_text {
        invalid(
            "file",
            "The submitted data was not a file. Check the encoding type on the form.".into(),
            "invalid",
        );
    }
    boolean("auto_create_context", false, &mut invalid);
    boolean("deduplication_on_engagement", false, &mut invalid);
    boolean("push_to_jira", false, &mut invalid);
    let group_by = choice(
        "group_by",
        &[
            "component_name",
            "component_name+component_version",
            "file_path",
            "finding_title",
            "vuln_id_from_tool",
        ],
        &mut invalid,
    );
    boolean("create_finding_groups_for_all_findings", true, &mut invalid);
    boolean("apply_tags_to_findings", false, &mut invalid);
    boolean("apply_tags_to_endpoints", false, &mut invalid);
    let deduplication_execution_mode = choice(
        "deduplication_execution_mode",
        &["async", "async_wait", "sync"],
        &mut invalid,
    );
    boolean("do_not_reactivate", false, &mut invalid);
    // scan_type is required, so "" is not treated as absent.
    let scan_type = match form.fields.get("scan_type") {
        None => {
            invalid("scan_type", "This field is required.".into(), "required");
            String::new()
        }
        Some(s) if SCAN_TYPES.contains(&s.as_str()) => s.clone(),
        Some(s) => {
            invalid(
                "scan_type",
                format!("\"{s}\" is not a valid choice."),
                "invalid_choice",
            );
            String::new()
        }
    };
    // Reimport keeps closing old findings when the field is omitted.
    boolean("close_old_findings", true, &mut invalid);
    boolean("close_old_findings_product_scope", false, &mut invalid);
    if !errors.is_empty() {
        return Err(Reply::field_errors(&errors));
    }
    // CommonImportScanSerializer.validate
    match &form.file {
        None => {
            return Err(Reply::field_errors(&[(
                "non_field_errors".into(),
                format!("Uploading a Report File is required for {scan_type}"),
                "invalid",
            )]));
        }
        Some(file) if file.len() > SCAN_FILE_MAX_MB * 1024 * 1024 => {
            return Err(Reply::field_errors(&[(
                "non_field_errors".into(),
                format!(
                    "Report file is too large. Maximum supported size is {SCAN_FILE_MAX_MB} MB"
                ),
                "invalid",
            )]));
        }
        Some(_) => {}
    }
    let tags = form
        .given("tags")
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Options {
        scan_type,
        minimum_severity,
        active: overrides.get("active").copied(),
        verified: overrides.get("verified").copied(),
        scan_date,
        product_type_name: text("product_type_name"),
        product_name: text("product_name"),
        engagement_name: text("engagement_name"),
        test_title: text("test_title"),
        service: text("service"),
        version: text("version"),
        build_id: text("build_id"),
        branch_tag: text("branch_tag"),
        commit_hash: text("commit_hash"),
        group_by,
        deduplication_execution_mode,
        tags,
        booleans,
    })
}

/// `AutoCreateContextManager.get_or_create_engagement`. Product types and products have
/// unique names (`get_or_create` under `select_for_update`); engagements do not, and
/// `Engagement.objects.create()` runs after an unlocked look-up. The create latency
/// widens that window so racing first reimports create duplicate engagements.
async fn get_or_create_engagement(shared: &Arc<Shared>, opts: &Options) -> Result<u64, Reply> {
    let product_name = opts.product_name.clone().unwrap_or_default();
    {
        let state = lock(&shared.state);
        let existing = state
            .product_by_name(&product_name)
            .and_then(|p| latest_engagement(&state, p.id, opts.engagement_name.as_deref()));
        if let Some(e) = existing {
            return Ok(e);
        }
    }
    let delay = *lock(&shared.create_latency);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = lock(&shared.state);
    let product_id = match state.product_by_name(&product_name) {
        Some(p) => p.id,
        None => {
            let Some(pt_name) = opts.product_type_name.clone() else {
                return Err(Reply::internal());
            };
            let pt_id = match state.product_type_by_name(&pt_name) {
                Some(pt) => pt.id,
                None => {
                    let id = state.next_id("product_type");
                    state
                        .product_types
                        .push(super::ProductType { id, name: pt_name });
                    id
                }
            };
            let id = state.next_id("product");
            state.products.push(super::Product {
                id,
                name: product_name,
                prod_type: pt_id,
            });
            id
        }
    };
    let id = state.next_id("engagement");
    state.engagements.push(super::Engagement {
        id,
        name: opts.engagement_name.clone().unwrap_or_default(),
        product: product_id,
    });
    Ok(id)
}

fn parse_error_reply(e: ParseError) -> Reply {
    match e {
        ParseError::Invalid(msg) => Reply::django_invalid(&msg),
        ParseError::Internal => Reply::internal(),
    }
}

/// `sanitize_severity` and the minimum-severity filter, run over the whole report
/// before any finding is touched.
fn sanitize(findings: Vec<ParsedFinding>, minimum: &str) -> Result<Vec<ParsedFinding>, Reply> {
    let min_rank = severity_rank(minimum).unwrap_or(4);
    let mut out = Vec::with_capacity(findings.len());
    for mut f in findings {
        let lower = f.severity.to_lowercase();
        if f.severity != "Info" && (lower.starts_with("info") || lower == "none") {
            f.severity = "Info".into();
        }
        let Some(rank) = severity_rank(&f.severity) else {
            let supported: Vec<String> = SEVERITIES.iter().map(|s| s.to_string()).collect();
            return Err(Reply::django_invalid(&format!(
                "Finding severity \"{}\" is not supported. Any of the following are supported: {}.",
                f.severity,
                py_list_repr(&supported)
            )));
        };
        if rank <= min_rank {
            out.push(f);
        }
    }
    Ok(out)
}

/// Creates a finding from the report (`process_finding_that_was_not_matched` and the
/// importer's equivalent). Form `active`/`verified` override the report's values.
fn create_finding(
    state: &mut State,
    test_id: u64,
    pf: &ParsedFinding,
    hash: String,
    opts: &Options,
) -> u64 {
    let id = state.next_id("finding");
    let mut title = titlecase(&pf.title);
    if title.chars().count() > 511 {
        title = title.chars().take(511).collect();
    }
    let mut vulnerability_ids: Vec<String> = Vec::new();
    for v in &pf.vulnerability_ids {
        if !v.trim().is_empty() && !vulnerability_ids.contains(v) {
            vulnerability_ids.push(v.clone());
        }
    }
    state.findings.push(Finding {
        id,
        test: test_id,
        title,
        severity: pf.severity.clone(),
        description: pf.description.clone(),
        file_path: pf.file_path.clone(),
        line: pf.line,
        cwe: pf.cwe,
        service: pf.service.clone(),
        hash_code: hash,
        unique_id_from_tool: pf.unique_id_from_tool.clone(),
        vuln_id_from_tool: pf.vuln_id_from_tool.clone(),
        component_name: pf.component_name.clone(),
        component_version: pf.component_version.clone(),
        mitigation: pf.mitigation.clone(),
        impact: pf.impact.clone(),
        references: pf.references.clone(),
        fix_version: pf.fix_version.clone(),
        fix_available: pf.fix_available,
        cvssv3_score: pf.cvssv3_score,
        date: opts
            .scan_date
            .clone()
            .or_else(|| pf.date.clone())
            .unwrap_or_else(today),
        active: opts.active.unwrap_or(pf.active),
        verified: opts.verified.unwrap_or(pf.verified),
        is_mitigated: pf.is_mitigated,
        mitigated: if pf.is_mitigated {
            pf.mitigated.clone()
        } else {
            None
        },
        mitigated_by: None,
        risk_accepted: pf.risk_accepted,
        false_p: pf.false_p,
        out_of_scope: pf.out_of_scope,
        duplicate: false,
        duplicate_finding: None,
        under_review: pf.under_review,
        static_finding: pf.static_finding,
        dynamic_finding: pf.dynamic_finding,
        notes: Vec::new(),
        vulnerability_ids,
        tags: pf.tags.clone(),
        extra: pf.extra.clone(),
    });
    id
}

/// The service override and hash, as both importers prepare each report finding.
fn prepare(findings: &mut [ParsedFinding], opts: &Options) -> Vec<String> {
    findings
        .iter_mut()
        .map(|f| {
            if let Some(service) = &opts.service {
                f.service = Some(service.clone());
            }
            hash_code(&opts.scan_type, f)
        })
        .collect()
}

fn import_settings(opts: &Options, close_old_findings: bool, reimport: bool) -> Value {
    let mut settings = json!({
        "active": opts.active,
        "verified": opts.verified,
        "minimum_severity": opts.minimum_severity,
        "close_old_findings": close_old_findings,
        "close_old_findings_product_scope": opts.flag("close_old_findings_product_scope"),
        "push_to_jira": opts.flag("push_to_jira"),
        "tags": if opts.tags.is_empty() { Value::Null } else { json!(opts.tags) },
        "group_by": opts.group_by,
        "service": opts.service,
        "apply_tags_to_findings": opts.flag("apply_tags_to_findings"),
        "apply_tags_to_endpoints": opts.flag("apply_tags_to_endpoints"),
    });
    if reimport && let Value::Object(m) = &mut settings {
        m.insert(
            "do_not_reactivate".into(),
            json!(opts.flag("do_not_reactivate")),
        );
    }
    settings
}

/// `DefaultImporter` into a fresh test (a reimport that found no test, with
/// auto_create_context): the statistics then hold only `after`.
fn import_into_new_test(state: &mut State, engagement: u64, opts: &Options, file: &[u8]) -> Reply {
    // Generic has get_tests(): it parses before creating the test. Trivy Operator is a
    // static parser: the test exists first, so its parse errors leave an empty test.
    let (test_type_name, parsed) = if opts.scan_type == GENERIC {
        match parse_generic(file) {
            Ok(report) => (report.test_type_name, Some(report.findings)),
            Err(e) => return parse_error_reply(e),
        }
    } else {
        (opts.scan_type.clone(), None)
    };
    let test_type = state.get_or_create_test_type(&test_type_name);
    let test_id = state.next_id("test");
    state.tests.push(Test {
        id: test_id,
        title: opts.test_title.clone(),
        engagement,
        test_type,
        test_type_name,
        scan_type: opts.scan_type.clone(),
        meta: {
            let mut m = TestMeta::default();
            opts.apply_meta(&mut m);
            m
        },
    });
    let parsed = match parsed {
        Some(p) => p,
        None => match parse_trivy_operator(file) {
            Ok(p) => p,
            Err(e) => return parse_error_reply(e),
        },
    };
    // Severity problems surface after the test exists: the empty test stays behind
    // (observed with severity "Extreme").
    let mut findings = match sanitize(parsed, &opts.minimum_severity) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let hashes = prepare(&mut findings, opts);
    let mut actions = Vec::new();
    for (pf, hash) in findings.iter().zip(hashes) {
        let id = create_finding(state, test_id, pf, hash, opts);
        actions.push((id, "N"));
    }
    let ti_id = state.next_id("test_import");
    state.test_imports.push(TestImport {
        id: ti_id,
        test: test_id,
        kind: "import",
        // close_old_findings is forced off when the reimport falls back to an import.
        import_settings: import_settings(opts, false, false),
        actions,
        created: now_ts(),
    });
    let statistics = json!({ "after": state.test_stats(test_id) });
    Reply::json(201, response_body(state, opts, test_id, statistics))
}

/// `DefaultReImporter.process_scan` against an existing test.
fn reimport_into_test(state: &mut State, test_id: u64, opts: &Options, file: &[u8]) -> Reply {
    let Some(test) = state.test(test_id).cloned() else {
        return Reply::detail(404, "A test could not be found!");
    };
    let before = state.test_stats(test_id);
    let parsed = if opts.scan_type == GENERIC {
        match parse_generic(file) {
            Ok(report) => {
                if report.test_type_name != test.test_type_name {
                    return Reply::django_invalid(&format!(
                        "Test type mismatch: Test {} has test_type '{}', but the report contains test_type '{}'. \
                         Reimport with matching test_type or create a new test.",
                        test.id, test.test_type_name, report.test_type_name
                    ));
                }
                report.findings
            }
            Err(e) => return parse_error_reply(e),
        }
    } else {
        match parse_trivy_operator(file) {
            Ok(p) => p,
            Err(e) => return parse_error_reply(e),
        }
    };
    let mut findings = match sanitize(parsed, &opts.minimum_severity) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let hashes = prepare(&mut findings, opts);
    if let Some(t) = state.tests.iter_mut().find(|t| t.id == test_id) {
        opts.apply_meta(&mut t.meta);
    }

    // Only findings of the request's service (or without service when none was sent)
    // are candidates for closing — PR #12782; defectdojo-real.md step 3 vs step 4.
    let original: Vec<u64> = state
        .findings
        .iter()
        .filter(|f| f.test == test_id)
        .filter(|f| match &opts.service {
            Some(s) => f.service.as_deref() == Some(s.as_str()),
            None => f.service.as_deref().is_none_or(str::is_empty),
        })
        .map(|f| f.id)
        .collect();
    // Matching uses every finding of the test, by hash_code (ids ascending).
    let mut candidates: HashMap<String, Vec<u64>> = HashMap::new();
    for f in state.findings.iter().filter(|f| f.test == test_id) {
        candidates
            .entry(f.hash_code.clone())
            .or_default()
            .push(f.id);
    }

    let mut new_items: Vec<u64> = Vec::new();
    let mut reactivated: Vec<u64> = Vec::new();
    let mut unchanged: Vec<u64> = Vec::new();
    for (pf, hash) in findings.iter().zip(hashes) {
        let matched = candidates
            .get(&hash)
            .and_then(|ids| ids.iter().min().copied());
        let Some(existing_id) = matched else {
            let id = create_finding(state, test_id, pf, hash.clone(), opts);
            new_items.push(id);
            candidates.entry(hash).or_default().push(id);
            continue;
        };
        let Some(idx) = state.finding_index(existing_id) else {
            continue;
        };
        match process_matched(state, idx, pf, opts) {
            Matched::Unchanged { post_process } => {
                unchanged.push(existing_id);
                if post_process {
                    reconcile_vulnerability_ids(state, idx, pf);
                }
            }
            Matched::Reactivated => {
                reactivated.push(existing_id);
                reconcile_vulnerability_ids(state, idx, pf);
            }
            Matched::Other { post_process } => {
                if post_process {
                    reconcile_vulnerability_ids(state, idx, pf);
                }
            }
        }
    }

    let reactivated_set: BTreeSet<u64> = reactivated.iter().copied().collect();
    let unchanged_set: BTreeSet<u64> = unchanged.iter().copied().collect();
    let new_set: BTreeSet<u64> = new_items.iter().copied().collect();
    let to_mitigate: BTreeSet<u64> = original
        .iter()
        .copied()
        .filter(|id| !reactivated_set.contains(id) && !unchanged_set.contains(id))
        .collect();
    let untouched: BTreeSet<u64> = unchanged_set
        .iter()
        .copied()
        .filter(|id| {
            !to_mitigate.contains(id) && !new_set.contains(id) && !reactivated_set.contains(id)
        })
        .collect();

    let mut closed: Vec<u64> = Vec::new();
    if opts.flag("close_old_findings") {
        let mitigated_at = opts
            .scan_date
            .as_ref()
            .map(|d| format!("{d}T00:00:00Z"))
            .unwrap_or_else(now_ts);
        for id in &to_mitigate {
            let Some(idx) = state.finding_index(*id) else {
                continue;
            };
            let f = &state.findings[idx];
            if f.mitigated.is_some() && f.is_mitigated {
                continue;
            }
            let f = &mut state.findings[idx];
            f.active = false;
            f.is_mitigated = true;
            if f.mitigated.is_none() {
                f.mitigated = Some(mitigated_at.clone());
            }
            f.mitigated_by = Some(ADMIN_ID);
            // The note names the test type (`self.test.test_type`).
            state.add_note(
                idx,
                &format!("Mitigated by {} re-upload.", test.test_type_name),
            );
            // A closed finding loses its risk acceptance (defectdojo-real.md, reimport 2).
            state.risk_unaccept(idx);
            closed.push(*id);
        }
    }

    let mut actions: Vec<(u64, &'static str)> = Vec::new();
    actions.extend(closed.iter().map(|id| (*id, "C")));
    actions.extend(new_items.iter().map(|id| (*id, "N")));
    actions.extend(reactivated_set.iter().map(|id| (*id, "R")));
    actions.extend(untouched.iter().map(|id| (*id, "U")));
    let ti_id = state.next_id("test_import");
    let test_import = TestImport {
        id: ti_id,
        test: test_id,
        kind: "reimport",
        import_settings: import_settings(opts, opts.flag("close_old_findings"), true),
        actions,
        created: now_ts(),
    };
    let delta = state.delta_stats(&test_import);
    state.test_imports.push(test_import);
    let statistics = json!({
        "before": before,
        "delta": delta,
        "after": state.test_stats(test_id),
    });
    Reply::json(201, response_body(state, opts, test_id, statistics))
}

enum Matched {
    /// Counted as untouched (unless it turns out to be new or closed).
    Unchanged {
        post_process: bool,
    },
    Reactivated,
    /// Neither untouched nor reactivated: it stays a closing candidate.
    Other {
        post_process: bool,
    },
}

/// `process_matched_finding`. A matched finding's content is never refreshed: severity,
/// mitigation, impact, score, title... keep their first (or PATCHed) values
/// (defectdojo-real.md, "Reimport never refreshes a matched finding").
fn process_matched(state: &mut State, idx: usize, pf: &ParsedFinding, opts: &Options) -> Matched {
    let existing = state.findings[idx].clone();
    if existing.false_p || existing.out_of_scope || existing.risk_accepted {
        // process_matched_special_status_finding
        if existing.false_p == pf.false_p
            && existing.out_of_scope == pf.out_of_scope
            && existing.risk_accepted == pf.risk_accepted
        {
            return Matched::Unchanged {
                post_process: false,
            };
        }
        if existing.risk_accepted && !existing.active {
            return Matched::Unchanged { post_process: true };
        }
        // A false positive / out-of-scope finding the report still contains is neither
        // untouched nor reactivated, so close_old_findings mitigates it (3.2.0 source).
        return Matched::Other { post_process: true };
    }
    if existing.is_mitigated {
        // process_matched_mitigated_finding
        let f = &mut state.findings[idx];
        if f.fix_available != pf.fix_available {
            f.fix_available = pf.fix_available;
            f.fix_version = pf.fix_version.clone();
        }
        if pf.is_mitigated {
            return Matched::Unchanged {
                post_process: false,
            };
        }
        if opts.flag("do_not_reactivate") {
            let note = format!(
                "Finding has skipped reactivation from {} re-upload with user decision do_not_reactivate.",
                opts.scan_type
            );
            if !state.findings[idx].notes.contains(&note) {
                state.add_note(idx, &note);
            }
            return Matched::Other {
                post_process: false,
            };
        }
        let f = &mut state.findings[idx];
        f.mitigated = None;
        f.is_mitigated = false;
        f.mitigated_by = None;
        let note = if f.duplicate {
            f.active = false;
            f.verified = false;
            format!(
                "Un-mitigated by {} re-upload but kept inactive because the finding is a duplicate.",
                opts.scan_type
            )
        } else {
            f.active = true;
            if let Some(v) = opts.verified {
                f.verified = v;
            }
            format!("Re-activated by {} re-upload.", opts.scan_type)
        };
        if f.component_name.is_none() {
            f.component_name = pf.component_name.clone();
        }
        if f.component_version.is_none() {
            f.component_version = pf.component_version.clone();
        }
        state.add_note(idx, &note);
        return Matched::Reactivated;
    }
    // process_matched_active_finding
    let f = &mut state.findings[idx];
    if f.fix_available != pf.fix_available {
        f.fix_available = pf.fix_available;
        f.fix_version = pf.fix_version.clone();
    }
    let result = if pf.is_mitigated {
        f.mitigated = pf.mitigated.clone();
        f.is_mitigated = true;
        f.mitigated_by = None;
        f.active = false;
        if let Some(v) = opts.verified {
            f.verified = v;
        }
        Matched::Other { post_process: true }
    } else if pf.risk_accepted || pf.false_p || pf.out_of_scope {
        f.risk_accepted = pf.risk_accepted;
        f.false_p = pf.false_p;
        f.out_of_scope = pf.out_of_scope;
        f.active = false;
        if let Some(v) = opts.verified {
            f.verified = v;
        }
        Matched::Other { post_process: true }
    } else {
        Matched::Unchanged { post_process: true }
    };
    if pf.component_name.is_some() && f.component_name.as_deref().is_none_or(str::is_empty) {
        f.component_name = pf.component_name.clone();
    }
    if pf.component_version.is_some() && f.component_version.as_deref().is_none_or(str::is_empty) {
        f.component_version = pf.component_version.clone();
    }
    result
}

/// `reconcile_vulnerability_ids`: the one thing a reimport does rewrite on a matched
/// finding is its vulnerability id list.
fn reconcile_vulnerability_ids(state: &mut State, idx: usize, pf: &ParsedFinding) {
    let mut ids: Vec<String> = Vec::new();
    for v in &pf.vulnerability_ids {
        if !v.trim().is_empty() && !ids.contains(v) {
            ids.push(v.clone());
        }
    }
    state.findings[idx].vulnerability_ids = ids;
}

/// The 201 body: the validated request echoed back, plus ids and statistics. The
/// echoed `active`/`verified` are the serializer's False defaults, not the findings'
/// state (defectdojo-real.md, "Response body").
fn response_body(state: &State, opts: &Options, test_id: u64, statistics: Value) -> Value {
    let mut body = Map::new();
    body.insert("scan_type".into(), json!(opts.scan_type));
    body.insert("minimum_severity".into(), json!(opts.minimum_severity));
    body.insert("endpoint_to_add".into(), Value::Null);
    body.insert("lead".into(), Value::Null);
    body.insert("api_scan_configuration".into(), Value::Null);
    for (name, value) in &opts.booleans {
        body.insert(name.to_string(), json!(value));
    }
    for (name, value) in [
        ("scan_date", &opts.scan_date),
        ("product_type_name", &opts.product_type_name),
        ("product_name", &opts.product_name),
        ("engagement_name", &opts.engagement_name),
        ("test_title", &opts.test_title),
        ("service", &opts.service),
        ("version", &opts.version),
        ("build_id", &opts.build_id),
        ("branch_tag", &opts.branch_tag),
        ("commit_hash", &opts.commit_hash),
        ("group_by", &opts.group_by),
        (
            "deduplication_execution_mode",
            &opts.deduplication_execution_mode,
        ),
    ] {
        if let Some(v) = value {
            body.insert(name.into(), json!(v));
        }
    }
    if !opts.tags.is_empty() {
        body.insert("tags".into(), json!(opts.tags));
    }
    let (engagement_id, product_id, product_type_id) =
        state.test_context(test_id).unwrap_or_default();
    body.insert("test".into(), json!(test_id));
    body.insert("test_id".into(), json!(test_id));
    body.insert("engagement_id".into(), json!(engagement_id));
    body.insert("product_id".into(), json!(product_id));
    body.insert("product_type_id".into(), json!(product_type_id));
    body.insert("statistics".into(), statistics);
    // The fake has no asynchronous deduplication; only the waiting modes say so.
    let complete = matches!(
        opts.deduplication_execution_mode.as_deref(),
        Some("sync" | "async_wait")
    );
    body.insert("deduplication_complete".into(), json!(complete));
    Value::Object(body)
}
