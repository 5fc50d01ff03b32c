//! Benchmark of `scan` over synthetic clusters: reports/s, MB/s, peak RSS, and the time
//! against bare serde_json parsing of the same bytes.
//!
//! cargo run --release --example bench_scan                  # the matrix in BENCHMARKS.md
//! cargo run --release --example bench_scan -- 5000 500 80   # one case: reports digests findings
//!
//! Each scan and each baseline runs in a fresh child process (this binary re-executed):
//! the allocator starts clean every time, and the child reports its own peak RSS (VmHWM,
//! which starts afresh at exec; `ru_maxrss` would include the parent's pages inherited
//! through fork). Every figure is the best of three runs.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use trivy_digest::command::scan::{ScanOptions, scan};
use trivy_digest::config::Config;
use trivy_digest::source::files::Input;
use trivy_digest::synth::{Spec, write_list};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-scan") {
        return child_scan(Path::new(&args[1]), Path::new(&args[2]));
    }
    if args.first().map(String::as_str) == Some("--child-baseline") {
        return child_baseline(&args[1], Path::new(&args[2]));
    }
    let cases: Vec<Spec> = if args.len() == 3 {
        vec![Spec {
            reports: args[0].parse()?,
            digests: args[1].parse()?,
            findings: args[2].parse()?,
            ..Spec::default()
        }]
    } else {
        [(1000, 100), (5000, 500), (10000, 500), (20000, 500)]
            .into_iter()
            .map(|(reports, digests)| Spec {
                reports,
                digests,
                ..Spec::default()
            })
            .collect()
    };
    let dir = tempfile::tempdir()?;
    println!(
        "{:>7} {:>7} {:>5} {:>8} | {:>9} {:>9} {:>9} | {:>8} {:>9} {:>8} {:>8} | {:>8} {:>8} | {:>6} {:>6}",
        "reports",
        "digests",
        "F",
        "MB",
        "json:Value",
        "json:read",
        "json:skip",
        "scan s",
        "reports/s",
        "MB/s",
        "RSS MB",
        "rescan s",
        "RSS MB",
        "xValue",
        "xRead"
    );
    for spec in cases {
        let input = dir
            .path()
            .join(format!("cluster-{}-{}.json", spec.reports, spec.digests));
        let bytes = {
            let mut w = BufWriter::new(std::fs::File::create(&input)?);
            let n = write_list(&spec, &mut w)?;
            w.flush()?;
            n
        };
        let mb = bytes as f64 / 1e6;
        let value = best_of(3, || baseline("value", &input))?;
        let read = best_of(3, || baseline("read", &input))?;
        let skip = best_of(3, || baseline("skip", &input))?;
        let mut cold: Option<Measured> = None;
        let mut warm: Option<Measured> = None;
        for round in 0..3 {
            let store = dir.path().join(format!(
                "store-{}-{}-{round}.db",
                spec.reports, spec.digests
            ));
            let c = measure(&input, &store)?;
            let w = measure(&input, &store)?;
            if cold.as_ref().is_none_or(|b| c.wall < b.wall) {
                cold = Some(c);
            }
            if warm.as_ref().is_none_or(|b| w.wall < b.wall) {
                warm = Some(w);
            }
        }
        let cold = cold.ok_or_else(|| anyhow::anyhow!("no run"))?;
        let warm = warm.ok_or_else(|| anyhow::anyhow!("no run"))?;
        println!(
            "{:>7} {:>7} {:>5} {:>8.1} | {:>9.3} {:>9.3} {:>9.3} | {:>8.3} {:>9.0} {:>8.1} {:>8.1} | {:>8.3} {:>8.1} | {:>6.2} {:>6.2}",
            spec.reports,
            spec.digests,
            spec.findings,
            mb,
            value.as_secs_f64(),
            read.as_secs_f64(),
            skip.as_secs_f64(),
            cold.wall.as_secs_f64(),
            spec.reports as f64 / cold.wall.as_secs_f64(),
            mb / cold.wall.as_secs_f64(),
            cold.max_rss_kb as f64 / 1024.0,
            warm.wall.as_secs_f64(),
            warm.max_rss_kb as f64 / 1024.0,
            cold.wall.as_secs_f64() / value.as_secs_f64(),
            cold.wall.as_secs_f64() / read.as_secs_f64(),
        );
        std::fs::remove_file(&input)?;
    }
    println!(
        "json:Value = serde_json::from_slice::<Value> of the file in memory; json:read = from_reader::<Value>;"
    );
    println!(
        "json:skip = from_slice::<IgnoredAny> (syntax only). scan = first sweep into an empty store; rescan = same input again."
    );
    Ok(())
}

fn best_of(n: usize, f: impl Fn() -> anyhow::Result<Duration>) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        best = best.min(f()?);
    }
    Ok(best)
}

/// Bare serde_json over the same bytes, timed inside a fresh child.
fn baseline(kind: &str, input: &Path) -> anyhow::Result<Duration> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--child-baseline")
        .arg(kind)
        .arg(input)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok(Duration::from_secs_f64(secs))
}

/// `value`: from_slice into a Value (the file read into memory first, not timed);
/// `read`: from_reader into a Value; `skip`: from_slice into IgnoredAny (syntax only).
fn child_baseline(kind: &str, path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    let t = Instant::now();
    match kind {
        "value" => drop(serde_json::from_slice::<serde_json::Value>(&bytes)?),
        "read" => drop(serde_json::from_reader::<_, serde_json::Value>(
            BufReader::new(std::fs::File::open(path)?),
        )?),
        _ => {
            let _: serde::de::IgnoredAny = serde_json::from_slice(&bytes)?;
        }
    }
    println!("{}", t.elapsed().as_secs_f64());
    Ok(())
}

struct Measured {
    wall: Duration,
    max_rss_kb: i64,
}

fn measure(input: &Path, store: &Path) -> anyhow::Result<Measured> {
    let exe: PathBuf = std::env::current_exe()?;
    let t = Instant::now();
    let out = Command::new(exe)
        .arg("--child-scan")
        .arg(input)
        .arg(store)
        .output()?;
    let wall = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "child scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let max_rss_kb = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("child did not report VmHWM: {text}"))?;
    Ok(Measured { wall, max_rss_kb })
}

fn child_scan(input: &Path, store: &Path) -> anyhow::Result<()> {
    let config = Config {
        store: store.to_owned().into(),
        ..Config::default()
    };
    // A generated cluster export, read as a whole (as before sweeps had scopes).
    let opts = ScanOptions {
        complete: true,
        ..ScanOptions::new(vec![Input::Path(input.to_owned())], chrono::Utc::now())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = rt.block_on(scan(&config, opts))?;
    anyhow::ensure!(summary.reports.stored > 0, "nothing stored");
    let status = std::fs::read_to_string("/proc/self/status")?;
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        println!("{line}");
    }
    Ok(())
}
