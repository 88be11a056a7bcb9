//! Event maps: the audit (every map re-checked with Cal.com, every missing one listed, each
//! with its severity and fix) and the `provision --dry-run` plan for a chosen service and
//! stylist. Both run the event-map module's own functions; nothing is written. Ops only,
//! as in the API.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use phasebook_domain::{ServiceId, StaffId};
use serde::Deserialize;

use super::layout::{Nav, html_response, page, scroll_table};
use super::session::ConsoleUser;
use super::{ConsoleError, Salon};
use crate::auth::Permission;
use crate::error::ApiError;
use crate::event_maps::{self, Audit, ProvisionAction, ProvisionReport};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct PlanParams {
    pub service: Option<String>,
    pub staff: Option<String>,
}

/// An error of the event-map module, in the words the API would use.
fn problem(err: event_maps::EventMapError) -> Result<String, ConsoleError> {
    let err = ApiError::from(err);
    match err {
        ApiError::Internal(_) | ApiError::Unavailable(_) => Err(ConsoleError::Api(err)),
        other => Ok(other.problem().detail),
    }
}

/// `1 error`, `2 errors`.
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn audit_table(audit: &Audit) -> Markup {
    html! {
        p #audit-summary {
            @if audit.ok {
                "Every segment of every service is mapped to an event type Cal.com will book for its stylist."
            } @else {
                (count(audit.errors, "error")) ", " (count(audit.warnings, "warning")) "."
            }
        }
        (scroll_table("Event-map audit", html! {
            table.data #audit {
                thead { tr {
                    th scope="col" { "Severity" } th scope="col" { "Service" }
                    th scope="col" { "Segment" } th scope="col" { "Stylist" }
                    th scope="col" { "Event type" } th scope="col" { "Bookable" }
                    th scope="col" { "Finding" } th scope="col" { "Fix" }
                } }
                tbody {
                    @for finding in &audit.findings {
                        tr data-severity=(finding.severity) {
                            td { span class={ "badge severity-" (finding.severity) } { (finding.severity) } }
                            td { (finding.service_id) }
                            td { (finding.segment_key) }
                            td { (finding.staff_id) }
                            td { @if let Some(id) = finding.event_type_id { (id) } }
                            td { @if let Some(id) = finding.bookable_event_type_id { (id) } }
                            td { code { (finding.code) } " " (finding.message) }
                            td.fix { (finding.fix) }
                        }
                    }
                }
            }
        }))
    }
}

fn plan_table(report: &ProvisionReport) -> Markup {
    html! {
        p {
            "Provisioning " strong { (report.service_id) } " for " strong { (report.staff_id) }
            " in Cal.com team " (report.team_id) " would do this (nothing has been changed):"
        }
        (scroll_table("Provisioning plan", html! {
            table.data #plan {
                thead { tr {
                    th scope="col" { "Segment" } th scope="col" { "Action" }
                    th scope="col" { "Title" } th scope="col" { "Slug" }
                    th scope="col" { "Length" } th scope="col" { "Event type" }
                    th scope="col" { "Replaces" }
                } }
                tbody {
                    @for step in &report.steps {
                        tr {
                            th scope="row" { (step.segment_key) }
                            td { (match step.action {
                                ProvisionAction::Create => "create",
                                ProvisionAction::Reuse => "reuse",
                                ProvisionAction::Update => "update",
                            }) }
                            td { (step.title) }
                            td { code { (step.slug) } }
                            td { (step.length_in_minutes) " min" }
                            td { @if let Some(id) = step.event_type_id { (id) } }
                            td { @if let Some(id) = step.replaces_event_type_id { (id) } }
                        }
                    }
                }
            }
        }))
        p { "To carry it out: " code { "phasebook provision --service " (report.service_id) " --staff " (report.staff_id) } }
    }
}

pub async fn event_maps_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(params): Query<PlanParams>,
) -> Result<Response, ConsoleError> {
    if !Permission::Operate.allowed_for(user.caller.role) {
        let body = html! {
            p { "The event-map audit and the provisioning plan ask Cal.com with the salon's key; they are for ops keys only." }
        };
        return Ok(html_response(
            StatusCode::OK,
            page("Event maps", &user, Nav::EventMaps, body),
        ));
    }
    let tenant_id = user.caller.tenant_id;
    let salon = Salon::load(&state, tenant_id).await?;
    let store = state.db.event_maps();
    let client = match event_maps::tenant_calcom(store, tenant_id)
        .await
        .and_then(|tenant| event_maps::shared_client_for(&tenant, state.sync.budgets(), false))
    {
        Ok(client) => Ok(client),
        Err(err) => Err(problem(err)?),
    };
    let audit = match &client {
        Ok(client) => match event_maps::audit(store, client, tenant_id).await {
            Ok(audit) => Ok(audit),
            Err(err) => Err(problem(err)?),
        },
        Err(problem) => Err(problem.clone()),
    };
    let chosen_service = params.service.as_deref().filter(|s| !s.is_empty());
    let chosen_staff = params.staff.as_deref().filter(|s| !s.is_empty());
    let plan = match (chosen_service, chosen_staff, &client) {
        (Some(service), Some(staff), Ok(client)) => {
            match (ServiceId::parse(service), StaffId::parse(staff)) {
                (Ok(service_id), Ok(staff_id)) => Some(
                    match event_maps::provision(
                        store,
                        client,
                        tenant_id,
                        &service_id,
                        &staff_id,
                        true,
                    )
                    .await
                    {
                        Ok(report) => Ok(report),
                        Err(err) => Err(problem(err)?),
                    },
                ),
                _ => Some(Err(
                    "Choose a service and a stylist from the lists.".to_string()
                )),
            }
        }
        _ => None,
    };
    let body = html! {
        h2 { "Audit" }
        @match &audit {
            Ok(audit) => { (audit_table(audit)) }
            Err(problem) => { p.problem role="alert" { (problem) } }
        }
        h2 #provision { "Provisioning plan" }
        p {
            "What " code { "phasebook provision --dry-run" } " would create or reuse in Cal.com: one hidden "
            "single-host team event type per segment, for one service and one stylist."
        }
        form.plan method="get" action="/ops/event-maps#provision" {
            div.field {
                label for="service" { "Service" }
                select #service name="service" required {
                    option value="" { "Choose a service" }
                    @for service in &salon.services {
                        option value=(service.service_id) selected[chosen_service == Some(service.service_id.as_str())] {
                            (service.service.name())
                        }
                    }
                }
            }
            div.field {
                label for="staff" { "Stylist" }
                select #staff name="staff" required {
                    option value="" { "Choose a stylist" }
                    @for member in &salon.staff {
                        option value=(member.staff_id) selected[chosen_staff == Some(member.staff_id.as_str())] {
                            (member.name)
                        }
                    }
                }
            }
            button type="submit" { "Show the plan" }
        }
        @match &plan {
            Some(Ok(report)) => { (plan_table(report)) }
            Some(Err(problem)) => { p.problem role="alert" { (problem) } }
            None => {}
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("Event maps", &user, Nav::EventMaps, body),
    ))
}
