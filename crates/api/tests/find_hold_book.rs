//! Find → hold → book through the HTTP API against the Cal.com emulator, on both
//! databases: every pre-flight refusal stores and syncs nothing; availability avoids time
//! made busy in Cal.com behind our back, our own appointments and live holds, stretches a
//! gap only where that is the only fit, and is right on DST days; holds race, expire,
//! release and convert; Cal.com down gives 503; and 200 random options, held and booked,
//! all sync.

use std::sync::Arc;
use std::time::Duration;

use calcom_client::RateLimit;
use calcom_sim::{Faults, RouteFaults, SeedBooking};
use chrono::{DateTime, Duration as TimeDelta, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use phasebook_api::free_time::FreeTime;
use phasebook_api::state::AppState;
use phasebook_api::store::holds::BookingSettings;
use phasebook_api::store::{AppointmentQuery, Database};
use phasebook_api::sync::{ClientCache, ClientSettings};
use phasebook_domain::sync::AppointmentSyncStatus;
use phasebook_test_support::fixtures;
use phasebook_test_support::{TestApp, fast_sync_config};
use phasebook_test_support::{TestDatabase, count_rows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// The app, the emulator and the worker (see `phasebook_test_support::app`).
struct App {
    app: TestApp,
}

fn fast_client() -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(2),
        read_retries: 0,
        rate_limit: RateLimit {
            requests: 100_000,
            per: Duration::from_secs(60),
        },
    }
}

/// A salon of two stylists on the emulator (working around the clock), one 4-segment
/// service whose first gap may stretch from 10 to 60 minutes, the worker and the API.
async fn setup(database: TestDatabase) -> App {
    let mut segments = fixtures::segments(4, 30, 0);
    segments[0].gap_after_minutes = 10;
    segments[0].gap_after_max_minutes = Some(60);
    let mut worker = fast_sync_config("find-hold-book");
    worker.poll_interval = Duration::from_millis(100);
    worker.client = fast_client();
    let app = TestApp::builder()
        .stylists(2)
        .segments(segments)
        // The property test sends hundreds of requests a second on one key; it exercises
        // availability, not phasebook's own per-key request limit.
        .request_limit(1_000_000)
        .state(|state| {
            state.free_time = Arc::new(FreeTime::new(Arc::new(ClientCache::new(fast_client()))));
        })
        .worker(worker)
        .spawn(database)
        .await;
    App { app }
}

phasebook_test_support::deref_to!(App => app: TestApp);

/// A day a few days ahead, as a Berlin date.
fn day_ahead(days: i64) -> NaiveDate {
    (Utc::now() + TimeDelta::days(days))
        .with_timezone(&Berlin)
        .date_naive()
}

fn berlin(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    Berlin
        .from_local_datetime(&day.and_hms_opt(hour, minute, 0).expect("time"))
        .earliest()
        .expect("local time")
        .with_timezone(&Utc)
}

fn at(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("instant"))
        .expect("rfc 3339")
        .with_timezone(&Utc)
}

fn customer() -> Value {
    json!({"name": "Ada Lovelace", "email": "ada@example.com"})
}

impl App {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let response = self.app.send(method, path, &self.salon.ops_key, body).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, body, _) = self.send(reqwest::Method::POST, path, Some(body)).await;
        (status, body)
    }

    async fn availability(&self, query: &str) -> Vec<Value> {
        let (status, body, _) = self
            .send(
                reqwest::Method::GET,
                &format!("/availability?service_id=colour&time_zone=Europe/Berlin&{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["options"].as_array().cloned().unwrap_or_default()
    }

    fn event_type(&self, stylist: usize, segment: usize) -> i64 {
        self.account.event_types[stylist][segment]
    }

    async fn hold(&self, option: &Value) -> (StatusCode, Value) {
        self.post(
            "/holds",
            json!({
                "service_id": "colour",
                "staff_id": option["staff_id"],
                "start": option["start"],
                "segments": option["segments"],
            }),
        )
        .await
    }

    async fn stored_nothing(&self) {
        for table in ["appointments", "appointment_segments", "sync_jobs"] {
            assert_eq!(
                count_rows(&self.db, table, self.salon.tenant_id)
                    .await
                    .expect("count"),
                0,
                "{table}"
            );
        }
        assert!(
            self.sim.state().bookings.is_empty(),
            "nothing reached Cal.com"
        );
    }

    async fn set_settings(&self, country: Option<&str>, horizon_days: u32) {
        self.db
            .booking()
            .set_booking_settings(
                self.salon.tenant_id,
                &BookingSettings {
                    country: country.map(str::to_string),
                    horizon_days,
                },
            )
            .await
            .expect("settings");
    }

    /// Backdates a hold's expiry, as if its time had run out.
    async fn expire(&self, hold_id: &str) {
        let id = Uuid::parse_str(hold_id).expect("hold id");
        let past = Utc::now() - TimeDelta::seconds(1);
        match &self.db {
            Database::Postgres(s) => {
                sqlx::query("update holds set expires_at = $2 where hold_id = $1")
                    .bind(id)
                    .bind(past)
                    .execute(s.pool())
                    .await
                    .expect("expire");
            }
            Database::Sqlite(s) => {
                sqlx::query("update holds set expires_at = $2 where hold_id = $1")
                    .bind(id.hyphenated().to_string())
                    .bind(past.timestamp_millis())
                    .execute(s.pool())
                    .await
                    .expect("expire");
            }
        }
    }

    /// Waits until every appointment has a final sync status; returns them by status.
    async fn settled(&self) -> Vec<(Uuid, AppointmentSyncStatus)> {
        for _ in 0..600 {
            let all = self
                .db
                .store()
                .list_appointments(
                    self.salon.tenant_id,
                    &AppointmentQuery {
                        limit: 10_000,
                        ..AppointmentQuery::default()
                    },
                )
                .await
                .expect("list");
            let busy = all.iter().any(|a| {
                matches!(
                    a.sync_status,
                    AppointmentSyncStatus::Pending
                        | AppointmentSyncStatus::Syncing
                        | AppointmentSyncStatus::PartiallySynced
                        | AppointmentSyncStatus::Cancelling
                )
            });
            if !busy {
                return all
                    .iter()
                    .map(|a| (a.appointment_id, a.sync_status))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sync did not settle");
    }
}

fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or_default()
}

async fn every_preflight_refusal_stores_and_syncs_nothing(app: App) {
    let day = day_ahead(3);
    let start = berlin(day, 10, 0).to_rfc3339();
    let book = |staff: &str, start: &str, customer: Value| json!({"service_id": "colour", "staff_id": staff, "start": start, "customer": customer});

    // stylist-2 no longer performs the service.
    let (status, _, _) = app
        .send(
            reqwest::Method::PUT,
            "/staff/stylist-2",
            Some(
                json!({"name": "Two", "calcom_user_id": 502, "calcom_username": "stylist-2",
                        "time_zone": "Europe/Berlin", "services": []}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post("/appointments", book("stylist-2", &start, customer()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(problem_type(&body), "staff-does-not-perform-service");
    assert_eq!(body["field"], "staff_id");

    // Segment B of stylist-1 loses its map.
    fixtures::remove_event_map(
        &app.db,
        app.salon.tenant_id,
        &app.salon.service_id,
        &app.salon.segments[1].key,
        &app.salon.staff[0].staff_id,
    )
    .await
    .expect("remove map");
    let (status, body) = app
        .post("/appointments", book("stylist-1", &start, customer()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(problem_type(&body), "segment-unmapped");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("Segment B"), "{detail}");
    assert!(
        detail.contains("PUT /event-maps/colour/B/stylist-1"),
        "{detail}"
    );
    fixtures::put_event_map(
        &app.db,
        app.salon.tenant_id,
        &app.salon.service_id,
        &app.salon.segments[1].key,
        &app.salon.staff[0].staff_id,
        app.event_type(0, 1),
        app.event_type(0, 1),
    )
    .await
    .expect("map again");

    // A name alone cannot be reached.
    let (status, body) = app
        .post(
            "/appointments",
            book("stylist-1", &start, json!({"name": "Ada"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(problem_type(&body), "customer-unreachable");
    assert_eq!(body["field"], "customer");

    // A national number without a tenant country is refused, saying why.
    let (status, body) = app
        .post(
            "/appointments",
            book(
                "stylist-1",
                &start,
                json!({"name": "Ada", "phone": "0151 2345 6789"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "phone_needs_country");
    assert_eq!(body["field"], "customer.phone");

    // The past and beyond the horizon.
    app.set_settings(None, 30).await;
    let past = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let (status, body) = app
        .post("/appointments", book("stylist-1", &past, customer()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(problem_type(&body), "start-in-past");
    assert_eq!(body["field"], "start");
    let far = berlin(day_ahead(40), 10, 0).to_rfc3339();
    let (status, body) = app
        .post("/appointments", book("stylist-1", &far, customer()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(problem_type(&body), "start-beyond-horizon");

    // Holds run the same pre-flight.
    let (status, body) = app
        .post(
            "/holds",
            json!({"service_id": "colour", "staff_id": "stylist-2", "start": start}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(problem_type(&body), "staff-does-not-perform-service");

    // Nothing of any refusal was stored or reached Cal.com, even after the worker ran.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stored_nothing().await;

    // With the tenant's country a national number is read and stored in E.164.
    app.set_settings(Some("DE"), 365).await;
    let (status, body) = app
        .post(
            "/appointments",
            book(
                "stylist-1",
                &start,
                json!({"name": "Ada", "phone": "0151 2345 6789"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["customer"]["phone"], "+4915123456789");
}

fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn segment_spans(option: &Value) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    option["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| (at(&s["starts_at"]), at(&s["ends_at"])))
        .collect()
}

async fn availability_avoids_calcom_busy_time_our_appointments_and_live_holds(app: App) {
    let day = day_ahead(4);
    let query = format!("from={day}&to={day}&staff_id=stylist-1&limit=200");
    // Busy in Cal.com behind our back: another system booked stylist-1 at 09:00-10:00.
    let outside = (berlin(day, 9, 0), berlin(day, 10, 0));
    let mut planted = SeedBooking::new(app.event_type(0, 0), outside.0);
    planted.end = Some(outside.1);
    app.http
        .post(format!("{}/__sim/bookings", app.sim.base_url))
        .json(&planted)
        .send()
        .await
        .expect("plant")
        .error_for_status()
        .expect("planted");
    let all = app.availability(&query).await;
    assert!(!all.is_empty());

    // Our own appointment at 13:00 and a live hold at 16:00.
    let own_start = berlin(day, 13, 0);
    let (status, own) = app
        .post(
            "/appointments",
            json!({"service_id": "colour", "staff_id": "stylist-1", "start": own_start.to_rfc3339(), "customer": customer()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let own_spans: Vec<_> = own["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| (at(&s["starts_at"]), at(&s["ends_at"])))
        .collect();
    let (status, hold) = app
        .post(
            "/holds",
            json!({"service_id": "colour", "staff_id": "stylist-1", "start": berlin(day, 16, 0).to_rfc3339()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let hold_spans: Vec<_> = hold["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| (at(&s["starts_at"]), at(&s["ends_at"])))
        .collect();

    let after = app.availability(&query).await;
    assert!(!after.is_empty());
    assert!(after.len() < all.len());
    for option in &after {
        for span in segment_spans(option) {
            assert!(
                !overlaps(span, outside),
                "Cal.com busy time offered: {option}"
            );
            for busy in own_spans.iter().chain(&hold_spans) {
                assert!(!overlaps(span, *busy), "our own time offered: {option}");
            }
        }
    }
    // Options are in start order.
    let starts: Vec<_> = after.iter().map(|o| at(&o["start"])).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
}

async fn availability_stretches_a_gap_only_where_nothing_else_fits(app: App) {
    let day = day_ahead(5);
    // stylist-1 is busy in Cal.com 10:30-11:20. Cal.com offers 30-minute slots on the
    // half hour, so its free time resumes at 11:30. An option at 10:00 (A until 10:30)
    // needs B after a gap of 10 to 60 minutes: only B at 11:30, a 60-minute gap, fits.
    let busy = (berlin(day, 10, 30), berlin(day, 11, 20));
    let mut planted = SeedBooking::new(app.event_type(0, 1), busy.0);
    planted.end = Some(busy.1);
    app.http
        .post(format!("{}/__sim/bookings", app.sim.base_url))
        .json(&planted)
        .send()
        .await
        .expect("plant")
        .error_for_status()
        .expect("planted");
    let from = format!("{day}T10:00");
    let to = format!("{day}T10:05");
    let options = app
        .availability(&format!("from={from}&to={to}&staff_id=stylist-1"))
        .await;
    assert_eq!(options.len(), 1, "{options:?}");
    let option = &options[0];
    let spans = segment_spans(option);
    assert_eq!(spans[0].0, berlin(day, 10, 0));
    assert_eq!(spans[1].0, berlin(day, 11, 30), "{option}");
    assert!(spans[1].0 >= busy.1);
    // Where nothing is busy, the gap stays at its minimum.
    let free = app
        .availability(&format!(
            "from={day}T15:00&to={day}T15:05&staff_id=stylist-1"
        ))
        .await;
    let spans = segment_spans(&free[0]);
    assert_eq!(spans[1].0 - spans[0].1, TimeDelta::minutes(10));

    // The stretched option can be held and booked, and syncs.
    let (status, hold) = app.hold(option).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, booked) = app
        .post(
            "/appointments",
            json!({"hold_id": hold["id"], "customer": customer()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    assert_eq!(
        booked["segments"][1]["starts_at"],
        option["segments"][1]["starts_at"]
    );
    let settled = app.settled().await;
    assert!(
        settled
            .iter()
            .all(|(_, s)| *s == AppointmentSyncStatus::Synced),
        "{settled:?}"
    );
}

async fn availability_is_right_on_berlin_dst_days(app: App) {
    // The last Sundays of March and October after today, within the 365-day horizon.
    let today = Utc::now().with_timezone(&Berlin).date_naive();
    let last_sunday = |year: i32, month: u32| {
        let mut d = NaiveDate::from_ymd_opt(year, month + 1, 1).expect("date") - TimeDelta::days(1);
        while chrono::Datelike::weekday(&d) != chrono::Weekday::Sun {
            d -= TimeDelta::days(1);
        }
        d
    };
    let year = chrono::Datelike::year(&today);
    let mut days: Vec<NaiveDate> = [year, year + 1]
        .iter()
        .flat_map(|y| [last_sunday(*y, 3), last_sunday(*y, 10)])
        .filter(|d| *d > today && *d < today + TimeDelta::days(360))
        .collect();
    days.sort();
    assert_eq!(days.len(), 2, "{days:?}");
    for day in days {
        let spring = chrono::Datelike::month(&day) == 3;
        let mut options = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = format!("from={day}&to={day}&staff_id=stylist-1&limit=200");
            if let Some(c) = &cursor {
                query.push_str(&format!("&cursor={c}"));
            }
            let (status, body, _) = app
                .send(
                    reqwest::Method::GET,
                    &format!("/availability?service_id=colour&time_zone=Europe/Berlin&{query}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            options.extend(body["options"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let day_start = berlin(day, 0, 0);
        let day_end = berlin(day + TimeDelta::days(1), 0, 0);
        assert_eq!(
            (day_end - day_start).num_hours(),
            if spring { 23 } else { 25 }
        );
        assert!(!options.is_empty());
        for option in &options {
            let spans = segment_spans(option);
            let start = at(&option["start"]);
            assert!(start >= day_start && start < day_end, "{option}");
            // Real elapsed time whatever the clocks do: every segment 30 minutes, the
            // first gap 10 to 60 minutes, the others none.
            for (s, e) in &spans {
                assert_eq!(*e - *s, TimeDelta::minutes(30), "{option}");
            }
            let gap = spans[1].0 - spans[0].1;
            assert!(
                gap >= TimeDelta::minutes(10) && gap <= TimeDelta::minutes(60),
                "{option}"
            );
            assert_eq!(spans[2].0, spans[1].1);
            assert_eq!(spans[3].0, spans[2].1);
            assert_eq!(at(&option["end"]), spans[3].1);
        }
        let starts: Vec<_> = options.iter().map(|o| at(&o["start"])).collect();
        assert!(
            starts.windows(2).all(|w| w[0] < w[1]),
            "no duplicates across pages"
        );
        // 03:00 local, right after the change, is offered as the instant it is: 01:00Z
        // (CEST) in spring, 02:00Z (CET) in autumn; and so is the day's first instant.
        let after_change = berlin(day, 3, 0);
        let expected = Utc
            .with_ymd_and_hms(
                chrono::Datelike::year(&day),
                chrono::Datelike::month(&day),
                chrono::Datelike::day(&day),
                if spring { 1 } else { 2 },
                0,
                0,
            )
            .single()
            .expect("instant");
        assert_eq!(after_change, expected);
        assert!(
            starts.contains(&after_change),
            "03:00 offered on {day}: {:?}",
            starts
                .iter()
                .filter(|s| (**s - after_change).num_hours().abs() < 3)
                .collect::<Vec<_>>()
        );
        assert!(
            starts.contains(&berlin(day, 0, 0)),
            "midnight offered on {day}"
        );
        // Every start is on the 5-minute grid and the grid has no holes in free time.
        assert!(starts.iter().all(|s| s.timestamp() % 300 == 0));
    }
}

async fn two_agents_holding_one_option_get_one_201_and_one_409(app: App) {
    let day = day_ahead(6);
    let options = app
        .availability(&format!(
            "from={day}T11:00&to={day}T11:05&staff_id=stylist-2"
        ))
        .await;
    let option = options.first().expect("an option").clone();
    let (a, b) = tokio::join!(app.hold(&option), app.hold(&option));
    let mut statuses = vec![a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        vec![StatusCode::CREATED, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let conflict = if a.0 == StatusCode::CONFLICT {
        &a.1
    } else {
        &b.1
    };
    assert_eq!(problem_type(conflict), "double-booking");
    // And an appointment on the held time is refused too.
    let (status, _) = app
        .post(
            "/appointments",
            json!({"service_id": "colour", "staff_id": "stylist-2", "start": option["start"], "customer": customer()}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn an_expired_hold_blocks_nothing_and_booking_it_is_410(app: App) {
    let day = day_ahead(6);
    let start = berlin(day, 14, 0).to_rfc3339();
    let hold_body =
        json!({"service_id": "colour", "staff_id": "stylist-1", "start": start, "ttl_seconds": 10});
    let (status, hold) = app.post("/holds", hold_body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert!(at(&hold["expires_at"]) <= Utc::now() + TimeDelta::seconds(10));
    let (status, _) = app.post("/holds", hold_body.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "a live hold blocks");

    app.expire(hold["id"].as_str().expect("id")).await;
    let (status, body) = app
        .post(
            "/appointments",
            json!({"hold_id": hold["id"], "customer": customer()}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(problem_type(&body), "hold-expired");
    let (status, viewed, _) = app
        .send(
            reqwest::Method::GET,
            &format!("/holds/{}", hold["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(viewed["status"], "expired");
    // The expired hold blocks nothing: another hold and a booking take the time.
    let (status, second) = app.post("/holds", hold_body).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    app.expire(second["id"].as_str().expect("id")).await;
    let (status, booked) = app
        .post(
            "/appointments",
            json!({"service_id": "colour", "staff_id": "stylist-1", "start": start, "customer": customer()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    // The sweep deletes the expired holds' Cal.com reservations.
    let state = {
        let mut state = AppState::new(app.db.clone());
        state.free_time = Arc::new(FreeTime::new(Arc::new(ClientCache::new(fast_client()))));
        state
    };
    let cleared = phasebook_api::routes::holds::sweep_reservations(&state, Utc::now())
        .await
        .expect("sweep");
    assert_eq!(cleared, 2);
    assert!(
        app.sim.state().reservations.is_empty(),
        "reservations deleted"
    );
}

async fn releasing_a_hold_frees_its_time_and_deletes_its_reservations(app: App) {
    let day = day_ahead(7);
    let body = json!({"service_id": "colour", "staff_id": "stylist-1", "start": berlin(day, 9, 0).to_rfc3339()});
    let (status, hold) = app.post("/holds", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert_eq!(hold["segments"].as_array().map(Vec::len), Some(4));
    assert!(
        hold["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .all(|s| s["calcom_reservation_uid"].is_string())
    );
    assert_eq!(app.sim.state().reservations.len(), 4);
    let id = hold["id"].as_str().expect("id");
    let (status, released, _) = app
        .send(reqwest::Method::DELETE, &format!("/holds/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["status"], "released");
    assert!(
        app.sim.state().reservations.is_empty(),
        "reservations deleted on release"
    );
    let (status, _) = app.post("/holds", body).await;
    assert_eq!(status, StatusCode::CREATED, "the released time is free");
    let (status, again) = app
        .post(
            "/appointments",
            json!({"hold_id": id, "customer": customer()}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(problem_type(&again), "hold-released");
}

async fn booking_a_hold_books_exactly_its_times_once(app: App) {
    let day = day_ahead(8);
    let options = app
        .availability(&format!(
            "from={day}T12:00&to={day}T12:05&staff_id=stylist-2"
        ))
        .await;
    let option = options.first().expect("option").clone();
    let (status, hold) = app.hold(&option).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let request = json!({"hold_id": hold["id"], "customer": customer()});
    let send = |key: &'static str| {
        app.http
            .post(format!("{}/appointments", app.url))
            .bearer_auth(&app.salon.ops_key)
            .header("Idempotency-Key", key)
            .json(&request)
            .send()
    };
    let first = send("convert-1").await.expect("request");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    for (booked, held) in first["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .zip(hold["segments"].as_array().expect("held"))
    {
        assert_eq!(at(&booked["starts_at"]), at(&held["starts_at"]));
        assert_eq!(at(&booked["ends_at"]), at(&held["ends_at"]));
    }
    let replay = send("convert-1").await.expect("request");
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["id"], first["id"]);
    let other = send("convert-2").await.expect("request");
    assert_eq!(other.status(), StatusCode::CONFLICT);
    let settled = app.settled().await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1, AppointmentSyncStatus::Synced);
    assert_eq!(app.sim.state().bookings.len(), 4);
    for _ in 0..50 {
        if app.sim.state().reservations.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        app.sim.state().reservations.is_empty(),
        "reservations deleted on conversion"
    );
}

async fn calcom_down_gives_503_with_retry_after_and_no_options(app: App) {
    app.sim
        .sim
        .set_faults(Faults::default().route("slots.list", RouteFaults::error_rate(1.0)));
    let day = day_ahead(9);
    let (status, body, headers) = app
        .send(
            reqwest::Method::GET,
            &format!("/availability?service_id=colour&time_zone=Europe/Berlin&from={day}&to={day}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(problem_type(&body), "calcom-unavailable");
    assert!(body.get("options").is_none());
    let retry_after: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry_after >= 1);
    // When Cal.com answers again, so does availability.
    app.sim.sim.set_faults(Faults::default());
    assert!(
        !app.availability(&format!("from={day}&to={day}"))
            .await
            .is_empty()
    );
}

async fn two_hundred_random_options_held_and_booked_all_sync(app: App) {
    let mut rng = StdRng::seed_from_u64(15);
    let mut booked = 0;
    for _ in 0..200 {
        // Sixty days of two stylists leave room for every booking, so an empty answer
        // would mean a wrong one.
        let day = day_ahead(rng.random_range(1..=60));
        // Windows end by 21:00, so no option crosses midnight (the emulator refuses a
        // booking across midnight even with round-the-clock hours).
        let hour = rng.random_range(6..=18);
        let hours = rng.random_range(1..=3);
        let staff = match rng.random_range(0..3) {
            0 => "",
            1 => "&staff_id=stylist-1",
            _ => "&staff_id=stylist-2",
        };
        let options = app
            .availability(&format!(
                "from={day}T{hour:02}:00&to={day}T{:02}:00{staff}&limit=50",
                hour + hours
            ))
            .await;
        if options.is_empty() {
            continue;
        }
        let option = &options[rng.random_range(0..options.len())];
        let (status, hold) = app.hold(option).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "offered {option} but hold said {hold}"
        );
        let (status, appointment) = app
            .post(
                "/appointments",
                json!({"hold_id": hold["id"], "customer": customer()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{appointment}");
        booked += 1;
    }
    assert!(
        booked >= 150,
        "only {booked} of 200 searches found an option"
    );
    let settled = app.settled().await;
    assert_eq!(settled.len(), booked);
    let not_synced: Vec<_> = settled
        .iter()
        .filter(|(_, s)| *s != AppointmentSyncStatus::Synced)
        .collect();
    assert!(not_synced.is_empty(), "{not_synced:?}");
}

async fn staff_declare_their_services_and_a_performer_without_maps_fails_the_audit(app: App) {
    let (status, body, _) = app
        .send(reqwest::Method::GET, "/staff/stylist-1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["services"],
        json!(["colour"]),
        "filled from the event maps"
    );
    let put = |services: Value| {
        app.send(
            reqwest::Method::PUT,
            "/staff/stylist-3",
            Some(
                json!({"name": "Three", "calcom_user_id": 503, "calcom_username": "stylist-3",
                        "time_zone": "Europe/Berlin", "services": services}),
            ),
        )
    };
    let (status, body, _) = put(json!(["nope"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "services[0]");
    let (status, body, _) = put(json!(["colour"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["services"], json!(["colour"]));
    let (status, audit, _) = app
        .send(reqwest::Method::GET, "/event-maps/audit", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let text = audit.to_string();
    assert!(
        text.contains("performer-unmapped") && text.contains("stylist-3"),
        "{text}"
    );
    // Availability without staff_id searches performers with every segment mapped only.
    let day = day_ahead(3);
    let options = app
        .availability(&format!("from={day}T10:00&to={day}T10:05"))
        .await;
    let staff: Vec<_> = options.iter().map(|o| o["staff_id"].clone()).collect();
    assert_eq!(staff, vec![json!("stylist-1"), json!("stylist-2")]);
}

phasebook_test_support::on_both_backends!(with setup;
    staff_declare_their_services_and_a_performer_without_maps_fails_the_audit,
    every_preflight_refusal_stores_and_syncs_nothing,
    availability_avoids_calcom_busy_time_our_appointments_and_live_holds,
    availability_stretches_a_gap_only_where_nothing_else_fits,
    availability_is_right_on_berlin_dst_days,
    two_agents_holding_one_option_get_one_201_and_one_409,
    an_expired_hold_blocks_nothing_and_booking_it_is_410,
    releasing_a_hold_frees_its_time_and_deletes_its_reservations,
    booking_a_hold_books_exactly_its_times_once,
    calcom_down_gives_503_with_retry_after_and_no_options,
    two_hundred_random_options_held_and_booked_all_sync,
);
