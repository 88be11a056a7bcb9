//! Appointments that change, through the HTTP API against the Cal.com emulator on both
//! databases: finding a caller's appointments by phone (local and international forms) or
//! e-mail (any case), and moving an appointment with `POST /appointments/{id}/reschedule`.

use std::time::Duration;

use calcom_sim::{Faults, RouteFaults};
use chrono::{TimeDelta, Utc};
use phasebook_api::store::holds::BookingSettings;
use phasebook_api::store::{NewAppointment, Role};
use phasebook_domain::sync::RetryPolicy;
use phasebook_domain::{Customer, PlannedSegment, SegmentKey, ServiceId, StaffId};
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use phasebook_test_support::{TestApp, databases, fast_sync_config, faulty_sim};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

/// The app, the emulator and the worker (see `phasebook_test_support::app`), and an agent
/// key of the salon.
struct App {
    app: TestApp,
    agent_key: String,
}

/// A salon in Switzerland with two stylists and a 4-segment service (30 minutes each, no
/// gaps), the worker and the API.
async fn spawn(database: TestDatabase) -> App {
    let retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        min_delay: Duration::from_millis(5),
    };
    spawn_with(database, 2, Faults::default(), retry).await
}

/// The same with `stylists` stylists, the emulator's `faults`, and the worker's `retry`.
async fn spawn_with(
    database: TestDatabase,
    stylists: usize,
    faults: Faults,
    retry: RetryPolicy,
) -> App {
    spawn_waiting(database, stylists, faults, retry, None).await
}

/// [`spawn_with`], the worker giving up on a Cal.com call after `call_timeout` when set.
async fn spawn_waiting(
    database: TestDatabase,
    stylists: usize,
    faults: Faults,
    retry: RetryPolicy,
    call_timeout: Option<Duration>,
) -> App {
    let mut worker = fast_sync_config("change-test");
    worker.retry = retry;
    if let Some(timeout) = call_timeout {
        worker.client.timeout = timeout;
    }
    worker.client.rate_limit = calcom_client::RateLimit {
        requests: 1_000_000,
        per: Duration::from_secs(60),
    };
    let seeded = TestApp::builder()
        .stylists(stylists)
        // Cal.com's throttler with a one-second block: a 429 pauses the client that long.
        .sim(faulty_sim(faults))
        // The soak sends many requests a second; the per-key limit is not what it is about.
        .request_limit(1_000_000)
        .worker(worker)
        .seed(database)
        .await;
    seeded
        .db
        .booking()
        .set_booking_settings(
            seeded.salon.tenant_id,
            &BookingSettings {
                country: Some("CH".into()),
                horizon_days: 3650,
            },
        )
        .await
        .expect("settings");
    let agent_key =
        phasebook_api::auth::issue_api_key(seeded.db.store(), seeded.salon.tenant_id, Role::Agent)
            .await
            .expect("agent key")
            .api_key
            .expose_secret()
            .to_string();
    App {
        app: seeded.serve().await,
        agent_key,
    }
}

phasebook_test_support::deref_to!(App => app: TestApp);

impl App {
    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let response = self.send(reqwest::Method::GET, path, key, None).await;
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
                    awaited: false,
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
        let first = app
            .book("2030-01-09T09:00:00Z", "stylist-1", ada.clone())
            .await;
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

impl App {
    async fn reschedule(&self, id: &str, body: Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/appointments/{id}/reschedule", self.url))
            .bearer_auth(&self.agent_key)
            .header("Prefer", "wait=5")
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request")
    }

    /// Polls the sync view until the appointment is synced with its job done.
    async fn synced(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, view) = self
                .get(&format!("/appointments/{id}/sync"), &self.salon.ops_key)
                .await;
            let settled = view["status"] == "synced" && view["job_state"] == "done";
            if settled || tokio::time::Instant::now() > deadline {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The appointment's active Cal.com bookings as (segment, event type, start), by segment.
    fn active_bookings(&self, id: &str) -> Vec<(String, i64, String)> {
        let mut out: Vec<(String, i64, String)> = self
            .sim
            .state()
            .bookings
            .iter()
            .filter(|b| b.status != calcom_sim::BookingStatus::Cancelled)
            .filter(|b| b.metadata.get("phasebook_appointment") == Some(&json!(id)))
            .map(|b| {
                (
                    b.metadata["phasebook_segment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    b.event_type_id.unwrap_or_default(),
                    b.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// The event type the fixture salon maps `segment` (0-based) of `stylist` (1-based) to.
fn event_type(stylist: i64, segment: i64) -> i64 {
    10_000 + 100 * stylist + segment + 1
}

#[tokio::test]
async fn moving_by_fifteen_minutes_reschedules_each_booking_once_in_calcom() {
    for database in databases().await {
        let app = spawn(database).await;
        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        let booked = app.book("2030-02-04T09:00:00Z", "stylist-1", ada).await;
        let id = booked["id"].as_str().expect("id").to_string();
        app.synced(&id).await;
        let old_uids: Vec<String> = app
            .sim
            .state()
            .bookings
            .iter()
            .map(|b| b.uid.clone())
            .collect();

        // Overlaps its own current time: that is no conflict.
        let moved = app
            .reschedule(
                &id,
                json!({"start": "2030-02-04T09:15:00Z"}),
                Some("move-1"),
            )
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        let body: Value = moved.json().await.expect("json");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["revision"], 1);
        assert_eq!(body["starts_at"], "2030-02-04T09:15:00Z");
        let view = app.synced(&id).await;
        assert_eq!(view["status"], "synced", "{view:#}");
        let expected: Vec<(String, i64, String)> = ["A", "B", "C", "D"]
            .iter()
            .enumerate()
            .map(|(i, key)| {
                (
                    key.to_string(),
                    event_type(1, i as i64),
                    format!(
                        "2030-02-04T{:02}:{:02}:00Z",
                        9 + (15 + 30 * i) / 60,
                        (15 + 30 * i) % 60
                    ),
                )
            })
            .collect();
        assert_eq!(app.active_bookings(&id), expected);
        // Each one moved by Cal.com's reschedule: the attempt names both uids.
        let moves: Vec<&Value> = view["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .filter(|a| a["operation"] == "reschedule" && a["outcome"] == "rescheduled")
            .collect();
        assert_eq!(moves.len(), 4, "{view:#}");
        for attempt in moves {
            assert!(
                old_uids.contains(&attempt["moved_from_uid"].as_str().expect("old").to_string())
            );
            assert!(
                !old_uids.contains(
                    &attempt["calcom_booking_uid"]
                        .as_str()
                        .expect("new")
                        .to_string()
                )
            );
        }
        for segment in view["segments"].as_array().expect("segments") {
            assert!(segment["moving_from"].is_null(), "{segment:#}");
        }

        // The same request again is answered from the key, and moves nothing.
        let replay = app
            .reschedule(
                &id,
                json!({"start": "2030-02-04T09:15:00Z"}),
                Some("move-1"),
            )
            .await;
        assert_eq!(replay.status(), StatusCode::OK);
        assert_eq!(
            replay
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.as_bytes()),
            Some(&b"true"[..])
        );
        let again: Value = replay.json().await.expect("json");
        assert_eq!(again["revision"], 1);
        assert_eq!(app.sim.state().bookings.len(), 8, "4 old, 4 new");
    }
}

#[tokio::test]
async fn a_taken_time_is_refused_and_a_new_stylist_gets_new_bookings() {
    for database in databases().await {
        let app = spawn(database).await;
        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        let first = app
            .book("2030-02-05T09:00:00Z", "stylist-1", ada.clone())
            .await;
        let other = app
            .book("2030-02-05T13:00:00Z", "stylist-1", ada.clone())
            .await;
        let id = first["id"].as_str().expect("id").to_string();
        app.synced(&id).await;

        let taken = app
            .reschedule(&id, json!({"start": "2030-02-05T12:30:00Z"}), None)
            .await;
        assert_eq!(taken.status(), StatusCode::CONFLICT);
        let problem: Value = taken.json().await.expect("json");
        assert_eq!(
            problem["conflicting_appointment_id"], other["id"],
            "{problem:#}"
        );

        // Another stylist at the taken time: Cal.com cannot change a host, so the old
        // bookings are cancelled and new ones made on the new stylist's event types.
        let moved = app
            .reschedule(
                &id,
                json!({"start": "2030-02-05T13:00:00Z", "staff_id": "stylist-2"}),
                None,
            )
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        let view = app.synced(&id).await;
        assert_eq!(view["status"], "synced", "{view:#}");
        let active = app.active_bookings(&id);
        assert_eq!(active.len(), 4, "{active:?}");
        for (i, (_, event_type_id, start)) in active.iter().enumerate() {
            assert_eq!(*event_type_id, event_type(2, i as i64));
            assert!(start.starts_with("2030-02-05T13:") || start.starts_with("2030-02-05T14:"));
        }
        let ops: Vec<&str> = view["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .filter_map(|a| a["operation"].as_str())
            .collect();
        assert_eq!(
            ops.iter().filter(|o| **o == "cancel_moved").count(),
            4,
            "{ops:?}"
        );

        // Cancelled or started appointments stay where they are, with their own problem.
        let cancelled = app
            .http
            .post(format!("{}/appointments/{id}/cancel", app.url))
            .bearer_auth(&app.agent_key)
            .send()
            .await
            .expect("cancel");
        assert_eq!(cancelled.status(), StatusCode::OK);
        let refused = app
            .reschedule(&id, json!({"start": "2030-02-06T09:00:00Z"}), None)
            .await;
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        let problem: Value = refused.json().await.expect("json");
        assert!(
            problem["type"]
                .as_str()
                .expect("type")
                .ends_with("appointment-cancelled"),
            "{problem:#}"
        );
        let past = app
            .book_in_the_past("+41791234567", "ada@example.com")
            .await;
        let refused = app
            .reschedule(&past, json!({"start": "2030-02-06T09:00:00Z"}), None)
            .await;
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        let problem: Value = refused.json().await.expect("json");
        assert!(
            problem["type"]
                .as_str()
                .expect("type")
                .ends_with("appointment-started"),
            "{problem:#}"
        );
    }
}

/// Faults on every booking route the moves use: 5xx, hangs (the client gives up after
/// 700 ms), answers lost after the work was done, and 429s.
fn soak_faults() -> Faults {
    let faults = RouteFaults {
        error_rate: 0.04,
        hang_rate: 0.02,
        lost_response_rate: 0.05,
        rate_limited_rate: 0.04,
        ..RouteFaults::default()
    };
    let mut all = Faults::default().with_seed(1111);
    for route in [
        "bookings.create",
        "bookings.reschedule",
        "bookings.cancel",
        "bookings.list",
    ] {
        all = all.route(route, faults.clone());
    }
    all
}

/// `SOAK_APPOINTMENTS` sets the size (default 300 appointments, about a minute per
/// database; a smaller number for a quick local run).
fn soak_size() -> usize {
    std::env::var("SOAK_APPOINTMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_every_moved_segment_ends_with_one_booking_at_its_new_time() {
    use futures::StreamExt;
    use phasebook_api::sync::SyncHandle;
    use phasebook_domain::sync::AppointmentSyncStatus;

    const STYLISTS: usize = 4;
    let appointments = soak_size();
    for database in databases().await {
        let label = database.url.split(':').next().unwrap_or("db").to_string();
        let started = std::time::Instant::now();
        // Retries a few hundred milliseconds apart, as in production (seconds there): a
        // move waits for a running sync, and needs the gap between two runs to go in.
        let retry = RetryPolicy {
            max_attempts: 12,
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(1000),
            min_delay: Duration::from_millis(200),
        };
        let app = spawn_with(database, STYLISTS, soak_faults(), retry).await;
        let base = chrono::DateTime::parse_from_rfc3339("2030-04-01T06:00:00Z")
            .expect("base")
            .with_timezone(&Utc);
        let mut ids = Vec::new();
        for n in 0..appointments {
            let staff = StaffId::parse(&format!("stylist-{}", n % STYLISTS + 1)).expect("staff");
            let start = base + TimeDelta::hours(3 * (n / STYLISTS) as i64);
            ids.push(
                fixtures::book(&app.db, &app.salon, &staff, start)
                    .await
                    .expect("book"),
            );
        }
        app.db.store().ping().await.expect("ping");
        // Let the first syncs get going, so moves meet running ones.
        tokio::time::sleep(Duration::from_millis(300)).await;

        // One in three moves: every sixth to another stylist (60 days on), the others 15
        // minutes later;
        // every ninth moves a second time, 120 days on; every tenth (from the fifth) is
        // cancelled by the caller.
        let app = &app;
        let moves = futures::stream::iter(ids.iter().enumerate())
            .map(|(n, id)| async move {
                let id = id.to_string();
                let mut moved = 0;
                let mut staff_changes = 0;
                if n.is_multiple_of(3) {
                    let stylist = n % STYLISTS + 1;
                    let start = base + TimeDelta::hours(3 * (n / STYLISTS) as i64);
                    let body = if n.is_multiple_of(6) {
                        // Into a week nobody else books, so the other stylist is free.
                        staff_changes += 1;
                        json!({
                            "start": (start + TimeDelta::days(60)).to_rfc3339(),
                            "staff_id": format!("stylist-{}", stylist % STYLISTS + 1),
                        })
                    } else {
                        json!({"start": (start + TimeDelta::minutes(15)).to_rfc3339()})
                    };
                    app.move_until_done(&id, body, &format!("soak-{n}-1")).await;
                    moved += 1;
                    if n.is_multiple_of(9) {
                        let body = json!({"start": (start + TimeDelta::days(120)).to_rfc3339()});
                        app.move_until_done(&id, body, &format!("soak-{n}-2")).await;
                        moved += 1;
                    }
                }
                if n % 10 == 5 {
                    let cancelled = app
                        .http
                        .post(format!("{}/appointments/{id}/cancel", app.url))
                        .bearer_auth(&app.agent_key)
                        .json(&json!({"reason": "Caller cancelled during the soak"}))
                        .send()
                        .await
                        .expect("cancel");
                    assert_eq!(cancelled.status(), StatusCode::OK);
                }
                (moved, staff_changes)
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        let moves_took = started.elapsed().as_secs_f64();
        let moved: usize = moves.iter().map(|m| m.0).sum();
        let staff_changes: usize = moves.iter().map(|m| m.1).sum();

        let handle = SyncHandle::for_database(&app.db);
        // A bound on liveness, not on speed: on a loaded machine (CI runs suites beside
        // builds) 1,200 segments with injected faults and 429 pauses can take minutes.
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while handle
            .store()
            .outstanding_jobs(Utc::now())
            .await
            .expect("outstanding")
            .0
            > 0
        {
            if std::time::Instant::now() > deadline {
                for id in &ids {
                    let view = handle
                        .store()
                        .sync_view(app.salon.tenant_id, *id)
                        .await
                        .expect("view")
                        .expect("exists");
                    if view.job_state.as_deref() != Some("done") {
                        panic!("{label}: jobs still outstanding, e.g. {view:#?}");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut views = Vec::new();
        let mut reviews = 0;
        for id in &ids {
            let view = handle
                .store()
                .sync_view(app.salon.tenant_id, *id)
                .await
                .expect("view")
                .expect("exists");
            match view.status {
                AppointmentSyncStatus::Synced | AppointmentSyncStatus::Cancelled => {}
                AppointmentSyncStatus::NeedsReview => {
                    reviews += 1;
                    let reason = view.review_reason.as_deref().unwrap_or_default();
                    assert!(reason.contains("POST /resync/"), "{label}: {reason}");
                }
                other => panic!("{label}: appointment {id} ended {other}: {view:#?}"),
            }
            views.push(view);
        }
        let calcom = app.sim.state();
        let counted = fixtures::check_exactly_once(&views, &calcom).unwrap_or_else(|broken| {
            let named = views
                .iter()
                .find(|v| broken.contains(&v.appointment_id.to_string()));
            panic!("{label}: {broken}\n{named:#?}")
        });
        fixtures::check_current_times(&views, &calcom)
            .unwrap_or_else(|broken| panic!("{label}: {broken}"));
        let rescheduled = views
            .iter()
            .flat_map(|v| &v.attempts)
            .filter(|a| a.operation == "reschedule" && a.outcome.as_deref() == Some("rescheduled"))
            .count();
        println!(
            "reschedule soak on {label}: {appointments} appointments x 4 segments, {moved} moves \
             ({staff_changes} to another stylist), {} synced segments, {} bookings moved away \
             ({rescheduled} by Cal.com's reschedule), {} cancelled, {reviews} in review, moves sent by \
             {moves_took:.1} s, settled in {:.1} s",
            counted.synced_segments,
            counted.moved_bookings,
            counted.cancelled_bookings,
            started.elapsed().as_secs_f64()
        );
        app.sim.sim.set_faults(Faults::default());
    }
}

impl App {
    /// Sends a move until it is answered 200: a 503 (the appointment's sync kept running)
    /// or a lost answer is retried with the same key, so the move happens once.
    async fn move_until_done(&self, id: &str, body: Value, key: &str) {
        for _ in 0..20 {
            let response = self
                .http
                .post(format!("{}/appointments/{id}/reschedule", self.url))
                .bearer_auth(&self.agent_key)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .expect("request");
            match response.status() {
                StatusCode::OK => return,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::CONFLICT => {
                    let problem: Value = response.json().await.expect("json");
                    let retry = problem["type"].as_str().is_some_and(|t| {
                        t.ends_with("sync-in-progress") || t.ends_with("idempotency-key-in-flight")
                    });
                    assert!(retry, "move {key}: {problem:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!(
                    "move {key}: {other}: {}",
                    response.text().await.unwrap_or_default()
                ),
            }
        }
        panic!("move {key} never went through");
    }
}

#[tokio::test]
async fn calcoms_echo_of_our_own_move_does_not_flag_the_appointment() {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    for database in databases().await {
        let app = spawn(database).await;
        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        let booked = app.book("2030-02-07T09:00:00Z", "stylist-1", ada).await;
        let id = booked["id"].as_str().expect("id").to_string();
        let old_uid = booked["segments"][0]["calcom_booking_uid"]
            .as_str()
            .expect("uid")
            .to_string();
        let moved = app
            .reschedule(&id, json!({"start": "2030-02-07T11:00:00Z"}), None)
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        let view = app.synced(&id).await;
        let new_uid = view["segments"][0]["calcom_booking_uid"]
            .as_str()
            .expect("uid")
            .to_string();
        assert_ne!(new_uid, old_uid);

        // Cal.com tells us about the move we made: the old uid names no segment any more.
        let secret = phasebook_api::sync::SyncHandle::for_database(&app.db)
            .store()
            .webhook_secret(app.salon.tenant_id)
            .await
            .expect("secret")
            .expect("tenant");
        for body in [
            json!({"triggerEvent": "BOOKING_RESCHEDULED", "createdAt": "2030-01-01T00:00:00Z",
                "payload": {"uid": new_uid, "rescheduleUid": old_uid,
                    "startTime": "2030-02-07T11:00:00Z", "status": "ACCEPTED"}}),
            json!({"triggerEvent": "BOOKING_CANCELLED", "createdAt": "2030-01-01T00:00:00Z",
                "payload": {"uid": old_uid, "status": "CANCELLED"}}),
        ] {
            let raw = serde_json::to_vec(&body).expect("json");
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
            mac.update(&raw);
            let answer: Value = app
                .http
                .post(format!(
                    "{}/webhooks/calcom/{}",
                    app.url, app.salon.tenant_id
                ))
                .header("content-type", "application/json")
                .header(
                    "X-Cal-Signature-256",
                    hex::encode(mac.finalize().into_bytes()),
                )
                .body(raw)
                .send()
                .await
                .expect("webhook")
                .json()
                .await
                .expect("json");
            assert_eq!(answer["outcome"], "ignored", "{answer:#}");
        }
        let (_, view) = app
            .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
            .await;
        assert_eq!(view["status"], "synced", "{view:#}");
        assert_eq!(view["requires_manual_review"], false);
    }
}

impl App {
    async fn post_as_agent(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .send(reqwest::Method::POST, path, &self.agent_key, Some(body))
            .await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A move onto a held time takes the hold in the move's own transaction: the hold reads
/// `booked` and the old time is free again. A move that is refused keeps the hold.
#[tokio::test]
async fn a_move_onto_a_held_time_takes_the_hold_and_a_refused_one_keeps_it() {
    for database in databases().await {
        let app = spawn(database).await;
        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        let first = app
            .book("2030-02-06T09:00:00Z", "stylist-1", ada.clone())
            .await;
        let id = first["id"].as_str().expect("id").to_string();
        app.synced(&id).await;
        let hold = |start: &'static str| {
            app.post_as_agent(
                "/holds",
                json!({"service_id": "colour", "staff_id": "stylist-1", "start": start}),
            )
        };
        let (status, held) = hold("2030-02-06T15:00:00Z").await;
        assert_eq!(status, StatusCode::CREATED, "{held:#}");
        let hold_id = held["id"].as_str().expect("hold id").to_string();

        let moved = app
            .reschedule(
                &id,
                json!({"start": "2030-02-06T15:00:00Z", "hold_id": hold_id}),
                None,
            )
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        let (_, taken) = app
            .get(&format!("/holds/{hold_id}"), &app.salon.ops_key)
            .await;
        assert_eq!(taken["status"], "booked", "{taken:#}");
        let view = app.synced(&id).await;
        assert_eq!(view["status"], "synced", "{view:#}");
        // The old time is free again.
        app.book("2030-02-06T09:00:00Z", "stylist-1", ada.clone())
            .await;

        // A cancelled appointment cannot move: the hold it named stays held.
        let (status, kept) = hold("2030-02-06T18:00:00Z").await;
        assert_eq!(status, StatusCode::CREATED, "{kept:#}");
        let kept_id = kept["id"].as_str().expect("hold id").to_string();
        let (status, _) = app
            .post_as_agent(&format!("/appointments/{id}/cancel"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let refused = app
            .reschedule(
                &id,
                json!({"start": "2030-02-06T18:00:00Z", "hold_id": kept_id}),
                None,
            )
            .await;
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        let (_, still) = app
            .get(&format!("/holds/{kept_id}"), &app.salon.ops_key)
            .await;
        assert_eq!(still["status"], "held", "{still:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_the_old_booking_names_it_before_calcom_answers() {
    for database in databases().await {
        // Cal.com never answers a cancel: a process killed now leaves only the write-ahead
        // row, which must already name the booking Cal.com may have cancelled.
        let faults = Faults::default().route("bookings.cancel", RouteFaults::hang_rate(1.0));
        let retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            min_delay: Duration::from_millis(5),
        };
        // Each hanging cancel stays in flight for the whole call timeout: long enough for the
        // reads below to see it on a busy machine.
        let app = spawn_waiting(database, 2, faults, retry, Some(Duration::from_secs(8))).await;
        let ada = json!({"name": "Ada", "email": "ada@example.com"});
        let booked = app.book("2030-03-05T09:00:00Z", "stylist-1", ada).await;
        let id = booked["id"].as_str().expect("id").to_string();
        let view = app.synced(&id).await;
        let old: Vec<String> = view["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| s["calcom_booking_uid"].as_str().expect("uid").to_string())
            .collect();

        let moved = app
            .reschedule(
                &id,
                json!({"start": "2030-03-05T09:00:00Z", "staff_id": "stylist-2"}),
                None,
            )
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let in_flight = loop {
            let (_, view) = app
                .get(&format!("/appointments/{id}/sync"), &app.salon.ops_key)
                .await;
            let found = view["attempts"]
                .as_array()
                .expect("attempts")
                .iter()
                .find(|a| a["operation"] == "cancel_moved" && a["outcome"].is_null())
                .cloned();
            if let Some(attempt) = found {
                break attempt;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no cancel in flight: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let uid = in_flight["calcom_booking_uid"].as_str().unwrap_or_default();
        assert!(old.iter().any(|o| o == uid), "{in_flight:#} among {old:?}");
    }
}
