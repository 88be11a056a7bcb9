//! The real `phasebook` binary: `tenant create --json` prints one JSON object with a key
//! that works, and `serve` answers `/healthz` and authenticated requests.

use std::process::Command;

use phasebook_test_support::ChildProcess;
use serde_json::Value;

fn phasebook(database_url: &str) -> Command {
    phasebook_test_support::phasebook(env!("CARGO_BIN_EXE_phasebook"), database_url)
}

#[tokio::test]
async fn binary_creates_a_tenant_and_serves_healthz() {
    let database = phasebook_test_support::TestDatabase::sqlite();

    let output = phasebook(&database.url)
        .args([
            "tenant",
            "create",
            "--name",
            "Salon Aurora",
            "--calcom-api-key",
            "cal_live_x",
            "--json",
        ])
        .output()
        .expect("run tenant create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let created: Value = serde_json::from_str(&stdout).expect("json");
    let key = created["api_key"].as_str().expect("api_key").to_string();
    let tenant = created["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_string();
    assert!(key.starts_with("pb_live_"));
    assert_eq!(created["role"], "ops");
    // What ops enters in Cal.com's webhook settings, shown once.
    let webhook_secret = created["webhook_secret"]
        .as_str()
        .expect("webhook_secret")
        .to_string();
    let webhook_path = created["webhook_path"]
        .as_str()
        .expect("webhook_path")
        .to_string();
    assert_eq!(webhook_path, format!("/webhooks/calcom/{tenant}"));
    assert!(
        webhook_secret.len() >= 32,
        "a real secret: {webhook_secret}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(&key), "the key is never logged");
    assert!(
        !stderr.contains(&webhook_secret),
        "the webhook secret is never logged"
    );

    let output = phasebook(&database.url)
        .args([
            "key", "create", "--tenant", &tenant, "--role", "viewer", "--json",
        ])
        .output()
        .expect("run key create");
    assert!(output.status.success());
    let viewer: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(viewer["role"], "viewer");

    let server = ChildProcess::build("phasebook-serve", phasebook(&database.url))
        .args(["serve", "--no-worker"])
        .listen("--listen")
        .healthy_at("/healthz")
        .start()
        .await;
    let client = reqwest::Client::new();
    let base = server.base_url();
    let services = client
        .get(format!("{base}/services"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("services");
    assert_eq!(services.status(), 200);
    let unauthorised = client
        .get(format!("{base}/services"))
        .send()
        .await
        .expect("services");
    assert_eq!(unauthorised.status(), 401);

    // A webhook signed with the printed secret is accepted (about a booking we do not
    // own, so it changes nothing); the same body signed with anything else is refused.
    let delivery =
        br#"{"triggerEvent":"BOOKING_CANCELLED","payload":{"uid":"not-ours","bookingId":1}}"#;
    let sign = |secret: &str| {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
        mac.update(delivery);
        hex::encode(mac.finalize().into_bytes())
    };
    let webhook = |signature: String| {
        client
            .post(format!("{base}{webhook_path}"))
            .header("content-type", "application/json")
            .header("x-cal-signature-256", signature)
            .body(delivery.to_vec())
            .send()
    };
    let accepted = webhook(sign(&webhook_secret)).await.expect("webhook");
    assert_eq!(accepted.status(), 200);
    let outcome: Value = accepted.json().await.expect("json");
    assert_eq!(outcome["outcome"], "ignored", "{outcome}");
    let forged = webhook(sign("whsec_guessed")).await.expect("webhook");
    assert_eq!(forged.status(), 401);

    // Book with personal data, then read the process's log lines.
    let ops = |request: reqwest::RequestBuilder| request.bearer_auth(&key);
    let put = |path: &str, body: Value| ops(client.put(format!("{base}{path}"))).json(&body).send();
    put(
        "/services/cut",
        serde_json::json!({"name": "Cut", "segments": [{"key": "C", "name": "Cut", "duration_minutes": 30}]}),
    )
    .await
    .expect("service");
    put(
        "/staff/anna",
        serde_json::json!({"name": "Anna", "calcom_user_id": 1, "calcom_username": "anna", "time_zone": "Europe/Berlin"}),
    )
    .await
    .expect("staff");
    // The pre-flight wants anna's segment mapped; the map goes straight into the database
    // (this test has no Cal.com to verify one against).
    let db = database.connect().await.expect("database");
    phasebook_test_support::fixtures::put_event_map(
        &db,
        uuid::Uuid::parse_str(&tenant).expect("tenant id"),
        &phasebook_domain::ServiceId::parse("cut").expect("service id"),
        &phasebook_domain::SegmentKey::parse("C").expect("segment key"),
        &phasebook_domain::StaffId::parse("anna").expect("staff id"),
        7,
        7,
    )
    .await
    .expect("event map");
    db.close().await;
    let created = ops(client.post(format!("{base}/appointments")))
        .header("x-request-id", "req-under-test")
        .json(&serde_json::json!({
            "service_id": "cut", "staff_id": "anna", "start": "2027-05-04T09:00",
            "customer": {"name": "Ada", "email": "ada.secret@example.com", "phone": "+4915199999999"}
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    assert_eq!(
        created
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-under-test"),
        "a caller's request id is kept and echoed"
    );
    let appointment: Value = created.json().await.expect("json");
    let id = appointment["id"].as_str().expect("id");
    let log = server.stop();
    for secret in [
        key.as_str(),
        "ada.secret@example.com",
        "+4915199999999",
        "Bearer",
    ] {
        assert!(!log.contains(secret), "the log leaks {secret:?}");
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .collect();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "req-under-test")
        .collect();
    assert!(of_request.len() >= 2, "created and finished lines: {log}");
    assert!(
        of_request.iter().all(|l| l["span"]["appointment_id"] == id),
        "the appointment id is on the request's lines"
    );
}

#[test]
fn openapi_command_prints_the_document() {
    let output = Command::new(env!("CARGO_BIN_EXE_phasebook"))
        .arg("openapi")
        .output()
        .expect("run openapi");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).expect("utf-8"),
        phasebook_api::routes::openapi_json()
    );
}
