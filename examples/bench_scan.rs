//! Benchmark of `scan` over synthetic clusters: reports/s, MB/s, peak RSS, and the time
//! against bare serde_json parsing of the same bytes.
//!
//! cargo run --release --example bench_scan                  # the matrix in BENCHMARKS.md
//! cargo run --release --example bench_scan -- 5000 500 80   # one case: reports digests findings
//!
//! Each scan runs in a fresh child process (this binary re-executed) that reports its own
//! peak RSS (VmHWM, which starts afresh at exec; `ru_maxrss` would include the parent's
//! pages inherited through fork), so the figure is the scan's alone.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use trivy_digest::config::Config;
use trivy_digest::scan::{ScanOptions, scan};
use trivy_digest::source::files::Input;
use trivy_digest::synth::{Spec, write_list};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-scan") {
        return child_scan(Path::new(&args[1]), Path::new(&args[2]));
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
        let (value, read, skip) = baselines(&input)?;
        let store = dir
            .path()
            .join(format!("store-{}-{}.db", spec.reports, spec.digests));
        let cold = measure(&input, &store)?;
        let warm = measure(&input, &store)?;
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

/// Bare serde_json over the same bytes: into a Value from memory, into a Value from a
/// reader, and a syntax-only pass.
fn baselines(path: &Path) -> anyhow::Result<(Duration, Duration, Duration)> {
    let bytes = std::fs::read(path)?;
    let t = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let value = t.elapsed();
    drop(v);
    let t = Instant::now();
    let v: serde_json::Value = serde_json::from_reader(BufReader::new(std::fs::File::open(path)?))?;
    let read = t.elapsed();
    drop(v);
    let t = Instant::now();
    let _: serde::de::IgnoredAny = serde_json::from_slice(&bytes)?;
    let skip = t.elapsed();
    Ok((value, read, skip))
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
        store: store.to_owned(),
        ..Config::default()
    };
    let opts = ScanOptions {
        inputs: vec![Input::Path(input.to_owned())],
        dry_run: None,
        resync: false,
        now: chrono::Utc::now(),
        progress: false,
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
