//! Trivy CLI JSON (`trivy image -f json`, schema 2) and CycloneDX JSON SBOMs (Trivy's
//! `--format cyclonedx`, or any other tool's): what CI scanned, read into a `CiScan`.
//!
//! Findings are built field for field as trivy-operator builds its reports from the same
//! Trivy output (`pkg/plugins/trivy`: `resource` is `PkgName`, `packagePath` is
//! `PkgPath`, `target` the result's `Target`, the score NVD's V3 score), so a finding CI
//! saw and the cluster sees has the same `Finding::key` when the operator records those
//! fields. Identity fields are strict and cost the file; cosmetic ones read as absent
//! (`normalize.rs` does the same for reports).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;

use super::crd::{BomComponent, Lenient, Scalar, TrivyProperties, null_as_default};
use super::normalize::{Cosmetic, FieldError, ObjectError, deserialize_at, timestamp};
use crate::model::{CiScan, Family, Finding, Image, Package, Severity};
use crate::source::RawObject;

/// The largest CI result read. Trivy's SBOM of a large image (thousands of packages) is
/// a few MiB; 64 MiB is some 130,000 components, more than any one image holds. Beyond
/// it the file is more likely a whole registry, a concatenation or a generator gone wrong,
/// and reading it would cost several times its size in memory: it is refused, by name.
pub const MAX_CI_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// Reads one Trivy CLI result (`bom == false`) or CycloneDX SBOM (`bom == true`).
pub fn parse(obj: &RawObject, bom: bool) -> Result<CiScan, Box<ObjectError>> {
    if obj.json.len() > MAX_CI_RESULT_BYTES {
        let mib = |n: usize| n as f64 / (1024.0 * 1024.0);
        return Err(Box::new(ObjectError {
            origin: obj.origin.clone(),
            kind: None,
            name: None,
            id: None,
            field: None,
            message: format!(
                "{} of {:.1} MiB is larger than the {:.0} MiB a CI result may be; not read \
                 (one image's SBOM or scan is far smaller: is it one image's?)",
                if bom {
                    "a CycloneDX SBOM"
                } else {
                    "a Trivy result"
                },
                mib(obj.json.len()),
                mib(MAX_CI_RESULT_BYTES)
            ),
        }));
    }
    let mut cosmetic = Cosmetic::default();
    let mut artifact = None;
    let read = if bom {
        read_bom(&obj.json, &mut cosmetic, &mut artifact)
    } else {
        read_trivy(&obj.json, &mut cosmetic, &mut artifact)
    };
    match read {
        Ok(scan) => {
            cosmetic.warn(&obj.origin);
            Ok(scan)
        }
        Err((field, message)) => Err(Box::new(ObjectError {
            origin: obj.origin.clone(),
            // Not a report kind: the ingest counts `kind` as a report object.
            kind: None,
            name: artifact,
            id: None,
            field,
            message,
        })),
    }
}

// ---------------------------------------------------------------------------------------
// Trivy CLI JSON

/// Read first, so a schema this does not know says so instead of failing on a field.
#[derive(Deserialize)]
struct TrivyHeader {
    #[serde(rename = "SchemaVersion", default)]
    schema_version: Lenient<Scalar>,
    #[serde(rename = "ArtifactName", default)]
    artifact_name: Lenient<String>,
}

#[derive(Deserialize)]
struct TrivyJson {
    #[serde(rename = "ArtifactType", default)]
    artifact_type: Option<String>,
    #[serde(rename = "CreatedAt", default)]
    created_at: Lenient<Scalar>,
    /// Since Trivy 0.5x; older results do not say which Trivy wrote them.
    #[serde(rename = "Trivy", default)]
    trivy: Lenient<TrivyTool>,
    #[serde(rename = "Metadata", default)]
    metadata: Option<TrivyMetadata>,
    #[serde(rename = "Results", default, deserialize_with = "null_as_default")]
    results: Vec<TrivyResult>,
}

#[derive(Deserialize)]
struct TrivyTool {
    #[serde(rename = "Version", default)]
    version: Option<String>,
}

/// `ImageID` is not read: it is the config digest, which no registry reference uses.
#[derive(Default, Deserialize)]
struct TrivyMetadata {
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_default")]
    repo_tags: Vec<String>,
    #[serde(rename = "RepoDigests", default, deserialize_with = "null_as_default")]
    repo_digests: Vec<String>,
}

#[derive(Deserialize)]
struct TrivyResult {
    #[serde(rename = "Target", default)]
    target: Option<String>,
    #[serde(rename = "Class", default)]
    class: Option<String>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    /// Absent (not empty) when packages were not listed: the distinction decides coverage.
    #[serde(rename = "Packages", default)]
    packages: Option<Vec<TrivyPackage>>,
    #[serde(
        rename = "Vulnerabilities",
        default,
        deserialize_with = "null_as_default"
    )]
    vulnerabilities: Vec<TrivyVulnerability>,
    #[serde(rename = "Secrets", default, deserialize_with = "null_as_default")]
    secrets: Vec<TrivySecret>,
    #[serde(
        rename = "Misconfigurations",
        default,
        deserialize_with = "null_as_default"
    )]
    misconfigurations: Vec<TrivyMisconfiguration>,
}

#[derive(Deserialize)]
struct TrivyPackage {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Version", default)]
    version: Option<String>,
    #[serde(rename = "Release", default)]
    release: Option<String>,
    #[serde(rename = "Epoch", default)]
    epoch: Option<i64>,
    #[serde(rename = "Identifier", default)]
    identifier: Option<TrivyIdentifier>,
}

#[derive(Deserialize)]
struct TrivyIdentifier {
    #[serde(rename = "PURL", default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(rename = "PkgName")]
    pkg_name: String,
    #[serde(rename = "InstalledVersion", default)]
    installed_version: Option<String>,
    #[serde(rename = "FixedVersion", default)]
    fixed_version: Lenient<String>,
    #[serde(rename = "PkgPath", default)]
    pkg_path: Option<String>,
    #[serde(rename = "Severity", default)]
    severity: Option<String>,
    #[serde(rename = "Title", default)]
    title: Lenient<String>,
    #[serde(rename = "Description", default)]
    description: Lenient<String>,
    #[serde(rename = "PrimaryURL", default)]
    primary_url: Lenient<String>,
    #[serde(rename = "References", default)]
    references: Lenient<Vec<String>>,
    #[serde(rename = "CVSS", default)]
    cvss: Lenient<BTreeMap<String, TrivyCvss>>,
    #[serde(rename = "PublishedDate", default)]
    published_date: Lenient<Scalar>,
}

#[derive(Deserialize)]
struct TrivyCvss {
    #[serde(rename = "V3Score", default)]
    v3_score: Option<f64>,
}

#[derive(Deserialize)]
struct TrivySecret {
    #[serde(rename = "RuleID")]
    rule_id: String,
    #[serde(rename = "Category", default)]
    category: Lenient<String>,
    #[serde(rename = "Severity", default)]
    severity: Option<String>,
    #[serde(rename = "Title", default)]
    title: Lenient<String>,
    /// Masked by Trivy (`export AWS_ACCESS_KEY_ID=****`): part of the key, never the secret.
    #[serde(rename = "Match", default)]
    matched: Option<String>,
    #[serde(rename = "StartLine", default)]
    start_line: Lenient<i64>,
}

#[derive(Deserialize)]
struct TrivyMisconfiguration {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "AVDID", default)]
    avd_id: Option<String>,
    /// Identifies a check without an ID, so strict.
    #[serde(rename = "Title", default)]
    title: Option<String>,
    #[serde(rename = "Type", default)]
    kind: Lenient<String>,
    #[serde(rename = "Description", default)]
    description: Lenient<String>,
    #[serde(rename = "Message", default)]
    message: Lenient<String>,
    #[serde(rename = "Resolution", default)]
    resolution: Lenient<String>,
    #[serde(rename = "Severity", default)]
    severity: Option<String>,
    #[serde(rename = "PrimaryURL", default)]
    primary_url: Lenient<String>,
    #[serde(rename = "References", default)]
    references: Lenient<Vec<String>>,
    /// `FAIL`, `PASS` (with `--include-non-failures`) or `EXCEPTION`; absent before Trivy
    /// listed successes, when every entry was a failure.
    #[serde(rename = "Status", default)]
    status: Option<String>,
}

fn read_trivy(
    json: &[u8],
    c: &mut Cosmetic,
    artifact_out: &mut Option<String>,
) -> Result<CiScan, FieldError> {
    let header: TrivyHeader = deserialize_at(json, "")?;
    let mut schema = header.schema_version;
    match schema.take() {
        Some(Scalar(Some(v))) if v == "2" => {}
        Some(Scalar(Some(v))) => {
            return Err((
                Some("SchemaVersion".into()),
                format!(
                    "Trivy JSON schema version {v} is not read: only schema version 2 is \
                     (`trivy image -f json` since Trivy 0.20)"
                ),
            ));
        }
        _ => {
            return Err((
                Some("SchemaVersion".into()),
                "not a number: expected Trivy JSON schema version 2".into(),
            ));
        }
    }
    let mut artifact_name = header.artifact_name;
    let artifact = artifact_name
        .take()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            (
                Some("ArtifactName".into()),
                "missing or empty: the scanned artifact cannot be identified".to_owned(),
            )
        })?;
    *artifact_out = Some(artifact.clone());

    let doc: TrivyJson = deserialize_at(json, "")?;
    let TrivyJson {
        artifact_type,
        created_at,
        trivy,
        metadata,
        results,
    } = doc;
    let metadata = metadata.unwrap_or_default();
    // A tar (`--input`) is a container image too, named by its path: the reference
    // parser refuses paths, and RepoTags/RepoDigests name it then.
    let is_image = matches!(artifact_type.as_deref(), None | Some("container_image"));
    let image = image_of(
        &artifact,
        is_image,
        &metadata.repo_digests,
        &metadata.repo_tags,
    );

    let mut findings = Vec::new();
    let mut packages: Option<Vec<Package>> = None;
    let mut covered = Vec::new();
    let mut cover = |f: Family| {
        if !covered.contains(&f) {
            covered.push(f);
        }
    };
    for (i, r) in results.into_iter().enumerate() {
        let target = r.target.unwrap_or_default();
        let class = r.class.as_deref().unwrap_or("");
        // Which scanners ran is not written down. Trivy lists the packages of every
        // package result whatever ran (`--list-all-pkgs`, the default since 0.5x), so a
        // package result proves a vulnerability scan only when it has vulnerabilities,
        // or when packages were not listed (then only the vulnerability scanner writes
        // one). A secret scan writes results only for files with secrets; a misconfig
        // scan writes one per checked file, failing or not.
        let pkg_class = matches!(class, "os-pkgs" | "lang-pkgs");
        if !r.vulnerabilities.is_empty() || (pkg_class && r.packages.is_none()) {
            cover(Family::Vulnerability);
        }
        if class == "secret" || !r.secrets.is_empty() {
            cover(Family::Secret);
        }
        if class == "config" || !r.misconfigurations.is_empty() {
            cover(Family::ConfigAudit);
        }
        if let Some(list) = r.packages {
            let out = packages.get_or_insert_with(Vec::new);
            for p in list {
                let Some(name) = p.name.filter(|n| !n.trim().is_empty()) else {
                    continue;
                };
                let purl = p.identifier.and_then(|i| i.purl).unwrap_or_default();
                let ecosystem = purl_type(&purl)
                    .or(r.kind.as_deref())
                    .unwrap_or("")
                    .to_owned();
                out.push(Package {
                    name,
                    version: trivy_version(
                        p.epoch.unwrap_or(0),
                        p.version.as_deref().unwrap_or(""),
                        p.release.as_deref().unwrap_or(""),
                    ),
                    purl,
                    ecosystem,
                });
            }
        }
        for (j, v) in r.vulnerabilities.into_iter().enumerate() {
            let at = |f: &str| format!("Results[{i}].Vulnerabilities[{j}].{f}");
            if v.vulnerability_id.trim().is_empty() {
                return Err((
                    Some(at("VulnerabilityID")),
                    "empty: a vulnerability without an ID cannot be identified".into(),
                ));
            }
            let sev = Severity::parse_lenient(v.severity.as_deref().unwrap_or(""));
            let mut f = Finding::new(v.vulnerability_id, sev);
            f.package = v.pkg_name;
            f.installed_version = v.installed_version.unwrap_or_default();
            f.fixed_version = c.text(v.fixed_version, || at("FixedVersion"));
            // The operator's packagePath (PkgPath) before its target (the result's).
            f.path = v
                .pkg_path
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| target.clone());
            f.score = c
                .get(v.cvss, || at("CVSS"))
                .and_then(|m| cvss_score(&m))
                .filter(|s| s.is_finite());
            f.title = c.text(v.title, || at("Title"));
            f.primary_link = c.text(v.primary_url, || at("PrimaryURL"));
            f.links = c.get(v.references, || at("References")).unwrap_or_default();
            f.published = c
                .scalar(v.published_date, || at("PublishedDate"))
                .map(|d| rfc3339_seconds(&d))
                .unwrap_or_default();
            f.description = c.text(v.description, || at("Description"));
            findings.push((Family::Vulnerability, f));
        }
        for (j, s) in r.secrets.into_iter().enumerate() {
            let at = |f: &str| format!("Results[{i}].Secrets[{j}].{f}");
            if s.rule_id.trim().is_empty() {
                return Err((
                    Some(at("RuleID")),
                    "empty: a secret without a rule ID cannot be identified".into(),
                ));
            }
            let sev = Severity::parse_lenient(s.severity.as_deref().unwrap_or(""));
            let mut f = Finding::new(s.rule_id, sev);
            f.path = target.clone();
            f.title = c.text(s.title, || at("Title"));
            f.package = c.text(s.category, || at("Category"));
            f.detail = s.matched.unwrap_or_default();
            // Not in the key (the operator has no line): where to look.
            if let Some(line) = c.get(s.start_line, || at("StartLine")).filter(|l| *l > 0) {
                f.messages.push(format!("line {line}"));
            }
            findings.push((Family::Secret, f));
        }
        for (j, m) in r.misconfigurations.into_iter().enumerate() {
            let at = |f: &str| format!("Results[{i}].Misconfigurations[{j}].{f}");
            if !m
                .status
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("FAIL"))
            {
                continue;
            }
            // The operator's checkID is the AVD ID (`AVD-KSV-0030`); Trivy 0.6x and later
            // write only `ID` (`DS-0002`).
            let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
            let id = nonempty(m.avd_id).or(nonempty(m.id)).unwrap_or_default();
            let title = m.title.unwrap_or_default();
            if id.is_empty() && title.is_empty() {
                return Err((
                    Some(format!("Results[{i}].Misconfigurations[{j}]")),
                    "a failing misconfiguration has neither `ID`, `AVDID` nor `Title`, so it \
                     cannot be identified"
                        .into(),
                ));
            }
            let sev = Severity::parse_lenient(m.severity.as_deref().unwrap_or(""));
            let mut f = Finding::new(id, sev);
            f.title = title;
            f.description = c.text(m.description, || at("Description"));
            // The operator's category is the check type (`Kubernetes Security Check`).
            f.package = c.text(m.kind, || at("Type"));
            let message = c.text(m.message, || at("Message"));
            if !message.is_empty() {
                f.messages.push(message);
            }
            f.remediation = c.text(m.resolution, || at("Resolution"));
            f.primary_link = c.text(m.primary_url, || at("PrimaryURL"));
            f.links = c.get(m.references, || at("References")).unwrap_or_default();
            // The file checked: the same check failing in two files is two findings.
            f.path = target.clone();
            findings.push((Family::ConfigAudit, f));
        }
    }
    Ok(CiScan {
        artifact,
        image,
        scanned_at: timestamp(c.scalar(created_at, || "CreatedAt".into()).as_deref()),
        scanner_version: c
            .get(trivy, || "Trivy".into())
            .and_then(|t| t.version)
            .unwrap_or_default(),
        findings,
        packages,
        covered,
    })
}

/// Trivy's `FormatVersion`: `epoch:version-release`, as `InstalledVersion` and the
/// SBOM's component version write it (`1:2.33.1-0.1`).
fn trivy_version(epoch: i64, version: &str, release: &str) -> String {
    let mut v = version.to_owned();
    if !release.is_empty() {
        v = format!("{v}-{release}");
    }
    if epoch != 0 {
        v = format!("{epoch}:{v}");
    }
    v
}

/// The operator's score: NVD's V3 score, else a vendor's. (The operator takes whichever
/// vendor Go's map order gives last; here the first by name, so it is stable.)
fn cvss_score(cvss: &BTreeMap<String, TrivyCvss>) -> Option<f64> {
    let v3 = |c: &TrivyCvss| c.v3_score.filter(|s| *s != 0.0);
    cvss.get("nvd").and_then(v3).or_else(|| {
        cvss.iter()
            .filter(|(k, _)| *k != "nvd")
            .find_map(|(_, c)| v3(c))
    })
}

/// The operator writes dates with Go's `time.RFC3339` (whole seconds, UTC as `Z`).
fn rfc3339_seconds(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s.trim()) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        Err(_) => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// CycloneDX

/// CycloneDX 1.0 and 1.1 have no `metadata` to name what the SBOM describes.
const SPEC_VERSIONS: std::ops::RangeInclusive<u32> = 2..=7;
/// Real SBOMs nest a few levels (a jar in a war); serde_json's recursion limit would stop
/// a document at about 60 levels anyway, with a less helpful message.
const MAX_NESTING: usize = 32;

#[derive(Deserialize)]
struct BomHeader {
    #[serde(rename = "bomFormat", default)]
    bom_format: Lenient<String>,
    #[serde(rename = "specVersion", default)]
    spec_version: Lenient<Scalar>,
}

#[derive(Deserialize)]
struct BomDoc {
    #[serde(default)]
    metadata: Option<BomMetadata>,
    /// Absent in a BOM that only lists vulnerabilities of another BOM's components.
    #[serde(default)]
    components: Option<Vec<BomComponent>>,
    #[serde(default, deserialize_with = "null_as_default")]
    vulnerabilities: Vec<BomVulnerability>,
}

#[derive(Deserialize)]
struct BomMetadata {
    #[serde(default)]
    timestamp: Lenient<Scalar>,
    #[serde(default)]
    tools: Lenient<BomTools>,
    #[serde(default)]
    component: Option<BomComponent>,
}

/// A list before CycloneDX 1.5, an object of components and services since.
#[derive(Deserialize)]
#[serde(untagged)]
enum BomTools {
    Legacy(Vec<BomTool>),
    Modern {
        #[serde(default)]
        components: Vec<BomTool>,
        #[serde(default)]
        services: Vec<BomTool>,
    },
}

#[derive(Deserialize)]
struct BomTool {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct BomVulnerability {
    id: String,
    #[serde(default)]
    source: Lenient<BomSource>,
    /// Rate the finding, so strict.
    #[serde(default, deserialize_with = "null_as_default")]
    ratings: Vec<BomRating>,
    #[serde(default)]
    description: Lenient<String>,
    #[serde(default)]
    recommendation: Lenient<String>,
    #[serde(default)]
    advisories: Lenient<Vec<BomAdvisory>>,
    #[serde(default)]
    published: Lenient<Scalar>,
    #[serde(default, deserialize_with = "null_as_default")]
    affects: Vec<BomAffects>,
    #[serde(default)]
    analysis: Option<BomAnalysis>,
}

#[derive(Deserialize)]
struct BomSource {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct BomRating {
    #[serde(default)]
    source: Option<BomSource>,
    #[serde(default)]
    score: Lenient<f64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
struct BomAdvisory {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct BomAffects {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    versions: Lenient<Vec<BomAffectedVersion>>,
}

#[derive(Deserialize)]
struct BomAffectedVersion {
    #[serde(default)]
    version: Option<Scalar>,
    #[serde(default)]
    status: Option<String>,
}

/// VEX: a vulnerability the producer says does not apply.
#[derive(Deserialize)]
struct BomAnalysis {
    #[serde(default)]
    state: Option<String>,
}

fn read_bom(
    json: &[u8],
    c: &mut Cosmetic,
    artifact_out: &mut Option<String>,
) -> Result<CiScan, FieldError> {
    let header: BomHeader = deserialize_at(json, "")?;
    let mut format = header.bom_format;
    match format.take() {
        Some(f) if f == "CycloneDX" => {}
        Some(f) => {
            return Err((
                Some("bomFormat".into()),
                format!("`{f}` is not read: only `CycloneDX` SBOMs are"),
            ));
        }
        None => {
            return Err((
                Some("bomFormat".into()),
                "not a string: expected `CycloneDX`".into(),
            ));
        }
    }
    let mut spec = header.spec_version;
    let spec = spec.take().and_then(|s| s.0);
    let Some(spec) = spec else {
        return Err((
            Some("specVersion".into()),
            "missing: the CycloneDX version is needed (1.2 to 1.7 are read)".into(),
        ));
    };
    let minor = spec
        .trim()
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok());
    if !minor.is_some_and(|m| SPEC_VERSIONS.contains(&m)) {
        return Err((
            Some("specVersion".into()),
            format!(
                "CycloneDX {spec} is not read: 1.2 to 1.7 are (1.0 and 1.1 have no \
                 `metadata` naming what the SBOM describes)"
            ),
        ));
    }

    let doc: BomDoc = deserialize_at(json, "")?;
    let BomDoc {
        metadata,
        components,
        vulnerabilities,
    } = doc;
    let Some(BomMetadata {
        timestamp: bom_time,
        tools,
        component: subject,
    }) = metadata
    else {
        return Err((
            Some("metadata".into()),
            "missing: the SBOM does not say what it describes (`metadata.component`)".into(),
        ));
    };
    let Some(subject) = subject else {
        return Err((
            Some("metadata.component".into()),
            "missing: the SBOM does not say what it describes (an image or a directory)".into(),
        ));
    };
    let artifact = scalar_text(&subject.name).trim().to_owned();
    if artifact.is_empty() {
        return Err((
            Some("metadata.component.name".into()),
            "missing or empty: the scanned artifact cannot be identified".into(),
        ));
    }
    *artifact_out = Some(artifact.clone());

    // Trivy names the image's digests and tags in properties; any tool may give an OCI
    // package URL (`pkg:oci/app@sha256:…?repository_url=ghcr.io/org/app`).
    let mut digests: Vec<String> = subject
        .properties
        .all(TrivyProperties::REPO_DIGEST)
        .map(str::to_owned)
        .collect();
    if let Some(d) = subject.purl.as_deref().and_then(oci_purl_digest) {
        digests.push(d);
    }
    let tags: Vec<String> = subject
        .properties
        .all(TrivyProperties::REPO_TAG)
        .map(str::to_owned)
        .collect();
    let is_image = subject.kind.as_deref() == Some("container");
    let image = image_of(&artifact, is_image, &digests, &tags);

    // A BOM without `components` lists vulnerabilities of another BOM's components (by
    // BOM-Link): it says nothing of the inventory.
    let lists_packages = components.is_some();
    let components = components.unwrap_or_default();
    let flat = flatten(&components, "")?;
    let by_ref: HashMap<&str, &BomComponent> = flat
        .iter()
        .filter_map(|c| c.bom_ref.as_deref().map(|r| (r, *c)))
        .collect();

    let mut findings = Vec::new();
    let listed_vulnerabilities = !vulnerabilities.is_empty();
    for (i, v) in vulnerabilities.into_iter().enumerate() {
        let at = |f: &str| format!("vulnerabilities[{i}].{f}");
        if v.id.trim().is_empty() {
            return Err((
                Some(at("id")),
                "empty: a vulnerability without an ID cannot be identified".into(),
            ));
        }
        let dismissed = v.analysis.and_then(|a| a.state).is_some_and(|s| {
            matches!(
                s.as_str(),
                "not_affected" | "false_positive" | "resolved" | "resolved_with_pedigree"
            )
        });
        if dismissed {
            continue;
        }
        if v.affects.is_empty() {
            return Err((
                Some(at("affects")),
                "missing or empty: the vulnerable package cannot be identified".into(),
            ));
        }
        let severity = bom_severity(&v.ratings);
        let score = bom_score(v.ratings, c, &at);
        let source = c.get(v.source, || at("source"));
        let description = c.text(v.description, || at("description"));
        let recommendation = c.text(v.recommendation, || at("recommendation"));
        let links: Vec<String> = c
            .get(v.advisories, || at("advisories"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.url)
            .collect();
        let published = c
            .scalar(v.published, || at("published"))
            .map(|d| rfc3339_seconds(&d))
            .unwrap_or_default();
        for (j, a) in v.affects.into_iter().enumerate() {
            let at_ref = || format!("vulnerabilities[{i}].affects[{j}].ref");
            let affected = c
                .get(a.versions, || {
                    format!("vulnerabilities[{i}].affects[{j}].versions")
                })
                .unwrap_or_default()
                .into_iter()
                .filter(|v| {
                    v.status
                        .as_deref()
                        .is_none_or(|s| s.eq_ignore_ascii_case("affected"))
                })
                .find_map(|v| v.version.and_then(|s| s.0));
            let (package, installed, path) = affected_package(&a.reference, &by_ref, affected)
                .ok_or_else(|| {
                    (
                        Some(at_ref()),
                        format!(
                            "`{}` names no component of this SBOM and is not a package URL: \
                             the vulnerable package cannot be identified",
                            a.reference
                        ),
                    )
                })?;
            let mut f = Finding::new(v.id.clone(), severity);
            f.package = package;
            f.installed_version = installed;
            f.path = path;
            f.fixed_version = fixed_version(&recommendation);
            f.score = score;
            f.primary_link = source
                .as_ref()
                .and_then(|s| s.url.clone())
                .unwrap_or_default();
            f.links = links.clone();
            f.description = description.clone();
            f.remediation = recommendation.clone();
            f.published = published.clone();
            findings.push((Family::Vulnerability, f));
        }
    }
    let packages = lists_packages.then(|| flat.iter().filter_map(|c| package_of(c)).collect());
    Ok(CiScan {
        artifact,
        image,
        scanned_at: timestamp(
            c.scalar(bom_time, || "metadata.timestamp".into())
                .as_deref(),
        ),
        scanner_version: c
            .get(tools, || "metadata.tools".into())
            .map(|t| tool_version(&t))
            .unwrap_or_default(),
        findings,
        packages,
        // Trivy writes `"vulnerabilities": []` whether or not it scanned for them (`-f
        // cyclonedx` alone does not), so only a listed vulnerability proves a scan.
        covered: if listed_vulnerabilities {
            vec![Family::Vulnerability]
        } else {
            Vec::new()
        },
    })
}

/// The packages an embedded or standalone CycloneDX document lists (SbomReports use it
/// too). `prefix` locates `components` in the object for an error.
pub(super) fn bom_packages(
    components: &[BomComponent],
    prefix: &str,
) -> Result<Vec<Package>, FieldError> {
    Ok(flatten(components, prefix)?
        .into_iter()
        .filter_map(package_of)
        .collect())
}

/// Every component, nested ones included, in document order.
fn flatten<'c>(top: &'c [BomComponent], prefix: &str) -> Result<Vec<&'c BomComponent>, FieldError> {
    fn walk<'c>(
        list: &'c [BomComponent],
        depth: usize,
        at: &mut Vec<usize>,
        out: &mut Vec<&'c BomComponent>,
    ) -> bool {
        for (i, c) in list.iter().enumerate() {
            out.push(c);
            if !c.components.is_empty() {
                at.push(i);
                if depth == MAX_NESTING || !walk(&c.components, depth + 1, at, out) {
                    return false;
                }
                at.pop();
            }
        }
        true
    }
    let mut out = Vec::new();
    let mut at = Vec::new();
    if walk(top, 1, &mut at, &mut out) {
        return Ok(out);
    }
    let path: Vec<String> = at.iter().map(|i| format!("components[{i}]")).collect();
    Err((
        Some(format!("{prefix}{}.components", path.join("."))),
        format!("components nested more than {MAX_NESTING} levels deep are not read"),
    ))
}

/// A component as a package, or `None` for what is not one. Libraries and frameworks
/// are packages, and anything else with a package URL, except the subject (`container`)
/// and the distribution (`operating-system`, `debian 10.9`: not installed from anywhere,
/// and its release is in every OS package's purl, `distro=debian-10.9`). Trivy's
/// `application` components (lock files, binaries) only hold packages, listed apart.
fn package_of(c: &BomComponent) -> Option<Package> {
    let purl = c.purl.as_deref().map(str::trim).unwrap_or("");
    match c.kind.as_deref() {
        Some("operating-system" | "container") => return None,
        Some("library" | "framework") => {}
        _ if !purl.is_empty() => {}
        _ => return None,
    }
    let name = component_name(c);
    if name.is_empty() {
        return None;
    }
    let ecosystem = purl_type(purl)
        .or(c.properties.get(TrivyProperties::PKG_TYPE))
        .unwrap_or("")
        .to_owned();
    Some(Package {
        name,
        version: scalar_text(&c.version).trim().to_owned(),
        purl: purl.to_owned(),
        ecosystem,
    })
}

/// The package name as Trivy's JSON writes it (`PkgName`): a Maven group joins with `:`
/// (`org.apache.logging.log4j:log4j-core`), any other (an npm scope, a Go module path)
/// with `/`.
fn component_name(c: &BomComponent) -> String {
    let name = scalar_text(&c.name).trim();
    let group = scalar_text(&c.group).trim();
    if group.is_empty() || name.is_empty() {
        return name.to_owned();
    }
    let sep = match c.purl.as_deref().and_then(purl_type) {
        Some("maven") => ':',
        _ => '/',
    };
    format!("{group}{sep}{name}")
}

fn scalar_text(s: &Option<Scalar>) -> &str {
    s.as_ref().and_then(|s| s.0.as_deref()).unwrap_or("")
}

/// The package (name, installed version, path) a vulnerability's `affects[].ref` names:
/// a component of this BOM by its bom-ref, a component of another BOM by a BOM-Link
/// (`urn:cdx:<serial>/<version>#<bom-ref>`), or a package URL.
fn affected_package(
    reference: &str,
    by_ref: &HashMap<&str, &BomComponent>,
    affected: Option<String>,
) -> Option<(String, String, String)> {
    let r = reference.trim();
    let local = match r.strip_prefix("urn:cdx:") {
        Some(link) => link.split_once('#').map(|(_, f)| f)?,
        None => r,
    };
    let found = by_ref
        .get(local)
        .or_else(|| by_ref.get(percent_decode(local).as_str()));
    if let Some(c) = found {
        let version = scalar_text(&c.version).trim();
        let installed = if version.is_empty() {
            affected.unwrap_or_default()
        } else {
            version.to_owned()
        };
        // Trivy's PkgPath; the result's Target has no place in a BOM.
        let path = c
            .properties
            .get(TrivyProperties::FILE_PATH)
            .unwrap_or("")
            .to_owned();
        return Some((component_name(c), installed, path));
    }
    let purl = Purl::parse(&percent_decode(local))
        .or_else(|| Purl::parse(local))
        .filter(|p| !p.name.is_empty())?;
    let installed = affected.or(purl.version.clone()).unwrap_or_default();
    Some((purl.package_name(), installed, String::new()))
}

/// Trivy's JSON severity is its chosen vendor's (`SeveritySource`), which a BOM does not
/// say: NVD's rating, else the highest.
fn bom_severity(ratings: &[BomRating]) -> Severity {
    let by_nvd = ratings
        .iter()
        .filter(|r| source_is(r, "nvd"))
        .find_map(|r| r.severity.as_deref().filter(|s| !s.trim().is_empty()));
    if let Some(s) = by_nvd {
        return Severity::parse_lenient(s);
    }
    ratings
        .iter()
        .filter_map(|r| r.severity.as_deref())
        .map(Severity::parse_lenient)
        .min()
        .unwrap_or(Severity::Unknown)
}

/// As `cvss_score`: NVD's CVSS v3 score, else another source's.
fn bom_score(
    ratings: Vec<BomRating>,
    c: &mut Cosmetic,
    at: &dyn Fn(&str) -> String,
) -> Option<f64> {
    let mut nvd = None;
    let mut other = None;
    for (k, r) in ratings.into_iter().enumerate() {
        let v3 = r
            .method
            .as_deref()
            .is_some_and(|m| m.to_ascii_uppercase().starts_with("CVSSV3"));
        let is_nvd = source_is(&r, "nvd");
        let Some(score) = c
            .get(r.score, || at(&format!("ratings[{k}].score")))
            .filter(|s| s.is_finite() && *s != 0.0)
        else {
            continue;
        };
        if !v3 {
            continue;
        }
        if is_nvd {
            nvd = nvd.or(Some(score));
        } else {
            other = other.or(Some(score));
        }
    }
    nvd.or(other)
}

fn source_is(r: &BomRating, name: &str) -> bool {
    r.source
        .as_ref()
        .and_then(|s| s.name.as_deref())
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// Trivy writes a fix as `Upgrade <package> to version <version>`.
fn fixed_version(recommendation: &str) -> String {
    recommendation
        .strip_prefix("Upgrade ")
        .and_then(|r| r.rsplit_once(" to version "))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

/// `trivy` → its version; another tool → `name version`.
fn tool_version(t: &BomTools) -> String {
    let tools: Vec<&BomTool> = match t {
        BomTools::Legacy(list) => list.iter().collect(),
        BomTools::Modern {
            components,
            services,
        } => components.iter().chain(services).collect(),
    };
    let name_is = |t: &BomTool, f: &dyn Fn(&str) -> bool| t.name.as_deref().is_some_and(f);
    if let Some(trivy) = tools
        .iter()
        .find(|t| name_is(t, &|n| n.eq_ignore_ascii_case("trivy")))
    {
        return trivy.version.clone().unwrap_or_default();
    }
    tools
        .iter()
        .find(|t| name_is(t, &|n| !n.trim().is_empty()))
        .map(|t| {
            let name = t.name.as_deref().unwrap_or("").trim();
            match t
                .version
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
            {
                Some(v) => format!("{name} {v}"),
                None => name.to_owned(),
            }
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Package URLs

/// `pkg:type/namespace/name@version?qualifiers#subpath`, decoded.
struct Purl {
    kind: String,
    namespace: String,
    name: String,
    version: Option<String>,
    qualifiers: Vec<(String, String)>,
}

impl Purl {
    fn parse(s: &str) -> Option<Purl> {
        let rest = s.trim().strip_prefix("pkg:")?;
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, qualifiers) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let (path, version) = match rest.rsplit_once('@') {
            Some((p, v)) => (p, Some(percent_decode(v))),
            None => (rest, None),
        };
        let mut segments = path.trim_matches('/').split('/');
        let kind = segments.next()?.to_ascii_lowercase();
        let mut parts: Vec<String> = segments.map(percent_decode).collect();
        let name = parts.pop().unwrap_or_default();
        let qualifiers = qualifiers
            .split('&')
            .filter_map(|q| q.split_once('='))
            .map(|(k, v)| (k.to_ascii_lowercase(), percent_decode(v)))
            .collect();
        Some(Purl {
            kind,
            namespace: parts.join("/"),
            name,
            version,
            qualifiers,
        })
    }

    /// As Trivy names the package: the namespace of an OS package is its distribution
    /// (`pkg:rpm/centos/bash` is `bash`), a Maven group joins with `:`.
    fn package_name(&self) -> String {
        match self.kind.as_str() {
            _ if self.namespace.is_empty() => self.name.clone(),
            "apk" | "deb" | "rpm" | "alpm" | "opkg" | "ebuild" => self.name.clone(),
            "maven" => format!("{}:{}", self.namespace, self.name),
            _ => format!("{}/{}", self.namespace, self.name),
        }
    }
}

/// The purl type (`maven`, `deb`, `npm`): the package's ecosystem.
fn purl_type(purl: &str) -> Option<&str> {
    let rest = purl.trim().strip_prefix("pkg:")?;
    let end = rest.find(['/', '@', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|t| !t.is_empty())
}

/// The `repository@digest` an OCI package URL names.
fn oci_purl_digest(purl: &str) -> Option<String> {
    let p = Purl::parse(purl).filter(|p| p.kind == "oci")?;
    let digest = p.version.clone()?;
    let repo = p
        .qualifiers
        .iter()
        .find(|(k, _)| k == "repository_url")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| p.name.clone());
    Some(format!("{repo}@{digest}"))
}

/// `%XX` escapes decoded; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// Image references

/// `[registry/]repository[:tag][@digest]`, split; `None` for what is not a registry
/// reference (a tar file, a directory).
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    fn parse(s: &str) -> Option<Reference> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        // Archives `trivy image --input` reads, and paths: their names are files.
        const ARCHIVES: [&str; 6] = [".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar.bz2"];
        if s.is_empty()
            || s.starts_with(['/', '.', '~'])
            || s.contains(|c: char| c.is_whitespace() || c == '\\')
            || ARCHIVES.iter().any(|a| lower.ends_with(a))
        {
            return None;
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_owned())),
            None => (s, None),
        };
        // A tag follows the last `:` after the last `/` (a registry's port is before one).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => (host, path),
            _ => ("", name),
        };
        let host_ok = registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
        };
        let tag_ok = tag.is_none_or(|t| {
            !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
        if !host_ok || !tag_ok || !repository.split('/').all(component_ok) {
            return None;
        }
        Some(Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// `registry/repository`, normalized as `Image` normalizes it (Docker Hub forms).
    fn repo_key(&self) -> String {
        Image::new(&self.registry, &self.repository, None, None).repo_key()
    }
}

/// What CI scanned, as an image: the repository CI named (else the one a RepoDigest or
/// RepoTag names), pinned by the digest in the name, else by the RepoDigest of that
/// repository, else by the first RepoDigest (the same content under another name). What
/// is not an image reference (a directory, a tar without tags) is its name, unpinned.
fn image_of(
    artifact: &str,
    is_image: bool,
    repo_digests: &[String],
    repo_tags: &[String],
) -> Image {
    let named = if is_image {
        Reference::parse(artifact)
    } else {
        None
    };
    let digests: Vec<(Option<Reference>, &str)> = repo_digests
        .iter()
        .filter_map(|d| d.trim().rsplit_once('@'))
        .map(|(name, digest)| (Reference::parse(name), digest))
        .collect();
    let tags: Vec<Reference> = repo_tags
        .iter()
        .filter_map(|t| Reference::parse(t))
        .filter(|t| t.tag.is_some())
        .collect();
    let named = named
        .or_else(|| digests.iter().find_map(|(r, _)| r.clone()))
        .or_else(|| tags.first().cloned());
    let Some(named) = named else {
        return Image {
            registry: String::new(),
            repository: artifact.trim().to_owned(),
            tag: None,
            digest: None,
        };
    };
    let repo = named.repo_key();
    let tag = named.tag.clone().or_else(|| {
        tags.iter()
            .find(|t| t.repo_key() == repo)
            .and_then(|t| t.tag.clone())
    });
    let same_repo = digests
        .iter()
        .filter(|(r, _)| r.as_ref().is_some_and(|r| r.repo_key() == repo))
        .map(|(_, d)| *d);
    let candidates = named
        .digest
        .as_deref()
        .into_iter()
        .chain(same_repo)
        .chain(digests.iter().map(|(_, d)| *d));
    let unpinned = Image::new(&named.registry, &named.repository, tag.as_deref(), None);
    candidates
        .map(|d| Image::new(&named.registry, &named.repository, tag.as_deref(), Some(d)))
        .find(Image::pinned)
        .unwrap_or(unpinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReportKind;
    use crate::source::{Origin, Position};
    use crate::trivy::{Parsed, parse_object};

    fn raw(json: &str) -> RawObject {
        RawObject {
            origin: Origin {
                file: "ci.json".into(),
                document: None,
                position: Position::Whole,
            },
            json: json.as_bytes().to_vec(),
            kind_hint: None,
            name_hint: None,
        }
    }

    fn scan(json: &str) -> CiScan {
        match parse_object(&raw(json)) {
            Ok(Parsed::Ci { scan, .. }) => *scan,
            other => panic!("expected a CI scan, got {other:?}"),
        }
    }

    fn error(json: &str) -> ObjectError {
        match parse_object(&raw(json)) {
            Err(e) => *e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn of(s: &CiScan, family: Family) -> Vec<&Finding> {
        s.findings
            .iter()
            .filter(|(f, _)| *f == family)
            .map(|(_, f)| f)
            .collect()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const CONFIG: &str = "sha256:9999999999999999999999999999999999999999999999999999999999999999";

    /// `trivy image --scanners vuln,secret,misconfig -f json ghcr.io/org/app:1.2`, trimmed.
    fn trivy_json() -> String {
        format!(
            r#"{{"SchemaVersion": 2, "Trivy": {{"Version": "0.76.0"}},
              "CreatedAt": "2026-11-02T10:00:00.123456789Z",
              "ArtifactName": "ghcr.io/org/app:1.2", "ArtifactType": "container_image",
              "Metadata": {{"ImageID": "{CONFIG}", "RepoTags": ["ghcr.io/org/app:1.2"],
                           "RepoDigests": ["ghcr.io/org/app@{D1}"]}},
              "Results": [
                {{"Target": "ghcr.io/org/app:1.2 (debian 12.5)", "Class": "os-pkgs", "Type": "debian",
                  "Packages": [{{"Name": "bsdutils", "Version": "2.33.1", "Release": "0.1", "Epoch": 1,
                                 "Identifier": {{"PURL": "pkg:deb/debian/bsdutils@2.33.1-0.1?arch=amd64&distro=debian-12.5&epoch=1"}}}}],
                  "Vulnerabilities": [
                    {{"VulnerabilityID": "CVE-2024-1", "PkgName": "bsdutils", "InstalledVersion": "1:2.33.1-0.1",
                      "FixedVersion": "1:2.33.1-0.2", "Severity": "HIGH", "Title": "t", "Description": "d",
                      "PrimaryURL": "https://avd.aquasec.com/nvd/cve-2024-1", "References": ["https://a", "https://b"],
                      "CVSS": {{"redhat": {{"V3Score": 6.1}}, "nvd": {{"V2Score": 5, "V3Score": 7.5}}}},
                      "PublishedDate": "2024-01-02T03:04:05.678Z"}}]}},
                {{"Target": "Java", "Class": "lang-pkgs", "Type": "jar",
                  "Vulnerabilities": [
                    {{"VulnerabilityID": "CVE-2021-44228", "PkgName": "org.apache.logging.log4j:log4j-core",
                      "PkgPath": "app/lib/log4j-core-2.14.1.jar", "InstalledVersion": "2.14.1",
                      "Severity": "CRITICAL", "CVSS": {{"ghsa": {{"V3Score": 10}}}}}}]}},
                {{"Target": "app/.env", "Class": "secret",
                  "Secrets": [{{"RuleID": "aws-access-key-id", "Category": "AWS", "Severity": "CRITICAL",
                               "Title": "AWS Access Key ID", "StartLine": 3,
                               "Match": "AWS_ACCESS_KEY_ID=********************"}}]}},
                {{"Target": "app/Dockerfile", "Class": "config", "Type": "dockerfile",
                  "MisconfSummary": {{"Successes": 20, "Failures": 1}},
                  "Misconfigurations": [
                    {{"Type": "Dockerfile Security Check", "ID": "DS-0002", "Title": "Image user should not be 'root'",
                      "Message": "Specify at least 1 USER command", "Resolution": "Add 'USER <name>'",
                      "Severity": "HIGH", "PrimaryURL": "https://avd.aquasec.com/misconfig/ds-0002", "Status": "FAIL"}},
                    {{"ID": "DS-0026", "Title": "No HEALTHCHECK", "Severity": "LOW", "Status": "PASS"}}]}}]}}"#
        )
    }

    #[test]
    fn trivy_json_with_vulnerabilities_secrets_and_misconfigurations() {
        let s = scan(&trivy_json());
        assert_eq!(s.artifact, "ghcr.io/org/app:1.2");
        assert_eq!(s.image.key(), format!("ghcr.io/org/app@{D1}"));
        assert_eq!(s.image.tag.as_deref(), Some("1.2"));
        assert_eq!(s.scanner_version, "0.76.0");
        assert_eq!(
            s.scanned_at.map(|t| t.to_rfc3339()),
            Some("2026-11-02T10:00:00.123456789+00:00".into())
        );
        assert_eq!(
            s.covered,
            [Family::Vulnerability, Family::Secret, Family::ConfigAudit]
        );

        let v = of(&s, Family::Vulnerability);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (
                v[0].id.as_str(),
                v[0].package.as_str(),
                v[0].installed_version.as_str()
            ),
            ("CVE-2024-1", "bsdutils", "1:2.33.1-0.1")
        );
        // No PkgPath: the result's target, as the operator's `target`.
        assert_eq!(v[0].path, "ghcr.io/org/app:1.2 (debian 12.5)");
        assert_eq!(v[0].fixed_version, "1:2.33.1-0.2");
        assert_eq!(v[0].severity, Severity::High);
        assert_eq!(v[0].score, Some(7.5), "NVD's V3 score before a vendor's");
        assert_eq!(v[0].links, ["https://a", "https://b"]);
        assert_eq!(v[0].primary_link, "https://avd.aquasec.com/nvd/cve-2024-1");
        assert_eq!(v[0].published, "2024-01-02T03:04:05Z");
        assert_eq!((v[0].title.as_str(), v[0].description.as_str()), ("t", "d"));
        // PkgPath is the more specific location; a vendor's score without NVD's.
        assert_eq!(v[1].path, "app/lib/log4j-core-2.14.1.jar");
        assert_eq!(v[1].score, Some(10.0));
        assert!(!v[1].fixable());

        let sec = of(&s, Family::Secret);
        assert_eq!(sec.len(), 1);
        assert_eq!(
            (
                sec[0].id.as_str(),
                sec[0].path.as_str(),
                sec[0].package.as_str()
            ),
            ("aws-access-key-id", "app/.env", "AWS")
        );
        assert_eq!(sec[0].detail, "AWS_ACCESS_KEY_ID=********************");
        assert_eq!(sec[0].title, "AWS Access Key ID");
        assert_eq!(sec[0].messages, ["line 3"]);

        // Failures only.
        let cfg = of(&s, Family::ConfigAudit);
        assert_eq!(cfg.len(), 1);
        assert_eq!(cfg[0].id, "DS-0002");
        assert_eq!(cfg[0].path, "app/Dockerfile");
        assert_eq!(cfg[0].package, "Dockerfile Security Check");
        assert_eq!(cfg[0].messages, ["Specify at least 1 USER command"]);
        assert_eq!(cfg[0].remediation, "Add 'USER <name>'");
        assert_eq!(
            cfg[0].key(Family::ConfigAudit),
            "DS-0002\u{1f}app/Dockerfile"
        );

        // Packages were listed (`--list-all-pkgs`): the version as Trivy formats it.
        let pkgs = s.packages.expect("packages listed");
        assert_eq!(
            pkgs,
            [Package {
                name: "bsdutils".into(),
                version: "1:2.33.1-0.1".into(),
                purl: "pkg:deb/debian/bsdutils@2.33.1-0.1?arch=amd64&distro=debian-12.5&epoch=1"
                    .into(),
                ecosystem: "deb".into(),
            }]
        );
    }

    /// A CI finding and the operator's report of the same Trivy output have one key.
    #[test]
    fn keys_agree_with_the_operators_reports() {
        let ci = scan(&trivy_json());
        // As trivy-operator writes it with `additionalVulnerabilityReportFields:
        // Target,PackagePath` (resource = PkgName, packagePath = PkgPath, target = Target).
        let vr = format!(
            r#"{{"kind": "VulnerabilityReport", "metadata": {{"name": "replicaset-app-1-app", "namespace": "shop"}},
              "report": {{"registry": {{"server": "ghcr.io"}}, "artifact": {{"repository": "org/app", "tag": "1.2", "digest": "{D1}"}},
                "vulnerabilities": [
                  {{"vulnerabilityID": "CVE-2024-1", "resource": "bsdutils", "installedVersion": "1:2.33.1-0.1",
                    "fixedVersion": "1:2.33.1-0.2", "severity": "HIGH", "target": "ghcr.io/org/app:1.2 (debian 12.5)", "packagePath": ""}},
                  {{"vulnerabilityID": "CVE-2021-44228", "resource": "org.apache.logging.log4j:log4j-core", "installedVersion": "2.14.1",
                    "severity": "CRITICAL", "target": "Java", "packagePath": "app/lib/log4j-core-2.14.1.jar"}}]}}}}"#
        );
        let sr = r#"{"kind": "ExposedSecretReport", "metadata": {"name": "replicaset-app-1-app", "namespace": "shop"},
              "report": {"registry": {"server": "ghcr.io"}, "artifact": {"repository": "org/app", "tag": "1.2"},
                "secrets": [{"ruleID": "aws-access-key-id", "category": "AWS", "severity": "CRITICAL", "title": "AWS Access Key ID",
                             "target": "app/.env", "match": "AWS_ACCESS_KEY_ID=********************"}]}}"#;
        for (json, family) in [(vr.as_str(), Family::Vulnerability), (sr, Family::Secret)] {
            let Ok(Parsed::Report(r)) = parse_object(&raw(json)) else {
                panic!("report")
            };
            let cluster: Vec<String> = r.findings.iter().map(|f| f.key(family)).collect();
            let from_ci: Vec<String> = of(&ci, family).iter().map(|f| f.key(family)).collect();
            assert_eq!(cluster, from_ci, "{family}");
            assert_eq!(
                r.image.as_ref().map(Image::repo_key),
                Some(ci.image.repo_key())
            );
        }
    }

    #[test]
    fn the_digest_of_the_scanned_repository_is_preferred() {
        // The daemon knows the content under two names; ImageID is never a digest.
        let json = |name: &str, digests: &str| {
            format!(
                r#"{{"SchemaVersion": 2, "ArtifactName": "{name}", "ArtifactType": "container_image",
                  "Metadata": {{"ImageID": "{CONFIG}", "RepoTags": ["alpine:3.10", "registry.local:5000/team/alpine:3.10"],
                               "RepoDigests": [{digests}]}}}}"#
            )
        };
        let both = format!(r#""alpine@{D1}", "registry.local:5000/team/alpine@{D2}""#);
        let s = scan(&json("registry.local:5000/team/alpine:3.10", &both));
        assert_eq!(
            s.image.key(),
            format!("registry.local:5000/team/alpine@{D2}")
        );
        // Docker Hub's short form matches its long form.
        let s = scan(&json("docker.io/library/alpine:3.10", &both));
        assert_eq!(s.image.key(), format!("docker.io/library/alpine@{D1}"));
        // Re-tagged locally: no digest of that name, the first one (the same content).
        let s = scan(&json("myapp:latest", &both));
        assert_eq!(s.image.key(), format!("docker.io/library/myapp@{D1}"));
        assert_eq!(s.image.tag.as_deref(), Some("latest"));
        // A digest in the name itself wins.
        let s = scan(&json(
            &format!("ghcr.io/org/app@{D2}"),
            &format!(r#""ghcr.io/org/app@{D1}""#),
        ));
        assert_eq!(s.image.key(), format!("ghcr.io/org/app@{D2}"));
        // A malformed digest is passed over.
        let s = scan(&json(
            "alpine:3.10",
            &format!(r#""alpine@sha256:abc", "alpine@{D1}""#),
        ));
        assert_eq!(s.image.digest.as_deref(), Some(D1));
        assert!(!format!("{s:?}").contains(CONFIG));
    }

    #[test]
    fn without_a_digest_the_image_is_unpinned() {
        // Built locally, never pushed: by tag.
        let s = scan(
            r#"{"SchemaVersion": 2, "ArtifactName": "app:dev", "ArtifactType": "container_image",
                "Metadata": {"ImageID": "sha256:9999999999999999999999999999999999999999999999999999999999999999"}}"#,
        );
        assert!(!s.image.pinned());
        assert_eq!(s.image.key(), "docker.io/library/app:dev");
        assert!(s.covered.is_empty() && s.findings.is_empty() && s.packages.is_none());
        // A `docker save` tar: named by its RepoTags.
        let s = scan(
            r#"{"SchemaVersion": 2, "ArtifactName": "build/app-1.2.tar.gz", "ArtifactType": "container_image",
                "Metadata": {"RepoTags": ["ghcr.io/org/app:1.2"]}}"#,
        );
        assert_eq!(s.image.key(), "ghcr.io/org/app:1.2");
        assert_eq!(s.artifact, "build/app-1.2.tar.gz");
        // A tar without tags, and a directory: their names.
        for (name, kind) in [
            ("alpine-310.tar", "container_image"),
            ("./src", "filesystem"),
            ("root", "filesystem"),
        ] {
            let s = scan(&format!(
                r#"{{"SchemaVersion": 2, "ArtifactName": "{name}", "ArtifactType": "{kind}"}}"#
            ));
            assert_eq!(s.image.key(), name);
            assert!(s.image.registry.is_empty());
        }
    }

    #[test]
    fn an_unknown_schema_version_says_which_is_read() {
        let e = error(r#"{"SchemaVersion": 3, "ArtifactName": "x", "Results": "changed"}"#);
        assert_eq!(e.field.as_deref(), Some("SchemaVersion"));
        assert!(
            e.message.contains("schema version 3") && e.message.contains("only schema version 2"),
            "{}",
            e.message
        );
        let e = error(r#"{"SchemaVersion": "two", "ArtifactName": "x"}"#);
        assert!(e.message.contains("schema version two"), "{}", e.message);
        let e = error(r#"{"SchemaVersion": 2, "ArtifactName": ""}"#);
        assert_eq!(e.field.as_deref(), Some("ArtifactName"));
    }

    #[test]
    fn identity_fields_are_strict_and_cosmetic_ones_lenient() {
        let json = trivy_json();
        let e = error(&json.replace(r#""VulnerabilityID": "CVE-2024-1", "#, ""));
        assert_eq!(e.field.as_deref(), Some("Results[0].Vulnerabilities[0]"));
        assert!(e.message.contains("VulnerabilityID"), "{}", e.message);
        assert_eq!(e.name.as_deref(), Some("ghcr.io/org/app:1.2"));
        assert!(
            e.to_string()
                .starts_with("ci.json (ghcr.io/org/app:1.2): field"),
            "{e}"
        );
        let e = error(&json.replace(r#""PkgName": "bsdutils""#, r#""PkgName": 7"#));
        assert_eq!(
            e.field.as_deref(),
            Some("Results[0].Vulnerabilities[0].PkgName")
        );
        let e = error(&json.replace(
            r#""ID": "DS-0002", "Title": "Image user should not be 'root'","#,
            "",
        ));
        assert_eq!(e.field.as_deref(), Some("Results[3].Misconfigurations[0]"));
        assert!(
            e.message.contains("neither `ID`, `AVDID` nor `Title`"),
            "{}",
            e.message
        );
        // A title of the wrong type, CVSS as text: read as absent, the finding stays.
        let s = scan(
            &json
                .replace(r#""Title": "t""#, r#""Title": ["t"]"#)
                .replace(r#""CVSS": {"ghsa": {"V3Score": 10}}"#, r#""CVSS": "10""#),
        );
        let v = of(&s, Family::Vulnerability);
        assert_eq!((v[0].title.as_str(), v[1].score), ("", None));
    }

    fn bom(body: &str) -> String {
        format!(
            r#"{{"bomFormat": "CycloneDX", "specVersion": "1.7", "version": 1,
              "metadata": {{"timestamp": "2026-11-02T10:00:00+00:00",
                "tools": {{"components": [{{"type": "application", "group": "aquasecurity", "name": "trivy", "version": "0.76.0"}}]}},
                "component": {{"bom-ref": "pkg:oci/app@sha256%3A{hex}?repository_url=ghcr.io%2Forg%2Fapp", "type": "container",
                  "name": "ghcr.io/org/app:1.2", "purl": "pkg:oci/app@sha256%3A{hex}?repository_url=ghcr.io%2Forg%2Fapp",
                  "properties": [{{"name": "aquasecurity:trivy:ImageID", "value": "{CONFIG}"}},
                                 {{"name": "aquasecurity:trivy:RepoTag", "value": "ghcr.io/org/app:1.2"}}]}}}},
              {body}}}"#,
            hex = &D1[7..]
        )
    }

    #[test]
    fn cyclonedx_components_are_flattened_into_packages() {
        let s = scan(&bom(r#""components": [
              {"bom-ref": "os", "type": "operating-system", "name": "debian", "version": "12.5"},
              {"bom-ref": "pkg:deb/debian/libssl3@3.0.11-1", "type": "library", "name": "libssl3", "version": "3.0.11-1",
               "purl": "pkg:deb/debian/libssl3@3.0.11-1?arch=amd64&distro=debian-12.5",
               "properties": [{"name": "aquasecurity:trivy:PkgType", "value": "debian"},
                              {"name": "aquasecurity:trivy:LayerDiffID", "value": "sha256:00"}]},
              {"bom-ref": "war", "type": "application", "name": "app.war",
               "components": [
                 {"type": "library", "group": "org.apache.logging.log4j", "name": "log4j-core", "version": "2.14.1",
                  "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                  "components": [{"type": "framework", "group": "@babel", "name": "core", "version": 7}]}]},
              {"type": "library", "name": "musl", "version": "1.2.4-r2",
               "properties": [{"name": "aquasecurity:trivy:PkgType", "value": "alpine"}]},
              {"type": "file", "name": "README"}]"#));
        assert_eq!(s.artifact, "ghcr.io/org/app:1.2");
        // The OCI purl's digest pins it; the tag is the name's.
        assert_eq!(s.image.key(), format!("ghcr.io/org/app@{D1}"));
        assert_eq!(s.image.tag.as_deref(), Some("1.2"));
        assert_eq!(s.scanner_version, "0.76.0");
        assert!(s.scanned_at.is_some());
        assert!(s.covered.is_empty() && s.findings.is_empty());
        let got: Vec<(&str, &str, &str)> = s
            .packages
            .as_ref()
            .expect("listed")
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.ecosystem.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("libssl3", "3.0.11-1", "deb"),
                ("org.apache.logging.log4j:log4j-core", "2.14.1", "maven"),
                ("@babel/core", "7", ""),
                ("musl", "1.2.4-r2", "alpine"),
            ]
        );
    }

    #[test]
    fn cyclonedx_nesting_is_bounded() {
        let mut nested = r#"{"type": "library", "name": "leaf"}"#.to_owned();
        // 32 levels: read.
        for _ in 1..MAX_NESTING {
            nested = format!(r#"{{"type": "library", "name": "n", "components": [{nested}]}}"#);
        }
        let ok = bom(&format!(r#""components": [{nested}]"#));
        assert_eq!(scan(&ok).packages.map(|p| p.len()), Some(MAX_NESTING));
        let deep = format!(r#"{{"type": "library", "name": "n", "components": [{nested}]}}"#);
        let e = error(&bom(&format!(r#""components": [{deep}]"#)));
        assert!(
            e.message.contains("nested more than 32 levels"),
            "{}",
            e.message
        );
        let field = e.field.unwrap_or_default();
        assert!(
            field.starts_with("components[0].components[0].") && field.ends_with(".components"),
            "{field}"
        );
    }

    #[test]
    fn cyclonedx_vulnerabilities_are_findings_of_the_components_they_affect() {
        let s = scan(&bom(r#""components": [
              {"bom-ref": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", "type": "library",
               "group": "org.apache.logging.log4j", "name": "log4j-core", "version": "2.14.1",
               "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
               "properties": [{"name": "aquasecurity:trivy:FilePath", "value": "app/log4j-core-2.14.1.jar"}]}],
             "vulnerabilities": [
              {"id": "CVE-2021-44228", "source": {"name": "ghsa", "url": "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q"},
               "ratings": [{"source": {"name": "ghsa"}, "score": 10, "severity": "critical", "method": "CVSSv31"},
                           {"source": {"name": "nvd"}, "score": 9.3, "severity": "critical", "method": "CVSSv2"}],
               "description": "JNDI", "recommendation": "Upgrade org.apache.logging.log4j:log4j-core to version 2.15.0",
               "advisories": [{"url": "https://a"}], "published": "2021-12-10T10:15:09+00:00",
               "affects": [{"ref": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                            "versions": [{"version": "2.14.1", "status": "affected"}]}]},
              {"id": "CVE-2019-1559",
               "ratings": [{"source": {"name": "redhat"}, "severity": "medium"}, {"source": {"name": "ubuntu"}, "severity": "low"}],
               "affects": [{"ref": "urn:cdx:1455c02d-64ca-453e-a5df-ddfb70a7c804/1#pkg:rpm/centos/openssl-libs@1.0.2k-16.el7?arch=x86_64&epoch=1&distro=centos-7.6.1810",
                            "versions": [{"version": "1:1.0.2k-16.el7", "status": "affected"}]}]},
              {"id": "CVE-2000-1", "analysis": {"state": "not_affected"}, "affects": [{"ref": "nowhere"}]}]"#));
        assert_eq!(s.covered, [Family::Vulnerability]);
        let v = of(&s, Family::Vulnerability);
        assert_eq!(v.len(), 2, "the VEX `not_affected` one is no finding");
        assert_eq!(v[0].package, "org.apache.logging.log4j:log4j-core");
        assert_eq!(v[0].installed_version, "2.14.1");
        assert_eq!(v[0].path, "app/log4j-core-2.14.1.jar");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].score, Some(10.0), "NVD's is v2 only");
        assert_eq!(v[0].fixed_version, "2.15.0");
        assert_eq!(
            v[0].primary_link,
            "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q"
        );
        assert_eq!(v[0].published, "2021-12-10T10:15:09Z");
        assert_eq!(v[0].links, ["https://a"]);
        // A component of another BOM (BOM-Link): named by its purl, as Trivy names it.
        assert_eq!(
            (
                v[1].package.as_str(),
                v[1].installed_version.as_str(),
                v[1].path.as_str()
            ),
            ("openssl-libs", "1:1.0.2k-16.el7", "")
        );
        assert_eq!(
            v[1].severity,
            Severity::Medium,
            "no NVD rating: the highest"
        );

        // What it affects must be identifiable.
        let e = error(&bom(
            r#""components": [], "vulnerabilities": [{"id": "CVE-1", "affects": [{"ref": "3ff14136-uuid"}]}]"#,
        ));
        assert_eq!(
            e.field.as_deref(),
            Some("vulnerabilities[0].affects[0].ref")
        );
        assert!(e.message.contains("names no component"), "{}", e.message);
        let e = error(&bom(r#""vulnerabilities": [{"affects": []}]"#));
        assert_eq!(e.field.as_deref(), Some("vulnerabilities[0]"));
        assert!(e.message.contains("`id`"), "{}", e.message);
    }

    #[test]
    fn an_empty_vulnerabilities_list_covers_nothing() {
        // `trivy rootfs --format cyclonedx` writes it without scanning for vulnerabilities.
        let s = scan(&bom(r#""components": [], "vulnerabilities": []"#));
        assert!(s.covered.is_empty());
        assert_eq!(s.packages, Some(Vec::new()));
        // No `components` at all: nothing said about the inventory.
        let s = scan(&bom(r#""vulnerabilities": []"#));
        assert_eq!(s.packages, None);
    }

    #[test]
    fn not_cyclonedx_or_an_unread_version_is_an_error() {
        let e = error(r#"{"bomFormat": "SPDX", "specVersion": "1.6", "components": []}"#);
        assert_eq!(e.field.as_deref(), Some("bomFormat"));
        assert!(e.message.contains("`SPDX` is not read"), "{}", e.message);
        for v in [r#""1.1""#, r#""2.0""#, r#""1.x""#] {
            let e = error(&format!(
                r#"{{"bomFormat": "CycloneDX", "specVersion": {v}}}"#
            ));
            assert_eq!(e.field.as_deref(), Some("specVersion"));
            assert!(e.message.contains("1.2 to 1.7"), "{}", e.message);
        }
        // A YAML export retypes it as a number; that is still 1.4.
        let s = scan(
            &bom(r#""components": []"#).replace(r#""specVersion": "1.7""#, r#""specVersion": 1.4"#),
        );
        assert_eq!(s.packages, Some(Vec::new()));
        let e = error(r#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {}}"#);
        assert_eq!(e.field.as_deref(), Some("metadata.component"));
    }

    #[test]
    fn cli_formats_are_ci_scans_not_ignored() {
        // Before: both were `Parsed::Ignored` ("not a Trivy Operator report").
        assert!(matches!(
            parse_object(&raw(
                r#"{"SchemaVersion": 2, "ArtifactName": "nginx:1.25", "Results": []}"#
            )),
            Ok(Parsed::Ci { .. })
        ));
        assert!(matches!(
            parse_object(&raw(&bom(r#""components": []"#))),
            Ok(Parsed::Ci { .. })
        ));
    }

    #[test]
    fn sbom_report_lists_its_packages() {
        let yaml = include_bytes!(
            "../../tests/fixtures/trivy-operator/aquasecurity-trivy-operator-v0.32.0-docs/sbom-report.md.block1.yaml"
        );
        let mut objects = Vec::new();
        let errors = crate::source::files::read_bytes("sbom.yaml", yaml, &mut |o| objects.push(o));
        assert!(errors.is_empty(), "{errors:?}");
        let Ok(Parsed::Report(r)) = parse_object(&objects[0]) else {
            panic!("report")
        };
        assert_eq!(r.id.kind, ReportKind::SbomReport);
        // The count is the listed components, the OS included, as before.
        assert_eq!(r.components, Some(4));
        let got: Vec<(&str, &str, &str, &str)> = r
            .packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.ecosystem.as_str(),
                    p.purl.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "base-files",
                    "10.3+deb10u9",
                    "deb",
                    "pkg:deb/debian/base-files@10.3+deb10u9?arch=amd64&distro=debian-10.9"
                ),
                (
                    "netbase",
                    "5.6",
                    "deb",
                    "pkg:deb/debian/netbase@5.6?arch=all&distro=debian-10.9"
                ),
                (
                    "tzdata",
                    "2021a-0+deb10u1",
                    "deb",
                    "pkg:deb/debian/tzdata@2021a-0+deb10u1?arch=all&distro=debian-10.9"
                ),
            ]
        );
    }

    fn golden(name: &str, json: &str) -> CiScan {
        let mut o = raw(json);
        o.origin.file = name.into();
        match parse_object(&o) {
            Ok(Parsed::Ci { scan, .. }) => *scan,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Trivy's own integration-test golden files (tests/fixtures/trivy-cli/).
    #[test]
    fn trivy_golden_files() {
        let s = golden(
            "alpine-310-registry",
            include_str!("../../tests/fixtures/trivy-cli/alpine-310-registry.json.golden"),
        );
        assert_eq!(s.artifact, "localhost:53869/alpine:3.10");
        assert_eq!(
            s.image.key(),
            "localhost:53869/alpine@sha256:b1c5a500182b21d0bfa5a584a8526b56d8be316f89e87d951be04abed2446e60"
        );
        assert_eq!(s.image.tag.as_deref(), Some("3.10"));
        assert_eq!(s.covered, [Family::Vulnerability]);
        assert_eq!(
            s.scanner_version, "",
            "schema 2 before Trivy 0.5x did not say"
        );
        let v = of(&s, Family::Vulnerability);
        let got: Vec<(&str, &str)> = v
            .iter()
            .map(|f| (f.id.as_str(), f.package.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("CVE-2019-1549", "libcrypto1.1"),
                ("CVE-2019-1551", "libcrypto1.1"),
                ("CVE-2019-1549", "libssl1.1"),
                ("CVE-2019-1551", "libssl1.1"),
            ]
        );
        assert!(v.iter().all(|f| f.severity == Severity::Medium
            && f.score == Some(5.3)
            && f.path == "localhost:53869/alpine:3.10 (alpine 3.10.2)"));
        assert_eq!(v[0].fixed_version, "1.1.1d-r0");
        assert_eq!(v[0].links.len(), 20);
        assert_eq!(v[0].published, "2019-09-10T17:15:00Z");

        let s = golden(
            "secrets",
            include_str!("../../tests/fixtures/trivy-cli/secrets.json.golden"),
        );
        assert_eq!(s.image.key(), "testdata/fixtures/repo/secrets");
        assert_eq!(s.covered, [Family::Secret]);
        let got: Vec<(&str, &str, &str, Severity)> = of(&s, Family::Secret)
            .iter()
            .map(|f| {
                (
                    f.id.as_str(),
                    f.path.as_str(),
                    f.detail.as_str(),
                    f.severity,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "aws-access-key-id",
                    "deploy.sh",
                    "export AWS_ACCESS_KEY_ID=********************",
                    Severity::Critical
                ),
                ("mysecret", "deploy.sh", "echo ********", Severity::High),
            ]
        );

        let s = golden(
            "dockerfile",
            include_str!("../../tests/fixtures/trivy-cli/dockerfile.json.golden"),
        );
        assert_eq!(s.covered, [Family::ConfigAudit]);
        let cfg = of(&s, Family::ConfigAudit);
        assert_eq!(cfg.len(), 1);
        assert_eq!(
            (cfg[0].id.as_str(), cfg[0].path.as_str()),
            ("AVD-DS-0002", "Dockerfile")
        );
        assert_eq!(
            cfg[0].remediation,
            "Add 'USER <non root user name>' line to the Dockerfile"
        );
        assert_eq!(
            cfg[0].primary_link,
            "https://avd.aquasec.com/misconfig/ds002"
        );

        let s = golden(
            "conda",
            include_str!("../../tests/fixtures/trivy-cli/conda-cyclonedx.json.golden"),
        );
        assert_eq!(s.artifact, "testdata/fixtures/repo/conda");
        assert!(!s.image.pinned());
        assert_eq!(s.scanner_version, "dev");
        assert!(s.covered.is_empty(), "`vulnerabilities: []` proves no scan");
        let got: Vec<(&str, &str, &str)> = s
            .packages
            .as_ref()
            .expect("listed")
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.ecosystem.as_str()))
            .collect();
        assert_eq!(
            got,
            [("openssl", "1.1.1q", "conda"), ("pip", "22.2.2", "conda")]
        );
    }

    #[test]
    fn references_split_like_docker() {
        let r = |s: &str| Reference::parse(s).map(|r| (r.registry, r.repository, r.tag, r.digest));
        assert_eq!(
            r("localhost:5000/a/b:1.0"),
            Some((
                "localhost:5000".into(),
                "a/b".into(),
                Some("1.0".into()),
                None
            ))
        );
        assert_eq!(r("alpine"), Some(("".into(), "alpine".into(), None, None)));
        assert_eq!(
            r(&format!("ghcr.io/org/app:v1@{D1}")),
            Some((
                "ghcr.io".into(),
                "org/app".into(),
                Some("v1".into()),
                Some(D1.into())
            ))
        );
        for not_one in [
            "alpine-310.tar.gz",
            "/tmp/img",
            "./dir",
            "My/Dir",
            "a b",
            "",
            "app:",
        ] {
            assert_eq!(r(not_one), None, "{not_one}");
        }
        assert_eq!(percent_decode("a%2Fb%3a%zz"), "a/b:%zz");
        assert_eq!(purl_type("pkg:maven/g/a@1"), Some("maven"));
        assert_eq!(purl_type("maven"), None);
    }
}
