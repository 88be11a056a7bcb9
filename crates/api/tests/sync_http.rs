//! The sync engine through the HTTP API, with the worker running in the background:
//! `Prefer: wait`, `GET /appointments/{id}/sync`, `POST /resync/{id}`, `GET /sync/health`,
//! cancel, and signed Cal.com webhooks. Cal.com is the emulator (`calcom_sim`) on loopback.

use std::time::Duration;

use calcom_sim::BookingStatus;
use hmac::{Hmac, Mac};
use phasebook_api::auth;
use phasebook_api::store::Role;
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use phasebook_test_support::{TestApp, databases, fast_sync_config};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;

/// The app, the emulator and the worker (see `phasebook_test_support::app`).
struct App {
    app: TestApp,
}

async fn spawn(database: TestDatabase) -> App {
    let app = TestApp::builder()
        .worker(fast_sync_config("http-test"))
        .spawn(database)
        .await;
    App { app }
}

phasebook_test_support::deref_to!(App => app: TestApp);

impl App {
    async fn post(&self, path: &str, key: &str, body: Option<Value>) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, key, body).await
    }

    async fn get(&self, path: &str, key: &str) -> Value {
        let response = self.send(reqwest::Method::GET, path, key, None).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    /// Books with `Prefer: wait=5` and returns the answer.
    async fn book(&self, start: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/appointments", self.url))
            .bearer_auth(&self.salon.ops_key)
            .header("Prefer", "wait=5")
            .json(&json!({
                "service_id": "colour",
                "staff_id": "stylist-1",
                "start": start,
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
            }))
            .send()
            .await
            .expect("request")
    }

    /// Polls the sync status until `want` with the job done (bounded; the worker is event-driven, so this
    /// normally returns on the first or second look).
    async fn wait_for(&self, id: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let view = self
                .get(&format!("/appointments/{id}/sync"), &self.salon.ops_key)
                .await;
            let settled = view["status"] == want && view["job_state"] == "done";
            if settled || tokio::time::Instant::now() > deadline {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn secret(&self) -> String {
        phasebook_api::sync::SyncHandle::for_database(&self.db)
            .store()
            .webhook_secret(self.salon.tenant_id)
            .await
            .expect("secret")
            .expect("tenant")
    }

    async fn webhook(&self, body: &Value, secret: &str) -> reqwest::Response {
        let raw = serde_json::to_vec(body).expect("json");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(&raw);
        let signature = hex::encode(mac.finalize().into_bytes());
        self.http
            .post(format!(
                "{}/webhooks/calcom/{}",
                self.url, self.salon.tenant_id
            ))
            .header("content-type", "application/json")
            .header("X-Cal-Signature-256", signature)
            .body(raw)
            .send()
            .await
            .expect("request")
    }
}

#[tokio::test]
async fn prefer_wait_answers_once_every_segment_is_booked_and_says_so() {
    for database in databases().await {
        let app = spawn(database).await;
        let response = app.book("2030-01-07T09:00:00Z").await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            response.headers()["preference-applied"].to_str().ok(),
            Some("wait=5")
        );
        assert_eq!(
            response.headers()["phasebook-sync-finished"].to_str().ok(),
            Some("true")
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["sync"]["status"], "synced", "{body:#}");
        let segments = body["segments"].as_array().expect("segments");
        assert_eq!(segments.len(), 4);
        assert!(segments.iter().all(|s| s["calcom_booking_uid"].is_string()));

        let id = body["id"].as_str().expect("id");
        let view = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(view["requires_manual_review"], false);
        assert_eq!(view["attempts"].as_array().map(Vec::len), Some(4));
        assert!(view["segments"][0]["calcom_booking_id"].is_i64());
    }
}

#[tokio::test]
async fn resync_is_safe_to_repeat_and_limited_to_ops() {
    for database in databases().await {
        let app = spawn(database).await;
        let body: Value = app
            .book("2030-01-08T09:00:00Z")
            .await
            .json()
            .await
            .expect("json");
        let id = body["id"].as_str().expect("id").to_string();
        let viewer = auth::issue_api_key(app.db.store(), app.salon.tenant_id, Role::Viewer)
            .await
            .expect("viewer");
        let viewer = viewer.api_key.expose_secret().to_string();
        let refused = app.post(&format!("/resync/{id}"), &viewer, None).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let unknown = app
            .post(
                &format!("/resync/{}", uuid::Uuid::now_v7()),
                &app.salon.ops_key,
                None,
            )
            .await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        for _ in 0..3 {
            let accepted = app
                .post(&format!("/resync/{id}"), &app.salon.ops_key, None)
                .await;
            assert_eq!(accepted.status(), StatusCode::ACCEPTED);
            let view = app.wait_for(&id, "synced").await;
            assert_eq!(view["status"], "synced");
        }
        let bookings = app.sim.state().bookings;
        assert_eq!(bookings.len(), 4, "resync never books twice");
        assert!(bookings.iter().all(|b| b.status == BookingStatus::Accepted));
        let health = app.get("/sync/health", &viewer).await;
        assert_eq!(health["appointments_by_status"]["synced"], 1, "{health:#}");
        assert_eq!(health["appointments_needing_review"], 0);
        assert!(
            health["success_rate_24h"]
                .as_f64()
                .is_some_and(|r| r > 0.99)
        );
    }
}

#[tokio::test]
async fn cancelling_an_appointment_cancels_its_bookings_in_calcom() {
    for database in databases().await {
        let app = spawn(database).await;
        let body: Value = app
            .book("2030-01-09T09:00:00Z")
            .await
            .json()
            .await
            .expect("json");
        let id = body["id"].as_str().expect("id").to_string();
        let cancelled = app
            .post(
                &format!("/appointments/{id}/cancel"),
                &app.salon.ops_key,
                None,
            )
            .await;
        assert_eq!(cancelled.status(), StatusCode::OK);
        let view = app.wait_for(&id, "cancelled").await;
        assert_eq!(view["status"], "cancelled", "{view:#}");
        let bookings = app.sim.state().bookings;
        assert_eq!(bookings.len(), 4);
        assert!(
            bookings
                .iter()
                .all(|b| b.status == BookingStatus::Cancelled)
        );
    }
}

#[tokio::test]
async fn a_callers_cancellation_reason_reaches_calcom_and_the_sync_view() {
    for database in databases().await {
        let app = spawn(database).await;
        let body: Value = app
            .book("2030-01-09T11:00:00Z")
            .await
            .json()
            .await
            .expect("json");
        let id = body["id"].as_str().expect("id").to_string();
        let refused = app
            .post(
                &format!("/appointments/{id}/cancel"),
                &app.salon.ops_key,
                Some(json!({"reason": "two\nlines"})),
            )
            .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = refused.json().await.expect("json");
        assert_eq!(problem["field"], "reason", "{problem:#}");
        let too_long = app
            .post(
                &format!("/appointments/{id}/cancel"),
                &app.salon.ops_key,
                Some(json!({"reason": "x".repeat(501)})),
            )
            .await;
        assert_eq!(too_long.status(), StatusCode::UNPROCESSABLE_ENTITY);

        let cancelled = app
            .post(
                &format!("/appointments/{id}/cancel"),
                &app.salon.ops_key,
                Some(json!({"reason": "  Caller is moving abroad  "})),
            )
            .await;
        assert_eq!(cancelled.status(), StatusCode::OK);
        let answer: Value = cancelled.json().await.expect("json");
        assert_eq!(answer["cancellation_reason"], "Caller is moving abroad");
        let view = app.wait_for(&id, "cancelled").await;
        assert_eq!(
            view["cancellation_reason"], "Caller is moving abroad",
            "{view:#}"
        );
        let bookings = app.sim.state().bookings;
        assert_eq!(bookings.len(), 4);
        for booking in &bookings {
            assert_eq!(booking.status, BookingStatus::Cancelled);
            assert_eq!(
                booking.cancellation_reason.as_deref(),
                Some("Caller is moving abroad")
            );
        }
    }
}

#[tokio::test]
async fn a_booking_cancelled_or_moved_in_calcom_flags_the_appointment() {
    for database in databases().await {
        let app = spawn(database).await;
        let body: Value = app
            .book("2030-01-10T09:00:00Z")
            .await
            .json()
            .await
            .expect("json");
        let id = body["id"].as_str().expect("id").to_string();
        let a_uid = body["segments"][0]["calcom_booking_uid"]
            .as_str()
            .expect("uid")
            .to_string();
        let b_uid = body["segments"][1]["calcom_booking_uid"]
            .as_str()
            .expect("uid")
            .to_string();
        let a_id = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await["segments"][0]["calcom_booking_id"]
            .clone();
        assert!(a_id.is_i64());
        let secret = app.secret().await;

        let cancel = json!({"triggerEvent": "BOOKING_CANCELLED", "createdAt": "2030-01-01T00:00:00Z",
            "payload": {"uid": a_uid, "bookingId": a_id, "cancellationReason": "client called", "status": "CANCELLED"}});
        let forged = app.webhook(&cancel, "not-the-secret").await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        let view = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(view["status"], "synced", "a forged webhook changes nothing");

        // A signed delivery that Cal.com contradicts (the booking still stands) is not
        // believed: acting on it would release time the stylist is booked for.
        let contradicted = app.webhook(&cancel, &secret).await;
        assert_eq!(contradicted.status(), StatusCode::OK);
        let outcome: Value = contradicted.json().await.expect("json");
        assert_eq!(outcome["outcome"], "ignored", "{outcome:#}");
        let view = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(view["status"], "synced", "{view:#}");

        let calcom = calcom_client::CalcomClient::new(calcom_client::ClientConfig::new(
            app.sim.base_url.clone(),
            secrecy::SecretString::from(fixtures::SIM_API_KEY),
        ))
        .expect("client");
        calcom
            .cancel_booking(&a_uid, "client called")
            .await
            .expect("cancelled in Cal.com");
        let accepted = app.webhook(&cancel, &secret).await;
        assert_eq!(accepted.status(), StatusCode::OK);
        let view = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(view["status"], "needs_review");
        assert_eq!(view["requires_manual_review"], true);
        let reason = view["review_reason"].as_str().expect("reason");
        assert!(reason.contains("was cancelled in Cal.com"), "{reason}");
        assert!(reason.contains("client called"), "{reason}");
        assert!(reason.contains("segment A"), "{reason}");

        let moved_to = calcom
            .reschedule_booking(
                &b_uid,
                &calcom_client::RescheduleBooking {
                    start: "2030-01-10T15:00:00Z".parse().expect("start"),
                    rescheduled_by: None,
                    rescheduling_reason: None,
                },
            )
            .await
            .expect("moved in Cal.com");
        let moved = json!({"triggerEvent": "BOOKING_RESCHEDULED", "createdAt": "2030-01-01T00:00:00Z",
            "payload": {"uid": moved_to.uid, "bookingId": moved_to.id, "rescheduleUid": b_uid,
                        "startTime": "2030-01-10T15:00:00Z", "status": "ACCEPTED"}});
        let accepted = app.webhook(&moved, &secret).await;
        assert_eq!(accepted.status(), StatusCode::OK);
        let view = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(
            view["segments"][1]["calcom_booking_uid"],
            moved_to.uid.as_str()
        );
        assert_eq!(view["segments"][1]["status"], "needs_review");
        // One summary on the appointment; each segment's own reason in the sync view.
        let reason = view["review_reason"].as_str().expect("reason");
        assert!(reason.contains("2 segments need review (A, B)"), "{reason}");
        let moved = view["segments"][1]["review_reason"]
            .as_str()
            .expect("reason");
        assert!(moved.contains("moved in Cal.com"), "{moved}");
    }
}

#[tokio::test]
async fn signed_webhooks_from_calcom_flag_a_booking_cancelled_or_moved_there() {
    for database in databases().await {
        let app = spawn(database).await;
        let secret = app.secret().await;
        app.sim.sim.set_webhook(Some(calcom_sim::WebhookConfig {
            url: format!("{}/webhooks/calcom/{}", app.url, app.salon.tenant_id),
            secret: Some(secret),
        }));
        let body: Value = app
            .book("2030-01-14T09:00:00Z")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["sync"]["status"], "synced");
        let id = body["id"].as_str().expect("id").to_string();
        let uid = |i: usize| {
            body["segments"][i]["calcom_booking_uid"]
                .as_str()
                .expect("uid")
                .to_string()
        };
        let calcom = |path: String, body: Value| {
            app.http
                .post(format!("{}{path}", app.sim.base_url))
                .bearer_auth(fixtures::SIM_API_KEY)
                .header("cal-api-version", "2024-08-13")
                .json(&body)
                .send()
        };
        // The salon cancels segment A and moves segment B in Cal.com itself.
        let cancelled = calcom(
            format!("/v2/bookings/{}/cancel", uid(0)),
            json!({"cancellationReason": "client called"}),
        )
        .await
        .expect("cancel");
        assert_eq!(cancelled.status(), StatusCode::OK);
        let moved = calcom(
            format!("/v2/bookings/{}/reschedule", uid(1)),
            json!({"start": "2030-01-14T15:00:00Z", "reschedulingReason": "stylist asked"}),
        )
        .await
        .expect("reschedule");
        assert_eq!(moved.status(), StatusCode::CREATED);
        let moved: Value = moved.json().await.expect("json");
        let new_uid = moved["data"]["uid"].as_str().expect("uid").to_string();

        // Every delivery (our own creates too) is answered, and accepted.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let deliveries = loop {
            let deliveries = app.sim.state().webhooks;
            if deliveries.len() >= 6 && deliveries.iter().all(|d| d.response_status.is_some()) {
                break deliveries;
            }
            assert!(tokio::time::Instant::now() < deadline, "{deliveries:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            deliveries.iter().all(|d| d.response_status == Some(200)),
            "{deliveries:#?}"
        );

        let view = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(view["status"], "needs_review", "{view:#}");
        assert_eq!(view["requires_manual_review"], true);
        assert_eq!(view["segments"][0]["status"], "needs_review");
        assert_eq!(view["segments"][1]["status"], "needs_review");
        assert_eq!(view["segments"][1]["calcom_booking_uid"], new_uid);
        assert_eq!(view["segments"][2]["status"], "synced");
        let reason = view["review_reason"].as_str().expect("reason");
        assert!(reason.contains("was cancelled in Cal.com"), "{reason}");
        assert!(reason.contains("client called"), "{reason}");
        let moved = view["segments"][1]["review_reason"]
            .as_str()
            .expect("reason");
        assert!(moved.contains("moved in Cal.com"), "{moved}");
    }
}
