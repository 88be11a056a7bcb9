//! The day view: one column per stylist, one day in the salon's time zone, in five-minute
//! rows. Each staffed segment is a block coloured by its sync status that opens its
//! appointment; a processing gap is no block at all (the stylist is free then); a hold is
//! a hatched block. The layout is a pure function of the day's blocks, tested on its own.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use phasebook_domain::sync::SegmentSyncStatus;
use phasebook_domain::{AppointmentStatus, SegmentKey, ServiceId, StaffId};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{Nav, html_response, page};
use super::session::ConsoleUser;
use super::{ConsoleError, Names, Salon};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AppointmentQuery;

/// The height of one row of the grid.
pub const SLOT_MINUTES: i64 = 5;
/// The part of the day shown even when nothing is booked then.
const OPENING_HOUR: u32 = 8;
const CLOSING_HOUR: u32 = 20;
/// Appointments read per page while loading a day.
const PAGE: u32 = 200;

/// A held time as the holds store describes it: the hold of one service for one stylist,
/// with each segment's staff and times, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldBlock {
    pub service_id: ServiceId,
    pub staff_id: StaffId,
    pub segments: Vec<HoldSegment>,
    pub expires_at: DateTime<Utc>,
}

/// One held segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSegment {
    pub key: SegmentKey,
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The holds live now that overlap `[from, to)`, from the holds store (`POST /holds`).
pub async fn load_holds(
    state: &AppState,
    tenant_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<HoldBlock>, ApiError> {
    let holds = state
        .db
        .booking()
        .live_holds_between(tenant_id, from, to, Utc::now())
        .await?;
    Ok(holds
        .into_iter()
        .map(|hold| HoldBlock {
            service_id: hold.service_id,
            staff_id: hold.staff_id,
            expires_at: hold.expires_at,
            segments: hold
                .segments
                .into_iter()
                .map(|s| HoldSegment {
                    key: s.segment.key,
                    staff_id: s.segment.staff_id,
                    starts_at: s.segment.starts_at,
                    ends_at: s.segment.ends_at,
                })
                .collect(),
        })
        .collect())
}

/// One day in one zone, as the UTC instants it starts and ends at (23 or 25 hours long on
/// the days the clocks change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayWindow {
    pub date: NaiveDate,
    pub zone: Tz,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The first instant of `date` at `time` in `zone`, or the first one after it when the
/// clocks skip that time.
fn local_instant(date: NaiveDate, time: NaiveTime, zone: Tz) -> DateTime<Utc> {
    let local = date.and_time(time);
    (0..=3)
        .find_map(|hours| {
            zone.from_local_datetime(&(local + Duration::hours(hours)))
                .earliest()
        })
        .map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc))
}

impl DayWindow {
    pub fn new(date: NaiveDate, zone: Tz) -> Self {
        let next = date.succ_opt().unwrap_or(date);
        Self {
            date,
            zone,
            starts_at: local_instant(date, NaiveTime::MIN, zone),
            ends_at: local_instant(next, NaiveTime::MIN, zone),
        }
    }

    fn at_hour(&self, hour: u32) -> DateTime<Utc> {
        let time = NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN);
        local_instant(self.date, time, self.zone).clamp(self.starts_at, self.ends_at)
    }
}

/// What a block on the grid is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    Segment {
        appointment_id: Uuid,
        service: String,
        customer: String,
        key: String,
        sync_status: SegmentSyncStatus,
    },
    Hold {
        service: String,
        key: String,
        expires_at: DateTime<Utc>,
    },
}

/// A stretch of one stylist's time that is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayBlock {
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub kind: BlockKind,
}

/// A stylist's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub staff_id: StaffId,
    pub name: String,
}

/// What one cell of the grid holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Nobody is booked: the stylist is free.
    Free,
    /// A block starts here and spans `rows` rows.
    Start { block: usize, rows: usize },
    /// Under a block that started above.
    Covered,
}

/// The laid-out day: rows of `SLOT_MINUTES`, a column per stylist.
#[derive(Debug, Clone)]
pub struct DayGrid {
    pub window: DayWindow,
    pub columns: Vec<Column>,
    pub blocks: Vec<DayBlock>,
    /// The instant each row starts at.
    pub rows: Vec<DateTime<Utc>>,
    /// `slots[column][row]`.
    pub slots: Vec<Vec<Slot>>,
}

fn rows_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let minutes = (to - from).num_minutes();
    (minutes + SLOT_MINUTES / 2).div_euclid(SLOT_MINUTES)
}

/// Lays out the day: opening hours, widened to the hour around anything earlier or later;
/// each block from its nearest row boundary, never overlapping the block above it.
pub fn lay_out(window: DayWindow, mut columns: Vec<Column>, blocks: Vec<DayBlock>) -> DayGrid {
    let blocks: Vec<DayBlock> = blocks
        .into_iter()
        .filter(|b| b.ends_at > window.starts_at && b.starts_at < window.ends_at)
        .collect();
    for block in &blocks {
        if !columns.iter().any(|c| c.staff_id == block.staff_id) {
            columns.push(Column {
                staff_id: block.staff_id.clone(),
                name: block.staff_id.to_string(),
            });
        }
    }
    let earliest = blocks.iter().map(|b| b.starts_at).min();
    let latest = blocks.iter().map(|b| b.ends_at).max();
    let hour_floor = |at: DateTime<Utc>| {
        let minutes = (at - window.starts_at).num_minutes().max(0);
        window.starts_at + Duration::minutes(minutes - minutes % 60)
    };
    let hour_ceil = |at: DateTime<Utc>| {
        let minutes = (at - window.starts_at).num_minutes().max(0);
        window.starts_at + Duration::minutes(minutes + (60 - minutes % 60) % 60)
    };
    let first = earliest
        .map_or(window.at_hour(OPENING_HOUR), |at| {
            hour_floor(at).min(window.at_hour(OPENING_HOUR))
        })
        .max(window.starts_at);
    let last = latest
        .map_or(window.at_hour(CLOSING_HOUR), |at| {
            hour_ceil(at).max(window.at_hour(CLOSING_HOUR))
        })
        .min(window.ends_at);
    let row_count = usize::try_from(rows_between(first, last).max(1)).unwrap_or(1);
    let rows: Vec<DateTime<Utc>> = (0..row_count)
        .map(|r| first + Duration::minutes(r as i64 * SLOT_MINUTES))
        .collect();

    let mut slots = vec![vec![Slot::Free; row_count]; columns.len()];
    for (c, column) in columns.iter().enumerate() {
        let mut mine: Vec<(usize, usize, usize)> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.staff_id == column.staff_id)
            .map(|(i, b)| {
                let clamp = |n: i64| usize::try_from(n.max(0)).unwrap_or(0).min(row_count);
                (
                    clamp(rows_between(first, b.starts_at)),
                    clamp(rows_between(first, b.ends_at)),
                    i,
                )
            })
            .collect();
        mine.sort();
        let mut free_from = 0;
        for (start, end, block) in mine {
            let start = start.max(free_from);
            if start >= row_count {
                continue;
            }
            let end = end.max(start + 1).min(row_count);
            slots[c][start] = Slot::Start {
                block,
                rows: end - start,
            };
            for slot in &mut slots[c][start + 1..end] {
                *slot = Slot::Covered;
            }
            free_from = end;
        }
    }
    DayGrid {
        window,
        columns,
        blocks,
        rows,
        slots,
    }
}

fn status_words(status: SegmentSyncStatus) -> String {
    status.as_str().replace('_', " ")
}

/// The grid as an HTML table (rowspans, so no inline style is needed).
pub fn render_grid(grid: &DayGrid) -> Markup {
    let zone = grid.window.zone;
    let clock = |at: DateTime<Utc>| at.with_timezone(&zone).format("%H:%M").to_string();
    html! {
        table.day {
            caption {
                "Appointments on " (grid.window.date.format("%A %-d %B %Y"))
                " by stylist; times in " (zone.name()) "."
            }
            thead {
                tr {
                    th.time scope="col" { "Time" }
                    @for column in &grid.columns {
                        th scope="col" data-staff=(column.staff_id) { (column.name) }
                    }
                }
            }
            tbody {
                @for (r, at) in grid.rows.iter().enumerate() {
                    @let local = at.with_timezone(&zone);
                    @let hour = local.minute() == 0;
                    tr.hour[hour] data-time=(clock(*at)) {
                        td.time { @if hour { (clock(*at)) } }
                        @for column in &grid.slots {
                            @match column[r] {
                                Slot::Free => { td.free {} }
                                Slot::Covered => {}
                                Slot::Start { block, rows } => {
                                    @if let Some(b) = grid.blocks.get(block) {
                                        (block_cell(b, rows, &clock))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn block_cell(block: &DayBlock, rows: usize, clock: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    let times = format!("{}–{}", clock(block.starts_at), clock(block.ends_at));
    match &block.kind {
        BlockKind::Segment {
            appointment_id,
            service,
            customer,
            key,
            sync_status,
        } => {
            let label = format!(
                "{service}, segment {key}, {times}, {customer}: {}",
                status_words(*sync_status)
            );
            html! {
                td class={ "block status-" (sync_status.as_str()) } rowspan=(rows)
                    data-segment=(key) data-appointment=(appointment_id) {
                    a href={ "/ops/appointments/" (appointment_id) } aria-label=(label) title=(label) {
                        span.key { (key) }
                        " "
                        span.what { (service) }
                        " "
                        span.t { (times) }
                        " "
                        span.who { (customer) }
                    }
                }
            }
        }
        BlockKind::Hold {
            service,
            key,
            expires_at,
        } => {
            let label = format!(
                "Held: {service}, segment {key}, {times}, until {}",
                clock(*expires_at)
            );
            html! {
                td.block.hold rowspan=(rows) data-segment=(key) data-hold="true" title=(label) {
                    span.in {
                        span.key { (key) } " " span.what { "Held: " (service) } " "
                        span.t { (times) } " " span.who { "until " (clock(*expires_at)) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DayParams {
    pub date: Option<String>,
}

/// Turns the day's appointments and holds into blocks.
fn blocks_of(
    appointments: &[crate::store::Appointment],
    holds: &[HoldBlock],
    names: &Names,
) -> Vec<DayBlock> {
    let mut blocks = Vec::new();
    for appointment in appointments {
        if appointment.status == AppointmentStatus::Cancelled {
            continue;
        }
        for segment in appointment.segments.iter().filter(|s| s.active) {
            blocks.push(DayBlock {
                staff_id: segment.staff_id.clone(),
                starts_at: segment.starts_at,
                ends_at: segment.ends_at,
                kind: BlockKind::Segment {
                    appointment_id: appointment.appointment_id,
                    service: names.service(&appointment.service_id).to_string(),
                    customer: appointment.customer.name().to_string(),
                    key: segment.key.to_string(),
                    sync_status: segment.sync_status,
                },
            });
        }
    }
    for hold in holds {
        for segment in &hold.segments {
            blocks.push(DayBlock {
                staff_id: segment.staff_id.clone(),
                starts_at: segment.starts_at,
                ends_at: segment.ends_at,
                kind: BlockKind::Hold {
                    service: names.service(&hold.service_id).to_string(),
                    key: segment.key.to_string(),
                    expires_at: hold.expires_at,
                },
            });
        }
    }
    blocks
}

pub async fn day_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(params): Query<DayParams>,
) -> Result<Response, ConsoleError> {
    let tenant_id = user.caller.tenant_id;
    let salon = Salon::load(&state, tenant_id).await?;
    let today = Utc::now().with_timezone(&salon.zone).date_naive();
    let (date, problem) = match params.date.as_deref().filter(|d| !d.is_empty()) {
        None => (today, None),
        Some(raw) => match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            Ok(date) => (date, None),
            Err(_) => (
                today,
                Some(format!(
                    "{raw:?} is not a date like 2030-01-07; showing today."
                )),
            ),
        },
    };
    let window = DayWindow::new(date, salon.zone);

    let mut appointments = Vec::new();
    let mut query = AppointmentQuery {
        from: Some(window.starts_at),
        to: Some(window.ends_at),
        limit: PAGE,
        ..AppointmentQuery::default()
    };
    loop {
        let page = state.store.list_appointments(tenant_id, &query).await?;
        let full = page.len() == PAGE as usize;
        query.after = page.last().map(|a| (a.starts_at, a.appointment_id));
        appointments.extend(page);
        if !full {
            break;
        }
    }
    let holds = load_holds(&state, tenant_id, window.starts_at, window.ends_at).await?;
    let columns = salon
        .staff
        .iter()
        .map(|s| Column {
            staff_id: s.staff_id.clone(),
            name: s.name.clone(),
        })
        .collect();
    let grid = lay_out(
        window,
        columns,
        blocks_of(&appointments, &holds, &salon.names),
    );
    let day_link = |d: NaiveDate| format!("/ops/day?date={}", d.format("%Y-%m-%d"));
    let title = format!("Day view: {}", date.format("%a %-d %b %Y"));
    let body = html! {
        @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
        div.day-nav {
            @if let Some(previous) = date.pred_opt() { a.button href=(day_link(previous)) rel="prev" { "← Previous day" } }
            a.button href=(day_link(today)) { "Today" }
            @if let Some(next) = date.succ_opt() { a.button href=(day_link(next)) rel="next" { "Next day →" } }
            form.inline method="get" action="/ops/day" {
                label for="date" { "Day" }
                input #date type="date" name="date" value=(date.format("%Y-%m-%d"));
                button type="submit" { "Show" }
            }
        }
        ul.legend aria-label="Legend" {
            li { span class="swatch status-synced" {} "synced" }
            li { span class="swatch status-pending" {} "pending or syncing" }
            li { span class="swatch status-needs_review" {} "needs review" }
            li { span class="swatch status-failed" {} "failed" }
            li { span class="swatch hold" {} "held (not yet booked)" }
            li { span class="swatch free" {} "free (including processing gaps)" }
        }
        @if grid.columns.is_empty() {
            p.empty { "No stylists yet: define them with PUT /staff/{staff_id}." }
        } @else {
            div.scroll.dayview tabindex="0" role="region" aria-label="Day view grid" {
                (render_grid(&grid))
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page(&title, &user, Nav::Day, body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin_day() -> DayWindow {
        DayWindow::new(
            NaiveDate::from_ymd_opt(2030, 1, 7).expect("date"),
            chrono_tz::Europe::Berlin,
        )
    }

    fn at(hh: u32, mm: u32) -> DateTime<Utc> {
        // 7 January 2030 in Berlin is UTC+1.
        Utc.with_ymd_and_hms(2030, 1, 7, hh - 1, mm, 0)
            .single()
            .expect("instant")
    }

    fn staff(id: &str) -> StaffId {
        StaffId::parse(id).expect("staff id")
    }

    fn segment(key: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> DayBlock {
        DayBlock {
            staff_id: staff("anna"),
            starts_at: from,
            ends_at: to,
            kind: BlockKind::Segment {
                appointment_id: Uuid::nil(),
                service: "Colour".into(),
                customer: "Ada".into(),
                key: key.into(),
                sync_status: SegmentSyncStatus::Synced,
            },
        }
    }

    fn columns() -> Vec<Column> {
        vec![
            Column {
                staff_id: staff("anna"),
                name: "Anna".into(),
            },
            Column {
                staff_id: staff("ben"),
                name: "Ben".into(),
            },
        ]
    }

    fn row_of(grid: &DayGrid, at: DateTime<Utc>) -> usize {
        grid.rows.iter().position(|r| *r == at).expect("row")
    }

    #[test]
    fn the_processing_gap_between_two_segments_is_free() {
        let grid = lay_out(
            berlin_day(),
            columns(),
            vec![
                segment("A", at(10, 0), at(10, 30)),
                segment("B", at(11, 5), at(11, 20)),
            ],
        );
        let anna = &grid.slots[0];
        assert_eq!(
            anna[row_of(&grid, at(10, 0))],
            Slot::Start { block: 0, rows: 6 }
        );
        for minute in (30..65).step_by(5) {
            let row = row_of(&grid, at(10, 0) + Duration::minutes(minute));
            assert_eq!(anna[row], Slot::Free, "10:00 + {minute} min is free");
        }
        assert_eq!(
            anna[row_of(&grid, at(11, 5))],
            Slot::Start { block: 1, rows: 3 }
        );
        assert!(
            grid.slots[1].iter().all(|s| *s == Slot::Free),
            "Ben is free"
        );
        assert_eq!(grid.rows[0], at(8, 0), "the day starts at opening time");
        assert_eq!(
            *grid.rows.last().expect("rows"),
            at(19, 55),
            "and ends at closing time"
        );
    }

    #[test]
    fn holds_are_drawn_hatched_and_open_nothing() {
        let hold = HoldBlock {
            service_id: ServiceId::parse("colour").expect("service"),
            staff_id: staff("ben"),
            segments: vec![
                HoldSegment {
                    key: SegmentKey::parse("A").expect("key"),
                    staff_id: staff("ben"),
                    starts_at: at(14, 0),
                    ends_at: at(14, 30),
                },
                HoldSegment {
                    key: SegmentKey::parse("B").expect("key"),
                    staff_id: staff("ben"),
                    starts_at: at(15, 5),
                    ends_at: at(15, 20),
                },
            ],
            expires_at: at(9, 10),
        };
        let names = Names::default();
        let grid = lay_out(berlin_day(), columns(), blocks_of(&[], &[hold], &names));
        let ben = &grid.slots[1];
        assert_eq!(
            ben[row_of(&grid, at(14, 0))],
            Slot::Start { block: 0, rows: 6 }
        );
        assert_eq!(
            ben[row_of(&grid, at(14, 45))],
            Slot::Free,
            "the gap of a hold is free"
        );
        let html = render_grid(&grid).into_string();
        assert_eq!(html.matches("class=\"block hold\"").count(), 2);
        assert!(html.contains("Held: colour"));
        assert!(html.contains("until 09:10"));
        assert!(
            !html.contains("/ops/appointments/"),
            "a hold opens no appointment"
        );
    }

    #[test]
    fn blocks_outside_opening_hours_widen_the_day_and_overlaps_never_share_a_cell() {
        let grid = lay_out(
            berlin_day(),
            columns(),
            vec![
                segment("A", at(6, 40), at(7, 0)),
                segment("B", at(21, 0), at(21, 32)),
                segment("C", at(12, 0), at(12, 30)),
                segment("D", at(12, 20), at(12, 40)),
            ],
        );
        assert_eq!(grid.rows[0], at(6, 0));
        assert_eq!(*grid.rows.last().expect("rows"), at(21, 55));
        let anna = &grid.slots[0];
        assert_eq!(
            anna[row_of(&grid, at(12, 30))],
            Slot::Start { block: 3, rows: 2 },
            "the overlapping block starts below the first"
        );
    }

    #[test]
    fn the_day_the_clocks_go_forward_has_23_hours() {
        let window = DayWindow::new(
            NaiveDate::from_ymd_opt(2026, 3, 29).expect("date"),
            chrono_tz::Europe::Berlin,
        );
        assert_eq!((window.ends_at - window.starts_at).num_hours(), 23);
        let grid = lay_out(window, columns(), vec![]);
        let html = render_grid(&grid).into_string();
        assert!(html.contains("data-time=\"08:00\""));
        assert!(!html.contains("data-time=\"02:30\""));
    }
}
