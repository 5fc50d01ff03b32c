//! A lease row in the store: who runs the outputs for a whole fleet. The Kubernetes
//! Lease chooses one replica per cluster; this chooses one of those for every cluster
//! sharing the store, so DefectDojo, alerts and summaries are done once.
//!
//! Each new holder gets the next token (a fencing token). A store fenced with it
//! ([`Store::fence`]) checks the token inside every write transaction, under the write
//! lock, so a holder that lost the lease (a pause, a partition, an expired renewal) can
//! no longer change what the outputs record: its writes fail and it stops. Time is the
//! database server's, so the clusters' clocks need not agree.

use anyhow::{Result, bail};

use super::db::{Engine, OptionalExtension, params};
use super::{Db, Store};

/// The lease the outputs run under.
pub const OUTPUTS: &str = "outputs";

/// A holder's claim, as fenced writes check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    pub token: i64,
}

/// The lease lost (or never held): a fenced write refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "the fleet lease {name:?} is no longer held by {holder} (token {token}): another replica \
     now runs the outputs; this one stops writing"
)]
pub struct LeaseLost {
    pub name: String,
    pub holder: String,
    pub token: i64,
}

/// The database server's clock, in milliseconds.
pub fn server_now_ms(db: &Db) -> Result<i64> {
    let sql = match db.engine() {
        Engine::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Engine::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    };
    Ok(db.query_row(sql, [], |r| r.get(0))?)
}

/// Takes the lease for `holder` when it is free or expired, or renews it when `holder`
/// has it; `Some(token)` while held. Runs in its own write transaction.
pub fn acquire(store: &mut Store, name: &str, holder: &str, ttl_ms: i64) -> Result<Option<i64>> {
    store.write_lease(|db| {
        let now = server_now_ms(db)?;
        // The row locked until commit (PostgreSQL), so two replicas never both take it.
        let lock = match db.engine() {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        };
        let row: Option<(String, i64, i64)> = db
            .query_row(
                &format!("SELECT holder, token, expires_at FROM leases WHERE name = ?1{lock}"),
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let token = match row {
            None => {
                // Two first holders at once: one inserts, the other's insert does
                // nothing, and it takes no lease this round.
                let n = db.execute(
                    "INSERT INTO leases(name, holder, token, acquired_at, renewed_at, expires_at)
                     VALUES(?1, ?2, 1, ?3, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![name, holder, now, now + ttl_ms],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                1
            }
            Some((h, token, _)) if h == holder => {
                db.execute(
                    "UPDATE leases SET renewed_at = ?2, expires_at = ?3 WHERE name = ?1",
                    params![name, now, now + ttl_ms],
                )?;
                token
            }
            Some((_, token, expires)) if expires <= now => {
                db.execute(
                    "UPDATE leases SET holder = ?2, token = ?3, acquired_at = ?4,
                         renewed_at = ?4, expires_at = ?5
                     WHERE name = ?1",
                    params![name, holder, token + 1, now, now + ttl_ms],
                )?;
                token + 1
            }
            Some(_) => return Ok(None),
        };
        Ok(Some(token))
    })
}

/// Gives the lease up (on shutdown), so the next holder need not wait for it to expire.
pub fn release(store: &mut Store, fence: &Fence) -> Result<()> {
    store.write_lease(|db| {
        db.execute(
            "UPDATE leases SET expires_at = 0 WHERE name = ?1 AND holder = ?2 AND token = ?3",
            params![fence.name, fence.holder, fence.token],
        )?;
        Ok(())
    })
}

/// Who holds `name`, and until when (server milliseconds): for status and tests.
pub fn holder(store: &Store, name: &str) -> Result<Option<(String, i64, i64)>> {
    Ok(store
        .conn()
        .query_row(
            "SELECT holder, token, expires_at FROM leases WHERE name = ?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Inside a write transaction: fails unless `fence` still holds its lease.
pub(super) fn check(db: &Db, fence: &Fence) -> Result<()> {
    let now = server_now_ms(db)?;
    // FOR SHARE (PostgreSQL): a takeover (FOR UPDATE) waits until this write committed,
    // so no write of an old holder lands after its successor took over.
    let lock = match db.engine() {
        Engine::Postgres => " FOR SHARE",
        Engine::Sqlite => "",
    };
    let held = db
        .query_row(
            &format!(
                "SELECT 1 FROM leases WHERE name = ?1 AND holder = ?2 AND token = ?3
                   AND expires_at > ?4{lock}"
            ),
            params![fence.name, fence.holder, fence.token, now],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    if held.is_none() {
        bail!(LeaseLost {
            name: fence.name.clone(),
            holder: fence.holder.clone(),
            token: fence.token,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_each_new_holder_a_higher_token() {
        let mut store = Store::open_in_memory().expect("store");
        assert_eq!(
            acquire(&mut store, OUTPUTS, "a", 60_000).expect("a"),
            Some(1)
        );
        assert_eq!(acquire(&mut store, OUTPUTS, "b", 60_000).expect("b"), None);
        assert_eq!(
            acquire(&mut store, OUTPUTS, "a", 60_000).expect("renew"),
            Some(1)
        );
        // a's writes pass the fence; b's would not.
        let a = Fence {
            name: OUTPUTS.into(),
            holder: "a".into(),
            token: 1,
        };
        store.fence(Some(a.clone()));
        store.write(|_| Ok(())).expect("a writes");
        // a lets go: b takes it with token 2, and a's fenced writes now fail.
        store.fence(None);
        release(&mut store, &a).expect("release");
        assert_eq!(
            acquire(&mut store, OUTPUTS, "b", 60_000).expect("b"),
            Some(2)
        );
        store.fence(Some(a));
        let e = store.write(|_| Ok(())).expect_err("a is fenced off");
        assert!(e.downcast_ref::<LeaseLost>().is_some(), "{e:#}");
        // An expired lease is free.
        store.fence(None);
        assert_eq!(acquire(&mut store, OUTPUTS, "b", -1).expect("b"), Some(2));
        assert_eq!(
            acquire(&mut store, OUTPUTS, "c", 60_000).expect("c"),
            Some(3)
        );
    }
}
