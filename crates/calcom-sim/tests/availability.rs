//! What "find, hold, book" needs from the emulator: slots cut from free time the way
//! Cal.com cuts them, reservations (hidden from slots, not blocking API bookings), the
//! minimum booking notice and booking window, DST days, phone-only attendees.

mod common;

use calcom_sim::{
    BookingWindow, Seed, SeedApiKey, SeedBooking, SeedEventType, SeedReservation, SeedUser,
    WorkingHours, salon,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use serde_json::{Value, json};

fn day(body: &Value, date: &str) -> Vec<Value> {
    body["data"][date].as_array().cloned().unwrap_or_default()
}

fn starts(body: &Value, date: &str) -> Vec<String> {
    day(body, date)
        .iter()
        .filter_map(|s| s["start"].as_str().map(str::to_owned))
        .collect()
}

fn slots_path(et: i64, start: &str, end: &str, extra: &str) -> String {
    format!("/v2/slots?eventTypeId={et}&start={start}&end={end}{extra}")
}

/// A stylist who works every hour of every day, in `zone`, with a 60-minute type
/// (`NIGHT_60`), a 30-minute type on a 15-minute interval (`NIGHT_30_EVERY_15`), and a key.
const NIGHT: i64 = 701;
const NIGHT_60: i64 = 7001;
const NIGHT_30_EVERY_15: i64 = 7002;
const NIGHT_KEY: &str = "cal_live_night";

fn night_owl(zone: &str) -> Seed {
    let mut every_15 = SeedEventType::individual(NIGHT_30_EVERY_15, NIGHT, "short", 30);
    every_15.slot_interval = Some(15);
    Seed {
        users: vec![SeedUser::new(NIGHT, "night", zone).working(WorkingHours::always())],
        api_keys: vec![SeedApiKey {
            key: NIGHT_KEY.into(),
            user_id: NIGHT,
        }],
        event_types: vec![
            SeedEventType::individual(NIGHT_60, NIGHT, "long", 60),
            every_15,
        ],
        ..Seed::default()
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("date")
}

// ---- slots ------------------------------------------------------------------------------

#[tokio::test]
async fn after_a_busy_gap_slots_restart_on_the_next_quarter_hour_as_cal_com_does() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::ANNA_SEGMENTS[2]; // 45 min: Cal.com's grid step is 15 min
    let q = slots_path(et, "2030-06-03", "2030-06-03", "&timeZone=Europe/Berlin");
    let before = starts(&api.get(&q, SLOTS).await.body, "2030-06-03");
    assert_eq!(
        before[..3],
        [
            "2030-06-03T09:00:00.000+02:00",
            "2030-06-03T09:45:00.000+02:00",
            "2030-06-03T10:30:00.000+02:00"
        ]
    );

    // Ten busy minutes at opening: the free range starts 09:10, slots from 09:15.
    let mut busy = SeedBooking::new(salon::ANNA_SEGMENTS[0], berlin(0, 9, 0));
    busy.end = Some(berlin(0, 9, 10));
    sim.sim.insert_booking(busy).expect("busy");
    let after = starts(&api.get(&q, SLOTS).await.body, "2030-06-03");
    assert_eq!(
        after[..3],
        [
            "2030-06-03T09:15:00.000+02:00",
            "2030-06-03T10:00:00.000+02:00",
            "2030-06-03T10:45:00.000+02:00"
        ]
    );
    assert_eq!(
        after.last().map(String::as_str),
        Some("2030-06-03T18:15:00.000+02:00")
    );
}

#[tokio::test]
async fn the_slot_interval_sets_the_step_and_ranges_end_at_length() {
    let sim = salon_sim().await;
    sim.sim.seed(night_owl("UTC")).expect("seed");
    let api = Api::new(&sim);
    let r = api
        .get(
            &slots_path(
                NIGHT_30_EVERY_15,
                "2030-06-03T09:00:00Z",
                "2030-06-03T10:00:00Z",
                "&format=range",
            ),
            SLOTS,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        day(&r.body, "2030-06-03"),
        vec![
            json!({"start": "2030-06-03T09:00:00.000+00:00", "end": "2030-06-03T09:30:00.000+00:00"}),
            json!({"start": "2030-06-03T09:15:00.000+00:00", "end": "2030-06-03T09:45:00.000+00:00"}),
            json!({"start": "2030-06-03T09:30:00.000+00:00", "end": "2030-06-03T10:00:00.000+00:00"}),
        ],
        "a slot must end by the query's end"
    );
}

#[tokio::test]
async fn slots_are_keyed_and_offset_in_the_asked_time_zone() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::ANNA_SEGMENTS[3]; // 30 min, Berlin 09:00–19:00
    let r = api
        .get(
            &slots_path(et, "2030-06-03", "2030-06-03", "&timeZone=America/New_York"),
            SLOTS,
        )
        .await;
    assert_eq!(r.status, 200);
    // Berlin 09:00 is 03:00 in New York, the same date.
    let ny = starts(&r.body, "2030-06-03");
    assert_eq!(
        ny.first().map(String::as_str),
        Some("2030-06-03T03:00:00.000-04:00")
    );
    assert_eq!(ny.len(), 20);
    assert!(
        day(&r.body, "2030-06-03")[0].get("end").is_none(),
        "time format has only start"
    );
}

#[tokio::test]
async fn slots_on_dst_days_follow_the_wall_clock() {
    let sim = salon_sim().await;
    sim.sim.seed(night_owl("Europe/Berlin")).expect("seed");
    let api = Api::new(&sim);
    let tz = "&timeZone=Europe/Berlin";
    // The last Sunday of October has 25 hours; 02:00–03:00 happens twice.
    let q = slots_path(NIGHT_60, "2030-10-26T22:00:00Z", "2030-10-27T23:00:00Z", tz);
    let october = starts(&api.get(&q, SLOTS).await.body, "2030-10-27");
    assert_eq!(october.len(), 25);
    assert!(october.contains(&"2030-10-27T02:00:00.000+02:00".to_owned()));
    assert!(october.contains(&"2030-10-27T02:00:00.000+01:00".to_owned()));
    // The last Sunday of March has 23; 02:00–03:00 does not exist.
    let q = slots_path(NIGHT_60, "2030-03-30T23:00:00Z", "2030-03-31T22:00:00Z", tz);
    let march = starts(&api.get(&q, SLOTS).await.body, "2030-03-31");
    assert_eq!(march.len(), 23);
    assert!(march.contains(&"2030-03-31T01:00:00.000+01:00".to_owned()));
    assert!(march.contains(&"2030-03-31T03:00:00.000+02:00".to_owned()));
}

// ---- reservations -----------------------------------------------------------------------

async fn reserve(api: &Api, body: Value) -> Answer {
    api.post("/v2/slots/reservations", SLOTS, body).await
}

fn uid_of(r: &Answer) -> String {
    r.body["data"]["reservationUid"]
        .as_str()
        .expect("reservationUid")
        .to_owned()
}

#[tokio::test]
async fn a_reservation_hides_the_hosts_overlapping_slots_on_all_their_event_types() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let held_type = salon::BEN_SEGMENTS[1]; // 30 min
    let other_type = salon::BEN_SEGMENTS[2]; // 45 min, same host
    let q = |et| slots_path(et, "2030-06-03", "2030-06-03", "&timeZone=Europe/Berlin");
    let r = reserve(
        &api,
        json!({"eventTypeId": held_type, "slotStart": iso(berlin(0, 10, 0))}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_schema("ReserveSlotOutputResponse_2024_09_04", &r.body);
    let uid = uid_of(&r);
    assert_eq!(uid.len(), 36, "a hyphenated uuid: {uid}");

    let held = starts(&api.get(&q(held_type), SLOTS).await.body, "2030-06-03");
    assert!(!held.contains(&"2030-06-03T10:00:00.000+02:00".to_owned()));
    assert!(held.contains(&"2030-06-03T09:30:00.000+02:00".to_owned()));
    assert!(held.contains(&"2030-06-03T10:30:00.000+02:00".to_owned()));
    let other = starts(&api.get(&q(other_type), SLOTS).await.body, "2030-06-03");
    assert!(
        !other.contains(&"2030-06-03T09:45:00.000+02:00".to_owned()),
        "09:45–10:30 overlaps the held 10:00–10:30"
    );
    assert!(other.contains(&"2030-06-03T10:30:00.000+02:00".to_owned()));
    // Anna's calendar is not touched.
    let anna = starts(
        &api.get(&q(salon::ANNA_SEGMENTS[1]), SLOTS).await.body,
        "2030-06-03",
    );
    assert!(anna.contains(&"2030-06-03T10:00:00.000+02:00".to_owned()));
}

#[tokio::test]
async fn a_reservation_does_not_block_an_api_booking() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::BEN_SEGMENTS[1];
    let r = reserve(
        &api,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 11, 0))}),
    )
    .await;
    assert_eq!(r.status, 201);
    let booked = api.book(et, berlin(0, 11, 0)).await;
    assert_eq!(booked.status, 201, "{}", booked.body);
}

#[tokio::test]
async fn an_expired_reservation_hides_nothing() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::BEN_SEGMENTS[1];
    let expired = SeedReservation {
        reservation_uid: Some("gone".into()),
        event_type_id: et,
        slot_start: berlin(0, 12, 0),
        slot_duration: None,
        reservation_until: Utc::now() - Duration::minutes(1),
        user_id: None,
    };
    sim.sim.insert_reservation(expired).expect("insert");
    let q = slots_path(et, "2030-06-03", "2030-06-03", "&timeZone=Europe/Berlin");
    let free = starts(&api.get(&q, SLOTS).await.body, "2030-06-03");
    assert!(free.contains(&"2030-06-03T12:00:00.000+02:00".to_owned()));
    // An expired reservation no longer stops a new one over the same time.
    let r = reserve(
        &api,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 12, 0))}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The admin route inserts the same way over HTTP.
    let live = api
        .http
        .post(format!("{}/__sim/reservations", api.base))
        .json(
            &json!({"eventTypeId": et, "slotStart": iso(berlin(0, 14, 0)),
                      "reservationUntil": iso(Utc::now() + Duration::minutes(10))}),
        )
        .send()
        .await
        .expect("admin");
    assert_eq!(live.status().as_u16(), 201);
    let free = starts(&api.get(&q, SLOTS).await.body, "2030-06-03");
    assert!(!free.contains(&"2030-06-03T14:00:00.000+02:00".to_owned()));
}

#[tokio::test]
async fn reservations_are_read_moved_and_deleted_as_cal_com_answers() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::BEN_SEGMENTS[1];
    let r = reserve(
        &api,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 9, 0)), "reservationDuration": 10}),
    )
    .await;
    let uid = uid_of(&r);
    let path = format!("/v2/slots/reservations/{uid}");

    let got = api.get(&path, SLOTS).await;
    assert_eq!(got.status, 200);
    // (The spec's GetReservedSlotOutput refers to itself for `data`; nothing can match it.)
    assert_eq!(got.body["data"], r.body["data"]);

    // Moving it onto a time overlapping its own live hold: Cal.com's overlap check finds
    // the reservation itself.
    let same = api
        .patch(
            &path,
            SLOTS,
            json!({"eventTypeId": et, "slotStart": iso(berlin(0, 9, 0))}),
        )
        .await;
    assert_eq!(same.status, 422, "{}", same.body);
    assert_eq!(
        message(&same.body),
        "This time slot is already reserved by another user. Please choose a different time."
    );
    let moved = api
        .patch(
            &path,
            SLOTS,
            json!({"eventTypeId": et, "slotStart": iso(berlin(0, 15, 0))}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_schema("ReserveSlotOutputResponse_2024_09_04", &moved.body);
    assert_eq!(moved.body["data"]["reservationUid"], uid.as_str());
    assert_eq!(moved.body["data"]["slotStart"], iso(berlin(0, 15, 0)));
    assert_eq!(
        moved.body["data"]["reservationDuration"], 5,
        "the hold restarts at 5 min"
    );

    let unknown = "/v2/slots/reservations/nope";
    let missing = api.get(unknown, SLOTS).await;
    assert_eq!(
        (missing.status, missing.body.clone()),
        (200, json!({"status": "success", "data": null}))
    );
    let patch_missing = api
        .patch(
            unknown,
            SLOTS,
            json!({"eventTypeId": et, "slotStart": iso(berlin(0, 9, 0))}),
        )
        .await;
    assert_eq!(patch_missing.status, 404);
    assert_eq!(message(&patch_missing.body), "Slot with uid=nope not found");

    for _ in 0..2 {
        let del = api
            .call(reqwest::Method::DELETE, &path, Some(SLOTS), None)
            .await;
        assert_eq!(
            (del.status, del.body),
            (200, json!({"status": "success"})),
            "twice"
        );
    }
    assert_eq!(api.get(&path, SLOTS).await.body["data"], Value::Null);
}

#[tokio::test]
async fn reserving_refuses_taken_or_booked_times_and_anonymous_durations() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::BEN_SEGMENTS[1];
    assert_eq!(
        reserve(
            &api,
            json!({"eventTypeId": et, "slotStart": iso(berlin(0, 9, 0))})
        )
        .await
        .status,
        201
    );
    let twice = reserve(
        &api,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 9, 15))}),
    )
    .await;
    assert_eq!(twice.status, 422);
    assert_eq!(
        message(&twice.body),
        "This time slot is already reserved by another user. Please choose a different time."
    );
    assert_eq!(api.book(et, berlin(0, 13, 0)).await.status, 201);
    let booked = reserve(
        &api,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 13, 0))}),
    )
    .await;
    assert_eq!(booked.status, 422);
    assert_eq!(
        message(&booked.body),
        "Can't reserve a slot if the event is already booked."
    );

    let anonymous = Api::new(&sim).with_key(None);
    let r = reserve(
        &anonymous,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 16, 0)), "reservationDuration": 10}),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        message(&r.body),
        "reservationDuration can only be used for authenticated requests - use access token, api key or OAuth credentials"
    );
    let r = reserve(
        &api,
        json!({"eventTypeId": et, "slotStart": iso(berlin(0, 16, 0)), "slotDuration": 45}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = reserve(
        &api,
        json!({"eventTypeId": 999_999, "slotStart": iso(berlin(0, 16, 0))}),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = reserve(
        &api,
        json!({"eventTypeId": salon::MANAGED_PARENT, "slotStart": iso(berlin(0, 16, 0))}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        message(&r.body),
        "Cannot reserve a slot for a team event without any hosts"
    );
}

// ---- minimum booking notice and booking window ----------------------------------------

const TOO_SOON: &str = "The event type can't be booked at the \"start\" time provided. This could be because it's too soon (violating the minimum booking notice) or too far in the future (outside the event's scheduling window). Try fetching available slots first using the GET /v2/slots endpoint and then make a booking with \"start\" time equal to one of the available slots.";

/// The night owl's 60-minute type with a notice and/or window; a whole hour `hours` ahead.
fn next_hour(hours: i64) -> DateTime<Utc> {
    use chrono::DurationRound;
    (Utc::now() + Duration::hours(hours))
        .duration_trunc(Duration::hours(1))
        .expect("trunc")
}

#[tokio::test]
async fn the_minimum_booking_notice_refuses_early_starts_and_hides_early_slots() {
    let sim = salon_sim().await;
    let mut seed = night_owl("UTC");
    seed.event_types[0].minimum_booking_notice = Some(180);
    sim.sim.seed(seed).expect("seed");
    let api = Api::new(&sim).with_key(Some(NIGHT_KEY));

    let soon = api.book(NIGHT_60, next_hour(2)).await;
    assert_eq!(soon.status, 400);
    assert_eq!(message(&soon.body), TOO_SOON);
    assert_eq!(soon.body["error"]["code"], "BadRequestException");
    assert_eq!(api.book(NIGHT_60, next_hour(5)).await.status, 201);

    let from = iso(Utc::now());
    let to = iso(Utc::now() + Duration::hours(8));
    let r = api.get(&slots_path(NIGHT_60, &from, &to, ""), SLOTS).await;
    let first: Vec<DateTime<Utc>> = r.body["data"]
        .as_object()
        .expect("days")
        .values()
        .flat_map(|d| d.as_array().cloned().unwrap_or_default())
        .filter_map(|s| {
            s["start"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        })
        .map(|t| t.with_timezone(&Utc))
        .collect();
    assert!(!first.is_empty());
    assert!(
        first
            .iter()
            .all(|t| *t >= Utc::now() + Duration::minutes(179)),
        "{first:?}"
    );
}

#[tokio::test]
async fn the_booking_window_refuses_far_starts_and_is_patchable() {
    let sim = salon_sim().await;
    let mut seed = night_owl("UTC");
    seed.event_types[0].booking_window = Some(BookingWindow::CalendarDays {
        value: 3,
        rolling: false,
    });
    sim.sim.seed(seed).expect("seed");
    let api = Api::new(&sim).with_key(Some(NIGHT_KEY));

    let far = api.book(NIGHT_60, next_hour(24 * 6)).await;
    assert_eq!(far.status, 400);
    assert_eq!(message(&far.body), TOO_SOON);
    assert_eq!(api.book(NIGHT_60, next_hour(24)).await.status, 201);

    let from = iso(Utc::now() + Duration::days(5));
    let to = iso(Utc::now() + Duration::days(6));
    let hidden = api.get(&slots_path(NIGHT_60, &from, &to, ""), SLOTS).await;
    assert_eq!(hidden.body["data"], json!({}), "beyond the window");

    let et = api
        .get(&format!("/v2/event-types/{NIGHT_60}"), EVENT_TYPES)
        .await;
    assert_eq!(
        et.body["data"]["bookingWindow"],
        json!({"type": "calendarDays", "value": 3, "rolling": false})
    );
    let widened = api
        .patch(
            &format!("/v2/event-types/{NIGHT_60}"),
            EVENT_TYPES,
            json!({"bookingWindow": {"type": "businessDays", "value": 20}, "minimumBookingNotice": 30}),
        )
        .await;
    assert_eq!(widened.status, 200, "{}", widened.body);
    assert_eq!(widened.body["data"]["minimumBookingNotice"], 30);
    assert_eq!(api.book(NIGHT_60, next_hour(24 * 6)).await.status, 201);
    let shown = api.get(&slots_path(NIGHT_60, &from, &to, ""), SLOTS).await;
    assert_ne!(shown.body["data"], json!({}));

    let range = api
        .patch(
            &format!("/v2/event-types/{NIGHT_60}"),
            EVENT_TYPES,
            json!({"bookingWindow": {"type": "range", "value": ["2030-06-01", "2030-06-30"]}}),
        )
        .await;
    assert_eq!(range.status, 200);
    assert_eq!(api.book(NIGHT_60, utc(2030, 7, 1, 10, 0)).await.status, 400);
    assert_eq!(
        api.book(NIGHT_60, utc(2030, 6, 30, 10, 0)).await.status,
        201
    );
    let off = api
        .patch(
            &format!("/v2/event-types/{NIGHT_60}"),
            EVENT_TYPES,
            json!({"bookingWindow": {"disabled": true}}),
        )
        .await;
    assert_eq!(off.status, 200);
    assert!(off.body["data"].get("bookingWindow").is_none());
    assert_eq!(api.book(NIGHT_60, utc(2030, 7, 1, 10, 0)).await.status, 201);
}

#[tokio::test]
async fn team_event_types_take_a_booking_window_on_create_and_patch() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let path = format!(
        "/v2/teams/{}/event-types/{}",
        salon::TEAM_ID,
        salon::ROUND_ROBIN
    );
    let r = api
        .patch(
            &path,
            EVENT_TYPES,
            json!({"bookingWindow": {"type": "range", "value": ["2030-06-01", "2030-06-02"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refused = api.book(salon::ROUND_ROBIN, berlin(0, 10, 0)).await;
    assert_eq!(refused.status, 400);
    assert_eq!(message(&refused.body), TOO_SOON);
    let bad = api
        .patch(
            &path,
            EVENT_TYPES,
            json!({"bookingWindow": {"type": "weeks", "value": 2}}),
        )
        .await;
    assert_eq!(bad.status, 400);
}

// ---- DST and phone-only attendees -------------------------------------------------------

#[tokio::test]
async fn a_booking_across_the_repeated_dst_hour_is_accepted() {
    let sim = salon_sim().await;
    sim.sim.seed(night_owl("Europe/Berlin")).expect("seed");
    let api = Api::new(&sim).with_key(Some(NIGHT_KEY));
    // 02:30 CEST (first 02:30) to 02:30 CET (second): one hour that starts and ends at the
    // same wall-clock time.
    let r = api.book(NIGHT_60, utc(2030, 10, 27, 0, 30)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["data"]["end"], "2030-10-27T01:30:00.000Z");
    let uid = r.body["data"]["uid"].as_str().expect("uid");
    sim.sim.remove_booking(uid).expect("removed");
    // 02:45 CEST to 02:15 CET: ends "before" it starts on the wall clock.
    let r = api.book(NIGHT_30_EVERY_15, utc(2030, 10, 27, 0, 45)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The spring gap: 01:30 CET to 03:30 CEST is one hour.
    let r = api.book(NIGHT_60, utc(2030, 3, 31, 0, 30)).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn a_phone_only_attendee_gets_cal_coms_sms_placeholder_email() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let body = json!({
        "start": iso(berlin(0, 10, 0)),
        "eventTypeId": salon::ANNA_SEGMENTS[1],
        "attendee": {"name": "Bea", "phoneNumber": "+4915112345678", "timeZone": "Europe/Berlin"},
    });
    let r = api.post("/v2/bookings", BOOKINGS, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let attendee = &r.body["data"]["attendees"][0];
    assert_eq!(attendee["email"], "4915112345678@sms.cal.com");
    assert_eq!(attendee["phoneNumber"], "+4915112345678");
    assert_schema("CreateBookingOutput_2024_08_13", &r.body);
    let uid = r.body["data"]["uid"].as_str().expect("uid");
    let got = api.get(&format!("/v2/bookings/{uid}"), BOOKINGS).await;
    assert_eq!(
        got.body["data"]["attendees"][0]["email"],
        "4915112345678@sms.cal.com"
    );
    let listed = api
        .get(
            "/v2/bookings?attendeeEmail=4915112345678@sms.cal.com",
            BOOKINGS,
        )
        .await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1));
}
