//! Signed webhooks (verified with HMAC over the raw body) and the admin state endpoint.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use calcom_sim::{Seed, SimConfig, WebhookConfig, salon};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let sig = headers
                    .get("x-cal-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock().expect("lock").push((sig, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn wait_for(got: &Received, n: usize) -> Vec<(String, Bytes)> {
    for _ in 0..100 {
        if got.lock().expect("lock").len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got.lock().expect("lock").clone()
}

fn verify(secret: &str, sig: &str, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let Ok(expected) = hex::decode(sig) else {
        return false;
    };
    mac.verify_slice(&expected).is_ok()
}

#[tokio::test]
async fn created_rescheduled_and_cancelled_webhooks_are_signed() {
    let (url, got) = receiver().await;
    let sim = sim_with(SimConfig {
        webhook: Some(WebhookConfig {
            url: url.clone(),
            secret: Some("whsec_salon".into()),
        }),
        ..Default::default()
    })
    .await;
    let api = Api::new(&sim);
    let created = api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)).await;
    let uid = created.body["data"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let moved = api
        .post(
            &format!("/v2/bookings/{uid}/reschedule"),
            BOOKINGS,
            json!({"start": iso(berlin(0, 11, 0))}),
        )
        .await;
    let new_uid = moved.body["data"]["uid"].as_str().expect("uid").to_owned();
    api.post(
        &format!("/v2/bookings/{new_uid}/cancel"),
        BOOKINGS,
        json!({"cancellationReason": "ill"}),
    )
    .await;

    let deliveries = wait_for(&got, 3).await;
    assert_eq!(deliveries.len(), 3);
    let mut events = Vec::new();
    for (sig, body) in &deliveries {
        assert!(
            verify("whsec_salon", sig, body),
            "signature over the raw body"
        );
        assert!(!verify("wrong", sig, body));
        let v: Value = serde_json::from_slice(body).expect("json");
        events.push(v);
    }
    let by = |t: &str| {
        events
            .iter()
            .find(|e| e["triggerEvent"] == t)
            .expect(t)
            .clone()
    };
    let c = by("BOOKING_CREATED");
    assert_eq!(c["payload"]["uid"], json!(uid));
    assert_eq!(c["payload"]["status"], "ACCEPTED");
    assert_eq!(
        c["payload"]["metadata"],
        json!({"appointment_id": "a1", "segment": "A"})
    );
    assert_eq!(c["payload"]["organizer"]["id"], salon::ANNA);
    let r = by("BOOKING_RESCHEDULED");
    assert_eq!(r["payload"]["uid"], json!(new_uid));
    assert_eq!(r["payload"]["rescheduleUid"], json!(uid));
    assert_eq!(r["payload"]["metadata"]["segment"], "A");
    let x = by("BOOKING_CANCELLED");
    assert_eq!(x["payload"]["uid"], json!(new_uid));
    assert_eq!(x["payload"]["status"], "CANCELLED");
    assert_eq!(x["payload"]["cancellationReason"], "ill");
    assert!(
        x["payload"].get("metadata").is_none(),
        "no booking metadata on cancel"
    );

    let state = sim.sim.state();
    assert_eq!(state.webhooks.len(), 3);
    assert!(state.webhooks.iter().all(|d| d.url == url));
}

#[tokio::test]
async fn without_a_secret_the_header_says_so() {
    let (url, got) = receiver().await;
    let sim = salon_sim().await;
    let r = reqwest::Client::new()
        .put(format!("{}/__sim/webhook", sim.base_url))
        .json(&json!({"url": url}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    Api::new(&sim)
        .book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0))
        .await;
    let deliveries = wait_for(&got, 1).await;
    assert_eq!(deliveries[0].0, "no-secret-provided");
}

#[tokio::test]
async fn state_seed_and_reset_over_http() {
    let sim = calcom_sim::Sim::new(SimConfig::default())
        .spawn()
        .await
        .expect("spawn");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/__sim/seed", sim.base_url))
        .body(calcom_sim::SALON_JSON)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("seed");
    assert_eq!(r.status(), 201);
    let api = Api::new(&sim);
    api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)).await;
    let raw: Value = http
        .get(format!("{}/__sim/state", sim.base_url))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    for key in [
        "bookings",
        "eventTypes",
        "users",
        "teams",
        "webhooks",
        "requests",
    ] {
        assert!(raw.get(key).is_some(), "{key}");
    }
    let b = &raw["bookings"][0];
    for key in [
        "id",
        "uid",
        "eventTypeId",
        "start",
        "end",
        "status",
        "metadata",
        "attendees",
    ] {
        assert!(b.get(key).is_some(), "{key}");
    }
    assert_eq!(b["status"], "accepted");
    assert_eq!(raw["requests"]["bookings.create"]["total"], 1);
    // Seeding the same ids twice is refused.
    let again = http
        .post(format!("{}/__sim/seed", sim.base_url))
        .json(&Seed::salon())
        .send()
        .await
        .expect("seed");
    assert_eq!(again.status(), 400);
    http.post(format!("{}/__sim/reset", sim.base_url))
        .send()
        .await
        .expect("reset");
    let state = api.state().await;
    assert!(state.bookings.is_empty() && state.users.is_empty());
}
