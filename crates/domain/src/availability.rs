//! Composite availability: which starts of a service fit every segment into Cal.com's free
//! time for the segment's staff member, away from phasebook's own appointments and holds.
//!
//! How Cal.com's answer is read (FACTS.md 6): `GET /v2/slots?format=range` lists slots of
//! the event type's own length on its own interval. A segment of ours does not start on
//! that grid (it starts where the previous segment ended plus the gap), so the search never
//! matches slot starts. It takes the union of the offered ranges as the free time of that
//! event type and asks only that a segment lies inside it. Every offered range is free time,
//! so anything inside the union is free; a hole between ranges (an interval longer than the
//! length) is treated as busy, which can only hide a start, never offer a wrong one.
//!
//! Candidate starts are the instants on a 5-minute grid (aligned to the hour in every zone
//! with whole-quarter-hour offsets, which is every zone in use). Later segments are not on
//! the grid: the search propagates the set of feasible starts segment by segment as unions
//! of intervals, so a stretchable gap (`gap_after_max_minutes`) is used exactly when only a
//! longer gap fits, and the gaps chosen are the shortest that work.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::{FieldError, PlannedSegment, Service, StaffId};

/// Minutes between candidate starts.
pub const GRID_MINUTES: i64 = 5;
/// The widest window one search may cover.
pub const MAX_WINDOW_DAYS: i64 = 14;

/// A half-open span of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { start, end }
    }
}

/// Merges overlapping and touching spans into a sorted union.
pub fn union(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|s| s.start < s.end);
    spans.sort();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match out.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => out.push(span),
        }
    }
    out
}

/// What the search knows about one staff member.
#[derive(Debug, Clone)]
pub struct StaffTime {
    pub staff_id: StaffId,
    /// Cal.com's free time per segment of the service (same order as its segments), from
    /// the segment's bookable event type for this staff member.
    pub free: Vec<Vec<Span>>,
    /// phasebook's own active appointment segments and live holds of this staff member.
    pub busy: Vec<Span>,
}

/// One offered option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableOption {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub staff_id: StaffId,
    pub segments: Vec<PlannedSegment>,
}

/// Every option of `service` starting in `[window.start, window.end)`, for each staff
/// member in `staff`, in (start, staff) order.
pub fn search(service: &Service, staff: &[StaffTime], window: Span) -> Vec<AvailableOption> {
    let mut options = Vec::new();
    for member in staff {
        let fits: Vec<Vec<(i64, i64)>> = service
            .segments()
            .iter()
            .enumerate()
            .map(|(i, segment)| {
                let free = member.free.get(i).cloned().unwrap_or_default();
                fit_starts(
                    &free,
                    &member.busy,
                    i64::from(segment.duration_minutes) * 60,
                )
            })
            .collect();
        let Some(first) = fits.first() else { continue };
        for start in grid(window) {
            let t = start.timestamp();
            if !first.iter().any(|&(a, b)| a <= t && t <= b) {
                continue;
            }
            if let Some(starts) = place(service, &fits, t) {
                options.push(to_option(service, &member.staff_id, &starts));
            }
        }
    }
    options.sort_by(|a, b| (a.start, &a.staff_id).cmp(&(b.start, &b.staff_id)));
    options
}

/// The grid instants in the window.
fn grid(window: Span) -> impl Iterator<Item = DateTime<Utc>> {
    let step = GRID_MINUTES * 60;
    let first = window.start.timestamp().div_euclid(step) * step
        + if window.start.timestamp().rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let end = window.end.timestamp();
    (0..)
        .map(move |k| first + k * step)
        .take_while(move |&t| t < end)
        .filter_map(|t| DateTime::from_timestamp(t, 0))
}

/// Closed ranges `[a, b]` of start instants (unix seconds) at which a segment of
/// `length` seconds lies inside `free` and touches no `busy` span.
fn fit_starts(free: &[Span], busy: &[Span], length: i64) -> Vec<(i64, i64)> {
    let busy = union(busy.to_vec());
    let mut out = Vec::new();
    for span in union(free.to_vec()) {
        let mut cursor = span.start.timestamp();
        let end = span.end.timestamp();
        for b in &busy {
            let (bs, be) = (b.start.timestamp(), b.end.timestamp());
            if be <= cursor || bs >= end {
                continue;
            }
            if bs - length >= cursor {
                out.push((cursor, bs - length));
            }
            cursor = cursor.max(be);
        }
        if end - length >= cursor {
            out.push((cursor, end - length));
        }
    }
    out
}

/// Places every segment when the first starts at `t`: feasible starts are propagated as
/// interval sets, then the concrete starts are chosen backwards so each gap is as short as
/// works. None when no placement exists.
fn place(service: &Service, fits: &[Vec<(i64, i64)>], t: i64) -> Option<Vec<i64>> {
    let segments = service.segments();
    let mut feasible: Vec<Vec<(i64, i64)>> = Vec::with_capacity(segments.len());
    feasible.push(vec![(t, t)]);
    for i in 1..segments.len() {
        let prev = &segments[i - 1];
        let d = i64::from(prev.duration_minutes) * 60;
        let (gmin, gmax) = (
            i64::from(prev.gap_after_minutes) * 60,
            i64::from(prev.max_gap_minutes()) * 60,
        );
        let reach: Vec<(i64, i64)> = merge(
            feasible[i - 1]
                .iter()
                .map(|&(a, b)| (a + d + gmin, b + d + gmax))
                .collect(),
        );
        let here = intersect(&reach, &fits[i]);
        if here.is_empty() {
            return None;
        }
        feasible.push(here);
    }
    let last = segments.len() - 1;
    let mut starts = vec![0i64; segments.len()];
    starts[last] = feasible[last].first()?.0;
    for i in (0..last).rev() {
        let d = i64::from(segments[i].duration_minutes) * 60;
        let (gmin, gmax) = (
            i64::from(segments[i].gap_after_minutes) * 60,
            i64::from(segments[i].max_gap_minutes()) * 60,
        );
        // Starts of segment i that reach the chosen start of segment i + 1.
        let (lo, hi) = (starts[i + 1] - d - gmax, starts[i + 1] - d - gmin);
        starts[i] = feasible[i]
            .iter()
            .filter_map(|&(a, b)| {
                let (a, b) = (a.max(lo), b.min(hi));
                (a <= b).then_some(b)
            })
            .max()?;
    }
    Some(starts)
}

fn merge(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn intersect(x: &[(i64, i64)], y: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for &(a, b) in x {
        for &(c, d) in y {
            let (lo, hi) = (a.max(c), b.min(d));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    merge(out)
}

fn to_option(service: &Service, staff_id: &StaffId, starts: &[i64]) -> AvailableOption {
    let segments: Vec<PlannedSegment> = service
        .segments()
        .iter()
        .zip(starts)
        .filter_map(|(segment, &s)| {
            let starts_at = DateTime::from_timestamp(s, 0)?;
            Some(PlannedSegment {
                key: segment.key.clone(),
                staff_id: staff_id.clone(),
                starts_at,
                ends_at: starts_at + Duration::minutes(i64::from(segment.duration_minutes)),
            })
        })
        .collect();
    let start = segments
        .first()
        .map_or(DateTime::UNIX_EPOCH, |s| s.starts_at);
    let end = segments.last().map_or(start, |s| s.ends_at);
    AvailableOption {
        start,
        end,
        staff_id: staff_id.clone(),
        segments,
    }
}

/// Checks that explicit segment starts respect the service: order, each gap within its
/// range. Used when a caller holds an option whose gaps were stretched.
pub fn check_gaps(service: &Service, plan: &[PlannedSegment]) -> Result<(), FieldError> {
    let specs = service.segments();
    if plan.len() != specs.len() {
        return Err(FieldError::new(
            "segments",
            "segments_mismatch",
            format!(
                "the service has {} segments, the request gives {}",
                specs.len(),
                plan.len()
            ),
        ));
    }
    for (i, pair) in plan.windows(2).enumerate() {
        let gap = (pair[1].starts_at - pair[0].ends_at).num_minutes();
        let spec = &specs[i];
        let (lo, hi) = (
            i64::from(spec.gap_after_minutes),
            i64::from(spec.max_gap_minutes()),
        );
        if pair[1].starts_at < pair[0].ends_at || gap < lo || gap > hi {
            return Err(FieldError::new(
                format!("segments[{}].starts_at", i + 1),
                "gap_out_of_range",
                format!(
                    "the gap after segment {} must be {lo} to {hi} minutes, got {gap}",
                    spec.key
                ),
            ));
        }
    }
    Ok(())
}

/// A bound of a search window as the caller wrote it: a date or a local date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowBound {
    Date(NaiveDate),
    Local(NaiveDateTime),
}

impl WindowBound {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let value = value.trim();
        if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            return Ok(Self::Date(date));
        }
        for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
            if let Ok(local) = NaiveDateTime::parse_from_str(value, format) {
                return Ok(Self::Local(local));
            }
        }
        Err(FieldError::new(
            field,
            "invalid_window_bound",
            format!(
                "{field} must be a date (2026-05-04) or a local date-time (2026-05-04T09:00) read in time_zone, got {value:?}"
            ),
        ))
    }
}

/// The first instant at or after a local wall-clock time (a time in a spring-forward hole
/// moves to the end of the hole; a repeated time takes its first occurrence).
fn local_to_utc(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    for _ in 0..(24 * 4) {
        if let Some(at) = zone.from_local_datetime(&probe).earliest() {
            return at.with_timezone(&Utc);
        }
        probe += Duration::minutes(15);
    }
    Utc.from_utc_datetime(&local)
}

/// The UTC window of `from`..`to` read in `zone`: a `from` date means its first instant, a
/// `to` date means the whole of that day. At most [`MAX_WINDOW_DAYS`] long, not inverted.
pub fn window(from: WindowBound, to: WindowBound, zone: Tz) -> Result<Span, FieldError> {
    let start = match from {
        WindowBound::Date(d) => local_to_utc(zone, d.and_time(NaiveTime::MIN)),
        WindowBound::Local(l) => local_to_utc(zone, l),
    };
    let end = match to {
        WindowBound::Date(d) => match d.succ_opt() {
            Some(next) => local_to_utc(zone, next.and_time(NaiveTime::MIN)),
            None => local_to_utc(zone, d.and_time(NaiveTime::MIN)),
        },
        WindowBound::Local(l) => local_to_utc(zone, l),
    };
    if end <= start {
        return Err(FieldError::new(
            "to",
            "window_inverted",
            "to must be after from",
        ));
    }
    if end - start > Duration::days(MAX_WINDOW_DAYS) {
        return Err(FieldError::new(
            "to",
            "window_too_long",
            format!("from and to may be at most {MAX_WINDOW_DAYS} days apart"),
        ));
    }
    Ok(Span::new(start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{overlaps, parse_time_zone};
    use crate::service::tests::{colouring, seg};
    use proptest::prelude::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("instant")
    }

    fn anna() -> StaffId {
        StaffId::parse("anna").expect("id")
    }

    fn open_day(service: &Service, from: DateTime<Utc>, to: DateTime<Utc>) -> StaffTime {
        StaffTime {
            staff_id: anna(),
            free: service
                .segments()
                .iter()
                .map(|_| vec![Span::new(from, to)])
                .collect(),
            busy: vec![],
        }
    }

    #[test]
    fn an_open_day_offers_every_grid_start_that_ends_in_time() {
        let service = colouring(); // 130 minutes
        let staff = open_day(&service, utc(2026, 5, 4, 7, 0), utc(2026, 5, 4, 10, 0));
        let options = search(
            &service,
            &[staff],
            Span::new(utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 0, 0)),
        );
        assert_eq!(
            options.first().map(|o| o.start),
            Some(utc(2026, 5, 4, 7, 0))
        );
        assert_eq!(
            options.last().map(|o| o.start),
            Some(utc(2026, 5, 4, 7, 50))
        );
        assert_eq!(options.len(), 11);
        assert_eq!(options[0].segments[1].starts_at, utc(2026, 5, 4, 8, 5));
    }

    #[test]
    fn our_own_busy_time_is_never_offered() {
        let service = colouring();
        let mut staff = open_day(&service, utc(2026, 5, 4, 7, 0), utc(2026, 5, 4, 12, 0));
        staff.busy = vec![Span::new(utc(2026, 5, 4, 8, 0), utc(2026, 5, 4, 9, 0))];
        let options = search(
            &service,
            &[staff.clone()],
            Span::new(utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 0, 0)),
        );
        assert!(!options.is_empty());
        for o in options {
            for s in &o.segments {
                assert!(!overlaps(
                    s.starts_at,
                    s.ends_at,
                    staff.busy[0].start,
                    staff.busy[0].end
                ));
            }
        }
    }

    #[test]
    fn a_stretchable_gap_is_used_only_where_nothing_else_fits() {
        let mut a = seg("A", 30, 30);
        a.gap_after_max_minutes = Some(60);
        let service = Service::new("x", vec![a, seg("B", 30, 0)]).expect("valid");
        // A is free 9:00-9:30 only; B is free only 10:20-10:50: a 50-minute gap.
        let staff = StaffTime {
            staff_id: anna(),
            free: vec![
                vec![Span::new(utc(2026, 5, 4, 9, 0), utc(2026, 5, 4, 9, 30))],
                vec![Span::new(utc(2026, 5, 4, 10, 20), utc(2026, 5, 4, 10, 50))],
            ],
            busy: vec![],
        };
        let options = search(
            &service,
            &[staff],
            Span::new(utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 0, 0)),
        );
        assert_eq!(options.len(), 1);
        assert_eq!(options[0].segments[1].starts_at, utc(2026, 5, 4, 10, 20));
        // With an open B, the gap stays at its minimum.
        let open = open_day(&service, utc(2026, 5, 4, 9, 0), utc(2026, 5, 4, 12, 0));
        let options = search(
            &service,
            &[open],
            Span::new(utc(2026, 5, 4, 9, 0), utc(2026, 5, 4, 9, 5)),
        );
        assert_eq!(options[0].segments[1].starts_at, utc(2026, 5, 4, 10, 0));
    }

    #[test]
    fn windows_read_dates_in_the_zone_and_refuse_more_than_14_days() {
        let berlin = parse_time_zone("Europe/Berlin").expect("zone");
        let day = |s| WindowBound::parse("from", s).expect("bound");
        // The last Sunday of March has 23 hours in Berlin.
        let w = window(day("2026-03-29"), day("2026-03-29"), berlin).expect("window");
        assert_eq!(w.start, utc(2026, 3, 28, 23, 0));
        assert_eq!((w.end - w.start).num_hours(), 23);
        let w = window(day("2026-10-25"), day("2026-10-25"), berlin).expect("window");
        assert_eq!((w.end - w.start).num_hours(), 25);
        let err = window(day("2026-05-01"), day("2026-05-15"), berlin).expect_err("too long");
        assert_eq!(err.code, "window_too_long");
        assert!(window(day("2026-05-01"), day("2026-05-14"), berlin).is_ok());
    }

    #[test]
    fn explicit_gaps_outside_the_range_are_refused() {
        let service = colouring();
        let staff = open_day(&service, utc(2026, 5, 4, 7, 0), utc(2026, 5, 4, 12, 0));
        let options = search(
            &service,
            &[staff],
            Span::new(utc(2026, 5, 4, 7, 0), utc(2026, 5, 4, 7, 5)),
        );
        let mut plan = options[0].segments.clone();
        assert!(check_gaps(&service, &plan).is_ok());
        plan[1].starts_at += Duration::minutes(5);
        plan[1].ends_at += Duration::minutes(5);
        assert_eq!(
            check_gaps(&service, &plan).expect_err("gap").field,
            "segments[1].starts_at"
        );
    }

    fn arb_spans(day: DateTime<Utc>) -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec((0i64..(24 * 12), 1i64..48), 0..6).prop_map(move |v| {
            v.into_iter()
                .map(|(s, l)| {
                    let start = day + Duration::minutes(s * 5);
                    Span::new(start, start + Duration::minutes(l * 5))
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn no_option_leaves_free_time_or_touches_our_busy_time(
            dst_day in prop::sample::select(vec![(2026, 3, 29), (2026, 10, 25), (2026, 6, 1)]),
            gaps in (0u32..60, 0u32..60),
        ) {
            let (y, m, d) = dst_day;
            let berlin = parse_time_zone("Europe/Berlin").expect("zone");
            let day = NaiveDate::from_ymd_opt(y, m, d).expect("date");
            let w = window(WindowBound::Date(day), WindowBound::Date(day), berlin).expect("window");
            let mut a = seg("A", 30, gaps.0);
            a.gap_after_max_minutes = Some(gaps.0 + gaps.1);
            let service = Service::new("x", vec![a, seg("B", 15, 0), seg("C", 20, 0)]).expect("valid");
            let runner_free = |_: usize| vec![Span::new(w.start + Duration::hours(6), w.end - Duration::hours(4))];
            let staff = StaffTime {
                staff_id: anna(),
                free: (0..3).map(runner_free).collect(),
                busy: vec![Span::new(w.start + Duration::hours(9), w.start + Duration::hours(10))],
            };
            for o in search(&service, std::slice::from_ref(&staff), w) {
                prop_assert!(o.start >= w.start && o.start < w.end);
                prop_assert!(check_gaps(&service, &o.segments).is_ok());
                for (i, s) in o.segments.iter().enumerate() {
                    prop_assert!(staff.free[i].iter().any(|f| f.start <= s.starts_at && s.ends_at <= f.end));
                    for b in &staff.busy {
                        prop_assert!(!overlaps(s.starts_at, s.ends_at, b.start, b.end));
                    }
                }
            }
        }

        #[test]
        fn random_free_and_busy_time_is_respected(
            free in (arb_spans(utc(2026, 5, 4, 0, 0)), arb_spans(utc(2026, 5, 4, 0, 0))),
            busy in arb_spans(utc(2026, 5, 4, 0, 0)),
            gap in 0u32..40,
            stretch in 0u32..40,
        ) {
            let mut a = seg("A", 20, gap);
            a.gap_after_max_minutes = Some(gap + stretch);
            let service = Service::new("x", vec![a, seg("B", 25, 0)]).expect("valid");
            let staff = StaffTime { staff_id: anna(), free: vec![free.0, free.1], busy };
            let w = Span::new(utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 0, 0));
            let options = search(&service, std::slice::from_ref(&staff), w);
            for o in &options {
                prop_assert!(check_gaps(&service, &o.segments).is_ok());
                for (i, s) in o.segments.iter().enumerate() {
                    let f = union(staff.free[i].clone());
                    prop_assert!(f.iter().any(|f| f.start <= s.starts_at && s.ends_at <= f.end));
                    for b in &staff.busy {
                        prop_assert!(!overlaps(s.starts_at, s.ends_at, b.start, b.end));
                    }
                }
            }
            // Completeness: every grid start with a placement at the minimum gap is offered.
            for t in grid(w) {
                let plan = crate::plan::plan_appointment(&service, t, &[anna(), anna()]);
                let ok = plan.iter().enumerate().all(|(i, s)| {
                    union(staff.free[i].clone()).iter().any(|f| f.start <= s.starts_at && s.ends_at <= f.end)
                        && staff.busy.iter().all(|b| !overlaps(s.starts_at, s.ends_at, b.start, b.end))
                });
                if ok {
                    prop_assert!(options.iter().any(|o| o.start == t));
                }
            }
        }
    }
}
