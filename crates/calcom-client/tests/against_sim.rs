//! The real `CalcomClient` against a spawned `calcom-sim`: a round trip of every client
//! operation, every typed error the sim can produce, and the client-side limiter keeping a
//! burst under the sim's limit.

use std::time::Duration;

use calcom_client::{
    Attendee, BookingMetadata, BookingStatus, CalcomClient, CalcomError, ClientConfig,
    CreateBooking, CreateTeamEventType, HostAssignment, ListBookings, RateLimit, RescheduleBooking,
    ReserveSlot, SchedulingType, SecretString, SlotRefusal, SlotsQuery, UpdateTeamEventType,
};
use calcom_sim::{Faults, RateLimitConfig, RouteFaults, RunningSim, Seed, Sim, SimConfig, salon};
use chrono::{DateTime, TimeZone, Utc};

async fn sim_with(config: SimConfig) -> RunningSim {
    let sim = Sim::new(config);
    sim.seed(Seed::salon()).expect("seed");
    sim.spawn().await.expect("spawn")
}

async fn salon_sim() -> RunningSim {
    sim_with(SimConfig::default()).await
}

fn config(sim: &RunningSim, key: &str) -> ClientConfig {
    let mut c = ClientConfig::new(sim.base_url.clone(), SecretString::from(key.to_owned()));
    c.timeout = Duration::from_secs(5);
    c.read_retries = 0;
    c
}

fn client(sim: &RunningSim) -> CalcomClient {
    CalcomClient::new(config(sim, salon::API_KEY)).expect("client")
}

/// 2030-06-03 is a Monday; `h:m` Berlin summer time.
fn berlin(day: i64, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 3, h, m, 0)
        .single()
        .expect("date")
        - chrono::Duration::hours(2)
        + chrono::Duration::days(day)
}

fn booking(event_type_id: i64, start: DateTime<Utc>, segment: &str) -> CreateBooking {
    CreateBooking {
        start,
        event_type_id,
        attendee: Attendee {
            name: "Bea Kunde".into(),
            email: Some("bea@example.com".into()),
            time_zone: "Europe/Berlin".into(),
            phone_number: Some("+4915112345678".into()),
            language: Some("de".into()),
        },
        metadata: BookingMetadata::new([("appointment_id", "apt-1"), ("segment", segment)])
            .expect("metadata"),
        notes: Some("Allergic to ammonia".into()),
    }
}

#[tokio::test]
async fn booking_round_trip_create_get_list_reschedule_cancel() {
    let sim = salon_sim().await;
    let c = client(&sim);
    let et = salon::ANNA_SEGMENTS[1];
    let created = c
        .create_booking(&booking(et, berlin(0, 10, 0), "B"))
        .await
        .expect("create");
    assert_eq!(created.status, BookingStatus::Accepted);
    assert_eq!(created.event_type_id, Some(et));
    assert_eq!(created.start, berlin(0, 10, 0));
    assert_eq!(created.end, berlin(0, 10, 30));
    assert_eq!(created.hosts[0].id, salon::ANNA);
    assert_eq!(created.metadata["segment"], "B");
    assert_eq!(
        created.attendees[0].phone_number.as_deref(),
        Some("+4915112345678")
    );

    let got = c.get_booking(&created.uid).await.expect("get");
    assert_eq!(got, created);

    let page = c
        .list_bookings(&ListBookings {
            event_type_id: Some(et),
            after_start: Some(berlin(0, 10, 0)),
            before_end: Some(berlin(0, 10, 30)),
            attendee_email: Some("bea@example.com".into()),
            take: Some(250),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.bookings.len(), 1);
    assert_eq!(page.total, Some(1));
    assert!(!page.has_next_page);

    let moved = c
        .reschedule_booking(
            &created.uid,
            &RescheduleBooking {
                start: berlin(0, 11, 0),
                rescheduled_by: None,
                rescheduling_reason: Some("running late".into()),
            },
        )
        .await
        .expect("reschedule");
    assert_ne!(moved.uid, created.uid);
    assert_eq!(
        moved.rescheduled_from_uid.as_deref(),
        Some(created.uid.as_str())
    );
    assert_eq!(moved.metadata, created.metadata);
    let old = c.get_booking(&created.uid).await.expect("old");
    assert_eq!(old.status, BookingStatus::Cancelled);
    assert_eq!(old.rescheduled_to_uid.as_deref(), Some(moved.uid.as_str()));

    let cancelled = c
        .cancel_booking(&moved.uid, "customer cancelled")
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("customer cancelled")
    );
    let again = c
        .cancel_booking(&moved.uid, "again")
        .await
        .expect_err("twice");
    assert!(again.is_already_cancelled(), "{again:?}");
    assert_eq!(again.kind(), "validation");

    let state = sim.state();
    assert_eq!(state.bookings.len(), 2);
}

#[tokio::test]
async fn event_type_operations_round_trip_and_find_a_managed_child() {
    let sim = salon_sim().await;
    let c = client(&sim);
    let own = c
        .get_event_type(salon::ANNA_SEGMENTS[0])
        .await
        .expect("own");
    assert_eq!(own.owner_id, Some(salon::ANNA));
    assert_eq!(own.length_in_minutes, 15);

    let listed = c
        .list_event_types("anna", Some(salon::MANAGED_SLUG))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, salon::ANNA_CHILD);
    assert!(listed[0].metadata.contains_key("managedEventConfig"));
    assert!(
        c.list_event_types("ben", Some(salon::MANAGED_SLUG))
            .await
            .expect("ben")
            .is_empty()
    );

    let team = c
        .list_team_event_types(salon::TEAM_ID, None)
        .await
        .expect("team");
    assert!(team.iter().any(|e| e.id == salon::MANAGED_PARENT));
    assert!(team.iter().all(|e| e.parent_event_type_id.is_none()));
    let parent = c
        .get_team_event_type(salon::TEAM_ID, salon::MANAGED_PARENT)
        .await
        .expect("parent");
    assert_eq!(parent.scheduling_type, Some(SchedulingType::Managed));
    assert_eq!(
        parent.hosts.iter().map(|h| h.user_id).collect::<Vec<_>>(),
        vec![salon::ANNA]
    );

    // Fix the incident the way Cal.com supports: PATCH the team parent with both hosts.
    let updated = c
        .update_team_event_type(
            salon::TEAM_ID,
            salon::MANAGED_PARENT,
            &UpdateTeamEventType {
                hosts: Some(vec![
                    HostAssignment::user(salon::ANNA),
                    HostAssignment::user(salon::BEN),
                ]),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.len(), 3);
    assert_eq!(updated[0].id, salon::MANAGED_PARENT);
    let ben_child = updated
        .iter()
        .find(|e| {
            e.owner_id == Some(salon::BEN) && e.parent_event_type_id == Some(salon::MANAGED_PARENT)
        })
        .expect("ben child");
    let found = c
        .list_event_types("ben", Some(salon::MANAGED_SLUG))
        .await
        .expect("ben");
    assert_eq!(found[0].id, ben_child.id);

    let mut create = CreateTeamEventType::new("Gloss", "gloss", 10, SchedulingType::Managed);
    create.hosts = vec![HostAssignment::user(salon::BEN)];
    let made = c
        .create_team_event_type(salon::TEAM_ID, &create)
        .await
        .expect("create");
    assert_eq!(made.len(), 2);
    assert_eq!(made[1].owner_id, Some(salon::BEN));
    let mut rr = CreateTeamEventType::new("Fringe", "fringe", 15, SchedulingType::RoundRobin);
    rr.hosts = vec![HostAssignment::user(salon::ANNA)];
    let made = c
        .create_team_event_type(salon::TEAM_ID, &rr)
        .await
        .expect("rr");
    assert_eq!(made.len(), 1, "a non-managed answer is one object");
    assert_eq!(made[0].hosts[0].user_id, salon::ANNA);
}

#[tokio::test]
async fn slots_and_reservations_round_trip() {
    let sim = salon_sim().await;
    let c = client(&sim);
    let et = salon::BEN_SEGMENTS[1];
    let q = SlotsQuery {
        event_type_id: et,
        start: berlin(0, 0, 0) + chrono::Duration::hours(2),
        end: berlin(0, 23, 0),
        time_zone: Some("Europe/Berlin".into()),
        duration: None,
        booking_uid_to_reschedule: None,
    };
    let slots = c.get_slots(&q).await.expect("slots");
    let monday = &slots["2030-06-03"];
    assert_eq!(monday.len(), 20);
    assert_eq!(monday[0].start, berlin(0, 9, 0));
    assert_eq!(
        monday[0].end.map(|e| e.with_timezone(&Utc)),
        Some(berlin(0, 9, 30))
    );
    assert_eq!(monday[0].start.offset().local_minus_utc(), 7200);

    let held = c
        .reserve_slot(&ReserveSlot {
            event_type_id: et,
            slot_start: berlin(0, 9, 0),
            slot_duration: None,
            reservation_duration: Some(10),
        })
        .await
        .expect("reserve");
    assert_eq!(held.event_type_id, et);
    assert_eq!(held.reservation_duration, Some(10));
    assert_eq!(
        c.get_slots(&q).await.expect("slots")["2030-06-03"].len(),
        19
    );
    c.delete_reservation(&held.reservation_uid)
        .await
        .expect("delete");
    assert_eq!(
        c.get_slots(&q).await.expect("slots")["2030-06-03"].len(),
        20
    );
}

#[tokio::test]
async fn managed_parent_is_its_own_error_with_the_id() {
    let sim = salon_sim().await;
    let err = client(&sim)
        .create_booking(&booking(salon::MANAGED_PARENT, berlin(0, 10, 0), "A"))
        .await
        .expect_err("parent");
    match err {
        CalcomError::ManagedParent { event_type_id, .. } => {
            assert_eq!(event_type_id, salon::MANAGED_PARENT)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_busy_host_is_slot_unavailable() {
    let sim = salon_sim().await;
    sim.sim
        .insert_booking(calcom_sim::SeedBooking::new(
            salon::ANNA_SEGMENTS[2],
            berlin(0, 10, 0),
        ))
        .expect("busy");
    let err = client(&sim)
        .create_booking(&booking(salon::ANNA_SEGMENTS[1], berlin(0, 10, 15), "B"))
        .await
        .expect_err("busy");
    assert!(
        matches!(err, CalcomError::SlotUnavailable { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn racing_twins_are_a_duplicate_booking() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::default().route("bookings.create", RouteFaults::race_window(200)));
    let c = client(&sim);
    let b = booking(salon::ANNA_SEGMENTS[1], berlin(0, 12, 0), "B");
    let (x, y) = tokio::join!(c.create_booking(&b), c.create_booking(&b));
    let errs: Vec<CalcomError> = [x, y].into_iter().filter_map(Result::err).collect();
    assert_eq!(errs.len(), 1);
    assert!(
        matches!(errs[0], CalcomError::DuplicateBooking { .. }),
        "{:?}",
        errs[0]
    );
    assert_eq!(sim.state().bookings.len(), 1);
}

#[tokio::test]
async fn not_found_unauthorized_and_validation() {
    let sim = salon_sim().await;
    let c = client(&sim);
    let err = c.get_booking("no-such-uid").await.expect_err("404");
    assert!(matches!(err, CalcomError::NotFound { .. }), "{err:?}");
    let err = c
        .get_event_type(salon::BEN_SEGMENTS[0])
        .await
        .expect_err("not own");
    assert!(matches!(err, CalcomError::NotFound { .. }), "{err:?}");

    let bad = CalcomClient::new(config(&sim, "cal_live_not_a_key")).expect("client");
    let err = bad.get_booking("x").await.expect_err("401");
    assert!(
        matches!(err, CalcomError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );

    let ben = CalcomClient::new(config(&sim, salon::BEN_API_KEY)).expect("client");
    let err = ben
        .update_team_event_type(
            salon::TEAM_ID,
            salon::MANAGED_PARENT,
            &UpdateTeamEventType {
                title: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("403");
    assert!(
        matches!(err, CalcomError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );

    // Hosts outside the team: Cal.com's 404.
    let err = c
        .update_team_event_type(
            salon::TEAM_ID,
            salon::MANAGED_PARENT,
            &UpdateTeamEventType {
                hosts: Some(vec![HostAssignment::user(999)]),
                ..Default::default()
            },
        )
        .await
        .expect_err("invalid host");
    assert!(matches!(err, CalcomError::NotFound { .. }), "{err:?}");

    // A start outside the sim's accepted range: in the past.
    let err = c
        .create_booking(&booking(
            salon::ANNA_SEGMENTS[1],
            Utc::now() - chrono::Duration::days(2),
            "B",
        ))
        .await
        .expect_err("past");
    assert!(
        matches!(err, CalcomError::SlotUnavailable { .. }),
        "{err:?}"
    );

    // Cancel without reason is not possible through the client; double cancel is Validation.
    let b = c
        .create_booking(&booking(salon::ANNA_SEGMENTS[1], berlin(0, 14, 0), "B"))
        .await
        .expect("b");
    c.cancel_booking(&b.uid, "x").await.expect("cancel");
    let err = c.cancel_booking(&b.uid, "x").await.expect_err("twice");
    assert!(
        matches!(err, CalcomError::Validation { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_are_server() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::default().route("bookings.create", RouteFaults::error_rate(1.0)));
    let err = client(&sim)
        .create_booking(&booking(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0), "B"))
        .await
        .expect_err("500");
    assert!(
        matches!(err, CalcomError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert!(sim.state().bookings.is_empty());
}

#[tokio::test]
async fn rate_limited_carries_the_reset_time() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimitConfig {
            limit: 2,
            window: Duration::from_secs(60),
            block: Duration::from_secs(30),
        }),
        ..Default::default()
    })
    .await;
    let mut cfg = config(&sim, salon::API_KEY);
    cfg.rate_limit = RateLimit {
        requests: 100,
        per: Duration::from_secs(1),
    };
    let c = CalcomClient::new(cfg).expect("client");
    c.get_event_type(salon::ANNA_SEGMENTS[0]).await.expect("1");
    c.get_event_type(salon::ANNA_SEGMENTS[0]).await.expect("2");
    let err = c
        .get_event_type(salon::ANNA_SEGMENTS[0])
        .await
        .expect_err("429");
    match err {
        CalcomError::RateLimited { reset_after, .. } => {
            assert_eq!(reset_after, Duration::from_secs(30))
        }
        other => panic!("{other:?}"),
    }
    // An injected 429 says 60 s, like a Cal.com block.
    sim.sim.set_rate_limit(None);
    sim.sim
        .set_faults(Faults::everywhere(3, RouteFaults::rate_limited_rate(1.0)));
    let fresh = CalcomClient::new(config(&sim, salon::BEN_API_KEY)).expect("client");
    let err = fresh.get_booking("x").await.expect_err("429");
    assert!(
        matches!(err, CalcomError::RateLimited { reset_after, .. } if reset_after == Duration::from_secs(60)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hang_is_outcome_unknown_after_the_timeout() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::default().route("bookings.create", RouteFaults::hang_rate(1.0)));
    let mut cfg = config(&sim, salon::API_KEY);
    cfg.timeout = Duration::from_millis(400);
    let c = CalcomClient::new(cfg).expect("client");
    let err = c
        .create_booking(&booking(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0), "B"))
        .await
        .expect_err("hang");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(sim.state().requests["bookings.create"].hung, 1);
}

#[tokio::test]
async fn a_lost_response_is_outcome_unknown_and_the_booking_exists() {
    let sim = salon_sim().await;
    sim.sim.set_faults(
        Faults::default()
            .route("bookings.create", RouteFaults::lost_response_rate(1.0))
            .route("bookings.cancel", RouteFaults::lost_response_rate(1.0)),
    );
    let c = client(&sim);
    let err = c
        .create_booking(&booking(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0), "B"))
        .await
        .expect_err("lost");
    assert!(err.outcome_unknown(), "{err:?}");
    // Reconcile by listing, as the client's users do.
    let page = c
        .list_bookings(&ListBookings {
            event_type_id: Some(salon::ANNA_SEGMENTS[1]),
            after_start: Some(berlin(0, 10, 0)),
            before_end: Some(berlin(0, 10, 30)),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.bookings.len(), 1);
    assert_eq!(page.bookings[0].metadata["segment"], "B");
    let uid = page.bookings[0].uid.clone();
    let err = c.cancel_booking(&uid, "x").await.expect_err("lost cancel");
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(
        sim.state().booking(&uid).map(|b| b.status),
        Some(calcom_sim::BookingStatus::Cancelled)
    );
}

#[tokio::test]
async fn the_client_limiter_keeps_a_burst_under_the_sims_limit() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimitConfig {
            limit: 5,
            window: Duration::from_secs(1),
            block: Duration::from_secs(60),
        }),
        ..Default::default()
    })
    .await;
    let mut cfg = config(&sim, salon::API_KEY);
    cfg.rate_limit = RateLimit {
        requests: 5,
        per: Duration::from_secs(1),
    };
    let c = CalcomClient::new(cfg).expect("client");
    let calls = (0..12).map(|_| {
        let c = c.clone();
        async move { c.list_event_types("anna", None).await }
    });
    let results = futures_join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let state = sim.state();
    assert_eq!(state.requests["event_types.list"].total, 12);
    assert_eq!(state.requests["event_types.list"].rate_limited, 0);
}

/// `futures::future::join_all` without the dependency: spawn and await in order.
async fn futures_join_all<F, T>(calls: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

// ---- find, hold, book -------------------------------------------------------------------

fn hold(event_type_id: i64, start: DateTime<Utc>) -> ReserveSlot {
    ReserveSlot {
        event_type_id,
        slot_start: start,
        slot_duration: None,
        reservation_duration: Some(10),
    }
}

#[tokio::test]
async fn reservations_are_read_moved_and_released_through_the_client() {
    let sim = salon_sim().await;
    let c = client(&sim);
    let et = salon::BEN_SEGMENTS[1];
    let held = c
        .reserve_slot(&hold(et, berlin(0, 9, 0)))
        .await
        .expect("reserve");

    let read = c
        .get_reservation(&held.reservation_uid)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read, held);
    assert_eq!(c.get_reservation("no-such-hold").await.expect("get"), None);

    // Cal.com's overlap check sees the reservation itself: it cannot be moved onto itself.
    let err = c
        .update_reservation(&held.reservation_uid, &hold(et, berlin(0, 9, 0)))
        .await
        .expect_err("overlaps itself");
    assert_eq!(
        err.slot_refusal(),
        Some(SlotRefusal::AlreadyReserved),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(422));

    let moved = c
        .update_reservation(&held.reservation_uid, &hold(et, berlin(0, 15, 0)))
        .await
        .expect("move");
    assert_eq!(moved.reservation_uid, held.reservation_uid);
    assert_eq!(moved.slot_start, berlin(0, 15, 0));
    assert_eq!(moved.reservation_duration, Some(10));

    let taken = c
        .reserve_slot(&hold(et, berlin(0, 15, 15)))
        .await
        .expect_err("taken");
    assert_eq!(taken.slot_refusal(), Some(SlotRefusal::AlreadyReserved));

    c.delete_reservation(&held.reservation_uid)
        .await
        .expect("release");
    c.delete_reservation(&held.reservation_uid)
        .await
        .expect("a second release is fine too");
    assert_eq!(
        c.get_reservation(&held.reservation_uid).await.expect("get"),
        None
    );
}

/// A stylist working around the clock in UTC with a 60-minute type that needs 10 hours'
/// notice and can be booked at most 2 days ahead.
async fn strict_sim() -> RunningSim {
    let sim = salon_sim().await;
    let mut et = calcom_sim::SeedEventType::individual(8001, 801, "strict", 60);
    et.minimum_booking_notice = Some(600);
    et.booking_window = Some(calcom_sim::BookingWindow::CalendarDays {
        value: 2,
        rolling: false,
    });
    sim.sim
        .seed(Seed {
            users: vec![
                calcom_sim::SeedUser::new(801, "strict", "UTC")
                    .working(calcom_sim::WorkingHours::always()),
            ],
            event_types: vec![et],
            ..Seed::default()
        })
        .expect("seed");
    sim
}

fn whole_hour_in(hours: i64) -> DateTime<Utc> {
    use chrono::DurationRound;
    (Utc::now() + chrono::Duration::hours(hours))
        .duration_trunc(chrono::Duration::hours(1))
        .expect("trunc")
}

#[tokio::test]
async fn too_soon_and_too_far_are_outside_the_booking_window() {
    let sim = strict_sim().await;
    let c = client(&sim);
    for start in [whole_hour_in(2), whole_hour_in(24 * 5)] {
        let err = c
            .create_booking(&booking(8001, start, "A"))
            .await
            .expect_err("refused");
        assert!(err.is_outside_booking_window(), "{err:?}");
        assert_eq!(err.kind(), "slot_unavailable");
        assert_eq!(err.status(), Some(400));
    }
    let ok = c
        .create_booking(&booking(8001, whole_hour_in(24), "A"))
        .await
        .expect("inside the window");
    assert_eq!(ok.status, BookingStatus::Accepted);

    let busy = c
        .create_booking(&booking(8001, whole_hour_in(24), "B"))
        .await
        .expect_err("busy");
    assert_eq!(busy.slot_refusal(), Some(SlotRefusal::HostUnavailable));
    assert!(!busy.is_outside_booking_window());
}

#[tokio::test]
async fn a_phone_only_attendee_comes_back_with_the_sms_placeholder_email() {
    let sim = salon_sim().await;
    let mut b = booking(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0), "B");
    b.attendee.email = None;
    let created = client(&sim).create_booking(&b).await.expect("create");
    assert_eq!(
        created.attendees[0].email.as_deref(),
        Some("4915112345678@sms.cal.com")
    );
    assert_eq!(
        created.attendees[0].phone_number.as_deref(),
        Some("+4915112345678")
    );
}
