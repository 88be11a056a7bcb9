//! The console's stylesheet and script, compiled into the binary: the console works
//! offline and loads nothing from anywhere else.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ConsoleError;

pub const STYLESHEET: &str = include_str!("assets/console.css");
pub const SCRIPT: &str = include_str!("assets/console.js");

pub async fn asset(Path(name): Path<String>) -> Result<Response, ConsoleError> {
    let (body, content_type) = match name.as_str() {
        "console.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return Err(ConsoleError::NotFound("file")),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Page links carry the version, so a day of caching never serves a stale file.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Ok(response)
}
