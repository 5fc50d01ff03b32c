//! `scan`: one sweep over exported reports. Read every object, normalize, store with
//! deduplication and history, export to DefectDojo when configured, and summarize.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::exit;
use crate::config::Config;
use crate::ingest::{Duplicate, Ignored, ReportCounts, Skipped, Tally};
use crate::model::{ReportKind, SeverityCounts};
use crate::output::alert::AlertSummary;
use crate::output::dojo::output::DojoRun;
use crate::output::dojo::{self, PlannedTest};
use crate::output::factory::{self, Kind, Mode};
use crate::output::{Report, runner};
use crate::scope::{Coverage, NamespaceFilter, Scope};
use crate::source::cluster;
use crate::source::files::{self, Input};
use crate::source::{InputError, RawObject};
use crate::store::inventory::CiChanges;
use crate::store::lease::{self, Fence};
use crate::store::{FinishStats, Session, Store, query};

#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub inputs: Vec<Input>,
    /// Write what would be sent here; send nothing and change nothing in the store.
    pub dry_run: Option<PathBuf>,
    /// Push every test again, whatever DefectDojo acknowledged before.
    pub resync: bool,
    pub now: DateTime<Utc>,
    pub progress: bool,
    /// The file and stdin input is a whole-cluster export: reports inside `file_scope`
    /// that it lacks start their grace period. Off: files end nothing they do not hold.
    pub complete: bool,
    /// With `complete`: the kinds and namespaces the export holds in full.
    pub file_scope: FileScope,
    /// A sweep that reads no report is normal (an empty cluster): allow it to end reports.
    pub allow_empty: bool,
}

impl ScanOptions {
    /// A plain sweep of `inputs` at `now`: no dry run, no resync, files end nothing they
    /// do not hold, an empty read fails.
    pub fn new(inputs: Vec<Input>, now: DateTime<Utc>) -> ScanOptions {
        ScanOptions {
            inputs,
            dry_run: None,
            resync: false,
            now,
            progress: false,
            complete: false,
            file_scope: FileScope::default(),
            allow_empty: false,
        }
    }
}

/// What a `--complete` file export covers: every kind and namespace unless narrowed.
#[derive(Debug, Clone, Default)]
pub struct FileScope {
    pub kinds: Vec<ReportKind>,
    pub namespaces: Vec<String>,
}

impl FileScope {
    fn coverage(&self) -> Coverage {
        let kinds = if self.kinds.is_empty() {
            &ReportKind::ALL[..]
        } else {
            &self.kinds[..]
        };
        Coverage {
            namespaces: NamespaceFilter {
                include: self.namespaces.clone(),
                exclude: Vec::new(),
            },
            ..Coverage::all(kinds.iter().copied())
        }
    }
}

/// Everything `scan` reports; `--format json` prints it as is. Field names are stable.
#[derive(Debug, Default, Serialize)]
pub struct ScanSummary {
    pub cluster: String,
    pub store: String,
    pub inputs: Vec<String>,
    pub files: u64,
    pub reports: ReportCounts,
    /// Objects that could not be read, with where and why.
    pub skipped: Vec<Skipped>,
    /// Objects that are not Trivy Operator reports.
    pub ignored: Vec<Ignored>,
    pub images: ImageCounts,
    pub workloads: u64,
    pub findings: FindingCounts,
    pub history: FinishStats,
    /// With `--from cluster`: wanted report kinds whose CRD is not installed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds_absent: Vec<String>,
    /// False when part of the input was unreadable, or no report was read: then nothing
    /// was marked gone.
    pub complete: bool,
    /// What the sweep covered: only reports inside `scope.covered` could be marked gone.
    /// Empty: only the reports read (files and stdin without `--complete`).
    pub scope: Scope,
    /// No report object was read at all.
    pub empty: bool,
    /// Sources that read no report (the file inputs together, `cluster`): with any, and
    /// without `--allow-empty`, nothing is marked gone and the exit code is 5.
    pub empty_inputs: Vec<String>,
    /// The same report read twice: the newer scan was kept.
    pub duplicates: Vec<Duplicate>,
    /// CI results (Trivy CLI JSON, CycloneDX SBOMs) read in this sweep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiChanges>,
    pub defectdojo: Option<DojoSummary>,
    /// New-finding alerts queued and sent (absent when no alert destination is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertSummary>,
    /// In a fleet store, the outputs ran elsewhere: the holder of the fleet's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_run_by: Option<String>,
    pub exit_code: i32,
}

#[derive(Debug, Default, Serialize)]
pub struct ImageCounts {
    pub unique: u64,
    pub pinned: u64,
    pub unpinned: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct FindingCounts {
    /// Summed over every report, as the operator wrote them (recounted from the lists).
    pub before_dedup: SeverityCounts,
    /// Distinct open findings of the images and resources seen in this sweep.
    pub after_dedup: SeverityCounts,
}

#[derive(Debug, Default, Serialize)]
pub struct DojoSummary {
    pub url: Option<String>,
    pub dry_run: Option<String>,
    #[serde(flatten)]
    pub run: DojoRun,
}

/// Runs one sweep.
pub async fn scan(config: &Config, opts: ScanOptions) -> Result<ScanSummary> {
    let mut store = Store::open_at(&config.store)?;
    store.claim_cluster(&config.cluster)?;
    let now = opts.now.timestamp();
    let mut summary = ScanSummary {
        cluster: config.cluster.clone(),
        store: config.store.to_string(),
        inputs: opts
            .inputs
            .iter()
            .map(|i| match i {
                Input::Stdin => "-".to_owned(),
                Input::Cluster => "cluster".to_owned(),
                Input::Path(p) => p.display().to_string(),
            })
            .collect(),
        ..ScanSummary::default()
    };

    let (found, discover_errors) = files::discover(&opts.inputs);
    summary.files = found.len() as u64;
    let mut input_errors: Vec<InputError> = discover_errors;
    let source = format!("scan {}", summary.inputs.join(" "));
    let mut session = Session::begin(&mut store, &source, now)?;
    let progress = progress_bar(&found, opts.progress);
    let mut tally = Tally::default();
    let mut store_error: Option<anyhow::Error> = None;
    let mut scope = Scope::read_only();
    if opts.complete {
        if opts.inputs.iter().all(|i| matches!(i, Input::Cluster)) {
            // Only `--from cluster`: it knows its own scope.
            anyhow::bail!(
                "--complete describes file or stdin input; --from cluster knows its own scope"
            );
        }
        scope.covered.push(opts.file_scope.coverage());
    }

    session.read_under(None);
    for file in &found {
        let mut on_object = |obj: RawObject| {
            if store_error.is_none()
                && let Err(e) = tally.sweep_object(&mut session, &obj)
            {
                store_error = Some(e);
            }
        };
        let mut on_bytes = |n: u64| {
            if let Some(p) = &progress {
                p.inc(n);
            }
        };
        let errs = files::read_file(file, &mut on_object, &mut on_bytes);
        if let Some(e) = store_error.take() {
            return Err(e);
        }
        input_errors.extend(errs);
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    // Each source must read something: an empty one beside a full one is as suspect as
    // an empty sweep (a kubeconfig pointing at the wrong cluster, a failed export).
    let from_files = tally.report_objects;
    let file_inputs: Vec<&str> = summary
        .inputs
        .iter()
        .map(String::as_str)
        .filter(|i| *i != "cluster")
        .collect();
    // CI results are read, but they are not an export of the cluster.
    if !file_inputs.is_empty() && from_files == 0 && tally.ci_results == 0 {
        summary.empty_inputs.push(file_inputs.join(", "));
    }
    if opts.complete
        && let Some(origin) = &tally.first_ci_origin
    {
        anyhow::bail!(
            "--complete says the files are a whole-cluster export, but {origin} is a CI \
             result (Trivy CLI JSON or an SBOM), which never ends cluster reports; scan CI \
             results without --complete"
        );
    }
    if opts.inputs.iter().any(|i| matches!(i, Input::Cluster)) {
        let client = cluster::connect::client()
            .await
            .context("--from cluster: no usable kubeconfig or in-cluster configuration")?;
        session.read_under(config.kube.label_selector.as_deref());
        let mut on_object = |obj: RawObject| {
            if store_error.is_none()
                && let Err(e) = tally.sweep_object(&mut session, &obj)
            {
                store_error = Some(e);
            }
        };
        let listed = cluster::list::list_reports(&client, &config.kube, &mut on_object)
            .await
            .context("--from cluster")?;
        if let Some(e) = store_error.take() {
            return Err(e);
        }
        for k in &listed.absent {
            tracing::info!("{k}: CRD not installed in the cluster, skipped");
        }
        summary.kinds_absent = listed
            .absent
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        input_errors.extend(listed.errors);
        if tally.report_objects == from_files {
            summary.empty_inputs.push("cluster".into());
        }
        // Kinds listed in full, under the watch filters; an absent CRD was not read.
        if !listed.listed.is_empty() {
            scope.covered.push(config.kube.coverage(listed.listed));
        }
    }
    for e in &input_errors {
        tally.input_error(e);
    }
    summary.findings.before_dedup = tally.before_dedup;
    let anonymous_failures = tally.anonymous_failures;
    summary.empty = tally.report_objects == 0;
    summary.reports = tally.reports;
    summary.skipped = tally.skipped;
    summary.ignored = tally.ignored;
    summary.duplicates = tally.duplicates;

    // An unreadable file or object without identity may have held any report, and an
    // empty read is what a failed `kubectl get` piped in looks like: nothing may be
    // concluded from what is missing this time.
    let empty_refused = !summary.empty_inputs.is_empty() && !opts.allow_empty;
    summary.complete = input_errors.is_empty() && anonymous_failures == 0 && !empty_refused;
    if !summary.complete {
        scope = Scope::read_only();
        if empty_refused {
            tracing::info!("read no report: no report is marked gone in this sweep");
        } else {
            tracing::info!(
                "part of the input could not be read: no report is marked gone in this sweep"
            );
        }
    }
    let grace = config.grace_period.as_secs_i64();
    summary.history = session.finish(&scope, grace)?;
    summary.scope = scope;
    let ci = session.ci_changes();
    if ci != CiChanges::default() {
        summary.ci = Some(ci);
    }
    let totals = query::scan_totals(session.store(), session.scan_id())?;
    summary.images = ImageCounts {
        unique: totals.images,
        pinned: totals.pinned,
        unpinned: totals.unpinned,
    };
    summary.workloads = totals.workloads;
    summary.findings.after_dedup = totals.findings;

    let url = config
        .defectdojo
        .as_ref()
        .map(|d| crate::config::redact_userinfo(&d.url));
    if let Some(dir) = opts.dry_run.as_deref() {
        // What would be sent, planned in the open sweep; then rolled back, so a dry run
        // changes nothing: not the history, not the outbox.
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--dry-run {}: cannot create", dir.display()))?;
        let dojo_cfg = config.defectdojo.clone().unwrap_or_default();
        let mut written = 0usize;
        let plan = dojo::plan(
            session.store().conn(),
            &dojo_cfg,
            &config.cluster,
            if session.store().is_fleet() {
                config.fleet.as_str()
            } else {
                ""
            },
            opts.resync,
            &mut |t| {
                written += 1;
                write_dry_run(dir, written, &t)
            },
        )?;
        session.rollback()?;
        summary.defectdojo = Some(DojoSummary {
            url,
            dry_run: Some(dir.display().to_string()),
            run: DojoRun {
                plan,
                ..DojoRun::default()
            },
        });
        summary.exit_code = exit_code(&summary);
        return Ok(summary);
    }
    session.commit()?;

    // The sweep is committed: each output runs once, DefectDojo first (its read-back of
    // triage and test ids informs the alerts).
    let built = factory::build(
        config,
        Mode::Scan {
            resync: opts.resync,
        },
        None,
    );
    if let Some(e) = built.failed(Kind::DefectDojo) {
        anyhow::bail!("DefectDojo: {e:#}");
    }
    // Alerts never fail the sweep: a failure is reported, and what was queued stays.
    let alert_failure = |e: &anyhow::Error| AlertSummary {
        error: Some(format!("{e:#}")),
        ..AlertSummary::default()
    };
    summary.alerts = built.failed(Kind::Alerts).map(alert_failure);
    // A fleet store: the outputs run where the fleet's lease is, once for every cluster.
    // Held by a `run` (or another `scan`): this sweep is stored, and it sends nothing.
    let fence = if store.is_fleet() && !built.outputs.is_empty() {
        let holder = format!("{}/scan/{}", config.cluster, std::process::id());
        let ttl = i64::try_from(config.run.fleet_lease.0.as_millis()).unwrap_or(i64::MAX);
        match lease::acquire(&mut store, lease::OUTPUTS, &holder, ttl)? {
            Some(token) => Some(Fence {
                name: lease::OUTPUTS.into(),
                holder,
                token,
            }),
            None => {
                let other = lease::holder(&store, lease::OUTPUTS)?.map(|(h, _, _)| h);
                summary.outputs_run_by = Some(other.unwrap_or_else(|| "another replica".into()));
                summary.alerts = None;
                summary.exit_code = exit_code(&summary);
                return Ok(summary);
            }
        }
    } else {
        None
    };
    store.fence(fence.clone());
    // Renewed beside the outputs, on a connection of its own: their writes may wait for
    // other clusters' sweeps longer than the lease lasts.
    let renewing = fence.as_ref().map(|f| {
        let (location, f, every) = (
            config.store.clone(),
            f.clone(),
            (config.run.fleet_lease.0 / 3).max(std::time::Duration::from_millis(100)),
        );
        let ttl = i64::try_from(config.run.fleet_lease.0.as_millis()).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let Ok(mut s) = Store::open_at(&location) else {
                return;
            };
            loop {
                tokio::time::sleep(every).await;
                match lease::acquire(&mut s, &f.name, &f.holder, ttl) {
                    Ok(Some(t)) if t == f.token => {}
                    Ok(_) => return,
                    Err(e) => tracing::warn!("fleet lease: renewal failed: {e:#}"),
                }
            }
        })
    });
    let results = runner::once(&built.outputs, &mut store, opts.now).await;
    if let Some(r) = renewing {
        r.abort();
    }
    store.fence(None);
    if let Some(f) = &fence
        && let Err(e) = lease::release(&mut store, f)
    {
        tracing::warn!("fleet lease: release failed (it expires on its own): {e:#}");
    }
    for (kind, result) in results {
        match result {
            Ok(Report::DefectDojo(run)) => {
                summary.defectdojo = Some(DojoSummary {
                    url: url.clone(),
                    dry_run: None,
                    run,
                })
            }
            Ok(Report::Alerts(a)) => summary.alerts = Some(a),
            Ok(Report::Summary(_)) => {}
            Err(e) if kind == Kind::Alerts => {
                tracing::error!("alerts: {e:#}");
                summary.alerts = Some(alert_failure(&e));
            }
            Err(e) => return Err(e.context(kind.to_string())),
        }
    }
    summary.exit_code = exit_code(&summary);
    Ok(summary)
}

fn exit_code(s: &ScanSummary) -> i32 {
    let export_failed = s.defectdojo.as_ref().is_some_and(|d| {
        d.dry_run.is_none() && (!d.run.export.ok() || !d.run.still_refused.is_empty())
    });
    if export_failed {
        exit::EXPORT
    } else if !s.skipped.is_empty() {
        // An unreadable input says why nothing was read better than "read 0 reports".
        exit::SKIPPED
    } else if !s.empty_inputs.is_empty() && !s.complete {
        exit::EMPTY
    } else {
        exit::OK
    }
}

/// `<n>-<family>-<title>.form.json` and `.findings.json`: exactly what would be sent.
fn write_dry_run(dir: &Path, n: usize, t: &PlannedTest) -> Result<()> {
    let slug: String = t
        .title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let base = format!("{n:04}-{}-{slug}", t.family);
    let form = serde_json::json!({
        "action": t.action,
        "emptied": t.emptied,
        "findings": t.findings,
        "fields": t.form,
    });
    let form_path = dir.join(format!("{base}.form.json"));
    std::fs::write(&form_path, serde_json::to_vec_pretty(&form)?)
        .with_context(|| format!("--dry-run: cannot write {}", form_path.display()))?;
    let file_path = dir.join(format!("{base}.findings.json"));
    let pretty: serde_json::Value = serde_json::from_slice(&t.file)?;
    std::fs::write(&file_path, serde_json::to_vec_pretty(&pretty)?)
        .with_context(|| format!("--dry-run: cannot write {}", file_path.display()))?;
    Ok(())
}

fn progress_bar(files: &[files::SourceFile], wanted: bool) -> Option<indicatif::ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = files.iter().filter_map(|f| f.size).sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} reading reports {bytes}/{total_bytes} {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Lines of a list printed in full before "and N more".
const TEXT_LIST_MAX: usize = 20;

/// Report text made safe for a terminal: control characters (an escape sequence in a
/// hostile report name, a newline that forges a line) are shown escaped.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The human summary printed by `scan --format text`.
pub fn render_text(s: &ScanSummary) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "trivy-digest scan: cluster {}, store {}",
        esc(&s.cluster),
        esc(&s.store)
    );
    let r = &s.reports;
    let _ = writeln!(
        o,
        "Reports    {} stored, {} skipped, {} ignored ({} files)",
        r.stored, r.skipped, r.ignored, s.files
    );
    if !r.by_kind.is_empty() {
        let kinds: Vec<String> = r.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(o, "           {}", kinds.join(", "));
    }
    if r.summary_mismatches > 0 {
        let _ = writeln!(
            o,
            "           {} reports had summary counts that disagreed with their lists (recounted)",
            r.summary_mismatches
        );
    }
    if r.mapped_severities > 0 {
        let _ = writeln!(
            o,
            "           {} findings had a non-standard severity (mapped)",
            r.mapped_severities
        );
    }
    if let Some(ci) = &s.ci {
        if ci.files > 0 {
            let unpinned = if ci.unpinned > 0 {
                format!(
                    ", {} unpinned (no digest in RepoDigests: stored by tag)",
                    ci.unpinned
                )
            } else {
                String::new()
            };
            let n = |count: u64, one: &str, many: &str| {
                format!("{count} {}", if count == 1 { one } else { many })
            };
            let _ = writeln!(
                o,
                "CI         {} ({}{unpinned}); findings {} new, {} gone, {} also seen at runtime",
                n(ci.files, "result", "results"),
                n(ci.new_images, "new image", "new images"),
                ci.findings_new,
                ci.findings_gone,
                ci.also_at_runtime
            );
        }
        if ci.inventories_changed > 0 {
            let _ = writeln!(
                o,
                "Inventory  {} updated from SBOMs",
                if ci.inventories_changed == 1 {
                    "1 image package list".to_owned()
                } else {
                    format!("{} image package lists", ci.inventories_changed)
                }
            );
        }
    }
    if !s.skipped.is_empty() {
        let _ = writeln!(o, "Skipped (not read):");
        for k in s.skipped.iter().take(TEXT_LIST_MAX) {
            let mut line = k.origin.clone();
            match (&k.kind, &k.name) {
                (Some(kd), Some(n)) => line.push_str(&format!(" ({kd} {n})")),
                (Some(kd), None) => line.push_str(&format!(" ({kd})")),
                (None, Some(n)) => line.push_str(&format!(" ({n})")),
                (None, None) => {}
            }
            if let Some(f) = &k.field {
                line.push_str(&format!(": field `{f}`"));
            }
            line.push_str(&format!(": {}", k.error));
            if k.kept_previous {
                line.push_str(" [previous content kept]");
            }
            let _ = writeln!(o, "  {}", esc(&line));
        }
        more(&mut o, s.skipped.len());
    }
    if !s.ignored.is_empty() {
        let _ = writeln!(o, "Ignored:");
        for i in s.ignored.iter().take(TEXT_LIST_MAX) {
            let _ = writeln!(o, "  {}: {}", esc(&i.origin), esc(&i.reason));
        }
        more(&mut o, s.ignored.len());
    }
    if !s.duplicates.is_empty() {
        let _ = writeln!(
            o,
            "Read twice (the newer scan is kept, the other changes nothing):"
        );
        for d in s.duplicates.iter().take(TEXT_LIST_MAX) {
            let _ = writeln!(
                o,
                "  {}: kept {}, dropped {}",
                esc(&d.report),
                esc(&d.kept),
                esc(&d.dropped)
            );
        }
        more(&mut o, s.duplicates.len());
    }
    let _ = writeln!(
        o,
        "Images     {} unique ({} pinned by digest, {} unpinned)",
        s.images.unique, s.images.pinned, s.images.unpinned
    );
    let _ = writeln!(o, "Workloads  {}", s.workloads);
    let _ = writeln!(
        o,
        "Findings   {:>9} {:>6} {:>7} {:>6} {:>8} {:>7}",
        "critical", "high", "medium", "low", "unknown", "total"
    );
    for (label, c) in [
        ("in reports", &s.findings.before_dedup),
        ("unique", &s.findings.after_dedup),
    ] {
        let _ = writeln!(
            o,
            "  {label:<10}{:>8} {:>6} {:>7} {:>6} {:>8} {:>7}",
            c.0[0],
            c.0[1],
            c.0[2],
            c.0[3],
            c.0[4],
            c.total()
        );
    }
    let h = &s.history;
    let _ = writeln!(
        o,
        "History    {} new, {} resolved, {} reopened, {} re-rated, {} newly fixable",
        h.findings_opened,
        h.findings_resolved,
        h.findings_reopened,
        h.severities_changed,
        h.fixes_published
    );
    if !s.empty_inputs.is_empty() && !s.complete {
        let _ = writeln!(
            o,
            "           read 0 reports from {}: nothing was marked gone (--allow-empty if expected)",
            esc(&s.empty_inputs.join(", "))
        );
    } else if !s.complete {
        let _ = writeln!(o, "           input incomplete: no report was marked gone");
    } else if s.scope.is_read_only() {
        let _ = writeln!(
            o,
            "           only the reports read were updated; others are not marked gone \
             (--complete if the input is a whole-cluster export)"
        );
    } else {
        let covered: Vec<String> = s.scope.covered.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            o,
            "           covered {}: {} reports gone (grace period started)",
            esc(&covered.join("; ")),
            h.reports_gone
        );
    }
    let _ = writeln!(
        o,
        "           {} expired, {} images/resources removed",
        h.reports_expired, h.targets_removed
    );
    match &s.defectdojo {
        None if s.outputs_run_by.is_some() => {
            let _ = writeln!(
                o,
                "Outputs   run for the fleet by {}: this sweep is stored; DefectDojo, alerts and summaries are theirs",
                esc(s.outputs_run_by.as_deref().unwrap_or_default())
            );
        }
        None => {
            let _ = writeln!(
                o,
                "DefectDojo not configured (set DEFECTDOJO_URL and DEFECTDOJO_TOKEN to export)"
            );
        }
        Some(d) => {
            let p = &d.run.plan;
            if let Some(dir) = &d.dry_run {
                let _ = writeln!(
                    o,
                    "DefectDojo dry run: {} tests, {} would be reimported, {} patched only, {} unchanged; files in {dir}",
                    p.tests, p.reimports, p.syncs, p.unchanged
                );
            } else {
                let _ = writeln!(
                    o,
                    "DefectDojo {} tests: {} to reimport, {} to patch, {} unchanged, {} emptied after the grace period",
                    p.tests, p.reimports, p.syncs, p.unchanged, p.emptied
                );
                for t in &d.run.export.tests {
                    let what = match &t.result {
                        dojo::Outcome::Done {
                            new_test,
                            created,
                            closed,
                            reactivated,
                            untouched,
                            patched,
                            ..
                        } => {
                            if *new_test {
                                format!("new test, created {created}, patched {patched}")
                            } else {
                                format!(
                                    "created {created}, closed {closed}, reactivated {reactivated}, untouched {untouched}, patched {patched}"
                                )
                            }
                        }
                        dojo::Outcome::Refused { error } => format!("REFUSED: {error}"),
                        dojo::Outcome::NotOurs { error, .. } => {
                            format!("NOT SENT, another cluster's test: {error}")
                        }
                        dojo::Outcome::Pending { error } => format!("queued: {error}"),
                    };
                    let _ = writeln!(
                        o,
                        "  {} / {} / {} [{}]: {}",
                        esc(&t.product),
                        esc(&t.engagement),
                        esc(&t.test),
                        t.family,
                        esc(&what)
                    );
                }
                for r in &d.run.still_refused {
                    let _ = writeln!(
                        o,
                        "  refused earlier, not resent until it changes: {}",
                        esc(r)
                    );
                }
                if let Some(why) = &d.run.export.stopped {
                    let _ = writeln!(o, "  export stopped: {}", esc(why));
                }
                if d.run.export.pending > 0 || d.run.export.refused > 0 {
                    let _ = writeln!(
                        o,
                        "  outbox: {} waiting, {} refused",
                        d.run.export.pending, d.run.export.refused
                    );
                }
            }
            for l in &p.left_alone {
                let _ = writeln!(
                    o,
                    "  left alone (no longer produced by the mapping): {}",
                    esc(l)
                );
            }
        }
    }
    if let Some(a) = &s.alerts {
        render_alerts(&mut o, a);
    }
    o
}

fn more(o: &mut String, total: usize) {
    use std::fmt::Write;
    if total > TEXT_LIST_MAX {
        let _ = writeln!(
            o,
            "  and {} more (--format json lists them all)",
            total - TEXT_LIST_MAX
        );
    }
}

fn render_alerts(o: &mut String, a: &crate::output::alert::AlertSummary) {
    use std::fmt::Write;
    if let Some(e) = &a.error {
        let _ = writeln!(
            o,
            "Alerts     FAILED: {} (queued alerts stay queued)",
            esc(e)
        );
        return;
    }
    if let Some(n) = a.plan.baseline {
        let _ = writeln!(
            o,
            "Alerts     first run: baseline of {n} open findings recorded, nothing sent"
        );
        return;
    }
    let sent = a.delivery.messages.iter().filter(|m| m.sent).count();
    let _ = writeln!(
        o,
        "Alerts     {} new findings, {} messages sent, {} failed, {} alerts waiting; {} ignored, {} accepted in DefectDojo",
        a.plan.new_findings,
        sent,
        a.delivery.failed(),
        a.delivery.pending,
        a.plan.ignored + a.delivery.ignored_at_send,
        a.delivery.accepted
    );
    for m in &a.delivery.messages {
        match &m.error {
            None => {
                let _ = writeln!(o, "  {}: {}", esc(&m.destination), esc(&m.title));
            }
            Some(e) => {
                let _ = writeln!(
                    o,
                    "  {}: NOT SENT ({}): {}",
                    esc(&m.destination),
                    esc(e),
                    esc(&m.title)
                );
            }
        }
    }
    for c in &a.delivery.capped {
        let _ = writeln!(o, "  {c}: hourly cap reached, alerts wait");
    }
}
