//! Report parsing (Generic Findings Import, a minimal Trivy Operator Scan) and the
//! small Python-isms DefectDojo's behaviour depends on: `repr()` of error lists,
//! `titlecase()` of titles and the SHA-256 `hash_code`.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub(crate) const GENERIC: &str = "Generic Findings Import";
pub(crate) const TRIVY_OPERATOR: &str = "Trivy Operator Scan";

/// A finding as a parser produced it, before it is saved.
#[derive(Clone, Debug)]
pub(crate) struct ParsedFinding {
    pub title: String,
    pub severity: String,
    pub description: String,
    pub cwe: Option<i64>,
    pub line: Option<i64>,
    pub file_path: Option<String>,
    pub service: Option<String>,
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
    pub active: bool,
    pub verified: bool,
    pub false_p: bool,
    pub out_of_scope: bool,
    pub risk_accepted: bool,
    pub under_review: bool,
    pub is_mitigated: bool,
    pub mitigated: Option<String>,
    pub date: Option<String>,
    pub static_finding: bool,
    pub dynamic_finding: bool,
    pub vulnerability_ids: Vec<String>,
    pub tags: Vec<String>,
    pub extra: BTreeMap<String, Value>,
}

impl ParsedFinding {
    fn new(title: String, severity: String, description: String) -> Self {
        // Model defaults: active=True, verified=False, cwe=0.
        ParsedFinding {
            title,
            severity,
            description,
            cwe: Some(0),
            line: None,
            file_path: None,
            service: None,
            unique_id_from_tool: None,
            vuln_id_from_tool: None,
            component_name: None,
            component_version: None,
            mitigation: None,
            impact: None,
            references: None,
            fix_version: None,
            fix_available: None,
            cvssv3_score: None,
            active: true,
            verified: false,
            false_p: false,
            out_of_scope: false,
            risk_accepted: false,
            under_review: false,
            is_mitigated: false,
            mitigated: None,
            date: None,
            static_finding: false,
            dynamic_finding: true,
            vulnerability_ids: Vec::new(),
            tags: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// How a parser failed, which decides the HTTP answer.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// The parser raised a `ValueError`, turned into a Django `ValidationError`:
    /// 400 `{"message": "['<text>']"}`.
    Invalid(String),
    /// Any other Python exception: 500 with the generic body.
    Internal,
}

pub(crate) struct GenericReport {
    /// `"<type> Scan (Generic Findings Import)"`, or `"Generic Findings Import"` without `type`.
    pub test_type_name: String,
    pub findings: Vec<ParsedFinding>,
}

/// The allowed per-finding keys of the Generic JSON parser (anchors.md §4(d)), besides
/// `endpoints`, `files`, `vulnerability_ids` and `cwes`, which it pops first.
const GENERIC_ALLOWED: &[&str] = &[
    "date",
    "cwe",
    "cve",
    "epss_score",
    "epss_percentile",
    "cvssv3",
    "cvssv3_score",
    "cvssv4",
    "cvssv4_score",
    "mitigation",
    "impact",
    "steps_to_reproduce",
    "severity_justification",
    "references",
    "active",
    "verified",
    "false_p",
    "out_of_scope",
    "risk_accepted",
    "under_review",
    "is_mitigated",
    "thread_id",
    "mitigated",
    "numerical_severity",
    "param",
    "payload",
    "line",
    "file_path",
    "component_name",
    "component_version",
    "static_finding",
    "dynamic_finding",
    "scanner_confidence",
    "unique_id_from_tool",
    "vuln_id_from_tool",
    "sast_source_object",
    "sast_sink_object",
    "sast_source_line",
    "sast_source_file_path",
    "nb_occurences",
    "publish_date",
    "service",
    "planned_remediation_date",
    "planned_remediation_version",
    "effort_for_fixing",
    "tags",
    "kev_date",
    "known_exploited",
    "ransomware_used",
    "fix_available",
    "fix_version",
    "title",
    "severity",
    "description",
];

/// The Generic parser's `get_tests`: it runs before any test is created, so its errors
/// never leave an empty test behind (defectdojo-real.md, "Error codes and bodies").
pub(crate) fn parse_generic(bytes: &[u8]) -> Result<GenericReport, ParseError> {
    let data: Value = load_json(bytes)?;
    // `data.get(...)` on a non-dict is an AttributeError: a 500.
    let Value::Object(top) = data else {
        return Err(ParseError::Internal);
    };
    let test_type_name = match top.get("type") {
        Some(Value::String(t)) if !t.is_empty() && t != GENERIC => {
            format!("{t} Scan ({GENERIC})")
        }
        _ => GENERIC.to_string(),
    };
    let items = match top.get("findings") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ParseError::Internal),
    };
    let mut findings = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(mut item) = item else {
            return Err(ParseError::Internal);
        };
        item.remove("endpoints");
        item.remove("files");
        let tags = item.remove("tags");
        let vulnerability_ids = item.remove("vulnerability_ids");
        let cwes = item.remove("cwes");
        if let Some(date) = item.get("date") {
            check_date(date)?;
        }
        if let Some(mitigated) = item.get("mitigated") {
            check_date(mitigated)?;
        }
        let mut missing: Vec<String> = ["description", "severity", "title"]
            .iter()
            .filter(|k| !item.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        missing.sort();
        if !missing.is_empty() {
            return Err(ParseError::Invalid(format!(
                "Required fields are missing: {}",
                py_list_repr(&missing)
            )));
        }
        let mut not_allowed: Vec<String> = item
            .keys()
            .filter(|k| !GENERIC_ALLOWED.contains(&k.as_str()))
            .cloned()
            .collect();
        not_allowed.sort();
        if !not_allowed.is_empty() {
            return Err(ParseError::Invalid(format!(
                "Not allowed fields are present: {}",
                py_list_repr(&not_allowed)
            )));
        }
        let mut finding = generic_finding(item)?;
        if let Some(tags) = tags {
            finding.tags = string_list(&tags)?;
        }
        if let Some(ids) = vulnerability_ids {
            finding.vulnerability_ids.extend(string_list(&ids)?);
        }
        if let Some(cwes) = cwes {
            let cwes = string_list(&cwes)?;
            if finding.cwe.unwrap_or(0) == 0
                && let Some(first) = cwes.first()
            {
                finding.cwe = first
                    .trim_start_matches("CWE-")
                    .trim_start_matches("cwe-")
                    .parse()
                    .ok();
            }
            finding.extra.insert("cwes".into(), Value::from(cwes));
        }
        findings.push(finding);
    }
    Ok(GenericReport {
        test_type_name,
        findings,
    })
}

/// `Finding(**item)`: typed columns get typed values, the rest is kept verbatim.
fn generic_finding(mut item: serde_json::Map<String, Value>) -> Result<ParsedFinding, ParseError> {
    // titlecase()/hash concatenation/.lower() on non-strings raise TypeError/AttributeError.
    let take_str = |item: &mut serde_json::Map<String, Value>, k: &str| match item.remove(k) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(ParseError::Internal),
    };
    let title = take_str(&mut item, "title")?;
    let severity = take_str(&mut item, "severity")?;
    let description = take_str(&mut item, "description")?;
    let mut f = ParsedFinding::new(title, severity, description);
    if let Some(cve) = item.remove("cve").as_ref().and_then(opt_string) {
        f.vulnerability_ids.push(cve.clone());
        f.extra.insert("cve".into(), Value::String(cve));
    }
    for (key, value) in item {
        match key.as_str() {
            "cwe" => f.cwe = opt_int(&value)?,
            "line" => f.line = opt_int(&value)?,
            "file_path" => f.file_path = opt_string(&value),
            "service" => f.service = opt_string(&value),
            "unique_id_from_tool" => f.unique_id_from_tool = opt_string(&value),
            "vuln_id_from_tool" => f.vuln_id_from_tool = opt_string(&value),
            "component_name" => f.component_name = opt_string(&value),
            "component_version" => f.component_version = opt_string(&value),
            "mitigation" => f.mitigation = opt_string(&value),
            "impact" => f.impact = opt_string(&value),
            "references" => f.references = opt_string(&value),
            "fix_version" => f.fix_version = opt_string(&value),
            "fix_available" => f.fix_available = opt_bool(&value)?,
            "cvssv3_score" => f.cvssv3_score = opt_float(&value)?,
            "active" => f.active = bool_field(&value)?,
            "verified" => f.verified = bool_field(&value)?,
            "false_p" => f.false_p = bool_field(&value)?,
            "out_of_scope" => f.out_of_scope = bool_field(&value)?,
            "risk_accepted" => f.risk_accepted = bool_field(&value)?,
            "under_review" => f.under_review = bool_field(&value)?,
            "is_mitigated" => f.is_mitigated = bool_field(&value)?,
            "static_finding" => f.static_finding = bool_field(&value)?,
            "dynamic_finding" => f.dynamic_finding = bool_field(&value)?,
            "mitigated" => f.mitigated = opt_string(&value),
            "date" => f.date = opt_string(&value).map(|d| d.chars().take(10).collect()),
            _ => {
                f.extra.insert(key, value);
            }
        }
    }
    Ok(f)
}

/// The Trivy Operator parser, reduced to vulnerability reports (the only kind the
/// research exercised). It is a "static" parser: the test exists before it runs, so
/// its errors leave an empty test behind, as observed.
pub(crate) fn parse_trivy_operator(bytes: &[u8]) -> Result<Vec<ParsedFinding>, ParseError> {
    const PLURALS: &[&str] = &[
        "clustercompliancereports.aquasecurity.github.io",
        "clusterconfigauditreports.aquasecurity.github.io",
        "clusterinfraassessmentreports.aquasecurity.github.io",
        "clusterrbacassessmentreports.aquasecurity.github.io",
        "configauditreports.aquasecurity.github.io",
        "exposedsecretreports.aquasecurity.github.io",
        "infraassessmentreports.aquasecurity.github.io",
        "rbacassessmentreports.aquasecurity.github.io",
        "vulnerabilityreports.aquasecurity.github.io",
    ];
    let data = load_json(bytes)?;
    let mut out = Vec::new();
    match &data {
        Value::Array(items) => {
            for item in items {
                out.extend(trivy_object(item)?);
            }
        }
        Value::Object(map) if map.keys().any(|k| PLURALS.contains(&k.as_str())) => {
            for (key, value) in map {
                if key.contains("sbomreports") {
                    continue;
                }
                let Value::Array(items) = value else {
                    return Err(ParseError::Internal);
                };
                for item in items {
                    out.extend(trivy_object(item)?);
                }
            }
        }
        other => out.extend(trivy_object(other)?),
    }
    Ok(out)
}

fn trivy_object(data: &Value) -> Result<Vec<ParsedFinding>, ParseError> {
    let Value::Object(obj) = data else {
        // e.g. a JSON array of integers: `data.get` raises AttributeError, a 500.
        return if data.is_null() {
            Ok(Vec::new())
        } else {
            Err(ParseError::Internal)
        };
    };
    // Objects without metadata.labels yield nothing: step 7 of the research (201, all closed).
    let Some(labels) = obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
    let namespace = label("trivy-operator.resource.namespace");
    let kind = label("trivy-operator.resource.kind");
    let name = label("trivy-operator.resource.name");
    let container = label("trivy-operator.container.name");
    let py = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".into());
    let mut service = format!("{}/{}/{}", py(&namespace), py(&kind), py(&name));
    if let Some(c) = &container {
        service.push('/');
        service.push_str(c);
    }
    let Some(vulns) = obj.get("report").and_then(|r| r.get("vulnerabilities")) else {
        return Ok(Vec::new());
    };
    let Value::Array(vulns) = vulns else {
        return Err(ParseError::Internal);
    };
    let mut out = Vec::new();
    for v in vulns {
        let Value::Object(v) = v else {
            return Err(ParseError::Internal);
        };
        let s = |k: &str| v.get(k).and_then(opt_string);
        let severity = match v.get("severity").and_then(Value::as_str) {
            Some("CRITICAL") => "Critical",
            Some("HIGH") => "High",
            Some("MEDIUM") => "Medium",
            Some("LOW") => "Low",
            Some("UNKNOWN") => "Info",
            _ => return Err(ParseError::Internal), // KeyError in TRIVY_SEVERITIES
        };
        let vuln_id = s("vulnerabilityID").unwrap_or_else(|| "0".into());
        let resource = s("resource");
        let installed = s("installedVersion");
        let fixed = s("fixedVersion");
        let class = s("class");
        let title = format!("{} {} {}", vuln_id, py(&resource), py(&installed));
        // Approximation of DESCRIPTION_TEMPLATE: Trivy title, fixed version and the
        // workload (container/kind/name/namespace), all of which end up in the hash.
        let description = format!(
            "{}\n**Fixed version:** {}\n**Container:** {}\n**Kind:** {}\n**Name:** {}\n**Namespace:** {}\n",
            py(&s("title")),
            py(&fixed),
            py(&container),
            py(&kind),
            py(&name),
            py(&namespace),
        );
        let mut f = ParsedFinding::new(title, severity.to_string(), description);
        f.cwe = Some(0);
        f.references = s("primaryLink");
        f.mitigation = fixed.clone();
        f.fix_available = Some(fixed.as_deref().is_some_and(|x| !x.is_empty()));
        f.component_name = resource;
        f.component_version = installed;
        f.cvssv3_score = v.get("score").and_then(Value::as_f64);
        f.static_finding = true;
        f.dynamic_finding = false;
        f.service = Some(service.clone());
        if matches!(class.as_deref(), Some("os-pkgs" | "lang-pkgs")) {
            f.file_path = s("packagePath").or_else(|| s("target"));
        }
        f.tags = [namespace.clone(), s("packageType"), class]
            .into_iter()
            .flatten()
            .collect();
        if !vuln_id.is_empty() {
            f.vulnerability_ids = vec![vuln_id];
        }
        out.push(f);
    }
    Ok(out)
}

/// `json.load`, with Python's error text (positions are approximate).
fn load_json(bytes: &[u8]) -> Result<Value, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let (line, column) = if text.trim().is_empty() {
                (1, 1)
            } else {
                (e.line().max(1), e.column().max(1))
            };
            let char_offset: usize = text
                .split('\n')
                .take(line - 1)
                .map(|l| l.chars().count() + 1)
                .sum::<usize>()
                + column
                - 1;
            let msg = e.to_string();
            let what = if msg.starts_with("trailing characters") {
                "Extra data"
            } else if msg.starts_with("key must be a string") {
                "Expecting property name enclosed in double quotes"
            } else if msg.starts_with("expected `,` or") {
                "Expecting ',' delimiter"
            } else if msg.starts_with("expected `:`") {
                "Expecting ':' delimiter"
            } else {
                "Expecting value"
            };
            Err(ParseError::Invalid(format!(
                "{what}: line {line} column {column} (char {char_offset})"
            )))
        }
    }
}

fn check_date(v: &Value) -> Result<(), ParseError> {
    // dateutil.parser.parse: accept anything starting with YYYY-MM-DD.
    let Value::String(s) = v else {
        return Err(ParseError::Internal);
    };
    let head: String = s.chars().take(10).collect();
    if chrono::NaiveDate::parse_from_str(&head, "%Y-%m-%d").is_ok() {
        Ok(())
    } else {
        Err(ParseError::Invalid(format!("Unknown string format: {s}")))
    }
}

fn opt_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn opt_int(v: &Value) -> Result<Option<i64>, ParseError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or(ParseError::Internal),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| ParseError::Internal),
        _ => Err(ParseError::Internal),
    }
}

fn opt_float(v: &Value) -> Result<Option<f64>, ParseError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| ParseError::Internal),
        _ => Err(ParseError::Internal),
    }
}

fn opt_bool(v: &Value) -> Result<Option<bool>, ParseError> {
    match v {
        Value::Null => Ok(None),
        other => bool_field(other).map(Some),
    }
}

fn bool_field(v: &Value) -> Result<bool, ParseError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.as_str() {
            "t" | "True" | "true" | "1" => Ok(true),
            "f" | "False" | "false" | "0" => Ok(false),
            _ => Err(ParseError::Internal),
        },
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        _ => Err(ParseError::Internal),
    }
}

fn string_list(v: &Value) -> Result<Vec<String>, ParseError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items.iter().filter_map(opt_string).collect()),
        _ => Err(ParseError::Internal),
    }
}

/// Which fields make up `hash_code` (settings.dist.py, via `Finding.compute_hash_code`).
pub(crate) fn hash_code(scan_type: &str, f: &ParsedFinding) -> String {
    let py_opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".into());
    let py_int = |v: Option<i64>| v.map_or_else(|| "None".into(), |n| n.to_string());
    let mut fields = if scan_type == TRIVY_OPERATOR {
        // HASHCODE_FIELDS_PER_SCANNER: title, severity, vulnerability_ids, description.
        let mut ids = f.vulnerability_ids.clone();
        ids.sort();
        ids.dedup();
        format!("{}{}{}{}", f.title, f.severity, ids.concat(), f.description)
    } else {
        // No field list for Generic: compute_hash_code_legacy.
        format!(
            "{}{}{}{}{}",
            f.title,
            py_int(f.cwe),
            py_int(f.line),
            py_opt(&f.file_path),
            f.description
        )
    };
    // HASH_CODE_FIELDS_ALWAYS = ["service"], appended when truthy.
    if let Some(service) = f.service.as_deref().filter(|s| !s.is_empty()) {
        fields.push_str(service);
    }
    // hashlib.sha256(fields.casefold().encode("utf-8").strip())
    let folded = fields.to_lowercase().replace('ß', "ss");
    let bytes = folded
        .as_bytes()
        .trim_ascii_start()
        .trim_ascii_end()
        .to_vec();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Python `repr()` of a `str`.
pub(crate) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `repr()` of a `list[str]`; also `str()` of a Django `ValidationError`.
pub(crate) fn py_list_repr(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_repr(s)).collect();
    format!("[{}]", inner.join(", "))
}

const TITLE_PUNCT: &str = "!\"“#$%&'‘()*+,-–‒—―./:;?@[\\]_`{|}~";
const SMALL_WORDS: &[&str] = &[
    "a", "an", "and", "as", "at", "but", "by", "en", "for", "if", "in", "of", "on", "or", "the",
    "to", "v", "v.", "via", "vs", "vs.",
];

fn is_small(word: &str) -> bool {
    SMALL_WORDS.contains(&word.to_lowercase().as_str())
}

/// An approximation of python-titlecase's `titlecase()`, which `Finding.save()` applies:
/// words with inner capitals ("SQL", "CVE-…") or inline periods ("libssl1.1") are kept,
/// small words stay lower case, other words get a capital first letter
/// ("libgnutls30" → "Libgnutls30", "libpam-modules" → "Libpam-Modules", "/login" → "/Login").
pub(crate) fn titlecase(text: &str) -> String {
    text.split('\n')
        .map(|line| titlecase_line(line, true))
        .collect::<Vec<_>>()
        .join("\n")
}

fn titlecase_line(line: &str, small_first_last: bool) -> String {
    let all_caps = !line.is_empty()
        && line.chars().all(|c| {
            c.is_ascii_uppercase()
                || c.is_whitespace()
                || c.is_ascii_digit()
                || TITLE_PUNCT.contains(c)
        });
    let mut words: Vec<String> = line
        .split(' ')
        .map(|word| titlecase_word(word, all_caps, small_first_last))
        .collect();
    if small_first_last {
        if let Some(first) = words.iter_mut().find(|w| !w.is_empty()) {
            let core = first.trim_start_matches(|c| TITLE_PUNCT.contains(c));
            if is_small(core.trim_end_matches(|c| TITLE_PUNCT.contains(c))) {
                *first = capfirst(first);
            }
        }
        if let Some(last) = words.iter_mut().rev().find(|w| !w.is_empty())
            && is_small(last.trim_end_matches(|c| TITLE_PUNCT.contains(c)))
        {
            *last = capfirst(last);
        }
    }
    words.join(" ")
}

fn titlecase_word(word: &str, all_caps: bool, small_first_last: bool) -> String {
    if word.is_empty() {
        return String::new();
    }
    let inline_period = {
        let chars: Vec<char> = word.chars().collect();
        chars.windows(3).any(|w| {
            w[1] == '.'
                && (w[0].is_alphanumeric() || w[0] == '_')
                && (w[2].is_alphanumeric() || w[2] == '_')
        })
    };
    let uc_elsewhere = {
        let letters: Vec<char> = word
            .trim_start_matches(|c| TITLE_PUNCT.contains(c))
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        letters.iter().skip(1).any(char::is_ascii_uppercase)
    };
    if inline_period || (!all_caps && uc_elsewhere) {
        return word.to_string();
    }
    if is_small(word) {
        return word.to_lowercase();
    }
    if word.contains('/') && !word.contains("//") {
        return word
            .split('/')
            .map(|part| titlecase_line(part, false))
            .collect::<Vec<_>>()
            .join("/");
    }
    if word.contains('-') {
        return word
            .split('-')
            .map(|part| titlecase_line(part, small_first_last))
            .collect::<Vec<_>>()
            .join("-");
    }
    let word = if all_caps {
        word.to_lowercase()
    } else {
        word.to_string()
    };
    capfirst(&word)
}

/// CAPFIRST: upper-case the first word character.
fn capfirst(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut done = false;
    for c in word.chars() {
        if !done && (c.is_alphanumeric() || c == '_') {
            out.extend(c.to_uppercase());
            done = true;
        } else {
            out.push(c);
        }
    }
    out
}
