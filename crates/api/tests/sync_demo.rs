//! `phasebook demo` by itself: the emulator starts in the same process, one appointment
//! goes to `synced` and the broken one (a managed parent without the host's child) to
//! `needs_review` with a reason that names the fix; the printed commands work.

use phasebook_test_support::DemoProcess;
use serde_json::Value;

#[tokio::test]
async fn the_demo_shows_one_appointment_synced_and_a_broken_one_in_review_with_its_fix() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let demo = DemoProcess::start(env!("CARGO_BIN_EXE_phasebook")).await;
    let printed = &demo.printed;

    let booked = &printed["demo_appointments"];
    assert_eq!(booked[0]["sync"]["status"], "synced", "{printed:#}");
    assert_eq!(booked[0]["finished"], true);
    assert_eq!(booked[1]["sync"]["status"], "needs_review", "{printed:#}");
    assert_eq!(booked[1]["sync"]["requires_manual_review"], true);
    let reason = booked[1]["sync"]["review_reason"].as_str().expect("reason");
    assert!(reason.contains("managed parent"), "{reason}");
    assert!(reason.contains("ben-okafor"), "{reason}");
    assert!(reason.contains("fix:"), "{reason}");

    // The API behind the commands answers with the same picture.
    let base = printed["base_url"].as_str().expect("base");
    let key = printed["agent_key"].as_str().expect("key");
    let broken = booked[1]["appointment_id"].as_str().expect("id");
    let view: Value = reqwest::Client::new()
        .get(format!("{base}/appointments/{broken}/sync"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(view["status"], "needs_review");
    let d = &view["segments"][3];
    assert_eq!(d["status"], "needs_review");
    assert_eq!(d["last_error"]["http_status"], 400);
    let commands = printed["commands"].as_array().expect("commands");
    assert!(commands.iter().any(|c| {
        c["command"]
            .as_str()
            .is_some_and(|c| c.contains("Prefer: wait=5"))
    }));
    drop(demo);
}
