//! Leader election on a `coordination.k8s.io/v1` Lease: of any number of replicas, one
//! watches and exports; the others wait and take over when the leader stops renewing.
//!
//! Every write is a replace conditioned on the Lease's resourceVersion, so two replicas
//! racing for an expired Lease cannot both win: the loser gets 409 Conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::config::LeaderConfig;

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    renew: Duration,
}

/// Where the lease lives and who we are, from config or the Pod's environment.
pub fn identity_and_namespace(cfg: &LeaderConfig) -> (String, String) {
    let identity = cfg
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("trivy-digest-{}", std::process::id()));
    let namespace = cfg
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "default".into());
    (identity, namespace)
}

impl Elector {
    pub fn new(client: Client, cfg: &LeaderConfig) -> Elector {
        let (identity, namespace) = identity_and_namespace(cfg);
        Elector {
            api: Api::namespaced(client, &namespace),
            name: cfg.lease_name.clone(),
            identity,
            duration: cfg.lease_duration.0,
            renew: cfg.renew_interval.0,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: acquire, renew or observe. Ok(true) while we hold the Lease.
    pub async fn try_lead(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = if holder == self.identity {
            let acquired = spec.acquire_time.as_ref().map_or(now, |t| t.0);
            self.spec(acquired, now, transitions)
        } else if holder.is_empty() || expired(&spec, now) {
            self.spec(now, now, transitions + 1)
        } else {
            return Ok(false);
        };
        let mut updated = lease;
        updated.spec = Some(next);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote the Lease since we read it.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mine = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !mine {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Runs until `shutdown`, publishing whether we lead. Leadership is given up when a
    /// renewal has not succeeded within the lease duration (the others may have taken it).
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_ok: Option<std::time::Instant> = None;
        loop {
            match self.try_lead(Timestamp::now()).await {
                Ok(true) => {
                    last_ok = Some(std::time::Instant::now());
                    if !*leading.borrow() {
                        tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                    }
                    leading.send_replace(true);
                }
                Ok(false) => {
                    if *leading.borrow() {
                        tracing::warn!(identity = %self.identity, "lost the lease to another replica");
                    }
                    last_ok = None;
                    leading.send_replace(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    let stale = last_ok.is_none_or(|t| t.elapsed() >= self.duration);
                    if stale && *leading.borrow() {
                        tracing::warn!("stepping down: the lease could not be renewed in time");
                        leading.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew) => {}
                _ = shutdown.changed() => {
                    if *leading.borrow() && let Err(e) = self.release().await {
                        tracing::warn!(error = %e, "could not release the lease");
                    }
                    leading.send_replace(false);
                    return;
                }
            }
        }
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    now.as_second() - renewed.0.as_second() >= secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use crate::kube_fixture::FakeKube;

    fn cfg(identity: &str, duration_ms: u64, renew_ms: u64) -> LeaderConfig {
        LeaderConfig {
            enabled: true,
            namespace: Some("ops".into()),
            lease_name: "trivy-digest".into(),
            lease_duration: HumanDuration(Duration::from_millis(duration_ms)),
            renew_interval: HumanDuration(Duration::from_millis(renew_ms)),
            identity: Some(identity.into()),
        }
    }

    fn holder(fake: &FakeKube) -> Option<String> {
        fake.lock()
            .leases
            .get(&("ops".to_string(), "trivy-digest".to_string()))
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("timestamp")
    }

    #[tokio::test]
    async fn creates_renews_and_respects_a_fresh_holder() {
        let (client, fake) = FakeKube::start();
        let a = Elector::new(client.clone(), &cfg("a", 15_000, 5_000));
        let b = Elector::new(client, &cfg("b", 15_000, 5_000));
        let t0 = 1_800_000_000;
        assert!(a.try_lead(ts(t0)).await.expect("create"));
        assert_eq!(holder(&fake).as_deref(), Some("a"));
        // b sees a fresh lease held by a: no write.
        let writes = fake.lock().requests.len();
        assert!(!b.try_lead(ts(t0 + 5)).await.expect("observe"));
        assert_eq!(fake.lock().requests.len(), writes + 1, "only a GET");
        // a renews; acquire time stays, renew time moves.
        assert!(a.try_lead(ts(t0 + 5)).await.expect("renew"));
        let lease = fake.lock().leases.values().next().cloned().expect("lease");
        assert_eq!(lease["spec"]["leaseTransitions"], 0);
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
        assert_ne!(lease["spec"]["acquireTime"], lease["spec"]["renewTime"]);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_once() {
        let (client, fake) = FakeKube::start();
        let a = Elector::new(client.clone(), &cfg("a", 15_000, 5_000));
        let b = Elector::new(client.clone(), &cfg("b", 15_000, 5_000));
        let c = Elector::new(client, &cfg("c", 15_000, 5_000));
        let t0 = 1_800_000_000;
        assert!(a.try_lead(ts(t0)).await.expect("create"));
        // a stopped renewing 20 s ago.
        assert!(b.try_lead(ts(t0 + 20)).await.expect("take over"));
        assert_eq!(holder(&fake).as_deref(), Some("b"));
        let lease = fake.lock().leases.values().next().cloned().expect("lease");
        assert_eq!(lease["spec"]["leaseTransitions"], 1);
        // c arrives at the same moment and finds b's fresh lease.
        assert!(!c.try_lead(ts(t0 + 20)).await.expect("fresh now"));
        // a comes back: b holds a fresh lease.
        assert!(!a.try_lead(ts(t0 + 21)).await.expect("observe"));
    }

    #[tokio::test]
    async fn a_write_conflict_means_not_leading() {
        let (client, fake) = FakeKube::start();
        let a = Elector::new(client.clone(), &cfg("a", 15_000, 5_000));
        let b = Elector::new(client, &cfg("b", 15_000, 5_000));
        let t0 = 1_800_000_000;
        assert!(a.try_lead(ts(t0)).await.expect("create"));
        // b finds the lease expired, but another writer replaces it between b's GET and
        // PUT: the API answers 409 and b must not believe it leads.
        fake.lock().conflict_next_put = true;
        assert!(
            !b.try_lead(ts(t0 + 60))
                .await
                .expect("conflict is not an error")
        );
        assert_eq!(holder(&fake).as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn the_standby_takes_over_within_the_lease_duration() {
        let (client, fake) = FakeKube::start();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (a_tx, a_rx) = watch::channel(false);
        let (b_tx, mut b_rx) = watch::channel(false);
        let a = Elector::new(client.clone(), &cfg("a", 2_000, 200));
        let b = Elector::new(client, &cfg("b", 2_000, 200));
        let a_task = tokio::spawn(a.run(a_tx, stop_rx.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b_task = tokio::spawn(b.run(b_tx, stop_rx.clone()));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(*a_rx.borrow(), "a leads");
        assert!(!*b_rx.borrow(), "never two leaders");
        // a dies without releasing.
        a_task.abort();
        let died = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), b_rx.wait_for(|l| *l))
            .await
            .expect("b takes over")
            .expect("channel");
        let took = died.elapsed();
        assert!(took <= Duration::from_millis(2_000 + 400), "took {took:?}");
        assert_eq!(holder(&fake).as_deref(), Some("b"));
        // A clean shutdown releases the lease for the next one.
        stop_tx.send_replace(true);
        b_task.await.expect("b stops");
        assert_eq!(holder(&fake), None);
    }
}
