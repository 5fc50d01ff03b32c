//! The outputs of a fleet store: this cluster's leader runs them only while it holds the
//! store's lease (store::lease), so one replica of one cluster does DefectDojo, alerts
//! and summaries for every cluster. The lease is renewed every third of its length; a
//! renewal that fails or finds it taken ends the term at once, and the outputs' stores
//! are fenced with its token, so even a late write of a lost term is refused.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::flag::until;
use crate::output::Output;
use crate::output::runner::{Runner, Signals};
use crate::store::lease::{self, Fence};
use crate::store::{Store, StoreLocation};

/// This replica's name in the lease: its cluster, pod (HOSTNAME) and process.
pub fn holder(cluster: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{cluster}/{host}/{}", std::process::id())
}

/// Keeps the lease while `leading` (this cluster's election) holds and until `stop`;
/// publishes the fence while held, None otherwise. Releases it on the way out.
pub async fn keep_lease(
    location: StoreLocation,
    holder: String,
    ttl: Duration,
    fence: watch::Sender<Option<Fence>>,
    mut stop: watch::Receiver<bool>,
    mut leading: watch::Receiver<bool>,
) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut store: Option<Store> = None;
    loop {
        if *stop.borrow() || !*leading.borrow() {
            break;
        }
        let s = match store.as_mut() {
            Some(s) => s,
            None => match Store::open_at(&location) {
                Ok(s) => store.insert(s),
                Err(e) => {
                    tracing::warn!("fleet lease: cannot open the store: {e:#}");
                    fence.send_replace(None);
                    wait(every, &mut stop, &mut leading).await;
                    continue;
                }
            },
        };
        let now = match lease::acquire(s, lease::OUTPUTS, &holder, ttl_ms) {
            Ok(Some(token)) => Some(Fence {
                name: lease::OUTPUTS.into(),
                holder: holder.clone(),
                token,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("fleet lease: renewal failed: {e:#}");
                // A broken connection is opened again next time.
                store = None;
                None
            }
        };
        let before = fence.borrow().clone();
        if before != now {
            match (&before, &now) {
                (_, Some(f)) => tracing::info!(
                    holder = %f.holder,
                    token = f.token,
                    "fleet lease taken: this replica runs the outputs for every cluster"
                ),
                (Some(_), None) => tracing::warn!("fleet lease lost: the outputs stop"),
                (None, None) => {}
            }
            fence.send_replace(now);
        } else if now.is_none() && before.is_none() {
            tracing::debug!("fleet lease held by another replica");
        }
        wait(every, &mut stop, &mut leading).await;
    }
    let held = fence.send_replace(None);
    if let (Some(f), Some(s)) = (held, store.as_mut())
        && let Err(e) = lease::release(s, &f)
    {
        tracing::warn!("fleet lease: release failed (it expires on its own): {e:#}");
    }
}

async fn wait(d: Duration, stop: &mut watch::Receiver<bool>, leading: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = until(stop, true) => {}
        _ = until(leading, false) => {}
    }
}

/// Runs the outputs for each term of the lease, fenced with its token, until stop or
/// the end of this cluster's leadership.
pub async fn drive_outputs(
    runner: Runner,
    outputs: Vec<Arc<dyn Output>>,
    signals: Signals,
    mut fence: watch::Receiver<Option<Fence>>,
) {
    let mut stop = signals.stop.clone();
    let mut leading = signals.leading.clone();
    loop {
        let term = loop {
            if *stop.borrow() || !*leading.borrow() {
                return;
            }
            if let Some(f) = fence.borrow_and_update().clone() {
                break f;
            }
            tokio::select! {
                r = fence.changed() => if r.is_err() { return },
                _ = until(&mut stop, true) => return,
                _ = until(&mut leading, false) => return,
            }
        };
        // This term lasts while the fence stays the same and this cluster leads.
        let (held_tx, held_rx) = watch::channel(true);
        let mut watch_fence = fence.clone();
        let mut cluster_leading = signals.leading.clone();
        let mine = term.clone();
        let ends = tokio::spawn(async move {
            loop {
                if watch_fence.borrow_and_update().as_ref() != Some(&mine) {
                    break;
                }
                tokio::select! {
                    r = watch_fence.changed() => if r.is_err() { break },
                    _ = until(&mut cluster_leading, false) => break,
                }
            }
            held_tx.send_replace(false);
        });
        let mut fenced = runner.clone();
        fenced.fence = Some(term);
        let term_signals = Signals {
            leading: held_rx,
            ..signals.clone()
        };
        fenced.run(outputs.clone(), term_signals).await;
        ends.abort();
    }
}
