//! The ops console over plain HTTP, on SQLite and PostgreSQL: the session cookie's flags,
//! the Content-Security-Policy and self-contained pages, CSRF, logout, tenant isolation,
//! who may log in, and the demo's console. The browser suite (`console_browser.rs`)
//! covers what a person sees.

mod console_support;

use console_support::{DAY, World, form, set_cookie, setup};
use phasebook_test_support::DemoProcess;
use serde_json::Value;

const PAGES: [&str; 4] = ["/ops", "/ops/day", "/ops/health", "/ops/event-maps"];

async fn the_session_cookie_is_http_only_strict_expiring_and_secure_behind_tls(world: World) {
    let (response, session) = world.login_over_http(&world.salon.ops_key, &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/ops");
    let cookie = set_cookie(&response, "phasebook_console").expect("cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ops", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{cookie} has {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(session.is_some());

    let (response, _) = world
        .login_over_http(&world.salon.ops_key, &[("x-forwarded-proto", "https")])
        .await;
    let cookie = set_cookie(&response, "phasebook_console").expect("cookie");
    assert!(cookie.ends_with("; Secure"), "behind TLS: {cookie}");
}

async fn every_page_forbids_inline_script_and_loads_only_its_own_assets(world: World) {
    let (_, session) = world.login_over_http(&world.salon.ops_key, &[]).await;
    let session = session.expect("session");
    let mut pages: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    pages.push(format!("/ops/day?date={DAY}"));
    pages.push(format!("/ops/appointments/{}", world.broken));
    pages.push("/ops/event-maps?service=colour&staff=stylist-2".into());
    for path in pages {
        let response = world.get_page(&session, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let html = response.text().await.expect("html");
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=\"/ops/assets/").count(),
            "{path}: every script is the embedded file"
        );
        assert!(!html.contains(" style="), "{path}: no inline style");
        assert!(!html.contains(" onclick="), "{path}: no inline handler");
        for outside in ["http://", "https://", "//cdn"] {
            assert!(
                !html.contains(&format!("src=\"{outside}"))
                    && !html.contains(&format!("href=\"{outside}")),
                "{path}: nothing is loaded from elsewhere"
            );
        }
    }
    for asset in ["console.css", "console.js"] {
        let response = world
            .http
            .get(format!("{}/ops/assets/{asset}", world.url))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset} is served by the binary");
    }
}

async fn another_tenants_appointment_answers_404(world: World) {
    let (_, other) = world.login_over_http(&world.other_tenant_key, &[]).await;
    let other = other.expect("session");
    for path in [
        format!("/ops/appointments/{}", world.broken),
        format!("/ops/appointments/{}/cancel", world.broken),
        "/ops/appointments/not-an-id".to_string(),
    ] {
        let response = world.get_page(&other, &path).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = world
        .http
        .post(format!(
            "{}/ops/appointments/{}/resync",
            world.url, world.broken
        ))
        .header("cookie", &other.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf_token", &other.csrf_token)]))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 404);
    assert_eq!(
        world.sync_view(world.broken).await["status"],
        "needs_review"
    );
}

async fn a_post_without_the_session_csrf_token_is_refused(world: World) {
    let (_, session) = world.login_over_http(&world.salon.ops_key, &[]).await;
    let session = session.expect("session");
    let attempts = world.sync_view(world.broken).await["attempts"]
        .as_array()
        .map(Vec::len);
    for body in [String::new(), form(&[("csrf_token", "forged")])] {
        for action in ["resync", "cancel"] {
            let response = world
                .http
                .post(format!(
                    "{}/ops/appointments/{}/{action}",
                    world.url, world.broken
                ))
                .header("cookie", &session.cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), 403, "{action} with {body:?}");
        }
    }
    let view = world.sync_view(world.broken).await;
    assert_eq!(view["status"], "needs_review");
    assert_eq!(view["attempts"].as_array().map(Vec::len), attempts);
    // With the token, the same cancel goes through (and cancels in Cal.com via the worker).
    let response = world
        .http
        .post(format!(
            "{}/ops/appointments/{}/cancel",
            world.url, world.broken
        ))
        .header("cookie", &session.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf_token", &session.csrf_token)]))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 303);
    let appointment: Value = world
        .http
        .get(format!("{}/appointments/{}", world.url, world.broken))
        .bearer_auth(&world.salon.ops_key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(appointment["status"], "cancelled");
}

async fn logout_ends_the_session_and_only_ops_or_viewer_keys_log_in(world: World) {
    let (_, session) = world.login_over_http(&world.salon.ops_key, &[]).await;
    let session = session.expect("session");
    let response = world
        .http
        .post(format!("{}/ops/logout", world.url))
        .header("cookie", &session.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf_token", &session.csrf_token)]))
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/ops/login");
    let cleared = set_cookie(&response, "phasebook_console").expect("cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    for path in PAGES {
        let response = world.get_page(&session, path).await;
        assert_eq!(response.status(), 303, "{path} after logout");
        assert_eq!(response.headers()["location"], "/ops/login");
    }

    let agent = phasebook_api::auth::issue_api_key(
        world.db.store(),
        world.salon.tenant_id,
        phasebook_api::store::Role::Agent,
    )
    .await
    .expect("agent key");
    let agent_key = secrecy::ExposeSecret::expose_secret(&agent.api_key).to_string();
    let (response, session) = world.login_over_http(&agent_key, &[]).await;
    assert_eq!(response.status(), 403, "agent keys have no console");
    assert!(session.is_none());
    let (response, session) = world.login_over_http("pb_live_not_a_key", &[]).await;
    assert_eq!(response.status(), 401);
    assert!(session.is_none());
    let (response, session) = world.login_over_http(&world.viewer_key, &[]).await;
    assert_eq!(response.status(), 303);
    assert!(session.is_some());

    // A login form posted without its own token (from another site) opens nothing.
    let response = world
        .http
        .post(format!("{}/ops/login", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("api_key", &world.salon.ops_key),
            ("csrf_token", "x"),
        ]))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 403);
    assert!(set_cookie(&response, "phasebook_console").is_none());
}

async fn an_expired_session_sends_the_browser_back_to_login(world: World) {
    use sha2::Digest;
    let token = "an-expired-session-token";
    let now = chrono::Utc::now();
    world
        .db
        .console()
        .create_console_session(&phasebook_api::store::console::NewConsoleSession {
            token_hash: hex::encode(sha2::Sha256::digest(token.as_bytes())),
            tenant_id: world.salon.tenant_id,
            key_hash: phasebook_api::auth::hash_api_key(&world.salon.ops_key),
            csrf_token: "csrf".into(),
            created_at: now - chrono::Duration::hours(9),
            expires_at: now - chrono::Duration::hours(1),
        })
        .await
        .expect("session");
    let response = world
        .http
        .get(format!("{}/ops", world.url))
        .header("cookie", format!("phasebook_console={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/ops/login");
    assert_eq!(
        world
            .db
            .console()
            .purge_expired_console_sessions(now)
            .await
            .expect("purge"),
        1
    );
}

phasebook_test_support::on_both_backends!(with setup;
    an_expired_session_sends_the_browser_back_to_login,
    the_session_cookie_is_http_only_strict_expiring_and_secure_behind_tls,
    every_page_forbids_inline_script_and_loads_only_its_own_assets,
    another_tenants_appointment_answers_404,
    a_post_without_the_session_csrf_token_is_refused,
    logout_ends_the_session_and_only_ops_or_viewer_keys_log_in,
);

#[tokio::test]
async fn the_demo_prints_the_console_url_and_its_review_appointment_is_first_on_the_queue() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let demo = DemoProcess::start(env!("CARGO_BIN_EXE_phasebook")).await;
    let (port, printed) = (demo.port, &demo.printed);
    let console = printed["console_url"].as_str().expect("console url");
    assert_eq!(console, format!("http://127.0.0.1:{port}/ops"));
    let broken = printed["demo_appointments"][1]["appointment_id"]
        .as_str()
        .expect("id")
        .to_string();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = http
        .get(format!("{console}/login"))
        .send()
        .await
        .expect("login page");
    let login_cookie = set_cookie(&login, "phasebook_console_login").expect("cookie");
    let login_cookie = login_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let token = console_support::csrf_token(&login.text().await.expect("html")).expect("token");
    let key = printed["ops_key"].as_str().expect("ops key");
    let response = http
        .post(format!("{console}/login"))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("api_key", key), ("csrf_token", &token)]))
        .send()
        .await
        .expect("login");
    let session = set_cookie(&response, "phasebook_console").expect("session");
    let queue = http
        .get(console)
        .header("cookie", session.split(';').next().unwrap_or_default())
        .send()
        .await
        .expect("queue")
        .text()
        .await
        .expect("html");
    let first = queue
        .split("data-appointment=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a row");
    assert_eq!(first, broken, "the demo's appointment in review is first");
    assert!(queue.contains("managed parent"));
    drop(demo);
}
