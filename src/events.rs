//! Kubernetes Events on our own Pod, so `kubectl describe pod` shows what needs a human:
//! leadership changes and DefectDojo refusing pushes or the token. Without a Pod identity
//! (running outside a cluster) nothing is published.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

pub struct Events {
    recorder: Recorder,
    pod: ObjectReference,
}

impl Events {
    /// From `POD_NAME` and `POD_NAMESPACE` (the chart sets both from the downward API).
    pub fn from_env(client: kube::Client) -> Option<Events> {
        let name = std::env::var("POD_NAME").ok()?;
        let namespace = std::env::var("POD_NAMESPACE").ok()?;
        Some(Events::new(client, &namespace, &name))
    }

    pub fn new(client: kube::Client, namespace: &str, pod: &str) -> Events {
        let reporter = Reporter {
            controller: "trivy-digest".into(),
            instance: Some(pod.to_owned()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            pod: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectReference::default()
            },
        }
    }

    /// Publishes; a failure is logged, never raised (events are a convenience).
    pub async fn publish(&self, warning: bool, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            // The API caps notes at 1 KiB.
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &self.pod).await {
            tracing::debug!(error = %e, reason, "could not publish a Kubernetes Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_fixture::FakeKube;

    #[tokio::test]
    async fn events_name_our_pod() {
        let (client, fake) = FakeKube::start();
        let ev = Events::new(client, "ops", "trivy-digest-0");
        ev.publish(
            true,
            "ExportRefused",
            "Export",
            "ghcr.io/org/api: HTTP 400".into(),
        )
        .await;
        let events = fake.lock().events.clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["reason"], "ExportRefused");
        assert_eq!(events[0]["type"], "Warning");
        assert_eq!(events[0]["regarding"]["name"], "trivy-digest-0");
        assert_eq!(events[0]["reportingController"], "trivy-digest");
        assert_eq!(events[0]["note"], "ghcr.io/org/api: HTTP 400");
    }
}
