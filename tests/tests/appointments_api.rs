//! The issue-2 journey over real HTTP on both backends: define a salon, book, replay,
//! collide, read back, list, cancel, and every way a request can be refused.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, booking, content_type, problem, setup};

async fn journey_book_replay_collide_read_list_cancel(app: TestApp) {
    app.define_salon().await;
    let body = booking("anna", "2027-05-04T09:00");

    // Book with an idempotency key.
    let first = app
        .request(Method::POST, "/appointments", Some(&app.keys.agent))
        .header("Idempotency-Key", "call-42")
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_bytes = first.bytes().await.expect("body");
    let created: Value = serde_json::from_slice(&first_bytes).expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["status"], "booked");
    assert_eq!(created["starts_at"], "2027-05-04T07:00:00Z");
    assert_eq!(created["ends_at"], "2027-05-04T09:10:00Z");
    assert_eq!(created["time_zone"], "Europe/Berlin");
    assert_eq!(created["sync"]["status"], "pending");
    assert_eq!(created["sync"]["requires_manual_review"], false);
    let segments = created["segments"].as_array().expect("segments");
    let times: Vec<(&str, &str, &str)> = segments
        .iter()
        .map(|s| {
            assert_eq!(s["sync_status"], "pending");
            assert_eq!(s["staff_id"], "anna");
            assert!(s["calcom_booking_uid"].is_null());
            (
                s["key"].as_str().unwrap_or_default(),
                s["starts_at"].as_str().unwrap_or_default(),
                s["ends_at"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        times,
        [
            ("A", "2027-05-04T07:00:00Z", "2027-05-04T07:30:00Z"),
            ("B", "2027-05-04T08:05:00Z", "2027-05-04T08:20:00Z"),
            ("C", "2027-05-04T08:20:00Z", "2027-05-04T08:50:00Z"),
            ("D", "2027-05-04T08:50:00Z", "2027-05-04T09:10:00Z"),
        ]
    );

    // Same key, same body (keys reordered): the first response, byte for byte.
    let reordered: Value = serde_json::from_str(
        &serde_json::to_string(&json!({
            "customer": body["customer"], "notes": body["notes"], "time_zone": body["time_zone"],
            "start": body["start"], "staff_id": body["staff_id"], "service_id": body["service_id"]
        }))
        .expect("json"),
    )
    .expect("json");
    let replay = app
        .request(Method::POST, "/appointments", Some(&app.keys.agent))
        .header("Idempotency-Key", "call-42")
        .json(&reordered)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(replay.bytes().await.expect("body"), first_bytes);
    // A replay does not wait for the sync, whatever the retry prefers: it is the first
    // answer again.
    let waited_replay = app
        .request(Method::POST, "/appointments", Some(&app.keys.agent))
        .header("Idempotency-Key", "call-42")
        .header("Prefer", "wait=5")
        .json(&body)
        .send()
        .await
        .expect("replay");
    assert_eq!(waited_replay.status(), 201);
    assert!(waited_replay.headers().get("preference-applied").is_none());
    assert_eq!(waited_replay.bytes().await.expect("body"), first_bytes);

    // Same key, different body: refused.
    let other_body = booking("anna", "2027-05-04T15:00");
    let reused = app
        .request(Method::POST, "/appointments", Some(&app.keys.agent))
        .header("Idempotency-Key", "call-42")
        .json(&other_body)
        .send()
        .await
        .expect("reuse");
    problem(reused, 422, "idempotency-key-reused").await;

    // A new key for an overlapping time: 409 naming the holder.
    let clash_body = json!({
        "service_id": "cut", "staff_id": "anna", "start": "2027-05-04T10:30:00+02:00",
        "customer": {"name": "Grace", "email": "grace@example.com"}
    });
    let post_clash = || {
        app.request(Method::POST, "/appointments", Some(&app.keys.agent))
            .header("Idempotency-Key", "call-43")
            .json(&clash_body)
            .send()
    };
    let clash = post_clash().await.expect("clash");
    let conflict = problem(clash, 409, "double-booking").await;
    assert_eq!(conflict["conflicting_appointment_id"], id.as_str());
    // The refusal is that key's first answer: a retry gets it again.
    let clash_again = post_clash().await.expect("clash again");
    assert_eq!(
        clash_again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(problem(clash_again, 409, "double-booking").await, conflict);

    // The processing gap is free for another client.
    let in_gap = app
        .post_json(
            "/appointments",
            &app.keys.agent,
            &json!({
                "service_id": "cut", "staff_id": "anna", "start": "2027-05-04T07:30:00Z",
                "time_zone": "Europe/Berlin", "customer": {"name": "Grace", "email": "grace@example.com"}
            }),
        )
        .await;
    assert_eq!(in_gap.status(), 201);
    let in_gap: Value = in_gap.json().await.expect("json");

    // Read back (viewer may read).
    let read = app
        .get(&format!("/appointments/{id}"), &app.keys.viewer)
        .await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.expect("json");
    assert_eq!(read, created);

    // Ben's appointment, then list with filters and a cursor.
    let bens = app
        .post_json(
            "/appointments",
            &app.keys.ops,
            &booking("ben", "2027-05-04T08:00"),
        )
        .await;
    assert_eq!(bens.status(), 201);
    let bens: Value = bens.json().await.expect("json");

    let mut ids = Vec::new();
    let mut path = "/appointments?limit=2".to_string();
    loop {
        let page: Value = app
            .get(&path, &app.keys.viewer)
            .await
            .json()
            .await
            .expect("page");
        for item in page["items"].as_array().expect("items") {
            ids.push(item["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/appointments?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    // Start order: anna 07:00 (created), anna 07:30 (gap), ben 08:00 (06:00Z).
    assert_eq!(
        ids,
        [
            bens["id"].as_str().expect("id"),
            id.as_str(),
            in_gap["id"].as_str().expect("id")
        ]
    );
    let filtered: Value = app
        .get(
            "/appointments?staff_id=anna&sync_status=pending&requires_manual_review=false&from=2027-05-04T07:15:00Z&to=2027-05-05T00:00:00Z",
            &app.keys.viewer,
        )
        .await
        .json()
        .await
        .expect("filtered");
    let filtered_ids: Vec<&str> = filtered["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        filtered_ids,
        [id.as_str(), in_gap["id"].as_str().expect("id")]
    );

    // Cancel frees the slot; cancelling again changes nothing.
    let cancelled = app
        .post_json(
            &format!("/appointments/{id}/cancel"),
            &app.keys.agent,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.expect("json");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["sync"]["status"], "cancelled");
    let again: Value = app
        .post_json(
            &format!("/appointments/{id}/cancel"),
            &app.keys.agent,
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["cancelled_at"], cancelled["cancelled_at"]);
    let rebook = app
        .post_json(
            "/appointments",
            &app.keys.agent,
            &json!({
                "service_id": "cut", "staff_id": "anna", "start": "2027-05-04T10:30:00+02:00",
                "customer": {"name": "Grace", "email": "grace@example.com"}
            }),
        )
        .await;
    assert_eq!(rebook.status(), 201, "the freed slot can be booked");
    let cancelled_list: Value = app
        .get("/appointments?sync_status=cancelled", &app.keys.viewer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled_list["items"].as_array().map(Vec::len), Some(1));
}

async fn keys_roles_and_tenants_are_enforced(app: TestApp) {
    app.define_salon().await;
    let created: Value = app
        .post_json(
            "/appointments",
            &app.keys.agent,
            &booking("anna", "2027-05-04T09:00"),
        )
        .await
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id");

    let missing = app
        .request(Method::GET, "/appointments", None)
        .send()
        .await
        .expect("request");
    assert_eq!(
        missing
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    problem(missing, 401, "unauthorized").await;
    problem(
        app.get("/appointments", "pb_live_not_a_real_key").await,
        401,
        "unauthorized",
    )
    .await;

    // Viewers read only; agents cannot define the catalogue.
    problem(
        app.post_json(
            "/appointments",
            &app.keys.viewer,
            &booking("anna", "2027-05-04T15:00"),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        app.post_json(
            &format!("/appointments/{id}/cancel"),
            &app.keys.viewer,
            &json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        app.put_json("/staff/carla", &app.keys.agent, &json!({"name": "Carla", "calcom_user_id": 3, "calcom_username": "carla", "time_zone": "Europe/Berlin"}))
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(app.get("/services", &app.keys.agent).await.status(), 200);

    // Another tenant's ids do not exist for you.
    let other = &app.other_ops_key;
    problem(
        app.get(&format!("/appointments/{id}"), other).await,
        404,
        "not-found",
    )
    .await;
    problem(
        app.post_json(&format!("/appointments/{id}/cancel"), other, &json!({}))
            .await,
        404,
        "not-found",
    )
    .await;
    problem(app.get("/services/colour", other).await, 404, "not-found").await;
    let theirs: Value = app
        .get("/appointments", other)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["items"], json!([]));
    // And their catalogue is theirs: booking our service id there is unknown.
    let unknown = problem(
        app.post_json("/appointments", other, &booking("anna", "2027-05-04T09:00"))
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(unknown["field"], "service_id");
}

async fn bad_requests_are_problems_and_write_nothing(app: TestApp) {
    app.define_salon().await;
    let key = &app.keys.agent;

    let malformed = app
        .request(Method::POST, "/appointments", Some(key))
        .header("content-type", "application/json")
        .body("{\"service_id\": \"colour\", ")
        .send()
        .await
        .expect("request");
    problem(malformed, 400, "malformed-request").await;

    let mut unknown_field = booking("anna", "2027-05-04T09:00");
    unknown_field["customer"]["nickname"] = json!("Ada");
    let body = problem(
        app.post_json("/appointments", key, &unknown_field).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "customer.nickname");

    let mut wrong_type = booking("anna", "2027-05-04T09:00");
    wrong_type["customer"]["name"] = json!(42);
    let body = problem(
        app.post_json("/appointments", key, &wrong_type).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "customer.name");

    let mut missing = booking("anna", "2027-05-04T09:00");
    missing.as_object_mut().map(|m| m.remove("start"));
    let body = problem(
        app.post_json("/appointments", key, &missing).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "start");

    let mut bad_email = booking("anna", "2027-05-04T09:00");
    bad_email["customer"]["email"] = json!("ada-at-example");
    let body = problem(
        app.post_json("/appointments", key, &bad_email).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "customer.email");
    assert_eq!(body["code"], "invalid_email");

    let mut unknown_service = booking("anna", "2027-05-04T09:00");
    unknown_service["service_id"] = json!("perm");
    let body = problem(
        app.post_json("/appointments", key, &unknown_service).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "service_id");

    let body = problem(
        app.post_json("/appointments", key, &booking("zoe", "2027-05-04T09:00"))
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "staff_id");

    let mut override_unknown = booking("anna", "2027-05-04T09:00");
    override_unknown["segments"] = json!([{"key": "C", "staff_id": "zoe"}]);
    let body = problem(
        app.post_json("/appointments", key, &override_unknown).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "segments[0].staff_id");

    // 02:30 does not exist in Berlin on the spring-forward day.
    let body = problem(
        app.post_json("/appointments", key, &booking("anna", "2026-03-29T02:30"))
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["code"], "nonexistent_local_time");

    let empty_service = app
        .put_json(
            "/services/empty",
            &app.keys.ops,
            &json!({"name": "Nothing", "segments": []}),
        )
        .await;
    let body = problem(empty_service, 422, "validation").await;
    assert_eq!(body["field"], "segments");
    problem(
        app.get("/services/empty", &app.keys.ops).await,
        404,
        "not-found",
    )
    .await;

    let mut huge = booking("anna", "2027-05-04T09:00");
    huge["notes"] = json!("x".repeat(70 * 1024));
    problem(
        app.post_json("/appointments", key, &huge).await,
        413,
        "payload-too-large",
    )
    .await;

    let not_json = app
        .request(Method::POST, "/appointments", Some(key))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("request");
    problem(not_json, 415, "unsupported-media-type").await;

    let body = problem(
        app.get("/appointments?limit=500", key).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "limit");
    let body = problem(
        app.get("/appointments?cursor=garbage", key).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "cursor");
    let body = problem(
        app.get("/appointments?colour=red", key).await,
        400,
        "malformed-request",
    )
    .await;
    assert_eq!(body["field"], "colour");
    // A path id that cannot be an id is one answer on every route, naming the parameter.
    let body = problem(
        app.get("/appointments/not-a-uuid", key).await,
        400,
        "invalid-path-parameter",
    )
    .await;
    assert_eq!(body["field"], "appointment_id");
    problem(app.get("/no/such/route", key).await, 404, "not-found").await;

    let listed: Value = app
        .get("/appointments", key)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]), "nothing was written");
}

async fn a_key_in_flight_answers_409(app: TestApp) {
    app.define_salon().await;
    let body = booking("anna", "2027-05-04T09:00");
    // Hold the key as a concurrent request would.
    let claim = app
        .db
        .store()
        .claim_idempotency_key(
            app.tenant_id,
            "busy",
            &phasebook_api::idempotency::request_hash(&body),
            chrono::Utc::now(),
        )
        .await
        .expect("claim");
    assert_eq!(claim, phasebook_api::store::IdempotencyClaim::Claimed);
    let response = app
        .request(Method::POST, "/appointments", Some(&app.keys.agent))
        .header("Idempotency-Key", "busy")
        .json(&body)
        .send()
        .await
        .expect("request");
    problem(response, 409, "idempotency-key-in-flight").await;
    // The same key in another tenant is unrelated.
    let other_tenant = app
        .request(Method::POST, "/appointments", Some(&app.other_ops_key))
        .header("Idempotency-Key", "busy")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(
        other_tenant.status(),
        422,
        "their catalogue has no such service"
    );
}

/// A caller's retries racing the first attempt (a voice agent's client timing out and
/// sending again): one appointment, and every attempt answers with its 201.
async fn concurrent_retries_with_one_key_book_once_and_share_its_answer(app: TestApp) {
    app.define_salon().await;
    let body = booking("anna", "2027-05-04T09:00");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(
                app.request(Method::POST, "/appointments", Some(&app.keys.agent))
                    .header("Idempotency-Key", "call-77")
                    .json(&body)
                    .send(),
            )
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in attempts {
        let response = attempt.await.expect("task").expect("request");
        let status = response.status();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        answers.push((status, replayed, response.bytes().await.expect("body")));
    }
    assert!(
        answers.iter().all(|(status, _, _)| *status == 201),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "exactly one attempt booked"
    );
    assert!(answers.iter().all(|(_, _, bytes)| *bytes == answers[0].2));
    let listed: Value = app
        .get("/appointments", &app.keys.agent)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
}

async fn operations_endpoints_answer(app: TestApp) {
    let health = app
        .request(Method::GET, "/healthz", None)
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(
        health.headers().get("x-request-id").is_some(),
        "request id echoed"
    );
    let ready: Value = app
        .request(Method::GET, "/readyz", None)
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");

    let spec: Value = app
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(spec["paths"]["/appointments"]["post"].is_object());
    assert!(spec["paths"]["/appointments/{appointment_id}/cancel"]["post"].is_object());

    // The docs UI and its script are served from the binary, no network needed.
    let docs = app
        .request(Method::GET, "/docs/", None)
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.expect("html").contains("swagger-ui"));
    let script = app
        .request(Method::GET, "/docs/swagger-ui-bundle.js", None)
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.expect("js").len() > 100_000);
    let init = app
        .request(Method::GET, "/docs/swagger-initializer.js", None)
        .send()
        .await
        .expect("initializer");
    assert!(init.text().await.expect("js").contains("/openapi.json"));

    let metrics = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .expect("metrics");
    assert!(content_type(&metrics).starts_with("text/plain"));
    assert!(
        metrics
            .text()
            .await
            .expect("text")
            .contains("phasebook_http_requests_total")
    );
}

/// PostgreSQL cannot store NUL, SQLite can: both refuse control characters alike, naming
/// the field, and store nothing.
async fn control_characters_are_refused_alike_on_both_backends(app: TestApp) {
    app.define_salon().await;
    let mut nul_name = booking("anna", "2026-05-04T09:00");
    nul_name["customer"]["name"] = json!("Ada\u{0}Lovelace");
    let body = problem(
        app.post_json("/appointments", &app.keys.agent, &nul_name)
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "customer.name");
    assert_eq!(body["code"], "control_character");

    let mut bell_notes = booking("anna", "2026-05-04T09:00");
    bell_notes["notes"] = json!("ring \u{7} twice");
    let body = problem(
        app.post_json("/appointments", &app.keys.agent, &bell_notes)
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "notes");

    let service = json!({"name": "Perm\u{0}", "segments": [{"key": "A", "name": "Wind", "duration_minutes": 30}]});
    let body = problem(
        app.put_json("/services/perm", &app.keys.ops, &service)
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "name");
    let staff = json!({"name": "Noa\u{0}", "calcom_user_id": 7, "calcom_username": "noa", "time_zone": "Europe/Berlin"});
    let body = problem(
        app.put_json("/staff/noa", &app.keys.ops, &staff).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["field"], "name");

    let listed: Value = app
        .get("/appointments", &app.keys.ops)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed:#}"
    );
    assert_eq!(app.get("/services/perm", &app.keys.ops).await.status(), 404);
    assert_eq!(app.get("/staff/noa", &app.keys.ops).await.status(), 404);
}

/// `PATCH /appointments/{id}` corrects the caller's contact details and the notes: what
/// is left out stays, bad values are refused with nothing changed, and roles and tenants
/// are enforced as on every other write.
async fn contact_details_and_notes_can_be_corrected(app: TestApp) {
    app.define_salon().await;
    let created = app
        .post_json(
            "/appointments",
            &app.keys.agent,
            &booking("anna", "2027-05-04T09:00"),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/appointments/{id}");
    let patch = |key: &str, body: Value| {
        app.request(Method::PATCH, &path, Some(key))
            .json(&body)
            .send()
    };

    let changed = patch(
        &app.keys.agent,
        json!({"customer": {"email": "ada@lovelace.example", "phone": ""}, "notes": "prefers mornings"}),
    )
    .await
    .expect("patch");
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(
        changed["customer"]["name"], "Ada Lovelace",
        "left out, kept"
    );
    assert_eq!(changed["customer"]["email"], "ada@lovelace.example");
    assert_eq!(
        changed["customer"]["phone"],
        Value::Null,
        "an empty phone removes it"
    );
    assert_eq!(changed["notes"], "prefers mornings");
    assert_eq!(
        changed["starts_at"], created["starts_at"],
        "the times are untouched"
    );

    let refused = patch(
        &app.keys.ops,
        json!({"customer": {"email": "not-an-address"}}),
    )
    .await
    .expect("patch");
    let body = problem(refused, 422, "validation").await;
    assert_eq!(body["field"], "customer.email");
    let read: Value = app
        .get(&path, &app.keys.viewer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        read["customer"]["email"], "ada@lovelace.example",
        "nothing changed"
    );

    let viewer = patch(&app.keys.viewer, json!({"notes": "x"}))
        .await
        .expect("patch");
    assert_eq!(viewer.status(), 403);
    let stranger = patch(&app.other_ops_key, json!({"notes": "x"}))
        .await
        .expect("patch");
    assert_eq!(stranger.status(), 404);
}

/// Renaming a mapped segment's key would delete its event maps: refused with 409, naming
/// the segment and who is mapped, and nothing changes. A rename of the segment's `name`, or
/// a new length, goes through.
async fn a_service_change_that_would_delete_event_maps_is_refused(app: TestApp) {
    use phasebook_domain::{SegmentKey, ServiceId, StaffId};
    use phasebook_test_support::fixtures::put_event_map;
    app.define_salon().await;
    let colour = ServiceId::parse("colour").expect("id");
    for (key, event_type) in [("A", 11), ("B", 12), ("C", 13), ("D", 14)] {
        put_event_map(
            &app.db,
            app.tenant_id,
            &colour,
            &SegmentKey::parse(key).expect("key"),
            &StaffId::parse("anna").expect("staff"),
            event_type,
            event_type,
        )
        .await
        .expect("map");
    }
    let renamed = json!({
        "name": "Colour, cut and blow-dry",
        "segments": [
            {"key": "A", "name": "Apply colour", "duration_minutes": 30, "gap_after_minutes": 35},
            {"key": "B", "name": "Wash", "duration_minutes": 15},
            {"key": "CUT", "name": "Cut", "duration_minutes": 30},
            {"key": "D", "name": "Blow-dry", "duration_minutes": 20}
        ]
    });
    let body = problem(
        app.put_json("/services/colour", &app.keys.ops, &renamed)
            .await,
        409,
        "service-change-loses-event-maps",
    )
    .await;
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("segment C") && detail.contains("anna"),
        "{detail}"
    );
    let kept: Value = app
        .get("/services/colour", &app.keys.ops)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(kept["segments"][2]["key"], "C", "nothing changed");

    let relabelled = json!({
        "name": "Colour, cut and blow-dry",
        "segments": [
            {"key": "A", "name": "Apply colour", "duration_minutes": 30, "gap_after_minutes": 35},
            {"key": "B", "name": "Wash and condition", "duration_minutes": 20},
            {"key": "C", "name": "Cut", "duration_minutes": 30},
            {"key": "D", "name": "Blow-dry", "duration_minutes": 20}
        ]
    });
    let stored = app
        .put_json("/services/colour", &app.keys.ops, &relabelled)
        .await;
    assert_eq!(stored.status(), 200);
}

/// A new segment length or a staff member re-pointed to another Cal.com user is stored, but
/// the maps checked against the old value are marked with the reason, and bookings on them
/// are refused with `segment-map-unverified` until each map is checked again; other maps
/// and staff keep booking.
async fn a_resized_segment_or_repointed_staff_member_needs_its_maps_checked_again(app: TestApp) {
    use phasebook_domain::{SegmentKey, ServiceId, StaffId};
    app.define_salon().await;
    let resized = json!({
        "name": "Colour",
        "segments": [
            {"key": "A", "name": "Apply colour", "duration_minutes": 30, "gap_after_minutes": 35},
            {"key": "B", "name": "Wash", "duration_minutes": 20},
            {"key": "C", "name": "Cut", "duration_minutes": 30},
            {"key": "D", "name": "Blow-dry", "duration_minutes": 20}
        ]
    });
    let stored = app
        .put_json("/services/colour", &app.keys.ops, &resized)
        .await;
    assert_eq!(stored.status(), 200);
    let maps: Value = app
        .get("/event-maps", &app.keys.ops)
        .await
        .json()
        .await
        .expect("json");
    let reason_of = |maps: &Value, service: &str, key: &str, staff: &str| {
        maps["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|m| {
                m["service_id"] == service && m["segment_key"] == key && m["staff_id"] == staff
            })
            .map(|m| m["unverified_reason"].clone())
            .expect("map listed")
    };
    let b = reason_of(&maps, "colour", "B", "anna");
    assert!(b.as_str().is_some_and(|r| r.contains("20 minutes")), "{b}");
    assert_eq!(reason_of(&maps, "colour", "A", "anna"), Value::Null);
    assert_eq!(reason_of(&maps, "cut", "C", "anna"), Value::Null);

    let body = problem(
        app.post_json(
            "/appointments",
            &app.keys.agent,
            &booking("anna", "2027-05-04T09:00"),
        )
        .await,
        422,
        "segment-map-unverified",
    )
    .await;
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("Segment B") && detail.contains("20 minutes"),
        "{detail}"
    );

    // Checking the map again (the PUT's upsert) clears the mark for that map only.
    for staff in ["anna", "ben"] {
        phasebook_test_support::fixtures::put_event_map(
            &app.db,
            app.tenant_id,
            &ServiceId::parse("colour").expect("id"),
            &SegmentKey::parse("B").expect("key"),
            &StaffId::parse(staff).expect("staff"),
            9_901,
            9_901,
        )
        .await
        .expect("map");
    }
    let booked = app
        .post_json(
            "/appointments",
            &app.keys.agent,
            &booking("anna", "2027-05-04T09:00"),
        )
        .await;
    assert_eq!(
        booked.status(),
        201,
        "{}",
        booked.text().await.unwrap_or_default()
    );

    // Ben now books as another Cal.com user: each of his maps needs a new check, Anna's not.
    let repointed = json!({
        "name": "BEN", "calcom_user_id": 202, "calcom_username": "ben", "time_zone": "Europe/Berlin"
    });
    assert_eq!(
        app.put_json("/staff/ben", &app.keys.ops, &repointed)
            .await
            .status(),
        200
    );
    let maps: Value = app
        .get("/event-maps", &app.keys.ops)
        .await
        .json()
        .await
        .expect("json");
    for (service, key) in [("colour", "A"), ("colour", "D"), ("cut", "C")] {
        let reason = reason_of(&maps, service, key, "ben");
        assert!(
            reason.as_str().is_some_and(|r| r.contains("202")),
            "{reason}"
        );
        assert_eq!(reason_of(&maps, service, key, "anna"), Value::Null);
    }
    problem(
        app.post_json(
            "/appointments",
            &app.keys.agent,
            &booking("ben", "2027-05-04T15:00"),
        )
        .await,
        422,
        "segment-map-unverified",
    )
    .await;
    // Storing the same user again changes nothing.
    assert_eq!(app.put_json("/staff/anna", &app.keys.ops, &json!({
        "name": "ANNA", "calcom_user_id": 101, "calcom_username": "anna", "time_zone": "Europe/Berlin"
    })).await.status(), 200);
    let booked = app
        .post_json(
            "/appointments",
            &app.keys.agent,
            &booking("anna", "2027-05-04T15:00"),
        )
        .await;
    assert_eq!(
        booked.status(),
        201,
        "{}",
        booked.text().await.unwrap_or_default()
    );
}

phasebook_test_support::on_both_backends!(with setup;
    a_resized_segment_or_repointed_staff_member_needs_its_maps_checked_again,
    a_service_change_that_would_delete_event_maps_is_refused,
    contact_details_and_notes_can_be_corrected,
    control_characters_are_refused_alike_on_both_backends,
    journey_book_replay_collide_read_list_cancel,
    keys_roles_and_tenants_are_enforced,
    bad_requests_are_problems_and_write_nothing,
    a_key_in_flight_answers_409,
    concurrent_retries_with_one_key_book_once_and_share_its_answer,
    operations_endpoints_answer,
);
