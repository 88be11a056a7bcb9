//! Sync health: the figures of `GET /sync/health` and a chart of Cal.com calls and failures
//! per hour over the last 24 hours, drawn by the server as inline SVG (no chart library, no
//! script), with the same numbers as a table for screen readers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};

use super::layout::{Nav, html_response, page, scroll_table, status_badge};
use super::session::ConsoleUser;
use super::{ConsoleError, Salon};
use crate::state::AppState;
use crate::store::console::HourlyAttempts;

/// Hours the chart covers, the current one included.
pub const CHART_HOURS: i64 = 24;

/// The chart's hourly buckets from the store's rows: every hour present, oldest first.
pub fn hourly_buckets(rows: &[HourlyAttempts], now: DateTime<Utc>) -> Vec<HourlyAttempts> {
    let current = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    (0..CHART_HOURS)
        .map(|i| {
            let hour_start = current - Duration::hours(CHART_HOURS - 1 - i);
            rows.iter()
                .find(|r| r.hour_start == hour_start)
                .copied()
                .unwrap_or(HourlyAttempts {
                    hour_start,
                    attempts: 0,
                    failures: 0,
                })
        })
        .collect()
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `n`: a round top for the y axis.
fn round_up(n: i64) -> i64 {
    let mut scale = 1;
    loop {
        for step in [1, 2, 5] {
            if step * scale >= n {
                return step * scale;
            }
        }
        scale *= 10;
    }
}

/// Attempts (grey) and failures (red) per hour as an SVG bar chart.
pub fn chart(buckets: &[HourlyAttempts], zone: Tz) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 220.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let top = round_up(buckets.iter().map(|b| b.attempts).max().unwrap_or(0).max(1));
    let slot = plot_width / buckets.len().max(1) as f64;
    let y = |n: i64| TOP + plot_height * (1.0 - n as f64 / top as f64);
    let height = |n: i64| plot_height * n as f64 / top as f64;
    let total: i64 = buckets.iter().map(|b| b.attempts).sum();
    let failed: i64 = buckets.iter().map(|b| b.failures).sum();
    let hour = |at: DateTime<Utc>| at.with_timezone(&zone).format("%H:00").to_string();
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-labelledby="chart-title chart-desc" {
            title #chart-title { "Cal.com calls per hour, last 24 hours" }
            desc #chart-desc {
                (total) " calls, " (failed) " failed, in the last " (CHART_HOURS) " hours."
            }
            @for tick in [0, top / 2, top] {
                line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", y(tick))) y2=(format!("{:.1}", y(tick))) {}
                text.axis x=(LEFT - 6.0) y=(format!("{:.1}", y(tick) + 4.0)) text-anchor="end" { (tick) }
            }
            @for (i, bucket) in buckets.iter().enumerate() {
                @let x = LEFT + slot * i as f64;
                g.hour data-hour=(hour(bucket.hour_start)) data-attempts=(bucket.attempts) data-failures=(bucket.failures) {
                    title {
                        (hour(bucket.hour_start)) ": " (bucket.attempts) " calls, " (bucket.failures) " failed"
                    }
                    rect.attempts x=(format!("{:.1}", x + slot * 0.12)) y=(format!("{:.1}", y(bucket.attempts)))
                        width=(format!("{:.1}", slot * 0.76)) height=(format!("{:.1}", height(bucket.attempts))) {}
                    @if bucket.failures > 0 {
                        rect.failures x=(format!("{:.1}", x + slot * 0.12)) y=(format!("{:.1}", y(bucket.failures)))
                            width=(format!("{:.1}", slot * 0.76)) height=(format!("{:.1}", height(bucket.failures))) {}
                    }
                    @if i % 3 == 0 {
                        text.axis x=(format!("{:.1}", x + slot / 2.0)) y=(HEIGHT - 8.0) text-anchor="middle" {
                            (hour(bucket.hour_start))
                        }
                    }
                }
            }
            line.baseline x1=(LEFT) x2=(WIDTH - RIGHT) y1=(TOP + plot_height) y2=(TOP + plot_height) {}
        }
    }
}

fn seconds(value: f64) -> String {
    let secs = value.round() as i64;
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

pub async fn health_page(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    let tenant_id = user.caller.tenant_id;
    let now = Utc::now();
    let health = state.sync.store().sync_health(tenant_id, now).await?;
    let buckets = hourly_buckets(
        &state
            .db
            .console()
            .attempts_by_hour(tenant_id, now - Duration::hours(CHART_HOURS))
            .await?,
        now,
    );
    let salon = Salon::load(&state, tenant_id).await?;
    let body = html! {
        dl.figures {
            div { dt { "Success rate, 24 h" } dd #success-rate {
                @match health.success_rate_24h {
                    Some(rate) => { (format!("{:.1} %", rate * 100.0)) }
                    None => { "no calls" }
                }
            } }
            div { dt { "Cal.com calls, 24 h" } dd { (health.attempts_24h) } }
            div { dt { "Failed calls, 24 h" } dd { (health.failed_attempts_24h) } }
            div { dt { "Oldest pending job" } dd {
                @match health.oldest_pending_job_age_seconds {
                    Some(age) => { (seconds(age)) }
                    None => { "none due" }
                }
            } }
            div { dt { "Jobs pending" } dd { (health.jobs_pending) } }
            div { dt { "Jobs leased" } dd { (health.jobs_leased) } }
            div { dt { "Need review" } dd { a href="/ops" { (health.appointments_needing_review) } } }
        }
        h2 { "Calls to Cal.com per hour" }
        p.legend-inline {
            span class="swatch attempts" {} "calls" " "
            span class="swatch failures" {} "failed (error or unknown outcome)"
        }
        figure {
            (chart(&buckets, salon.zone))
            figcaption { "Hours in " (salon.zone.name()) "; the last bar is the hour now under way." }
        }
        details {
            summary { "The same figures as a table" }
            (scroll_table("Calls per hour", html! {
                table.data {
                    thead { tr { th scope="col" { "Hour" } th scope="col" { "Calls" } th scope="col" { "Failed" } } }
                    tbody {
                        @for bucket in &buckets {
                            tr {
                                th scope="row" { (salon.clock(bucket.hour_start)) }
                                td { (bucket.attempts) }
                                td { (bucket.failures) }
                            }
                        }
                    }
                }
            }))
        }
        h2 { "Appointments by sync status" }
        (scroll_table("Appointments by sync status", html! {
            table.data #by-status {
                thead { tr { th scope="col" { "Sync status" } th scope="col" { "Appointments" } } }
                tbody {
                    @for (status, count) in &health.appointments_by_status {
                        tr { th scope="row" { (status_badge(status)) } td { (count) } }
                    }
                }
            }
        }))
    };
    Ok(html_response(
        StatusCode::OK,
        page("Sync health", &user, Nav::Health, body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_hour_of_the_day_gets_a_bar_and_failures_are_drawn_over_calls() {
        let now = Utc
            .with_ymd_and_hms(2030, 1, 7, 12, 34, 0)
            .single()
            .expect("now");
        let rows = [
            HourlyAttempts {
                hour_start: Utc
                    .with_ymd_and_hms(2030, 1, 7, 12, 0, 0)
                    .single()
                    .expect("h"),
                attempts: 8,
                failures: 2,
            },
            HourlyAttempts {
                hour_start: Utc
                    .with_ymd_and_hms(2030, 1, 6, 13, 0, 0)
                    .single()
                    .expect("h"),
                attempts: 3,
                failures: 0,
            },
        ];
        let buckets = hourly_buckets(&rows, now);
        assert_eq!(buckets.len(), 24);
        assert_eq!(buckets[0].attempts, 3, "the oldest hour is 23 hours ago");
        assert_eq!(buckets[23].failures, 2, "the last is the current hour");
        let svg = chart(&buckets, Tz::UTC).into_string();
        assert_eq!(svg.matches("<g class=\"hour\"").count(), 24);
        assert_eq!(svg.matches("class=\"failures\"").count(), 1);
        assert!(svg.contains("11 calls, 2 failed"));
        assert_eq!(round_up(8), 10);
        assert_eq!(round_up(1), 1);
        assert_eq!(round_up(11), 20);
    }
}
