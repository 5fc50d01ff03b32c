//! The DefectDojo export as an output: plan what changed since DefectDojo last
//! acknowledged it, queue it in the outbox (in one transaction), deliver the outbox.
//! In `run` a change wakes it after one `export_interval` (so a burst of events makes one
//! push per test), and the idle timer retries whatever waits in the outbox.

use std::sync::Arc;

use anyhow::Result;
use futures_util::future::BoxFuture;
use serde::Serialize;

use super::owner::Owner;
use super::{DojoClient, ExportReport, Outcome, Ownership, PlanStats, outbox};
use crate::config::{Config, DojoConfig};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::output::{Context, Kind, Output, Problem, Report, Step, Wake};

pub struct DojoOutput {
    cfg: DojoConfig,
    cluster: String,
    fleet: String,
    client: DojoClient,
    /// Push every test again, whatever DefectDojo acknowledged before (`scan --resync`).
    resync: bool,
    export_interval: std::time::Duration,
    metrics: Option<Arc<Metrics>>,
}

/// What one export did.
#[derive(Debug, Default, Serialize)]
pub struct DojoRun {
    pub plan: PlanStats,
    /// Pushes refused earlier for the same content, not sent again.
    pub still_refused: Vec<String>,
    #[serde(flatten)]
    pub export: ExportReport,
}

impl DojoRun {
    pub fn problems(&self) -> Vec<Problem> {
        let mut out: Vec<Problem> = self
            .export
            .tests
            .iter()
            .filter_map(|t| match &t.result {
                Outcome::Refused { error } => Some(Problem {
                    reason: "ExportRefused",
                    message: format!("{}: {error}", t.test),
                }),
                Outcome::NotOurs { error, .. } => Some(Problem {
                    reason: "TestOwnedElsewhere",
                    message: error.clone(),
                }),
                _ => None,
            })
            .collect();
        if let Some(why) = &self.export.stopped {
            out.push(Problem {
                reason: "ExportStopped",
                message: why.clone(),
            });
        }
        out
    }
}

impl DojoOutput {
    /// `None` without a `defectdojo` section.
    pub fn new(
        config: &Config,
        resync: bool,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Option<DojoOutput>> {
        let Some(cfg) = config.defectdojo.clone() else {
            return Ok(None);
        };
        Ok(Some(DojoOutput {
            client: DojoClient::new(&cfg)?,
            cfg,
            cluster: config.cluster.clone(),
            fleet: config.fleet.clone(),
            resync,
            export_interval: config.run.export_interval.0,
            metrics,
        }))
    }

    async fn export(&self, ctx: Context<'_>) -> Result<Step> {
        let now = ctx.now.timestamp();
        let resync = self.resync;
        // A fleet store's tests hold every cluster's workloads: `{{ fleet }}` names them.
        let fleet = if ctx.store.is_fleet() {
            self.fleet.as_str()
        } else {
            ""
        };
        let mut still_refused = Vec::new();
        let plan = ctx.store.write(|conn| {
            super::plan(conn, &self.cfg, &self.cluster, fleet, resync, &mut |t| {
                match outbox::enqueue(conn, &t, now, resync)? {
                    outbox::Enqueued::StillRefused(e) => {
                        tracing::debug!(test = %t.title, error = %e, "refused earlier; not resent yet");
                        still_refused.push(format!("{}: {e}", t.title));
                    }
                    outbox::Enqueued::RetryRefused => {
                        tracing::info!(test = %t.title, "refused earlier; sending again to see whether DefectDojo takes it now");
                    }
                    outbox::Enqueued::New | outbox::Enqueued::Replaced => {}
                }
                Ok(())
            })
        })?;
        if plan.reimports + plan.syncs > 0 {
            tracing::info!(
                reimports = plan.reimports,
                patches = plan.syncs,
                unchanged = plan.unchanged,
                "DefectDojo: pushing changes"
            );
        }
        for l in &plan.left_alone {
            tracing::warn!(test = %l, "DefectDojo test no longer produced by the mapping; left as it is");
        }
        // A fleet's tests are the fleet's, whichever cluster's leader pushes.
        let ownership = Ownership {
            owner: Owner {
                store: ctx.store.identity()?,
                cluster: if ctx.store.is_fleet() {
                    self.fleet.clone()
                } else {
                    self.cluster.clone()
                },
            },
            adopt_tests: self.cfg.adopt_tests,
            predecessors: crate::store::copy::predecessors(ctx.store)?,
        };
        let export = super::deliver(
            &mut *ctx.store,
            &self.client,
            &ownership,
            self.cfg.concurrency,
            now,
            ctx.stopping,
        )
        .await?;
        if let Some(why) = &export.stopped {
            tracing::error!(reason = %why, "DefectDojo export stopped; retrying next interval");
        }
        if let Some(m) = &self.metrics {
            for t in &export.tests {
                let outcome = match &t.result {
                    Outcome::Done { .. } => {
                        m.last_dojo_push_timestamp_seconds
                            .set(chrono::Utc::now().timestamp() as f64);
                        "done"
                    }
                    Outcome::Refused { .. } => "refused",
                    Outcome::NotOurs { .. } => "not_ours",
                    Outcome::Pending { .. } => "pending",
                };
                m.exports
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .inc();
            }
            let (pending, _) = outbox::depth(ctx.store.conn())?;
            m.outbox_depth.set(pending as i64);
            let oldest =
                outbox::oldest_pending_age(ctx.store.conn(), chrono::Utc::now().timestamp())?;
            m.outbox_oldest_pending_seconds.set(oldest.unwrap_or(0));
        }
        Ok(Step {
            report: Report::DefectDojo(DojoRun {
                plan,
                still_refused,
                export,
            }),
            next: None,
        })
    }
}

impl Output for DojoOutput {
    fn kind(&self) -> Kind {
        Kind::DefectDojo
    }

    fn wake(&self) -> Wake {
        let i = self.export_interval;
        Wake {
            debounce: Some(i),
            // Idle for one interval, then the debounce: the outbox is retried every two.
            idle: Some(i),
            first: i,
            retry: i,
        }
    }

    fn step<'a>(&'a self, ctx: Context<'a>) -> BoxFuture<'a, Result<Step>> {
        Box::pin(self.export(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Family;
    use crate::output::dojo::{Action, TestOutcome};

    #[test]
    fn a_test_owned_by_another_store_is_a_problem_of_its_own() {
        let outcome = |result| TestOutcome {
            product_type: "Kubernetes".into(),
            product: "platform".into(),
            engagement: "trivy-digest".into(),
            test: "ghcr.io/org/api".into(),
            family: Family::Vulnerability,
            action: Action::Reimport,
            findings: 3,
            result,
        };
        let run = DojoRun {
            export: ExportReport {
                tests: vec![
                    outcome(Outcome::NotOurs {
                        dd_test_id: 4,
                        owner: None,
                        error: "DefectDojo test 4 belongs to cluster \"a\"".into(),
                    }),
                    outcome(Outcome::Refused {
                        error: "HTTP 400".into(),
                    }),
                ],
                ..ExportReport::default()
            },
            ..DojoRun::default()
        };
        let problems: Vec<(&str, String)> = run
            .problems()
            .into_iter()
            .map(|p| (p.reason, p.message))
            .collect();
        assert_eq!(
            problems,
            vec![
                (
                    "TestOwnedElsewhere",
                    "DefectDojo test 4 belongs to cluster \"a\"".to_owned()
                ),
                ("ExportRefused", "ghcr.io/org/api: HTTP 400".to_owned()),
            ]
        );
    }
}
