//! The review queue: every appointment that needs a person, newest first, with the review
//! reason as the API words it, a Resync button that shows the outcome in place, and a
//! Cancel button that asks first. Resync and cancel run the API's own handlers.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::layout::{Nav, html_response, page, review_reason, status_badge};
use super::session::{ConsoleUser, CsrfForm};
use super::{ConsoleError, Salon, appointment_id, wants_fragment};
use crate::auth::Permission;
use crate::state::AppState;
use crate::store::Appointment;

/// The most appointments the queue lists at once.
pub const QUEUE_LIMIT: u32 = 100;
/// How long a resync from the console waits for its outcome before showing where it got.
pub const RESYNC_WAIT: Duration = Duration::from_secs(10);

pub async fn queue_page(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    let tenant_id = user.caller.tenant_id;
    let salon = Salon::load(&state, tenant_id).await?;
    let ids = state
        .db
        .console()
        .review_queue(tenant_id, QUEUE_LIMIT)
        .await?;
    let mut appointments = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(appointment) = state.store.get_appointment(tenant_id, id).await? {
            appointments.push(appointment);
        }
    }
    let body = html! {
        @if appointments.is_empty() {
            p.empty { "Nothing needs review. Every appointment is in step with Cal.com or on its way." }
        } @else {
            p {
                (appointments.len())
                @if appointments.len() == 1 { " appointment needs" } @else { " appointments need" }
                " a person, newest first. Fix the cause named in each reason, then resync."
            }
            ol.queue {
                @for appointment in &appointments {
                    li { (review_row(appointment, &salon, &user, None)) }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("Review queue", &user, Nav::Queue, body),
    ))
}

/// One appointment of the queue; `outcome` is said after a resync from this row.
fn review_row(
    appointment: &Appointment,
    salon: &Salon,
    user: &ConsoleUser,
    outcome: Option<&str>,
) -> Markup {
    let id = appointment.appointment_id;
    let status = appointment.sync_status.as_str();
    let heading = format!("heading-{id}");
    html! {
        article.row data-appointment=(id) data-sync-status=(status) aria-labelledby=(heading) {
            div.row-head {
                h2 #(heading) {
                    a href={ "/ops/appointments/" (id) } {
                        (salon.names.service(&appointment.service_id)) " with "
                        (salon.names.staff(&appointment.staff_id))
                    }
                }
                (status_badge(status))
            }
            p.when {
                (salon.when(appointment.starts_at)) " · " (appointment.customer.name())
            }
            @if let Some(reason) = &appointment.review_reason {
                p.reason data-role="review-reason" { (review_reason(reason)) }
            }
            @if user.can_operate() && appointment.requires_manual_review {
                div.actions {
                    form method="post" action={ "/ops/appointments/" (id) "/resync" } data-inline="resync" {
                        input type="hidden" name="csrf_token" value=(user.csrf_token);
                        button type="submit" name="resync" aria-describedby=(heading) { "Resync" }
                    }
                    form method="get" action={ "/ops/appointments/" (id) "/cancel" } {
                        button.danger type="submit" aria-describedby=(heading) { "Cancel…" }
                    }
                }
            }
            p.outcome data-role="outcome" role="status" aria-live="polite" {
                @if let Some(outcome) = outcome { (outcome) }
            }
        }
    }
}

/// `POST /ops/appointments/{id}/resync`: `POST /resync/{appointment_id}`, then waits for the outcome
/// (as `Prefer: wait` does) and shows it — the row for the console's script, else the
/// appointment's page.
pub async fn resync(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    user.check_csrf(&form.csrf_token)?;
    let id = appointment_id(&raw_id)?;
    // The answer is the sync status right after queueing; the outcome is read below.
    let _queued =
        crate::routes::sync::resync(State(state.clone()), user.caller, crate::extract::Path(id))
            .await?;
    let tenant_id = user.caller.tenant_id;
    let finished = state
        .sync
        .wait_for_outcome(tenant_id, id, RESYNC_WAIT)
        .await?
        .is_some_and(|outcome| outcome.finished);
    if !wants_fragment(&headers) {
        return Ok(Redirect::to(&format!("/ops/appointments/{id}")).into_response());
    }
    let appointment = state
        .store
        .get_appointment(tenant_id, id)
        .await?
        .ok_or(ConsoleError::NotFound("appointment"))?;
    let salon = Salon::load(&state, tenant_id).await?;
    let outcome = match (finished, appointment.requires_manual_review) {
        (false, _) => format!(
            "Resync queued; still {} after {} s. Reload to see how it ends.",
            appointment.sync_status.as_str().replace('_', " "),
            RESYNC_WAIT.as_secs()
        ),
        (true, true) => "Resynced: still needs review, for the reason above.".to_string(),
        (true, false) => format!(
            "Resynced: {}.",
            appointment.sync_status.as_str().replace('_', " ")
        ),
    };
    Ok(html_response(
        StatusCode::OK,
        review_row(&appointment, &salon, &user, Some(&outcome)),
    ))
}

/// `GET /ops/appointments/{id}/cancel`: asks before cancelling.
pub async fn cancel_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw_id): Path<String>,
) -> Result<Response, ConsoleError> {
    user.caller.require(Permission::BookAppointments)?;
    let id = appointment_id(&raw_id)?;
    let tenant_id = user.caller.tenant_id;
    let appointment = state
        .store
        .get_appointment(tenant_id, id)
        .await?
        .ok_or(ConsoleError::NotFound("appointment"))?;
    let salon = Salon::load(&state, tenant_id).await?;
    let body = html! {
        p {
            "Cancel " strong { (salon.names.service(&appointment.service_id)) }
            " with " (salon.names.staff(&appointment.staff_id))
            " for " (appointment.customer.name()) " on " (salon.when(appointment.starts_at)) "?"
        }
        p { "The stylist's time is free at once, and every Cal.com booking the appointment owns is cancelled. This cannot be undone." }
        div.actions {
            form method="post" action={ "/ops/appointments/" (id) "/cancel" } {
                input type="hidden" name="csrf_token" value=(user.csrf_token);
                button.danger type="submit" { "Yes, cancel the appointment" }
            }
            a.button href={ "/ops/appointments/" (id) } { "No, keep it" }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("Cancel the appointment?", &user, Nav::None, body),
    ))
}

/// `POST /ops/appointments/{id}/cancel`: `POST /appointments/{appointment_id}/cancel`, then the
/// appointment's page.
pub async fn cancel(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    user.check_csrf(&form.csrf_token)?;
    let id = appointment_id(&raw_id)?;
    let _cancelled = crate::routes::appointments::cancel_appointment(
        State(state),
        user.caller,
        crate::extract::Path(id.to_string()),
        crate::extract::RawBody(axum::body::Bytes::new()),
    )
    .await?;
    Ok(Redirect::to(&format!("/ops/appointments/{id}")).into_response())
}
