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

async fn make_busy(
    sim: &calcom_sim::RunningSim,
    event_type_id: i64,
    start: chrono::DateTime<chrono::Utc>,
) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/__sim/bookings", sim.base_url))
        .json(&json!({"eventTypeId": event_type_id, "start": iso(start)}))
        .send()
        .await
        .expect("insert");
    assert_eq!(r.status(), 201);
    let b: serde_json::Value = r.json().await.expect("json");
    b["uid"].as_str().expect("uid").to_owned()
}

#[tokio::test]
async fn a_busy_host_is_refused_with_cal_coms_text() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    // Another of Anna's event types occupies 10:00–10:45.
    make_busy(&sim, salon::ANNA_SEGMENTS[2], berlin(0, 10, 0)).await;
    let r = api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 30)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "BadRequestException");
    assert_eq!(
        message(&r.body),
        "User either already has booking at this time or is not available"
    );
    // Ben is free then, and Anna is free right after.
    assert_eq!(
        api.book(salon::BEN_SEGMENTS[1], berlin(0, 10, 30))
            .await
            .status,
        201
    );
    assert_eq!(
        api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 45))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn outside_working_hours_and_in_the_past_are_refused() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    // 18:45 + 30 min runs past 19:00; Sunday is off.
    for start in [berlin(0, 18, 45), berlin(6, 10, 0), berlin(0, 8, 30)] {
        let r = api.book(salon::ANNA_SEGMENTS[1], start).await;
        assert_eq!(r.status, 400, "{start}");
        assert_eq!(
            message(&r.body),
            "User either already has booking at this time or is not available"
        );
    }
    let past = chrono::Utc::now() - chrono::Duration::days(1);
    let r = api.book(salon::ANNA_SEGMENTS[1], past).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        message(&r.body),
        "Attempting to book a meeting in the past."
    );
}

#[tokio::test]
async fn a_retried_create_after_success_is_refused_as_busy_not_duplicated() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    assert_eq!(
        api.book(salon::ANNA_SEGMENTS[0], berlin(0, 9, 0))
            .await
            .status,
        201
    );
    let again = api.book(salon::ANNA_SEGMENTS[0], berlin(0, 9, 0)).await;
    assert_eq!(again.status, 400);
    assert_eq!(api.state().await.bookings.len(), 1);
}

#[tokio::test]
async fn identical_creates_racing_get_the_unique_key_409() {
    let sim = salon_sim().await;
    sim.sim.set_faults(
        calcom_sim::Faults::default()
            .route("bookings.create", calcom_sim::RouteFaults::race_window(200)),
    );
    let api = Api::new(&sim);
    let (a, b) = tokio::join!(
        api.book(salon::ANNA_SEGMENTS[1], berlin(0, 11, 0)),
        api.book(salon::ANNA_SEGMENTS[1], berlin(0, 11, 0))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let conflict = if a.status == 409 { a.body } else { b.body };
    assert_eq!(
        conflict,
        json!({"statusCode": 409, "message": "booking_conflict_error"})
    );
    assert_eq!(api.state().await.bookings.len(), 1);
}

#[tokio::test]
async fn cancel_then_cancel_again() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let created = api.book(salon::ANNA_SEGMENTS[1], berlin(1, 10, 0)).await;
    let uid = created.body["data"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();

    // Anna's key is the host's: a reason is required.
    let no_reason = api
        .post(&format!("/v2/bookings/{uid}/cancel"), BOOKINGS, json!({}))
        .await;
    assert_eq!(no_reason.status, 400);
    assert_eq!(
        no_reason.body,
        json!({"statusCode": 400, "message": "Cancellation reason is required when you are the host"})
    );

    let cancel = api
        .post(
            &format!("/v2/bookings/{uid}/cancel"),
            BOOKINGS,
            json!({"cancellationReason": "customer called"}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert_eq!(cancel.body["data"]["status"], "cancelled");
    assert_eq!(cancel.body["data"]["cancellationReason"], "customer called");
    assert_schema("CancelBookingOutput_2024_08_13", &cancel.body);

    let twice = api
        .post(
            &format!("/v2/bookings/{uid}/cancel"),
            BOOKINGS,
            json!({"cancellationReason": "again"}),
        )
        .await;
    assert_eq!(twice.status, 400);
    assert_eq!(
        twice.body,
        json!({"statusCode": 400, "message": "This booking has already been cancelled."})
    );

    // The slot is free again.
    assert_eq!(
        api.book(salon::ANNA_SEGMENTS[1], berlin(1, 10, 0))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn reschedule_makes_a_new_booking_and_cancels_the_old_one() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let created = api.book(salon::ANNA_SEGMENTS[1], berlin(2, 10, 0)).await;
    let old_uid = created.body["data"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let moved = api
        .post(
            &format!("/v2/bookings/{old_uid}/reschedule"),
            BOOKINGS,
            json!({"start": iso(berlin(2, 10, 15)), "reschedulingReason": "late"}),
        )
        .await;
    assert_eq!(moved.status, 201, "{}", moved.body);
    assert_schema("RescheduleBookingOutput_2024_08_13", &moved.body);
    let new = &moved.body["data"];
    assert_ne!(new["uid"], json!(old_uid));
    assert_eq!(new["rescheduledFromUid"], json!(old_uid));
    assert_eq!(new["start"], iso(berlin(2, 10, 15)));
    assert_eq!(new["metadata"], created.body["data"]["metadata"]);

    let old = api.get(&format!("/v2/bookings/{old_uid}"), BOOKINGS).await;
    assert_eq!(old.body["data"]["status"], "cancelled");
    assert_eq!(old.body["data"]["rescheduledToUid"], new["uid"]);
    assert!(
        api.state()
            .await
            .booking(&old_uid)
            .expect("old")
            .rescheduled
    );

    let again = api
        .post(
            &format!("/v2/bookings/{old_uid}/reschedule"),
            BOOKINGS,
            json!({"start": iso(berlin(2, 12, 0))}),
        )
        .await;
    assert_eq!(again.status, 400);
    assert!(message(&again.body).contains(new["uid"].as_str().expect("uid")));
}

#[tokio::test]
async fn list_filters_and_paginates_like_cal_com() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let mut uids = Vec::new();
    for h in [9, 10, 11, 12] {
        let r = api.book(salon::ANNA_SEGMENTS[1], berlin(3, h, 0)).await;
        uids.push(r.body["data"]["uid"].as_str().expect("uid").to_owned());
    }
    let other = api.book(salon::BEN_SEGMENTS[1], berlin(3, 9, 0)).await;
    assert_eq!(other.status, 201);
    api.post(
        &format!("/v2/bookings/{}/cancel", uids[3]),
        BOOKINGS,
        json!({"cancellationReason": "x"}),
    )
    .await;

    let et = salon::ANNA_SEGMENTS[1];
    let all = api
        .get(&format!("/v2/bookings?eventTypeId={et}&take=250"), BOOKINGS)
        .await;
    assert_eq!(all.status, 200);
    assert_schema("GetBookingsOutput_2024_08_13", &all.body);
    assert_eq!(
        all.body["data"].as_array().map(Vec::len),
        Some(4),
        "no status ⇒ cancelled too"
    );

    let window = format!(
        "/v2/bookings?eventTypeId={et}&afterStart={}&beforeEnd={}",
        iso(berlin(3, 10, 0)),
        iso(berlin(3, 11, 30))
    );
    let w = api.get(&window, BOOKINGS).await;
    let starts: Vec<&str> = w.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|b| b["start"].as_str())
        .collect();
    assert_eq!(starts, vec![iso(berlin(3, 10, 0)), iso(berlin(3, 11, 0))]);

    let cancelled = api
        .get(
            &format!(
                "/v2/bookings?eventTypeIds={et},{}&status=cancelled",
                salon::BEN_SEGMENTS[1]
            ),
            BOOKINGS,
        )
        .await;
    assert_eq!(cancelled.body["data"].as_array().map(Vec::len), Some(1));

    let by_email = api
        .get("/v2/bookings?attendeeEmail=nobody@example.com", BOOKINGS)
        .await;
    assert_eq!(by_email.body["data"], json!([]));

    let page = api
        .get(
            &format!("/v2/bookings?eventTypeId={et}&take=3&skip=0"),
            BOOKINGS,
        )
        .await;
    assert_eq!(
        page.body["pagination"],
        json!({"returnedItems": 3, "totalItems": 4, "itemsPerPage": 3, "remainingItems": 1,
               "currentPage": 1, "totalPages": 2, "hasNextPage": true, "hasPreviousPage": false})
    );
    let page2 = api
        .get(
            &format!("/v2/bookings?eventTypeId={et}&take=3&skip=3"),
            BOOKINGS,
        )
        .await;
    assert_eq!(page2.body["pagination"]["hasNextPage"], false);
    assert_eq!(page2.body["data"].as_array().map(Vec::len), Some(1));

    // Ben sees his own booking, not Anna's (he is no team admin).
    let ben = Api::new(&sim).with_key(Some(salon::BEN_API_KEY));
    let mine = ben.get("/v2/bookings", BOOKINGS).await;
    assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(1));
    // Anna is the team owner: she sees Ben's too.
    assert_eq!(
        api.get("/v2/bookings", BOOKINGS).await.body["data"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
}

#[tokio::test]
async fn metadata_limits_and_attendee_rules_are_enforced() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let start = berlin(4, 10, 0);
    let with_meta = |meta: serde_json::Value| {
        let mut body = booking_body(salon::ANNA_SEGMENTS[1], start);
        body["metadata"] = meta;
        body
    };
    let many: serde_json::Map<String, serde_json::Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        with_meta(json!(many)),
        with_meta(json!({"k".repeat(41): "v"})),
        with_meta(json!({"k": "v".repeat(501)})),
        with_meta(json!({"k": null})),
        with_meta(json!({"k": {"nested": true}})),
    ];
    for body in cases {
        let r = api.post("/v2/bookings", BOOKINGS, body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body["error"]["code"], "BadRequestException");
        assert!(
            message(&r.body).starts_with("metadata property is wrong,"),
            "{}",
            r.body
        );
    }
    let at_limit: serde_json::Map<String, serde_json::Value> = (0..50)
        .map(|i| (format!("{i:0>40}"), json!("v".repeat(500))))
        .collect();
    assert_eq!(
        api.post("/v2/bookings", BOOKINGS, with_meta(json!(at_limit)))
            .await
            .status,
        201
    );

    let mut no_contact = booking_body(salon::ANNA_SEGMENTS[1], berlin(4, 12, 0));
    no_contact["attendee"] = json!({"name": "Bea", "timeZone": "Europe/Berlin"});
    let mut bad_zone = booking_body(salon::ANNA_SEGMENTS[1], berlin(4, 12, 0));
    bad_zone["attendee"]["timeZone"] = json!("Mars/Olympus");
    let mut bad_phone = booking_body(salon::ANNA_SEGMENTS[1], berlin(4, 12, 0));
    bad_phone["attendee"]["phoneNumber"] = json!("0151 123");
    let mut unknown = booking_body(salon::ANNA_SEGMENTS[1], berlin(4, 12, 0));
    unknown["end"] = json!(iso(berlin(4, 12, 30)));
    for body in [no_contact, bad_zone, bad_phone, unknown] {
        let r = api.post("/v2/bookings", BOOKINGS, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
    }
    let r = api.post("/v2/bookings", BOOKINGS, json!({"start": iso(start), "attendee": {"name": "x", "email": "x@example.com", "timeZone": "UTC"}})).await;
    assert_eq!(
        message(&r.body),
        "Either eventTypeId or eventTypeSlug + username or eventTypeSlug + teamSlug must be provided"
    );
}

#[tokio::test]
async fn keys_and_version_headers_behave_like_cal_com() {
    let sim = salon_sim().await;
    let bad = Api::new(&sim).with_key(Some("cal_live_nope"));
    let r = bad.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "UnauthorizedException");
    assert_eq!(
        message(&r.body),
        "ApiAuthStrategy - api key - Your api key is not valid"
    );

    // Booking without any key is allowed (optional auth); listing is not.
    let anonymous = Api::new(&sim).with_key(None);
    assert_eq!(
        anonymous
            .book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0))
            .await
            .status,
        201
    );
    assert_eq!(anonymous.get("/v2/bookings", BOOKINGS).await.status, 403);

    let api = Api::new(&sim);
    let wrong = api
        .post(
            "/v2/bookings",
            SLOTS,
            booking_body(salon::ANNA_SEGMENTS[1], berlin(0, 12, 0)),
        )
        .await;
    assert_eq!(wrong.status, 404);
    assert_eq!(message(&wrong.body), "Cannot POST /v2/bookings");
    let missing = api
        .call(
            reqwest::Method::POST,
            "/v2/bookings",
            None,
            Some(booking_body(salon::ANNA_SEGMENTS[1], berlin(0, 12, 0))),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(api.state().await.bookings.len(), 1);
}

#[tokio::test]
async fn team_types_pick_free_hosts_and_refuse_without_hosts() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    // Anna busy ⇒ the round robin goes to Ben.
    make_busy(&sim, salon::ANNA_SEGMENTS[0], berlin(0, 15, 0)).await;
    let r = api.book(salon::ROUND_ROBIN, berlin(0, 15, 0)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["data"]["hosts"][0]["id"], salon::BEN);
    let r = api.book(salon::ROUND_ROBIN, berlin(0, 15, 0)).await;
    assert_eq!(
        message(&r.body),
        "One of the hosts either already has booking at this time or is not available"
    );

    let created = api
        .post(&format!("/v2/teams/{}/event-types", salon::TEAM_ID), EVENT_TYPES,
              json!({"title": "Empty", "slug": "empty", "lengthInMinutes": 15, "schedulingType": "roundRobin"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["data"]["id"].as_i64().expect("id");
    let r = api.book(id, berlin(0, 16, 0)).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        message(&r.body),
        format!(
            "Can't book this team event type because it has no hosts. Please, add at least 1 host to event type with id={id} belonging to team with id=1 and try again."
        )
    );
}

#[tokio::test]
async fn a_booking_removed_by_the_admin_api_vanishes() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let r = api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)).await;
    let uid = r.body["data"]["uid"].as_str().expect("uid").to_owned();
    let del = reqwest::Client::new()
        .delete(format!("{}/__sim/bookings/{uid}", sim.base_url))
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 200);
    let got = api.get(&format!("/v2/bookings/{uid}"), BOOKINGS).await;
    assert_eq!(got.status, 404);
    assert_eq!(
        message(&got.body),
        format!("Booking with uid={uid} was not found in the database")
    );
    // And the host is free again.
    assert_eq!(
        api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0))
            .await
            .status,
        201
    );
}
