//! Booking behaviour over real HTTP: create, the managed-parent refusal, busy hosts,
//! duplicates, cancel, reschedule, list filters.

mod common;

use calcom_sim::salon;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_booking_is_created_read_and_stored() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let start = berlin(0, 10, 0);
    let created = api.book(salon::ANNA_SEGMENTS[1], start).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let data = &created.body["data"];
    assert_eq!(data["status"], "accepted");
    assert_eq!(data["start"], iso(start));
    assert_eq!(data["end"], iso(start + chrono::Duration::minutes(30)));
    assert_eq!(data["duration"], 30);
    assert_eq!(data["eventTypeId"], salon::ANNA_SEGMENTS[1]);
    assert_eq!(data["hosts"][0]["id"], salon::ANNA);
    assert_eq!(
        data["metadata"],
        json!({"appointment_id": "a1", "segment": "A"})
    );
    assert_schema("CreateBookingOutput_2024_08_13", &created.body);

    let uid = data["uid"].as_str().expect("uid");
    let got = api.get(&format!("/v2/bookings/{uid}"), BOOKINGS).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["data"], *data);
    assert_schema("GetBookingOutput_2024_08_13", &got.body);

    let state = api.state().await;
    let stored = state.booking(uid).expect("stored");
    assert_eq!(stored.event_type_id, Some(salon::ANNA_SEGMENTS[1]));
    assert_eq!(stored.start, start);
    assert_eq!(stored.metadata.get("segment"), Some(&json!("A")));
    assert_eq!(state.requests["bookings.create"].by_status["201"], 1);
}

#[tokio::test]
async fn booking_a_managed_parent_is_refused_with_cal_coms_exact_body() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let r = api.book(salon::MANAGED_PARENT, berlin(0, 10, 0)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["status"], "error");
    assert_eq!(r.body["path"], "/v2/bookings");
    assert!(r.body["timestamp"].is_string());
    let msg = "Event type with id=2001 is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.";
    assert_eq!(
        r.body["error"],
        json!({"code": "BadRequestException", "message": msg,
               "details": {"message": msg, "error": "Bad Request", "statusCode": 400}})
    );
    assert!(api.state().await.bookings.is_empty());
}
