//! Request extractors whose every rejection is a problem document: JSON bodies (with the
//! offending field's path), query strings and path parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

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
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::MalformedRequest {
                    detail: "the request body could not be read".to_string(),
                    field: None,
                }
            }
        })?;
        parse_json(&bytes).map(Json)
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

/// Path parameters; a value that does not fit the route is a 404 (no such resource).
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| ApiError::MalformedRequest {
                detail: format!("invalid path parameter: {}", rejection.body_text()),
                field: None,
            })
    }
}
