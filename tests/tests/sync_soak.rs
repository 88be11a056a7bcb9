//! Fault soak: 300 four-segment appointments synced by the background worker against the
//! Cal.com emulator with server errors, hangs, lost answers and 429s switched on, on
//! SQLite and (when `DATABASE_URL` is set) PostgreSQL; then every sixth is cancelled, faults
//! still on. After the queue drains every appointment is `synced` (or `cancelled`) or needs
//! review with a reason, and Cal.com holds exactly one active booking per synced segment —
//! the one whose uid and id we stored — the cancelled ones' bookings cancelled, and nothing
//! else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use calcom_sim::{Faults, RouteFaults};
use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::store::Database;
use phasebook_api::sync::SyncHandle;
use phasebook_domain::sync::AppointmentSyncStatus;
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use phasebook_test_support::{faulty_sim, soak_sync_config, spawn_sim, wait_until_idle};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const APPOINTMENTS: usize = 300;
const STYLISTS: usize = 10;

/// The faults every Cal.com route suffers during the soak (seeded: the same run each time
/// the requests come in the same order).
fn soak_faults() -> Faults {
    Faults::default()
        .with_seed(20_301)
        .route(
            "bookings.create",
            RouteFaults {
                error_rate: 0.06,
                hang_rate: 0.03,
                lost_response_rate: 0.08,
                rate_limited_rate: 0.03,
                ..RouteFaults::default()
            },
        )
        .route(
            "*",
            RouteFaults {
                error_rate: 0.04,
                hang_rate: 0.02,
                lost_response_rate: 0.03,
                rate_limited_rate: 0.02,
                ..RouteFaults::default()
            },
        )
}

/// Waits until no job is outstanding (bounded).
async fn drain(handle: &SyncHandle, backend: &str) {
    wait_until_idle(handle, Duration::from_secs(150), backend).await;
}

async fn a_fault_soak_ends_with_one_booking_per_synced_segment(database: TestDatabase) {
    let started = Instant::now();
    let backend = database.backend();
    let db: Database = database.connect().await.expect("database");
    let segments = fixtures::segments(4, 30, 0);
    let account = fixtures::sim_account(STYLISTS, &segments);
    let sim = spawn_sim(
        // Real throttling stays out of the way; an injected 429 says "retry in 1 s".
        faulty_sim(soak_faults()),
        account.seed.clone(),
    )
    .await;
    let salon = fixtures::seed_sim_salon(&db, &sim.base_url, &account, "colour", segments)
        .await
        .expect("salon");

    // Back-to-back two-hour appointments per stylist, from 2030-02-01.
    let first = Utc
        .with_ymd_and_hms(2030, 2, 1, 0, 0, 0)
        .single()
        .expect("start");
    let appointments = fixtures::book_in_turns(
        &db,
        &salon,
        &account.staff,
        APPOINTMENTS,
        first,
        TimeDelta::hours(2),
    )
    .await
    .expect("book");

    let handle = SyncHandle::for_database(&db);
    let stop = CancellationToken::new();
    let worker = handle.spawn_worker(
        soak_sync_config(&format!("soak-{backend}")),
        phasebook_api::sync::postgres_pool(&db),
        stop.clone(),
    );
    handle.wake();
    drain(&handle, backend).await;

    // Then every sixth appointment is cancelled, faults still on.
    let cancelled_appointments: Vec<Uuid> = appointments.iter().step_by(6).copied().collect();
    for id in &cancelled_appointments {
        db.store()
            .cancel_appointment(salon.tenant_id, *id, Utc::now())
            .await
            .expect("cancel")
            .expect("exists");
        handle
            .store()
            .request_sync(salon.tenant_id, *id, Utc::now(), false)
            .await
            .expect("queue the cancellation");
    }
    handle.wake();
    drain(&handle, backend).await;
    stop.cancel();
    worker.await.expect("worker");

    let state = sim.state();
    let mut views = Vec::new();
    let mut by_status: HashMap<String, usize> = HashMap::new();
    let mut adopted = 0;
    for id in &appointments {
        let view = handle
            .store()
            .sync_view(salon.tenant_id, *id)
            .await
            .expect("view")
            .expect("exists");
        *by_status.entry(view.status.to_string()).or_default() += 1;
        adopted += view
            .attempts
            .iter()
            .filter(|a| a.outcome.as_deref() == Some("adopted"))
            .count();
        let cancelled = cancelled_appointments.contains(id);
        match view.status {
            AppointmentSyncStatus::Synced if !cancelled => assert!(!view.requires_manual_review),
            AppointmentSyncStatus::Cancelled if cancelled => {
                assert!(!view.requires_manual_review)
            }
            AppointmentSyncStatus::NeedsReview => {
                assert!(view.requires_manual_review);
                let reason = view.review_reason.as_deref().unwrap_or_default();
                assert!(
                    reason.contains("POST /resync/"),
                    "an actionable reason: {reason}"
                );
            }
            other => panic!("appointment {id} ended {other} on {backend}: {view:#?}"),
        }
        views.push(view);
    }
    let counted = fixtures::check_exactly_once(&views, &state)
        .unwrap_or_else(|broken| panic!("on {backend}: {broken}"));
    let synced_segments = counted.synced_segments;

    let faults: Vec<String> = state
        .requests
        .iter()
        .map(|(route, c)| {
            format!(
                "{route}: {} requests, {} hung, {} answered 429, by status {:?}",
                c.total, c.hung, c.rate_limited, c.by_status
            )
        })
        .collect();
    println!(
        "soak on {backend}: {APPOINTMENTS} appointments x 4 segments in {:.1} s; {by_status:?}; \
         {synced_segments} segments booked, {adopted} adopted after a lost answer, \
         {} cancelled with their appointment\n  {}",
        started.elapsed().as_secs_f64(),
        counted.cancelled_bookings,
        faults.join("\n  ")
    );
    sim.shutdown().await;
}

phasebook_test_support::on_both_backends!(a_fault_soak_ends_with_one_booking_per_synced_segment);
