//! Benchmark of the inventory: SbomReports of 5,000 image digests with 800 components
//! each, ingested as `scan` reads them (JSON → parse → store), then `query --package`.
//!
//! cargo run --release --example bench_inventory               # 5,000 digests x 800 components
//! cargo run --release --example bench_inventory -- 500 800    # digests, components per SBOM
//!
//! Components are shaped as Trivy writes them (purl, bom-ref, PkgID/PkgType/layer
//! properties, licenses). Packages overlap as in real fleets: every image is built on one
//! of 10 base images (500 OS packages each, ~5% of them at another patch version), and has
//! 300 application packages drawn from a pool of 20,000 name@version pairs.
//! Figures: store growth against the SBOMs' JSON size, ingest time, and the best of five
//! runs of each query.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use trivy_digest::source::{Origin, RawObject};
use trivy_digest::store::lookup::{self, Filter};
use trivy_digest::store::{Session, Store};
use trivy_digest::trivy::{Parsed, parse_object};
use trivy_digest::version::VersionReq;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let digests: u64 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let per_sbom: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(800);
    if per_sbom < 500 {
        bail!("components per SBOM must be at least 500 (the base image's OS packages)");
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let mut store = Store::open(&path)?;
    let empty = file_size(&path);

    let mut json_bytes = 0u64;
    let mut parse_time = Duration::ZERO;
    let t = Instant::now();
    let mut session = Session::begin(&mut store, "bench", 1_790_000_000)?;
    for d in 0..digests {
        let doc = serde_json::to_vec(&sbom_report(d, per_sbom))?;
        json_bytes += doc.len() as u64;
        let obj = RawObject {
            origin: Origin::file(format!("sbom-{d}.json")),
            json: doc,
            kind_hint: None,
            name_hint: None,
        };
        let tp = Instant::now();
        let parsed = parse_object(&obj);
        parse_time += tp.elapsed();
        match parsed {
            Ok(Parsed::Report(r)) => session.report(&r)?,
            Ok(other) => bail!("sbom-{d}: not read as a report: {other:?}"),
            Err(e) => bail!("{e}"),
        }
    }
    session.commit()?;
    let ingest = t.elapsed();
    let store = Store::open(&path)?;
    let raw = rusqlite::Connection::open(&path)?;
    raw.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let grown = file_size(&path).saturating_sub(empty);
    let count = |sql: &str| -> Result<i64> { Ok(raw.query_row(sql, [], |r| r.get(0))?) };

    println!("inventory benchmark: {digests} digests x {per_sbom} components");
    println!(
        "  stored: {} package contents, {} image-package links",
        count("SELECT COUNT(*) FROM packages")?,
        count("SELECT COUNT(*) FROM image_packages")?
    );
    println!(
        "  SBOM JSON {:.1} MiB, store grew {:.1} MiB: {:.1}x smaller (goal: over 10x)",
        mib(json_bytes),
        mib(grown),
        json_bytes as f64 / grown.max(1) as f64
    );
    println!(
        "  ingest {:.1} s ({:.1} s of it parsing), {:.0} SBOMs/s",
        ingest.as_secs_f64(),
        parse_time.as_secs_f64(),
        digests as f64 / ingest.as_secs_f64()
    );

    let below = VersionReq::parse("<2.17.1").map_err(anyhow::Error::msg)?;
    let cases: [(&str, &str, Option<&VersionReq>); 4] = [
        ("an application package in ~15 images", "app-pkg-77", None),
        (
            "log4j-core below 2.17.1 (in 1 of 50 images)",
            "log4j-core",
            Some(&below),
        ),
        ("an OS package of one base image", "os-pkg-3-41", None),
        ("a name no image has", "left-pad", None),
    ];
    for (what, name, version) in cases {
        let mut best = Duration::MAX;
        let mut hits = 0;
        let mut images = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let r = lookup::by_package(
                &store,
                name,
                version,
                Filter {
                    include_past: false,
                },
            )?;
            best = best.min(t.elapsed());
            hits = r.len();
            images = r.iter().map(|p| p.images.len()).sum::<usize>();
        }
        println!(
            "  query --package {name}{}: {:.1} ms ({what}: {hits} versions, {images} images) (goal: under 100 ms)",
            version
                .map(|v| format!(" --version '{v}'"))
                .unwrap_or_default(),
            best.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn file_size(p: &std::path::Path) -> u64 {
    let wal = p.with_extension("db-wal");
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// A cheap deterministic mix, so runs compare.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn component(ty: &str, pkg_type: &str, name: &str, version: &str, layer: u64) -> Value {
    let purl = format!("pkg:{ty}/{name}@{version}");
    json!({
        "bom-ref": purl,
        "type": "library",
        "name": name,
        "version": version,
        "purl": purl,
        "licenses": [{"license": {"name": "Apache-2.0"}}],
        "properties": [
            {"name": "aquasecurity:trivy:LayerDiffID", "value": format!("sha256:{:064x}", layer)},
            {"name": "aquasecurity:trivy:LayerDigest", "value": format!("sha256:{:064x}", layer + 1)},
            {"name": "aquasecurity:trivy:PkgID", "value": format!("{name}@{version}")},
            {"name": "aquasecurity:trivy:PkgType", "value": pkg_type},
        ],
    })
}

/// The SbomReport of digest `d`: workload `app-d` in one of 50 namespaces.
fn sbom_report(d: u64, per_sbom: u64) -> Value {
    let base = d % 10;
    let mut components = Vec::with_capacity(per_sbom as usize);
    for i in 0..500 {
        // ~5% of the OS packages at a newer patch, as base images are rebuilt.
        let patch = u64::from(mix(d * 1000 + i).is_multiple_of(20));
        components.push(component(
            "deb/debian",
            "debian",
            &format!("os-pkg-{base}-{i}"),
            &format!("1.{i}.{patch}"),
            base,
        ));
    }
    for j in 0..per_sbom - 500 {
        let n = mix(d * 7919 + j) % 20_000;
        components.push(component(
            "maven",
            "jar",
            &format!("app-pkg-{}", n / 4),
            &format!("2.{}.{}", n % 4, n % 3),
            100 + d,
        ));
    }
    // One image in 50 ships an old log4j-core.
    if d.is_multiple_of(50) {
        components.push(component(
            "maven/org.apache.logging.log4j",
            "jar",
            "log4j-core",
            "2.14.1",
            100 + d,
        ));
    }
    let ns = format!("ns-{}", d % 50);
    let rs = format!("app-{d}-7cc565547");
    json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "SbomReport",
        "metadata": {
            "name": format!("replicaset-{rs}-app"), "namespace": ns,
            "labels": {"trivy-operator.container.name": "app", "trivy-operator.resource.kind": "ReplicaSet",
                       "trivy-operator.resource.name": rs, "trivy-operator.resource.namespace": ns},
        },
        "report": {
            "updateTimestamp": "2026-11-01T08:00:00Z",
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.58.1"},
            "registry": {"server": "ghcr.io"},
            "artifact": {"repository": format!("org/app-{}", d % 1000), "tag": "1.0",
                         "digest": format!("sha256:{:064x}", d + 1)},
            "summary": {"componentsCount": components.len(), "dependenciesCount": 0},
            "components": {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                           "metadata": {"timestamp": "2026-11-01T08:00:00+00:00",
                                        "tools": {"components": [{"type": "application", "group": "aquasecurity", "name": "trivy", "version": "0.58.1"}]}},
                           "components": components},
        }
    })
}
