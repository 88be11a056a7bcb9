//! Appointments that change, through the HTTP API against the Cal.com emulator on both
//! databases: finding a caller's appointments by phone (local and international forms) or
//! e-mail (any case), and moving an appointment with `POST /appointments/{id}/reschedule`.

use std::time::Duration;

use calcom_sim::{RunningSim, Sim, SimConfig};
use chrono::{TimeDelta, Utc};
use phasebook_api::state::AppState;
use phasebook_api::store::holds::BookingSettings;
use phasebook_api::store::{Database, NewAppointment, Role};
use phasebook_api::sync::fixtures::{self, FixtureSalon};
use phasebook_api::sync::{ClientSettings, SyncConfig};
use phasebook_api::testing::TestDatabase;
use phasebook_domain::sync::RetryPolicy;
use phasebook_domain::{Customer, PlannedSegment, SegmentKey, ServiceId, StaffId};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct App {
    url: String,
    http: reqwest::Client,
    db: Database,
    salon: FixtureSalon,
    agent_key: String,
    sim: RunningSim,
    stop: CancellationToken,
    _database: TestDatabase,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn databases() -> Vec<TestDatabase> {
    let mut out = vec![TestDatabase::sqlite()];
    if let Some(pg) = TestDatabase::postgres_from_env().await {
        out.push(pg);
    }
    out
}

/// A salon in Switzerland with two stylists and a 4-segment service (30 minutes each, no
/// gaps), the worker and the API.
async fn spawn(database: TestDatabase) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = database.connect().await.expect("database");
    let segments = fixtures::segments(4, 30, 0);
    let account = fixtures::sim_account(2, &segments);
    let sim = Sim::new(SimConfig::default());
    sim.seed(account.seed.clone()).expect("seed");
    let sim = sim.spawn().await.expect("sim");
    let salon = fixtures::seed_sim_salon(&db, &sim.base_url, &account, "colour", segments)
        .await
        .expect("salon");
    db.booking()
        .set_booking_settings(
            salon.tenant_id,
            &BookingSettings {
                country: Some("CH".into()),
                horizon_days: 3650,
            },
        )
        .await
        .expect("settings");
    let agent_key = phasebook_api::auth::issue_api_key(db.store(), salon.tenant_id, Role::Agent)
        .await
        .expect("agent key")
        .api_key
        .expose_secret()
        .to_string();
    let state = AppState::new(db.clone());
    let stop = CancellationToken::new();
    state.sync.spawn_worker(
        SyncConfig {
            worker_id: "change-test".into(),
            poll_interval: Duration::from_millis(200),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
                min_delay: Duration::from_millis(5),
            },
            client: ClientSettings {
                timeout: Duration::from_millis(700),
                read_retries: 0,
                ..ClientSettings::default()
            },
            ..SyncConfig::default()
        },
        phasebook_api::sync::postgres_pool(&db),
        stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let _ = phasebook_api::app::serve(listener, state, async move {
            server_stop.cancelled().await;
        })
        .await;
    });
    App {
        url,
        http: reqwest::Client::new(),
        db,
        salon,
        agent_key,
        sim,
        stop,
        _database: database,
    }
}

impl App {
    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    /// `GET /appointments?{query}` as `key`: the ids found, in order.
    async fn find(&self, query: &str, key: &str) -> Vec<String> {
        let (status, page) = self.get(&format!("/appointments?{query}"), key).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page:#}");
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_string())
            .collect()
    }

    async fn book(&self, start: &str, staff: &str, customer: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/appointments", self.url))
            .bearer_auth(&self.salon.ops_key)
            .header("Prefer", "wait=5")
            .json(&json!({
                "service_id": "colour",
                "staff_id": staff,
                "start": start,
                "customer": customer,
            }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json")
    }

    /// An appointment that is over already, stored directly (the API refuses past starts).
    async fn book_in_the_past(&self, phone: &str, email: &str) -> String {
        let id = Uuid::now_v7();
        let start = Utc::now() - TimeDelta::days(3);
        let segments = (0..4)
            .map(|i| PlannedSegment {
                key: SegmentKey::parse(&((b'A' + i as u8) as char).to_string()).expect("key"),
                staff_id: StaffId::parse("stylist-1").expect("staff"),
                starts_at: start + TimeDelta::minutes(30 * i),
                ends_at: start + TimeDelta::minutes(30 * (i + 1)),
            })
            .collect();
        self.db
            .store()
            .create_appointment(
                &NewAppointment {
                    appointment_id: id,
                    tenant_id: self.salon.tenant_id,
                    service_id: ServiceId::parse("colour").expect("service"),
                    staff_id: StaffId::parse("stylist-1").expect("staff"),
                    time_zone: "Europe/Zurich".into(),
                    customer: Customer::new("Ada", Some(email), Some(phone)).expect("customer"),
                    notes: None,
                    segments,
                    created_at: start - TimeDelta::days(1),
                },
                None,
            )
            .await
            .expect("stored");
        id.to_string()
    }
}

#[tokio::test]
async fn a_caller_is_found_by_phone_in_any_form_and_by_email_in_any_case() {
    for database in databases().await {
        let app = spawn(database).await;
        let ada = json!({"name": "Ada", "phone": "079 123 45 67", "email": "Ada@Example.com"});
        let first = app.book("2030-01-09T09:00:00Z", "stylist-1", ada.clone()).await;
        assert_eq!(first["customer"]["phone"], "+41791234567");
        let second = app.book("2030-01-10T09:00:00Z", "stylist-2", ada).await;
        let other = json!({"name": "Grace", "phone": "+41791234568", "email": "grace@example.com"});
        app.book("2030-01-09T09:00:00Z", "stylist-2", other).await;
        let past = app
            .book_in_the_past("+41791234567", "ada@example.com")
            .await;
        let upcoming = vec![
            first["id"].as_str().expect("id").to_string(),
            second["id"].as_str().expect("id").to_string(),
        ];
        let mut everything = vec![past.clone()];
        everything.extend(upcoming.clone());

        let ops = app.salon.ops_key.clone();
        for phone in [
            "0791234567",
            "079%20123%2045%2067",
            "%2B41791234567",
            "+41791234567",
            "0041791234567",
        ] {
            assert_eq!(
                app.find(&format!("customer_phone={phone}"), &ops).await,
                everything,
                "{phone}"
            );
        }
        for email in ["ada@example.com", "ADA%40EXAMPLE.COM", "Ada@example.Com"] {
            assert_eq!(
                app.find(&format!("customer_email={email}"), &ops).await,
                everything,
                "{email}"
            );
        }
        // Combined with the other filters and the cursor.
        assert_eq!(
            app.find("customer_phone=0791234567&staff_id=stylist-2", &ops)
                .await,
            vec![upcoming[1].clone()]
        );
        let (_, page) = app
            .get("/appointments?customer_email=ada@example.com&limit=2", &ops)
            .await;
        let cursor = page["next_cursor"].as_str().expect("a second page");
        assert_eq!(
            app.find(
                &format!("customer_email=ada@example.com&limit=2&cursor={cursor}"),
                &ops
            )
            .await,
            vec![upcoming[1].clone()]
        );
        // An agent on the phone sees what the caller has coming, unless it asks for more.
        assert_eq!(
            app.find("customer_phone=0791234567", &app.agent_key).await,
            upcoming
        );
        assert_eq!(
            app.find(
                "customer_phone=0791234567&from=2000-01-01T00:00:00Z",
                &app.agent_key
            )
            .await,
            everything
        );
        let (status, problem) = app
            .get("/appointments?customer_phone=07x", &app.agent_key)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["field"], "customer_phone", "{problem:#}");
        assert!(app.sim.state().bookings.len() >= 12);
    }
}
