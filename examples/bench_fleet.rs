//! Fleet benchmark: 20 simulated clusters × 1,000 reports over 200 shared image digests,
//! ingested into one PostgreSQL store (fleet mode) and, side by side, into 20 SQLite
//! files (one store per cluster). Prints ingest time, each agent's peak RSS, and the
//! DefectDojo pushes the stores plan: after every cluster's first sweep, and in steady
//! state (the same sweeps again).
//!
//! TRIVY_DIGEST_BENCH_PG=postgres://USER@127.0.0.1:PORT/DB?sslmode=disable \
//! TRIVY_DIGEST_STORE_PASSWORD=... cargo run --release --example bench_fleet [clusters reports digests]
//!
//! The database should be empty (the benchmark refuses one that holds workloads). Each
//! agent is this binary re-executed (`--child`), so its peak RSS (VmHWM) is its own. The
//! 20 agents of a round start at once, as clusters sweep independently. Pushes are what
//! each store's plan queues in its outbox: DefectDojo is an unreachable address here, and
//! its acceptance is then recorded as a 201 would (acked and synced hashes), so that the
//! second round shows what a steady fleet sends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trivy_digest::command::scan::{ScanOptions, scan};
use trivy_digest::config::Config;
use trivy_digest::secret::Secret;
use trivy_digest::source::files::Input;
use trivy_digest::store::{Db, StoreLocation};
use trivy_digest::synth::{Spec, write_list};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1], Path::new(&args[2]), &args[3]);
    }
    let n: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (clusters, reports, digests) = match n.as_slice() {
        [c, r, d] => (*c, *r, *d),
        _ => (20, 1000, 200),
    };
    let pg = std::env::var("TRIVY_DIGEST_BENCH_PG").map_err(|_| {
        anyhow::anyhow!("set TRIVY_DIGEST_BENCH_PG to an empty PostgreSQL database's URL")
    })?;
    let mut pg_loc = StoreLocation::parse(&pg).map_err(anyhow::Error::msg)?;
    if let (StoreLocation::Postgres(t), Ok(p)) =
        (&mut pg_loc, std::env::var("TRIVY_DIGEST_STORE_PASSWORD"))
    {
        t.password = Some(Secret::new(p));
    }
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("cluster.json");
    {
        let spec = Spec {
            reports,
            digests,
            ..Spec::default()
        };
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        write_list(&spec, &mut w)?;
    }
    println!(
        "{clusters} clusters x {reports} reports, {digests} digests shared by all ({:.1} MB per export)",
        std::fs::metadata(&input)?.len() as f64 / 1e6
    );
    let sqlite: Vec<StoreLocation> = (0..clusters)
        .map(|i| StoreLocation::Sqlite(dir.path().join(format!("cluster-{i}.db"))))
        .collect();
    for (name, stores) in [
        (
            "PostgreSQL, one fleet store",
            vec![pg_loc.clone(); clusters],
        ),
        ("SQLite, one file per cluster", sqlite),
    ] {
        println!("\n{name}");
        for round in ["first", "steady"] {
            let t = Instant::now();
            let children: Vec<Child> = stores
                .iter()
                .enumerate()
                .map(|(i, s)| spawn(s, &input, &format!("c{i:02}")))
                .collect::<anyhow::Result<_>>()?;
            let mut rss = Vec::new();
            let mut took = Vec::new();
            for c in children {
                let out = c.wait_with_output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "agent failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                took.push(Duration::from_secs_f64(
                    text.lines()
                        .find_map(|l| l.strip_prefix("ELAPSED:"))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .ok_or_else(|| anyhow::anyhow!("no ELAPSED from the agent: {text}"))?,
                ));
                rss.push(
                    text.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                        .ok_or_else(|| anyhow::anyhow!("no VmHWM from the agent: {text}"))?
                        / 1024.0,
                );
            }
            let wall = t.elapsed();
            let mut unique: Vec<&StoreLocation> = stores.iter().collect();
            unique.dedup();
            let mut pushes = 0;
            for s in &unique {
                pushes += acknowledge(s)?;
            }
            let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
            let secs: Vec<f64> = took.iter().map(Duration::as_secs_f64).collect();
            println!(
                "  {round:<6} all agents done in {:.1} s (an agent's sweep, waits for the store included: max {:.1} s, mean {:.1} s); peak RSS per agent max {:.1} MB, mean {:.1} MB; DefectDojo pushes {pushes}",
                wall.as_secs_f64(),
                max(&secs),
                secs.iter().sum::<f64>() / secs.len() as f64,
                max(&rss),
                rss.iter().sum::<f64>() / rss.len() as f64,
            );
        }
    }
    Ok(())
}

fn spawn(store: &StoreLocation, input: &Path, cluster: &str) -> anyhow::Result<Child> {
    let exe: PathBuf = std::env::current_exe()?;
    let store = match store {
        StoreLocation::Sqlite(p) => p.display().to_string(),
        StoreLocation::Postgres(_) => std::env::var("TRIVY_DIGEST_BENCH_PG")?,
    };
    Ok(Command::new(exe)
        .arg("--child")
        .arg(store)
        .arg(input)
        .arg(cluster)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// The pushes the last round queued (outbox rows), then recorded as DefectDojo's 201
/// would: acknowledged, synced, out of the outbox.
fn acknowledge(store: &StoreLocation) -> anyhow::Result<u64> {
    let db = match store {
        StoreLocation::Sqlite(p) => Db::Sqlite(rusqlite::Connection::open(p)?),
        StoreLocation::Postgres(t) => Db::connect_postgres(t)?,
    };
    let n: i64 = db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
    db.execute_batch(
        "UPDATE dojo_tests SET
             acked_hash = (SELECT content_hash FROM outbox o WHERE o.test_id = dojo_tests.id),
             synced_hash = (SELECT full_hash FROM outbox o WHERE o.test_id = dojo_tests.id)
         WHERE id IN (SELECT test_id FROM outbox);
         DELETE FROM outbox;",
    )?;
    Ok(n.max(0) as u64)
}

/// One cluster's agent: a complete sweep of `input` into `store`, exporting to a
/// DefectDojo nobody answers (the plan is what counts).
fn child(store: &str, input: &Path, cluster: &str) -> anyhow::Result<()> {
    let mut config = Config::from_yaml(
        "defectdojo:\n  url: http://127.0.0.1:9/\n  timeout: 1s\n  retry:\n    max_attempts: 1\n",
    )
    .map_err(anyhow::Error::msg)?;
    config.cluster = cluster.to_owned();
    config.set_store(store)?;
    if let Ok(p) = std::env::var("TRIVY_DIGEST_STORE_PASSWORD")
        && let StoreLocation::Postgres(t) = &mut config.store
    {
        t.password = Some(Secret::new(p));
    }
    if let Some(d) = &mut config.defectdojo {
        d.token = Some(Secret::new("bench"));
    }
    let opts = ScanOptions {
        complete: true,
        ..ScanOptions::new(vec![Input::Path(input.to_owned())], chrono::Utc::now())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t = Instant::now();
    let summary = rt.block_on(scan(&config, opts))?;
    println!("ELAPSED: {}", t.elapsed().as_secs_f64());
    anyhow::ensure!(summary.reports.stored > 0, "nothing stored");
    let status = std::fs::read_to_string("/proc/self/status")?;
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        println!("{line}");
    }
    Ok(())
}
