//! Request extractors whose every rejection is a problem document: JSON bodies (with the
//! offending field's path), query strings and path parameters.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use phasebook_domain::FieldError;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. Syntax errors are 400; well-formed JSON of the wrong shape (unknown field,
/// wrong type, missing field) is 422 naming the field.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(rejection.status()))?;
        parse_json(&bytes).map(Json)
    }
}

/// A body read as bytes (a signed webhook delivery), with the body limit's answer a
/// problem like every other.
pub struct RawBody(pub Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| body_rejection(rejection.status()))
    }
}

fn body_rejection(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
    } else {
        ApiError::MalformedRequest {
            detail: "the request body could not be read".to_string(),
            field: None,
        }
    }
}

/// Deserialises JSON, mapping errors to problems that name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = without_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = field_path(&path, &message);
                ApiError::validation(field, "invalid_value", message)
            }
            _ => ApiError::MalformedRequest {
                detail: format!("the body is not valid JSON: {message}"),
                field: (path != ".").then_some(path),
            },
        }
    })?;
    deserializer
        .end()
        .map_err(|err| ApiError::MalformedRequest {
            detail: format!(
                "the body is not valid JSON: {}",
                without_position(&err.to_string())
            ),
            field: None,
        })?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the field path says more to a client.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The path serde stopped at, extended by the field a message names (unknown and missing
/// fields are reported at their parent).
fn field_path(path: &str, message: &str) -> String {
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|lead| message.strip_prefix(lead))
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { "" } else { path };
    // serde_path_to_error already ends the path with an unknown field's name.
    let named = named.filter(|name| parent != *name && !parent.ends_with(&format!(".{name}")));
    match named {
        Some(name) if parent.is_empty() => name.to_string(),
        Some(name) => format!("{parent}.{name}"),
        None if parent.is_empty() => String::new(),
        None => parent.to_string(),
    }
}

/// A query string; unknown parameters and unreadable values are 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(Query).map_err(|err| {
            let message = err.to_string();
            ApiError::MalformedRequest {
                field: Some(field_path(".", &message)).filter(|f| !f.is_empty()),
                detail: format!("invalid query string: {message}"),
            }
        })
    }
}

/// Path parameters. A value that breaks its parameter's rules (not a UUID, not a valid
/// service id, …) is a 400 `invalid-path-parameter` naming the parameter; a well-formed id
/// nobody has is the handler's 404. Handlers that take the raw text parse it with
/// [`path_uuid`] or [`path_id`], which answer the same.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let names: Vec<String> = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map(|params| params.iter().map(|(name, _)| name.to_string()).collect())
            .unwrap_or_default();
        let rejection = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => return Ok(Path(value)),
            Err(rejection) => rejection,
        };
        let at_key = match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::InvalidUtf8InPathParam { key } => Some(key.clone()),
                _ => None,
            },
            _ => None,
        };
        // A single parameter's error does not carry its name; the route does.
        let field = at_key.or_else(|| (names.len() == 1).then(|| names[0].clone()));
        let name = field.as_deref().unwrap_or("a path parameter");
        let detail = if std::any::type_name::<T>().ends_with("Uuid") {
            format!("{name} must be a UUID, as the API answered it")
        } else {
            format!("{name} is not valid here")
        };
        Err(invalid_path_parameter(field, detail))
    }
}

/// The one answer to a path parameter that breaks its rules.
pub fn invalid_path_parameter(field: Option<String>, detail: String) -> ApiError {
    ApiError::Typed {
        status: StatusCode::BAD_REQUEST,
        slug: "invalid-path-parameter",
        title: "Invalid path parameter",
        detail,
        field,
        retry_after: None,
    }
}

/// A path parameter that must be a UUID.
pub fn path_uuid(name: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        invalid_path_parameter(
            Some(name.to_string()),
            format!("{name} must be a UUID, as the API answered it"),
        )
    })
}

/// A path parameter that must be a domain id (`ServiceId::parse`, `StaffId::parse`, …);
/// the detail is the domain's own rule.
pub fn path_id<T>(
    name: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, FieldError>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| {
        invalid_path_parameter(Some(name.to_string()), format!("{name}: {}", e.message))
    })
}
