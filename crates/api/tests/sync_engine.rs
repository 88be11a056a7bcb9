//! The sync engine against a small scripted Cal.com stand-in (no emulator, no HTTP API):
//! exact control over which call fails how, to pin the exactly-once rules — write-ahead,
//! reconcile-and-adopt after an unknown outcome, re-resolving a managed parent, review
//! reasons, cancel with "already cancelled". The emulator-based proofs live in `tests/`.

mod scripted_calcom;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::store::Database;
use phasebook_api::sync::fixtures::{self, FixtureSalon, FixtureStaff};
use phasebook_api::sync::{ClientSettings, SyncConfig, SyncHandle, Worker};
use phasebook_api::testing::TestDatabase;
use phasebook_domain::StaffId;
use phasebook_domain::sync::{AppointmentSyncStatus, RetryPolicy};
use scripted_calcom::{Fault, Shared, spawn_calcom};
use serde_json::{Value, json};
use uuid::Uuid;

struct World {
    db: Database,
    cal: Shared,
    worker: Worker,
    handle: SyncHandle,
    salon: FixtureSalon,
    _database: TestDatabase,
}

const BASE: i64 = 1000;

/// SQLite always; PostgreSQL too when `DATABASE_URL` points at a server.
async fn databases() -> Vec<TestDatabase> {
    let mut out = vec![TestDatabase::sqlite()];
    if let Some(pg) = TestDatabase::postgres_from_env().await {
        out.push(pg);
    }
    out
}

async fn world(database: TestDatabase) -> World {
    let db = database.connect().await.expect("database");
    let cal: Shared = Arc::default();
    let base_url = spawn_calcom(cal.clone()).await;
    let anna = FixtureStaff {
        staff_id: StaffId::parse("anna").expect("id"),
        calcom_user_id: 7,
        calcom_username: "anna".into(),
    };
    let salon = fixtures::seed_salon(
        &db,
        &base_url,
        "cal_key",
        "colour",
        fixtures::segments(4, 30, 0),
        vec![anna.clone()],
    )
    .await
    .expect("salon");
    for (i, segment) in salon.segments.iter().enumerate() {
        let et = BASE + i as i64;
        fixtures::put_event_map(
            &db,
            salon.tenant_id,
            &salon.service_id,
            &segment.key,
            &anna.staff_id,
            et,
            et,
        )
        .await
        .expect("map");
    }
    let handle = SyncHandle::for_database(&db);
    let config = SyncConfig {
        worker_id: "test-worker".into(),
        lease: Duration::from_secs(30),
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            min_delay: Duration::from_millis(5),
        },
        client: ClientSettings {
            timeout: Duration::from_millis(700),
            read_retries: 0,
            ..ClientSettings::default()
        },
        ..SyncConfig::default()
    };
    let worker = Worker::new(handle.clone(), config).with_jitter(|| 0.5);
    World {
        db,
        cal,
        worker,
        handle,
        salon,
        _database: database,
    }
}

impl World {
    fn tenant(&self) -> Uuid {
        self.salon.tenant_id
    }

    /// Books four 30-minute segments on 2030-01-`day` from 09:00 UTC.
    async fn appointment(&self, day: u32) -> Uuid {
        let start = Utc
            .with_ymd_and_hms(2030, 1, day, 9, 0, 0)
            .single()
            .expect("start");
        let anna = StaffId::parse("anna").expect("id");
        fixtures::book(&self.db, &self.salon, &anna, start)
            .await
            .expect("book")
    }

    async fn drain(&self) {
        let left = self
            .worker
            .run_until_idle(Duration::from_secs(20))
            .await
            .expect("run");
        assert_eq!(left, 0, "jobs left outstanding");
    }

    fn bookings_for(&self, appointment: Uuid) -> Vec<Value> {
        self.cal
            .lock()
            .expect("lock")
            .bookings
            .iter()
            .filter(|b| b["metadata"]["phasebook_appointment"] == json!(appointment.to_string()))
            .cloned()
            .collect()
    }

    async fn view(&self, appointment: Uuid) -> phasebook_api::store::sync::SyncView {
        self.handle
            .store()
            .sync_view(self.tenant(), appointment)
            .await
            .expect("view")
            .expect("exists")
    }

    async fn cancel(&self, appointment: Uuid) {
        self.db
            .store()
            .cancel_appointment(self.tenant(), appointment, Utc::now())
            .await
            .expect("cancel")
            .expect("exists");
        self.handle
            .store()
            .request_sync(self.tenant(), appointment, Utc::now(), false)
            .await
            .expect("request");
    }
}

#[tokio::test]
async fn every_segment_is_booked_once_with_uid_and_id_stored() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(7).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced);
        assert!(!view.requires_manual_review);
        let bookings = w.bookings_for(id);
        assert_eq!(bookings.len(), 4);
        for segment in &view.segments {
            let booking = bookings
                .iter()
                .find(|b| b["metadata"]["phasebook_segment"] == json!(segment.key))
                .expect("booking for segment");
            assert_eq!(
                segment.calcom_booking_uid.as_deref(),
                booking["uid"].as_str()
            );
            assert_eq!(segment.calcom_booking_id, booking["id"].as_i64());
            assert_eq!(
                booking["metadata"]["phasebook_tenant"],
                json!(w.tenant().to_string())
            );
        }
        // Every create was written down before it was sent and completed after.
        assert_eq!(view.attempts.len(), 4);
        assert!(
            view.attempts
                .iter()
                .all(|a| a.outcome.as_deref() == Some("created"))
        );
    }
}

#[tokio::test]
async fn a_lost_response_is_adopted_not_booked_twice() {
    for database in databases().await {
        let w = world(database).await;
        w.cal
            .lock()
            .expect("lock")
            .faults
            .extend([Fault::Lost, Fault::Server, Fault::Lost]);
        let id = w.appointment(8).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.bookings_for(id).len(), 4, "no duplicates");
        let adopted = view
            .attempts
            .iter()
            .filter(|a| a.operation == "reconcile" && a.outcome.as_deref() == Some("adopted"))
            .count();
        assert_eq!(
            adopted, 2,
            "both lost creates were adopted: {:#?}",
            view.attempts
        );
    }
}

#[tokio::test]
async fn rate_limits_wait_and_do_not_use_up_attempts() {
    for database in databases().await {
        let w = world(database).await;
        w.cal
            .lock()
            .expect("lock")
            .faults
            .extend([Fault::RateLimited; 6]);
        let id = w.appointment(9).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.bookings_for(id).len(), 4);
    }
}

#[tokio::test]
async fn a_managed_parent_without_child_needs_review_naming_parent_user_and_fix() {
    for database in databases().await {
        let w = world(database).await;
        w.cal.lock().expect("lock").parents.push(BASE + 1);
        let id = w.appointment(10).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview);
        assert!(view.requires_manual_review);
        let reason = view.review_reason.expect("reason");
        assert!(
            reason.contains(&format!("Event type {} is a managed parent", BASE + 1)),
            "{reason}"
        );
        assert!(reason.contains("anna"), "{reason}");
        assert!(reason.contains("segment B"), "{reason}");
        // The other three segments are booked; B is not.
        assert_eq!(w.bookings_for(id).len(), 3);
    }
}

#[tokio::test]
async fn a_busy_host_needs_review_and_a_resync_after_the_fix_books_it() {
    for database in databases().await {
        let w = world(database).await;
        // Somebody else holds segment A's time on that event type.
        w.cal.lock().expect("lock").bookings.push(json!({
            "id": 999, "uid": "foreign", "title": "x", "status": "accepted",
            "start": "2030-01-11T09:00:00.000Z", "end": "2030-01-11T09:30:00.000Z",
            "eventTypeId": BASE, "metadata": {}
        }));
        let id = w.appointment(11).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview);
        let reason = view.review_reason.clone().expect("reason");
        assert!(reason.contains("busy or unavailable"), "{reason}");
        assert!(reason.contains("segment A"), "{reason}");
        assert!(
            reason.contains("2030-01-11 10:00 Europe/Berlin"),
            "{reason}"
        );
        // Ops frees the time and resyncs (twice): A is booked, nothing twice.
        w.cal
            .lock()
            .expect("lock")
            .bookings
            .retain(|b| b["uid"] != "foreign");
        for _ in 0..2 {
            w.handle
                .store()
                .request_sync(w.tenant(), id, Utc::now(), true)
                .await
                .expect("resync");
            w.drain().await;
        }
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert!(!view.requires_manual_review);
        assert_eq!(view.review_reason, None);
        assert_eq!(w.bookings_for(id).len(), 4);
    }
}

#[tokio::test]
async fn cancelling_cancels_every_booking_even_when_the_answer_is_lost() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(12).await;
        w.drain().await;
        w.cal.lock().expect("lock").lose_cancels = 2;
        w.cancel(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Cancelled, "{view:#?}");
        assert!(
            w.bookings_for(id)
                .iter()
                .all(|b| b["status"] == "cancelled")
        );
        assert!(
            view.attempts
                .iter()
                .any(|a| a.outcome.as_deref() == Some("already_cancelled")),
            "a lost cancel answer is retried and counts as done"
        );
    }
}

#[tokio::test]
async fn a_job_leased_by_a_dead_worker_is_taken_over_after_the_lease() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(13).await;
        // A worker that dies right after claiming (lease 100 ms, never finishes).
        let claimed = w
            .handle
            .store()
            .claim_jobs(
                "dead",
                Utc::now(),
                Utc::now() + TimeDelta::milliseconds(100),
                10,
            )
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            w.worker.run_pending_jobs().await.expect("run"),
            0,
            "leased elsewhere"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        w.drain().await;
        assert_eq!(w.view(id).await.status, AppointmentSyncStatus::Synced);
        assert_eq!(w.bookings_for(id).len(), 4);
    }
}
