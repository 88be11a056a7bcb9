//! Slots and reservations: working hours minus bookings, grouped by date, Cal.com shapes.

mod common;

use calcom_sim::salon;
use common::*;
use serde_json::{Value, json};

fn day(body: &Value, date: &str) -> Vec<Value> {
    body["data"][date].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn slots_are_working_hours_minus_bookings() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::ANNA_SEGMENTS[1]; // 30 min
    let q = format!(
        "/v2/slots?eventTypeId={et}&start={}&end={}&timeZone=Europe/Berlin&format=range",
        "2030-06-03T00:00:00.000Z", "2030-06-03T00:00:00.000Z"
    );
    let r = api.get(&q, SLOTS).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let monday = day(&r.body, "2030-06-03");
    assert_eq!(monday.len(), 20, "09:00..18:30 every 30 min");
    assert_eq!(
        monday[0],
        json!({"start": "2030-06-03T09:00:00.000+02:00", "end": "2030-06-03T09:30:00.000+02:00"})
    );
    assert_eq!(monday[19]["start"], "2030-06-03T18:30:00.000+02:00");

    assert_eq!(api.book(et, berlin(0, 10, 0)).await.status, 201);
    let r = api.get(&q, SLOTS).await;
    let starts: Vec<String> = day(&r.body, "2030-06-03")
        .iter()
        .filter_map(|s| s["start"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(starts.len(), 19);
    assert!(!starts.contains(&"2030-06-03T10:00:00.000+02:00".to_owned()));
    assert!(starts.contains(&"2030-06-03T09:30:00.000+02:00".to_owned()));
    assert!(starts.contains(&"2030-06-03T10:30:00.000+02:00".to_owned()));
}

#[tokio::test]
async fn slots_default_to_utc_time_format_and_skip_days_off() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::ANNA_SEGMENTS[2]; // 45 min
    let r = api
        .get(
            &format!("/v2/slots?eventTypeId={et}&start=2030-06-08&end=2030-06-09"),
            SLOTS,
        )
        .await;
    assert_eq!(r.status, 200);
    let saturday = day(&r.body, "2030-06-08");
    assert_eq!(
        saturday[0],
        json!({"start": "2030-06-08T07:00:00.000+00:00"})
    );
    assert!(r.body["data"].get("2030-06-09").is_none(), "Sunday is off");
}

#[tokio::test]
async fn bad_ranges_versions_and_managed_parents() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let r = api
        .get(
            &format!(
                "/v2/slots?eventTypeId={}&start=2030-06-05&end=2030-06-03",
                salon::ANNA_SEGMENTS[0]
            ),
            SLOTS,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        message(&r.body),
        "Invalid time range given - check the 'start' and 'end' query parameters."
    );
    let r = api
        .get(
            &format!(
                "/v2/slots?eventTypeId={}&start=2030-06-03&end=2030-06-03",
                salon::ANNA_SEGMENTS[0]
            ),
            BOOKINGS,
        )
        .await;
    assert_eq!(r.status, 404, "only 2024-09-04 serves /v2/slots");
    let r = api
        .get(
            &format!(
                "/v2/slots?eventTypeId={}&start=2030-06-03&end=2030-06-03",
                salon::MANAGED_PARENT
            ),
            SLOTS,
        )
        .await;
    assert_eq!(r.body["data"], json!({}));
}

#[tokio::test]
async fn a_reservation_hides_the_slot_until_deleted() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let et = salon::BEN_SEGMENTS[1];
    let q = format!("/v2/slots?eventTypeId={et}&start=2030-06-03&end=2030-06-03&format=range");
    let before = day(&api.get(&q, SLOTS).await.body, "2030-06-03").len();
    let r = api
        .post(
            "/v2/slots/reservations",
            SLOTS,
            json!({"eventTypeId": et, "slotStart": iso(berlin(0, 9, 0))}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_schema("ReserveSlotOutputResponse_2024_09_04", &r.body);
    assert_eq!(r.body["data"]["reservationDuration"], 5);
    assert_eq!(r.body["data"]["slotDuration"], 30);
    let uid = r.body["data"]["reservationUid"]
        .as_str()
        .expect("uid")
        .to_owned();
    assert_eq!(
        day(&api.get(&q, SLOTS).await.body, "2030-06-03").len(),
        before - 1
    );
    let del = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v2/slots/reservations/{uid}"),
            Some(SLOTS),
            None,
        )
        .await;
    assert_eq!(del.status, 200);
    assert_eq!(del.body, json!({"status": "success"}));
    assert_eq!(
        day(&api.get(&q, SLOTS).await.body, "2030-06-03").len(),
        before
    );
}
