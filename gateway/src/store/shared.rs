//! The store as several gateways share it (DESIGN §11, PostgreSQL only): the queue's
//! claims, each gateway's heartbeat, and the jobs of a gateway that stopped.

use std::time::Duration;

use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{JobId, JobState};

use super::{Database, Store, StoreError};

/// A running job whose gateway stopped heartbeating past the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedJob {
    pub job: JobId,
    /// The gateway that held it.
    pub gateway: String,
}

impl Store {
    /// The PostgreSQL side, or [`StoreError::NotShared`].
    fn shared(&self) -> Result<&std::sync::Arc<super::pg::Postgres>, StoreError> {
        match &self.inner.db {
            Database::Postgres(pg) => Ok(pg),
            Database::Sqlite(_) => Err(StoreError::NotShared),
        }
    }

    /// Claims the oldest queued job no gateway has claimed yet for `gateway`, so of
    /// several gateways sharing a PostgreSQL store exactly one runs it (DESIGN §11). A
    /// claim ends when the job is queued again. `None`: nothing is left to claim. The
    /// SQLite store belongs to one gateway, which owns its queue: [`StoreError::NotShared`].
    pub async fn claim_next(&self, gateway: &str) -> Result<Option<JobId>, StoreError> {
        self.claim_next_except(gateway, &[]).await
    }

    /// Like [`Store::claim_next`], passing over jobs of `busy` tasks (at their
    /// `concurrency`).
    pub async fn claim_next_except(
        &self,
        gateway: &str,
        busy: &[String],
    ) -> Result<Option<JobId>, StoreError> {
        let pg = self.shared()?;
        let (gateway, busy) = (gateway.to_string(), busy.to_vec());
        pg.read(move |c| {
            // SKIP LOCKED passes over a row another gateway is claiming this instant
            // instead of waiting for it, so gateways claiming at once each get another job.
            Ok(c.query_opt(
                "UPDATE jobs SET claimed_by = $1 WHERE id = (\
                   SELECT id FROM jobs WHERE state = 'queued' AND claimed_by IS NULL \
                   AND NOT (task = ANY($2)) \
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id",
                &[&gateway, &busy],
            )?
            .map(|r| r.get::<_, i64>(0) as JobId))
        })
        .await
    }

    /// Gives a claimed job back to the queue without an event (its runner went before
    /// it was assigned).
    pub async fn release_claim(&self, job: JobId) -> Result<(), StoreError> {
        let pg = self.shared()?;
        pg.read(move |c| {
            c.execute(
                "UPDATE jobs SET claimed_by = NULL WHERE id = $1 AND state = 'queued'",
                &[&(job as i64)],
            )?;
            Ok(())
        })
        .await
    }

    /// Says `gateway` is alive, now, by the database's clock.
    pub async fn heartbeat(&self, gateway: &str) -> Result<(), StoreError> {
        let pg = self.shared()?;
        let gateway = gateway.to_string();
        pg.read(move |c| {
            c.execute(
                "INSERT INTO gateways (id, seen) VALUES ($1, now()) \
                 ON CONFLICT (id) DO UPDATE SET seen = now()",
                &[&gateway],
            )?;
            Ok(())
        })
        .await
    }

    /// The running jobs of gateways other than `me` silent for longer than `lease`, for a
    /// survivor to mark `lost`; their queued claims go back to the queue. One gateway at
    /// a time looks (an advisory lock; the others get none), and a gateway is forgotten
    /// once nothing of it runs.
    pub async fn orphaned_jobs(
        &self,
        me: &str,
        lease: Duration,
    ) -> Result<Vec<OrphanedJob>, StoreError> {
        let pg = self.shared()?;
        let me = me.to_string();
        let lease_ms = lease.as_millis() as i64;
        pg.read(move |c| {
            let mut tx = c.transaction()?;
            let locked: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LEASE_LOCK])?
                .get(0);
            if !locked {
                return Ok(Vec::new());
            }
            let dead = "SELECT id FROM gateways WHERE id <> $1 \
                        AND seen < now() - $2::int8 * interval '1 millisecond'";
            tx.execute(
                &format!(
                    "UPDATE jobs SET claimed_by = NULL WHERE state = 'queued' \
                     AND claimed_by IN ({dead})"
                ),
                &[&me, &lease_ms],
            )?;
            let orphans: Vec<OrphanedJob> = tx
                .query(
                    &format!(
                        "SELECT id, claimed_by FROM jobs WHERE state = 'running' \
                         AND claimed_by IN ({dead}) ORDER BY id"
                    ),
                    &[&me, &lease_ms],
                )?
                .iter()
                .map(|r| OrphanedJob {
                    job: r.get::<_, i64>(0) as JobId,
                    gateway: r.get(1),
                })
                .collect();
            tx.execute(
                &format!(
                    "DELETE FROM gateways WHERE id IN ({dead}) AND NOT EXISTS \
                     (SELECT 1 FROM jobs WHERE state = 'running' AND claimed_by = gateways.id)"
                ),
                &[&me, &lease_ms],
            )?;
            tx.commit()?;
            Ok(orphans)
        })
        .await
    }

    /// Jobs in one of `states` this gateway holds, oldest first: on a shared store those
    /// `gateway` claimed (or nobody did); on SQLite every one.
    pub async fn jobs_held_by(
        &self,
        gateway: &str,
        states: &[JobState],
    ) -> Result<Vec<JobView>, StoreError> {
        let mut jobs = self.jobs_in_state(states).await?;
        let Database::Postgres(pg) = &self.inner.db else {
            return Ok(jobs);
        };
        let gateway = gateway.to_string();
        let ids: Vec<i64> = jobs.iter().map(|j| j.id as i64).collect();
        let others: Vec<JobId> = pg
            .read(move |c| {
                Ok(c.query(
                    "SELECT id FROM jobs WHERE id = ANY($1) AND claimed_by IS NOT NULL \
                     AND claimed_by <> $2",
                    &[&ids, &gateway],
                )?
                .iter()
                .map(|r| r.get::<_, i64>(0) as JobId)
                .collect())
            })
            .await?;
        jobs.retain(|j| !others.contains(&j.id));
        Ok(jobs)
    }
}

/// Any 64-bit number of our own: the lock one survivor at a time takes to look for the
/// jobs of gateways that stopped.
const LEASE_LOCK: i64 = 0x5348_4950_5741_5402;
