//! The fake's data model: the rows a DefectDojo database would hold, and their
//! JSON representations as the 3.2.0 API renders them.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Severity choices in DefectDojo's order (`dojo.models.SEVERITIES`).
pub(crate) const SEVERITIES: [&str; 5] = ["Info", "Low", "Medium", "High", "Critical"];

/// The only user of the fake: the admin (id 1) that owns the token.
pub(crate) const ADMIN_ID: u64 = 1;

/// `Finding.SEVERITIES`: lower is more severe. Used by the minimum-severity filter.
pub(crate) fn severity_rank(severity: &str) -> Option<u8> {
    match severity {
        "Critical" => Some(0),
        "High" => Some(1),
        "Medium" => Some(2),
        "Low" => Some(3),
        "Info" => Some(4),
        _ => None,
    }
}

/// `Finding.get_numerical_severity`.
pub(crate) fn numerical_severity(severity: &str) -> &'static str {
    match severity {
        "Critical" => "S0",
        "High" => "S1",
        "Medium" => "S2",
        "Low" => "S3",
        "Info" => "S4",
        _ => "S5",
    }
}

pub(crate) fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

#[derive(Clone, Debug)]
pub struct ProductType {
    pub id: u64,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Product {
    pub id: u64,
    pub name: String,
    /// Product type id.
    pub prod_type: u64,
}

#[derive(Clone, Debug)]
pub struct Engagement {
    pub id: u64,
    pub name: String,
    /// Product id.
    pub product: u64,
}

#[derive(Clone, Debug)]
pub struct Test {
    pub id: u64,
    /// `None` when the test was created without `test_title` (the real column is nullable).
    pub title: Option<String>,
    /// Engagement id.
    pub engagement: u64,
    pub test_type: u64,
    pub test_type_name: String,
    pub scan_type: String,
    /// `version`, `branch_tag`, `build_id`, `commit_hash`: written on import and on
    /// every reimport (`update_test_meta`: `""` when the request has none).
    pub meta: TestMeta,
}

#[derive(Clone, Debug, Default)]
pub struct TestMeta {
    pub version: Option<String>,
    pub branch_tag: Option<String>,
    pub build_id: Option<String>,
    pub commit_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub id: u64,
    /// Test id.
    pub test: u64,
    pub title: String,
    pub severity: String,
    pub description: String,
    pub file_path: Option<String>,
    pub line: Option<i64>,
    /// The model default is 0 (it takes part in the legacy hash as `"0"`).
    pub cwe: Option<i64>,
    pub service: Option<String>,
    pub hash_code: String,
    pub unique_id_from_tool: Option<String>,
    pub vuln_id_from_tool: Option<String>,
    pub component_name: Option<String>,
    pub component_version: Option<String>,
    pub mitigation: Option<String>,
    pub impact: Option<String>,
    pub references: Option<String>,
    pub fix_version: Option<String>,
    pub fix_available: Option<bool>,
    pub cvssv3_score: Option<f64>,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub active: bool,
    pub verified: bool,
    pub is_mitigated: bool,
    pub mitigated: Option<String>,
    pub mitigated_by: Option<u64>,
    pub risk_accepted: bool,
    pub false_p: bool,
    pub out_of_scope: bool,
    pub duplicate: bool,
    pub duplicate_finding: Option<u64>,
    pub under_review: bool,
    pub static_finding: bool,
    pub dynamic_finding: bool,
    /// Note texts, oldest first.
    pub notes: Vec<String>,
    pub vulnerability_ids: Vec<String>,
    pub tags: Vec<String>,
    /// Other Generic Findings Import keys, stored and rendered verbatim.
    pub extra: BTreeMap<String, Value>,
}

impl Finding {
    /// `Finding.status()`, exposed by the API as `display_status`.
    pub fn display_status(&self) -> String {
        let mut status = Vec::new();
        if self.under_review {
            status.push("Under Review");
        }
        status.push(if self.active { "Active" } else { "Inactive" });
        if self.verified {
            status.push("Verified");
        }
        if self.mitigated.is_some() || self.is_mitigated {
            status.push("Mitigated");
        }
        if self.false_p {
            status.push("False Positive");
        }
        if self.out_of_scope {
            status.push("Out Of Scope");
        }
        if self.duplicate {
            status.push("Duplicate");
        }
        if self.risk_accepted {
            status.push("Risk Accepted");
        }
        status.join(", ")
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Note {
    pub id: u64,
    pub entry: String,
    pub date: String,
}

#[derive(Clone, Debug)]
pub(crate) struct TestImport {
    pub id: u64,
    pub test: u64,
    /// "import" or "reimport".
    pub kind: &'static str,
    pub import_settings: Value,
    /// (finding id, action code N/C/R/U).
    pub actions: Vec<(u64, &'static str)>,
    pub created: String,
}

#[derive(Clone, Debug)]
pub(crate) struct RiskAcceptance {
    pub id: u64,
    pub name: String,
    pub accepted_findings: Vec<u64>,
    pub owner: u64,
    pub decision: String,
    pub recommendation: String,
    pub expiration_date: Option<String>,
    pub created: String,
}

#[derive(Default)]
pub(crate) struct State {
    pub product_types: Vec<ProductType>,
    pub products: Vec<Product>,
    pub engagements: Vec<Engagement>,
    pub tests: Vec<Test>,
    pub test_types: Vec<(u64, String)>,
    pub findings: Vec<Finding>,
    pub notes: BTreeMap<u64, Vec<Note>>,
    pub test_imports: Vec<TestImport>,
    pub risk_acceptances: Vec<RiskAcceptance>,
    next_ids: BTreeMap<&'static str, u64>,
}

impl State {
    pub fn next_id(&mut self, table: &'static str) -> u64 {
        let next = self.next_ids.entry(table).or_insert(0);
        *next += 1;
        *next
    }

    pub fn product_type_by_name(&self, name: &str) -> Option<&ProductType> {
        self.product_types.iter().find(|p| p.name == name)
    }

    pub fn product_by_name(&self, name: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.name == name)
    }

    pub fn product(&self, id: u64) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    pub fn engagement(&self, id: u64) -> Option<&Engagement> {
        self.engagements.iter().find(|e| e.id == id)
    }

    pub fn test(&self, id: u64) -> Option<&Test> {
        self.tests.iter().find(|t| t.id == id)
    }

    pub fn finding_index(&self, id: u64) -> Option<usize> {
        self.findings.iter().position(|f| f.id == id)
    }

    /// Product type / product / engagement ids of a test (for the response body).
    pub fn test_context(&self, test_id: u64) -> Option<(u64, u64, u64)> {
        let test = self.test(test_id)?;
        let engagement = self.engagement(test.engagement)?;
        let product = self.product(engagement.product)?;
        Some((engagement.id, product.id, product.prod_type))
    }

    pub fn get_or_create_test_type(&mut self, name: &str) -> u64 {
        if let Some((id, _)) = self.test_types.iter().find(|(_, n)| n == name) {
            return *id;
        }
        let id = self.next_id("test_type");
        self.test_types.push((id, name.to_string()));
        id
    }

    pub fn add_note(&mut self, finding_index: usize, entry: &str) {
        let id = self.next_id("note");
        let finding = &mut self.findings[finding_index];
        finding.notes.push(entry.to_string());
        self.notes.entry(finding.id).or_default().push(Note {
            id,
            entry: entry.to_string(),
            date: now_ts(),
        });
    }

    /// `ra_helper.risk_unaccept`: drops the finding from every risk acceptance; an
    /// unmitigated finding becomes active again.
    pub fn risk_unaccept(&mut self, finding_index: usize) {
        let finding = &mut self.findings[finding_index];
        if !finding.risk_accepted {
            return;
        }
        if finding.mitigated.is_none() {
            finding.active = true;
        }
        finding.risk_accepted = false;
        let id = finding.id;
        for ra in &mut self.risk_acceptances {
            ra.accepted_findings.retain(|f| *f != id);
        }
    }

    /// Same effect as a `POST /api/v2/risk_acceptance/` for these (existing) findings.
    pub fn create_risk_acceptance(
        &mut self,
        name: String,
        finding_ids: Vec<u64>,
        decision: String,
        recommendation: String,
        expiration_date: Option<String>,
    ) -> u64 {
        let id = self.next_id("risk_acceptance");
        for fid in &finding_ids {
            if let Some(i) = self.finding_index(*fid) {
                self.findings[i].active = false;
                self.findings[i].risk_accepted = true;
            }
        }
        self.risk_acceptances.push(RiskAcceptance {
            id,
            name,
            accepted_findings: finding_ids,
            owner: ADMIN_ID,
            decision,
            recommendation,
            expiration_date,
            created: now_ts(),
        });
        id
    }

    pub fn risk_acceptance_json(&self, ra: &RiskAcceptance) -> Value {
        let engagement = ra
            .accepted_findings
            .first()
            .and_then(|f| self.finding_index(*f))
            .and_then(|i| self.test(self.findings[i].test))
            .map(|t| t.engagement);
        json!({
            "id": ra.id,
            "name": ra.name,
            "recommendation": ra.recommendation,
            "recommendation_details": null,
            "decision": ra.decision,
            "decision_details": null,
            "accepted_by": null,
            "path": "No proof has been supplied",
            "expiration_date": ra.expiration_date,
            "expiration_date_warned": null,
            "expiration_date_handled": null,
            "reactivate_expired": true,
            "restart_sla_expired": false,
            "owner": ra.owner,
            "accepted_findings": ra.accepted_findings,
            "notes": [],
            "engagement": engagement,
            "created": ra.created,
            "updated": ra.created,
        })
    }

    pub fn finding_json(&self, f: &Finding) -> Value {
        let accepted_risks: Vec<Value> = self
            .risk_acceptances
            .iter()
            .filter(|ra| ra.accepted_findings.contains(&f.id))
            .map(|ra| self.risk_acceptance_json(ra))
            .collect();
        let notes: Vec<Value> = self
            .notes
            .get(&f.id)
            .map(|notes| {
                notes
                    .iter()
                    .map(|n| {
                        json!({
                            "id": n.id,
                            "author": {"id": ADMIN_ID, "username": "admin", "first_name": "", "last_name": ""},
                            "editor": null,
                            "history": [],
                            "entry": n.entry,
                            "date": n.date,
                            "private": false,
                            "edited": false,
                            "edit_time": null,
                            "note_type": null,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut obj = Map::new();
        for (k, v) in &f.extra {
            obj.insert(k.clone(), v.clone());
        }
        let fixed = json!({
            "id": f.id,
            "test": f.test,
            "title": f.title,
            "severity": f.severity,
            "numerical_severity": numerical_severity(&f.severity),
            "description": f.description,
            "active": f.active,
            "verified": f.verified,
            "duplicate": f.duplicate,
            "duplicate_finding": f.duplicate_finding,
            "is_mitigated": f.is_mitigated,
            "mitigated": f.mitigated,
            "mitigated_by": f.mitigated_by,
            "risk_accepted": f.risk_accepted,
            "accepted_risks": accepted_risks,
            "false_p": f.false_p,
            "out_of_scope": f.out_of_scope,
            "under_review": f.under_review,
            "display_status": f.display_status(),
            "hash_code": f.hash_code,
            "unique_id_from_tool": f.unique_id_from_tool,
            "vuln_id_from_tool": f.vuln_id_from_tool,
            "component_name": f.component_name,
            "component_version": f.component_version,
            "file_path": f.file_path,
            "line": f.line,
            "cwe": f.cwe,
            "service": f.service,
            "vulnerability_ids": f.vulnerability_ids.iter().map(|v| json!({"vulnerability_id": v})).collect::<Vec<_>>(),
            "tags": f.tags,
            "cvssv3_score": f.cvssv3_score,
            "mitigation": f.mitigation,
            "impact": f.impact,
            "references": f.references,
            "fix_version": f.fix_version,
            "fix_available": f.fix_available,
            "static_finding": f.static_finding,
            "dynamic_finding": f.dynamic_finding,
            "date": f.date,
            "reporter": ADMIN_ID,
            "notes": notes,
        });
        if let Value::Object(fixed) = fixed {
            obj.extend(fixed);
        }
        Value::Object(obj)
    }

    pub fn test_json(&self, t: &Test) -> Value {
        let hash_code_fields = hash_code_fields(&t.scan_type);
        json!({
            "id": t.id,
            "title": t.title,
            "engagement": t.engagement,
            "test_type": t.test_type,
            "test_type_name": t.test_type_name,
            "scan_type": t.scan_type,
            "hash_code_fields": hash_code_fields,
            // Both built-in scan types are configured with DEDUPE_ALGO_HASH_CODE in
            // settings.dist.py; Generic has no field list, so the legacy hash is used.
            "deduplication_algorithm": "hash_code",
            "percent_complete": 100,
            "tags": [],
            "version": t.meta.version,
            "branch_tag": t.meta.branch_tag,
            "build_id": t.meta.build_id,
            "commit_hash": t.meta.commit_hash,
            "description": null,
            "environment": 1,
            "lead": ADMIN_ID,
        })
    }

    pub fn engagement_json(&self, e: &Engagement) -> Value {
        json!({
            "id": e.id,
            "name": e.name,
            "product": e.product,
            "engagement_type": "CI/CD",
            "status": "In Progress",
            "active": true,
            "lead": ADMIN_ID,
            "tags": [],
            "deduplication_on_engagement": false,
        })
    }

    pub fn product_json(&self, p: &Product) -> Value {
        json!({
            "id": p.id,
            "name": p.name,
            "description": p.name,
            "prod_type": p.prod_type,
            "tags": [],
            "enable_simple_risk_acceptance": false,
            "enable_full_risk_acceptance": true,
        })
    }

    pub fn test_import_json(&self, ti: &TestImport) -> Value {
        let affected: Vec<u64> = ti.actions.iter().map(|(f, _)| *f).collect();
        let actions: Vec<Value> = ti
            .actions
            .iter()
            .enumerate()
            .map(|(i, (finding, action))| {
                json!({
                    "id": ti.id * 100_000 + i as u64 + 1,
                    "action": action,
                    "created": ti.created,
                    "modified": ti.created,
                    "test_import": ti.id,
                    "finding": finding,
                })
            })
            .collect();
        json!({
            "id": ti.id,
            "test": ti.test,
            "type": ti.kind,
            "findings_affected": affected,
            "import_settings": ti.import_settings,
            "version": null,
            "build_id": null,
            "commit_hash": null,
            "branch_tag": null,
            "created": ti.created,
            "modified": ti.created,
            "test_import_finding_action_set": actions,
        })
    }

    /// `Test.statistics` / `Test_Import.statistics` bucket of these findings.
    pub fn stats<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Value {
        const KEYS: [&str; 8] = [
            "active",
            "verified",
            "duplicate",
            "false_p",
            "out_of_scope",
            "is_mitigated",
            "risk_accepted",
            "total",
        ];
        const BUCKETS: [&str; 6] = ["info", "low", "medium", "high", "critical", "total"];
        let mut counts: BTreeMap<&str, [u64; 8]> = BUCKETS.iter().map(|b| (*b, [0; 8])).collect();
        for f in findings {
            let flags = [
                f.active,
                f.verified,
                f.duplicate,
                f.false_p,
                f.out_of_scope,
                f.is_mitigated,
                f.risk_accepted,
                true,
            ];
            let severity = f.severity.to_lowercase();
            for bucket in [severity.as_str(), "total"] {
                if let Some(c) = counts.get_mut(bucket) {
                    for (slot, flag) in c.iter_mut().zip(flags) {
                        *slot += u64::from(flag);
                    }
                }
            }
        }
        let mut out = Map::new();
        for bucket in BUCKETS {
            let c = counts[bucket];
            let obj: Map<String, Value> = KEYS
                .iter()
                .zip(c)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            out.insert(bucket.to_string(), Value::Object(obj));
        }
        Value::Object(out)
    }

    pub fn test_stats(&self, test_id: u64) -> Value {
        Self::stats(self.findings.iter().filter(|f| f.test == test_id))
    }

    /// `Test_Import.statistics`: one bucket per action, over the findings' current state.
    pub fn delta_stats(&self, ti: &TestImport) -> Value {
        let mut out = Map::new();
        for (name, code) in [
            ("created", "N"),
            ("closed", "C"),
            ("reactivated", "R"),
            ("untouched", "U"),
        ] {
            let findings = ti
                .actions
                .iter()
                .filter(|(_, a)| *a == code)
                .filter_map(|(f, _)| self.finding_index(*f))
                .map(|i| &self.findings[i]);
            out.insert(name.to_string(), Self::stats(findings));
        }
        Value::Object(out)
    }
}

/// `Test.hash_code_fields`: `HASHCODE_FIELDS_PER_SCANNER` has no Generic entry.
pub(crate) fn hash_code_fields(scan_type: &str) -> Value {
    if scan_type == "Trivy Operator Scan" {
        json!(["title", "severity", "vulnerability_ids", "description"])
    } else {
        Value::Null
    }
}
