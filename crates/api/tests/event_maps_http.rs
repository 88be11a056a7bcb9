//! Event maps over real HTTP against the Cal.com emulator, on SQLite and (when
//! `DATABASE_URL` is set) PostgreSQL: every branch of `PUT /event-maps/…`, what `GET`
//! returns, that a refusal stores nothing, who may do what, and each finding of
//! `GET /event-maps/audit`.

mod event_maps_salon;

use calcom_sim::RunningSim;
use chrono::{DateTime, Utc};
use event_maps_salon as salon;
use phasebook_api::auth::{self, TenantSettings};
use phasebook_api::state::AppState;
use phasebook_api::store::event_maps::NewEventMap;
use phasebook_api::store::{Database, Role};
use phasebook_domain::{EventTypeId, SegmentKey, ServiceId, StaffId};
use phasebook_test_support::{TestDatabase, send_as};
use reqwest::{Method, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Salon {
    url: String,
    http: reqwest::Client,
    db: Database,
    other_tenant_id: Uuid,
    ops: String,
    agent: String,
    viewer: String,
    /// A second tenant whose Cal.com is not reachable.
    other_ops: String,
    sim: RunningSim,
    stop: CancellationToken,
    _database: TestDatabase,
}

impl Drop for Salon {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A loopback address nothing listens on.
fn dead_calcom_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn spawn(database: TestDatabase) -> Salon {
    let sim = salon::spawn_sim().await;
    let db = database.connect().await.expect("database");
    let tenant = |name: &str, url: String| TenantSettings {
        name: name.into(),
        calcom_api_key: SecretString::from(salon::ANNA_KEY),
        calcom_base_url: url,
        calcom_team_id: Some(salon::TEAM_ID),
    };
    let ops = auth::create_tenant(db.store(), tenant("Salon Aurora", sim.base_url.clone()))
        .await
        .expect("tenant");
    let other = auth::create_tenant(db.store(), tenant("Salon Borealis", dead_calcom_url()))
        .await
        .expect("other tenant");
    let key = |role| auth::issue_api_key(db.store(), ops.tenant_id, role);
    let agent = key(Role::Agent).await.expect("agent key");
    let viewer = key(Role::Viewer).await.expect("viewer key");
    let stop = CancellationToken::new();
    let url = phasebook_test_support::serve_app(AppState::new(db.clone()), stop.clone()).await;
    let secret = |k: &SecretString| k.expose_secret().to_string();
    let salon = Salon {
        url,
        http: salon::http_client(),
        db,
        other_tenant_id: other.tenant_id,
        ops: secret(&ops.api_key),
        agent: secret(&agent.api_key),
        viewer: secret(&viewer.api_key),
        other_ops: secret(&other.api_key),
        sim,
        stop,
        _database: database,
    };
    salon.define().await;
    salon
}

impl Salon {
    async fn put(&self, path: &str, key: &str, body: &Value) -> Response {
        send_as(&self.http, &self.url, Method::PUT, path, key, Some(body)).await
    }

    async fn get(&self, path: &str, key: &str) -> Response {
        send_as(&self.http, &self.url, Method::GET, path, key, None).await
    }

    /// Services `colour` and `cut`, stylists `anna` and `ben`.
    async fn define(&self) {
        for (path, body) in [
            ("/services/colour", salon::colour_service()),
            ("/services/cut", salon::cut_service()),
            ("/staff/anna", salon::staff("Anna", salon::ANNA, "anna")),
            ("/staff/ben", salon::staff("Ben", salon::BEN, "ben")),
        ] {
            let response = self.put(path, &self.ops, &body).await;
            assert_eq!(response.status(), 200, "{path}");
        }
    }

    async fn map(&self, service: &str, segment: &str, staff: &str, event_type: i64) -> Response {
        self.put(
            &format!("/event-maps/{service}/{segment}/{staff}"),
            &self.ops,
            &json!({"event_type_id": event_type}),
        )
        .await
    }

    /// Maps and asserts Cal.com accepted it; returns the stored map.
    async fn map_ok(&self, service: &str, segment: &str, staff: &str, event_type: i64) -> Value {
        let response = self.map(service, segment, staff, event_type).await;
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            status, 200,
            "{service}/{segment}/{staff} -> {event_type}: {body}"
        );
        body
    }

    async fn stored(&self, service: &str, segment: &str, staff: &str) -> Option<Value> {
        let response = self
            .get(
                &format!("/event-maps/{service}/{segment}/{staff}"),
                &self.ops,
            )
            .await;
        match response.status().as_u16() {
            200 => Some(response.json().await.expect("json")),
            404 => None,
            other => panic!("GET map answered {other}"),
        }
    }

    /// How many maps `GET /event-maps` lists for the tenant.
    async fn map_rows(&self) -> usize {
        let response = self.get("/event-maps", &self.ops).await;
        assert_eq!(response.status(), 200);
        let list: Value = response.json().await.expect("json");
        list["items"].as_array().map_or(0, Vec::len)
    }

    async fn audit(&self) -> Value {
        let response = self.get("/event-maps/audit", &self.ops).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }
}

/// Asserts a problem+json answer of `status` and `slug`; returns the document.
async fn problem(response: Response, status: u16, slug: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = phasebook_test_support::content_type(&response);
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(
        body["type"],
        format!("https://phasebook.dev/problems/{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    body
}

fn text(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------
// Storing a map
// ---------------------------------------------------------------------------------------

async fn individual_type_owned_by_the_stylist_is_bookable_as_is(s: Salon) {
    let before = Utc::now();
    let put = s.map_ok("colour", "A", "anna", salon::ANNA_APPLY).await;
    assert_eq!(put["event_type_id"], salon::ANNA_APPLY);
    assert_eq!(put["bookable_event_type_id"], salon::ANNA_APPLY);
    assert_eq!(put["resolution"], "individual");
    let checked: DateTime<Utc> = text(&put, "checked_at").parse().expect("checked_at");
    assert!(checked >= before && checked <= Utc::now(), "{checked}");

    let got = s.stored("colour", "A", "anna").await.expect("stored");
    for field in [
        "event_type_id",
        "bookable_event_type_id",
        "resolution",
        "checked_at",
    ] {
        assert_eq!(got[field], put[field], "{field}");
    }

    // Ben's own type, which the owner's key cannot read by id: found in his listing.
    let ben = s.map_ok("colour", "A", "ben", salon::BEN_APPLY).await;
    assert_eq!(ben["bookable_event_type_id"], salon::BEN_APPLY);
    assert_eq!(ben["resolution"], "individual");
}

async fn managed_parent_is_stored_as_the_stylists_child(s: Salon) {
    let put = s.map_ok("colour", "C", "anna", salon::PARENT).await;
    assert_eq!(
        put["event_type_id"],
        salon::PARENT,
        "the configured id is kept"
    );
    assert_eq!(put["bookable_event_type_id"], salon::ANNA_CHILD);
    assert_eq!(put["resolution"], "managed_parent_child");
    let got = s.stored("colour", "C", "anna").await.expect("stored");
    assert_eq!(got["bookable_event_type_id"], salon::ANNA_CHILD);

    // Mapping the child itself is fine too.
    let child = s.map_ok("cut", "C", "anna", salon::ANNA_CHILD).await;
    assert_eq!(child["bookable_event_type_id"], salon::ANNA_CHILD);
    assert_eq!(child["resolution"], "managed_child");
}

async fn managed_parent_without_child_is_refused_naming_parent_user_and_both_fixes(s: Salon) {
    let body = problem(
        s.map("colour", "C", "ben", salon::PARENT).await,
        422,
        "managed-parent-without-child",
    )
    .await;
    let detail = text(&body, "detail");
    for needle in [
        &salon::PARENT.to_string(),
        salon::PARENT_SLUG,
        "ben",
        &salon::BEN.to_string(),
    ] {
        assert!(detail.contains(needle), "detail names {needle}: {detail}");
    }
    let fix = text(&body, "fix");
    assert!(
        fix.contains("team event-type endpoints") && fix.contains("individual event type"),
        "both fixes: {fix}"
    );
    assert!(s.stored("colour", "C", "ben").await.is_none());
    assert_eq!(s.map_rows().await, 0);
}

async fn a_wrong_username_is_named_when_the_parent_lists_the_host(s: Salon) {
    // Anna is stored with a username Cal.com does not know.
    let response = s
        .put(
            "/staff/anna",
            &s.ops,
            &salon::staff("Anna", salon::ANNA, "anne"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = problem(
        s.map("colour", "C", "anna", salon::PARENT).await,
        422,
        "managed-parent-without-child",
    )
    .await;
    let detail = text(&body, "detail");
    assert!(
        detail.contains(&format!("user {}", salon::ANNA)) && detail.contains("anne"),
        "{detail}"
    );
    assert!(text(&body, "fix").contains("calcom_username"), "{body}");
    assert_eq!(s.map_rows().await, 0);
}

async fn team_types_are_bookable_only_for_their_hosts(s: Salon) {
    let rr = s.map_ok("colour", "A", "anna", salon::RR_BOTH).await;
    assert_eq!(rr["resolution"], "round_robin_host");
    assert_eq!(rr["bookable_event_type_id"], salon::RR_BOTH);
    let co = s
        .map_ok("colour", "C", "anna", salon::COLLECTIVE_ANNA)
        .await;
    assert_eq!(co["resolution"], "collective_host");

    for event_type in [salon::RR_BEN, salon::COLLECTIVE_BEN] {
        let body = problem(
            s.map("cut", "C", "anna", event_type).await,
            422,
            "host-not-assigned",
        )
        .await;
        let detail = text(&body, "detail");
        assert!(
            detail.contains(&event_type.to_string()) && detail.contains("anna"),
            "{detail}"
        );
        assert!(!text(&body, "fix").is_empty());
    }
    assert!(s.stored("cut", "C", "anna").await.is_none());
}

async fn a_length_other_than_the_segments_is_refused_with_both_numbers(s: Salon) {
    let body = problem(
        s.map("colour", "A", "anna", salon::ANNA_LONG).await,
        422,
        "event-type-length-mismatch",
    )
    .await;
    let detail = text(&body, "detail");
    assert!(
        detail.contains("45 minutes") && detail.contains("30 minutes"),
        "{detail}"
    );
    assert!(text(&body, "fix").contains("30 minutes"));
    // A managed parent's length is checked too (30 min parent, 20 min segment).
    problem(
        s.map("colour", "D", "anna", salon::PARENT).await,
        422,
        "event-type-length-mismatch",
    )
    .await;
    assert_eq!(s.map_rows().await, 0);
}

async fn missing_invisible_or_foreign_event_types_are_422_not_500(s: Salon) {
    let missing = problem(
        s.map("colour", "A", "anna", salon::MISSING).await,
        422,
        "event-type-not-found",
    )
    .await;
    assert!(text(&missing, "detail").contains(&salon::MISSING.to_string()));
    assert!(!text(&missing, "fix").is_empty());
    // Hidden types are only shown to their owner, and the tenant's key is Anna's.
    problem(
        s.map("colour", "A", "ben", salon::BEN_HIDDEN).await,
        422,
        "event-type-not-found",
    )
    .await;
    // Anna's own type mapped for Ben.
    let foreign = problem(
        s.map("colour", "A", "ben", salon::ANNA_APPLY).await,
        422,
        "event-type-owned-by-another-user",
    )
    .await;
    assert!(text(&foreign, "detail").contains("ben"));
    // Ben's own type mapped for Anna: the key cannot read it by id, yet the cause is the
    // same, and so is the answer, naming Ben's Cal.com user.
    let foreign = problem(
        s.map("colour", "A", "anna", salon::BEN_APPLY).await,
        422,
        "event-type-owned-by-another-user",
    )
    .await;
    let detail = text(&foreign, "detail");
    assert!(
        detail.contains(&salon::BEN.to_string()) && detail.contains("anna"),
        "{detail}"
    );
    assert_eq!(s.map_rows().await, 0);
}

async fn unreachable_calcom_is_a_502_problem_and_stores_nothing(s: Salon) {
    for (path, body) in [
        ("/services/cut", salon::cut_service()),
        ("/staff/anna", salon::staff("Anna", salon::ANNA, "anna")),
    ] {
        assert_eq!(s.put(path, &s.other_ops, &body).await.status(), 200);
    }
    let response = s
        .put(
            "/event-maps/cut/C/anna",
            &s.other_ops,
            &json!({"event_type_id": salon::ANNA_CUT}),
        )
        .await;
    let body = problem(response, 502, "calcom-failed").await;
    let detail = text(&body, "detail");
    assert!(detail.contains("could not be reached"), "{detail}");
    let missing = s.get("/event-maps/cut/C/anna", &s.other_ops).await;
    assert_eq!(missing.status(), 404);
}

async fn a_key_calcom_rejects_is_a_502_naming_it(s: Salon) {
    let wrong = auth::create_tenant(
        s.db.store(),
        TenantSettings {
            name: "Salon Wrong Key".into(),
            calcom_api_key: SecretString::from("cal_live_revoked"),
            calcom_base_url: s.sim.base_url.clone(),
            calcom_team_id: Some(salon::TEAM_ID),
        },
    )
    .await
    .expect("tenant");
    let key = wrong.api_key.expose_secret().to_string();
    for (path, body) in [
        ("/services/cut", salon::cut_service()),
        ("/staff/anna", salon::staff("Anna", salon::ANNA, "anna")),
    ] {
        assert_eq!(s.put(path, &key, &body).await.status(), 200);
    }
    let response = s
        .put(
            "/event-maps/cut/C/anna",
            &key,
            &json!({"event_type_id": salon::ANNA_CUT}),
        )
        .await;
    let body = problem(response, 502, "calcom-failed").await;
    assert_eq!(body["code"], "unauthorized", "{body}");
    assert!(
        !text(&body, "detail").contains("cal_live_revoked"),
        "the key is never echoed"
    );
    assert_eq!(s.get("/event-maps/cut/C/anna", &key).await.status(), 404);
}

async fn calcom_failing_is_a_502_and_the_audit_says_unverified(s: Salon) {
    s.map_ok("cut", "C", "anna", salon::ANNA_CUT).await;
    s.sim.sim.set_faults(calcom_sim::Faults::everywhere(
        7,
        calcom_sim::RouteFaults {
            error_rate: 1.0,
            ..Default::default()
        },
    ));
    let body = problem(
        s.map("colour", "A", "anna", salon::ANNA_APPLY).await,
        502,
        "calcom-failed",
    )
    .await;
    assert_eq!(body["code"], "server", "{body}");
    assert!(s.stored("colour", "A", "anna").await.is_none());
    let audit = s.audit().await;
    assert_finding(&audit, ("cut", "C", "anna"), "warning", "unverified");
    // The stored map is untouched.
    assert_eq!(
        s.stored("cut", "C", "anna").await.expect("kept")["bookable_event_type_id"],
        salon::ANNA_CUT
    );
}

async fn audit_marks_maps_it_cannot_check_as_unverified(s: Salon) {
    for (path, body) in [
        ("/services/cut", salon::cut_service()),
        ("/staff/anna", salon::staff("Anna", salon::ANNA, "anna")),
    ] {
        assert_eq!(s.put(path, &s.other_ops, &body).await.status(), 200);
    }
    // A map stored while Cal.com was still reachable.
    s.db.event_maps()
        .put_event_map(
            s.other_tenant_id,
            &NewEventMap {
                service_id: ServiceId::parse("cut").expect("id"),
                segment_key: SegmentKey::parse("C").expect("key"),
                staff_id: StaffId::parse("anna").expect("id"),
                event_type_id: EventTypeId(salon::ANNA_CUT),
                bookable_event_type_id: EventTypeId(salon::ANNA_CUT),
                resolution: "individual".into(),
                checked_at: Utc::now(),
            },
        )
        .await
        .expect("store a map");
    let response = s.get("/event-maps/audit", &s.other_ops).await;
    assert_eq!(response.status(), 200, "the audit still answers");
    let audit: Value = response.json().await.expect("json");
    assert_finding(&audit, ("cut", "C", "anna"), "warning", "unverified");
    assert!(text(finding(&audit, "cut", "C", "anna"), "fix").contains("connectivity"));
    assert_eq!(audit["ok"], false);
}

async fn a_refusal_keeps_the_previous_map(s: Salon) {
    let first = s.map_ok("colour", "A", "anna", salon::ANNA_APPLY).await;
    for event_type in [salon::ANNA_LONG, salon::MISSING, salon::RR_BEN] {
        assert_eq!(
            s.map("colour", "A", "anna", event_type).await.status(),
            422,
            "{event_type}"
        );
    }
    let got = s.stored("colour", "A", "anna").await.expect("kept");
    assert_eq!(got["event_type_id"], salon::ANNA_APPLY);
    assert_eq!(got["checked_at"], first["checked_at"]);
    assert_eq!(s.map_rows().await, 1);
}

async fn only_ops_may_map_and_other_tenants_see_nothing(s: Salon) {
    let body = json!({"event_type_id": salon::ANNA_APPLY});
    for key in [&s.agent, &s.viewer] {
        let response = s.put("/event-maps/colour/A/anna", key, &body).await;
        assert_eq!(response.status(), 403);
    }
    let anonymous = s
        .http
        .put(format!("{}/event-maps/colour/A/anna", s.url))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(s.map_rows().await, 0);

    s.map_ok("colour", "A", "anna", salon::ANNA_APPLY).await;
    for key in [&s.agent, &s.viewer] {
        for path in [
            "/event-maps/colour/A/anna",
            "/event-maps",
            "/event-maps/audit",
        ] {
            assert_eq!(s.get(path, key).await.status(), 403, "{path}");
        }
    }
    // Another tenant's ops key: the map and the service do not exist for it.
    let theirs = s.get("/event-maps/colour/A/anna", &s.other_ops).await;
    assert_eq!(theirs.status(), 404);
    let overwrite = s
        .put("/event-maps/colour/A/anna", &s.other_ops, &body)
        .await;
    assert_eq!(overwrite.status(), 404);
    let audit = s.get("/event-maps/audit", &s.other_ops).await;
    let audit: Value = audit.json().await.expect("json");
    assert_eq!(
        audit["findings"],
        json!([]),
        "nothing of ours in their audit"
    );
    // Unknown segment or staff member.
    assert_eq!(
        s.put("/event-maps/colour/Z/anna", &s.ops, &body)
            .await
            .status(),
        404
    );
    assert_eq!(
        s.put("/event-maps/colour/A/zoe", &s.ops, &body)
            .await
            .status(),
        404
    );
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

fn finding<'a>(audit: &'a Value, service: &str, segment: &str, staff: &str) -> &'a Value {
    audit["findings"]
        .as_array()
        .and_then(|all| {
            all.iter().find(|f| {
                f["service_id"] == service && f["segment_key"] == segment && f["staff_id"] == staff
            })
        })
        .unwrap_or_else(|| panic!("no finding for {service}/{segment}/{staff}: {audit}"))
}

fn assert_finding(audit: &Value, cell: (&str, &str, &str), severity: &str, code: &str) {
    let f = finding(audit, cell.0, cell.1, cell.2);
    assert_eq!(f["severity"], severity, "{f}");
    assert_eq!(f["code"], code, "{f}");
    assert!(!text(f, "message").is_empty(), "{f}");
    if severity == "ok" {
        assert_eq!(f["fix"], "", "{f}");
    } else {
        assert!(!text(f, "fix").is_empty(), "{f}");
    }
}

/// Anna: A individual, B collective host, C managed parent, D a managed child configured
/// directly; the cut individual. Ben: A only.
async fn map_the_salon(s: &Salon) {
    s.map_ok("colour", "A", "anna", salon::ANNA_APPLY).await;
    s.map_ok("colour", "B", "anna", salon::COLLECTIVE_ANNA_15)
        .await;
    s.map_ok("colour", "C", "anna", salon::PARENT).await;
    s.map_ok("colour", "D", "anna", salon::ANNA_CHILD_20).await;
    s.map_ok("cut", "C", "anna", salon::ANNA_CUT).await;
    s.map_ok("colour", "A", "ben", salon::BEN_APPLY).await;
}

async fn audit_reports_every_finding_with_severity_and_fix(s: Salon) {
    // Before anything is mapped, every stylist is listed for every segment.
    let empty = s.audit().await;
    assert_eq!(empty["ok"], false);
    assert_finding(&empty, ("colour", "A", "ben"), "error", "service-unmapped");
    assert_finding(&empty, ("cut", "C", "anna"), "error", "service-unmapped");

    map_the_salon(&s).await;
    let audit = s.audit().await;
    for (segment, staff) in [("A", "anna"), ("B", "anna"), ("C", "anna"), ("D", "anna")] {
        assert_finding(&audit, ("colour", segment, staff), "ok", "ok");
    }
    assert_finding(&audit, ("cut", "C", "anna"), "ok", "ok");
    assert_finding(&audit, ("colour", "A", "ben"), "ok", "ok");
    // Completeness: Ben has A but not B, C, D; the appointment would half sync.
    for segment in ["B", "C", "D"] {
        assert_finding(
            &audit,
            ("colour", segment, "ben"),
            "error",
            "segment-unmapped",
        );
        let f = finding(&audit, "colour", segment, "ben");
        assert!(text(f, "fix").contains("phasebook provision --service colour --staff ben"));
    }
    // Ben performs no cut: he is not listed for it.
    assert_eq!(
        audit["findings"].as_array().map(|all| all
            .iter()
            .filter(|f| f["service_id"] == "cut" && f["staff_id"] == "ben")
            .count()),
        Some(0)
    );
    assert_eq!(audit["errors"], 3);
    assert_eq!(audit["ok"], false);

    // Now people change things in Cal.com.
    // Length changed: Anna makes her colour type 45 minutes.
    salon::patch_event_type(
        &s.sim,
        salon::ANNA_KEY,
        None,
        salon::ANNA_APPLY,
        json!({"lengthInMinutes": 45}),
    )
    .await;
    // No longer bookable for that host: the collective wash type goes to Ben.
    salon::patch_event_type(
        &s.sim,
        salon::ANNA_KEY,
        Some(salon::TEAM_ID),
        salon::COLLECTIVE_ANNA_15,
        json!({"hosts": [{"userId": salon::BEN}]}),
    )
    .await;
    // Child changed: Anna is dropped from the managed parent and added back.
    for hosts in [json!([]), json!([{"userId": salon::ANNA}])] {
        salon::patch_event_type(
            &s.sim,
            salon::ANNA_KEY,
            Some(salon::TEAM_ID),
            salon::PARENT,
            json!({ "hosts": hosts }),
        )
        .await;
    }
    let children = salon::children_of(&s.sim, salon::PARENT);
    assert_eq!(children.len(), 1);
    assert_ne!(children[0].0, salon::ANNA_CHILD, "Cal.com made a new child");
    // Gone: the 20-minute parent loses its only host, so Anna's child is deleted.
    salon::patch_event_type(
        &s.sim,
        salon::ANNA_KEY,
        Some(salon::TEAM_ID),
        salon::PARENT_20,
        json!({"hosts": []}),
    )
    .await;
    assert!(s.sim.state().event_type(salon::ANNA_CHILD_20).is_none());

    let audit = s.audit().await;
    assert_finding(
        &audit,
        ("colour", "A", "anna"),
        "error",
        "event-type-length-mismatch",
    );
    let length = finding(&audit, "colour", "A", "anna");
    assert!(text(length, "message").contains("45 minutes"));
    assert_finding(
        &audit,
        ("colour", "B", "anna"),
        "error",
        "host-not-assigned",
    );
    assert_finding(&audit, ("colour", "C", "anna"), "error", "bookable-changed");
    let changed = finding(&audit, "colour", "C", "anna");
    assert!(
        text(changed, "message").contains(&children[0].0.to_string()),
        "{changed}"
    );
    assert_finding(
        &audit,
        ("colour", "D", "anna"),
        "error",
        "event-type-not-found",
    );
    assert_finding(&audit, ("cut", "C", "anna"), "ok", "ok");
    assert_eq!(audit["errors"], 7);

    // The audit only reads: every map is as it was stored.
    let stored = s.stored("colour", "C", "anna").await.expect("map");
    assert_eq!(stored["bookable_event_type_id"], salon::ANNA_CHILD);
    // Re-PUT, as the fix says, and that finding is gone.
    let again = s.map_ok("colour", "C", "anna", salon::PARENT).await;
    assert_eq!(again["bookable_event_type_id"], children[0].0);
    assert_finding(&s.audit().await, ("colour", "C", "anna"), "ok", "ok");

    // Anna is taken off the managed parent: her child goes, and the map with it.
    salon::patch_event_type(
        &s.sim,
        salon::ANNA_KEY,
        Some(salon::TEAM_ID),
        salon::PARENT,
        json!({"hosts": [{"userId": salon::BEN}]}),
    )
    .await;
    let audit = s.audit().await;
    assert_finding(
        &audit,
        ("colour", "C", "anna"),
        "error",
        "managed-parent-without-child",
    );
    let f = finding(&audit, "colour", "C", "anna");
    assert!(text(f, "fix").contains("team event-type endpoints"), "{f}");
}

async fn audit_warns_when_a_round_robin_may_book_someone_else(s: Salon) {
    s.map_ok("cut", "C", "anna", salon::RR_BOTH).await;
    let audit = s.audit().await;
    assert_finding(
        &audit,
        ("cut", "C", "anna"),
        "warning",
        "round-robin-shared",
    );
    assert_eq!(audit["warnings"], 1);
    assert_eq!(audit["ok"], false);
}

async fn audit_of_a_fully_mapped_salon_is_clean(s: Salon) {
    for (service, segment, event_type) in [
        ("colour", "A", salon::ANNA_APPLY),
        ("colour", "B", salon::ANNA_WASH),
        ("colour", "C", salon::PARENT),
        ("colour", "D", salon::ANNA_BLOW_DRY),
        ("cut", "C", salon::ANNA_CUT),
    ] {
        s.map_ok(service, segment, "anna", event_type).await;
    }
    let audit = s.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(audit["errors"], 0);
    assert_eq!(audit["warnings"], 0);
    assert_eq!(audit["findings"].as_array().map(Vec::len), Some(5));
}

phasebook_test_support::on_both_backends!(
    with spawn;
    individual_type_owned_by_the_stylist_is_bookable_as_is,
    managed_parent_is_stored_as_the_stylists_child,
    managed_parent_without_child_is_refused_naming_parent_user_and_both_fixes,
    a_wrong_username_is_named_when_the_parent_lists_the_host,
    team_types_are_bookable_only_for_their_hosts,
    a_length_other_than_the_segments_is_refused_with_both_numbers,
    missing_invisible_or_foreign_event_types_are_422_not_500,
    unreachable_calcom_is_a_502_problem_and_stores_nothing,
    a_key_calcom_rejects_is_a_502_naming_it,
    audit_marks_maps_it_cannot_check_as_unverified,
    calcom_failing_is_a_502_and_the_audit_says_unverified,
    a_refusal_keeps_the_previous_map,
    only_ops_may_map_and_other_tenants_see_nothing,
    audit_reports_every_finding_with_severity_and_fix,
    audit_warns_when_a_round_robin_may_book_someone_else,
    audit_of_a_fully_mapped_salon_is_clean,
);
