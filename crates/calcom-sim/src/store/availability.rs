//! The availability check: working hours, busy hosts, booking windows and the plan a
//! booking is committed from. Kept apart from bookings and slots because both ask it the
//! same question (is this host free then?) and must get the same answer.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::{Data, Span};
use crate::error::CalError;
use crate::model::{BookingHostRecord, BookingWindow, EventTypeRecord, SchedulingType};

pub(crate) const MANAGED_PARENT_MESSAGE: &str = "is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.";
pub(crate) const USER_BUSY: &str =
    "User either already has booking at this time or is not available";
pub(crate) const TEAM_BUSY: &str =
    "One of the hosts either already has booking at this time or is not available";
pub(crate) const IN_THE_PAST: &str = "Attempting to book a meeting in the past.";
pub(crate) const TOO_SOON: &str = "The event type can't be booked at the \"start\" time provided. This could be because it's too soon (violating the minimum booking notice) or too far in the future (outside the event's scheduling window). Try fetching available slots first using the GET /v2/slots endpoint and then make a booking with \"start\" time equal to one of the available slots.";

/// What the availability check decided: who hosts, when.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub event_type_id: i64,
    pub slug: String,
    pub event_title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub hosts: Vec<BookingHostRecord>,
}

impl Data {
    /// The user's working time around `[from, to]` as UTC ranges, one per local day and
    /// window (not merged across midnight: Cal.com builds its date ranges per day). A day
    /// with a repeated hour is simply longer; a skipped one shorter (see [`local_instant`]).
    fn working_ranges(&self, user_id: i64, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
        let Some(user) = self.users.get(&user_id) else {
            return Vec::new();
        };
        let tz = self.tz_of(user_id);
        let Some(first) = from.with_timezone(&tz).date_naive().pred_opt() else {
            return Vec::new();
        };
        let last = to
            .with_timezone(&tz)
            .date_naive()
            .succ_opt()
            .unwrap_or(first);
        let mut out = Vec::new();
        let mut day = first;
        while day <= last {
            let weekday = day.weekday().num_days_from_monday() as usize;
            for &(ws, we) in &user.working_minutes[weekday] {
                if let (Some(s), Some(e)) = (
                    local_instant(&tz, day, i64::from(ws), false),
                    local_instant(&tz, day, i64::from(we), true),
                ) && s < e
                    && e > from
                    && s < to
                {
                    out.push((s, e));
                }
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        out.sort();
        out
    }

    /// The user's accepted bookings that touch `[from, to]`, as UTC ranges.
    fn busy_ranges(
        &self,
        user_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        ignore_uid: Option<&str>,
    ) -> Vec<Span> {
        let Some(busy) = self.busy.get(&user_id) else {
            return Vec::new();
        };
        busy.range((from - self.longest, i64::MIN)..(to, i64::MAX))
            .filter(|(_, e)| **e > from)
            .filter(|((_, id), _)| {
                ignore_uid
                    .is_none_or(|uid| self.bookings.get(id).is_none_or(|b| b.uid.as_str() != uid))
            })
            .map(|((s, _), e)| (*s, *e))
            .collect()
    }

    /// Cal.com's "date ranges in which the user is available": working time minus bookings.
    pub(super) fn free_ranges(
        &self,
        user_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        ignore_uid: Option<&str>,
    ) -> Vec<Span> {
        subtract(
            self.working_ranges(user_id, from, to),
            &self.busy_ranges(user_id, from, to, ignore_uid),
        )
    }

    fn overlaps_booking(
        &self,
        user_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        ignore_uid: Option<&str>,
    ) -> bool {
        let Some(busy) = self.busy.get(&user_id) else {
            return false;
        };
        let from = (start - self.longest, i64::MIN);
        busy.range(from..(end, i64::MIN)).any(|((_, id), e)| {
            *e > start
                && ignore_uid
                    .is_none_or(|uid| self.bookings.get(id).is_none_or(|b| b.uid.as_str() != uid))
        })
    }

    pub(crate) fn host_free(
        &self,
        user_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        ignore_uid: Option<&str>,
    ) -> bool {
        self.working_ranges(user_id, start, end)
            .iter()
            .any(|&(ws, we)| ws <= start && end <= we)
            && !self.overlaps_booking(user_id, start, end, ignore_uid)
    }

    pub(super) fn booking_host(&self, user_id: i64) -> Option<BookingHostRecord> {
        self.users.get(&user_id).map(|u| BookingHostRecord {
            id: u.id,
            name: u.name.clone(),
            email: u.email.clone(),
            username: u.username.clone(),
            time_zone: u.time_zone.clone(),
        })
    }

    /// Steps 1–6 of Cal.com's create (FACTS 2.2): find, refuse a managed parent, refuse a
    /// hostless team type, then check the time and the host(s).
    pub(crate) fn plan(
        &self,
        event_type_id: i64,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
        ignore_uid: Option<&str>,
        booker_tz: &Tz,
    ) -> Result<Plan, CalError> {
        let et = self.event_types.get(&event_type_id).ok_or_else(|| {
            CalError::not_found(format!("Event type with id {event_type_id} not found."))
        })?;
        if et.is_managed_parent() {
            return Err(CalError::bad_request(format!(
                "Event type with id={event_type_id} {MANAGED_PARENT_MESSAGE}"
            )));
        }
        let team_type = et.team_id.is_some();
        if team_type && et.hosts.is_empty() {
            return Err(CalError::unprocessable(format!(
                "Can't book this team event type because it has no hosts. Please, add at least 1 host to event type with id={} belonging to team with id={} and try again.",
                et.id,
                et.team_id.unwrap_or_default()
            )));
        }
        let end = start + Duration::minutes(et.length_in_minutes);
        if start < now {
            return Err(CalError::bad_request(IN_THE_PAST));
        }
        if start < now + Duration::minutes(et.minimum_booking_notice)
            || !within_booking_window(et, start, now, booker_tz)
        {
            return Err(CalError::bad_request(TOO_SOON));
        }
        let host_ids: Vec<i64> = match (et.owner_id, et.scheduling_type) {
            (Some(owner), _) => {
                if !self.host_free(owner, start, end, ignore_uid) {
                    return Err(CalError::bad_request(USER_BUSY));
                }
                vec![owner]
            }
            (None, Some(SchedulingType::Collective)) => {
                let all: Vec<i64> = et.hosts.iter().map(|h| h.user_id).collect();
                if !all
                    .iter()
                    .all(|u| self.host_free(*u, start, end, ignore_uid))
                {
                    return Err(CalError::bad_request(TEAM_BUSY));
                }
                all
            }
            _ => {
                // Round robin: mandatory (fixed) hosts must all be free, plus one of the rest.
                let fixed: Vec<i64> = et
                    .hosts
                    .iter()
                    .filter(|h| h.mandatory == Some(true))
                    .map(|h| h.user_id)
                    .collect();
                if !fixed
                    .iter()
                    .all(|u| self.host_free(*u, start, end, ignore_uid))
                {
                    return Err(CalError::bad_request(TEAM_BUSY));
                }
                let pool: Vec<i64> = et
                    .hosts
                    .iter()
                    .filter(|h| h.mandatory != Some(true))
                    .map(|h| h.user_id)
                    .collect();
                let mut chosen = fixed;
                if !pool.is_empty() {
                    let free = pool
                        .iter()
                        .find(|u| self.host_free(**u, start, end, ignore_uid))
                        .ok_or_else(|| CalError::bad_request(TEAM_BUSY))?;
                    chosen.push(*free);
                }
                chosen
            }
        };
        let hosts = host_ids
            .iter()
            .filter_map(|u| self.booking_host(*u))
            .collect();
        Ok(Plan {
            event_type_id,
            slug: et.slug.clone(),
            event_title: et.title.clone(),
            start,
            end,
            hosts,
        })
    }
}

/// Local wall-clock minute `minute` of `day` (1440 = the next midnight) as an instant.
/// In a repeated hour `latest` picks the second occurrence (so a working window ending
/// then keeps the whole hour); a time skipped by a DST jump moves forward by the jump, as
/// JavaScript dates (and so Cal.com) read it.
fn local_instant(tz: &Tz, day: NaiveDate, minute: i64, latest: bool) -> Option<DateTime<Utc>> {
    let wall = day.and_hms_opt(0, 0, 0)? + Duration::minutes(minute);
    let resolved = match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(first, second) => {
            if latest {
                second
            } else {
                first
            }
        }
        LocalResult::None => tz
            .from_local_datetime(&(wall + Duration::hours(1)))
            .earliest()?,
    };
    Some(resolved.with_timezone(&Utc))
}

/// `ranges` minus `busy`; both sorted by start.
fn subtract(ranges: Vec<Span>, busy: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for (mut s, e) in ranges {
        for &(bs, be) in busy {
            if be <= s || bs >= e {
                continue;
            }
            if bs > s {
                out.push((s, bs));
            }
            s = s.max(be);
            if s >= e {
                break;
            }
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

/// Times in both lists.
pub(super) fn intersect(a: &[Span], b: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for &(as_, ae) in a {
        for &(bs, be) in b {
            let (s, e) = (as_.max(bs), ae.min(be));
            if s < e {
                out.push((s, e));
            }
        }
    }
    out.sort();
    out
}

/// Times in any of the ranges, overlapping ones merged.
pub(super) fn union(mut ranges: Vec<Span>) -> Vec<Span> {
    ranges.sort();
    let mut out: Vec<Span> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Whether `start` lies inside `et`'s booking window, with "today" and day ends read in
/// `tz` (Cal.com's `calculatePeriodLimits` / `isDateOutOfBounds`).
pub(crate) fn within_booking_window(
    et: &EventTypeRecord,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: &Tz,
) -> bool {
    let Some(window) = &et.booking_window else {
        return true;
    };
    let today = now.with_timezone(tz).date_naive();
    let day = start.with_timezone(tz).date_naive();
    match window {
        BookingWindow::CalendarDays { value, .. } => {
            day <= today + chrono::Days::new(u64::from(*value))
        }
        BookingWindow::BusinessDays { value, .. } => {
            let mut last = today;
            let mut left = *value;
            while left > 0 {
                last = last.succ_opt().unwrap_or(last);
                if last.weekday().num_days_from_monday() < 5 {
                    left -= 1;
                }
            }
            day <= last
        }
        BookingWindow::Range {
            value: [first, last],
        } => *first <= day && day <= *last,
    }
}
