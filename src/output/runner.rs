//! Drives the outputs. In `run`, one task per output while this replica leads: it wakes
//! the output as its [`Wake`] says, gives a step the shutdown grace on stop, cancels it at
//! once when leadership is lost (the next leader may already be starting; the store keeps
//! what was not done), paces failures, and turns each step into metrics and Events. In
//! `scan`, [`once`] runs each output one time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Clock, Context, Kind, Output, Problem, Report, Step};
use crate::events::Events;
use crate::flag::until;
use crate::metrics::{Metrics, OutputLabel, OutputRunLabel};
use crate::store::{Store, query};

/// The longest wait between failed steps.
pub const MAX_PACING: Duration = Duration::from_secs(300);
/// How often a task checks whether a step is due (a change, a timer).
const POLL: Duration = Duration::from_millis(100);

/// What the outputs share in `run`.
#[derive(Clone)]
pub struct Runner {
    pub store: crate::store::StoreLocation,
    pub shutdown_grace: Duration,
    pub metrics: Option<Arc<Metrics>>,
    pub events: Option<Arc<Events>>,
    pub clock: Clock,
    /// In a fleet store: the lease term the outputs' writes must still hold.
    pub fence: Option<crate::store::lease::Fence>,
}

/// The flags the outputs run under.
#[derive(Clone)]
pub struct Signals {
    pub stop: watch::Receiver<bool>,
    pub leading: watch::Receiver<bool>,
    /// Every watched kind listed once.
    pub listed: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Bumped by the controller after each store write.
    pub changes: Option<watch::Receiver<u64>>,
}

impl Runner {
    /// The runner `run` uses, on the system clock.
    pub fn new(
        config: &crate::config::Config,
        metrics: Option<Arc<Metrics>>,
        events: Option<Arc<Events>>,
    ) -> Runner {
        Runner {
            store: config.store.clone(),
            shutdown_grace: config.run.shutdown_grace.0,
            metrics,
            events,
            clock: super::system_clock(),
            fence: None,
        }
    }

    /// Runs every output until stop or leadership loss; returns when all have stopped.
    pub async fn run(&self, outputs: Vec<Arc<dyn Output>>, signals: Signals) {
        let mut tasks = tokio::task::JoinSet::new();
        for o in outputs {
            let (me, sig) = (self.clone(), signals.clone());
            tasks.spawn(async move {
                let kind = o.kind();
                (kind, me.drive(o, sig).await)
            });
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((_, Ok(()))) => {}
                Ok((kind, Err(e))) => tracing::error!(output = %kind, "stopped: {e:#}"),
                Err(e) if !e.is_cancelled() => tracing::error!("output task: {e}"),
                Err(_) => {}
            }
        }
    }

    /// Runs one output until stop or leadership loss; an error only when it cannot start
    /// (its store does not open).
    pub async fn drive(&self, output: Arc<dyn Output>, mut sig: Signals) -> Result<()> {
        let kind = output.kind();
        let wake = output.wake();
        let mut store = Store::open_at(&self.store)?;
        store.fence(self.fence.clone());
        let poll = wake
            .debounce
            .map_or(POLL, |d| POLL.min(d.max(Duration::from_millis(10))));
        let mut seen = query::last_event_id(store.conn())?;
        let mut due: Option<Instant> = Some(Instant::now() + wake.first);
        let mut last_step = Instant::now();
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                biased;
                _ = until(&mut sig.stop, true) => return Ok(()),
                _ = until(&mut sig.leading, false) => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
            }
            let now = Instant::now();
            if let Some(debounce) = wake.debounce {
                let signalled = sig.changes.as_mut().is_some_and(|c| {
                    let changed = c.has_changed().unwrap_or(false);
                    c.mark_unchanged();
                    changed
                });
                let last = match query::last_event_id(store.conn()) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(output = %kind, "reading the store: {e:#}");
                        seen
                    }
                };
                if signalled || last > seen {
                    seen = seen.max(last);
                    due.get_or_insert(now + debounce);
                }
                if wake.idle.is_some_and(|i| now >= last_step + i) {
                    due.get_or_insert(now + debounce);
                }
            } else if wake.idle.is_some_and(|i| now >= last_step + i) {
                due.get_or_insert(now);
            }
            if due.is_none_or(|d| now < d) {
                continue;
            }
            due = None;
            let Some(result) = self.step_in_run(&*output, &mut store, &mut sig).await else {
                return Ok(());
            };
            last_step = Instant::now();
            let next = match result {
                Ok(step) => {
                    failures = 0;
                    if !step.report.waiting() {
                        self.account(kind, Ok(&step.report)).await;
                    }
                    step.next
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(output = %kind, "{e:#}");
                    self.account(kind, Err(&e)).await;
                    Some(pacing(wake.retry, failures))
                }
            };
            if let Some(n) = next {
                let at = last_step + n;
                due = Some(due.map_or(at, |d| d.min(at)));
            }
            if *sig.stop.borrow() {
                return Ok(());
            }
        }
    }

    /// One step under the run's rules; `None` when it was cut (shutdown grace over, or
    /// leadership lost) and the task should end.
    async fn step_in_run(
        &self,
        output: &dyn Output,
        store: &mut Store,
        sig: &mut Signals,
    ) -> Option<Result<Step>> {
        let kind = output.kind();
        let (stop_rx, lead_rx) = (sig.stop.clone(), sig.leading.clone());
        let stopping = move || *stop_rx.borrow() || !*lead_rx.borrow();
        let ctx = Context {
            store,
            now: (self.clock)(),
            stopping: &stopping,
            listed: (sig.listed)(),
        };
        let mut stop_then_grace = sig.stop.clone();
        let grace = self.shutdown_grace;
        let deadline = async move {
            until(&mut stop_then_grace, true).await;
            tokio::time::sleep(grace).await;
        };
        let mut leading = sig.leading.clone();
        tokio::select! {
            r = output.step(ctx) => Some(r),
            _ = deadline => {
                tracing::warn!(output = %kind, "shutdown grace over: unfinished work stays queued in the store");
                None
            }
            _ = until(&mut leading, false) => {
                // Another replica may lead as soon as the lease runs out: stop now.
                tracing::warn!(output = %kind, "leadership lost: step cut short; the next leader finds its work queued");
                None
            }
        }
    }

    /// Metrics, logs and Events of one step.
    async fn account(&self, kind: Kind, result: Result<&Report, &anyhow::Error>) {
        let problems = match result {
            Ok(r) => r.problems(),
            Err(e) => vec![Problem {
                reason: kind.failed_reason(),
                message: format!("{e:#}"),
            }],
        };
        let outcome = match (&result, problems.is_empty()) {
            (Err(_), _) => "failed",
            (Ok(_), true) => "ok",
            (Ok(_), false) => "problems",
        };
        if let Some(m) = &self.metrics {
            m.output_runs
                .get_or_create(&OutputRunLabel {
                    output: kind.as_str().into(),
                    outcome: outcome.into(),
                })
                .inc();
            if outcome == "ok" {
                m.output_last_ok_timestamp_seconds
                    .get_or_create(&OutputLabel {
                        output: kind.as_str().into(),
                    })
                    .set(chrono::Utc::now().timestamp() as f64);
            }
        }
        if let Some(ev) = &self.events {
            for p in problems {
                ev.publish(true, p.reason, kind.action(), p.message).await;
            }
        }
    }
}

/// The wait after `failures` failed steps in a row.
pub fn pacing(retry: Duration, failures: u32) -> Duration {
    let doubled = retry.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_PACING.max(retry))
}

/// `scan`: each output once, in order, never stopping early.
pub async fn once(
    outputs: &[Arc<dyn Output>],
    store: &mut Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(Kind, Result<Report>)> {
    let mut out = Vec::new();
    for o in outputs {
        let ctx = Context {
            store: &mut *store,
            now,
            stopping: &|| false,
            listed: true,
        };
        out.push((o.kind(), o.step(ctx).await.map(|s| s.report)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Wake;
    use crate::output::alert::AlertSummary;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An output whose steps never finish (a push to a server that hangs).
    struct Hangs {
        started: Arc<AtomicU32>,
    }

    impl Output for Hangs {
        fn kind(&self) -> Kind {
            Kind::Alerts
        }
        fn wake(&self) -> Wake {
            Wake {
                debounce: None,
                idle: None,
                first: Duration::ZERO,
                retry: Duration::from_secs(1),
            }
        }
        fn step<'a>(&'a self, _ctx: Context<'a>) -> BoxFuture<'a, Result<Step>> {
            self.started.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                std::future::pending::<()>().await;
                Ok(Step {
                    report: Report::Alerts(AlertSummary::default()),
                    next: None,
                })
            })
        }
    }

    fn runner(dir: &std::path::Path, grace: Duration) -> Runner {
        Runner {
            store: dir.join("store.db").into(),
            shutdown_grace: grace,
            metrics: None,
            events: None,
            clock: crate::output::system_clock(),
            fence: None,
        }
    }

    fn signals(stop: &watch::Sender<bool>, lead: &watch::Sender<bool>) -> Signals {
        Signals {
            stop: stop.subscribe(),
            leading: lead.subscribe(),
            listed: Arc::new(|| true),
            changes: None,
        }
    }

    /// A runner driving `Hangs` with this grace, once its first step has started.
    struct Hanging {
        _dir: tempfile::TempDir,
        started: Arc<AtomicU32>,
        stop: watch::Sender<bool>,
        lead: watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<()>>,
    }

    async fn hanging(grace: Duration) -> Hanging {
        let dir = tempfile::tempdir().expect("dir");
        let started = Arc::new(AtomicU32::new(0));
        let (stop, lead) = (watch::channel(false).0, watch::channel(true).0);
        let r = runner(dir.path(), grace);
        let out: Arc<dyn Output> = Arc::new(Hangs {
            started: started.clone(),
        });
        let sig = signals(&stop, &lead);
        let task = tokio::spawn(async move { r.drive(out, sig).await });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Hanging {
            _dir: dir,
            started,
            stop,
            lead,
            task,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_loss_cuts_the_step_in_flight_at_once() {
        // A long shutdown grace: on leadership loss it must not be waited for.
        // Every field is kept: a dropped sender reads as stop or leadership lost.
        let h = hanging(Duration::from_secs(3600)).await;
        let (lead, task) = (&h.lead, h.task);
        let lost_at = Instant::now();
        lead.send_replace(false);
        task.await.expect("join").expect("drive");
        // Paused time: only the loop's own polling may pass, never the grace.
        assert!(
            lost_at.elapsed() < Duration::from_secs(1),
            "{:?}",
            lost_at.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_gives_the_step_in_flight_the_shutdown_grace() {
        let h = hanging(Duration::from_secs(30)).await;
        let (started_n, stop, task) = (&h.started, &h.stop, h.task);
        let stopped_at = Instant::now();
        stop.send_replace(true);
        task.await.expect("join").expect("drive");
        let waited = stopped_at.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "{waited:?}"
        );
        assert_eq!(
            started_n.load(Ordering::SeqCst),
            1,
            "no new step after stop"
        );
    }

    #[test]
    fn pacing_doubles_up_to_the_cap_and_never_below_retry() {
        let s = Duration::from_secs;
        assert_eq!(pacing(s(10), 1), s(10));
        assert_eq!(pacing(s(10), 2), s(20));
        assert_eq!(pacing(s(10), 3), s(40));
        assert_eq!(pacing(s(10), 30), s(300));
        // A retry longer than the cap (a summary's hour) is kept as it is.
        assert_eq!(pacing(s(3600), 5), s(3600));
    }
}
