//! One behaviour suite for the `Store` trait, instantiated for SQLite (a temporary file,
//! always) and PostgreSQL (a fresh database, when `DATABASE_URL` is set).

use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use phasebook_api::auth::{self, TenantSettings, hash_api_key};
use phasebook_api::store::{
    AppointmentQuery, Database, IdempotencyClaim, IdempotentResponse, KeyedAnswer, NewAppointment,
    Role, StaffMember, Store, StoreError,
};
use phasebook_domain::plan::{assign_staff, plan_appointment};
use phasebook_domain::sync::{AppointmentSyncStatus, SegmentSyncStatus};
use phasebook_domain::{
    AppointmentStatus, CalcomUserId, Customer, SegmentKey, SegmentSpec, Service, ServiceId, StaffId,
};
use phasebook_test_support::{self as testing, TestDatabase};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

struct Fixture {
    db: Database,
    tenant: Uuid,
    // Dropped last: removes the database once the pool is gone.
    _database: TestDatabase,
}

impl Fixture {
    fn store(&self) -> &dyn Store {
        self.db.store()
    }
}

async fn new_tenant(store: &dyn Store) -> Uuid {
    auth::create_tenant(
        store,
        TenantSettings {
            name: "Salon".into(),
            calcom_api_key: SecretString::from("cal_test"),
            calcom_base_url: "http://127.0.0.1:1".into(),
            calcom_team_id: None,
        },
    )
    .await
    .expect("tenant")
    .tenant_id
}

async fn fixture(database: TestDatabase) -> Fixture {
    let db = database.connect().await.expect("connect and migrate");
    let tenant = new_tenant(db.store()).await;
    seed_catalog(db.store(), tenant).await;
    Fixture {
        db,
        tenant,
        _database: database,
    }
}

fn seg(key: &str, minutes: u32, gap: u32) -> SegmentSpec {
    SegmentSpec {
        key: SegmentKey::parse(key).expect("key"),
        name: format!("segment {key}"),
        duration_minutes: minutes,
        gap_after_minutes: gap,
        gap_after_max_minutes: None,
    }
}

fn colouring() -> Service {
    Service::new(
        "Colour",
        vec![
            seg("A", 30, 35),
            seg("B", 15, 0),
            seg("C", 30, 0),
            seg("D", 20, 0),
        ],
    )
    .expect("service")
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

async fn seed_catalog(store: &dyn Store, tenant: Uuid) {
    store
        .put_service(
            tenant,
            &ServiceId::parse("colour").expect("id"),
            &colouring(),
            now(),
        )
        .await
        .expect("service");
    store
        .put_service(
            tenant,
            &ServiceId::parse("cut").expect("id"),
            &Service::new("Cut", vec![seg("C", 30, 0)]).expect("service"),
            now(),
        )
        .await
        .expect("service");
    for (id, user) in [("anna", 1), ("ben", 2)] {
        store
            .put_staff(
                tenant,
                &StaffMember {
                    staff_id: StaffId::parse(id).expect("id"),
                    name: id.to_uppercase(),
                    calcom_user_id: CalcomUserId(user),
                    calcom_username: id.into(),
                    time_zone: "Europe/Berlin".into(),
                    created_at: now(),
                    updated_at: now(),
                },
            )
            .await
            .expect("staff");
    }
}

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 4, hour, minute, 0)
        .single()
        .expect("instant")
}

fn appointment(tenant: Uuid, service: &str, staff: &str, start: DateTime<Utc>) -> NewAppointment {
    let service_def = if service == "colour" {
        colouring()
    } else {
        Service::new("Cut", vec![seg("C", 30, 0)]).expect("service")
    };
    let staff_id = StaffId::parse(staff).expect("staff");
    let assigned = assign_staff(&service_def, &staff_id, &[]).expect("assign");
    NewAppointment {
        appointment_id: Uuid::now_v7(),
        tenant_id: tenant,
        service_id: ServiceId::parse(service).expect("service"),
        staff_id,
        time_zone: "Europe/Berlin".into(),
        customer: Customer::new("Ada", Some("ada@example.com"), Some("+4915123456789"))
            .expect("customer"),
        notes: Some("first visit".into()),
        segments: plan_appointment(&service_def, start, &assigned),
        created_at: now(),
        awaited: false,
    }
}

async fn migrate_twice_is_a_no_op(f: Fixture) {
    f.store().migrate().await.expect("second migrate");
    f.store().migrate().await.expect("third migrate");
    f.store().ping().await.expect("ping");
}

async fn api_keys_are_found_by_hash_only(f: Fixture) {
    let issued = auth::issue_api_key(f.store(), f.tenant, Role::Agent)
        .await
        .expect("key");
    let key = issued.api_key.expose_secret();
    let owner = f
        .store()
        .find_api_key(&hash_api_key(key))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(owner.tenant_id, f.tenant);
    assert_eq!(owner.role, Role::Agent);
    assert!(
        f.store().find_api_key(key).await.expect("lookup").is_none(),
        "the plain key is not stored"
    );
    assert!(f.store().tenant_exists(f.tenant).await.expect("exists"));
    assert!(
        !f.store()
            .tenant_exists(Uuid::now_v7())
            .await
            .expect("exists")
    );
}

async fn services_round_trip_and_replace_by_key(f: Fixture) {
    let id = ServiceId::parse("colour").expect("id");
    let stored = f
        .store()
        .get_service(f.tenant, &id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(stored.service, colouring());
    // Reorder, drop a key and add one: positions must not collide.
    let replaced = Service::new(
        "Colour v2",
        vec![seg("B", 15, 10), seg("A", 30, 0), seg("E", 10, 0)],
    )
    .expect("service");
    let updated = f
        .store()
        .put_service(f.tenant, &id, &replaced, now())
        .await
        .expect("replace");
    assert_eq!(updated.service, replaced);
    assert_eq!(updated.created_at, stored.created_at);
    let all = f.store().list_services(f.tenant).await.expect("list");
    assert_eq!(
        all.iter()
            .map(|s| s.service_id.as_str())
            .collect::<Vec<_>>(),
        ["colour", "cut"]
    );
}

async fn staff_round_trip(f: Fixture) {
    let anna = f
        .store()
        .get_staff(f.tenant, &StaffId::parse("anna").expect("id"))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(anna.calcom_user_id, CalcomUserId(1));
    let mut renamed = anna.clone();
    renamed.name = "Anna S.".into();
    renamed.created_at = now() + Duration::days(1);
    let stored = f.store().put_staff(f.tenant, &renamed).await.expect("put");
    assert_eq!(stored.name, "Anna S.");
    assert_eq!(stored.created_at, anna.created_at, "created_at is kept");
    assert_eq!(f.store().list_staff(f.tenant).await.expect("list").len(), 2);
}

async fn creating_writes_appointment_segments_and_a_pending_sync_job(f: Fixture) {
    let new = appointment(f.tenant, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&new, None)
        .await
        .expect("create");
    let read = f
        .store()
        .get_appointment(f.tenant, new.appointment_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(read, new.as_created(), "reads back exactly as created");
    assert_eq!(read.segments.len(), 4);
    assert_eq!(read.ends_at, at(9, 10));
    assert_eq!(read.sync_status, AppointmentSyncStatus::Pending);
    assert!(
        read.segments
            .iter()
            .all(|s| s.sync_status == SegmentSyncStatus::Pending)
    );
    assert_eq!(
        testing::sync_job(&f.db, new.appointment_id)
            .await
            .expect("job")
            .as_deref(),
        Some("pending")
    );
}

async fn overlapping_segment_is_a_double_booking_naming_the_holder(f: Fixture) {
    let first = appointment(f.tenant, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&first, None)
        .await
        .expect("first");
    // A cut at 08:30 overlaps segment C (08:20–08:50).
    let second = appointment(f.tenant, "cut", "anna", at(8, 30));
    match f.store().create_appointment(&second, None).await {
        Err(StoreError::DoubleBooking {
            conflicting_appointment_id,
        }) => assert_eq!(conflicting_appointment_id, Some(first.appointment_id)),
        other => panic!("expected a double booking, got {other:?}"),
    }
    assert!(
        f.store()
            .get_appointment(f.tenant, second.appointment_id)
            .await
            .expect("get")
            .is_none(),
        "the loser wrote nothing"
    );
    assert_eq!(
        testing::count_rows(&f.db, "sync_jobs", f.tenant)
            .await
            .expect("count"),
        1
    );
}

async fn gaps_and_other_staff_and_touching_ends_are_free(f: Fixture) {
    let first = appointment(f.tenant, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&first, None)
        .await
        .expect("first");
    // Inside the processing gap (07:30–08:05), touching both ends.
    let in_gap = appointment(f.tenant, "cut", "anna", at(7, 30));
    f.store()
        .create_appointment(&in_gap, None)
        .await
        .expect("gap is free");
    let ben = appointment(f.tenant, "colour", "ben", at(7, 0));
    f.store()
        .create_appointment(&ben, None)
        .await
        .expect("other staff");
    let after = appointment(f.tenant, "cut", "anna", at(9, 10));
    f.store()
        .create_appointment(&after, None)
        .await
        .expect("touching end");
}

async fn tenants_never_see_or_block_each_other(f: Fixture) {
    let other = new_tenant(f.store()).await;
    seed_catalog(f.store(), other).await;
    let mine = appointment(f.tenant, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&mine, None)
        .await
        .expect("mine");
    let theirs = appointment(other, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&theirs, None)
        .await
        .expect("same staff id in another tenant is another person");
    assert!(
        f.store()
            .get_appointment(other, mine.appointment_id)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        f.store()
            .cancel_appointment(other, mine.appointment_id, now())
            .await
            .expect("cancel")
            .is_none()
    );
    let listed = f
        .store()
        .list_appointments(
            other,
            &AppointmentQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|a| a.appointment_id).collect::<Vec<_>>(),
        [theirs.appointment_id]
    );
    assert!(
        f.store()
            .get_service(other, &ServiceId::parse("missing").expect("id"))
            .await
            .expect("get")
            .is_none()
    );
}

async fn cancelling_frees_the_slot_and_makes_the_job_due(f: Fixture) {
    let first = appointment(f.tenant, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&first, None)
        .await
        .expect("first");
    // Its job ran and ended, as the worker ends one.
    let sync = phasebook_api::sync::sync_store(&f.db);
    let claimed = sync
        .claim_jobs_fairly(
            "conformance",
            now(),
            now() + Duration::seconds(60),
            1,
            1,
            false,
        )
        .await
        .expect("claim");
    let [job] = claimed.as_slice() else {
        panic!("the new appointment's job is due: {claimed:?}");
    };
    sync.finish_job(&job.fence, now(), phasebook_api::store::sync::JobNext::Done)
        .await
        .expect("finish")
        .expect("the lease is held");
    assert_eq!(
        testing::sync_job(&f.db, first.appointment_id)
            .await
            .expect("job")
            .as_deref(),
        Some("done")
    );
    let cancelled = f
        .store()
        .cancel_appointment(f.tenant, first.appointment_id, now())
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert!(cancelled.cancelled_at.is_some());
    assert!(cancelled.segments.iter().all(|s| !s.active));
    // Nothing reached Cal.com, so nothing is left to cancel there.
    assert_eq!(cancelled.sync_status, AppointmentSyncStatus::Cancelled);
    assert_eq!(
        testing::sync_job(&f.db, first.appointment_id)
            .await
            .expect("job")
            .as_deref(),
        Some("pending")
    );
    let again = f
        .store()
        .cancel_appointment(f.tenant, first.appointment_id, now())
        .await
        .expect("cancel twice")
        .expect("found");
    assert_eq!(
        again.cancelled_at, cancelled.cancelled_at,
        "repeat changes nothing"
    );
    let retry = appointment(f.tenant, "colour", "anna", at(7, 0));
    f.store()
        .create_appointment(&retry, None)
        .await
        .expect("the slot is free again");
}

async fn listing_filters_and_pages_in_start_order(f: Fixture) {
    let mut ids = Vec::new();
    for hour in [12, 8, 10, 14, 16] {
        let a = appointment(f.tenant, "cut", "anna", at(hour, 0));
        f.store()
            .create_appointment(&a, None)
            .await
            .expect("create");
        ids.push((hour, a.appointment_id));
    }
    let ben = appointment(f.tenant, "cut", "ben", at(9, 0));
    f.store().create_appointment(&ben, None).await.expect("ben");
    ids.sort();

    let mut seen = Vec::new();
    let mut query = AppointmentQuery {
        staff_id: Some(StaffId::parse("anna").expect("id")),
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = f
            .store()
            .list_appointments(f.tenant, &query)
            .await
            .expect("page");
        seen.extend(page.iter().map(|a| a.appointment_id));
        let Some(last) = page.last() else { break };
        if page.len() < 2 {
            break;
        }
        query.after = Some((last.starts_at, last.appointment_id));
    }
    assert_eq!(seen, ids.iter().map(|(_, id)| *id).collect::<Vec<_>>());

    let window = f
        .store()
        .list_appointments(
            f.tenant,
            &AppointmentQuery {
                from: Some(at(9, 15)),
                to: Some(at(12, 0)),
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .expect("window");
    // 09:00–09:30 (ben) ends after 09:15; 10:00 starts before 12:00; 12:00 does not.
    assert_eq!(window.len(), 2);

    let pending = f
        .store()
        .list_appointments(
            f.tenant,
            &AppointmentQuery {
                sync_status: Some(AppointmentSyncStatus::Pending),
                requires_manual_review: Some(false),
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .expect("pending");
    assert_eq!(pending.len(), 6);
    let synced = f
        .store()
        .list_appointments(
            f.tenant,
            &AppointmentQuery {
                sync_status: Some(AppointmentSyncStatus::Synced),
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .expect("synced");
    assert!(synced.is_empty());
}

async fn idempotency_keys_claim_replay_refuse_and_expire(f: Fixture) {
    let store = f.store();
    let t0 = now();
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k", "h1", t0)
            .await
            .expect("claim"),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k", "h1", t0)
            .await
            .expect("again"),
        IdempotencyClaim::InFlight
    );
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k", "h2", t0)
            .await
            .expect("other body"),
        IdempotencyClaim::Mismatch
    );
    // The same key in another tenant is another key.
    let other = new_tenant(store).await;
    assert_eq!(
        store
            .claim_idempotency_key(other, "k", "h2", t0)
            .await
            .expect("other tenant"),
        IdempotencyClaim::Claimed
    );

    // A create claims its key with its rows, the 201 pinned in the same transaction.
    let response = IdempotentResponse {
        status: 201,
        body: b"{\"exact\": \"bytes\"}".to_vec(),
    };
    let keyed = |key, request_hash| KeyedAnswer {
        key,
        request_hash,
        response: &response,
    };
    let rows = || async {
        (
            testing::count_rows(&f.db, "appointments", f.tenant)
                .await
                .expect("count"),
            testing::count_rows(&f.db, "sync_jobs", f.tenant)
                .await
                .expect("count"),
        )
    };
    let new = appointment(f.tenant, "colour", "anna", at(7, 0));
    assert_eq!(
        store
            .create_appointment(&new, Some(keyed("k4", "h4")))
            .await
            .expect("create"),
        IdempotencyClaim::Claimed
    );
    assert_eq!(rows().await, (1, 1));
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k4", "h4", t0)
            .await
            .expect("replay"),
        IdempotencyClaim::Completed(response.clone())
    );
    // The same create again (a retry, planned anew) writes nothing: its time is not even
    // checked against the first one's, and the key answers with the first 201.
    let retry = appointment(f.tenant, "colour", "anna", at(7, 0));
    assert_eq!(
        store
            .create_appointment(&retry, Some(keyed("k4", "h4")))
            .await
            .expect("retry"),
        IdempotencyClaim::Completed(response.clone())
    );
    assert_eq!(
        store
            .create_appointment(&retry, Some(keyed("k4", "another body")))
            .await
            .expect("other body"),
        IdempotencyClaim::Mismatch
    );
    // A key another route holds in flight is not taken either.
    let elsewhere = appointment(f.tenant, "colour", "anna", at(12, 0));
    assert_eq!(
        store
            .create_appointment(&elsewhere, Some(keyed("k", "h1")))
            .await
            .expect("in flight"),
        IdempotencyClaim::InFlight
    );
    assert_eq!(rows().await, (1, 1));

    // A double booking rolls the key back with the rows; the refusal is then pinned as
    // the key's first answer.
    let clash = appointment(f.tenant, "colour", "anna", at(7, 0));
    assert!(matches!(
        store
            .create_appointment(&clash, Some(keyed("k2", "h3")))
            .await,
        Err(StoreError::DoubleBooking { .. })
    ));
    assert_eq!(rows().await, (1, 1));
    let conflict = IdempotentResponse {
        status: 409,
        body: b"problem".to_vec(),
    };
    let refusal = KeyedAnswer {
        key: "k2",
        request_hash: "h3",
        response: &conflict,
    };
    assert_eq!(
        store
            .pin_first_answer(f.tenant, refusal, t0)
            .await
            .expect("pin"),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store
            .pin_first_answer(f.tenant, refusal, t0)
            .await
            .expect("pinned"),
        IdempotencyClaim::Completed(conflict.clone())
    );
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k2", "h3", t0)
            .await
            .expect("replay"),
        IdempotencyClaim::Completed(conflict)
    );

    // Released keys (a 5xx) can be claimed again.
    store
        .claim_idempotency_key(f.tenant, "k3", "h", t0)
        .await
        .expect("claim");
    store
        .release_idempotency_key(f.tenant, "k3")
        .await
        .expect("release");
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k3", "other", t0)
            .await
            .expect("reclaim"),
        IdempotencyClaim::Claimed
    );

    // A stale in-flight key (its request died) is taken over.
    let later = t0 + Duration::minutes(5);
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k3", "other", later)
            .await
            .expect("stale"),
        IdempotencyClaim::Claimed
    );

    // After 24 h a key is free again, and purging removes it.
    let tomorrow = t0 + Duration::hours(25);
    assert_eq!(
        store
            .claim_idempotency_key(f.tenant, "k", "new", tomorrow)
            .await
            .expect("expired"),
        IdempotencyClaim::Claimed
    );
    let purged = store
        .purge_expired_idempotency_keys(t0 + Duration::days(3))
        .await
        .expect("purge");
    assert!(purged >= 4, "purged {purged}");
    assert_eq!(
        testing::count_rows(&f.db, "idempotency_keys", f.tenant)
            .await
            .expect("count"),
        0
    );
}

async fn concurrent_overlapping_creates_have_exactly_one_winner(f: Fixture) {
    let store: Arc<dyn Store> = f.db.shared();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        // Different starts, all overlapping 07:00–07:30 for anna.
        let a = appointment(f.tenant, "cut", "anna", at(7, 0) + Duration::minutes(i % 5));
        tasks.push(tokio::spawn(async move {
            store
                .create_appointment(&a, None)
                .await
                .map(|_| a.appointment_id)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(id) => winners.push(id),
            Err(StoreError::DoubleBooking {
                conflicting_appointment_id,
            }) => {
                losers += 1;
                assert!(conflicting_appointment_id.is_some());
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    assert_eq!(losers, 23);
    assert_eq!(
        testing::count_rows(&f.db, "appointments", f.tenant)
            .await
            .expect("count"),
        1
    );
}

phasebook_test_support::on_both_backends!(
    with fixture;
    migrate_twice_is_a_no_op,
    api_keys_are_found_by_hash_only,
    services_round_trip_and_replace_by_key,
    staff_round_trip,
    creating_writes_appointment_segments_and_a_pending_sync_job,
    overlapping_segment_is_a_double_booking_naming_the_holder,
    gaps_and_other_staff_and_touching_ends_are_free,
    tenants_never_see_or_block_each_other,
    cancelling_frees_the_slot_and_makes_the_job_due,
    listing_filters_and_pages_in_start_order,
    idempotency_keys_claim_replay_refuse_and_expire,
    concurrent_overlapping_creates_have_exactly_one_winner,
);
