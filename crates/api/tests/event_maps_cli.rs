//! The real `phasebook` binary against the Cal.com emulator, on SQLite and (when
//! `DATABASE_URL` is set) PostgreSQL: `doctor` (table, `--json`, exit codes), `provision`
//! (dry run, idempotence, what Cal.com ends up holding), and the incident this project began
//! with — a managed parent whose second host never got a child — from refusal to real
//! bookings for both stylists.

mod event_maps_salon;

use std::process::Output;
use std::time::{Duration, Instant};

use calcom_sim::{RunningSim, Seed};
use chrono::{Duration as Minutes, DurationRound, Utc};
use event_maps_salon as salon;
use phasebook_api::store::event_maps::NewEventMap;
use phasebook_domain::{EventTypeId, SegmentKey, ServiceId, StaffId};
use phasebook_test_support::{ChildProcess, TestDatabase, send_as};
use reqwest::Method;
use serde_json::{Value, json};

struct Setup {
    database: TestDatabase,
    sim: RunningSim,
    tenant_id: String,
    key: String,
    url: String,
    http: reqwest::Client,
    _server: ChildProcess,
}

fn phasebook(database_url: &str) -> std::process::Command {
    phasebook_test_support::phasebook(env!("CARGO_BIN_EXE_phasebook"), database_url)
}

async fn run(database_url: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::from(phasebook(database_url));
    command
        .kill_on_drop(true)
        .args(args)
        .output()
        .await
        .expect("run phasebook")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command that must succeed and print one JSON object.
async fn run_json(database_url: &str, args: &[&str]) -> Value {
    let output = run(database_url, args).await;
    assert!(
        output.status.success(),
        "phasebook {args:?}: {}\n{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "phasebook {args:?} printed no JSON ({e}): {}",
            stdout(&output)
        )
    })
}

/// A tenant created with `phasebook tenant create` against a spawned sim, and
/// `phasebook serve` (API and worker) on the same database.
async fn setup(database: TestDatabase, seed: Seed) -> Setup {
    let sim = salon::spawn_sim_with(seed).await;
    let team = salon::TEAM_ID.to_string();
    let created = run_json(
        &database.url,
        &[
            "tenant",
            "create",
            "--name",
            "Salon Aurora",
            "--calcom-api-key",
            salon::ANNA_KEY,
            "--calcom-base-url",
            &sim.base_url,
            "--calcom-team-id",
            &team,
            "--json",
        ],
    )
    .await;
    let text = |field: &str| created[field].as_str().expect(field).to_string();
    let server = ChildProcess::build("phasebook-serve", phasebook(&database.url))
        .arg("serve")
        .listen("--listen")
        .healthy_at("/healthz")
        .start()
        .await;
    let http = salon::http_client();
    let url = server.base_url();
    Setup {
        tenant_id: text("tenant_id"),
        key: text("api_key"),
        database,
        sim,
        url,
        http,
        _server: server,
    }
}

impl Setup {
    fn db_url(&self) -> &str {
        &self.database.url
    }

    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = send_as(
            &self.http,
            &self.url,
            Method::PUT,
            path,
            &self.key,
            Some(body),
        )
        .await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put_ok(&self, path: &str, body: &Value) -> Value {
        let (status, body) = self.put(path, body).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = send_as(&self.http, &self.url, Method::GET, path, &self.key, None).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn define(&self, services: &[(&str, Value)]) {
        for (id, body) in services {
            self.put_ok(&format!("/services/{id}"), body).await;
        }
        self.put_ok("/staff/anna", &salon::staff("Anna", salon::ANNA, "anna"))
            .await;
        self.put_ok("/staff/ben", &salon::staff("Ben", salon::BEN, "ben"))
            .await;
    }

    async fn map(&self, service: &str, segment: &str, staff: &str, event_type: i64) -> Value {
        self.put_ok(
            &format!("/event-maps/{service}/{segment}/{staff}"),
            &json!({"event_type_id": event_type}),
        )
        .await
    }

    fn team_event_type_creates(&self) -> u64 {
        self.sim
            .state()
            .requests
            .get("event_types.team_create")
            .map_or(0, |c| c.total)
    }
}

// ---------------------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------------------

async fn doctor_exits_1_with_a_table_and_json_when_something_is_wrong_and_0_when_clean(
    database: TestDatabase,
) {
    let s = setup(database, salon::seed()).await;
    s.define(&[
        ("colour", salon::colour_service()),
        ("cut", salon::cut_service()),
    ])
    .await;
    for (service, segment, event_type) in [
        ("colour", "A", salon::ANNA_APPLY),
        ("colour", "B", salon::ANNA_WASH),
        ("colour", "C", salon::PARENT),
        ("colour", "D", salon::ANNA_BLOW_DRY),
        ("cut", "C", salon::ANNA_CUT),
    ] {
        s.map(service, segment, "anna", event_type).await;
    }

    let clean = run(s.db_url(), &["doctor"]).await;
    let table = stdout(&clean);
    assert_eq!(clean.status.code(), Some(0), "{table}");
    assert!(table.contains("SEVERITY"), "{table}");
    assert!(
        table.contains("5 checked, 0 error(s), 0 warning(s)"),
        "{table}"
    );
    let json = run(s.db_url(), &["doctor", "--json"]).await;
    assert_eq!(json.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(report["ok"], true);
    assert_eq!(report["tenants"][0]["tenant_id"], s.tenant_id);

    // Ben gets segment A only, and Anna's colour type is made 45 minutes in Cal.com.
    s.map("colour", "A", "ben", salon::BEN_APPLY).await;
    salon::patch_event_type(
        &s.sim,
        salon::ANNA_KEY,
        None,
        salon::ANNA_APPLY,
        json!({"lengthInMinutes": 45}),
    )
    .await;

    let broken = run(s.db_url(), &["doctor"]).await;
    let table = stdout(&broken);
    assert_eq!(broken.status.code(), Some(1), "{table}");
    assert!(table.contains("segment-unmapped"), "{table}");
    assert!(table.contains("event-type-length-mismatch"), "{table}");
    assert!(
        table.contains("fix: Map it with PUT /event-maps/colour/B/ben"),
        "each problem has its fix: {table}"
    );
    assert!(table.contains("4 error(s)"), "{table}");

    let json = run(s.db_url(), &["doctor", "--json", "--tenant", &s.tenant_id]).await;
    assert_eq!(json.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(report["ok"], false);
    let tenant = &report["tenants"][0];
    assert_eq!(tenant["errors"], 4);
    let findings = tenant["findings"].as_array().expect("findings");
    assert!(findings.iter().all(|f| f["severity"].is_string()
        && f["code"].is_string()
        && (f["severity"] == "ok" || !f["fix"].as_str().unwrap_or_default().is_empty())));
}

// ---------------------------------------------------------------------------------------
// provision
// ---------------------------------------------------------------------------------------

async fn provision_creates_one_hidden_single_host_team_type_per_segment_once(
    database: TestDatabase,
) {
    let s = setup(database, salon::seed()).await;
    s.define(&[("colour", salon::colour_service())]).await;
    let types_before = s.sim.state().event_types.len();
    // Ben already books segment A on his own type; provisioning will replace that map.
    s.map("colour", "A", "ben", salon::BEN_APPLY).await;

    // Dry run: the plan, and nothing created or stored.
    let plan = run(
        s.db_url(),
        &[
            "provision",
            "--service",
            "colour",
            "--staff",
            "ben",
            "--dry-run",
        ],
    )
    .await;
    let text = stdout(&plan);
    assert!(plan.status.success(), "{text}");
    assert!(text.starts_with("Plan for service colour"), "{text}");
    assert_eq!(text.matches("would create").count(), 4, "{text}");
    assert!(
        text.contains("Colour: Apply colour (1 of 4) - Ben"),
        "{text}"
    );
    let plan = run_json(
        s.db_url(),
        &[
            "provision",
            "--service",
            "colour",
            "--staff",
            "ben",
            "--dry-run",
            "--json",
        ],
    )
    .await;
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["steps"].as_array().map(Vec::len), Some(4));
    assert_eq!(plan["steps"][0]["replaces_event_type_id"], salon::BEN_APPLY);
    assert_eq!(plan["steps"][1]["replaces_event_type_id"], Value::Null);
    assert_eq!(s.sim.state().event_types.len(), types_before);
    assert_eq!(s.team_event_type_creates(), 0);
    let (_, maps) = s.get("/event-maps").await;
    assert_eq!(maps["items"].as_array().map(Vec::len), Some(1), "{maps}");
    assert_eq!(maps["items"][0]["event_type_id"], salon::BEN_APPLY);

    // The real run.
    let report = run_json(
        s.db_url(),
        &[
            "provision",
            "--service",
            "colour",
            "--staff",
            "ben",
            "--json",
        ],
    )
    .await;
    let steps = report["steps"].as_array().expect("steps").clone();
    assert_eq!(steps.len(), 4);
    let state = s.sim.state();
    assert_eq!(state.event_types.len(), types_before + 4);
    let expected = [
        ("A", "Colour: Apply colour (1 of 4) - Ben", 30),
        ("B", "Colour: Wash (2 of 4) - Ben", 15),
        ("C", "Colour: Cut (3 of 4) - Ben", 30),
        ("D", "Colour: Blow-dry (4 of 4) - Ben", 20),
    ];
    for ((segment, title, length), step) in expected.iter().zip(&steps) {
        assert_eq!(step["segment_key"], *segment);
        assert_eq!(step["action"], "create");
        let id = step["event_type_id"].as_i64().expect("created id");
        assert_eq!(step["bookable_event_type_id"], id);
        let et = state.event_type(id).expect("in Cal.com");
        assert_eq!(et.title, *title);
        assert_eq!(et.length_in_minutes, *length);
        assert!(et.hidden, "provisioned types are hidden");
        assert_eq!(
            et.team_id,
            Some(salon::TEAM_ID),
            "made through the team endpoints"
        );
        assert_eq!(
            et.hosts.iter().map(|h| h.user_id).collect::<Vec<_>>(),
            vec![salon::BEN],
            "single host"
        );
        let (status, map) = s.get(&format!("/event-maps/colour/{segment}/ben")).await;
        assert_eq!(status, 200);
        assert_eq!(map["bookable_event_type_id"], id);
        assert_eq!(map["resolution"], "collective_host");
    }
    assert_eq!(s.team_event_type_creates(), 4);

    // Again: nothing new in Cal.com, the same maps.
    let again = run(
        s.db_url(),
        &["provision", "--service", "colour", "--staff", "ben"],
    )
    .await;
    let text = stdout(&again);
    assert!(again.status.success(), "{text}");
    assert_eq!(text.matches("exists").count(), 4, "{text}");
    assert_eq!(s.team_event_type_creates(), 4);
    assert_eq!(s.sim.state().event_types.len(), types_before + 4);
    for (segment, step) in ["A", "B", "C", "D"].iter().zip(&steps) {
        let (_, map) = s.get(&format!("/event-maps/colour/{segment}/ben")).await;
        assert_eq!(map["bookable_event_type_id"], step["event_type_id"]);
    }

    // Someone renames the wash type, stretches it to 45 minutes and adds Anna as a host: the plan says
    // it will be put back, and the run does so in place.
    let wash = steps[1]["event_type_id"].as_i64().expect("wash id");
    salon::patch_event_type(
        &s.sim,
        salon::ANNA_KEY,
        Some(salon::TEAM_ID),
        wash,
        json!({
            "title": "Wash",
            "lengthInMinutes": 45,
            "hosts": [{"userId": salon::BEN}, {"userId": salon::ANNA}]
        }),
    )
    .await;
    let plan = run(
        s.db_url(),
        &[
            "provision",
            "--service",
            "colour",
            "--staff",
            "ben",
            "--dry-run",
        ],
    )
    .await;
    let text = stdout(&plan);
    assert_eq!(text.matches("would update").count(), 1, "{text}");
    assert_eq!(
        s.sim.state().event_type(wash).map(|e| e.length_in_minutes),
        Some(45),
        "a dry run changes nothing"
    );
    let fixed = run_json(
        s.db_url(),
        &[
            "provision",
            "--service",
            "colour",
            "--staff",
            "ben",
            "--json",
        ],
    )
    .await;
    assert_eq!(fixed["steps"][1]["action"], "update");
    assert_eq!(fixed["steps"][1]["event_type_id"], wash);
    let state = s.sim.state();
    let et = state.event_type(wash).expect("still there");
    assert_eq!(et.length_in_minutes, 15);
    assert_eq!(et.title, "Colour: Wash (2 of 4) - Ben");
    assert_eq!(
        et.hosts.iter().map(|h| h.user_id).collect::<Vec<_>>(),
        vec![salon::BEN]
    );
    assert_eq!(
        s.team_event_type_creates(),
        4,
        "updated in place, not recreated"
    );
}

async fn provision_without_a_calcom_team_says_how_to_set_one(database: TestDatabase) {
    run_json(
        &database.url,
        &[
            "tenant",
            "create",
            "--name",
            "Solo",
            "--calcom-api-key",
            salon::ANNA_KEY,
            "--json",
        ],
    )
    .await;
    let output = run(
        &database.url,
        &["provision", "--service", "colour", "--staff", "ben"],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--calcom-team-id"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Using a map
// ---------------------------------------------------------------------------------------

/// Books the one-segment cut for `staff` two days out and waits until the sync is synced
/// or needs a human; returns the sync view.
async fn book_cut(s: &Setup, staff: &str) -> Value {
    book(s, "cut", staff).await
}

/// Books `service_id` for `staff` two days out (top of the hour) and waits until the sync
/// is synced or needs a human; returns the sync view.
async fn book(s: &Setup, service_id: &str, staff: &str) -> Value {
    let start = (Utc::now() + Minutes::days(2))
        .duration_trunc(Minutes::hours(1))
        .expect("hour");
    let response = s
        .http
        .post(format!("{}/appointments", s.url))
        .bearer_auth(&s.key)
        .header("Prefer", "wait=10")
        .json(&json!({
            "service_id": service_id,
            "staff_id": staff,
            "start": start.to_rfc3339(),
            "time_zone": "Europe/Berlin",
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
        }))
        .send()
        .await
        .expect("book");
    assert_eq!(response.status(), 201, "{staff}");
    let appointment: Value = response.json().await.expect("json");
    let id = appointment["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, sync) = s.get(&format!("/appointments/{id}/sync")).await;
        if sync["status"] == "synced" || sync["requires_manual_review"] == true {
            return sync;
        }
        assert!(Instant::now() < deadline, "{staff}: never settled: {sync}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_map_left_on_a_managed_parent_is_re_resolved_once_when_calcom_refuses_it(
    database: TestDatabase,
) {
    let s = setup(database, salon::seed()).await;
    s.define(&[("cut", salon::cut_service())]).await;
    // Maps written before phasebook checked them (e.g. carried over from the old system):
    // both book the managed parent itself.
    let db = phasebook_api::store::Database::connect(s.db_url())
        .await
        .expect("database");
    let tenant_id: uuid::Uuid = s.tenant_id.parse().expect("tenant id");
    for staff in ["anna", "ben"] {
        db.event_maps()
            .put_event_map(
                tenant_id,
                &NewEventMap {
                    service_id: ServiceId::parse("cut").expect("id"),
                    segment_key: SegmentKey::parse("C").expect("key"),
                    staff_id: StaffId::parse(staff).expect("id"),
                    event_type_id: EventTypeId(salon::PARENT),
                    bookable_event_type_id: EventTypeId(salon::PARENT),
                    resolution: "individual".into(),
                    checked_at: Utc::now(),
                },
            )
            .await
            .expect("legacy map");
    }
    db.close().await;

    // Anna has a child: Cal.com's refusal leads to it, the booking lands there, and the map
    // now books it.
    let anna = book_cut(&s, "anna").await;
    assert_eq!(anna["status"], "synced", "{anna}");
    let (_, map) = s.get("/event-maps/cut/C/anna").await;
    assert_eq!(map["event_type_id"], salon::PARENT);
    assert_eq!(map["bookable_event_type_id"], salon::ANNA_CHILD);
    assert_eq!(map["resolution"], "managed_parent_child");

    // Ben has none: flagged for a human with the reason and the fix.
    let ben = book_cut(&s, "ben").await;
    assert_eq!(ben["requires_manual_review"], true, "{ben}");
    let reason = ben["review_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&salon::PARENT.to_string()) && reason.contains("ben"),
        "{reason}"
    );
    assert!(reason.contains("team event-type endpoints"), "{reason}");

    let state = s.sim.state();
    assert_eq!(
        state
            .bookings
            .iter()
            .map(|b| b.event_type_id)
            .collect::<Vec<_>>(),
        vec![Some(salon::ANNA_CHILD)],
        "one booking, on Anna's child; nothing on the parent"
    );
}

/// Resync re-resolves a segment that is not booked yet. Ben's own event type is readable
/// with the owner's key only through his listing, so the sync engine must resolve the way
/// the event-map PUT does, or it would flag the segment "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_books_on_another_stylists_own_event_type_once_the_slot_is_free() {
    let s = setup(TestDatabase::sqlite(), salon::seed()).await;
    s.define(&[("cut", salon::cut_service())]).await;
    s.map("cut", "C", "ben", salon::BEN_APPLY).await;
    let start = (Utc::now() + Minutes::days(2))
        .duration_trunc(Minutes::hours(1))
        .expect("hour");
    let busy = s
        .sim
        .sim
        .insert_booking(calcom_sim::SeedBooking::new(salon::BEN_APPLY, start))
        .expect("Ben is busy");
    let first = book_cut(&s, "ben").await;
    assert_eq!(first["requires_manual_review"], true, "{first}");
    s.sim.sim.remove_booking(&busy.uid);
    let id = first["appointment_id"].as_str().expect("id").to_string();
    let resync = s
        .http
        .post(format!("{}/resync/{id}", s.url))
        .bearer_auth(&s.key)
        .send()
        .await
        .expect("resync");
    assert_eq!(resync.status(), 202);
    let attempts = |sync: &Value| sync["attempts"].as_array().map_or(0, Vec::len);
    let before = attempts(&first);
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let (_, sync) = s.get(&format!("/appointments/{id}/sync")).await;
        if attempts(&sync) > before && sync["job_state"] == "done" {
            break sync;
        }
        assert!(Instant::now() < deadline, "resync never ran: {sync}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(settled["status"], "synced", "{settled}");
}

// ---------------------------------------------------------------------------------------
// The incident
// ---------------------------------------------------------------------------------------

/// Users, team and keys of the salon, but no event types: the test makes them the way the
/// salon did.
fn bare_salon() -> Seed {
    Seed {
        event_types: Vec::new(),
        ..salon::seed()
    }
}

/// `POST /v2/teams/{team}/event-types` with Anna's key; returns the answer's items.
async fn create_managed(sim: &RunningSim, slug: &str, length: i64, hosts: &[i64]) -> Vec<Value> {
    let body = json!({
        "title": slug,
        "slug": slug,
        "lengthInMinutes": length,
        "schedulingType": "managed",
        "hosts": hosts.iter().map(|h| json!({"userId": h})).collect::<Vec<_>>(),
    });
    let response = salon::http_client()
        .post(format!(
            "{}/v2/teams/{}/event-types",
            sim.base_url,
            salon::TEAM_ID
        ))
        .bearer_auth(salon::ANNA_KEY)
        .header("cal-api-version", "2024-06-14")
        .json(&body)
        .send()
        .await
        .expect("create managed type");
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.expect("json");
    answer["data"]
        .as_array()
        .cloned()
        .expect("parent and children")
}

async fn incident_second_host_without_child_is_refused_until_provisioned_then_both_book(
    database: TestDatabase,
) {
    let s = setup(database, bare_salon()).await;
    let service = json!({
        "name": "Colour",
        "segments": [
            {"key": "A", "name": "Apply colour", "duration_minutes": 30},
            {"key": "B", "name": "Wash", "duration_minutes": 15}
        ]
    });
    s.define(&[("colour", service)]).await;

    // The salon's set-up: one managed parent per segment, created with Anna as host…
    let mut parents = Vec::new();
    let mut anna_children = Vec::new();
    for (slug, length) in [("colour-apply", 30), ("colour-wash", 15)] {
        let items = create_managed(&s.sim, slug, length, &[salon::ANNA]).await;
        assert_eq!(items.len(), 2, "parent and Anna's child");
        parents.push(items[0]["id"].as_i64().expect("parent id"));
        anna_children.push(items[1]["id"].as_i64().expect("child id"));
    }
    // …and Ben added later by patching the event type through the personal endpoint,
    // which has no hosts field: Cal.com accepts the request and makes no child.
    for child in &anna_children {
        salon::patch_event_type(
            &s.sim,
            salon::ANNA_KEY,
            None,
            *child,
            json!({"hosts": [{"userId": salon::ANNA}, {"userId": salon::BEN}]}),
        )
        .await;
    }
    for parent in &parents {
        let children = salon::children_of(&s.sim, *parent);
        assert_eq!(children.len(), 1, "still only Anna's child");
        assert_eq!(children[0].1, salon::ANNA);
    }

    // Anna's maps resolve to her children.
    for ((segment, parent), child) in ["A", "B"].iter().zip(&parents).zip(&anna_children) {
        let map = s.map("colour", segment, "anna", *parent).await;
        assert_eq!(map["bookable_event_type_id"], *child);
        assert_eq!(map["resolution"], "managed_parent_child");
    }
    // Ben's are refused, with the explanation, and nothing is stored.
    let (status, problem) = s
        .put(
            "/event-maps/colour/A/ben",
            &json!({"event_type_id": parents[0]}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["type"],
        "https://phasebook.dev/problems/managed-parent-without-child"
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&parents[0].to_string()) && detail.contains("ben"),
        "{detail}"
    );
    assert!(
        problem["fix"]
            .as_str()
            .is_some_and(|f| f.contains("phasebook provision")),
        "{problem}"
    );
    let (status, _) = s.get("/event-maps/colour/A/ben").await;
    assert_eq!(status, 404);

    // The fix: provision Ben's own single-host types.
    let report = run_json(
        s.db_url(),
        &[
            "provision",
            "--service",
            "colour",
            "--staff",
            "ben",
            "--json",
        ],
    )
    .await;
    let ben_types: Vec<i64> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step["bookable_event_type_id"].as_i64().expect("stored"))
        .collect();
    assert_eq!(ben_types.len(), 2);

    // Real bookings for both stylists, made by the worker through the API.
    for staff in ["anna", "ben"] {
        let sync = book(&s, "colour", staff).await;
        assert_eq!(
            sync["status"], "synced",
            "{staff}'s appointment never synced: {sync}"
        );
    }
    let state = s.sim.state();
    let booked: Vec<(Option<i64>, &str)> = state
        .bookings
        .iter()
        .map(|b| (b.event_type_id, b.status.as_str()))
        .collect();
    assert_eq!(booked.len(), 4, "{booked:?}");
    for id in anna_children.iter().chain(&ben_types) {
        assert!(
            booked
                .iter()
                .any(|(et, status)| *et == Some(*id) && *status == "accepted"),
            "an accepted booking on event type {id}: {booked:?}"
        );
    }
    for parent in &parents {
        assert!(
            booked.iter().all(|(et, _)| *et != Some(*parent)),
            "nothing is booked on a managed parent"
        );
    }
}

phasebook_test_support::on_both_backends!(
    doctor_exits_1_with_a_table_and_json_when_something_is_wrong_and_0_when_clean,
    provision_creates_one_hidden_single_host_team_type_per_segment_once,
    provision_without_a_calcom_team_says_how_to_set_one,
    a_map_left_on_a_managed_parent_is_re_resolved_once_when_calcom_refuses_it,
    incident_second_host_without_child_is_refused_until_provisioned_then_both_book,
);
