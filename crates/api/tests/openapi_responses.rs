//! The API document against the real API: every operation the served `/openapi.json` lists
//! is called over HTTP on the running app (SQLite, and PostgreSQL when `DATABASE_URL` is
//! set; Cal.com is the emulator), as it succeeds and as it fails (no key, a bad path id, a
//! body that is not JSON, malformed or too large, an unknown query parameter, an empty
//! cursor, a used-up request limit). Each answer's status must be documented for the
//! operation and its body must match the documented schema, read strictly: a property the
//! document does not name is a mismatch too. Operations come from the document, so a new
//! route is checked without touching this file; a sample request below only makes its
//! success path reachable.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use phasebook_test_support::lift_request_limit as lift_rate_limit;
use phasebook_test_support::{TestApp, databases, fast_sync_config};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

const SERVICE: &str = "colour";
const STAFF: &str = "stylist-1";
/// What each bad-path-id call puts in every path parameter.
const BAD_ID: &str = "not%20an%20id";

/// The app, the emulator and the worker (see `phasebook_test_support::app`).
struct App {
    app: TestApp,
}

async fn spawn(database: TestDatabase) -> App {
    let mut worker = fast_sync_config("openapi-test");
    worker.retry.max_attempts = 3;
    let app = TestApp::builder()
        .service(SERVICE)
        .request_limit(1_000_000)
        .worker(worker)
        .spawn(database)
        .await;
    App { app }
}

phasebook_test_support::deref_to!(App => app: TestApp);

/// One documented operation.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    operation_id: String,
    keyed: bool,
    path_params: Vec<String>,
    required_query: Vec<String>,
    query: Vec<String>,
    has_body: bool,
    pointer: String,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if !op.is_object() || method == "parameters" {
                continue;
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let named = |place: &str, required: bool| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == place && (!required || p["required"] == true))
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            };
            let keyed = match op["security"].as_array() {
                None => true,
                Some(reqs) => reqs
                    .iter()
                    .any(|r| r.as_object().is_some_and(|r| !r.is_empty())),
            };
            out.push(Operation {
                method: method.clone(),
                path: path.clone(),
                operation_id: op["operationId"].as_str().unwrap_or_default().to_string(),
                keyed,
                path_params: named("path", false),
                required_query: named("query", true),
                query: named("query", false),
                has_body: op.get("requestBody").is_some(),
                pointer: format!("/paths/{}/{method}", escape(path)),
            });
        }
    }
    // Reads first, then changes, removals last, so every success path finds what it needs.
    let rank = |m: &str| match m {
        "get" => 0,
        "put" | "patch" => 1,
        "post" => 2,
        _ => 3,
    };
    out.sort_by_key(|o| (rank(&o.method), o.path.clone()));
    out
}

/// Object schemas without `additionalProperties` read as closed: every property an answer
/// carries must be documented.
fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for child in map.values_mut() {
                close_objects(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Checks one answer against the document; the error says what does not match.
fn check(
    document: &Value,
    op: &Operation,
    case: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<(), String> {
    let what = format!("{} ({case}) answered {status}", op.name());
    let responses = &document.pointer(&op.pointer).expect("operation")["responses"];
    let (key, response) = match responses.get(status.to_string()) {
        Some(r) => (status.to_string(), r),
        None => match responses.get("default") {
            Some(r) => ("default".to_string(), r),
            None => {
                return Err(format!(
                    "{what}, which is not documented: {}",
                    String::from_utf8_lossy(body)
                ));
            }
        },
    };
    if response["description"].as_str().is_none_or(str::is_empty) {
        return Err(format!("{what}: the response has no description"));
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} with a body the document does not describe"))
        };
    };
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !content.contains_key(mime) {
        return Err(format!(
            "{what} as {mime:?}; documented: {:?}",
            content.keys().collect::<Vec<_>>()
        ));
    }
    if !mime.ends_with("json") {
        return Ok(());
    }
    let instance: Value = serde_json::from_slice(body).map_err(|e| format!("{what}: {e}"))?;
    let mut root = document.clone();
    close_objects(&mut root);
    // A JSON pointer in a URI fragment: braces of path templates are percent-encoded.
    let pointer = format!(
        "#{}/responses/{key}/content/{}/schema",
        op.pointer,
        escape(mime)
    )
    .replace('{', "%7B")
    .replace('}', "%7D");
    root.as_object_mut()
        .expect("document")
        .insert("$ref".into(), Value::String(pointer.clone()));
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| format!("{what}: the schema at {pointer} does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}, a body that does not match {pointer}: {errors:#?}\n{instance:#}"
        ))
    }
}

/// What the success paths need: an appointment (synced), a hold, a key to revoke.
struct Subjects {
    appointment_id: String,
    hold_id: String,
    revocable_key_id: String,
}

impl App {
    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, String, Vec<u8>) {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let content_type = phasebook_test_support::content_type(&response);
        let bytes = response.bytes().await.expect("body").to_vec();
        (status, content_type, bytes)
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, _, bytes) = self
            .send(
                method,
                path,
                Some(&self.salon.ops_key),
                &[("prefer", "wait=5".to_string())],
                Some(("application/json", serde_json::to_vec(&body).expect("json"))),
            )
            .await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).expect("json")
    }

    async fn subjects(&self) -> Subjects {
        let appointment = self
            .json(
                "post",
                "/appointments",
                json!({
                    "service_id": SERVICE, "staff_id": STAFF, "start": "2030-01-07T09:00:00Z",
                    "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
                }),
            )
            .await;
        let hold = self
            .json(
                "post",
                "/holds",
                json!({"service_id": SERVICE, "staff_id": STAFF, "start": "2030-01-09T09:00:00Z"}),
            )
            .await;
        let key = self.json("post", "/keys", json!({"role": "viewer"})).await;
        let text = |v: &Value, field: &str| v[field].as_str().expect(field).to_string();
        Subjects {
            appointment_id: text(&appointment, "id"),
            hold_id: text(&hold, "id"),
            revocable_key_id: text(&key, "api_key_id"),
        }
    }

    /// A valid value for a path parameter, by its name (and, for the bare `id`, the resource).
    fn path_value(&self, subjects: &Subjects, op: &Operation, name: &str) -> String {
        match name {
            "service_id" => SERVICE.to_string(),
            "staff_id" => STAFF.to_string(),
            "segment_key" => "A".to_string(),
            "appointment_id" => subjects.appointment_id.clone(),
            "key_id" => subjects.revocable_key_id.clone(),
            "tenant_id" => self.salon.tenant_id.to_string(),
            "hold_id" => subjects.hold_id.clone(),
            "id" if op.path.starts_with("/holds") => subjects.hold_id.clone(),
            "id" => subjects.appointment_id.clone(),
            _ => "unknown".to_string(),
        }
    }

    /// The success-path body of an operation; `{}` for one this test has no sample of
    /// (its answer, likely a 422, is still checked against the document).
    fn sample_body(&self, op: &Operation) -> Value {
        let member = &self.account.staff[0];
        match op.operation_id.as_str() {
            "create_appointment" => json!({
                "service_id": SERVICE, "staff_id": STAFF, "start": "2030-01-08T09:00:00Z",
                "customer": {"name": "Grace Hopper", "phone": "+4915123456789"},
                "notes": "First visit"
            }),
            "update_appointment" => json!({"notes": "Prefers tea"}),
            "create_hold" => {
                json!({"service_id": SERVICE, "staff_id": STAFF, "start": "2030-01-10T09:00:00Z"})
            }
            "put_service" => json!({
                "name": "Colour",
                "segments": self.salon.segments.iter().map(|s| json!({
                    "key": s.key.as_str(), "name": s.name, "duration_minutes": s.duration_minutes,
                    "gap_after_minutes": s.gap_after_minutes
                })).collect::<Vec<_>>()
            }),
            "put_staff" => json!({
                "name": "Stylist one", "calcom_user_id": member.calcom_user_id,
                "calcom_username": member.calcom_username, "time_zone": "Europe/Berlin",
                "services": [SERVICE]
            }),
            "put_event_map" => json!({"event_type_id": self.account.event_types[0][0]}),
            "create_key" => json!({"role": "agent", "expires_in": "30d"}),
            "calcom_webhook" => json!({
                "triggerEvent": "BOOKING_CANCELLED",
                "createdAt": "2030-01-01T00:00:00Z",
                "payload": {"uid": "not-one-of-ours"}
            }),
            _ => json!({}),
        }
    }

    fn sample_query(name: &str) -> &'static str {
        match name {
            "service_id" => SERVICE,
            "staff_id" => STAFF,
            "from" => "2030-01-07",
            "to" => "2030-01-08",
            "time_zone" => "Europe/Berlin",
            "reason" => "calcom_unavailable",
            _ => "1",
        }
    }

    async fn webhook_signature(&self, body: &[u8]) -> String {
        let secret = phasebook_api::sync::SyncHandle::for_database(&self.db)
            .store()
            .webhook_secret(self.salon.tenant_id)
            .await
            .expect("secret")
            .expect("tenant");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Every call made for one operation: (case, path with query, key, body).
struct Call {
    case: &'static str,
    path: String,
    key: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, Vec<u8>)>,
}

async fn calls(app: &App, subjects: &Subjects, op: &Operation) -> Vec<Call> {
    let mut path = op.path.clone();
    let mut bad_path = op.path.clone();
    for name in &op.path_params {
        let slot = format!("{{{name}}}");
        path = path.replace(&slot, &app.path_value(subjects, op, name));
        bad_path = bad_path.replace(&slot, BAD_ID);
    }
    let query: Vec<String> = op
        .required_query
        .iter()
        .map(|name| format!("{name}={}", App::sample_query(name)))
        .collect();
    let with_query = |extra: Option<&str>| {
        let mut parts = query.clone();
        parts.extend(extra.map(str::to_string));
        if parts.is_empty() {
            path.clone()
        } else {
            format!("{path}?{}", parts.join("&"))
        }
    };
    let key = Some(app.salon.ops_key.clone());
    let sample = serde_json::to_vec(&app.sample_body(op)).expect("json");
    let json_body = |bytes: Vec<u8>| op.has_body.then_some(("application/json", bytes));
    let mut headers = Vec::new();
    if op.operation_id == "calcom_webhook" {
        headers.push(("x-cal-signature-256", app.webhook_signature(&sample).await));
    }
    let mut out = vec![Call {
        case: "success path",
        path: with_query(None),
        key: key.clone(),
        headers,
        body: json_body(sample.clone()),
    }];
    if op.keyed {
        out.push(Call {
            case: "no API key",
            path: with_query(None),
            key: None,
            headers: vec![],
            body: json_body(sample.clone()),
        });
    }
    if !op.path_params.is_empty() {
        out.push(Call {
            case: "bad path id",
            path: bad_path,
            key: key.clone(),
            headers: vec![],
            body: json_body(sample.clone()),
        });
    }
    if op.query.iter().any(|q| q == "cursor") {
        out.push(Call {
            case: "empty cursor",
            path: with_query(Some("cursor=")),
            key: key.clone(),
            headers: vec![],
            body: json_body(sample.clone()),
        });
    }
    if !op.query.is_empty() {
        out.push(Call {
            case: "unknown query parameter",
            path: with_query(Some("no_such_parameter=1")),
            key: key.clone(),
            headers: vec![],
            body: json_body(sample.clone()),
        });
    }
    if op.has_body {
        for (case, content_type, bytes) in [
            ("body not sent as JSON", "text/plain", sample.clone()),
            ("malformed JSON", "application/json", b"{,}".to_vec()),
            (
                "body too large",
                "application/json",
                serde_json::to_vec(&json!({"notes": "x".repeat(70 * 1024)})).expect("json"),
            ),
        ] {
            out.push(Call {
                case,
                path: with_query(None),
                key: key.clone(),
                headers: vec![],
                body: Some((content_type, bytes)),
            });
        }
    }
    out
}

#[tokio::test]
async fn every_documented_operation_answers_as_the_document_says() {
    for database in databases().await {
        let app = spawn(database).await;
        let (status, _, bytes) = app.send("get", "/openapi.json", None, &[], None).await;
        assert_eq!(status, 200);
        let document: Value = serde_json::from_slice(&bytes).expect("document");
        let subjects = app.subjects().await;
        let operations = operations(&document);
        assert!(operations.len() > 20, "{} operations", operations.len());

        let mut failures = Vec::new();
        let mut seen = BTreeSet::new();
        let mut bad_path_answers = Vec::new();
        for op in &operations {
            for call in calls(&app, &subjects, op).await {
                let (status, content_type, body) = app
                    .send(
                        &op.method,
                        &call.path,
                        call.key.as_deref(),
                        &call.headers,
                        call.body,
                    )
                    .await;
                seen.insert((op.name(), status));
                if let Err(e) = check(&document, op, call.case, status, &content_type, &body) {
                    failures.push(e);
                }
                if call.case == "empty cursor" {
                    assert_eq!(status, 422, "{} refuses an empty cursor", op.name());
                }
                if call.case == "bad path id" {
                    bad_path_answers.push((op.name(), status, body));
                }
            }
        }

        // A key whose request limit is used up, on every keyed operation.
        let limited = fixtures::seed_salon(
            &app.db,
            "http://127.0.0.1:9",
            "cal_unused",
            SERVICE,
            app.salon.segments.clone(),
            vec![],
        )
        .await
        .expect("second salon");
        lift_rate_limit(&app.db, &limited, 1).await;
        let mut limited_answers = 0;
        for op in operations
            .iter()
            .filter(|o| o.keyed && o.path_params.is_empty())
        {
            let body = op.has_body.then(|| ("application/json", b"{}".to_vec()));
            let (status, content_type, bytes) = app
                .send(&op.method, &op.path, Some(&limited.ops_key), &[], body)
                .await;
            limited_answers += usize::from(status == 429);
            if let Err(e) = check(
                &document,
                op,
                "limit used up",
                status,
                &content_type,
                &bytes,
            ) {
                failures.push(e);
            }
        }

        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        // One answer to a bad path id on every route, naming the parameter.
        for (name, status, body) in bad_path_answers {
            let problem: Value = serde_json::from_slice(&body).expect("problem");
            assert_eq!(status, 400, "{name}: {problem}");
            assert_eq!(
                problem["type"], "https://phasebook.dev/problems/invalid-path-parameter",
                "{name}"
            );
            let field = problem["field"].as_str().unwrap_or_default();
            assert!(
                name.contains(&format!("{{{field}}}")),
                "{name} names {field:?}"
            );
        }
        assert!(limited_answers > 0, "no call met the request limit");
        // The success paths really ran: a documented 2xx for most operations.
        let succeeded = operations
            .iter()
            .filter(|o| {
                seen.iter()
                    .any(|(n, s)| *n == o.name() && (200..300).contains(s))
            })
            .count();
        assert!(
            succeeded + 2 >= operations.len(),
            "only {succeeded} of {} operations answered 2xx: {seen:?}",
            operations.len()
        );
    }
}
