//! The leader's work: a watch per report kind, events written to the store in batches,
//! relists reconciled, the outputs told of each change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::flag::until;
use crate::ingest::Tally;
use crate::metrics::{Metrics, PinnedLabel, SeverityLabel};
use crate::model::{NamespaceMeta, ReportKind, Severity};
use crate::scope::Scope;
use crate::serve::Health;
use crate::source::cluster::{self, pods::PodDigests, watch::Event};
use crate::store::{Session, Store, query};
use crate::trivy::{Parsed, parse_object};

/// What the watch tasks send to the ingest loop.
enum Msg {
    Report(ReportKind, Event),
    Namespace(NamespaceMeta),
}

impl Msg {
    /// Bytes of report JSON carried.
    fn size(&self) -> usize {
        match self {
            Msg::Report(_, Event::Apply(raw)) => raw.json.len(),
            _ => 64,
        }
    }
}

const MAX_BATCH: usize = 500;
const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How often to ask which report kinds exist while the API server has not answered yet.
const UNCHECKED_RETRY: Duration = Duration::from_secs(5);

/// What the leader works with.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub client: kube::Client,
    pub health: &'a Arc<Health>,
    pub metrics: &'a Arc<Metrics>,
    /// Bumped after each store write: wakes the outputs.
    pub changes: watch::Sender<u64>,
}

/// Leads until leadership is lost or shutdown is asked for.
pub async fn lead(
    ctx: Ctx<'_>,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let Ctx {
        config,
        client,
        health,
        metrics,
        changes,
    } = ctx;
    let mut store = Store::open_at(&config.store)?;
    store.claim_cluster(&config.cluster)?;

    // Small: a queued report is its whole JSON (tens of KB); the watchers wait instead.
    let (tx, mut rx) = mpsc::channel::<Msg>(32);
    let mut tasks = JoinSet::new();
    let wanted = config.kube.kinds();
    let mut watching: BTreeSet<ReportKind> = BTreeSet::new();
    let mut absent: Vec<ReportKind> = wanted.clone();
    // Whether the API server has answered which kinds exist: until then "absent" means
    // "unknown", and an unreachable or forbidden API server must not look ready.
    let mut checked =
        start_present(&client, config, &mut absent, &mut watching, &mut tasks, &tx).await;
    if checked && !absent.is_empty() {
        let names: Vec<&str> = absent.iter().map(|k| k.as_str()).collect();
        tracing::info!(kinds = ?names, "report kinds without a CRD are skipped until it appears");
    }
    tasks.spawn(watch_namespaces(client.clone(), tx.clone()));
    // With no report CRD at all there is nothing to list: ready, and waiting for one.
    if checked {
        mark_ready(&watching, &BTreeSet::new(), health, metrics);
    }

    let mut state = BatchState {
        pods: config
            .kube
            .digest_recovery
            .then(|| PodDigests::new(client.clone())),
        relist_floor: HashMap::new(),
        listed: BTreeSet::new(),
        pods_warned: false,
    };
    let mut recheck = tokio::time::interval(config.kube.crd_recheck.0);
    recheck.tick().await;
    // Until the first answer, ask again sooner than the CRD recheck.
    let mut retry_check = tokio::time::interval(config.kube.crd_recheck.0.min(UNCHECKED_RETRY));
    retry_check.tick().await;
    // Grace periods end without any event: settle the store on a timer too.
    let settle_every =
        (config.grace_period.0 / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut settle = tokio::time::interval(settle_every);
    settle.tick().await;
    let window = config.run.batch_window.0;
    let result: Result<()> = loop {
        tokio::select! {
            biased;
            _ = until(&mut stop, true) => break Ok(()),
            lost = until(&mut leading, false) => {
                if lost {
                    tracing::warn!("leadership lost: stopping the watches");
                }
                break Ok(());
            }
            _ = recheck.tick(), if checked && !absent.is_empty() => {
                start_present(&client, config, &mut absent, &mut watching, &mut tasks, &tx).await;
            }
            _ = retry_check.tick(), if !checked => {
                checked = start_present(&client, config, &mut absent, &mut watching, &mut tasks, &tx).await;
                if checked {
                    tracing::info!(watching = watching.len(), absent = absent.len(), "the API server answered: report kinds known");
                    mark_ready(&watching, &state.listed, health, metrics);
                }
            }
            _ = settle.tick() => {
                match process_batch(config, &mut store, Vec::new(), &mut state, metrics).await {
                    Ok(true) => changes.send_modify(|n| *n += 1),
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            }
            first = rx.recv() => {
                let Some(first) = first else { break Ok(()) };
                let mut bytes = first.size();
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + window;
                // Bounded by count and by size: a relist of large reports must not
                // gather megabytes before they are written.
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(m)) => {
                            bytes += m.size();
                            batch.push(m);
                        }
                        _ => break,
                    }
                }
                if let Err(e) = process_batch(config, &mut store, batch, &mut state, metrics).await {
                    break Err(e);
                }
                if checked {
                    mark_ready(&watching, &state.listed, health, metrics);
                }
                changes.send_modify(|n| *n += 1);
            }
        }
    };
    tasks.abort_all();
    result
}

/// Ready once every watched kind has been listed once.
fn mark_ready(
    watching: &BTreeSet<ReportKind>,
    listed: &BTreeSet<ReportKind>,
    health: &Health,
    metrics: &Metrics,
) {
    if watching.iter().all(|k| listed.contains(k)) {
        if !health.listed.swap(true, Ordering::SeqCst) {
            tracing::info!(kinds = watching.len(), "every watched kind listed: ready");
        }
        metrics.ready.set(1);
    }
}

/// Starts watches for the wanted kinds whose CRD now exists; false when the API server
/// could not say (unreachable, forbidden), so nothing is known about `absent`.
async fn start_present(
    client: &kube::Client,
    config: &Config,
    absent: &mut Vec<ReportKind>,
    watching: &mut BTreeSet<ReportKind>,
    tasks: &mut JoinSet<()>,
    tx: &mpsc::Sender<Msg>,
) -> bool {
    let (present, still_absent) = match cluster::present_kinds(client, absent).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                error = %crate::errors::chain(&e),
                "cannot list the report kinds (API server unreachable, or RBAC?); not ready, retrying"
            );
            return false;
        }
    };
    for kind in present {
        tracing::info!(%kind, "watching");
        watching.insert(kind);
        let stream = cluster::watch::watch_kind(client.clone(), kind, &config.kube);
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if tx.send(Msg::Report(kind, ev)).await.is_err() {
                    return;
                }
            }
        });
    }
    *absent = still_absent;
    true
}

/// Namespace labels and annotations feed the mapping templates. A cluster (or an RBAC
/// setup) without them is not an error: one warning, then quiet retries.
async fn watch_namespaces(client: kube::Client, tx: mpsc::Sender<Msg>) {
    // Metadata only: labels and annotations are all we read.
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut warned = false;
    while let Some(ev) = stream.next().await {
        let obj = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
            Ok(_) => continue,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "namespace labels and annotations unavailable (mapping templates see none)");
                    warned = true;
                }
                continue;
            }
        };
        let Some(name) = obj.metadata.name else {
            continue;
        };
        let meta = NamespaceMeta {
            name,
            uid: obj.metadata.uid.clone(),
            labels: obj.metadata.labels.unwrap_or_default(),
            annotations: obj.metadata.annotations.unwrap_or_default(),
        };
        if tx.send(Msg::Namespace(meta)).await.is_err() {
            return;
        }
    }
}

struct BatchState {
    pods: Option<PodDigests>,
    /// Kinds being relisted, with the session where the relist began.
    relist_floor: HashMap<ReportKind, i64>,
    listed: BTreeSet<ReportKind>,
    pods_warned: bool,
}

/// What a batch does to the store, in order.
enum Step {
    Parsed(
        ReportKind,
        Box<Result<Parsed, Box<crate::trivy::ObjectError>>>,
    ),
    Gone(crate::model::ReportId),
    Relist(ReportKind),
    Listed(ReportKind),
    Namespace(NamespaceMeta),
}

/// Parses (and recovers digests) outside the store transaction, then writes the batch
/// in one transaction, so the write lock is never held across a network call. Returns
/// whether grace periods ended or findings resolved (something to export).
async fn process_batch(
    config: &Config,
    store: &mut Store,
    batch: Vec<Msg>,
    state: &mut BatchState,
    metrics: &Metrics,
) -> Result<bool> {
    if let Some(p) = state.pods.as_mut() {
        p.clear();
    }
    let mut steps = Vec::with_capacity(batch.len());
    for msg in batch {
        match msg {
            Msg::Namespace(ns) => steps.push(Step::Namespace(ns)),
            Msg::Report(kind, Event::Apply(raw)) => {
                metrics
                    .reports_seen
                    .get_or_create(&Metrics::kind(kind.as_str()))
                    .inc();
                let mut parsed = parse_object(&raw);
                if let Ok(Parsed::Report(r)) = &mut parsed {
                    recover_digest(state, r).await;
                }
                steps.push(Step::Parsed(kind, Box::new(parsed)));
            }
            Msg::Report(_, Event::Delete(id)) => steps.push(Step::Gone(id)),
            Msg::Report(kind, Event::Relist) => {
                metrics
                    .relists
                    .get_or_create(&Metrics::kind(kind.as_str()))
                    .inc();
                steps.push(Step::Relist(kind));
            }
            Msg::Report(kind, Event::Listed) => steps.push(Step::Listed(kind)),
            Msg::Report(kind, Event::Failed(e)) => {
                metrics
                    .watch_restarts
                    .get_or_create(&Metrics::kind(kind.as_str()))
                    .inc();
                tracing::warn!(%kind, error = %e, "watch failed; retrying");
            }
        }
    }

    let now = chrono::Utc::now().timestamp();
    let grace = config.grace_period.as_secs_i64();
    let mut session = Session::begin(store, "run", now)?;
    session.read_under(config.kube.label_selector.as_deref());
    let mut tally = Tally::default();
    let mut gone = 0u64;
    for step in steps {
        match step {
            Step::Parsed(kind, parsed) => {
                if let Err(e) = parsed.as_ref() {
                    metrics
                        .reports_skipped
                        .get_or_create(&Metrics::kind(kind.as_str()))
                        .inc();
                    tracing::warn!("skipped: {e}");
                }
                tally.record(&mut session, *parsed)?;
            }
            Step::Gone(id) => gone += u64::from(session.gone(&id)?),
            Step::Namespace(ns) => session.namespace(&ns)?,
            Step::Relist(kind) => {
                state.relist_floor.insert(kind, session.relist_floor());
            }
            Step::Listed(kind) => {
                if let Some(floor) = state.relist_floor.remove(&kind) {
                    let n = session.relisted(kind, floor, &config.kube.coverage([kind]))?;
                    if n > 0 {
                        tracing::info!(%kind, reports = n, "not listed any more: grace period started");
                    }
                }
                state.listed.insert(kind);
            }
        }
    }
    let stats = session.finish(&Scope::read_only(), grace)?;
    session.commit()?;
    if tally.reports.stored + gone + stats.findings_resolved > 0 {
        tracing::debug!(
            stored = tally.reports.stored,
            gone,
            opened = stats.findings_opened,
            resolved = stats.findings_resolved,
            "batch written"
        );
    }
    update_gauges(store, metrics).context("reading store totals")?;
    Ok(stats.reports_expired + stats.findings_resolved + stats.targets_removed > 0)
}

/// A report without a digest: its owner's Pods know which digest they run.
async fn recover_digest(state: &mut BatchState, r: &mut crate::model::Report) {
    let (Some(pods), Some(owner), Some(img)) =
        (state.pods.as_mut(), r.owner.clone(), r.image.as_mut())
    else {
        return;
    };
    if img.pinned() || r.id.namespace.is_empty() || r.container.is_empty() {
        return;
    }
    match pods.digest(&r.id.namespace, &owner, &r.container).await {
        Ok(Some(d)) => {
            tracing::debug!(report = %r.id, digest = %d, "digest recovered from the workload's Pods");
            img.digest = Some(d);
        }
        Ok(None) => {}
        Err(e) => {
            if !state.pods_warned {
                tracing::warn!(error = %e, "cannot read Pods to recover missing digests (images stay unpinned)");
                state.pods_warned = true;
            }
        }
    }
}

fn update_gauges(store: &Store, metrics: &Metrics) -> Result<()> {
    let live = query::live_totals(store)?;
    for (label, n) in [("true", live.pinned), ("false", live.unpinned)] {
        metrics
            .images
            .get_or_create(&PinnedLabel {
                pinned: label.into(),
            })
            .set(n as i64);
    }
    let by_sev: BTreeMap<&str, u64> = Severity::ALL
        .iter()
        .map(|s| (s.as_str(), live.findings.get(*s)))
        .collect();
    for (sev, n) in by_sev {
        metrics
            .findings_open
            .get_or_create(&SeverityLabel {
                severity: sev.to_ascii_lowercase(),
            })
            .set(n as i64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_fixture::FakeKube;
    use serde_json::json;

    #[tokio::test]
    async fn namespace_annotations_reach_the_ingest_loop() {
        let (client, fake) = FakeKube::start();
        fake.lock().namespaces.push(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "payments", "resourceVersion": "5",
                         "labels": {"team": "payments"},
                         "annotations": {"trivy-digest.io/product": "payments"}}
        }));
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(watch_namespaces(client, tx));
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("a namespace arrives")
            .expect("channel open");
        let Msg::Namespace(ns) = msg else {
            panic!("a namespace message")
        };
        assert_eq!(ns.name, "payments");
        assert_eq!(
            ns.annotations
                .get("trivy-digest.io/product")
                .map(String::as_str),
            Some("payments")
        );
        assert_eq!(ns.labels.get("team").map(String::as_str), Some("payments"));
        task.abort();
    }
}
