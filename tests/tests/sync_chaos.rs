//! Chaos soak: while the background worker syncs appointments against the Cal.com emulator
//! with server errors, hangs, lost answers and 429s switched on, a chaos actor works on
//! Cal.com directly, as a salon's front desk and Cal.com's own pages would: it moves,
//! cancels and deletes our bookings and changes event-type lengths, and some appointments
//! are cancelled in phasebook meanwhile. After the verification sweep and the resyncs
//! settle (each review's fix applied as its reason says), Cal.com holds exactly one active
//! booking per live segment, at its planned time and on its event type, and nothing of
//! ours is left active for a cancelled appointment — on SQLite and, when `DATABASE_URL` is
//! set, PostgreSQL.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use calcom_sim::{BookingStatus, Faults, RouteFaults};
use chrono::{TimeDelta, Utc};
use phasebook_api::store::Database;
use phasebook_api::store::sync::SyncView;
use phasebook_api::sync::{SyncConfig, SyncHandle, VerificationSettings, Worker};
use phasebook_domain::sync::{AppointmentSyncStatus, SegmentSyncStatus};
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use phasebook_test_support::{faulty_sim, soak_sync_config, spawn_sim, wait_until_idle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const APPOINTMENTS: usize = 96;
const STYLISTS: usize = 6;
const CHAOS_ACTIONS: usize = 120;
/// The segments' planned length; the chaos actor sets other lengths.
const SEGMENT_MINUTES: i64 = 30;

fn faults() -> Faults {
    Faults::default().with_seed(40_417).route(
        "*",
        RouteFaults {
            error_rate: 0.05,
            hang_rate: 0.02,
            lost_response_rate: 0.05,
            rate_limited_rate: 0.02,
            ..RouteFaults::default()
        },
    )
}

/// A small deterministic generator: the chaos is the same sequence every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % sides as u64).expect("small")
    }
}

fn sync_config(backend: &str, sweep_every: Option<Duration>) -> SyncConfig {
    SyncConfig {
        verification: VerificationSettings {
            every: sweep_every,
            ..VerificationSettings::default()
        },
        ..soak_sync_config(&format!("chaos-{backend}"))
    }
}

/// Waits until no job is outstanding (bounded).
async fn drain(handle: &SyncHandle, backend: &str) {
    wait_until_idle(handle, Duration::from_secs(120), backend).await;
}

/// The converged calendar: every synced segment has exactly one active booking carrying
/// its identity — the stored one, at its planned time, on its event type — and no active
/// booking of ours belongs to a cancelled appointment or to no segment. (Cancelled
/// bookings are not judged: the chaos actor cancelled and moved some itself.)
fn check_converged(views: &[SyncView], calcom: &calcom_sim::State) -> Result<usize, String> {
    let mut active: HashMap<(String, String), Vec<&calcom_sim::BookingRecord>> = HashMap::new();
    for booking in &calcom.bookings {
        if booking.status != BookingStatus::Accepted {
            continue;
        }
        let text = |name: &str| {
            booking
                .metadata
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let (Some(appointment), Some(segment)) =
            (text("phasebook_appointment"), text("phasebook_segment"))
        else {
            return Err(format!(
                "an active booking without our metadata: {}",
                booking.uid
            ));
        };
        active
            .entry((appointment, segment))
            .or_default()
            .push(booking);
    }
    let mut live = 0;
    let mut known = BTreeSet::new();
    for view in views {
        for segment in &view.segments {
            let key = (view.appointment_id.to_string(), segment.key.to_string());
            known.insert(key.clone());
            let found = active.get(&key).map(Vec::as_slice).unwrap_or_default();
            match segment.status {
                SegmentSyncStatus::Synced => {
                    let [booking] = found else {
                        return Err(format!(
                            "segment {} of {} has {} active bookings",
                            segment.key,
                            view.appointment_id,
                            found.len()
                        ));
                    };
                    if segment.calcom_booking_uid.as_deref() != Some(booking.uid.as_str()) {
                        return Err(format!(
                            "segment {} of {} stores {:?} but {} is active",
                            segment.key,
                            view.appointment_id,
                            segment.calcom_booking_uid,
                            booking.uid
                        ));
                    }
                    if booking.start != segment.starts_at
                        || booking.end != segment.starts_at + TimeDelta::minutes(SEGMENT_MINUTES)
                    {
                        return Err(format!(
                            "booking {} runs {}..{}, planned {}",
                            booking.uid, booking.start, booking.end, segment.starts_at
                        ));
                    }
                    if booking.event_type_id != segment.event_type_id {
                        return Err(format!(
                            "booking {} is on {:?}, stored {:?}",
                            booking.uid, booking.event_type_id, segment.event_type_id
                        ));
                    }
                    live += 1;
                }
                _ if !found.is_empty() => {
                    return Err(format!(
                        "segment {} of {} is {} yet {} booking(s) of ours are active",
                        segment.key,
                        view.appointment_id,
                        segment.status.as_str(),
                        found.len()
                    ));
                }
                _ => {}
            }
        }
    }
    if let Some(stray) = active.keys().find(|key| !known.contains(*key)) {
        return Err(format!("an active booking for no segment: {stray:?}"));
    }
    Ok(live)
}

async fn chaos_in_calcom_during_a_fault_soak_still_ends_with_one_booking_per_live_segment(
    database: TestDatabase,
) {
    let started = Instant::now();
    let backend = database.backend();
    let db: Database = database.connect().await.expect("database");
    let segments = fixtures::segments(4, SEGMENT_MINUTES as u32, 0);
    let account = fixtures::sim_account(STYLISTS, &segments);
    let sim = spawn_sim(faulty_sim(faults()), account.seed.clone()).await;
    let salon = fixtures::seed_sim_salon(&db, &sim.base_url, &account, "colour", segments)
        .await
        .expect("salon");

    // Two-hour appointments with two free hours after each, from the day after tomorrow:
    // inside the sweep's 14 days, with room for the chaos actor's moves.
    let first = (Utc::now() + TimeDelta::days(2))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let appointments = fixtures::book_in_turns(
        &db,
        &salon,
        &account.staff,
        APPOINTMENTS,
        first,
        TimeDelta::hours(4),
    )
    .await
    .expect("book");

    let handle = SyncHandle::for_database(&db);
    let stop = CancellationToken::new();
    let worker = handle.spawn_worker(
        sync_config(backend, Some(Duration::from_secs(1))),
        phasebook_api::sync::postgres_pool(&db),
        stop.clone(),
    );
    handle.wake();

    // The chaos actor, faults still on. It acts on whatever of ours Cal.com holds.
    let calcom = calcom_client::CalcomClient::new(calcom_client::ClientConfig::new(
        sim.base_url.clone(),
        secrecy::SecretString::from(account.api_key.clone()),
    ))
    .expect("client");
    // A hung request (the faults include hangs) must not stall the actor.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http");
    let set_length = |event_type: i64, minutes: i64| {
        let request = http
            .patch(format!("{}/v2/event-types/{event_type}", sim.base_url))
            .bearer_auth(&account.api_key)
            .header("cal-api-version", "2024-06-14")
            .json(&json!({ "lengthInMinutes": minutes }));
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    };
    let mut dice = Dice(0x5eed_cafe_f00d);
    let mut acted: HashMap<&str, usize> = HashMap::new();
    let mut cancelled_appointments = Vec::new();
    let mut lengthened = BTreeSet::new();
    for action in 0..CHAOS_ACTIONS {
        tokio::time::sleep(Duration::from_millis(40)).await;
        if action % 10 == 9 {
            let id = appointments[dice.roll(APPOINTMENTS)];
            if !cancelled_appointments.contains(&id) {
                db.store()
                    .cancel_appointment(salon.tenant_id, id, Utc::now())
                    .await
                    .expect("cancel")
                    .expect("exists");
                handle
                    .store()
                    .request_sync(salon.tenant_id, id, Utc::now(), false)
                    .await
                    .expect("queue the cancellation");
                handle.wake();
                cancelled_appointments.push(id);
                *acted.entry("cancelled in phasebook").or_default() += 1;
            }
            continue;
        }
        let ours: Vec<calcom_sim::BookingRecord> = sim
            .state()
            .bookings
            .into_iter()
            .filter(|b| b.status == BookingStatus::Accepted)
            .collect();
        if ours.is_empty() {
            continue;
        }
        let booking = &ours[dice.roll(ours.len())];
        let done = match dice.roll(4) {
            0 => calcom
                .reschedule_booking(
                    &booking.uid,
                    &calcom_client::RescheduleBooking {
                        start: booking.start + TimeDelta::hours(2),
                        rescheduled_by: None,
                        rescheduling_reason: Some("moved at the desk".into()),
                    },
                )
                .await
                .map(|_| "moved")
                .ok(),
            1 => calcom
                .cancel_booking(&booking.uid, "cancelled at the desk")
                .await
                .map(|_| "cancelled in Cal.com")
                .ok(),
            2 => sim
                .sim
                .remove_booking(&booking.uid)
                .map(|_| "deleted in Cal.com"),
            // The key may change its owner's own types only (others answer 404).
            // A lost answer may still have changed it: every type tried is put back later.
            _ => match booking.event_type_id {
                Some(event_type) => {
                    lengthened.insert(event_type);
                    set_length(event_type, 45)
                        .await
                        .then_some("event type lengthened")
                }
                None => None,
            },
        };
        if let Some(done) = done {
            *acted.entry(done).or_default() += 1;
        }
    }

    // The desk puts every event type back to the segments' length; faults go off.
    sim.sim.set_faults(Faults::default());
    // Types of other stylists than the key's owner refuse the change (404): nothing to
    // put back there.
    for &event_type in &lengthened {
        set_length(event_type, SEGMENT_MINUTES).await;
    }
    drain(&handle, backend).await;

    // A sweep after the last change finds what no webhook reported; then each review's
    // fix is applied as its reason says (the lengths are back, so a resync).
    let sweeper = Worker::new(handle.clone(), sync_config(backend, Some(Duration::ZERO)));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let swept = sweeper.verify_due_tenants().await.expect("sweep");
    handle.wake();
    drain(&handle, backend).await;
    let mut fixed = 0;
    for id in &appointments {
        let view = handle
            .store()
            .sync_view(salon.tenant_id, *id)
            .await
            .expect("view")
            .expect("exists");
        if view.status == AppointmentSyncStatus::NeedsReview {
            let reason = view.review_reason.clone().unwrap_or_default();
            assert!(
                reason.contains("POST /resync/"),
                "a fix that can be applied: {reason}"
            );
            handle
                .store()
                .request_sync(salon.tenant_id, *id, Utc::now(), true)
                .await
                .expect("resync");
            fixed += 1;
        }
    }
    handle.wake();
    drain(&handle, backend).await;
    stop.cancel();
    worker.await.expect("worker");

    let mut views = Vec::new();
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for id in &appointments {
        let view = handle
            .store()
            .sync_view(salon.tenant_id, *id)
            .await
            .expect("view")
            .expect("exists");
        *by_status.entry(view.status.to_string()).or_default() += 1;
        let expected = if cancelled_appointments.contains(id) {
            AppointmentSyncStatus::Cancelled
        } else {
            AppointmentSyncStatus::Synced
        };
        assert_eq!(
            view.status, expected,
            "appointment {id} on {backend} after the fixes: {view:#?}"
        );
        views.push(view);
    }
    let live = check_converged(&views, &sim.state())
        .unwrap_or_else(|broken| panic!("on {backend}: {broken}"));
    assert_eq!(
        live,
        (APPOINTMENTS - cancelled_appointments.len()) * 4,
        "every live segment booked"
    );
    println!(
        "chaos soak on {backend}: {APPOINTMENTS} appointments x 4 segments in {:.1} s; chaos {acted:?}; \
         the last sweep queued {}; {fixed} reviews fixed by a resync; {by_status:?}",
        started.elapsed().as_secs_f64(),
        swept.appointments_queued,
    );
    sim.shutdown().await;
}

phasebook_test_support::on_both_backends!(
    chaos_in_calcom_during_a_fault_soak_still_ends_with_one_booking_per_live_segment
);
