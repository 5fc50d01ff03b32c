//! Prometheus metrics of the controller, served at `/metrics` (OpenMetrics text).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PinnedLabel {
    pub pinned: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    /// Channel name, or `team:<name>` for a team route.
    pub channel: String,
    /// `sent` or `failed`.
    pub outcome: String,
}

/// One output's runs by how they ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputRunLabel {
    /// `defectdojo`, `alerts`, `summary`.
    pub output: String,
    /// `ok`, `problems` (it ran; something was refused or failed to send), `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabel {
    pub output: String,
}

pub struct Metrics {
    registry: Registry,
    /// Report objects read (applied, listed) per kind.
    pub reports_seen: Family<KindLabel, Counter>,
    /// Report objects that could not be read, per kind.
    pub reports_skipped: Family<KindLabel, Counter>,
    /// Images with live workloads, by whether a digest pins them.
    pub images: Family<PinnedLabel, Gauge>,
    /// Open findings (deduplicated) by severity.
    pub findings_open: Family<SeverityLabel, Gauge>,
    /// DefectDojo pushes by outcome: done, refused, not_ours (another store owns the test),
    /// pending.
    pub exports: Family<OutcomeLabel, Counter>,
    pub outbox_depth: Gauge,
    pub outbox_oldest_pending_seconds: Gauge,
    pub alerts_sent: Counter,
    /// Alert messages by channel and outcome (sent, failed).
    pub alert_messages: Family<AlertLabel, Counter>,
    /// (destination, finding) alerts queued, not yet accepted by their channel.
    pub alerts_pending: Gauge,
    /// Destinations whose last send failed.
    pub alerts_failing_channels: Gauge,
    pub summaries_sent: Counter,
    /// Summary emails that could not be sent (after retries), to be tried again.
    pub summary_failures: Counter,
    /// Watch streams that failed and were restarted, per kind.
    pub watch_restarts: Family<KindLabel, Counter>,
    /// Full lists per kind: the first one, then one after each 410 Gone.
    pub relists: Family<KindLabel, Counter>,
    pub last_dojo_push_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// Runs of each output (DefectDojo export, alerts, summary) by outcome.
    pub output_runs: Family<OutputRunLabel, Counter>,
    /// Unix time each output last ran without a problem.
    pub output_last_ok_timestamp_seconds: Family<OutputLabel, Gauge<f64, AtomicU64>>,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// 1 once every watched kind has been listed.
    pub ready: Gauge,
    /// Always 1, labelled with the configured cluster name: dashboards join it to show
    /// findings per cluster when one Prometheus scrapes several clusters.
    pub cluster_info: Family<ClusterLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("trivy_digest");
        let m = Metrics {
            registry: Registry::default(),
            reports_seen: Family::default(),
            reports_skipped: Family::default(),
            images: Family::default(),
            findings_open: Family::default(),
            exports: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_pending_seconds: Gauge::default(),
            alerts_sent: Counter::default(),
            alert_messages: Family::default(),
            alerts_pending: Gauge::default(),
            alerts_failing_channels: Gauge::default(),
            summaries_sent: Counter::default(),
            summary_failures: Counter::default(),
            watch_restarts: Family::default(),
            relists: Family::default(),
            last_dojo_push_timestamp_seconds: Gauge::default(),
            output_runs: Family::default(),
            output_last_ok_timestamp_seconds: Family::default(),
            leader: Gauge::default(),
            ready: Gauge::default(),
            cluster_info: Family::default(),
        };
        registry.register(
            "reports_seen",
            "Report objects read, per kind",
            m.reports_seen.clone(),
        );
        registry.register(
            "reports_skipped",
            "Report objects that could not be read, per kind",
            m.reports_skipped.clone(),
        );
        registry.register(
            "images",
            "Images run by live workloads, by pinned (digest) or not",
            m.images.clone(),
        );
        registry.register(
            "findings_open",
            "Open findings after deduplication, by severity",
            m.findings_open.clone(),
        );
        registry.register(
            "exports",
            "DefectDojo pushes by outcome (done, refused, not_ours: the test belongs to another store, pending)",
            m.exports.clone(),
        );
        registry.register(
            "outbox_depth",
            "DefectDojo pushes waiting in the outbox",
            m.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest push waiting in the outbox",
            m.outbox_oldest_pending_seconds.clone(),
        );
        registry.register(
            "alerts_sent",
            "Alert messages accepted by their channel",
            m.alerts_sent.clone(),
        );
        registry.register(
            "alert_messages",
            "Alert messages by channel and outcome (sent, failed)",
            m.alert_messages.clone(),
        );
        registry.register(
            "alerts_pending",
            "New-finding alerts queued and not yet accepted by their channel",
            m.alerts_pending.clone(),
        );
        registry.register(
            "alerts_failing_channels",
            "Alert destinations whose last send failed",
            m.alerts_failing_channels.clone(),
        );
        registry.register(
            "summaries_sent",
            "Monthly summary emails accepted by the mail server",
            m.summaries_sent.clone(),
        );
        registry.register(
            "summary_failures",
            "Monthly summary emails the mail server did not take (after retries)",
            m.summary_failures.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watch streams that failed and were restarted, per kind",
            m.watch_restarts.clone(),
        );
        registry.register(
            "relists",
            "Full lists per kind: the first, then one after each 410 Gone",
            m.relists.clone(),
        );
        registry.register(
            "last_dojo_push_timestamp_seconds",
            "Unix time of the last push DefectDojo accepted",
            m.last_dojo_push_timestamp_seconds.clone(),
        );
        registry.register(
            "output_runs",
            "Runs of each output (defectdojo, alerts, summary) by outcome (ok, problems, failed)",
            m.output_runs.clone(),
        );
        registry.register(
            "output_last_ok_timestamp_seconds",
            "Unix time each output last ran without a problem",
            m.output_last_ok_timestamp_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        registry.register(
            "ready",
            "1 once every watched report kind has been listed",
            m.ready.clone(),
        );
        registry.register(
            "cluster_info",
            "Always 1; the label is the configured cluster name",
            m.cluster_info.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Records the configured cluster name (`trivy_digest_cluster_info{cluster}`).
    pub fn set_cluster(&self, cluster: &str) {
        self.cluster_info
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_owned(),
            })
            .set(1);
    }

    pub fn kind(kind: &str) -> KindLabel {
        KindLabel {
            kind: kind.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let m = Metrics::new();
        m.reports_seen
            .get_or_create(&Metrics::kind("VulnerabilityReport"))
            .inc();
        m.findings_open
            .get_or_create(&SeverityLabel {
                severity: "critical".into(),
            })
            .set(3);
        let text = m.encode();
        assert!(
            text.contains("trivy_digest_reports_seen_total{kind=\"VulnerabilityReport\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("trivy_digest_findings_open{severity=\"critical\"} 3"),
            "{text}"
        );
        assert!(text.contains("trivy_digest_outbox_depth 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
