//! Shared test harness: a sim with the salon on loopback, a raw HTTP client that sends
//! Cal.com's headers, and the OpenAPI response validator.
#![allow(dead_code)]

use std::sync::OnceLock;

use calcom_sim::{RunningSim, Seed, Sim, SimConfig, salon};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

pub const BOOKINGS: &str = "2024-08-13";
pub const SLOTS: &str = "2024-09-04";
pub const EVENT_TYPES: &str = "2024-06-14";

pub async fn salon_sim() -> RunningSim {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> RunningSim {
    let sim = Sim::new(config);
    sim.seed(Seed::salon()).expect("seed");
    sim.spawn().await.expect("spawn")
}

/// A Monday in the future, at `h:m` Berlin summer time (UTC+2).
pub fn berlin(day_offset: i64, h: u32, m: u32) -> DateTime<Utc> {
    // 2030-06-03 is a Monday.
    Utc.with_ymd_and_hms(2030, 6, 3, h, m, 0)
        .single()
        .expect("date")
        - chrono::Duration::hours(2)
        + chrono::Duration::days(day_offset)
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub key: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Api {
    pub fn new(sim: &RunningSim) -> Self {
        Self {
            base: sim.base_url.clone(),
            http: reqwest::Client::new(),
            key: Some(salon::API_KEY.to_owned()),
        }
    }

    pub fn with_key(mut self, key: Option<&str>) -> Self {
        self.key = key.map(str::to_owned);
        self
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        version: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(v) = version {
            req = req.header("cal-api-version", v);
        }
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let response = req.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, version: &str) -> Answer {
        self.call(reqwest::Method::GET, path, Some(version), None)
            .await
    }

    pub async fn post(&self, path: &str, version: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(version), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, version: &str, body: Value) -> Answer {
        self.call(reqwest::Method::PATCH, path, Some(version), Some(body))
            .await
    }

    pub async fn book(&self, event_type_id: i64, start: DateTime<Utc>) -> Answer {
        self.post("/v2/bookings", BOOKINGS, booking_body(event_type_id, start))
            .await
    }

    pub async fn state(&self) -> calcom_sim::State {
        let r = self
            .http
            .get(format!("{}/__sim/state", self.base))
            .send()
            .await
            .expect("state");
        r.json().await.expect("state json")
    }
}

pub fn booking_body(event_type_id: i64, start: DateTime<Utc>) -> Value {
    json!({
        "start": iso(start),
        "eventTypeId": event_type_id,
        "attendee": {"name": "Bea Kunde", "email": "bea@example.com", "timeZone": "Europe/Berlin"},
        "metadata": {"appointment_id": "a1", "segment": "A"},
    })
}

/// The Cal.com error message of either body shape.
pub fn message(body: &Value) -> String {
    body.pointer("/error/message")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

// ---- OpenAPI response validation (same approach as calcom-client's contract tests) ----

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/calcom/openapi-v2.json"
        );
        let text = std::fs::read_to_string(path).expect("read openapi-v2.json");
        let mut spec: Value = serde_json::from_str(&text).expect("parse openapi-v2.json");
        translate_nullable(&mut spec);
        spec
    })
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema; read it as `anyOf [schema, null]`.
fn translate_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                translate_nullable(child);
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                let inner = Value::Object(std::mem::take(map));
                map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(translate_nullable),
        _ => {}
    }
}

/// Errors of `instance` against the schema at `pointer` inside the spec (the whole
/// document is the root so `$ref`s resolve; draft 4 as OpenAPI 3.0 is a draft-4 dialect).
pub fn schema_errors_at(pointer: &str, instance: &Value) -> Vec<String> {
    let mut root = spec().clone();
    root.as_object_mut()
        .expect("object")
        .insert("$ref".into(), Value::String(format!("#{pointer}")));
    let v = jsonschema::draft4::new(&root).unwrap_or_else(|e| panic!("compile {pointer}: {e}"));
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

pub fn schema_errors(name: &str, instance: &Value) -> Vec<String> {
    schema_errors_at(&format!("/components/schemas/{name}"), instance)
}

pub fn assert_schema(name: &str, instance: &Value) {
    let errs = schema_errors(name, instance);
    assert!(errs.is_empty(), "{name} rejects {instance}: {errs:#?}");
}
