//! The sync engine against the Cal.com emulator (`calcom_sim`, real HTTP on loopback), the
//! worker driven directly (no HTTP API): the exactly-once rules — write-ahead,
//! reconcile-and-adopt after an unknown outcome, re-resolving a managed parent, review
//! reasons, cancel with "already cancelled", resync re-creating a booking that vanished.
//! Faults are the emulator's own (switched on for one run, then off), so every test is
//! deterministic.

use std::time::Duration;

use calcom_sim::{BookingRecord, BookingStatus, Faults, RouteFaults, SeedBooking, SeedEventType};
use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::sync::{ClientSettings, SyncConfig, SyncHandle, Worker};
use phasebook_domain::StaffId;
use phasebook_domain::sync::AppointmentSyncStatus;
use phasebook_domain::sync::breaker::BreakerPolicy;
use phasebook_test_support::app::Seeded;
use phasebook_test_support::fixtures;
use phasebook_test_support::{TestApp, TestDatabase, databases, fast_sync_config, faulty_sim};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A salon on the emulator, not serving (see `phasebook_test_support::app`), and a
/// worker the test drives itself.
struct World {
    salon_app: Seeded,
    worker: Worker,
    handle: SyncHandle,
}

phasebook_test_support::deref_to!(World => salon_app: Seeded);

/// A managed parent of the fixture team with no child at all (the incident: hosts added
/// after the parent existed, and Cal.com never made their children).
const CHILDLESS_PARENT: i64 = 9001;

async fn world(database: TestDatabase) -> World {
    // Most tests switch Cal.com off for a run and count attempts: the circuit breaker (its
    // own test below) would make their jobs wait for a probe instead.
    world_with(database, None).await
}

async fn world_with(database: TestDatabase, breaker: Option<BreakerPolicy>) -> World {
    // Two stylists; the salon's Cal.com key acts as the first (the team's owner).
    let salon_app = TestApp::builder()
        .stylists(2)
        // Throttling itself stays out of the way; an injected 429 says "retry in 1 s".
        .sim(faulty_sim(Faults::default()))
        .account(|account| {
            account.seed.event_types.push(SeedEventType::managed(
                CHILDLESS_PARENT,
                fixtures::SIM_TEAM_ID,
                "segment-b",
                30,
                &[],
            ));
        })
        .without_worker()
        .seed(database)
        .await;
    let handle = SyncHandle::for_database(&salon_app.db);
    let mut config = fast_sync_config("test-worker");
    config.lease = Duration::from_secs(30);
    config.poll_interval = SyncConfig::default().poll_interval;
    config.retry.max_attempts = 5;
    config.breaker = breaker;
    let worker = Worker::new(handle.clone(), config).with_jitter(|| 0.5);
    World {
        salon_app,
        worker,
        handle,
    }
}

impl World {
    fn tenant(&self) -> Uuid {
        self.salon.tenant_id
    }

    /// Maps segment B straight to a managed parent without a child for the stylist, as an
    /// install from before the event-map check could have it (the PUT would refuse it).
    async fn map_segment_b_to_the_childless_parent(&self) {
        fixtures::put_event_map(
            &self.db,
            self.tenant(),
            &self.salon.service_id,
            &self.salon.segments[1].key,
            &self.staff(),
            CHILDLESS_PARENT,
            CHILDLESS_PARENT,
        )
        .await
        .expect("map");
    }

    fn staff(&self) -> StaffId {
        self.account.staff[0].staff_id.clone()
    }

    /// The event type of segment `index` (A = 0).
    fn event_type(&self, index: usize) -> i64 {
        self.account.event_types[0][index]
    }

    /// Books four 30-minute segments on 2030-01-`day` from 09:00 UTC.
    async fn appointment(&self, day: u32) -> Uuid {
        let start = Utc
            .with_ymd_and_hms(2030, 1, day, 9, 0, 0)
            .single()
            .expect("start");
        fixtures::book(&self.db, &self.salon, &self.staff(), start)
            .await
            .expect("book")
    }

    /// Somebody else's booking on the stylist's calendar at segment A's time of the
    /// appointment [`Self::appointment`] books on 2030-01-`day`.
    fn somebody_else_holds_segment_a(&self, day: u32) -> BookingRecord {
        let start = Utc
            .with_ymd_and_hms(2030, 1, day, 9, 0, 0)
            .single()
            .expect("start");
        self.sim
            .sim
            .insert_booking(SeedBooking::new(self.event_type(0), start))
            .expect("insert")
    }

    async fn drain(&self) {
        phasebook_test_support::run_until_idle(&self.worker).await;
    }

    /// One pass over the due jobs with `faults` switched on in the emulator, then off.
    async fn run_once_with(&self, faults: Faults) {
        self.sim.sim.set_faults(faults);
        self.worker.run_one_pass().await.expect("run");
        self.sim.sim.set_faults(Faults::default());
    }

    /// The emulator's bookings carrying this appointment's id, every status.
    fn bookings_for(&self, appointment: Uuid) -> Vec<BookingRecord> {
        self.sim
            .state()
            .bookings
            .into_iter()
            .filter(|b| {
                b.metadata.get("phasebook_appointment") == Some(&json!(appointment.to_string()))
            })
            .collect()
    }

    /// Every request the emulator has answered.
    fn calcom_requests(&self) -> u64 {
        self.sim.state().requests.values().map(|c| c.total).sum()
    }

    fn active_bookings_for(&self, appointment: Uuid) -> Vec<BookingRecord> {
        self.bookings_for(appointment)
            .into_iter()
            .filter(|b| b.status == BookingStatus::Accepted)
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

    async fn resync(&self, appointment: Uuid) {
        self.handle
            .store()
            .request_sync(self.tenant(), appointment, Utc::now(), true)
            .await
            .expect("resync");
    }

    /// Someone moves a booking in Cal.com itself (the salon's booking page, a stylist's
    /// app): Cal.com makes a new booking with our metadata and cancels the old one.
    async fn move_in_calcom(&self, uid: &str, minutes: i64) -> String {
        let client = calcom_client::CalcomClient::new(calcom_client::ClientConfig::new(
            self.sim.base_url.clone(),
            secrecy::SecretString::from(self.account.api_key.clone()),
        ))
        .expect("client");
        let old = client.get_booking(uid).await.expect("booking");
        client
            .reschedule_booking(
                uid,
                &calcom_client::RescheduleBooking {
                    start: old.start + TimeDelta::minutes(minutes),
                    rescheduled_by: None,
                    rescheduling_reason: Some("moved at the desk".into()),
                },
            )
            .await
            .expect("moved")
            .uid
    }

    /// Someone changes an event type's length in Cal.com (`PATCH /v2/event-types/{id}`).
    async fn set_length_in_calcom(&self, event_type: i64, minutes: i64) {
        self.patch_event_type(event_type, json!({ "lengthInMinutes": minutes }))
            .await;
    }

    async fn patch_event_type(&self, event_type: i64, body: serde_json::Value) {
        let answer = reqwest::Client::new()
            .patch(format!("{}/v2/event-types/{event_type}", self.sim.base_url))
            .bearer_auth(&self.account.api_key)
            .header("cal-api-version", "2024-06-14")
            .json(&body)
            .send()
            .await
            .expect("patch");
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
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
        for (index, segment) in view.segments.iter().enumerate() {
            let booking = bookings
                .iter()
                .find(|b| b.metadata.get("phasebook_segment") == Some(&json!(segment.key)))
                .expect("booking for segment");
            assert_eq!(
                segment.calcom_booking_uid.as_deref(),
                Some(booking.uid.as_str())
            );
            assert_eq!(segment.calcom_booking_id, Some(booking.id));
            assert_eq!(booking.event_type_id, Some(w.event_type(index)));
            assert_eq!(booking.status, BookingStatus::Accepted);
            assert_eq!(
                booking.metadata.get("phasebook_tenant"),
                Some(&json!(w.tenant().to_string()))
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
        let id = w.appointment(8).await;
        // Every create is carried out by Cal.com but its answer never arrives.
        w.run_once_with(
            Faults::default()
                .with_seed(8)
                .route("bookings.create", RouteFaults::lost_response_rate(1.0)),
        )
        .await;
        assert_eq!(w.active_bookings_for(id).len(), 4, "Cal.com holds them");
        assert_ne!(w.view(id).await.status, AppointmentSyncStatus::Synced);
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
            adopted, 4,
            "every lost create was adopted: {:#?}",
            view.attempts
        );
        for segment in &view.segments {
            let uid = segment.calcom_booking_uid.as_deref().expect("uid");
            assert!(w.sim.state().booking(uid).is_some());
        }
    }
}

#[tokio::test]
async fn a_server_error_or_a_hang_is_retried_without_a_duplicate() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(15).await;
        w.run_once_with(
            Faults::default()
                .with_seed(15)
                .route("bookings.create", RouteFaults::error_rate(1.0)),
        )
        .await;
        // The retries are due within the policy's 100 ms ceiling.
        tokio::time::sleep(Duration::from_millis(150)).await;
        w.run_once_with(
            Faults::default()
                .with_seed(15)
                .route("bookings.create", RouteFaults::hang_rate(1.0)),
        )
        .await;
        assert!(
            w.bookings_for(id).is_empty(),
            "nothing was created yet: {:#?} {:#?}",
            w.bookings_for(id),
            w.view(id).await
        );
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.bookings_for(id).len(), 4);
        let errors: Vec<_> = view
            .attempts
            .iter()
            .filter_map(|a| a.error_kind.clone())
            .collect();
        assert!(errors.iter().any(|k| k == "server"), "{errors:?}");
        assert!(errors.iter().any(|k| k == "outcome_unknown"), "{errors:?}");
    }
}

#[tokio::test]
async fn rate_limits_wait_and_do_not_use_up_attempts() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(9).await;
        for round in 0..6 {
            w.run_once_with(
                Faults::default()
                    .with_seed(round)
                    .route("bookings.create", RouteFaults::rate_limited_rate(1.0)),
            )
            .await;
        }
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.bookings_for(id).len(), 4);
        assert!(
            view.attempts.iter().any(|a| a.http_status == Some(429)),
            "the 429 is in the attempt log"
        );
    }
}

#[tokio::test]
async fn a_managed_parent_without_child_needs_review_naming_parent_user_and_fix() {
    for database in databases().await {
        let w = world(database).await;
        // Segment B mapped to the parent itself, as installs before the event-map check did.
        w.map_segment_b_to_the_childless_parent().await;
        let id = w.appointment(10).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview);
        assert!(view.requires_manual_review);
        let reason = view.review_reason.expect("reason");
        assert!(
            reason.contains(&format!(
                "Event type {CHILDLESS_PARENT} is a managed parent"
            )),
            "{reason}"
        );
        assert!(reason.contains("stylist-1"), "{reason}");
        assert!(reason.contains("segment B"), "{reason}");
        // The other three segments are booked; B is not, and Cal.com refused it once.
        assert_eq!(w.bookings_for(id).len(), 3);
        let b = &view.segments[1];
        assert_eq!(b.last_error.as_ref().and_then(|e| e.http_status), Some(400));
    }
}

#[tokio::test]
async fn a_busy_host_needs_review_and_a_resync_after_the_fix_books_it() {
    for database in databases().await {
        let w = world(database).await;
        let foreign = w.somebody_else_holds_segment_a(11);
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
        w.sim.sim.remove_booking(&foreign.uid).expect("removed");
        for _ in 0..2 {
            w.resync(id).await;
            w.drain().await;
        }
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert!(!view.requires_manual_review);
        assert_eq!(view.review_reason, None);
        assert_eq!(w.bookings_for(id).len(), 4);
    }
}

/// Cal.com answers "busy", and what stood there is cancelled before the worker looks (the
/// chaos soak's case: a sibling segment's run cancelling a copy of ours that reached into
/// this segment). Nothing stands there any more, so the create goes again in the same run
/// instead of asking a person to free a time that is already free.
#[tokio::test]
async fn a_busy_answer_whose_cause_is_gone_when_we_look_books_in_the_same_run() {
    for database in databases().await {
        let w = world(database).await;
        let in_the_way = w.somebody_else_holds_segment_a(12);
        let id = w.appointment(12).await;
        // The look at the host's bookings takes 400 ms (under the client's timeout): time
        // enough to cancel what was in the way between the refused create and the look.
        w.sim.sim.set_faults(
            Faults::default()
                .with_seed(12)
                .route("bookings.list", RouteFaults::latency(400)),
        );
        let refused_creates = || {
            w.sim
                .state()
                .requests
                .get("bookings.create")
                .map_or(0, |c| c.by_status.get("400").copied().unwrap_or_default())
        };
        let pass = w.worker.run_one_pass();
        let free = async {
            // Bounded: a create that is never refused fails here instead of hanging.
            let refused = tokio::time::timeout(Duration::from_secs(10), async {
                while refused_creates() == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(refused.is_ok(), "Cal.com never refused segment A's create");
            w.sim.sim.remove_booking(&in_the_way.uid).expect("removed");
        };
        let (ran, ()) = tokio::join!(pass, free);
        ran.expect("run");
        w.sim.sim.set_faults(Faults::default());

        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(view.review_reason, None);
        let creates_of_a: Vec<Option<&str>> = view
            .attempts
            .iter()
            .filter(|a| a.segment_key == "A" && a.operation == "create")
            .map(|a| a.outcome.as_deref())
            .collect();
        assert_eq!(creates_of_a, [Some("failed"), Some("created")], "{view:#?}");
        assert_eq!(w.active_bookings_for(id).len(), 4);
        assert_eq!(w.bookings_for(id).len(), 4, "nothing booked twice");
    }
}

#[tokio::test]
async fn a_resync_books_again_a_booking_that_vanished_from_calcom_and_nothing_else() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(16).await;
        w.drain().await;
        let before = w.view(id).await;
        let c_uid = before.segments[2].calcom_booking_uid.clone().expect("uid");
        w.sim.sim.remove_booking(&c_uid).expect("removed");
        for _ in 0..2 {
            w.resync(id).await;
            w.drain().await;
        }
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        let bookings = w.active_bookings_for(id);
        assert_eq!(bookings.len(), 4, "C again, the others untouched");
        let new_c = view.segments[2].calcom_booking_uid.clone().expect("uid");
        assert_ne!(new_c, c_uid);
        for (old, new) in before.segments.iter().zip(&view.segments) {
            if old.key != "C" {
                assert_eq!(old.calcom_booking_uid, new.calcom_booking_uid);
            }
        }
        assert!(bookings.iter().any(|b| b.uid == new_c));
    }
}

#[tokio::test]
async fn cancelling_cancels_every_booking_even_when_the_answer_is_lost() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(12).await;
        w.drain().await;
        w.cancel(id).await;
        w.run_once_with(
            Faults::default()
                .with_seed(12)
                .route("bookings.cancel", RouteFaults::lost_response_rate(1.0)),
        )
        .await;
        assert_eq!(
            w.view(id).await.status,
            AppointmentSyncStatus::Cancelling,
            "the answers were lost: not done yet"
        );
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Cancelled, "{view:#?}");
        let bookings = w.bookings_for(id);
        assert_eq!(bookings.len(), 4);
        assert!(
            bookings
                .iter()
                .all(|b| b.status == BookingStatus::Cancelled)
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

#[tokio::test]
async fn a_segment_without_an_event_map_needs_review_until_it_is_mapped_and_resynced() {
    for database in databases().await {
        let w = world(database).await;
        fixtures::remove_event_map(
            &w.db,
            w.tenant(),
            &w.salon.service_id,
            &w.salon.segments[3].key,
            &w.staff(),
        )
        .await
        .expect("unmap");
        let id = w.appointment(17).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview);
        let reason = view.review_reason.clone().expect("reason");
        assert!(reason.contains("no event map"), "{reason}");
        assert!(reason.contains("segment D"), "{reason}");
        assert!(reason.contains("stylist-1"), "{reason}");
        assert!(reason.contains(&format!("/resync/{id}")), "{reason}");
        assert_eq!(w.bookings_for(id).len(), 3, "A, B and C are booked anyway");

        // Ops maps it and resyncs: D is booked, A–C are not booked again.
        fixtures::put_event_map(
            &w.db,
            w.tenant(),
            &w.salon.service_id,
            &w.salon.segments[3].key,
            &w.staff(),
            w.event_type(3),
            w.event_type(3),
        )
        .await
        .expect("map");
        w.resync(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert!(!view.requires_manual_review);
        assert_eq!(view.review_reason, None);
        assert_eq!(w.active_bookings_for(id).len(), 4);
    }
}

#[tokio::test]
async fn a_managed_parent_books_the_hosts_child_once_cal_com_has_made_it() {
    for database in databases().await {
        let w = world(database).await;
        w.map_segment_b_to_the_childless_parent().await;
        let id = w.appointment(18).await;
        w.drain().await;
        assert_eq!(w.view(id).await.status, AppointmentSyncStatus::NeedsReview);

        // The fix the reason names: assign the host through the team event-type endpoint,
        // and Cal.com creates the host's child.
        let patched = reqwest::Client::new()
            .patch(format!(
                "{}/v2/teams/{}/event-types/{CHILDLESS_PARENT}",
                w.sim.base_url,
                fixtures::SIM_TEAM_ID
            ))
            .bearer_auth(fixtures::SIM_API_KEY)
            .header("cal-api-version", "2024-06-14")
            .json(&json!({"hosts": [{"userId": w.account.staff[0].calcom_user_id}]}))
            .send()
            .await
            .expect("patch");
        assert!(patched.status().is_success(), "{}", patched.status());
        let child = w
            .sim
            .state()
            .event_types
            .iter()
            .find(|e| e.parent_event_type_id == Some(CHILDLESS_PARENT))
            .map(|e| e.id)
            .expect("child made");

        w.resync(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert!(!view.requires_manual_review);
        assert_eq!(view.review_reason, None);
        assert_eq!(view.segments[1].event_type_id, Some(child));
        let b = w
            .active_bookings_for(id)
            .into_iter()
            .find(|b| b.metadata.get("phasebook_segment") == Some(&json!("B")))
            .expect("B booked");
        assert_eq!(b.event_type_id, Some(child), "booked on the child");
        assert_eq!(w.active_bookings_for(id).len(), 4);
    }
}

#[tokio::test]
async fn a_stopped_worker_gives_back_the_job_it_holds_and_the_next_one_finishes_it() {
    for database in databases().await {
        let w = world(database).await;
        // Cal.com never answers the creates: the run is stuck in flight at shutdown.
        w.sim.sim.set_faults(
            Faults::default()
                .with_seed(19)
                .route("bookings.create", RouteFaults::hang_rate(1.0)),
        );
        let handle = w.handle.clone();
        let stop = CancellationToken::new();
        let stopping = std::sync::Arc::new(Worker::new(
            handle.clone(),
            SyncConfig {
                worker_id: "stopping".into(),
                // Far longer than the test: only the release lets another worker in.
                lease: Duration::from_secs(600),
                shutdown_grace: Duration::from_millis(50),
                client: ClientSettings {
                    timeout: Duration::from_secs(600),
                    ..ClientSettings::default()
                },
                ..SyncConfig::default()
            },
        ));
        let running = tokio::spawn(stopping.run(stop.clone()));
        let id = w.appointment(19).await;
        handle.wake();
        // Until the creates are on the wire.
        loop {
            let view = w.view(id).await;
            let in_flight = view
                .attempts
                .iter()
                .filter(|a| a.operation == "create" && a.outcome.is_none())
                .count();
            if in_flight == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        running.await.expect("worker stopped");
        assert_eq!(
            phasebook_test_support::sync_job(&w.db, id)
                .await
                .expect("job")
                .as_deref(),
            Some("pending"),
            "the lease was given back"
        );

        w.sim.sim.set_faults(Faults::default());
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.bookings_for(id).len(), 4);
        assert!(
            view.attempts
                .iter()
                .filter(|a| a.operation == "reconcile")
                .count()
                >= 4,
            "the cut-off creates were looked for before booking again"
        );
    }
}

#[tokio::test]
async fn on_postgres_a_job_written_elsewhere_wakes_an_idle_worker_by_notification() {
    let Some(database) = TestDatabase::postgres_from_env().await else {
        return;
    };
    let w = world(database).await;
    // A worker process that polls only once a minute …
    let worker_side = SyncHandle::for_database(&w.db);
    let stop = CancellationToken::new();
    let running = worker_side.spawn_worker(
        SyncConfig {
            worker_id: "listening".into(),
            poll_interval: Duration::from_secs(60),
            ..SyncConfig::default()
        },
        phasebook_api::sync::postgres_pool(&w.db),
        stop.clone(),
    );
    // … is idle (its first look found nothing) when another process writes a job.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = w.appointment(20).await;
    // The writing process notifies after its commit, as every route that makes a job due.
    SyncHandle::for_database(&w.db).wake();
    let outcome = w
        .handle
        .wait_for_outcome(w.tenant(), id, Duration::from_secs(20))
        .await
        .expect("wait")
        .expect("exists");
    assert!(outcome.finished, "woken by the notification, not the poll");
    assert_eq!(outcome.sync.status, AppointmentSyncStatus::Synced);
    stop.cancel();
    running.await.expect("worker stopped");
}

#[tokio::test]
async fn cancelling_an_appointment_in_review_cancels_what_was_booked_and_leaves_nothing_to_review()
{
    for database in databases().await {
        let w = world(database).await;
        w.map_segment_b_to_the_childless_parent().await;
        let id = w.appointment(21).await;
        w.drain().await;
        assert_eq!(w.view(id).await.status, AppointmentSyncStatus::NeedsReview);
        assert_eq!(w.active_bookings_for(id).len(), 3);

        w.cancel(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Cancelled, "{view:#?}");
        assert!(!view.requires_manual_review);
        assert_eq!(view.review_reason, None);
        assert!(w.active_bookings_for(id).is_empty());
        assert_eq!(w.bookings_for(id).len(), 3, "B was never booked");
    }
}

#[tokio::test]
async fn a_create_that_lands_after_our_timeout_is_not_booked_twice() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(22).await;
        // Cal.com takes 1.2 s; the client gives up after 0.7 s and the request lands later.
        w.run_once_with(
            Faults::default()
                .with_seed(22)
                .route("bookings.create", RouteFaults::latency(1200)),
        )
        .await;
        w.drain().await;
        // Let the late requests land (or be refused) in Cal.com.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        let active = w.active_bookings_for(id);
        assert_eq!(active.len(), 4, "one booking per segment: {active:#?}");
        for segment in &view.segments {
            let uid = segment.calcom_booking_uid.as_deref().expect("uid");
            assert!(
                active.iter().any(|b| b.uid == uid),
                "we hold the one that stands"
            );
        }
    }
}

#[tokio::test]
async fn a_resync_for_a_stylist_other_than_the_keys_owner_books_on_their_own_event_type() {
    for database in databases().await {
        let w = world(database).await;
        let second = w.account.staff[1].staff_id.clone();
        let a = w.account.event_types[1][0];
        let start = Utc
            .with_ymd_and_hms(2030, 1, 23, 9, 0, 0)
            .single()
            .expect("start");
        // The second stylist is busy for segment A; the salon's key is not theirs, so their
        // personal event types are read through their listing when re-validated.
        let busy = w
            .sim
            .sim
            .insert_booking(SeedBooking::new(a, start))
            .expect("busy");
        let id = fixtures::book(&w.db, &w.salon, &second, start)
            .await
            .expect("book");
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview);
        assert!(
            view.review_reason
                .as_deref()
                .is_some_and(|r| r.contains("busy or unavailable")),
            "{view:#?}"
        );
        w.sim.sim.remove_booking(&busy.uid).expect("removed");
        for _ in 0..2 {
            w.resync(id).await;
            w.drain().await;
        }
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(view.review_reason, None);
        assert_eq!(view.segments[0].event_type_id, Some(a));
        assert_eq!(w.active_bookings_for(id).len(), 4);
    }
}

#[tokio::test]
async fn a_resync_after_a_move_in_calcom_puts_the_planned_time_back_with_one_booking() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(17).await;
        w.drain().await;
        let before = w.view(id).await;
        let d = &before.segments[3];
        let d_uid = d.calcom_booking_uid.clone().expect("uid");
        // Moved twice in Cal.com (no webhook reaches us), then a resync.
        let moved = w.move_in_calcom(&d_uid, 120).await;
        let moved_again = w.move_in_calcom(&moved, 60).await;
        w.resync(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        let active = w.active_bookings_for(id);
        assert_eq!(
            active.len(),
            4,
            "exactly one booking per segment: {active:#?}"
        );
        let d_now = active
            .iter()
            .find(|b| b.metadata.get("phasebook_segment") == Some(&json!("D")))
            .expect("D is booked");
        assert_eq!(d_now.start, d.starts_at, "D stands at its planned time");
        assert_eq!(
            view.segments[3].calcom_booking_uid.as_deref(),
            Some(d_now.uid.as_str())
        );
        let stray = w.sim.state().booking(&moved_again).cloned().expect("stray");
        assert_eq!(
            stray.status,
            BookingStatus::Cancelled,
            "the moved booking is released"
        );
        // The other segments were checked and left alone.
        for (old, new) in before.segments.iter().zip(&view.segments).take(3) {
            assert_eq!(old.calcom_booking_uid, new.calcom_booking_uid);
        }
        // A second resync finds everything in place and changes nothing.
        let total = w.bookings_for(id).len();
        w.resync(id).await;
        w.drain().await;
        assert_eq!(w.bookings_for(id).len(), total, "nothing new was booked");
        assert_eq!(w.active_bookings_for(id).len(), 4);
        assert_eq!(
            w.view(id).await.segments[3].calcom_booking_uid,
            view.segments[3].calcom_booking_uid
        );
    }
}

#[tokio::test]
async fn cancelling_after_a_move_in_calcom_cancels_the_moved_booking() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(18).await;
        w.drain().await;
        let view = w.view(id).await;
        let b_uid = view.segments[1].calcom_booking_uid.clone().expect("uid");
        let moved = w.move_in_calcom(&b_uid, 240).await;
        w.cancel(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Cancelled, "{view:#?}");
        assert!(
            w.active_bookings_for(id).is_empty(),
            "no booking of a cancelled appointment stays active: {:#?}",
            w.active_bookings_for(id)
        );
        assert_eq!(
            w.sim.state().booking(&moved).map(|b| b.status),
            Some(BookingStatus::Cancelled)
        );
    }
}

#[tokio::test]
async fn a_length_changed_in_calcom_needs_review_with_both_lengths_and_is_never_synced() {
    for database in databases().await {
        let w = world(database).await;
        w.set_length_in_calcom(w.event_type(2), 45).await;
        let id = w.appointment(19).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview, "{view:#?}");
        let c = &view.segments[2];
        assert_eq!(c.status.as_str(), "needs_review");
        let reason = c.review_reason.as_deref().expect("reason");
        assert!(
            reason.contains("lasts 45 minutes") && reason.contains("30 minutes"),
            "{reason}"
        );
        assert!(
            !reason.contains("busy"),
            "the real cause, not a busy host: {reason}"
        );
        assert!(
            w.active_bookings_for(id)
                .iter()
                .all(|b| b.metadata.get("phasebook_segment") != Some(&json!("C"))),
            "nothing was booked on the drifted type"
        );
        // The fix the reason names, then a resync: booked.
        w.set_length_in_calcom(w.event_type(2), 30).await;
        w.resync(id).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.active_bookings_for(id).len(), 4);
    }
}

#[tokio::test]
async fn cancels_and_resyncs_racing_the_worker_never_fail_and_leave_exactly_once() {
    for database in databases().await {
        let w = world(database).await;
        let mut ids = Vec::new();
        for day in 20..28 {
            ids.push(w.appointment(day).await);
        }
        // Eight clients cancel and resync the same appointments while the worker books them:
        // every call must succeed (a deadlock is retried, never an error).
        let worker = async {
            for _ in 0..30 {
                w.worker.run_one_pass().await.expect("run");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        };
        let clients = (0..8).map(|client| {
            let ids = &ids;
            let w = &w;
            async move {
                for round in 0..8 {
                    let id = ids[(client * 3 + round) % ids.len()];
                    if (client + round) % 4 == 0 {
                        w.cancel(id).await;
                    } else {
                        w.resync(id).await;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        tokio::join!(worker, futures::future::join_all(clients));
        let left = w
            .worker
            .run_until_idle(Duration::from_secs(20))
            .await
            .expect("run");
        if left > 0 {
            let mut views = Vec::new();
            for &id in &ids {
                views.push(w.view(id).await);
            }
            panic!("{left} jobs left outstanding: {views:#?}");
        }
        let mut views = Vec::new();
        let mut cancelled = 0;
        for &id in &ids {
            let view = w.view(id).await;
            match view.status {
                AppointmentSyncStatus::Cancelled => {
                    cancelled += 1;
                    assert!(
                        w.active_bookings_for(id).is_empty(),
                        "a cancelled appointment keeps no booking: {view:#?}"
                    );
                }
                AppointmentSyncStatus::Synced => {
                    assert_eq!(w.active_bookings_for(id).len(), 4, "{view:#?}");
                }
                other => panic!("{id} ended {other}: {view:#?}"),
            }
            views.push(view);
        }
        assert!(cancelled > 0, "the race cancelled something");
        fixtures::check_exactly_once(&views, &w.sim.state()).expect("exactly once");
    }
}

#[tokio::test]
async fn the_verification_sweep_repairs_bookings_changed_in_calcom_without_a_webhook() {
    for database in databases().await {
        let w = world(database).await;
        // Three appointments in the coming days (the sweep looks 14 days ahead).
        let soon = |days: i64| {
            let day = (Utc::now() + TimeDelta::days(days)).date_naive();
            day.and_hms_opt(9, 0, 0).expect("time").and_utc()
        };
        let mut ids = Vec::new();
        for days in 2..5 {
            let id = fixtures::book(&w.db, &w.salon, &w.staff(), soon(days))
                .await
                .expect("book");
            ids.push(id);
        }
        w.drain().await;
        // Behind phasebook's back: one booking deleted, one cancelled, one moved.
        let uid = |view: &phasebook_api::store::sync::SyncView, i: usize| {
            view.segments[i].calcom_booking_uid.clone().expect("uid")
        };
        let first = w.view(ids[0]).await;
        w.sim.sim.remove_booking(&uid(&first, 1)).expect("removed");
        let second = w.view(ids[1]).await;
        let calcom = calcom_client::CalcomClient::new(calcom_client::ClientConfig::new(
            w.sim.base_url.clone(),
            secrecy::SecretString::from(w.account.api_key.clone()),
        ))
        .expect("client");
        calcom
            .cancel_booking(&uid(&second, 2), "cancelled at the desk")
            .await
            .expect("cancelled");
        let third = w.view(ids[2]).await;
        w.move_in_calcom(&uid(&third, 3), 180).await;
        assert_eq!(
            w.view(ids[0]).await.status,
            AppointmentSyncStatus::Synced,
            "nothing told phasebook"
        );

        let swept = w.worker.verify_due_tenants().await.expect("sweep");
        assert_eq!(swept.tenants, 1);
        assert_eq!(swept.appointments_queued, 3, "{swept:?}");
        w.drain().await;
        for &id in &ids {
            let view = w.view(id).await;
            assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
            let active = w.active_bookings_for(id);
            assert_eq!(active.len(), 4, "one booking per segment: {active:#?}");
            for segment in &view.segments {
                let booking = active
                    .iter()
                    .find(|b| Some(b.uid.as_str()) == segment.calcom_booking_uid.as_deref())
                    .expect("the stored booking is active");
                assert_eq!(booking.start, segment.starts_at, "at its planned time");
            }
        }
        let health = w
            .handle
            .store()
            .sync_health(w.tenant(), Utc::now())
            .await
            .expect("health");
        assert!(health.last_verified_at.is_some(), "{health:?}");
        // Within the interval, the tenant is not swept again.
        let again = w.worker.verify_due_tenants().await.expect("sweep");
        assert_eq!(again.tenants, 0);
    }
}

#[tokio::test]
async fn a_segment_waiting_out_a_rate_limit_shows_pending_with_its_retry_time() {
    for database in databases().await {
        let w = world(database).await;
        let id = w.appointment(10).await;
        w.run_once_with(
            Faults::default()
                .with_seed(10)
                .route("bookings.create", RouteFaults::rate_limited_rate(1.0)),
        )
        .await;
        let view = w.view(id).await;
        for segment in &view.segments {
            assert_eq!(segment.status.as_str(), "pending", "{view:#?}");
            assert!(segment.next_attempt_at.is_some(), "{view:#?}");
            assert_eq!(
                segment.last_error.as_ref().and_then(|e| e.http_status),
                Some(429)
            );
        }
        assert!(!view.requires_manual_review);
        w.drain().await;
        assert_eq!(w.view(id).await.status, AppointmentSyncStatus::Synced);
    }
}

#[tokio::test]
async fn after_an_outage_reviews_caused_only_by_calcom_are_retried_once_it_answers() {
    for database in databases().await {
        let w = world(database).await;
        let outage = w.appointment(24).await;
        w.sim.sim.set_faults(
            Faults::default()
                .with_seed(24)
                .route("bookings.create", RouteFaults::error_rate(1.0)),
        );
        w.drain().await;
        w.sim.sim.set_faults(Faults::default());
        let view = w.view(outage).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview, "{view:#?}");
        // Another appointment is in review for a reason a person must fix.
        w.map_segment_b_to_the_childless_parent().await;
        let misconfigured = w.appointment(25).await;
        w.drain().await;
        assert_eq!(
            w.view(misconfigured).await.status,
            AppointmentSyncStatus::NeedsReview
        );
        let store = w.handle.store();
        assert_eq!(
            store
                .reviews_waiting_for_calcom(w.tenant())
                .await
                .expect("reviews"),
            vec![outage],
            "only the outage's appointment waits for Cal.com alone"
        );
        fixtures::put_event_map(
            &w.db,
            w.tenant(),
            &w.salon.service_id,
            &w.salon.segments[1].key,
            &w.staff(),
            w.event_type(1),
            w.event_type(1),
        )
        .await
        .expect("map");
        // The sweep's listing is the probe: Cal.com answers, so the outage's review is
        // retried; the misconfigured one waits for its resync.
        let swept = w.worker.verify_due_tenants().await.expect("sweep");
        assert_eq!(swept.requeued_after_outage, 1, "{swept:?}");
        w.drain().await;
        let view = w.view(outage).await;
        assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
        assert_eq!(w.active_bookings_for(outage).len(), 4);
        assert_eq!(
            w.view(misconfigured).await.status,
            AppointmentSyncStatus::NeedsReview
        );
    }
}

#[tokio::test]
async fn a_start_outside_the_booking_window_needs_review_naming_the_window_not_a_busy_host() {
    for database in databases().await {
        let w = world(database).await;
        // Segment A's type only takes bookings 30 days ahead; the appointment is in 2030.
        w.patch_event_type(
            w.event_type(0),
            json!({"bookingWindow": {"type": "calendarDays", "value": 30}}),
        )
        .await;
        let id = w.appointment(26).await;
        w.drain().await;
        let view = w.view(id).await;
        let a = &view.segments[0];
        assert_eq!(a.status.as_str(), "needs_review", "{view:#?}");
        let reason = a.review_reason.as_deref().expect("reason");
        assert!(reason.contains("booking window"), "{reason}");
        assert!(!reason.contains("busy"), "{reason}");
        assert!(
            w.active_bookings_for(id)
                .iter()
                .all(|b| b.metadata.get("phasebook_segment") != Some(&json!("A")))
        );
    }
}

/// Cal.com stops answering a tenant: once the circuit opens, the tenant's jobs wait for a
/// probe instead of calling (no requests, no attempts used, nothing sent to review), and
/// the first probe that gets an answer lets every waiting appointment book, once each.
#[tokio::test]
async fn an_outage_opens_the_circuit_and_the_first_answered_probe_books_what_waited() {
    for database in databases().await {
        let policy = BreakerPolicy {
            failures_to_open: 4,
            // Long enough that a loaded machine's passes stay inside the open interval.
            probe_every: TimeDelta::seconds(3),
        };
        let w = world_with(database, Some(policy)).await;
        let requests = World::calcom_requests;
        let first = w.appointment(26).await;
        w.sim.sim.set_faults(
            Faults::default()
                .with_seed(26)
                .route("*", RouteFaults::error_rate(1.0)),
        );
        w.worker.run_pending_jobs().await.expect("run");
        assert_eq!(
            w.view(first).await.status,
            AppointmentSyncStatus::Failed,
            "four creates failed"
        );

        // The circuit is open: another appointment, and the first one's retries, wait.
        let second = w.appointment(27).await;
        let before = requests(&w);
        w.worker.run_pending_jobs().await.expect("run");
        assert_eq!(requests(&w), before, "no call while the circuit is open");
        let waiting = w.view(second).await;
        assert_ne!(waiting.status, AppointmentSyncStatus::NeedsReview);
        assert!(waiting.attempts.is_empty(), "{waiting:#?}");

        // Still down at the probe: one GET /v2/me, and the circuit stays open.
        tokio::time::sleep(Duration::from_millis(3_100)).await;
        w.worker.run_pending_jobs().await.expect("run");
        assert_eq!(requests(&w), before + 1, "one probe, nothing else");
        assert!(w.view(second).await.attempts.is_empty());

        // Cal.com answers again: the next probe closes the circuit and both book.
        w.sim.sim.set_faults(Faults::default());
        w.drain().await;
        for appointment in [first, second] {
            let view = w.view(appointment).await;
            assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
            assert_eq!(w.active_bookings_for(appointment).len(), 4);
        }
        assert_eq!(
            w.view(second)
                .await
                .attempts
                .iter()
                .filter(|a| a.operation == "create")
                .count(),
            4,
            "the waiting appointment was booked once per segment"
        );
    }
}

/// A Cal.com reschedule counts on the tenant's circuit like every other call: a run whose
/// moves all find Cal.com down opens it, and the retries wait for a probe instead of
/// calling. Only the reschedule route fails, so nothing but the reschedules can open it.
#[tokio::test]
async fn reschedules_that_find_calcom_down_open_the_circuit() {
    use phasebook_api::store::reschedule::{AppointmentMove, MoveOutcome};
    use phasebook_domain::{Service, plan_appointment};

    for database in databases().await {
        let policy = BreakerPolicy {
            failures_to_open: 4,
            probe_every: TimeDelta::seconds(60),
        };
        let w = world_with(database, Some(policy)).await;
        let id = w.appointment(14).await;
        w.drain().await;
        assert_eq!(w.view(id).await.status, AppointmentSyncStatus::Synced);

        // Three hours later, the same stylist: each segment is one Cal.com reschedule.
        let service = Service::new("Colour", w.salon.segments.clone()).expect("service");
        let start = Utc
            .with_ymd_and_hms(2030, 1, 14, 12, 0, 0)
            .single()
            .expect("start");
        let assigned = vec![w.staff(); w.salon.segments.len()];
        let moved =
            w.db.reschedules()
                .move_appointment(&AppointmentMove {
                    tenant_id: w.tenant(),
                    appointment_id: id,
                    staff_id: w.staff(),
                    time_zone: "Europe/Berlin".into(),
                    segments: plan_appointment(&service, start, &assigned),
                    hold_id: None,
                    now: Utc::now(),
                })
                .await
                .expect("move");
        assert!(matches!(moved, MoveOutcome::Moved { .. }), "{moved:?}");
        w.run_once_with(
            Faults::default()
                .with_seed(14)
                .route("bookings.reschedule", RouteFaults::error_rate(1.0)),
        )
        .await;
        let view = w.view(id).await;
        let failed = view
            .attempts
            .iter()
            .filter(|a| a.operation == "reschedule" && a.error_kind.as_deref() == Some("server"))
            .count();
        assert_eq!(failed, 4, "{view:#?}");

        // Past every retry's backoff, Cal.com answering again: the circuit is open, so the
        // job waits for its probe and nothing is called.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = w.calcom_requests();
        w.worker.run_pending_jobs().await.expect("run");
        assert_eq!(
            w.calcom_requests(),
            before,
            "no call while the circuit is open"
        );
        assert_eq!(w.view(id).await.attempts.len(), view.attempts.len());
    }
}

/// The drift check reads an event type at most once a minute, so a length changed in
/// Cal.com just after a check reaches a create. On the last segment Cal.com books the new
/// length: that booking is cancelled at once and the segment reviewed with both lengths.
/// On an earlier one the longer booking collides with our own next segment: the "busy"
/// answer is checked against the event type, and the reason names the length, not a busy
/// host. Fixed in Cal.com, a resync books both.
#[tokio::test]
async fn a_length_changed_since_the_last_check_is_named_as_the_cause_and_never_synced() {
    for database in databases().await {
        let w = world(database).await;
        let checked = w.appointment(28).await;
        w.drain().await;
        assert_eq!(w.view(checked).await.status, AppointmentSyncStatus::Synced);
        for (day, segment) in [(29, 3), (30, 2)] {
            let key = ["A", "B", "C", "D"][segment];
            w.set_length_in_calcom(w.event_type(segment), 45).await;
            let id = w.appointment(day).await;
            w.drain().await;
            let view = w.view(id).await;
            assert_eq!(view.status, AppointmentSyncStatus::NeedsReview, "{view:#?}");
            let reason = view.segments[segment]
                .review_reason
                .as_deref()
                .expect("reason");
            assert!(
                reason.contains("45 minutes") && reason.contains("30 minutes"),
                "segment {key}: {reason}"
            );
            assert!(!reason.contains("busy"), "segment {key}: {reason}");
            let left: Vec<_> = w
                .active_bookings_for(id)
                .into_iter()
                .filter(|b| b.metadata.get("phasebook_segment") == Some(&json!(key)))
                .collect();
            assert!(left.is_empty(), "nothing of {key} stays booked: {left:#?}");

            w.set_length_in_calcom(w.event_type(segment), 30).await;
            w.resync(id).await;
            w.drain().await;
            let view = w.view(id).await;
            assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
            let active = w.active_bookings_for(id);
            assert_eq!(active.len(), 4);
            assert!(
                active
                    .iter()
                    .all(|b| b.end - b.start == TimeDelta::minutes(30)),
                "{active:#?}"
            );
        }
    }
}

/// A booking of another appointment moved in Cal.com into this appointment's time makes
/// Cal.com answer "busy": the reason names that appointment and booking, and its fix
/// (resync the other appointment, which puts its booking back, then this one) books both.
#[tokio::test]
async fn a_busy_answer_caused_by_our_own_moved_booking_names_it_and_its_fix_works() {
    for database in databases().await {
        let w = world(database).await;
        let earlier = w.appointment(31).await;
        w.drain().await;
        let view = w.view(earlier).await;
        let a_uid = view.segments[0].calcom_booking_uid.clone().expect("booked");
        // 09:00 moved to 12:00 at the desk, where the next appointment begins.
        w.move_in_calcom(&a_uid, 180).await;
        let start = Utc
            .with_ymd_and_hms(2030, 1, 31, 12, 0, 0)
            .single()
            .expect("start");
        let later = fixtures::book(&w.db, &w.salon, &w.staff(), start)
            .await
            .expect("book");
        w.drain().await;
        let view = w.view(later).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview, "{view:#?}");
        let reason = view.segments[0].review_reason.as_deref().expect("reason");
        assert!(
            reason.contains(&earlier.to_string())
                && reason.contains(&format!("POST /resync/{earlier}")),
            "{reason}"
        );
        assert!(!reason.contains("free that time"), "{reason}");

        w.resync(earlier).await;
        w.drain().await;
        w.resync(later).await;
        w.drain().await;
        for id in [earlier, later] {
            let view = w.view(id).await;
            assert_eq!(view.status, AppointmentSyncStatus::Synced, "{view:#?}");
            assert_eq!(w.active_bookings_for(id).len(), 4);
        }
    }
}

/// A staff member re-pointed to another Cal.com user while their maps still name the
/// previous user's event types: before booking, the worker sees that the bookable type
/// belongs to someone else and sends the segment to review naming both users; nothing is
/// booked into the previous user's calendar.
#[tokio::test]
async fn a_staff_member_repointed_to_another_user_is_never_booked_on_the_previous_users_type() {
    for database in databases().await {
        let w = world(database).await;
        let mut member =
            w.db.store()
                .get_staff(w.tenant(), &w.staff())
                .await
                .expect("staff")
                .expect("exists");
        let previous = member.calcom_user_id;
        member.calcom_user_id = phasebook_domain::CalcomUserId(w.account.staff[1].calcom_user_id);
        member.calcom_username = w.account.staff[1].calcom_username.clone();
        w.db.store()
            .put_staff(w.tenant(), &member)
            .await
            .expect("re-pointed");
        let id = w.appointment(30).await;
        w.drain().await;
        let view = w.view(id).await;
        assert_eq!(view.status, AppointmentSyncStatus::NeedsReview, "{view:#?}");
        let reason = view.segments[0].review_reason.as_deref().expect("reason");
        assert!(
            reason.contains(&format!("belongs to Cal.com user {previous}")),
            "{reason}"
        );
        assert!(
            w.active_bookings_for(id).is_empty(),
            "nothing booked on the previous user's types"
        );
    }
}
