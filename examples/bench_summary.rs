//! Benchmark of the monthly summary: a month with 200,000 findings across 2,000 images
//! (6,000 workloads in 50 namespaces), rendered to HTML and text, and the size of the
//! email that carries both.
//!
//! cargo run --release --example bench_summary                 # 2,000 images x 100 findings
//! cargo run --release --example bench_summary -- 500 40       # images, findings per image
//!
//! The store is built through the library's ingest (as `scan` writes it) with history in
//! October 2026: every image on 10-01, then on 10-15 a tenth of the images move to a new
//! digest that fixes 20 findings and brings 10 new ones, and severities change on a few.
//! Figures: the best of three timed runs of load + compute + render.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use trivy_digest::config::{Config, SmtpConfig, SmtpTls};
use trivy_digest::mail::{Mail, Mailer};
use trivy_digest::model::{
    Finding, Image, NamespaceMeta, Report, ReportId, ReportKind, Severity, WorkloadKey,
};
use trivy_digest::output::summary::report::{self, Scope};
use trivy_digest::output::summary::{Month, deliver, history::History, render};
use trivy_digest::store::{Session, Store};

const MAX_EMAIL: usize = 1024 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let images: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let per_image: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");

    let t = Instant::now();
    let findings = build_store(&path, images, per_image)?;
    let build = t.elapsed();

    let config = Config {
        store: path.clone().into(),
        cluster: "bench".into(),
        ..Config::default()
    };
    let month: Month = "2026-10".parse().map_err(anyhow::Error::msg)?;
    let now = at("2026-11-01T08:00:00Z");
    let store = Store::open(&path)?;

    let (since, until) =
        report::history_window(&deliver::options(&config, month, Scope::Cluster, now));
    let mut best = [Duration::MAX; 4];
    let mut html = String::new();
    let mut text = String::new();
    let mut summary = None;
    for _ in 0..3 {
        let t0 = Instant::now();
        let h = History::load(&store, since, until)?;
        let t1 = Instant::now();
        let s = report::compute(
            &store,
            &h,
            &deliver::options(&config, month, Scope::Cluster, now),
        )?;
        let t2 = Instant::now();
        html = render::html(&s)?;
        text = render::text(&s)?;
        let t3 = Instant::now();
        for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t3 - t0].into_iter().enumerate() {
            best[i] = best[i].min(d);
        }
        summary = Some(s);
    }
    let Some(s) = summary else {
        anyhow::bail!("no run");
    };
    // A team's view (10 of the 50 namespaces), on the history already loaded: what `run`
    // adds per team route.
    let h = History::load(&store, since, until)?;
    let mut team_best = Duration::MAX;
    let mut team_open = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let ts = report::compute(
            &store,
            &h,
            &deliver::options(&config, month, Scope::Team("team-0".into()), now),
        )?;
        render::html(&ts)?;
        render::text(&ts)?;
        team_best = team_best.min(t0.elapsed());
        team_open = ts.open.total();
    }
    let mailer = Mailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        tls: SmtpTls::None,
        from: "trivy-digest <td@example.com>".into(),
        ..Default::default()
    })?;
    let message = mailer.build(&Mail {
        to: vec!["lead@example.com".into()],
        subject: s.subject(),
        text: text.clone(),
        html: html.clone(),
        message_id: Some("summary-2026-10-bench@example.com".into()),
    })?;
    let email = message.formatted().len();

    println!(
        "images {images}, findings {findings} ({per_image} per image), store built in {:.1} s",
        build.as_secs_f64()
    );
    println!(
        "open at month end: {} ({} critical, {} high); new {}, fixed {}; top lists: {} images shown and {} more",
        s.open.total(),
        s.open.critical,
        s.open.high,
        s.new.total(),
        s.fixed.total(),
        s.top_images.items.len(),
        s.top_images.more
    );
    println!(
        "load history {:>6.0} ms | compute {:>5.0} ms | render html+text {:>6.2} ms | total {:>6.0} ms",
        ms(best[0]),
        ms(best[1]),
        ms(best[2]),
        ms(best[3])
    );
    println!(
        "team view (10 namespaces, {} open): compute + render {:.0} ms",
        team_open,
        ms(team_best)
    );
    println!(
        "html {:.1} KB, text {:.1} KB, email (multipart, encoded) {:.1} KB",
        html.len() as f64 / 1024.0,
        text.len() as f64 / 1024.0,
        email as f64 / 1024.0
    );
    let ok_time = best[3] < Duration::from_secs(1);
    let ok_size = email < MAX_EMAIL;
    println!(
        "goal: render under 1 s: {}; email under 1 MB: {}",
        if ok_time { "yes" } else { "NO" },
        if ok_size { "yes" } else { "NO" }
    );
    if !(ok_time && ok_size) {
        std::process::exit(1);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

const SEVERITIES: [Severity; 10] = [
    Severity::Critical,
    Severity::High,
    Severity::High,
    Severity::Medium,
    Severity::Medium,
    Severity::Medium,
    Severity::Low,
    Severity::Low,
    Severity::Low,
    Severity::Unknown,
];

/// Findings of image `i` in version `v` (0: first digest, 1: the upgrade).
fn findings(i: usize, per_image: usize, v: usize) -> Vec<Finding> {
    let drop = if v == 1 { per_image / 5 } else { 0 };
    let add = if v == 1 { per_image / 10 } else { 0 };
    (drop..per_image + add)
        .map(|k| {
            let mut sev = SEVERITIES[(i * 7 + k) % SEVERITIES.len()];
            if v == 1 && k % 25 == 1 {
                sev = Severity::Critical; // re-rated in the newer scan
            }
            let mut f = Finding::new(format!("CVE-2026-{:05}", (i * 31 + k) % 90_000), sev);
            f.package = format!("pkg-{}", k % 400);
            f.installed_version = format!("1.{}.{}", k % 7, i % 5);
            if k % 3 == 0 {
                f.fixed_version = format!("1.{}.{}", k % 7 + 1, 0);
            }
            f.title = format!("{} in pkg-{}", f.id, k % 400);
            f.primary_link = format!("https://avd.aquasec.com/nvd/{}", f.id.to_lowercase());
            f
        })
        .collect()
}

fn report(i: usize, w: usize, per_image: usize, v: usize, when: DateTime<Utc>) -> Report {
    let ns = format!("ns-{}", i % 50);
    let name = format!("svc-{i}-{w}");
    Report {
        id: ReportId {
            kind: ReportKind::VulnerabilityReport,
            namespace: ns.clone(),
            name: format!("replicaset-{name}-7cc565547-app"),
        },
        workload: WorkloadKey {
            namespace: ns,
            kind: "Deployment".into(),
            name,
        },
        owner: None,
        container: "app".into(),
        labels: Default::default(),
        image: Some(Image::new(
            "ghcr.io",
            &format!("team-{}/service-{i}", i % 17),
            Some("1.0"),
            Some(&format!("sha256:{:064x}", (i as u128) * 2 + v as u128 + 1)),
        )),
        scanned_at: Some(when),
        scanner_version: "0.48.3".into(),
        findings: findings(i, per_image, v),
        passed_checks: 0,
        components: None,
        packages: Vec::new(),
        summary_mismatch: false,
        mapped_severities: 0,
    }
}

/// Builds October: returns the number of distinct findings stored.
fn build_store(path: &std::path::Path, images: usize, per_image: usize) -> Result<u64> {
    let mut store = Store::open(path)?;
    store.claim_cluster("bench")?;
    for (step, when) in ["2026-10-01T10:00:00Z", "2026-10-15T10:00:00Z"]
        .into_iter()
        .enumerate()
    {
        let when = at(when);
        let mut session = Session::begin(&mut store, "bench", when.timestamp())?;
        // Five teams of ten namespaces each.
        for n in 0..50 {
            session.namespace(&NamespaceMeta {
                uid: None,
                name: format!("ns-{n}"),
                labels: Default::default(),
                annotations: [("trivy-digest.io/team".to_owned(), format!("team-{}", n % 5))]
                    .into_iter()
                    .collect(),
            })?;
        }
        for i in 0..images {
            let v = usize::from(step == 1 && i % 10 == 0);
            for w in 0..3 {
                session.report(&report(i, w, per_image, v, when))?;
            }
        }
        session.finish(&trivy_digest::scope::Scope::everything(), 3600)?;
        session.commit()?;
    }
    let n =
        rusqlite::Connection::open(path)?
            .query_row("SELECT COUNT(*) FROM findings", [], |r| r.get::<_, i64>(0))?;
    Ok(n.max(0) as u64)
}
