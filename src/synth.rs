//! Synthetic clusters for benchmarks and tests: N VulnerabilityReports over U image
//! digests with F findings each, shaped like the real reports in `tests/fixtures`
//! (ReplicaSet owners, trivy-operator labels, 38% of entries without a fixed version,
//! 8% without a score, UNKNOWN severities, repeated IDs across packages).
//!
//! The output is a `kind: List` written incrementally, so generating a large cluster does
//! not hold it in memory. The same parameters and seed always give the same bytes.

use std::io::{self, Write};

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub reports: usize,
    pub digests: usize,
    pub findings: usize,
    pub namespaces: usize,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            reports: 5000,
            digests: 500,
            findings: 80,
            namespaces: 20,
            seed: 7,
        }
    }
}

const PACKAGES: &[&str] = &[
    "libssl3",
    "libcrypto3",
    "openssl",
    "zlib",
    "curl",
    "libcurl",
    "busybox",
    "ssl_client",
    "musl",
    "libxml2",
    "expat",
    "sqlite-libs",
    "ncurses-libs",
    "libgcrypt",
    "gnutls",
    "libtasn1",
    "krb5-libs",
    "libpng",
    "libjpeg-turbo",
    "freetype",
    "glibc",
    "libc6",
    "libsystemd0",
    "tar",
    "golang.org/x/net",
    "golang.org/x/crypto",
    "github.com/gin-gonic/gin",
    "log4j-core",
    "jackson-databind",
    "spring-web",
    "netty-codec-http",
    "requests",
    "urllib3",
    "pyyaml",
];

const TITLES: &[&str] = &[
    "openssl: X.400 address type confusion in X.509 GeneralName",
    "curl: HSTS ignored on multiple requests",
    "zlib: heap-based buffer over-read and overflow in inflate() in inflate.c via a large gzip header extra field",
    "busybox: use-after-free in awk applet leads to denial of service and possibly code execution when processing a crafted awk pattern",
    "golang: net/http: excessive memory growth in a HTTP/2 server accepting HTTP/2 requests",
    "libxml2: use-after-free in xmlXIncludeAddNode",
    "glibc: buffer overflow in ld.so leading to privilege escalation",
    "",
];

/// The image repository and digest of image `i`.
pub fn image(i: usize) -> (String, String, String) {
    let repo = format!("team-{}/service-{}", i % 17, i);
    let digest = format!("sha256:{:064x}", (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15);
    let tag = format!("1.{}.{}", i % 9, i % 4);
    (repo, digest, tag)
}

/// The findings of image `i`: deterministic per image, so every report of that digest
/// carries the same list, as the operator writes them.
fn vulnerabilities(spec: &Spec, i: usize) -> Vec<serde_json::Value> {
    let mut rng =
        fastrand::Rng::with_seed(spec.seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut out = Vec::with_capacity(spec.findings);
    for k in 0..spec.findings {
        // Every fourth entry repeats the previous ID on another package (libssl + libcrypto).
        let id_n = if k % 4 == 3 { k - 1 } else { k };
        let year = 2019 + (id_n % 7);
        let id = format!("CVE-{year}-{:05}", 1000 + (id_n * 37 + i % 5) % 90000);
        let pkg = PACKAGES[(k * 7 + i) % PACKAGES.len()];
        let installed = format!("{}.{}.{}-r{}", 1 + k % 3, k % 10, k % 7, k % 3);
        let sev_roll = rng.u32(0..100);
        let severity = match sev_roll {
            0..=8 => "CRITICAL",
            9..=29 => "HIGH",
            30..=58 => "MEDIUM",
            59..=96 => "LOW",
            _ => "UNKNOWN",
        };
        let fixed = if rng.u32(0..100) < 38 {
            String::new()
        } else {
            format!("{}.{}.{}-r{}", 1 + k % 3, k % 10, k % 7 + 1, k % 3)
        };
        let mut v = json!({
            "vulnerabilityID": id,
            "resource": pkg,
            "installedVersion": installed,
            "fixedVersion": fixed,
            "severity": severity,
            "title": TITLES[(k + i) % TITLES.len()],
            "primaryLink": format!("https://avd.aquasec.com/nvd/{}", id.to_ascii_lowercase()),
            "links": [],
            "target": "",
            "publishedDate": format!("{year}-0{}-1{}T15:15:00Z", 1 + k % 9, k % 10),
            "lastModifiedDate": format!("{}-0{}-2{}T10:00:00Z", year + 1, 1 + k % 9, k % 10),
        });
        if severity != "UNKNOWN" && rng.u32(0..100) >= 8 {
            v["score"] = json!(((rng.u32(10..100)) as f64) / 10.0);
        }
        out.push(v);
    }
    out
}

fn report(spec: &Spec, n: usize, vulns: &[serde_json::Value]) -> serde_json::Value {
    let img = n % spec.digests.max(1);
    let (repo, digest, tag) = image(img);
    let ns = format!("ns-{}", n % spec.namespaces.max(1));
    let workload = format!("app-{n}");
    // A pod-template-hash of the safe alphabet, as Kubernetes generates.
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let hash: String = (0..9)
        .map(|k| alphabet[(n * 31 + k * 7) % alphabet.len()] as char)
        .collect();
    let rs = format!("{workload}-{hash}");
    let mut summary = [0u64; 5];
    for v in vulns {
        let idx = match v["severity"].as_str() {
            Some("CRITICAL") => 0,
            Some("HIGH") => 1,
            Some("MEDIUM") => 2,
            Some("LOW") => 3,
            _ => 4,
        };
        summary[idx] += 1;
    }
    json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "VulnerabilityReport",
        "metadata": {
            "annotations": {"trivy-operator.aquasecurity.github.io/report-ttl": "24h0m0s"},
            "creationTimestamp": "2026-10-01T08:00:00Z",
            "generation": 1,
            "labels": {
                "app.kubernetes.io/managed-by": "trivy-operator",
                "resource-spec-hash": format!("{:x}", n * 7919),
                "trivy-operator.container.name": "app",
                "trivy-operator.resource.kind": "ReplicaSet",
                "trivy-operator.resource.name": rs,
                "trivy-operator.resource.namespace": ns,
            },
            "name": format!("replicaset-{rs}-app"),
            "namespace": ns,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "blockOwnerDeletion": false,
                "controller": true,
                "kind": "ReplicaSet",
                "name": rs,
                "uid": format!("{:08x}-0000-4000-8000-{:012x}", n, n),
            }],
            "resourceVersion": format!("{}", 1000 + n),
            "uid": format!("{:08x}-1111-4000-8000-{:012x}", n, n),
        },
        "report": {
            "artifact": {"digest": digest, "repository": repo, "tag": tag},
            "os": {"family": "alpine", "name": "3.18.4"},
            "registry": {"server": "registry.example.com"},
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.48.3"},
            "summary": {
                "criticalCount": summary[0], "highCount": summary[1], "mediumCount": summary[2],
                "lowCount": summary[3], "unknownCount": summary[4], "noneCount": 0,
            },
            "updateTimestamp": "2026-10-01T08:00:00Z",
            "vulnerabilities": vulns,
        }
    })
}

/// Every report of the cluster, one at a time (findings are generated once per image).
pub fn reports(spec: &Spec) -> impl Iterator<Item = serde_json::Value> + '_ {
    let mut cache: Option<(usize, Vec<serde_json::Value>)> = None;
    (0..spec.reports).map(move |n| {
        let img = n % spec.digests.max(1);
        if cache.as_ref().is_none_or(|(i, _)| *i != img) {
            cache = Some((img, vulnerabilities(spec, img)));
        }
        let vulns = cache
            .as_ref()
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default();
        report(spec, n, vulns)
    })
}

/// Writes the cluster as one `kind: List` JSON document. Returns the bytes written.
pub fn write_list<W: Write>(spec: &Spec, out: W) -> io::Result<u64> {
    let mut out = CountingWriter { inner: out, n: 0 };
    out.write_all(b"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"\"},\"items\":[")?;
    for (n, r) in reports(spec).enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut out, &r)?;
    }
    out.write_all(b"]}\n")?;
    Ok(out.n)
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let spec = Spec {
            reports: 6,
            digests: 3,
            findings: 5,
            namespaces: 2,
            seed: 1,
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_list(&spec, &mut a).expect("write");
        write_list(&spec, &mut b).expect("write");
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_slice(&a).expect("json");
        let items = v["items"].as_array().expect("items");
        assert_eq!(items.len(), 6);
        assert_eq!(
            items[0]["report"]["vulnerabilities"],
            items[3]["report"]["vulnerabilities"]
        );
        assert_ne!(
            items[0]["report"]["artifact"]["digest"],
            items[1]["report"]["artifact"]["digest"]
        );
    }
}
