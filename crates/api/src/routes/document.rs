//! What every operation of the API document shares, added once after the handlers'
//! annotations are merged: the answers the extractors and the guard give on any route (401,
//! 429, 400, 413, 415), the rules of the path parameters, and a description on every
//! response. A route added later gets them without repeating them.

use serde_json::{Map, Value, json};

use crate::extract::MAX_BODY_BYTES;

const PROBLEM: &str = "#/components/schemas/Problem";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// Operations that read their body as raw bytes (to check a signature) rather than through
/// the JSON extractor, so they never answer 415.
const RAW_BODY_OPERATIONS: [&str; 1] = ["calcom_webhook"];
/// A service or staff id, as `phasebook_domain::ids` accepts it.
const SLUG_PATTERN: &str = "^[A-Za-z0-9._-]+$";

/// The schema of a path parameter, by name: one name, one rule, on every route.
pub fn path_parameter_schema(name: &str) -> Option<Value> {
    match name {
        "service_id" | "staff_id" => Some(json!({
            "type": "string", "minLength": 1, "maxLength": 64, "pattern": SLUG_PATTERN
        })),
        "segment_key" => Some(json!({
            "type": "string", "minLength": 1, "maxLength": 16, "pattern": SLUG_PATTERN
        })),
        "id" | "appointment_id" | "key_id" | "tenant_id" | "hold_id" => {
            Some(json!({"type": "string", "format": "uuid"}))
        }
        _ => None,
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": PROBLEM}}}
    })
}

/// The description of a response whose annotation gave none.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "Success",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "Done; no body",
        "400" => "`malformed-request`: the request could not be read",
        "401" => "`unauthorized`: no API key, or one that is unknown, revoked or expired",
        "403" => "`forbidden`: this API key's role may not do this",
        "404" => "`not-found`: nothing with this id exists for your tenant",
        "409" => "A conflict with the resource's current state; `type` says which",
        "410" => "Gone; `type` says why",
        "413" => "`payload-too-large`: the body is larger than the limit",
        "415" => "`unsupported-media-type`: the body is not sent as JSON",
        "422" => "`validation`: a value breaks a rule; `field` names it and `code` says which rule",
        "429" => {
            "`rate-limited`: this API key's request limit is used up; retry after `Retry-After`"
        }
        "500" => "`internal`: something failed on our side; it has been logged",
        "502" => "`calcom-failed`: Cal.com could not be reached or refused the tenant's key",
        "503" => "Service unavailable; retry after `Retry-After` when sent",
        _ => "See the problem's `type`",
    }
}

/// Adds `case` to the 400 answer of an operation (one 400 documents every reason).
fn add_bad_request(responses: &mut Map<String, Value>, case: &str) {
    let entry = responses
        .entry("400")
        .or_insert_with(|| problem("Bad request"));
    let Some(description) = entry.get("description").and_then(Value::as_str) else {
        entry["description"] = Value::String(case.to_string());
        return;
    };
    if description.contains(case) {
        return;
    }
    let joined = if description == "Bad request" {
        case.to_string()
    } else {
        format!("{description}; {case}")
    };
    entry["description"] = Value::String(joined);
}

fn finish_operation(operation_id: &str, op: &mut Value, schemas: &Value) {
    // No `security` means the document's default (an API key); `[{}]` or `[]` means none.
    let keyed = match op.get("security").and_then(Value::as_array) {
        None => true,
        Some(reqs) => reqs
            .iter()
            .any(|r| r.as_object().is_some_and(|r| !r.is_empty())),
    };
    let mut path_params = false;
    let mut query_params = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for param in params {
            match param.get("in").and_then(Value::as_str) {
                Some("path") => {
                    path_params = true;
                    let name = param.get("name").and_then(Value::as_str).unwrap_or("");
                    if let Some(schema) = path_parameter_schema(name) {
                        param["schema"] = schema;
                    }
                }
                Some("query") => query_params = true,
                _ => {}
            }
        }
    }
    let body = op.get("requestBody").is_some();
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    if path_params {
        add_bad_request(
            responses,
            "`invalid-path-parameter`: a path parameter breaks its rules (`field` names it)",
        );
    }
    if query_params {
        add_bad_request(
            responses,
            "`malformed-request`: the query string could not be read",
        );
    }
    if body {
        add_bad_request(responses, "`malformed-request`: the body is not valid JSON");
        responses.entry("413").or_insert_with(|| {
            problem(&format!(
                "`payload-too-large`: the body is larger than {MAX_BODY_BYTES} bytes"
            ))
        });
        if !RAW_BODY_OPERATIONS.contains(&operation_id) {
            responses
                .entry("415")
                .or_insert_with(|| problem(default_description("415")));
        }
    }
    if keyed {
        responses
            .entry("401")
            .or_insert_with(|| problem(default_description("401")));
        responses.entry("429").or_insert_with(|| {
            let mut answer = problem(default_description("429"));
            answer["headers"] = json!({
                "Retry-After": {
                    "description": "Seconds until a request is admitted again",
                    "schema": {"type": "integer", "minimum": 1}
                }
            });
            answer
        });
    }
    for (status, response) in responses.iter_mut() {
        let missing = response
            .get("description")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if !missing {
            continue;
        }
        // A success answer is described by its body's own schema description, when it has one.
        let described = response
            .pointer("/content/application~1json/schema/$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| schemas.get(name))
            .and_then(|schema| schema.get("description"))
            .and_then(Value::as_str)
            .filter(|_| status.starts_with('2'))
            .map(str::to_string);
        if let Some(response) = response.as_object_mut() {
            let text = described.unwrap_or_else(|| default_description(status).to_string());
            response.insert("description".to_string(), Value::String(text));
        }
    }
}

/// The merged document with what every operation shares.
pub fn finish(document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let Ok(mut value) = serde_json::to_value(&document) else {
        return document;
    };
    let schemas = value
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for method in METHODS {
                if let Some(op) = item.get_mut(method) {
                    let operation_id = op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    finish_operation(&operation_id, op, &schemas);
                }
            }
        }
    }
    serde_json::from_value(value).unwrap_or(document)
}
