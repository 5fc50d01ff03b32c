//! Delivers the outbox to DefectDojo: reimport (membership), then PATCH every matched
//! finding whose volatile fields changed, since a reimport never refreshes them.
//!
//! Before a reimport the exporter looks the test up as DefectDojo's reimport would, and
//! refuses to push into one that another store owns (`owner`): that push would close the
//! other cluster's findings.
//!
//! Pushes run with a concurrency limit, except the first push into a product/engagement
//! not yet known to exist: those run one at a time, because parallel auto-creation makes
//! duplicate engagements (DefectDojo #10607).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use super::client::{DojoClient, DojoError, DojoFinding, DojoTest};
use super::format::{self, GenericFile, GenericFinding, Volatile};
use super::outbox::{self, Pending};
use super::owner::{self, Owner, OwnerView, Verdict};
use super::plan::{Action, Context};
use crate::model::Family;
use crate::store::Store;
use crate::store::triage::{self, TriageFlags};

/// What happened to one test.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub product_type: String,
    pub product: String,
    pub engagement: String,
    pub test: String,
    pub family: Family,
    pub action: Action,
    pub findings: usize,
    #[serde(flatten)]
    pub result: Outcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// DefectDojo accepted the push. Counts are DefectDojo's own statistics; a test it
    /// created reports only `created`.
    Done {
        dd_test_id: i64,
        new_test: bool,
        created: u64,
        closed: u64,
        reactivated: u64,
        untouched: u64,
        patched: u64,
    },
    /// Refused (400, 413, other 4xx): kept in the outbox with the server's message and
    /// sent again after a backoff (`outbox::refused_retry_wait`), when its content
    /// changes, or with `--resync`.
    Refused { error: String },
    /// The test belongs to another store (or carries no owner mark and was not adopted):
    /// nothing was sent, since the push would close that cluster's findings. Kept in the
    /// outbox like a refusal.
    NotOurs {
        dd_test_id: i64,
        owner: Option<OwnerView>,
        error: String,
    },
    /// Not delivered (server down, token refused, wrong URL, or a patch failed): stays
    /// queued.
    Pending { error: String },
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ExportReport {
    pub tests: Vec<TestOutcome>,
    /// Why delivery stopped early, if it did (bad token, wrong URL, server unavailable).
    pub stopped: Option<String>,
    pub pending: u64,
    pub refused: u64,
}

impl ExportReport {
    pub fn ok(&self) -> bool {
        self.stopped.is_none() && self.pending == 0 && self.refused == 0
    }
}

/// Who pushes, and whether tests without an owner mark may be taken over.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub owner: Owner,
    pub adopt_tests: bool,
    /// Stores merged into this one (`store migrate`): their marks are ours.
    pub predecessors: Vec<String>,
}

/// DefectDojo ids found during one delivery. Only found ones are kept: a product missing
/// now may be created by the next push.
#[derive(Default)]
struct Ids {
    products: HashMap<String, i64>,
    engagements: HashMap<(i64, String), i64>,
}

struct Shared<'a, 's> {
    client: &'a DojoClient,
    store: &'a Mutex<&'s mut Store>,
    now: i64,
    ownership: &'a Ownership,
    ids: Mutex<Ids>,
    stop: AtomicBool,
    stop_reason: Mutex<Option<String>>,
}

impl Shared<'_, '_> {
    fn db<T>(&self, f: impl FnOnce(&crate::store::Db) -> Result<T>) -> Result<T> {
        let guard = self
            .store
            .lock()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
        f(guard.conn())
    }

    fn halt(&self, reason: String) {
        if !self.stop.swap(true, Ordering::SeqCst)
            && let Ok(mut r) = self.stop_reason.lock()
        {
            *r = Some(reason);
        }
    }
}

/// Sends every queued push. Returns what happened per test. Once `stopping()` is true no
/// further push starts (those in flight finish); the rest stays in the outbox.
pub async fn deliver(
    store: &mut Store,
    client: &DojoClient,
    ownership: &Ownership,
    concurrency: usize,
    now: i64,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<ExportReport> {
    let pending = outbox::pending(store.conn())?;
    let mut known = outbox::known_contexts(store.conn())?;
    let lock = Mutex::new(store);
    let shared = Shared {
        client,
        store: &lock,
        now,
        ownership,
        ids: Mutex::new(Ids::default()),
        stop: AtomicBool::new(false),
        stop_reason: Mutex::new(None),
    };

    // First pushes into unknown contexts, one at a time, until each context exists.
    let mut rest: Vec<Pending> = Vec::new();
    let mut waiting: HashMap<Context, Vec<Pending>> = HashMap::new();
    for p in pending {
        if known.contains(&p.context) {
            rest.push(p);
        } else {
            waiting.entry(p.context.clone()).or_default().push(p);
        }
    }
    let mut outcomes = Vec::new();
    let mut contexts: Vec<Context> = waiting.keys().cloned().collect();
    contexts.sort();
    for c in contexts {
        let mut queue = waiting.remove(&c).unwrap_or_default();
        queue.reverse();
        while let Some(p) = queue.pop() {
            if shared.stop.load(Ordering::SeqCst) || stopping() {
                break; // left in the outbox for the next run
            }
            let o = push(&shared, p).await?;
            let done = matches!(o.result, Outcome::Done { .. });
            outcomes.push(o);
            if done {
                known.insert(c.clone());
                rest.append(&mut queue);
            }
        }
    }

    let results: Vec<Result<TestOutcome>> = stream::iter(rest)
        .map(|p| {
            let shared = &shared;
            async move {
                if shared.stop.load(Ordering::SeqCst) || stopping() {
                    return Ok(None);
                }
                push(shared, p).await.map(Some)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r.transpose() })
        .collect()
        .await;
    for r in results {
        outcomes.push(r?);
    }
    outcomes.sort_by(|a, b| {
        (&a.product, &a.engagement, &a.test).cmp(&(&b.product, &b.engagement, &b.test))
    });

    let stopped = shared.stop_reason.lock().ok().and_then(|r| r.clone());
    drop(shared);
    let store = lock
        .into_inner()
        .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
    let (pending, refused) = outbox::depth(store.conn())?;
    Ok(ExportReport {
        tests: outcomes,
        stopped,
        pending,
        refused,
    })
}

async fn push(s: &Shared<'_, '_>, p: Pending) -> Result<TestOutcome> {
    let mut outcome = TestOutcome {
        product_type: p.context.product_type.clone(),
        product: p.context.product.clone(),
        engagement: p.context.engagement.clone(),
        test: p.title.clone(),
        family: p.family,
        action: p.action,
        findings: 0,
        result: Outcome::Pending {
            error: String::new(),
        },
    };
    let file: GenericFile = serde_json::from_slice(&p.file)
        .with_context(|| format!("outbox entry {} for test {:?} is unreadable", p.id, p.title))?;
    outcome.findings = file.findings.len();
    s.db(|c| outbox::attempt(c, p.id, s.now))?;

    let mut stats = Stats::default();
    let dd_test_id = match (p.action, p.dd_test_id) {
        (Action::Sync, Some(id)) => id,
        _ => match reimport(s, &p).await {
            Ok(Err(refusal)) => {
                tracing::error!(test = %p.title, dd_test = refusal.dd_test_id, error = %refusal.error,
                    "DefectDojo test belongs to another store; nothing sent");
                s.db(|c| outbox::refuse(c, p.id, &refusal.error))?;
                outcome.result = Outcome::NotOurs {
                    dd_test_id: refusal.dd_test_id,
                    owner: refusal.owner,
                    error: refusal.error,
                };
                return Ok(outcome);
            }
            Ok(Ok(answer)) => {
                let Some(id) = answer.test_id() else {
                    let e = "the reimport answer has no test id".to_owned();
                    s.db(|c| outbox::note_error(c, p.id, &e))?;
                    outcome.result = Outcome::Pending { error: e };
                    return Ok(outcome);
                };
                stats = Stats::from(&answer.statistics);
                let result = serde_json::to_string(&answer.statistics).unwrap_or_default();
                s.db(|c| outbox::reimported(c, &p, id, &result, s.now))?;
                tracing::info!(test = %p.title, product = %p.context.product, created = stats.created,
                    closed = stats.closed, reactivated = stats.reactivated, untouched = stats.untouched,
                    "DefectDojo reimport done");
                id
            }
            Err(e) => return failed(s, &p, outcome, e),
        },
    };

    let patched = match sync_findings(
        s,
        &p,
        dd_test_id,
        &file.findings,
        p.action == Action::Reimport,
    )
    .await
    {
        Ok(n) => n,
        Err(e) => return failed(s, &p, outcome, e),
    };
    s.db(|c| outbox::synced(c, &p))?;
    outcome.result = Outcome::Done {
        dd_test_id,
        new_test: stats.new_test,
        created: stats.created,
        closed: stats.closed,
        reactivated: stats.reactivated,
        untouched: stats.untouched,
        patched,
    };
    Ok(outcome)
}

/// Checks who owns the test, then reimports with our owner mark. The mark is added here,
/// not in the queued form, so that it takes no part in the content hash.
async fn reimport(
    s: &Shared<'_, '_>,
    p: &Pending,
) -> Result<Result<super::client::ReimportAnswer, owner::Refusal>, DojoError> {
    let scan_type = p
        .form
        .iter()
        .find(|(k, _)| k == "scan_type")
        .map_or(format::SCAN_TYPE, |(_, v)| v.as_str());
    let found = find_test(s, &p.context, &p.title, scan_type)
        .await?
        .map(|t| owner::Found {
            id: t.id,
            build_id: t.build_id,
        });
    let me = &s.ownership.owner;
    match owner::decide_with(
        me,
        &s.ownership.predecessors,
        found.as_ref(),
        p.dd_test_id,
        s.ownership.adopt_tests,
        &p.title,
    ) {
        Verdict::Create | Verdict::Ours => {}
        Verdict::Adopt { why } => {
            tracing::info!(test = %p.title, dd_test = found.as_ref().map(|f| f.id), why,
                "taking over a DefectDojo test that carries no owner mark of this store");
        }
        Verdict::Refuse(r) => return Ok(Err(r)),
    }
    let mut form = p.form.clone();
    form.retain(|(k, _)| k != "build_id");
    form.push(("build_id".into(), me.mark()));
    s.client.reimport(&form, &p.file).await.map(Ok)
}

/// The test DefectDojo's reimport would update, found the way `auto_create_context`
/// finds it: product by name, the last engagement of that name, the last test of that
/// title and scan type.
async fn find_test(
    s: &Shared<'_, '_>,
    c: &Context,
    title: &str,
    scan_type: &str,
) -> Result<Option<DojoTest>, DojoError> {
    let cached = |f: &dyn Fn(&Ids) -> Option<i64>| s.ids.lock().ok().and_then(|ids| f(&ids));
    let product = match cached(&|ids| ids.products.get(&c.product).copied()) {
        Some(id) => id,
        None => match s.client.product_id(&c.product).await? {
            Some(id) => {
                if let Ok(mut ids) = s.ids.lock() {
                    ids.products.insert(c.product.clone(), id);
                }
                id
            }
            None => return Ok(None),
        },
    };
    let key = (product, c.engagement.clone());
    let engagement = match cached(&|ids| ids.engagements.get(&key).copied()) {
        Some(id) => id,
        None => match s.client.engagement_id(product, &c.engagement).await? {
            Some(id) => {
                if let Ok(mut ids) = s.ids.lock() {
                    ids.engagements.insert(key.clone(), id);
                }
                id
            }
            None => return Ok(None),
        },
    };
    s.client.latest_test(engagement, title, scan_type).await
}

fn failed(
    s: &Shared<'_, '_>,
    p: &Pending,
    mut outcome: TestOutcome,
    e: DojoError,
) -> Result<TestOutcome> {
    let msg = e.to_string();
    match &e {
        DojoError::Refused { .. } | DojoError::TooLarge { .. } => {
            tracing::error!(test = %p.title, error = %msg, "DefectDojo refused the push; it is sent again after a backoff, when its content changes, or with --resync");
            s.db(|c| outbox::refuse(c, p.id, &msg))?;
            outcome.result = Outcome::Refused { error: msg };
        }
        DojoError::Auth(_) | DojoError::Setup(_) | DojoError::Address(_) => {
            tracing::error!(error = %msg, "stopping DefectDojo export");
            s.db(|c| outbox::note_error(c, p.id, &msg))?;
            s.halt(msg.clone());
            outcome.result = Outcome::Pending { error: msg };
        }
        DojoError::Unavailable { .. } | DojoError::Protocol(_) | DojoError::FindingGone { .. } => {
            tracing::error!(test = %p.title, error = %msg, "DefectDojo push failed after retries; it stays in the outbox");
            s.db(|c| outbox::note_error(c, p.id, &msg))?;
            if e.retryable() {
                // The server is down: further pushes would only wait out their retries too.
                s.halt(msg.clone());
            }
            outcome.result = Outcome::Pending { error: msg };
        }
    }
    Ok(outcome)
}

/// Brings DefectDojo's copy of each finding's volatile fields up to date. Reads the test's
/// findings when their ids are needed (always after a reimport, which may have created
/// some), and records their triage state (risk accepted, false positive, out of scope).
async fn sync_findings(
    s: &Shared<'_, '_>,
    p: &Pending,
    dd_test_id: i64,
    desired: &[GenericFinding],
    after_reimport: bool,
) -> Result<u64, DojoError> {
    let states = s
        .db(|c| outbox::finding_states(c, p.test_id))
        .map_err(|e| DojoError::Setup(e.to_string()))?;
    let need_list = after_reimport
        || desired.iter().any(|g| {
            let st = states.get(&g.unique_id_from_tool);
            let up_to_date =
                st.and_then(|s| s.sent_hash.as_deref()) == Some(g.volatile.hash().as_str());
            !up_to_date && st.and_then(|s| s.dd_id).is_none()
        });
    let listed: HashMap<String, DojoFinding> = if need_list {
        s.client
            .test_findings(dd_test_id)
            .await?
            .into_iter()
            .filter_map(|f| f.unique_id_from_tool.clone().map(|u| (u, f)))
            .collect()
    } else {
        HashMap::new()
    };
    let db = |f: &dyn Fn(&crate::store::Db) -> Result<()>| {
        s.db(|c| f(c)).map_err(|e| DojoError::Setup(e.to_string()))
    };

    let mut patched = 0u64;
    for g in desired {
        let uid = &g.unique_id_from_tool;
        let want = g.volatile.hash();
        let state = states.get(uid);
        let dd = listed.get(uid);
        let dd_id = dd.map(|f| f.id).or(state.and_then(|s| s.dd_id));
        let flags = dd.map(triage_of);
        let Some(dd_id) = dd_id else {
            // Not in DefectDojo (a finding it refused, or a test deleted there): the next
            // reimport will create it.
            tracing::warn!(test = %p.title, uid = %uid, "finding not found in DefectDojo; not patched");
            continue;
        };
        let up_to_date = match state.and_then(|s| s.sent_hash.as_deref()) {
            Some(h) => h == want,
            // Never recorded: compare with what DefectDojo holds (a new finding holds
            // exactly what we sent).
            None => dd.is_some_and(|f| holds(f, &g.volatile)),
        };
        if !up_to_date {
            let body =
                serde_json::to_value(&g.volatile).map_err(|e| DojoError::Setup(e.to_string()))?;
            match s.client.patch_finding(dd_id, &body).await {
                Ok(()) => patched += 1,
                Err(e @ DojoError::FindingGone { .. }) => {
                    // Deleted in DefectDojo: the next push of the test is a reimport,
                    // which creates it again.
                    tracing::warn!(test = %p.title, uid = %uid, error = %e, "finding deleted in DefectDojo; the test is reimported next time");
                    db(&|c| outbox::finding_gone(c, p.test_id, uid))?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        db(&|c| triage::record(c, p.test_id, uid, dd_id, flags, Some(&want), s.now))?;
    }
    if need_list {
        let keep: Vec<String> = desired
            .iter()
            .map(|g| g.unique_id_from_tool.clone())
            .collect();
        db(&|c| outbox::forget_findings_except(c, p.test_id, &keep))?;
    }
    if patched > 0 {
        tracing::info!(test = %p.title, patched, "DefectDojo findings patched");
    }
    Ok(patched)
}

fn triage_of(f: &DojoFinding) -> TriageFlags {
    TriageFlags {
        active: f.active,
        risk_accepted: f.risk_accepted,
        false_p: f.false_p,
        out_of_scope: f.out_of_scope,
    }
}

/// True when DefectDojo's copy already has these volatile values.
fn holds(f: &DojoFinding, v: &Volatile) -> bool {
    let s = |o: &Option<String>| o.as_deref().unwrap_or("").trim().to_owned();
    f.severity
        .as_deref()
        .unwrap_or("")
        .eq_ignore_ascii_case(&v.severity)
        && s(&f.mitigation) == v.mitigation.trim()
        && s(&f.impact) == v.impact.trim()
        && s(&f.references) == v.references.trim()
        && f.fix_available.unwrap_or(false) == v.fix_available
        && s(&f.fix_version) == v.fix_version.as_deref().unwrap_or("").trim()
        && match (f.cvssv3_score, v.cvssv3_score) {
            (Some(a), Some(b)) => (a - b).abs() < 0.05,
            (None, None) => true,
            _ => false,
        }
}

/// Counts from DefectDojo's `statistics`: `delta` when it updated a test, only `after`
/// when it created one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stats {
    new_test: bool,
    created: u64,
    closed: u64,
    reactivated: u64,
    untouched: u64,
}

impl Stats {
    fn from(v: &serde_json::Value) -> Stats {
        let total = |bucket: &serde_json::Value| -> u64 {
            bucket
                .get("total")
                .and_then(|t| t.get("total"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        match v.get("delta") {
            Some(d) => Stats {
                new_test: false,
                created: d.get("created").map_or(0, total),
                closed: d.get("closed").map_or(0, total),
                reactivated: d.get("reactivated").map_or(0, total),
                untouched: d.get("untouched").map_or(0, total),
            },
            None => Stats {
                new_test: true,
                created: v.get("after").map_or(0, total),
                ..Stats::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_shapes() {
        let created = serde_json::json!({"after": {"total": {"active": 5, "total": 5}}});
        let s = Stats::from(&created);
        assert!(s.new_test);
        assert_eq!(s.created, 5);
        let updated = serde_json::json!({
            "before": {}, "after": {},
            "delta": {"created": {"total": {"total": 1}}, "closed": {"total": {"total": 2}},
                      "reactivated": {"total": {"total": 0}}, "untouched": {"total": {"total": 4}}}
        });
        let s = Stats::from(&updated);
        assert_eq!(
            (s.new_test, s.created, s.closed, s.untouched),
            (false, 1, 2, 4)
        );
    }
}
