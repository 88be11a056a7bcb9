//! The HTTP surface: one router per resource, merged here with the OpenAPI document that
//! utoipa builds from the handlers themselves.

pub mod appointments;
pub mod availability;
pub(crate) mod booking;
pub mod document;
pub mod event_maps;
pub mod health;
pub mod holds;
pub mod keys;
pub mod prefer;
pub mod reschedule;
pub mod services;
pub mod staff;
pub mod sync;
pub mod views;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::Problem;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phasebook",
        description = "Composite appointments for salons, each staffed segment kept in sync with Cal.com as a real booking.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem)),
    security(("bearer" = [])),
    tags(
        (name = "services", description = "Services and their segments"),
        (name = "staff", description = "Staff members and their Cal.com users"),
        (name = "appointments", description = "Composite appointments"),
        (name = "availability", description = "Options to book: Cal.com's free time for every segment, minus phasebook's own appointments and holds"),
        (name = "holds", description = "Keep an option's time for a few minutes while the caller decides; book it with POST /appointments and hold_id"),
        (name = "event maps", description = "Which Cal.com event type each service segment is booked on, per staff member; checked with Cal.com before it is stored"),
        (name = "sync", description = "Cal.com sync: status, attempt log, resync, health, webhooks"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "keys", description = "API keys (list, create, revoke) and the audit log of ops actions")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer pb_live_…`"))
                    .build(),
            ),
        );
    }
}

/// Every API route, with its OpenAPI description: each resource's `router()`, merged here
/// and nowhere else (the ops console's HTML pages are added beside them in `app`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(services::router())
        .merge(staff::router())
        .merge(appointments::router())
        .merge(reschedule::router())
        .merge(availability::router())
        .merge(holds::router())
        .merge(event_maps::router())
        .merge(sync::router())
        .merge(keys::router())
}

/// The OpenAPI document as served at `/openapi.json` and checked in at
/// `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    document::finish(router().into_openapi())
}

/// The document as pretty JSON with a trailing newline, exactly as checked in.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
