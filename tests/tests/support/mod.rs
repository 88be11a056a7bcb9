//! `setup()`: the real router on a loopback port with a fresh database (a SQLite file,
//! or a new PostgreSQL database when `DATABASE_URL` is set), a tenant with one key per
//! role, a second tenant, and a reqwest client.

#![allow(dead_code)]

use phasebook_api::auth::{self, TenantSettings};
use phasebook_api::state::AppState;
use phasebook_api::store::{Database, Role};
use phasebook_domain::{SegmentKey, ServiceId, StaffId};
use phasebook_test_support::TestDatabase;
use reqwest::{Method, RequestBuilder, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Keys {
    pub ops: String,
    pub agent: String,
    pub viewer: String,
}

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub db: Database,
    pub tenant_id: Uuid,
    pub keys: Keys,
    pub other_tenant_id: Uuid,
    pub other_ops_key: String,
    stop: CancellationToken,
    _database: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn tenant_with_keys(db: &Database, name: &str) -> (Uuid, Keys) {
    let ops = auth::create_tenant(
        db.store(),
        TenantSettings {
            name: name.into(),
            calcom_api_key: SecretString::from("cal_live_test"),
            calcom_base_url: "http://127.0.0.1:9".into(),
            calcom_team_id: None,
        },
    )
    .await
    .expect("tenant");
    let key = |role| auth::issue_api_key(db.store(), ops.tenant_id, role);
    let agent = key(Role::Agent).await.expect("agent key");
    let viewer = key(Role::Viewer).await.expect("viewer key");
    (
        ops.tenant_id,
        Keys {
            ops: ops.api_key.expose_secret().to_string(),
            agent: agent.api_key.expose_secret().to_string(),
            viewer: viewer.api_key.expose_secret().to_string(),
        },
    )
}

pub use phasebook_test_support::http_client;

/// The app on `database`, with two tenants and their keys (for
/// `phasebook_test_support::on_both_backends!(with setup; …)`). No Cal.com: these tests
/// never reach it.
pub async fn setup(database: TestDatabase) -> TestApp {
    let db = database.connect().await.expect("database");
    let (tenant_id, keys) = tenant_with_keys(&db, "Salon Aurora").await;
    let (other_tenant_id, other) = tenant_with_keys(&db, "Salon Borealis").await;
    let stop = CancellationToken::new();
    let base_url = phasebook_test_support::serve_app(AppState::new(db.clone()), stop.clone()).await;
    TestApp {
        base_url,
        client: http_client(),
        db,
        tenant_id,
        keys,
        other_tenant_id,
        other_ops_key: other.ops,
        stop,
        _database: database,
    }
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub async fn put_json(&self, path: &str, key: &str, body: &Value) -> Response {
        self.request(Method::PUT, path, Some(key))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(key))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.request(Method::GET, path, Some(key))
            .send()
            .await
            .expect("request")
    }

    /// The sample salon: the colouring service (A 30, gap 35, B 15, C 30, D 20), a cut,
    /// and two stylists.
    pub async fn define_salon(&self) {
        let colour = json!({
            "name": "Colour, cut and blow-dry",
            "segments": [
                {"key": "A", "name": "Apply colour", "duration_minutes": 30, "gap_after_minutes": 35},
                {"key": "B", "name": "Wash", "duration_minutes": 15},
                {"key": "C", "name": "Cut", "duration_minutes": 30},
                {"key": "D", "name": "Blow-dry", "duration_minutes": 20}
            ]
        });
        let response = self
            .put_json("/services/colour", &self.keys.ops, &colour)
            .await;
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
        let cut = json!({"name": "Cut", "segments": [{"key": "C", "name": "Cut", "duration_minutes": 30}]});
        assert_eq!(
            self.put_json("/services/cut", &self.keys.ops, &cut)
                .await
                .status(),
            200
        );
        for (id, user) in [("anna", 101), ("ben", 102)] {
            let staff = json!({
                "name": id.to_uppercase(),
                "calcom_user_id": user,
                "calcom_username": id,
                "time_zone": "Europe/Berlin"
            });
            let response = self
                .put_json(&format!("/staff/{id}"), &self.keys.ops, &staff)
                .await;
            assert_eq!(response.status(), 200);
        }
        // Both stylists perform both services, with a (made-up) event type per segment, so
        // the pre-flight lets their bookings through; Cal.com itself is not reached here.
        for (n, staff) in ["anna", "ben"].into_iter().enumerate() {
            for (service, keys) in [("colour", vec!["A", "B", "C", "D"]), ("cut", vec!["C"])] {
                for (k, key) in keys.into_iter().enumerate() {
                    let id = 9_000 + 100 * n as i64 + 10 * i64::from(service == "cut") + k as i64;
                    phasebook_test_support::fixtures::put_event_map(
                        &self.db,
                        self.tenant_id,
                        &ServiceId::parse(service).expect("service id"),
                        &SegmentKey::parse(key).expect("segment key"),
                        &StaffId::parse(staff).expect("staff id"),
                        id,
                        id,
                    )
                    .await
                    .expect("event map");
                }
            }
        }
    }
}

/// A booking request for the colouring service.
pub fn booking(staff: &str, start: &str) -> Value {
    json!({
        "service_id": "colour",
        "staff_id": staff,
        "start": start,
        "time_zone": "Europe/Berlin",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+4915123456789"},
        "notes": "allergic to ammonia"
    })
}

pub use phasebook_test_support::content_type;

/// Asserts a problem response and returns its document.
pub async fn problem(response: Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(content_type(&response), "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(
        body["type"],
        format!("https://phasebook.dev/problems/{kind}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}
