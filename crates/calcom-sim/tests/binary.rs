//! The standalone `calcom-sim` binary, started the way the README tells a voice-agent
//! tester to: `calcom-sim --port P --seed-file salon.json`, then driven over HTTP.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use calcom_sim::salon;
use common::{Api, BOOKINGS, berlin, booking_body};
use serde_json::Value;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start(extra: &[&str]) -> (Running, String) {
    // reqwest is built without a default TLS provider (plain HTTP still asks for one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/salon.json");
    let child = Command::new(env!("CARGO_BIN_EXE_calcom-sim"))
        .args(["--port", &port.to_string(), "--seed-file", seed])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("calcom-sim starts");
    let running = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let began = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/__sim/state")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "calcom-sim did not answer on {base}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (running, base)
}

fn api(base: &str) -> Api {
    Api {
        base: base.to_owned(),
        http: reqwest::Client::new(),
        key: Some(salon::API_KEY.to_owned()),
    }
}

#[tokio::test]
async fn seed_file_loads_the_salon_and_bookings_land_in_the_state() {
    let (_sim, base) = start(&[]).await;
    let api = api(&base);

    let state: Value = reqwest::get(format!("{base}/__sim/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    let usernames: Vec<&str> = state["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(
        usernames.len(),
        2,
        "the salon has two stylists: {usernames:?}"
    );
    // The binary's default is Cal.com's own limit, unlike the library's test default.
    assert_eq!(state["rateLimit"]["limit"], 120, "{}", state["rateLimit"]);

    let created = api
        .post(
            "/v2/bookings",
            BOOKINGS,
            booking_body(salon::ANNA_SEGMENTS[0], berlin(1, 10, 0)),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let uid = created.body["data"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();

    // The managed parent of the incident is refused exactly as Cal.com refuses it.
    let parent = api
        .post(
            "/v2/bookings",
            BOOKINGS,
            booking_body(salon::MANAGED_PARENT, berlin(1, 12, 0)),
        )
        .await;
    assert_eq!(parent.status, 400, "{}", parent.body);

    let state = api.state().await;
    let booking = state.booking(&uid).expect("the booking is in the state");
    assert_eq!(booking.event_type_id, Some(salon::ANNA_SEGMENTS[0]));
    assert_eq!(state.bookings.len(), 1, "the refused create stored nothing");
}

#[tokio::test]
async fn flags_switch_the_rate_limit_off_and_add_latency() {
    let (_sim, base) = start(&["--no-rate-limit", "--latency-ms", "150"]).await;
    let api = api(&base);
    let sent = Instant::now();
    let answer = api
        .post(
            "/v2/bookings",
            BOOKINGS,
            booking_body(salon::BEN_SEGMENTS[1], berlin(2, 11, 0)),
        )
        .await;
    let took = sent.elapsed();
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(
        took >= Duration::from_millis(150),
        "the configured latency is added: answered after {took:?}"
    );
    let state: Value = reqwest::get(format!("{base}/__sim/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(state["rateLimit"].is_null(), "{}", state["rateLimit"]);
}
