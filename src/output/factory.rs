//! Builds the outputs the configuration asks for: the one place that names them all.
//! Adding an output means a module beside `dojo`, `alert` and `summary` implementing
//! [`Output`], a [`Kind`], a [`Report`] variant, and a line in [`build`].

use std::sync::Arc;

use super::alert::{AlertOutput, AlertSummary};
use super::dojo::output::{DojoOutput, DojoRun};
use super::summary::output::SummaryOutput;
use super::summary::schedule::Tick;
use super::{Output, Problem};
use crate::config::Config;
use crate::metrics::Metrics;

/// Which output: its name in metrics (`output` label), Events and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    DefectDojo,
    Alerts,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DefectDojo => "defectdojo",
            Kind::Alerts => "alerts",
            Kind::Summary => "summary",
        }
    }

    /// The Event's action.
    pub fn action(self) -> &'static str {
        match self {
            Kind::DefectDojo => "Export",
            Kind::Alerts => "Alert",
            Kind::Summary => "Summary",
        }
    }

    /// The Event's reason when a step fails as a whole.
    pub fn failed_reason(self) -> &'static str {
        match self {
            Kind::DefectDojo => "ExportFailed",
            Kind::Alerts => "AlertFailed",
            Kind::Summary => "SummaryFailed",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step of each output reports: printed by `scan`, turned into Events and
/// metrics by the runner.
#[derive(Debug)]
pub enum Report {
    DefectDojo(DojoRun),
    Alerts(AlertSummary),
    Summary(Tick),
}

impl Report {
    /// Nothing was done yet (alerts waiting for the first full list): not counted.
    pub fn waiting(&self) -> bool {
        matches!(self, Report::Alerts(a) if a.plan.waiting_for_baseline)
    }

    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Report::DefectDojo(r) => r.problems(),
            Report::Alerts(r) => r.problems(),
            Report::Summary(r) => r.problems(),
        }
    }
}

/// Which command the outputs are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `scan`: DefectDojo and alerts, once each. The monthly summary is left to `run`
    /// and `summary --send`, so a scan never mails one on its own.
    Scan {
        /// Push every test again, whatever DefectDojo acknowledged before.
        resync: bool,
    },
    /// `run`: every output, driven by the runner.
    Run,
}

/// The outputs, in the order a scan runs them (DefectDojo first: its read-back of
/// triage and test ids informs the alerts), and those that could not be built.
#[derive(Default)]
pub struct Built {
    pub outputs: Vec<Arc<dyn Output>>,
    /// Set up but broken (a bad SMTP host, an unusable client): the others still run.
    pub failed: Vec<(Kind, anyhow::Error)>,
}

impl Built {
    pub fn failed(&self, kind: Kind) -> Option<&anyhow::Error> {
        self.failed.iter().find(|(k, _)| *k == kind).map(|(_, e)| e)
    }
}

/// Builds every configured output; one that is not configured is absent.
pub fn build(config: &Config, mode: Mode, metrics: Option<Arc<Metrics>>) -> Built {
    let mut built = Built::default();
    let mut add = |kind: Kind, r: anyhow::Result<Option<Arc<dyn Output>>>| match r {
        Ok(Some(o)) => built.outputs.push(o),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(output = %kind, "cannot set up: {e:#}");
            built.failed.push((kind, e));
        }
    };
    let resync = matches!(mode, Mode::Scan { resync: true });
    add(
        Kind::DefectDojo,
        DojoOutput::new(config, resync, metrics.clone()).map(|o| o.map(as_dyn)),
    );
    add(
        Kind::Alerts,
        AlertOutput::new(config, metrics.clone()).map(|o| o.map(as_dyn)),
    );
    if mode == Mode::Run {
        add(
            Kind::Summary,
            SummaryOutput::new(config, metrics).map(|o| o.map(as_dyn)),
        );
    }
    built
}

fn as_dyn<O: Output + 'static>(o: O) -> Arc<dyn Output> {
    Arc::new(o)
}
