//! Report objects built for tests, shaped like the operator writes them.

use serde_json::{Value, json};

/// One vulnerability entry.
#[derive(Clone, Debug)]
pub struct Vuln {
    pub id: &'static str,
    pub package: &'static str,
    pub installed: &'static str,
    pub fixed: &'static str,
    pub severity: &'static str,
    pub score: Option<f64>,
}

pub fn vuln(id: &'static str, package: &'static str, severity: &'static str) -> Vuln {
    Vuln {
        id,
        package,
        installed: "1.0.0",
        fixed: "",
        severity,
        score: Some(7.5),
    }
}

impl Vuln {
    pub fn fixed(mut self, v: &'static str) -> Vuln {
        self.fixed = v;
        self
    }
    pub fn installed(mut self, v: &'static str) -> Vuln {
        self.installed = v;
        self
    }
    pub fn severity(mut self, s: &'static str) -> Vuln {
        self.severity = s;
        self
    }
}

/// A VulnerabilityReport of ReplicaSet `<workload>-<hash>` in `ns`, container `app`.
pub fn vulnerability_report(
    ns: &str,
    workload: &str,
    repository: &str,
    digest: Option<&str>,
    vulns: &[Vuln],
) -> Value {
    let rs = format!("{workload}-7cc565547");
    let mut artifact = json!({"repository": repository, "tag": "1.0"});
    if let Some(d) = digest {
        artifact["digest"] = json!(d);
    }
    let list: Vec<Value> = vulns
        .iter()
        .map(|v| {
            let mut e = json!({
                "vulnerabilityID": v.id, "resource": v.package, "installedVersion": v.installed,
                "fixedVersion": v.fixed, "severity": v.severity, "title": format!("{} in {}", v.id, v.package),
                "primaryLink": format!("https://avd.aquasec.com/nvd/{}", v.id.to_lowercase()),
                "links": [], "target": "",
                "publishedDate": "2026-01-15T10:00:00Z", "lastModifiedDate": "2026-02-01T10:00:00Z",
            });
            if let Some(s) = v.score {
                e["score"] = json!(s);
            }
            e
        })
        .collect();
    json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "VulnerabilityReport",
        "metadata": container_report_metadata(ns, &rs, 1),
        "report": {
            "updateTimestamp": "2026-10-01T08:00:00Z",
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.48.3"},
            "os": {"family": "alpine", "name": "3.19.1"},
            "registry": {"server": "ghcr.io"},
            "artifact": artifact,
            "summary": {"criticalCount": 0, "highCount": 0, "mediumCount": 0, "lowCount": 0, "unknownCount": 0},
            "vulnerabilities": list,
        }
    })
}

/// A `kind: List` of the given objects, as `kubectl get -o json` prints it.
pub fn list(items: Vec<Value>) -> String {
    serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
        .expect("json")
}

pub fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// A ConfigAuditReport of ReplicaSet `<workload>-<hash>` in `ns` with failing checks
/// (id, severity, title), scanned at `at`.
pub fn config_audit(ns: &str, workload: &str, checks: &[(&str, &str, &str)], at: &str) -> Value {
    let rs = format!("{workload}-7cc565547");
    let checks: Vec<Value> = checks
        .iter()
        .map(|(id, sev, title)| {
            json!({"checkID": id, "severity": sev, "title": title, "success": false,
                   "category": "Kubernetes Security Check", "description": "d", "messages": ["m"]})
        })
        .collect();
    json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ConfigAuditReport",
        "metadata": {"name": format!("replicaset-{rs}"), "namespace": ns,
            "labels": {"trivy-operator.resource.kind": "ReplicaSet", "trivy-operator.resource.name": rs,
                       "trivy-operator.resource.namespace": ns},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": true,
                                 "uid": "7d3c1f2e-0000-4000-8000-000000000002"}]},
        "report": {"updateTimestamp": at, "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.48.3"},
                   "summary": {}, "checks": checks}
    })
}

/// A `kind: List` of `workloads` VulnerabilityReports in 5 namespaces running `images`
/// images: workload `i` is `app-i` in `ns-(i % 5)` running `org/img-(i % images)`, whose
/// vulnerabilities are `per_image(i % images)`.
pub fn spread(workloads: u32, images: u32, per_image: impl Fn(u32) -> Vec<Vuln>) -> String {
    list(
        (0..workloads)
            .map(|i| {
                vulnerability_report(
                    &format!("ns-{}", i % 5),
                    &format!("app-{i}"),
                    &format!("org/img-{}", i % images),
                    Some(&digest(i % images)),
                    &per_image(i % images),
                )
            })
            .collect(),
    )
}

/// An SbomReport of ReplicaSet `<workload>-<hash>` in `ns` (container `app`) whose
/// embedded CycloneDX BOM lists `packages` as (purl type, name, version); Maven names
/// are `group:artifact`, as Trivy writes them.
pub fn sbom_report(
    ns: &str,
    workload: &str,
    repository: &str,
    digest: &str,
    packages: &[(&str, &str, &str)],
) -> Value {
    let rs = format!("{workload}-7cc565547");
    let components: Vec<Value> = packages
        .iter()
        .map(|(ty, name, version)| {
            let (group, artifact) = name.split_once(':').unwrap_or(("", name));
            let purl = if group.is_empty() {
                format!("pkg:{ty}/{artifact}@{version}")
            } else {
                format!("pkg:{ty}/{group}/{artifact}@{version}")
            };
            let mut c = json!({"bom-ref": purl, "type": "library", "name": artifact,
                               "version": version, "purl": purl,
                               "properties": [{"name": "aquasecurity:trivy:PkgType",
                                               "value": if *ty == "maven" { "jar" } else { ty }}]});
            if !group.is_empty() {
                c["group"] = json!(group);
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "SbomReport",
        "metadata": container_report_metadata(ns, &rs, 3),
        "report": {
            "updateTimestamp": "2026-10-01T08:00:00Z",
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.48.3"},
            "registry": {"server": "ghcr.io"},
            "artifact": {"repository": repository, "tag": "1.0", "digest": digest},
            "summary": {"componentsCount": components.len(), "dependenciesCount": 0},
            "components": {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                           "metadata": {"timestamp": "2026-10-01T08:00:00+00:00"},
                           "components": components},
        }
    })
}

/// `trivy image -f json` (schema 2) of `registry/repository:tag` pinned by `digest`,
/// made at `created_at`, with one OS-less result of Java vulnerabilities.
pub fn trivy_cli(repository: &str, digest: &str, created_at: &str, vulns: &[Vuln]) -> String {
    let list: Vec<Value> = vulns
        .iter()
        .map(|v| {
            json!({
                "VulnerabilityID": v.id, "PkgName": v.package, "InstalledVersion": v.installed,
                "FixedVersion": v.fixed, "Severity": v.severity, "Status": if v.fixed.is_empty() { "affected" } else { "fixed" },
                "Title": format!("{} in {}", v.id, v.package),
                "PrimaryURL": format!("https://avd.aquasec.com/nvd/{}", v.id.to_lowercase()),
                "PublishedDate": "2026-01-15T10:00:00Z",
            })
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "SchemaVersion": 2,
        "CreatedAt": created_at,
        "ArtifactName": format!("ghcr.io/{repository}:1.0"),
        "ArtifactType": "container_image",
        "Metadata": {
            "ImageID": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "RepoTags": [format!("ghcr.io/{repository}:1.0")],
            "RepoDigests": [format!("ghcr.io/{repository}@{digest}")],
        },
        "Results": [{"Target": "Java", "Class": "lang-pkgs", "Type": "jar", "Vulnerabilities": list}],
    }))
    .expect("json")
}

/// Maven's name for log4j-core, as SbomReports and Trivy name it.
pub const LOG4J: &str = "org.apache.logging.log4j:log4j-core";

/// A small inventory: `shop/api` runs `ghcr.io/org/api` with log4j-core 2.14.1
/// (CVE-2021-44228, fixed in 2.15.0) and openssl (no vulnerability); `shop/web` runs
/// `ghcr.io/org/web` with 2.17.1.
pub fn shop_inventory() -> Vec<Value> {
    vec![
        vulnerability_report(
            "shop",
            "api",
            "org/api",
            Some(&digest(1)),
            &[vuln("CVE-2021-44228", LOG4J, "CRITICAL")
                .fixed("2.15.0")
                .installed("2.14.1")],
        ),
        sbom_report(
            "shop",
            "api",
            "org/api",
            &digest(1),
            &[("maven", LOG4J, "2.14.1"), ("deb", "openssl", "3.0.11-1")],
        ),
        sbom_report(
            "shop",
            "web",
            "org/web",
            &digest(2),
            &[("maven", LOG4J, "2.17.1")],
        ),
    ]
}

/// The metadata the operator gives a report of container `app` of ReplicaSet `rs`
/// (`uid` tells the owner references of report kinds apart).
fn container_report_metadata(ns: &str, rs: &str, uid: u32) -> Value {
    json!({
        "name": format!("replicaset-{rs}-app"),
        "namespace": ns,
        "labels": {
            "trivy-operator.container.name": "app",
            "trivy-operator.resource.kind": "ReplicaSet",
            "trivy-operator.resource.name": rs,
            "trivy-operator.resource.namespace": ns,
        },
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": true,
                             "uid": format!("7d3c1f2e-0000-4000-8000-{uid:012}")}],
    })
}
