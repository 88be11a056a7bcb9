//! Throttling and fault injection: Cal.com's 429 (headers, body, block), injected 5xx,
//! exact latency, hangs, lost responses after commit, reproducibility by seed.

mod common;

use std::time::{Duration, Instant};

use calcom_sim::{Faults, RateLimitConfig, RouteFaults, SimConfig, salon};
use common::*;
use serde_json::json;

fn header(a: &Answer, name: &str) -> String {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_throttler_answers_429_with_both_header_forms_and_blocks() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimitConfig {
            limit: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(2),
        }),
        ..Default::default()
    })
    .await;
    let api = Api::new(&sim);
    let path = "/v2/event-types?username=anna";
    for remaining in [2, 1, 0] {
        let r = api.get(path, EVENT_TYPES).await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "x-ratelimit-limit-default"), "3");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-default"),
            remaining.to_string()
        );
        assert_eq!(header(&r, "x-ratelimit-remaining"), remaining.to_string());
        let reset: u64 = header(&r, "x-ratelimit-reset-default")
            .parse()
            .expect("reset");
        assert!((59..=60).contains(&reset), "{reset}");
    }
    let r = api.get(path, EVENT_TYPES).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["code"], "ThrottlerException");
    assert_eq!(
        message(&r.body),
        "CustomThrottlerGuard - Too many requests. Please try again later."
    );
    assert_eq!(header(&r, "x-ratelimit-reset-default"), "2");
    assert_eq!(header(&r, "x-ratelimit-reset"), "2");
    assert!(r.headers.get("retry-after").is_none());
    // Another key has its own budget.
    let ben = Api::new(&sim).with_key(Some(salon::BEN_API_KEY));
    assert_eq!(ben.get(path, EVENT_TYPES).await.status, 200);
    // Blocked for the block duration, then a fresh window.
    assert_eq!(api.get(path, EVENT_TYPES).await.status, 429);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = api.get(path, EVENT_TYPES).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-default"), "2");
    assert_eq!(
        api.state().await.requests["event_types.list"].rate_limited,
        2
    );

    // Off at run time: no headers, no limit.
    sim.sim.set_rate_limit(None);
    for _ in 0..5 {
        let r = api.get(path, EVENT_TYPES).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.get("x-ratelimit-limit-default").is_none());
    }
}

#[tokio::test]
async fn injected_errors_are_cal_com_500s_that_change_nothing() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::default().route("bookings.create", RouteFaults::error_rate(1.0)));
    let api = Api::new(&sim);
    let r = api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        json!({"statusCode": 500, "message": "Internal server error"})
    );
    assert!(api.state().await.bookings.is_empty());
    // Other routes are untouched.
    assert_eq!(api.get("/v2/bookings", BOOKINGS).await.status, 200);
}

#[tokio::test]
async fn injected_429s_look_like_the_throttlers() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::everywhere(1, RouteFaults::rate_limited_rate(1.0)));
    let api = Api::new(&sim);
    let r = api.book(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["code"], "ThrottlerException");
    assert_eq!(header(&r, "x-ratelimit-reset-default"), "60");
    assert!(api.state().await.bookings.is_empty());
}

#[tokio::test]
async fn latency_is_added_before_the_answer() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::default().route("event_types", RouteFaults::latency(150)));
    let api = Api::new(&sim);
    let t = Instant::now();
    assert_eq!(
        api.get("/v2/event-types?username=anna", EVENT_TYPES)
            .await
            .status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_hang_never_answers_and_the_client_times_out() {
    let sim = salon_sim().await;
    sim.sim
        .set_faults(Faults::default().route("bookings.create", RouteFaults::hang_rate(1.0)));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let r = http
        .post(format!("{}/v2/bookings", sim.base_url))
        .header("cal-api-version", BOOKINGS)
        .bearer_auth(salon::API_KEY)
        .json(&booking_body(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)))
        .send()
        .await;
    assert!(r.as_ref().is_err_and(reqwest::Error::is_timeout), "{r:?}");
    let state = sim.sim.state();
    assert_eq!(state.requests["bookings.create"].hung, 1);
    assert!(state.bookings.is_empty());
}

#[tokio::test]
async fn a_lost_response_commits_the_booking_but_the_client_gets_no_answer() {
    let sim = salon_sim().await;
    sim.sim.set_faults(
        Faults::default().route("bookings.create", RouteFaults::lost_response_rate(1.0)),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let sent = http
        .post(format!("{}/v2/bookings", sim.base_url))
        .header("cal-api-version", BOOKINGS)
        .bearer_auth(salon::API_KEY)
        .json(&booking_body(salon::ANNA_SEGMENTS[1], berlin(0, 10, 0)))
        .send()
        .await;
    let outcome = match sent {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = outcome.expect_err("no complete answer");
    assert!(!err.is_connect(), "the request was sent: {err:?}");
    let state = sim.sim.state();
    assert_eq!(state.bookings.len(), 1, "committed");
    assert_eq!(state.bookings[0].metadata["segment"], "A");
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let sim = salon_sim().await;
    let api = Api::new(&sim);
    let mut runs = Vec::new();
    for _ in 0..2 {
        sim.sim.set_faults(
            Faults::default()
                .with_seed(42)
                .route("event_types", RouteFaults::error_rate(0.5)),
        );
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(
                api.get("/v2/event-types?username=anna", EVENT_TYPES)
                    .await
                    .status,
            );
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&500) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
}

#[tokio::test]
async fn faults_can_be_replaced_through_the_admin_api() {
    let sim = salon_sim().await;
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/__sim/faults", sim.base_url))
        .json(&json!({"seed": 7, "routes": {"bookings.get": {"errorRate": 1.0}}}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let api = Api::new(&sim);
    assert_eq!(api.get("/v2/bookings/nope", BOOKINGS).await.status, 500);
    http.put(format!("{}/__sim/faults", sim.base_url))
        .json(&json!({}))
        .send()
        .await
        .expect("put");
    assert_eq!(api.get("/v2/bookings/nope", BOOKINGS).await.status, 404);
    let r = http
        .put(format!("{}/__sim/rate-limit", sim.base_url))
        .json(&json!({"limit": 1, "windowMs": 60000, "blockMs": 1000}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(api.get("/v2/bookings/nope", BOOKINGS).await.status, 404);
    assert_eq!(api.get("/v2/bookings/nope", BOOKINGS).await.status, 429);
}
