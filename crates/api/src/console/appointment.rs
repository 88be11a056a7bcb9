//! One appointment, as the day view opens it: its segments with their processing gaps,
//! each segment's Cal.com booking uid and sync state, and the attempt log with every error
//! Cal.com gave. Another tenant's id is a 404, exactly like the API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout::{Nav, html_response, page, review_reason, scroll_table, status_badge};
use super::session::ConsoleUser;
use super::{ConsoleError, Salon, appointment_id};
use crate::state::AppState;
use phasebook_domain::AppointmentStatus;

pub async fn appointment_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = appointment_id(&raw_id)?;
    let tenant_id = user.caller.tenant_id;
    let appointment = state
        .store
        .get_appointment(tenant_id, id)
        .await?
        .ok_or(ConsoleError::NotFound("appointment"))?;
    let sync = state
        .sync
        .store()
        .sync_view(tenant_id, id)
        .await?
        .ok_or(ConsoleError::NotFound("appointment"))?;
    let salon = Salon::load(&state, tenant_id).await?;
    let title = format!(
        "{} with {}",
        salon.names.service(&appointment.service_id),
        salon.names.staff(&appointment.staff_id)
    );
    let booked = appointment.status == AppointmentStatus::Booked;
    let segments = &sync.segments;
    let body = html! {
        dl.facts {
            dt { "Customer" } dd { (appointment.customer.name()) }
            dt { "When" }
            dd {
                (salon.when(appointment.starts_at)) "–" (salon.clock(appointment.ends_at))
                " (" (salon.zone.name()) ")"
            }
            dt { "Appointment" } dd { (appointment.status.as_str()) }
            dt { "Sync" } dd #sync-status { (status_badge(sync.status.as_str())) }
            @if let Some(reason) = &sync.review_reason {
                dt { "Review reason" } dd.reason data-role="review-reason" { (review_reason(reason)) }
            }
            dt { "Id" } dd { code { (id) } }
        }
        @if user.can_operate() && booked {
            div.actions {
                form method="post" action={ "/ops/appointments/" (id) "/resync" } {
                    input type="hidden" name="csrf_token" value=(user.csrf_token);
                    button type="submit" name="resync" { "Resync" }
                }
                form method="get" action={ "/ops/appointments/" (id) "/cancel" } {
                    button.danger type="submit" { "Cancel…" }
                }
            }
        }
        h2 { "Segments" }
        (scroll_table("Segments", html! {
            table.data #segments {
                thead { tr {
                    th scope="col" { "Segment" } th scope="col" { "Stylist" } th scope="col" { "Time" }
                    th scope="col" { "Sync" } th scope="col" { "Event type" }
                    th scope="col" { "Cal.com booking uid" } th scope="col" { "Attempts" }
                    th scope="col" { "Last error" }
                } }
                tbody {
                    @for (i, segment) in segments.iter().enumerate() {
                        @if let Some(previous) = i.checked_sub(1).and_then(|p| segments.get(p)) {
                            @if segment.starts_at > previous.ends_at {
                                tr.gap {
                                    td colspan="8" {
                                        "Processing gap, "
                                        ((segment.starts_at - previous.ends_at).num_minutes())
                                        " min: the stylist is free"
                                    }
                                }
                            }
                        }
                        tr data-segment=(segment.key) {
                            th scope="row" { (segment.key) }
                            td { (salon.names.staff_text(&segment.staff_id)) }
                            td { (salon.clock(segment.starts_at)) "–" (salon.clock(segment.ends_at)) }
                            td { (status_badge(segment.status.as_str())) }
                            td { @if let Some(et) = segment.event_type_id { (et) } }
                            td { @if let Some(uid) = &segment.calcom_booking_uid { code { (uid) } } }
                            td { (segment.attempts) }
                            td {
                                @if let Some(error) = &segment.last_error {
                                    (error.kind)
                                    @if let Some(status) = error.http_status { " (HTTP " (status) ")" }
                                    ": " (error.message)
                                }
                            }
                        }
                    }
                }
            }
        }))
        h2 { "Attempt log" }
        @if sync.attempts.is_empty() {
            p { "No call to Cal.com has been made for this appointment yet." }
        } @else {
            (scroll_table("Attempt log", html! {
                table.data #attempts {
                    thead { tr {
                        th scope="col" { "Started" } th scope="col" { "Segment" }
                        th scope="col" { "Operation" } th scope="col" { "Event type" }
                        th scope="col" { "Outcome" } th scope="col" { "Cal.com error" }
                        th scope="col" { "Booking uid" } th scope="col" { "Worker" }
                    } }
                    tbody {
                        @for attempt in &sync.attempts {
                            tr {
                                td { (attempt.started_at.with_timezone(&salon.zone).format("%-d %b %H:%M:%S")) }
                                td { (attempt.segment_key) }
                                td { (attempt.operation) }
                                td { @if let Some(et) = attempt.event_type_id { (et) } }
                                td { (attempt.outcome.as_deref().unwrap_or("in flight")) }
                                td {
                                    @if let Some(kind) = &attempt.error_kind {
                                        (kind)
                                        @if let Some(status) = attempt.http_status { " (HTTP " (status) ")" }
                                        @if let Some(message) = &attempt.calcom_message { ": " (message) }
                                    }
                                }
                                td { @if let Some(uid) = &attempt.calcom_booking_uid { code { (uid) } } }
                                td { (attempt.worker.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }))
        }
        p { a href={ "/ops/day?date=" (appointment.starts_at.with_timezone(&salon.zone).format("%Y-%m-%d")) } { "This day in the day view" } }
    };
    Ok(html_response(
        StatusCode::OK,
        page(&title, &user, Nav::None, body),
    ))
}
