//! Secrets at rest, key lifecycle and the guarded API, on SQLite and (with `DATABASE_URL`)
//! PostgreSQL: the real router on loopback, the Cal.com emulator, the sync worker running.
//! A dump of the database holds no Cal.com key or webhook secret; migrating encrypts
//! plain-text rows; a rotated master key keeps the tenant syncing; revoked and expired keys
//! are refused; a flooded key gets 429s while another tenant is served; tampered or moved
//! ciphertext fails closed; every ops action lands in the audit log.

use std::process::Command;
use std::time::Duration;

use calcom_sim::SeedApiKey;
use hmac::{Hmac, Mac};
use phasebook_api::auth::{self, TenantSettings};
use phasebook_api::secrets::{self, MasterKey};
use phasebook_api::store::keys::TenantUpdate;
use phasebook_api::store::{Database, Role, StoreError};
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures::{self, FixtureSalon};
use phasebook_test_support::{ChildProcess, DemoProcess, TestApp, fast_sync_config};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Row;
use uuid::Uuid;

/// A second key of the salon owner, accepted by the emulator.
const SECOND_CALCOM_KEY: &str = "cal_test_second_key_of_the_owner";
/// The key of the second stylist, a plain member of the team.
const MEMBER_CALCOM_KEY: &str = "cal_test_key_of_a_plain_member";

/// The app, the emulator and the worker (see `phasebook_test_support::app`), with a second
/// tenant on the same emulator.
struct App {
    app: TestApp,
    other: FixtureSalon,
}

async fn setup(database: TestDatabase) -> App {
    let mut worker = fast_sync_config("secrets-test");
    worker.client.timeout = Duration::from_millis(2000);
    let seeded = TestApp::builder()
        .stylists(2)
        .segments(fixtures::segments(2, 30, 0))
        .account(|account| {
            let owner = account.staff[0].calcom_user_id;
            let member = account.staff[1].calcom_user_id;
            account.seed.api_keys.push(SeedApiKey {
                key: SECOND_CALCOM_KEY.to_string(),
                user_id: owner,
            });
            account.seed.api_keys.push(SeedApiKey {
                key: MEMBER_CALCOM_KEY.to_string(),
                user_id: member,
            });
        })
        .worker(worker)
        .seed(database)
        .await;
    let other = fixtures::seed_sim_salon(
        &seeded.db,
        &seeded.sim.base_url,
        &seeded.account,
        "colour",
        seeded.salon.segments.clone(),
    )
    .await
    .expect("other salon");
    App {
        app: seeded.serve().await,
        other,
    }
}

phasebook_test_support::deref_to!(App => app: TestApp);

impl App {
    async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, key, None).await
    }

    async fn json(&self, path: &str, key: &str) -> Value {
        let response = self.get(path, key).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    /// Books at `start` with `Prefer: wait` and returns the sync status it reached.
    async fn book_and_wait(&self, salon: &FixtureSalon, start: &str) -> String {
        let response = self
            .http
            .post(format!("{}/appointments", self.url))
            .bearer_auth(&salon.ops_key)
            .header("Prefer", "wait=10")
            .json(&json!({
                "service_id": "colour",
                "staff_id": salon.staff[0].staff_id.as_str(),
                "start": start,
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
            }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["sync"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn create_key(&self, role: &str, expires_in: Option<&str>) -> (String, String) {
        let mut body = json!({"role": role});
        if let Some(expires_in) = expires_in {
            body["expires_in"] = json!(expires_in);
        }
        let response = self
            .send(
                reqwest::Method::POST,
                "/keys",
                &self.salon.ops_key,
                Some(body),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.expect("json");
        (
            created["api_key_id"].as_str().expect("id").to_string(),
            created["api_key"].as_str().expect("key").to_string(),
        )
    }

    async fn webhook_secret(&self, tenant_id: Uuid) -> String {
        phasebook_api::sync::SyncHandle::for_database(&self.db)
            .store()
            .webhook_secret(tenant_id)
            .await
            .expect("secret")
            .expect("tenant")
    }

    async fn webhook(&self, tenant_id: Uuid, secret: &str) -> reqwest::Response {
        let raw =
            serde_json::to_vec(&json!({"triggerEvent": "PING", "payload": {}})).expect("json");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(&raw);
        self.http
            .post(format!("{}/webhooks/calcom/{tenant_id}", self.url))
            .header(
                "x-cal-signature-256",
                hex::encode(mac.finalize().into_bytes()),
            )
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("webhook")
    }
}

/// Every value of every column of every table, as text: what a dump or a backup holds.
async fn dump(db: &Database) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match db {
        Database::Postgres(s) => {
            let columns = sqlx::query(
                "select table_name::text as t, column_name::text as c from information_schema.columns
                 where table_schema = 'public'",
            )
            .fetch_all(s.pool())
            .await
            .expect("columns");
            for row in columns {
                let table: String = row.get("t");
                let column: String = row.get("c");
                let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "select \"{column}\"::text from \"{table}\""
                )))
                .fetch_all(s.pool())
                .await
                .expect("values");
                out.extend(
                    values
                        .into_iter()
                        .flatten()
                        .map(|v| (format!("{table}.{column}"), v)),
                );
            }
        }
        Database::Sqlite(s) => {
            let tables: Vec<String> =
                sqlx::query_scalar("select name from sqlite_master where type = 'table'")
                    .fetch_all(s.pool())
                    .await
                    .expect("tables");
            for table in tables {
                let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "select name from pragma_table_info('{table}')"
                )))
                .fetch_all(s.pool())
                .await
                .expect("columns")
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
                for column in columns {
                    // Bytes, since some columns hold binary (migration checksums).
                    let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
                        format!("select cast(\"{column}\" as blob) from \"{table}\""),
                    ))
                    .fetch_all(s.pool())
                    .await
                    .expect("values");
                    out.extend(values.into_iter().flatten().map(|v| {
                        (
                            format!("{table}.{column}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    }));
                }
            }
        }
    }
    out
}

fn assert_nowhere(dump: &[(String, String)], secret: &str) {
    assert!(secret.len() >= 8, "a real secret");
    for (column, value) in dump {
        assert!(
            !value.contains(secret),
            "{column} holds a secret in plain text"
        );
    }
}

async fn a_database_dump_holds_no_calcom_key_or_webhook_secret_in_plain_text(app: App) {
    assert_eq!(
        app.book_and_wait(&app.salon, "2031-03-03T10:00:00+01:00")
            .await,
        "synced"
    );
    let old_secret = app.webhook_secret(app.salon.tenant_id).await;
    phasebook_api::secrets::cli::tenant_update(
        &app.database.url,
        phasebook_api::secrets::cli::TenantUpdateArgs {
            tenant: app.salon.tenant_id,
            calcom_api_key: None,
            calcom_base_url: None,
            calcom_team_id: None,
            rotate_webhook_secret: true,
            webhook_grace: chrono::TimeDelta::hours(1),
            rate_limit: None,
            rate_burst: None,
            json: true,
        },
    )
    .await
    .expect("rotate the webhook secret");
    let new_secret = app.webhook_secret(app.salon.tenant_id).await;
    assert_ne!(old_secret, new_secret);

    let dump = dump(&app.db).await;
    assert!(dump.iter().any(|(c, _)| c == "tenants.calcom_api_key"));
    assert_nowhere(&dump, fixtures::SIM_API_KEY);
    assert_nowhere(&dump, &old_secret);
    assert_nowhere(&dump, &new_secret);
    assert_nowhere(&dump, &app.webhook_secret(app.other.tenant_id).await);
    assert_nowhere(&dump, &app.salon.ops_key);
}

async fn migrating_with_the_key_set_encrypts_plain_text_rows(app: App) {
    let legacy = Uuid::now_v7();
    let (key, secret) = (
        "cal_live_legacy_plaintext_key",
        "whsec_legacy_plaintext_secret",
    );
    match &app.db {
        Database::Postgres(s) => {
            sqlx::query(
                "insert into tenants (tenant_id, name, calcom_api_key, calcom_base_url,
                     webhook_secret) values ($1, 'Legacy', $2, 'http://127.0.0.1:9', $3)",
            )
            .bind(legacy)
            .bind(key)
            .bind(secret)
            .execute(s.pool())
            .await
            .expect("legacy row");
        }
        Database::Sqlite(s) => {
            sqlx::query(
                "insert into tenants (tenant_id, name, calcom_api_key, calcom_base_url,
                     webhook_secret, created_at) values ($1, 'Legacy', $2, 'http://127.0.0.1:9', $3, 0)",
            )
            .bind(legacy.hyphenated().to_string())
            .bind(key)
            .bind(secret)
            .execute(s.pool())
            .await
            .expect("legacy row");
        }
    }
    // Plain text is refused while a key is configured, until the migration encrypts it.
    let refused = app.db.event_maps().tenant_calcom(legacy).await;
    assert!(matches!(refused, Err(StoreError::Secret(_))), "{refused:?}");
    app.db.store().migrate().await.expect("migrate");

    let stored = app.db.keys().stored_secrets(None).await.expect("rows");
    assert!(stored.len() >= 3);
    for row in &stored {
        for value in [&row.calcom_api_key, &row.webhook_secret] {
            assert!(
                value.starts_with("pbsec:v1:"),
                "still plain: {}",
                row.tenant_id
            );
        }
    }
    let dump = dump(&app.db).await;
    assert_nowhere(&dump, key);
    assert_nowhere(&dump, secret);
    let opened = app
        .db
        .event_maps()
        .tenant_calcom(legacy)
        .await
        .expect("opens")
        .expect("tenant");
    assert_eq!(opened.api_key.expose_secret(), key);
}

async fn a_revoked_key_gets_401_within_5_seconds(app: App) {
    let (id, key) = app.create_key("agent", None).await;
    assert_eq!(app.get("/services", &key).await.status(), StatusCode::OK);
    let revoked = app
        .send(
            reqwest::Method::DELETE,
            &format!("/keys/{id}"),
            &app.salon.ops_key,
            None,
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/services", &key).await.status(),
        StatusCode::UNAUTHORIZED,
        "revoked through the API: refused at once"
    );

    // Revoked elsewhere (the command line, another replica): this process's cache forgets
    // it within its lifetime, well inside 5 s.
    let (id, key) = app.create_key("viewer", None).await;
    assert_eq!(app.get("/services", &key).await.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    app.db
        .keys()
        .revoke_api_key(
            app.salon.tenant_id,
            Uuid::parse_str(&id).expect("uuid"),
            chrono::Utc::now(),
            false,
        )
        .await
        .expect("revoke");
    loop {
        if app.get("/services", &key).await.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a revoked key still worked after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = app.json("/keys", &app.salon.ops_key).await;
    let entry = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["api_key_id"] == id.as_str())
        .expect("listed")
        .clone();
    assert!(entry["revoked_at"].is_string());
    assert!(entry.get("api_key").is_none(), "keys are never listed");
    assert!(!listed.to_string().contains(&key));
}

async fn an_expired_key_gets_401(app: App) {
    let now = chrono::Utc::now();
    let expired = auth::issue_expiring_api_key(
        app.db.store(),
        app.salon.tenant_id,
        Role::Agent,
        Some(now - chrono::TimeDelta::seconds(1)),
    )
    .await
    .expect("key");
    let valid = auth::issue_expiring_api_key(
        app.db.store(),
        app.salon.tenant_id,
        Role::Agent,
        Some(now + chrono::TimeDelta::hours(1)),
    )
    .await
    .expect("key");
    assert_eq!(
        app.get("/services", expired.api_key.expose_secret())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/services", valid.api_key.expose_secret())
            .await
            .status(),
        StatusCode::OK
    );
    let (_, in_90_days) = app.create_key("agent", Some("90d")).await;
    assert_eq!(
        app.get("/services", &in_90_days).await.status(),
        StatusCode::OK
    );
    let listed = app.json("/keys", &app.salon.ops_key).await;
    assert!(
        listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|k| k["expires_at"].is_string() && k["last_used_at"].is_string()),
        "{listed}"
    );
}

async fn flooding_one_agent_key_gets_429s_while_another_tenant_is_served(app: App) {
    let flood = auth::issue_api_key(app.db.store(), app.salon.tenant_id, Role::Agent)
        .await
        .expect("key");
    let flood = flood.api_key.expose_secret().to_string();
    let calm = auth::issue_api_key(app.db.store(), app.other.tenant_id, Role::Agent)
        .await
        .expect("key");
    let calm = calm.api_key.expose_secret().to_string();

    let started = std::time::Instant::now();
    let requests = (0..120).map(|_| app.get("/services", &flood));
    let answers = futures::future::join_all(requests).await;
    let elapsed = started.elapsed().as_secs_f64();
    let limited: Vec<_> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    let allowed = answers.len() - limited.len();
    // The default bucket: 40 at once, then 20 a second.
    assert!(
        !limited.is_empty() && allowed as f64 <= 40.0 + (20.0 * elapsed).ceil() + 1.0,
        "{allowed} allowed, {} limited in {elapsed:.2} s",
        limited.len()
    );
    let first = limited[0];
    let headers = first.headers();
    assert!(
        headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );
    assert!(
        headers["ratelimit"]
            .to_str()
            .expect("ascii")
            .contains("r=0")
    );
    assert_eq!(
        headers["ratelimit-policy"].to_str().expect("ascii"),
        "\"per-key\";q=40;w=2"
    );
    assert_eq!(
        headers["content-type"].to_str().expect("ascii"),
        "application/problem+json"
    );

    // The other tenant's key is unaffected, and probes are never limited.
    for _ in 0..10 {
        assert_eq!(app.get("/services", &calm).await.status(), StatusCode::OK);
    }
    let probes = (0..60).map(|_| app.get("/healthz", &flood));
    for answer in futures::future::join_all(probes).await {
        assert_eq!(answer.status(), StatusCode::OK);
    }

    // A tenant's own limit replaces the default.
    app.db
        .keys()
        .update_tenant(
            app.other.tenant_id,
            &TenantUpdate {
                rate_limit: Some(phasebook_api::store::keys::ApiRateLimit {
                    per_second: 1,
                    burst: 2,
                }),
                ..TenantUpdate::default()
            },
        )
        .await
        .expect("limit");
    let fresh = auth::issue_api_key(app.db.store(), app.other.tenant_id, Role::Agent)
        .await
        .expect("key");
    let fresh = fresh.api_key.expose_secret().to_string();
    let statuses: Vec<StatusCode> =
        futures::future::join_all((0..5).map(|_| app.get("/services", &fresh)))
            .await
            .iter()
            .map(|r| r.status())
            .collect();
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

async fn tampered_or_moved_ciphertext_fails_closed_with_a_clear_error(app: App) {
    let salon_row = app
        .db
        .keys()
        .stored_secrets(Some(app.salon.tenant_id))
        .await
        .expect("row")
        .pop()
        .expect("salon");
    let other_row = app
        .db
        .keys()
        .stored_secrets(Some(app.other.tenant_id))
        .await
        .expect("row")
        .pop()
        .expect("other");
    // The salon's Cal.com key ciphertext copied onto the other tenant.
    let mut moved = other_row.clone();
    moved.calcom_api_key = salon_row.calcom_api_key.clone();
    assert!(
        app.db
            .keys()
            .replace_stored_secrets(&other_row, &moved)
            .await
            .expect("swap")
    );
    let err = app
        .db
        .event_maps()
        .tenant_calcom(app.other.tenant_id)
        .await
        .expect_err("a moved ciphertext does not open");
    let message = err.to_string();
    assert!(message.contains("belongs to another tenant"), "{message}");
    assert!(message.contains("calcom_api_key"), "{message}");

    // Through HTTP: a 500 problem, the process keeps serving.
    let audit = app.get("/event-maps/audit", &app.other.ops_key).await;
    assert_eq!(audit.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.get("/healthz", "none").await.status(), StatusCode::OK);

    // One flipped character of the salon's own webhook secret.
    let mut tampered = salon_row.clone();
    let mut bytes = tampered.webhook_secret.clone().into_bytes();
    let at = bytes.len() - 3;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    tampered.webhook_secret = String::from_utf8(bytes).expect("utf-8");
    assert!(
        app.db
            .keys()
            .replace_stored_secrets(&salon_row, &tampered)
            .await
            .expect("tamper")
    );
    let err = app
        .db
        .keys()
        .webhook_secrets(app.salon.tenant_id, chrono::Utc::now())
        .await
        .expect_err("tampered");
    assert!(err.to_string().contains("altered"), "{err}");
    let refused = app.webhook(app.salon.tenant_id, "anything").await;
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !refused.text().await.expect("body").contains("pbsec"),
        "no ciphertext in an error"
    );
}

async fn the_audit_log_records_each_ops_action(app: App) {
    let app = &app;
    let ops = &app.salon.ops_key;
    let put =
        |path: &'static str, body: Value| app.send(reqwest::Method::PUT, path, ops, Some(body));
    assert!(
        put(
            "/services/cut",
            json!({"name": "Cut", "segments": [{"key": "A", "name": "Cut", "duration_minutes": 30, "gap_after_minutes": 0}]})
        )
        .await
        .status()
        .is_success()
    );
    let staff = &app.salon.staff[1];
    assert!(
        put(
            "/staff/stylist-2",
            json!({"name": "Ben", "calcom_user_id": staff.calcom_user_id, "calcom_username": staff.calcom_username, "time_zone": "Europe/Berlin"})
        )
        .await
        .status()
        .is_success()
    );
    let map = put(
        "/event-maps/colour/A/stylist-2",
        // The second stylist's own event type for segment A (see `fixtures::sim_account`).
        json!({"event_type_id": 10201}),
    )
    .await;
    assert!(
        map.status().is_success(),
        "{}",
        map.text().await.unwrap_or_default()
    );
    assert_eq!(
        app.book_and_wait(&app.salon, "2031-03-04T10:00:00+01:00")
            .await,
        "synced"
    );
    let listed: Value = app.json("/appointments", ops).await;
    let id = listed["items"][0]["id"].as_str().expect("id").to_string();
    let resync = app
        .send(reqwest::Method::POST, &format!("/resync/{id}"), ops, None)
        .await;
    assert_eq!(resync.status(), StatusCode::ACCEPTED);
    let cancel = app
        .send(
            reqwest::Method::POST,
            &format!("/appointments/{id}/cancel"),
            ops,
            Some(json!({})),
        )
        .await;
    assert!(cancel.status().is_success());
    let (key_id, key) = app.create_key("agent", None).await;
    let revoke = app
        .send(
            reqwest::Method::DELETE,
            &format!("/keys/{key_id}"),
            ops,
            None,
        )
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);

    let log = app.json("/audit-log", ops).await;
    let items = log["items"].as_array().expect("items");
    let ops_key_id = app
        .db
        .keys()
        .list_api_keys(app.salon.tenant_id)
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.role == Role::Ops)
        .expect("ops key")
        .api_key_id;
    let find = |action: &str| {
        items
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {log}"))
    };
    assert_eq!(find("put service")["target"], "/services/cut");
    assert_eq!(find("put staff")["target"], "/staff/stylist-2");
    assert_eq!(
        find("put event map")["target"],
        "/event-maps/colour/A/stylist-2"
    );
    assert_eq!(find("resync")["target"], format!("/resync/{id}"));
    assert_eq!(
        find("cancel appointment")["target"],
        format!("/appointments/{id}/cancel")
    );
    assert_eq!(
        find("create key")["target"],
        format!("key {key_id} (agent)")
    );
    assert_eq!(find("revoke key")["target"], format!("key {key_id}"));
    for entry in items {
        assert_eq!(entry["api_key_id"], ops_key_id.to_string());
        assert!(entry["created_at"].is_string());
    }
    assert!(
        !log.to_string().contains(&key),
        "no secret in the audit log"
    );
    assert!(!log.to_string().contains(ops.as_str()));

    // The command line is recorded too, with no key.
    phasebook_api::secrets::cli::key_revoke(
        &app.database.url,
        phasebook_api::secrets::cli::KeyRevokeArgs {
            tenant: app.salon.tenant_id,
            key: app
                .create_key("viewer", None)
                .await
                .0
                .parse()
                .expect("uuid"),
            json: true,
        },
    )
    .await
    .expect("revoke from the command line");
    let log = app.json("/audit-log?limit=1", ops).await;
    assert_eq!(log["items"][0]["action"], "revoke key");
    assert!(log["items"][0]["api_key_id"].is_null());

    // Other tenants never see it; agents may not read it.
    let other = app.json("/audit-log", &app.other.ops_key).await;
    assert!(other["items"].as_array().expect("items").is_empty());
    let (_, agent) = app.create_key("agent", None).await;
    assert_eq!(
        app.get("/audit-log", &agent).await.status(),
        StatusCode::FORBIDDEN
    );
}

async fn an_ops_key_cannot_revoke_the_last_ops_key(app: App) {
    let ops = &app.salon.ops_key;
    let keys = app.json("/keys", ops).await;
    let own = keys["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["role"] == "ops")
        .expect("ops")["api_key_id"]
        .as_str()
        .expect("id")
        .to_string();
    let refused = app
        .send(reqwest::Method::DELETE, &format!("/keys/{own}"), ops, None)
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(
        problem["type"],
        "https://phasebook.dev/problems/last-ops-key"
    );
    assert_eq!(app.get("/keys", ops).await.status(), StatusCode::OK);

    let (_, second) = app.create_key("ops", None).await;
    let revoked = app
        .send(
            reqwest::Method::DELETE,
            &format!("/keys/{own}"),
            &second,
            None,
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/keys", ops).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let other_tenant = app
        .send(
            reqwest::Method::DELETE,
            &format!("/keys/{}", Uuid::now_v7()),
            &second,
            None,
        )
        .await;
    assert_eq!(other_tenant.status(), StatusCode::NOT_FOUND);
}

async fn webhooks_answer_alike_for_an_unknown_tenant_and_a_bad_signature(app: App) {
    let secret = app.webhook_secret(app.salon.tenant_id).await;
    assert_eq!(
        app.webhook(app.salon.tenant_id, &secret).await.status(),
        StatusCode::OK
    );
    let bad = app.webhook(app.salon.tenant_id, "whsec_wrong").await;
    let unknown = app.webhook(Uuid::now_v7(), &secret).await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.text().await.expect("body"),
        unknown.text().await.expect("body")
    );

    // A rotated secret: both are accepted during the grace period, the old one not after.
    let rotate = |grace: chrono::TimeDelta| {
        phasebook_api::secrets::cli::tenant_update(
            &app.database.url,
            phasebook_api::secrets::cli::TenantUpdateArgs {
                tenant: app.salon.tenant_id,
                calcom_api_key: None,
                calcom_base_url: None,
                calcom_team_id: None,
                rotate_webhook_secret: true,
                webhook_grace: grace,
                rate_limit: None,
                rate_burst: None,
                json: true,
            },
        )
    };
    rotate(chrono::TimeDelta::hours(1)).await.expect("rotate");
    let new = app.webhook_secret(app.salon.tenant_id).await;
    assert_eq!(
        app.webhook(app.salon.tenant_id, &new).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.webhook(app.salon.tenant_id, &secret).await.status(),
        StatusCode::OK,
        "the old secret during its grace period"
    );
    // A grace period that has ended: only the newest secret is accepted.
    rotate(chrono::TimeDelta::seconds(-1))
        .await
        .expect("rotate again");
    let newest = app.webhook_secret(app.salon.tenant_id).await;
    assert_eq!(
        app.webhook(app.salon.tenant_id, &new).await.status(),
        StatusCode::UNAUTHORIZED,
        "after its grace period"
    );
    assert_eq!(
        app.webhook(app.salon.tenant_id, &newest).await.status(),
        StatusCode::OK
    );
}

async fn a_replaced_calcom_key_is_checked_with_calcom_and_then_used(app: App) {
    let update = |key: &str| {
        phasebook_api::secrets::cli::tenant_update(
            &app.database.url,
            phasebook_api::secrets::cli::TenantUpdateArgs {
                tenant: app.salon.tenant_id,
                calcom_api_key: Some(key.to_string()),
                calcom_base_url: None,
                calcom_team_id: None,
                rotate_webhook_secret: false,
                webhook_grace: chrono::TimeDelta::hours(24),
                rate_limit: None,
                rate_burst: None,
                json: true,
            },
        )
    };
    let err = update("cal_not_a_key_cal_com_knows")
        .await
        .expect_err("refused by Cal.com");
    assert!(
        !format!("{err:#}").contains("cal_not_a_key_cal_com_knows"),
        "no key in an error: {err:#}"
    );
    let unchanged = app
        .db
        .event_maps()
        .tenant_calcom(app.salon.tenant_id)
        .await
        .expect("tenant")
        .expect("exists");
    assert_eq!(unchanged.api_key.expose_secret(), fixtures::SIM_API_KEY);

    update(SECOND_CALCOM_KEY).await.expect("accepted");
    let replaced = app
        .db
        .event_maps()
        .tenant_calcom(app.salon.tenant_id)
        .await
        .expect("tenant")
        .expect("exists");
    assert_eq!(replaced.api_key.expose_secret(), SECOND_CALCOM_KEY);
    assert_eq!(
        app.book_and_wait(&app.salon, "2031-03-05T10:00:00+01:00")
            .await,
        "synced"
    );
    assert_nowhere(&dump(&app.db).await, SECOND_CALCOM_KEY);
}

async fn metrics_labels_stay_bounded_for_invented_methods_and_paths(app: App) {
    for method in ["FUZZA1", "FUZZB2", "FUZZC3"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let _ = app.send(method, "/healthz", "none", None).await;
    }
    for n in 0..3 {
        let _ = app.get(&format!("/no/such/path/{n}"), "none").await;
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains("FUZZ"), "invented methods are not labels");
    assert!(
        !metrics.contains("/no/such/path"),
        "raw paths are not labels"
    );
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(metrics.contains("route=\"unmatched\""));
}

async fn rotating_the_master_key_keeps_the_tenant_syncing_during_and_after(app: App) {
    assert_eq!(
        app.book_and_wait(&app.salon, "2031-04-01T10:00:00+02:00")
            .await,
        "synced",
        "before"
    );
    let old_id = secrets::current().primary_id().expect("key").to_string();
    let (new_key, new_text) = MasterKey::generate();
    let new_id = new_key.id().to_string();
    let key_file = std::env::temp_dir().join(format!("phasebook-key-{}", Uuid::now_v7()));
    std::fs::write(&key_file, new_text.expose_secret()).expect("key file");

    // Step 1 of the runbook: serving processes learn the new key (this test process keeps
    // the old one as primary, so every other test in it is unaffected).
    secrets::install_decrypt_key(MasterKey::parse(new_text.expose_secret()).expect("parse"));
    // Step 2: `phasebook secrets rotate --new-key-file F`.
    phasebook_api::secrets::cli::run(
        &app.database.url,
        phasebook_api::secrets::cli::SecretsCommand::Rotate(
            phasebook_api::secrets::cli::RotateArgs {
                new_key_file: key_file.clone(),
                json: true,
            },
        ),
    )
    .await
    .expect("rotate");
    let _ = std::fs::remove_file(&key_file);
    let usage = secrets::rotation::key_usage(app.db.keys())
        .await
        .expect("usage");
    assert_eq!(usage.keys().collect::<Vec<_>>(), vec![&new_id], "{usage:?}");
    assert_ne!(old_id, new_id);
    assert_eq!(
        app.book_and_wait(&app.salon, "2031-04-02T10:00:00+02:00")
            .await,
        "synced",
        "during: the running process opens the new ciphertexts"
    );
    let log = app.json("/audit-log", &app.salon.ops_key).await;
    assert!(
        log["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["action"] == "rotate secrets"
                && e["target"] == format!("master key {new_id}")),
        "{log}"
    );

    // After: a process that knows only the new key serves and syncs.
    app.stop.cancel();
    // The binary serves with the new key only; this test process holds the sim and the
    // tenant.
    let phasebook =
        phasebook_test_support::phasebook(env!("CARGO_BIN_EXE_phasebook"), &app.database.url);
    let serving = ChildProcess::build("phasebook-rotated", phasebook)
        .env("PHASEBOOK_SECRET_KEY", new_text.expose_secret())
        .arg("serve")
        .listen("--listen")
        .healthy_at("/healthz")
        .start()
        .await;
    let url = serving.base_url();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/appointments"))
        .bearer_auth(&app.salon.ops_key)
        .header("Prefer", "wait=10")
        .json(&json!({
            "service_id": "colour",
            "staff_id": app.salon.staff[0].staff_id.as_str(),
            "start": "2031-04-03T10:00:00+02:00",
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["sync"]["status"], "synced", "after: {body}");
    let active = app
        .sim
        .state()
        .bookings
        .iter()
        .filter(|b| b.status == calcom_sim::BookingStatus::Accepted)
        .count();
    assert_eq!(active, 3 * 2, "three appointments of two segments each");
}

async fn serve_refuses_to_start_without_the_master_key(app: App) {
    let output = Command::new(env!("CARGO_BIN_EXE_phasebook"))
        .env("PHASEBOOK_DATABASE_URL", &app.database.url)
        .env_remove("PHASEBOOK_SECRET_KEY")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no master"), "{stderr}");
    assert!(stderr.contains("PHASEBOOK_SECRET_KEY"), "{stderr}");

    let wrong = MasterKey::generate().1;
    let output = Command::new(env!("CARGO_BIN_EXE_phasebook"))
        .env("PHASEBOOK_DATABASE_URL", &app.database.url)
        .env("PHASEBOOK_SECRET_KEY", wrong.expose_secret())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not configured"), "{stderr}");
    assert!(!stderr.contains(wrong.expose_secret()));
    assert!(!stderr.contains(fixtures::SIM_API_KEY));
}

async fn tenant_settings_for(app: &App) -> TenantSettings {
    TenantSettings {
        name: "Salon Cygnus".into(),
        calcom_api_key: SecretString::from(fixtures::SIM_API_KEY),
        calcom_base_url: app.sim.base_url.clone(),
        calcom_team_id: Some(fixtures::SIM_TEAM_ID),
    }
}

async fn the_command_line_lists_and_revokes_keys_without_showing_them(app: App) {
    let created = auth::create_tenant(app.db.store(), tenant_settings_for(&app).await)
        .await
        .expect("tenant");
    let output = Command::new(env!("CARGO_BIN_EXE_phasebook"))
        .env("PHASEBOOK_DATABASE_URL", &app.database.url)
        .env("PHASEBOOK_SECRET_KEY", phasebook_test_support::secret_key())
        .args([
            "key",
            "list",
            "--tenant",
            &created.tenant_id.to_string(),
            "--json",
        ])
        .output()
        .expect("key list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(!stdout.contains(created.api_key.expose_secret()));
    let listed: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(listed["keys"][0]["role"], "ops");
    assert!(
        listed["keys"][0]["key_prefix"]
            .as_str()
            .expect("prefix")
            .starts_with("pb_live_")
    );
}

async fn doctor_warns_when_the_calcom_key_belongs_to_a_plain_team_member(app: App) {
    let member = auth::create_tenant(
        app.db.store(),
        TenantSettings {
            calcom_api_key: SecretString::from(MEMBER_CALCOM_KEY),
            ..tenant_settings_for(&app).await
        },
    )
    .await
    .expect("tenant");
    let doctor = |tenant: Uuid| {
        let db = app.db.clone();
        async move {
            let mut out = Vec::new();
            phasebook_api::event_maps::cli::doctor(
                &db,
                &phasebook_api::event_maps::cli::DoctorArgs {
                    tenant: Some(tenant),
                    json: true,
                },
                &mut out,
            )
            .await
            .expect("doctor");
            serde_json::from_slice::<Value>(&out).expect("json")
        }
    };
    let report = doctor(member.tenant_id).await;
    let warning = report["tenants"][0]["calcom_key_warnings"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no warning: {report}"));
    assert!(warning.contains("plain MEMBER"), "{warning}");
    assert!(warning.contains("stylist-2"), "{warning}");
    assert!(!report.to_string().contains(MEMBER_CALCOM_KEY));

    let owner = doctor(app.salon.tenant_id).await;
    assert!(
        owner["tenants"][0].get("calcom_key_warnings").is_none(),
        "the owner's key sees every booking: {owner}"
    );
}

phasebook_test_support::on_both_backends!(with setup;
    doctor_warns_when_the_calcom_key_belongs_to_a_plain_team_member,
    a_database_dump_holds_no_calcom_key_or_webhook_secret_in_plain_text,
    migrating_with_the_key_set_encrypts_plain_text_rows,
    a_revoked_key_gets_401_within_5_seconds,
    an_expired_key_gets_401,
    flooding_one_agent_key_gets_429s_while_another_tenant_is_served,
    tampered_or_moved_ciphertext_fails_closed_with_a_clear_error,
    the_audit_log_records_each_ops_action,
    an_ops_key_cannot_revoke_the_last_ops_key,
    webhooks_answer_alike_for_an_unknown_tenant_and_a_bad_signature,
    a_replaced_calcom_key_is_checked_with_calcom_and_then_used,
    metrics_labels_stay_bounded_for_invented_methods_and_paths,
    rotating_the_master_key_keeps_the_tenant_syncing_during_and_after,
    serve_refuses_to_start_without_the_master_key,
    the_command_line_lists_and_revokes_keys_without_showing_them,
);

/// The demo's own database, read while it serves: the sample salon's Cal.com key
/// (`cal_live_demo_salon`) and its webhook secret (`whsec_…`) are nowhere in plain text.
#[tokio::test]
async fn the_demo_database_holds_no_calcom_key_or_webhook_secret_in_plain_text() {
    let demo = DemoProcess::start(env!("CARGO_BIN_EXE_phasebook")).await;
    let (file, printed) = (&demo.db, &demo.printed);
    assert_eq!(printed["demo_appointments"][0]["sync"]["status"], "synced");

    let db = Database::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open the demo database");
    let dump = dump(&db).await;
    assert!(
        dump.iter()
            .any(|(c, v)| c == "tenants.calcom_api_key" && v.starts_with("pbsec:v1:"))
    );
    assert_nowhere(&dump, "cal_live_demo_salon");
    for (column, value) in &dump {
        assert!(
            !value.contains("whsec_"),
            "{column} holds a webhook secret in plain text"
        );
    }
    db.close().await;
    drop(demo);
}
