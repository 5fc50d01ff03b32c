//! The report CRDs as they really arrive (research/report-shapes.md): every field that the
//! operator ever omitted is optional, unknown fields are ignored, `null` means absent.
//! Only the fields we use are declared; the rest is skipped without being stored.
//!
//! Fields that identify a finding or rate it (IDs, package, version, path, severity,
//! success, the image) are strict: a wrong type fails the report, naming the field.
//! Cosmetic fields (scanner, summary counts, timestamps, titles, descriptions, links,
//! messages) are `Lenient`: a wrong type reads as absent and is counted, so one odd
//! field never costs a report its findings.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};
use serde_json::value::RawValue;

/// The parts every object shares; bodies stay raw until the kind is known.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(borrow, default)]
    pub report: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub status: Option<&'a RawValue>,
    // Fields that mark a bare `.report` body (alternate storage) or `.status` fragment;
    // present even when `null` (`"checks": null` occurs).
    #[serde(default, deserialize_with = "present")]
    pub vulnerabilities: bool,
    #[serde(default, deserialize_with = "present")]
    pub checks: bool,
    #[serde(default, deserialize_with = "present")]
    pub secrets: bool,
    #[serde(default, deserialize_with = "present")]
    pub components: bool,
    #[serde(rename = "detailReport", default, deserialize_with = "present")]
    pub detail_report: bool,
    #[serde(rename = "summaryReport", default, deserialize_with = "present")]
    pub summary_report: bool,
    // Formats that are not Trivy Operator reports but share field names with one: a
    // CycloneDX SBOM has `components`, Trivy CLI JSON has `Results`.
    #[serde(rename = "bomFormat", default, deserialize_with = "present")]
    pub bom_format: bool,
    #[serde(rename = "SchemaVersion", default, deserialize_with = "present")]
    pub trivy_schema_version: bool,
    /// Starboard-era config audit bodies (before `checks`).
    #[serde(rename = "podChecks", default, deserialize_with = "present")]
    pub pod_checks: bool,
    #[serde(rename = "containerChecks", default, deserialize_with = "present")]
    pub container_checks: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Read for Namespaces only: `kube-system`'s tells clusters apart.
    #[serde(default)]
    pub uid: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        rename = "ownerReferences",
        default,
        deserialize_with = "null_as_default"
    )]
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Deserialize)]
pub struct OwnerReference {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Scanner {
    #[serde(default)]
    pub version: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub server: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Artifact {
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// `.report` of every kind but ClusterComplianceReport. The kinds share the header
/// (timestamp, scanner, and the image for image kinds) and each fills one list; the
/// family decides which list is read.
#[derive(Debug, Deserialize)]
pub struct ReportBody {
    #[serde(rename = "updateTimestamp", default)]
    pub update_timestamp: Lenient<Scalar>,
    #[serde(default)]
    pub scanner: Lenient<Scanner>,
    #[serde(default)]
    pub registry: Option<Registry>,
    #[serde(default)]
    pub artifact: Option<Artifact>,
    #[serde(default)]
    pub summary: Lenient<Summary>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub vulnerabilities: Vec<Vulnerability>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<Secret>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub checks: Vec<Check>,
    /// Starboard (before trivy-operator): checks of the pod template, and checks per
    /// container name. Read when `checks` is absent (later starboard wrote both).
    #[serde(rename = "podChecks", default, deserialize_with = "null_as_default")]
    pub pod_checks: Vec<Check>,
    #[serde(
        rename = "containerChecks",
        default,
        deserialize_with = "null_as_default"
    )]
    pub container_checks: BTreeMap<String, Vec<Check>>,
    /// SBOMs: an embedded CycloneDX document: its components (the count and the packages).
    #[serde(default)]
    pub components: Option<Bom>,
}

/// Counts as the report claims them (never trusted, only compared).
#[derive(Debug, Default, Deserialize)]
pub struct Summary {
    #[serde(rename = "criticalCount", default)]
    pub critical: Option<i64>,
    #[serde(rename = "highCount", default)]
    pub high: Option<i64>,
    #[serde(rename = "mediumCount", default)]
    pub medium: Option<i64>,
    #[serde(rename = "lowCount", default)]
    pub low: Option<i64>,
    #[serde(rename = "unknownCount", default)]
    pub unknown: Option<i64>,
    #[serde(rename = "componentsCount", default)]
    pub components: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Vulnerability {
    #[serde(rename = "vulnerabilityID")]
    pub vulnerability_id: String,
    pub resource: String,
    #[serde(rename = "installedVersion", default)]
    pub installed_version: Option<String>,
    #[serde(rename = "fixedVersion", default)]
    pub fixed_version: Lenient<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub score: Lenient<f64>,
    #[serde(default)]
    pub title: Lenient<String>,
    #[serde(rename = "primaryLink", default)]
    pub primary_link: Lenient<String>,
    #[serde(default)]
    pub links: Lenient<Vec<String>>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(rename = "packagePath", default)]
    pub package_path: Option<String>,
    #[serde(rename = "publishedDate", default)]
    pub published_date: Lenient<Scalar>,
    #[serde(default)]
    pub description: Lenient<String>,
}

#[derive(Debug, Deserialize)]
pub struct Secret {
    #[serde(rename = "ruleID")]
    pub rule_id: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub title: Lenient<String>,
    #[serde(default)]
    pub category: Lenient<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(rename = "match", default)]
    pub matched: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Check {
    #[serde(rename = "checkID", default)]
    pub check_id: Option<String>,
    /// Identifies a check without `checkID`, so strict.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Lenient<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub category: Lenient<String>,
    #[serde(default)]
    pub messages: Lenient<Vec<String>>,
    /// Starboard's single message.
    #[serde(default)]
    pub message: Lenient<String>,
    #[serde(default)]
    pub remediation: Lenient<String>,
    #[serde(default)]
    pub success: Option<bool>,
    /// Compliance detail checks name the resource they failed on.
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Bom {
    #[serde(default, deserialize_with = "null_as_default")]
    pub components: Vec<BomComponent>,
}

/// A CycloneDX component, as much of it as the inventory and the image identity need;
/// nested components (`components[].components`) included. Shared by SbomReports and
/// CycloneDX files from CI (`ci.rs`). `group`, `name` and `version` are scalars: a YAML
/// export retypes `version: 5.6`.
#[derive(Debug, Default, Deserialize)]
pub struct BomComponent {
    #[serde(rename = "bom-ref", default)]
    pub bom_ref: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub group: Option<Scalar>,
    #[serde(default)]
    pub name: Option<Scalar>,
    #[serde(default)]
    pub version: Option<Scalar>,
    #[serde(default)]
    pub purl: Option<String>,
    #[serde(default)]
    pub properties: TrivyProperties,
    #[serde(default, deserialize_with = "null_as_default")]
    pub components: Vec<BomComponent>,
}

/// The `aquasecurity:trivy:*` properties a component's identity needs. Trivy writes a
/// dozen per package (layer digests, source package, ...): only these are kept, the rest
/// are read without being stored, which keeps a 100 MB SBOM's components small.
#[derive(Debug, Default)]
pub struct TrivyProperties(pub Vec<(&'static str, String)>);

impl TrivyProperties {
    pub const PKG_TYPE: &'static str = "aquasecurity:trivy:PkgType";
    pub const FILE_PATH: &'static str = "aquasecurity:trivy:FilePath";
    pub const REPO_DIGEST: &'static str = "aquasecurity:trivy:RepoDigest";
    pub const REPO_TAG: &'static str = "aquasecurity:trivy:RepoTag";
    const KEPT: [&'static str; 4] = [
        Self::PKG_TYPE,
        Self::FILE_PATH,
        Self::REPO_DIGEST,
        Self::REPO_TAG,
    ];

    /// The first value of a property.
    pub fn get<'s>(&'s self, name: &'s str) -> Option<&'s str> {
        self.all(name).next()
    }

    /// Every value of a property (Trivy repeats `RepoDigest` once per digest).
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<'de> Deserialize<'de> for TrivyProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One `{name, value}`; borrowed from the input where it has no escapes.
        #[derive(Deserialize)]
        struct Property<'a> {
            #[serde(borrow, default)]
            name: std::borrow::Cow<'a, str>,
            #[serde(borrow, default)]
            value: Option<BorrowedScalar<'a>>,
        }
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = TrivyProperties;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of properties")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(TrivyProperties::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(TrivyProperties::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut kept = Vec::new();
                while let Some(p) = seq.next_element::<Property<'de>>()? {
                    if let Some(name) = TrivyProperties::KEPT.iter().find(|k| **k == p.name)
                        && let Some(v) = p.value.and_then(|v| v.0)
                    {
                        kept.push((*name, v.into_owned()));
                    }
                }
                Ok(TrivyProperties(kept))
            }
        }
        d.deserialize_any(V)
    }
}

/// Like `Scalar`, without copying a string that has no escapes.
struct BorrowedScalar<'a>(Option<std::borrow::Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedScalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = BorrowedScalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.to_owned().into())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.into())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.to_string().into())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.to_string().into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.to_string().into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(Some(v.to_string().into())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(BorrowedScalar(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// `status` of ClusterComplianceReport.
#[derive(Debug, Deserialize)]
pub struct ComplianceStatus {
    #[serde(rename = "updateTimestamp", default)]
    pub update_timestamp: Lenient<Scalar>,
    #[serde(rename = "summaryReport", default)]
    pub summary_report: Option<SummaryReport>,
    #[serde(rename = "detailReport", default)]
    pub detail_report: Option<DetailReport>,
    /// Starboard 0.15's draft schema: the control results directly under `status`.
    #[serde(rename = "controlCheck", default, deserialize_with = "null_as_default")]
    pub control_check: Vec<ControlCheck>,
    /// What the report claims failed: compared with what was read, never trusted.
    #[serde(default)]
    pub summary: Lenient<ComplianceCounts>,
    #[serde(rename = "totalCounts", default)]
    pub total_counts: Lenient<ComplianceCounts>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ComplianceCounts {
    #[serde(rename = "failCount", default)]
    pub fail: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct SummaryReport {
    #[serde(rename = "controlCheck", default, deserialize_with = "null_as_default")]
    pub control_check: Vec<ControlCheck>,
}

#[derive(Debug, Deserialize)]
pub struct ControlCheck {
    pub id: String,
    #[serde(default)]
    pub name: Lenient<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(rename = "totalFail", default)]
    pub total_fail: Option<i64>,
    /// Starboard 0.15's spelling.
    #[serde(rename = "failTotal", default)]
    pub fail_total: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct DetailReport {
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: Vec<ControlResult>,
}

#[derive(Debug, Deserialize)]
pub struct ControlResult {
    pub id: String,
    #[serde(default)]
    pub name: Lenient<String>,
    #[serde(default)]
    pub description: Lenient<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub checks: Vec<Check>,
}

/// The key exists, whatever its value.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d)?;
    Ok(true)
}

/// `null` is treated like an absent field (`"checks": null` occurs in alternate storage).
pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Labels and annotations whose values YAML typed (`report-historical: true`).
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Scalar>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.0.map(|v| (k, v)))
        .collect())
}

/// A cosmetic field: a value of the wrong type reads as absent and is flagged (`wrong`),
/// so the caller can count it instead of failing the whole report.
#[derive(Debug)]
pub struct Lenient<T> {
    pub value: Option<T>,
    pub wrong: bool,
}

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient {
            value: None,
            wrong: false,
        }
    }
}

impl<T> Lenient<T> {
    pub fn take(&mut self) -> Option<T> {
        self.value.take()
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Buffered as a value, then typed: only a syntax error (which is the input's,
        // not the field's) still fails.
        let raw = serde_json::Value::deserialize(d)?;
        if raw.is_null() {
            return Ok(Lenient::default());
        }
        Ok(match T::deserialize(raw) {
            Ok(v) => Lenient {
                value: Some(v),
                wrong: false,
            },
            Err(_) => Lenient {
                value: None,
                wrong: true,
            },
        })
    }
}

/// Timestamps that a YAML 1.1 tool may have re-typed; numbers and booleans become text.
#[derive(Debug)]
pub struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}
