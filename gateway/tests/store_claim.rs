//! Several gateways on one PostgreSQL store claim its queue (DESIGN §11): every queued
//! job is claimed by exactly one of them, however many claim at once.

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shipwatch_gateway::store::{NoPublisher, StoreError};
use shipwatch_protocol::{EventBody, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_gateways_claiming_100_queued_jobs_at_once_claim_each_exactly_once() {
    let site = StoreSite::new(Engine::Postgres);
    let mut gateways = Vec::new();
    for _ in 0..10 {
        gateways.push(site.open(u64::MAX, Arc::new(NoPublisher)).await);
    }
    let mut queued = BTreeSet::new();
    for _ in 0..100 {
        let job = gateways[0]
            .create_job(spec(&["a"]), BTreeMap::new(), "alice")
            .await
            .unwrap();
        queued.insert(job.id);
    }
    let claimers: Vec<_> = gateways
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store.claim_next(&format!("gw-{i}")).await.unwrap() {
                    mine.push(job);
                }
                mine
            })
        })
        .collect();
    let mut claims = Vec::new();
    let mut claimed_by = BTreeMap::new();
    for (i, claimer) in claimers.into_iter().enumerate() {
        let mine = claimer.await.unwrap();
        for job in &mine {
            claimed_by.insert(*job, format!("gw-{i}"));
        }
        claims.extend(mine);
    }
    assert_eq!(claims.len(), 100, "each job claimed once, none twice");
    let distinct: BTreeSet<u64> = claims.iter().copied().collect();
    assert_eq!(distinct, queued);
    let db = site.server().unwrap();
    let name = site_database(&site);
    for row in db
        .psql(&name, "SELECT id, claimed_by FROM jobs ORDER BY id")
        .lines()
    {
        let (id, by) = row.split_once('|').unwrap();
        assert_eq!(
            claimed_by.get(&id.parse::<u64>().unwrap()),
            Some(&by.to_string())
        );
    }
    assert_eq!(gateways[3].claim_next("gw-3").await.unwrap(), None);

    // A job queued again (its runner never started it) can be claimed again.
    let again = claims[0];
    gateways[0]
        .gateway_event(
            again,
            EventBody::Job {
                state: JobState::Queued,
                reason: Some("runner gone before it started".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(gateways[7].claim_next("gw-7").await.unwrap(), Some(again));
}

#[tokio::test]
async fn an_sqlite_store_has_no_claims() {
    let site = StoreSite::new(Engine::Sqlite);
    let store = site.open(u64::MAX, Arc::new(NoPublisher)).await;
    assert!(matches!(
        store.claim_next("gw").await,
        Err(StoreError::NotShared)
    ));
}

fn site_database(site: &StoreSite) -> String {
    match site.location() {
        shipwatch_config::StoreLocation::Postgres(url) => url.dbname,
        shipwatch_config::StoreLocation::Sqlite => unreachable!("a PostgreSQL site"),
    }
}
