//! Leader election on a `coordination.k8s.io/v1` Lease: of any number of replicas, one
//! watches and exports; the others wait and take over when the leader stops renewing.
//!
//! Every write is a replace conditioned on the Lease's resourceVersion, so two replicas
//! racing for an expired Lease cannot both win: the loser gets 409 Conflict.
//!
//! Leadership cannot split, whatever the network or the nodes' clocks do:
//! - a standby judges expiry by its own monotonic clock: a Lease is expired once the same
//!   record (holder, renew time, resourceVersion) has been seen unchanged for a whole
//!   lease duration since this replica first saw it; the holder's `renewTime` is never
//!   compared with the local clock, so node clock skew does not matter;
//! - the leader bounds every renewal by a deadline (two thirds of the lease duration,
//!   client-go's ratio) counted from the start of its last successful renewal, and steps
//!   down when the deadline passes, even while a request hangs (kube's client has no read
//!   timeout). A standby first sees a renewal after it was written, so it cannot take
//!   over before one whole duration after the start of that renewal: the old leader has
//!   stopped a third of a duration earlier.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The Lease record as last seen, and when it was first seen (this replica's clock).
    observed: Mutex<Option<(Record, Instant)>>,
}

/// What changes on every write of a Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<String>,
    resource_version: Option<String>,
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
            observed: Mutex::new(None),
        }
    }

    /// How long after the start of its last successful renewal a leader steps down.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// True when `record` has been seen unchanged for `duration` by `clock`.
    fn expired(&self, record: Record, duration: Duration, clock: Instant) -> bool {
        let mut seen = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match seen.as_ref() {
            Some((r, since)) if *r == record => clock.saturating_duration_since(*since) >= duration,
            _ => {
                *seen = Some((record, clock));
                false
            }
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: acquire, renew or observe. Ok(true) while we hold the Lease. `now` is
    /// written into the Lease; `clock` is this replica's monotonic time, used for expiry.
    pub async fn try_lead(&self, now: Timestamp, clock: Instant) -> Result<bool, kube::Error> {
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
        let record = Record {
            holder: holder.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            resource_version: lease.metadata.resource_version.clone(),
        };
        // The holder's own declared duration: a replica configured differently still
        // waits as long as the holder promised to renew within.
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(15).max(1)).unwrap_or(15),
        );
        let next = if holder == self.identity {
            let acquired = spec.acquire_time.as_ref().map_or(now, |t| t.0);
            self.spec(acquired, now, transitions)
        } else if holder.is_empty() || self.expired(record, duration, clock) {
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

    /// Runs until `shutdown`, publishing whether we lead. Leadership is given up when no
    /// renewal has succeeded within the renew deadline, before any standby can take it.
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let deadline = self.renew_deadline();
        // When the last successful renewal started: the Lease says we renewed then.
        let mut renewed: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let step_down_at = renewed.map(|r| r + deadline);
            // A leader's attempt may not outlive its deadline; a standby's is bounded too,
            // so a hung request does not stall the loop.
            let budget = step_down_at.map_or(deadline, |t| t.saturating_duration_since(started));
            let attempt =
                tokio::time::timeout(budget, self.try_lead(Timestamp::now(), started)).await;
            match attempt {
                Ok(Ok(true)) => {
                    renewed = Some(started);
                    if !*leading.borrow() {
                        tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                    }
                    leading.send_replace(true);
                }
                Ok(Ok(false)) => {
                    if *leading.borrow() {
                        tracing::warn!(identity = %self.identity, "lost the lease to another replica");
                    }
                    renewed = None;
                    leading.send_replace(false);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => tracing::warn!(
                    timeout = ?budget,
                    "lease request did not answer in time"
                ),
            }
            let now = Instant::now();
            if step_down_at.is_some_and(|t| now >= t) && renewed.is_some_and(|r| r < started) {
                tracing::warn!(
                    identity = %self.identity,
                    deadline = ?deadline,
                    "stepping down: the lease could not be renewed before the deadline"
                );
                renewed = None;
                leading.send_replace(false);
            }
            // A leader wakes for its deadline even if that comes before the next renewal.
            let pause = renewed.map_or(self.renew, |r| {
                self.renew
                    .min((r + deadline).saturating_duration_since(now))
            });
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {
                    if *leading.borrow() {
                        match tokio::time::timeout(deadline, self.release()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease"),
                            Err(_) => tracing::warn!("releasing the lease did not answer in time"),
                        }
                    }
                    leading.send_replace(false);
                    return;
                }
            }
        }
    }
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

    /// This replica's clock, `secs` after a fixed start.
    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn creates_renews_and_respects_a_fresh_holder() {
        let (client, fake) = FakeKube::start();
        let a = Elector::new(client.clone(), &cfg("a", 15_000, 5_000));
        let b = Elector::new(client, &cfg("b", 15_000, 5_000));
        let (t0, c0) = (1_800_000_000, Instant::now());
        assert!(a.try_lead(ts(t0), c0).await.expect("create"));
        assert_eq!(holder(&fake).as_deref(), Some("a"));
        // b sees a fresh lease held by a: no write.
        let writes = fake.lock().requests.len();
        assert!(!b.try_lead(ts(t0 + 5), at(c0, 5)).await.expect("observe"));
        assert_eq!(fake.lock().requests.len(), writes + 1, "only a GET");
        // a renews; acquire time stays, renew time moves.
        assert!(a.try_lead(ts(t0 + 5), at(c0, 5)).await.expect("renew"));
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
        let (t0, c0) = (1_800_000_000, Instant::now());
        assert!(a.try_lead(ts(t0), c0).await.expect("create"));
        // b first sees a's record now; a then stops renewing.
        assert!(!b.try_lead(ts(t0 + 1), at(c0, 1)).await.expect("observe"));
        assert!(
            !b.try_lead(ts(t0 + 15), at(c0, 15))
                .await
                .expect("14 s unchanged")
        );
        // 15 s of b's own clock with the record unchanged: expired.
        assert!(
            b.try_lead(ts(t0 + 16), at(c0, 16))
                .await
                .expect("take over")
        );
        assert_eq!(holder(&fake).as_deref(), Some("b"));
        let lease = fake.lock().leases.values().next().cloned().expect("lease");
        assert_eq!(lease["spec"]["leaseTransitions"], 1);
        // c arrives at the same moment and finds b's fresh lease.
        assert!(
            !c.try_lead(ts(t0 + 16), at(c0, 16))
                .await
                .expect("fresh now")
        );
        // a comes back: b holds a fresh lease.
        assert!(!a.try_lead(ts(t0 + 17), at(c0, 17)).await.expect("observe"));
    }

    /// Expiry is judged by this replica's clock, never by comparing the holder's
    /// `renewTime` with it: node clocks may disagree by minutes.
    #[tokio::test]
    async fn clock_skew_between_nodes_changes_nothing() {
        let (client, fake) = FakeKube::start();
        let a = Elector::new(client.clone(), &cfg("a", 15_000, 5_000));
        let b = Elector::new(client, &cfg("b", 15_000, 5_000));
        let c0 = Instant::now();
        // a's node clock is an hour behind b's: every renewTime it writes looks stale.
        let skewed = 1_800_000_000 - 3_600;
        assert!(a.try_lead(ts(skewed), c0).await.expect("create"));
        for s in 1..40 {
            if s % 5 == 0 {
                assert!(
                    a.try_lead(ts(skewed + s as i64), at(c0, s))
                        .await
                        .expect("renew")
                );
            }
            assert!(
                !b.try_lead(ts(1_800_000_000 + s as i64), at(c0, s))
                    .await
                    .expect("observe"),
                "b took a live lease at {s} s"
            );
        }
        assert_eq!(holder(&fake).as_deref(), Some("a"));
        // a's clock an hour ahead: a renewTime in the future does not hold the lease
        // once a stops renewing.
        let (client2, _) = fake.connect();
        let d = Elector::new(client2, &cfg("d", 15_000, 5_000));
        assert!(
            !d.try_lead(ts(1_800_000_000), at(c0, 40))
                .await
                .expect("observe")
        );
        assert!(
            d.try_lead(ts(1_800_000_016), at(c0, 56))
                .await
                .expect("take over")
        );
    }

    #[tokio::test]
    async fn a_write_conflict_means_not_leading() {
        let (client, fake) = FakeKube::start();
        let a = Elector::new(client.clone(), &cfg("a", 15_000, 5_000));
        let b = Elector::new(client, &cfg("b", 15_000, 5_000));
        let (t0, c0) = (1_800_000_000, Instant::now());
        assert!(a.try_lead(ts(t0), c0).await.expect("create"));
        assert!(!b.try_lead(ts(t0), c0).await.expect("observe"));
        // b finds the lease expired, but another writer replaces it between b's GET and
        // PUT: the API answers 409 and b must not believe it leads.
        fake.lock().conflict_next_put = true;
        assert!(
            !b.try_lead(ts(t0 + 60), at(c0, 60))
                .await
                .expect("conflict is not an error")
        );
        assert_eq!(holder(&fake).as_deref(), Some("a"));
    }

    /// The leader's renewal hangs (a half-open connection): it steps down at its renew
    /// deadline, before the standby, which still sees the old record, takes over.
    #[tokio::test]
    async fn a_hung_renewal_steps_down_before_the_standby_takes_over() {
        let (_, fake) = FakeKube::start();
        let (a_client, a_hang) = fake.connect();
        let (b_client, _) = fake.connect();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (a_tx, mut a_rx) = watch::channel(false);
        let (b_tx, mut b_rx) = watch::channel(false);
        let a = Elector::new(a_client, &cfg("a", 1_500, 100));
        let b = Elector::new(b_client, &cfg("b", 1_500, 100));
        let a_task = tokio::spawn(a.run(a_tx, stop_rx.clone()));
        a_rx.wait_for(|l| *l).await.expect("a leads");
        let b_task = tokio::spawn(b.run(b_tx, stop_rx.clone()));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!*b_rx.borrow(), "never two leaders");

        a_hang.store(true, std::sync::atomic::Ordering::SeqCst);
        let a_down = tokio::spawn(async move {
            a_rx.wait_for(|l| !*l).await.expect("a steps down");
            Instant::now()
        });
        let b_up = tokio::spawn(async move {
            b_rx.wait_for(|l| *l).await.expect("b takes over");
            Instant::now()
        });
        let a_down = tokio::time::timeout(Duration::from_secs(10), a_down)
            .await
            .expect("a steps down in time")
            .expect("task");
        let b_up = tokio::time::timeout(Duration::from_secs(10), b_up)
            .await
            .expect("b takes over in time")
            .expect("task");
        assert!(
            a_down < b_up,
            "the old leader stopped {:?} after the standby started",
            a_down.saturating_duration_since(b_up)
        );
        assert_eq!(holder(&fake).as_deref(), Some("b"));
        stop_tx.send_replace(true);
        b_task.await.expect("b stops");
        a_task.abort();
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
