//! The ops console at `/ops`: the page a salon's ops person opens every morning — the
//! review queue, the day view, sync health and the event-map audit — rendered on the server
//! (maud), with its stylesheet and one small script embedded in the binary. Logging in
//! turns a pasted `ops` or `viewer` key into a session cookie; every action calls the same
//! code the HTTP API runs for it.

pub mod appointment;
pub mod assets;
pub mod day;
pub mod event_maps;
pub mod health;
pub mod layout;
pub mod queue;
pub mod session;

use std::collections::HashMap;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use phasebook_domain::{ServiceId, StaffId};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{StaffMember, StoreError, StoredService};

/// Allows the console's own stylesheet, script and form posts, and nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Every console route, under `/ops`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops", get(queue::queue_page))
        .route("/ops/login", get(session::login_page).post(session::login))
        .route("/ops/logout", post(session::logout))
        .route("/ops/day", get(day::day_page))
        .route("/ops/health", get(health::health_page))
        .route("/ops/event-maps", get(event_maps::event_maps_page))
        .route(
            "/ops/appointments/{appointment_id}",
            get(appointment::appointment_page),
        )
        .route(
            "/ops/appointments/{appointment_id}/resync",
            post(queue::resync),
        )
        .route(
            "/ops/appointments/{appointment_id}/cancel",
            get(queue::cancel_page).post(queue::cancel),
        )
        .route("/ops/assets/{name}", get(assets::asset))
        .route("/ops/{*rest}", get(not_found))
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every console response: the CSP, no framing, no sniffing, no referrer, and
/// no caching of pages (they carry tenant data).
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/ops/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("page")
}

/// What a console request can end in other than its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No session (or an expired one): off to the login page.
    LoginRequired,
    /// A state-changing form without this session's CSRF token.
    Csrf,
    /// Nothing with this id for the tenant (another tenant's id included).
    NotFound(&'static str),
    /// What the API would have answered.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::NotFound { what } => Self::NotFound(what),
            other => Self::Api(other),
        }
    }
}

impl From<StoreError> for ConsoleError {
    fn from(err: StoreError) -> Self {
        Self::Api(err.into())
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(err: sqlx::Error) -> Self {
        Self::Api(StoreError::Database(err).into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self {
            Self::LoginRequired => return Redirect::to("/ops/login").into_response(),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused".to_string(),
                "This form did not carry this session's security token, so nothing was done. \
                 Go back, reload the page and try again."
                    .to_string(),
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "Not found".to_string(),
                format!("There is no such {what} for your salon."),
            ),
            Self::Api(err) => {
                match &err {
                    ApiError::Internal(detail) => {
                        tracing::error!(error = %detail, "console request failed");
                    }
                    ApiError::Unavailable(detail) => {
                        tracing::warn!(error = %detail, "dependency unavailable");
                    }
                    _ => {}
                }
                let problem = err.problem();
                (err.status(), problem.title, problem.detail)
            }
        };
        let body = layout::bare_page(
            &title,
            maud::html! {
                p.problem { (detail) }
                p { a href="/ops" { "Back to the review queue" } }
            },
        );
        layout::html_response(status, body)
    }
}

/// Parses an appointment id from a URL; anything that is not one names nothing.
pub fn appointment_id(raw: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(raw).map_err(|_| ConsoleError::NotFound("appointment"))
}

/// The salon's time zone for display: the zone its stylists share (the most common one
/// when they differ), UTC when it has none.
pub fn salon_time_zone(staff: &[StaffMember]) -> Tz {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for member in staff {
        match counts
            .iter_mut()
            .find(|(zone, _)| *zone == member.time_zone)
        {
            Some((_, n)) => *n += 1,
            None => counts.push((&member.time_zone, 1)),
        }
    }
    counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .and_then(|(zone, _)| zone.parse().ok())
        .unwrap_or(Tz::UTC)
}

/// Display names of the tenant's staff and services, by id.
#[derive(Debug, Clone, Default)]
pub struct Names {
    staff: HashMap<StaffId, String>,
    services: HashMap<ServiceId, String>,
}

impl Names {
    pub fn new(staff: &[StaffMember], services: &[StoredService]) -> Self {
        Self {
            staff: staff
                .iter()
                .map(|s| (s.staff_id.clone(), s.name.clone()))
                .collect(),
            services: services
                .iter()
                .map(|s| (s.service_id.clone(), s.service.name().to_string()))
                .collect(),
        }
    }

    pub fn staff<'a>(&'a self, id: &'a StaffId) -> &'a str {
        self.staff.get(id).map_or(id.as_str(), String::as_str)
    }

    /// The name of a staff id as stored in text (the sync view's form).
    pub fn staff_text(&self, id: &str) -> String {
        StaffId::parse(id).map_or_else(|_| id.to_string(), |id| self.staff(&id).to_string())
    }

    pub fn service<'a>(&'a self, id: &'a ServiceId) -> &'a str {
        self.services.get(id).map_or(id.as_str(), String::as_str)
    }
}

/// What most pages need besides their own data: names and the salon's zone.
pub struct Salon {
    pub staff: Vec<StaffMember>,
    pub services: Vec<StoredService>,
    pub names: Names,
    pub zone: Tz,
}

impl Salon {
    pub async fn load(state: &AppState, tenant_id: Uuid) -> Result<Self, ConsoleError> {
        let staff = state.store.list_staff(tenant_id).await?;
        let services = state.store.list_services(tenant_id).await?;
        Ok(Self {
            names: Names::new(&staff, &services),
            zone: salon_time_zone(&staff),
            staff,
            services,
        })
    }

    /// `Mon 7 Jan 2030, 10:00` in the salon's zone.
    pub fn when(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.zone)
            .format("%a %-d %b %Y, %H:%M")
            .to_string()
    }

    /// `10:00` in the salon's zone.
    pub fn clock(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.zone).format("%H:%M").to_string()
    }
}

/// The request asks for a fragment of a page (the console's script replacing one row).
pub fn wants_fragment(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(FRAGMENT_HEADER)
}

/// Sent by the console's script when it wants one row back instead of a redirect.
pub const FRAGMENT_HEADER: HeaderName = HeaderName::from_static("x-console-fragment");

#[cfg(test)]
mod tests {
    use super::*;
    use phasebook_domain::CalcomUserId;

    fn member(id: &str, zone: &str) -> StaffMember {
        StaffMember {
            staff_id: StaffId::parse(id).expect("id"),
            name: id.to_string(),
            calcom_user_id: CalcomUserId(1),
            calcom_username: id.to_string(),
            time_zone: zone.to_string(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn the_salon_zone_is_the_one_most_stylists_share() {
        let staff = [
            member("a", "Europe/Berlin"),
            member("b", "Europe/London"),
            member("c", "Europe/Berlin"),
        ];
        assert_eq!(salon_time_zone(&staff), chrono_tz::Europe::Berlin);
        assert_eq!(salon_time_zone(&[]), Tz::UTC);
        assert_eq!(
            salon_time_zone(&[member("a", "Europe/London"), member("b", "Europe/Berlin")]),
            chrono_tz::Europe::London,
            "a tie goes to the first stylist's zone"
        );
    }
}
