//! Writes a synthetic cluster (a `kind: List` of VulnerabilityReports) to stdout or a file.
//!
//! cargo run --release --example synth -- --reports 5000 --digests 500 --findings 80 > cluster.json

use std::io::{BufWriter, Write};

use trivy_digest::synth::{Spec, write_list};

fn main() -> std::io::Result<()> {
    let mut spec = Spec::default();
    let mut out: Option<String> = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let num = || value.parse::<usize>().unwrap_or_else(|_| usage(&args[i]));
        match args[i].as_str() {
            "--reports" => spec.reports = num(),
            "--digests" => spec.digests = num(),
            "--findings" => spec.findings = num(),
            "--namespaces" => spec.namespaces = num(),
            "--seed" => spec.seed = num() as u64,
            "--out" => out = Some(value.clone()),
            other => usage(other),
        }
        i += 2;
    }
    let n = match out {
        Some(path) => {
            let f = std::fs::File::create(&path)?;
            let mut w = BufWriter::new(f);
            let n = write_list(&spec, &mut w)?;
            w.flush()?;
            n
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            let n = write_list(&spec, &mut w)?;
            w.flush()?;
            n
        }
    };
    eprintln!(
        "{} reports, {} digests, {} findings each: {} bytes",
        spec.reports, spec.digests, spec.findings, n
    );
    Ok(())
}

fn usage(arg: &str) -> ! {
    eprintln!(
        "unexpected argument {arg:?}\nusage: synth [--reports N] [--digests U] [--findings F] [--namespaces K] [--seed S] [--out FILE]"
    );
    std::process::exit(2)
}
