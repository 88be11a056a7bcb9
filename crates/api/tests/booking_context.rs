//! `Store::booking_context`, the one statement a booking reads before the domain decides,
//! answers what the separate reads answer, on both backends: for the staff a booking names,
//! or for every performer when a search names none.

use chrono::{SubsecRound, Utc};
use phasebook_api::store::Database;
use phasebook_api::store::holds::BookingSettings;
use phasebook_domain::{SegmentKey, Service, ServiceId, StaffId};
use phasebook_test_support::fixtures::{self, FixtureStaff};
use phasebook_test_support::{self as testing, TestDatabase};

fn id<T>(parse: fn(&str) -> Result<T, phasebook_domain::FieldError>, text: &str) -> T {
    parse(text).expect("id")
}

async fn check(database: TestDatabase) {
    let db: Database = database.connect().await.expect("connect and migrate");
    let store = db.store();
    let staff_of = |(name, user): (&str, i64)| FixtureStaff {
        staff_id: id(StaffId::parse, name),
        calcom_user_id: user,
        calcom_username: name.into(),
    };
    let salon = fixtures::seed_salon(
        &db,
        "http://127.0.0.1:1",
        "cal_test",
        "colour",
        fixtures::segments(2, 30, 10),
        [("ben", 2), ("anna", 1), ("cleo", 3)]
            .map(staff_of)
            .to_vec(),
    )
    .await
    .expect("salon");
    let tenant = salon.tenant_id;
    let colour = salon.service_id.clone();
    let other = id(ServiceId::parse, "cut");
    let cut = Service::new("Cut", fixtures::segments(1, 30, 0)).expect("service");
    store
        .put_service(tenant, &other, &cut, Utc::now().trunc_subsecs(3))
        .await
        .expect("service");
    for (service_id, key, staff) in [
        (&colour, "B", "ben"),
        (&colour, "A", "anna"),
        (&colour, "B", "anna"),
        (&other, "A", "cleo"),
    ] {
        fixtures::put_event_map(
            &db,
            tenant,
            service_id,
            &id(SegmentKey::parse, key),
            &id(StaffId::parse, staff),
            7,
            8,
        )
        .await
        .expect("map");
    }
    db.booking()
        .set_booking_settings(
            tenant,
            &BookingSettings {
                country: Some("CH".into()),
                horizon_days: 90,
            },
        )
        .await
        .expect("settings");

    let asked = [
        id(StaffId::parse, "cleo"),
        id(StaffId::parse, "nobody"),
        id(StaffId::parse, "anna"),
    ];
    let context = store
        .booking_context(tenant, &colour, &asked)
        .await
        .expect("context");
    assert_eq!(
        context.service,
        store.get_service(tenant, &colour).await.expect("service")
    );
    assert_eq!(
        context.settings,
        db.booking()
            .booking_settings(tenant)
            .await
            .expect("settings")
    );
    // A booking names its staff: performers and maps are theirs alone (ben performs the
    // service and has a map, but was not asked for).
    let performers = db
        .booking()
        .performers(tenant, &colour)
        .await
        .expect("performers");
    assert!(performers.iter().any(|p| p.as_str() == "ben"));
    assert_eq!(
        context.performers,
        performers
            .iter()
            .filter(|p| asked.contains(p))
            .cloned()
            .collect::<Vec<_>>()
    );
    let maps: Vec<_> = db
        .event_maps()
        .list_event_maps(tenant)
        .await
        .expect("maps")
        .into_iter()
        .filter(|m| m.service_id == colour)
        .collect();
    assert_eq!(
        context.maps,
        maps.iter()
            .filter(|m| asked.contains(&m.staff_id))
            .cloned()
            .collect::<Vec<_>>()
    );
    // A search names nobody: every performer and every map of the service.
    let search = store
        .booking_context(tenant, &colour, &[])
        .await
        .expect("context");
    assert_eq!(search.performers, performers);
    assert_eq!(search.maps, maps);
    assert!(search.staff.is_empty());
    let mut staff = Vec::new();
    for s in ["anna", "cleo"] {
        staff.push(
            store
                .get_staff(tenant, &id(StaffId::parse, s))
                .await
                .expect("staff")
                .expect("exists"),
        );
    }
    assert_eq!(context.staff, staff);

    let none = store
        .booking_context(tenant, &id(ServiceId::parse, "perm"), &[])
        .await
        .expect("context");
    assert_eq!(none.service, None);
    assert!(none.maps.is_empty() && none.performers.is_empty() && none.staff.is_empty());
    assert!(none.settings.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_answers_what_the_separate_reads_answer_on_sqlite() {
    check(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_answers_what_the_separate_reads_answer_on_postgres() {
    let Some(database) = testing::TestDatabase::postgres_from_env().await else {
        eprintln!("DATABASE_URL not set: PostgreSQL variant skipped");
        return;
    };
    check(database).await;
}
