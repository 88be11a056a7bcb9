//! Bookings: the insert after a plan, cancel, reschedule marks, direct inserts for the
//! admin API, and the list with Cal.com's filters. The host indexes are kept here so every
//! writer of a booking also keeps the availability check's view of it right.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::availability::Plan;
use super::{Data, new_uid};
use crate::error::CalError;
use crate::model::{AttendeeRecord, BookingRecord, BookingStatus};
use crate::seed::SeedBooking;

pub(crate) const ALREADY_CANCELLED: &str = "This booking has already been cancelled.";
pub(crate) const HOST_NEEDS_REASON: &str = "Cancellation reason is required when you are the host";

/// A validated `POST /v2/bookings` body.
#[derive(Debug, Clone)]
pub(crate) struct NewBooking {
    pub start: DateTime<Utc>,
    pub event_type_id: i64,
    pub attendee: AttendeeRecord,
    pub metadata: Map<String, Value>,
    pub booking_fields_responses: Map<String, Value>,
}

/// Filters of `GET /v2/bookings`.
#[derive(Debug, Clone, Default)]
pub(crate) struct BookingFilter {
    pub event_type_ids: Option<Vec<i64>>,
    pub attendee_email: Option<String>,
    pub attendee_name: Option<String>,
    pub booking_uid: Option<String>,
    pub status: Vec<String>,
    pub after_start: Option<DateTime<Utc>>,
    pub before_end: Option<DateTime<Utc>>,
    pub after_created_at: Option<DateTime<Utc>>,
    pub before_created_at: Option<DateTime<Utc>>,
    pub after_updated_at: Option<DateTime<Utc>>,
    pub before_updated_at: Option<DateTime<Utc>>,
    /// (field, descending)
    pub sort: Option<(&'static str, bool)>,
}

impl Data {
    fn index(&mut self, b: &BookingRecord) {
        if let Some(et) = b.event_type_id {
            self.by_event_type.entry(et).or_default().push(b.id);
        }
        self.by_uid.insert(b.uid.clone(), b.id);
        if b.status == BookingStatus::Accepted {
            self.index_busy(b);
        }
    }

    fn index_busy(&mut self, b: &BookingRecord) {
        for h in &b.hosts {
            self.busy
                .entry(h.id)
                .or_default()
                .insert((b.start, b.id), b.end);
        }
        if let Some(org) = b.organizer_id() {
            self.idempotency
                .insert((b.start.timestamp_millis(), b.end.timestamp_millis(), org));
        }
        let len = b.end - b.start;
        if len > self.longest {
            self.longest = len;
        }
    }

    fn unindex_busy(&mut self, b: &BookingRecord) {
        for h in &b.hosts {
            if let Some(map) = self.busy.get_mut(&h.id) {
                map.remove(&(b.start, b.id));
            }
        }
        if let Some(org) = b.organizer_id() {
            self.idempotency
                .remove(&(b.start.timestamp_millis(), b.end.timestamp_millis(), org));
        }
    }

    pub(crate) fn release_busy(&mut self, uid: &str) {
        if let Some(b) = self.booking_by_uid(uid).cloned() {
            self.unindex_busy(&b);
        }
    }

    pub(crate) fn restore_busy(&mut self, uid: &str) {
        if let Some(b) = self.booking_by_uid(uid).cloned()
            && b.status == BookingStatus::Accepted
        {
            self.index_busy(&b);
        }
    }

    fn next_id(&mut self) -> i64 {
        self.next_booking_id += 1;
        self.next_booking_id
    }

    /// The insert after a successful plan. The unique (start, end, organizer) key makes a
    /// concurrent twin fail with Cal.com's plain 409.
    pub(crate) fn commit(
        &mut self,
        plan: Plan,
        new: NewBooking,
        now: DateTime<Utc>,
        rescheduled_from: Option<(String, Option<String>, Option<String>)>,
    ) -> Result<BookingRecord, CalError> {
        if let Some(org) = plan.hosts.first().map(|h| h.id) {
            let key = (
                plan.start.timestamp_millis(),
                plan.end.timestamp_millis(),
                org,
            );
            if self.idempotency.contains(&key) {
                return Err(CalError::plain(
                    axum::http::StatusCode::CONFLICT,
                    "booking_conflict_error",
                ));
            }
        }
        let id = self.next_id();
        let host_name = plan
            .hosts
            .first()
            .map(|h| h.name.clone())
            .unwrap_or_default();
        let (from_uid, reason, by) = match rescheduled_from {
            Some((uid, reason, by)) => (Some(uid), reason, by),
            None => (None, None, None),
        };
        let booking = BookingRecord {
            id,
            uid: new_uid(),
            event_type_id: Some(plan.event_type_id),
            event_type_slug: plan.slug,
            title: format!(
                "{} between {} and {}",
                plan.event_title, host_name, new.attendee.name
            ),
            start: plan.start,
            end: plan.end,
            status: BookingStatus::Accepted,
            hosts: plan.hosts,
            attendees: vec![new.attendee],
            metadata: new.metadata,
            booking_fields_responses: new.booking_fields_responses,
            cancellation_reason: None,
            cancelled_by_email: None,
            rescheduling_reason: reason,
            rescheduled_by_email: by,
            rescheduled_from_uid: from_uid,
            rescheduled_to_uid: None,
            rescheduled: false,
            created_at: now,
            updated_at: now,
        };
        self.index(&booking);
        self.bookings.insert(id, booking.clone());
        Ok(booking)
    }

    pub(crate) fn booking_by_uid(&self, uid: &str) -> Option<&BookingRecord> {
        self.by_uid.get(uid).and_then(|id| self.bookings.get(id))
    }

    pub(crate) fn cancel(
        &mut self,
        uid: &str,
        caller: Option<i64>,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<BookingRecord, CalError> {
        let b = self.booking_by_uid(uid).cloned().ok_or_else(|| {
            CalError::not_found(format!(
                "Booking with uid={uid} was not found in the database"
            ))
        })?;
        if b.status == BookingStatus::Cancelled {
            return Err(CalError::plain(
                axum::http::StatusCode::BAD_REQUEST,
                ALREADY_CANCELLED,
            ));
        }
        let caller_is_host = caller.is_some_and(|c| b.hosts.iter().any(|h| h.id == c));
        let reason = reason.filter(|r| !r.trim().is_empty());
        if caller_is_host && reason.is_none() {
            return Err(CalError::plain(
                axum::http::StatusCode::BAD_REQUEST,
                HOST_NEEDS_REASON,
            ));
        }
        self.unindex_busy(&b);
        let by = caller
            .and_then(|c| self.users.get(&c))
            .map(|u| u.email.clone())
            .or_else(|| b.attendees.first().and_then(|a| a.email.clone()));
        let stored = self
            .bookings
            .get_mut(&b.id)
            .ok_or_else(CalError::internal)?;
        stored.status = BookingStatus::Cancelled;
        stored.cancellation_reason = reason;
        stored.cancelled_by_email = by;
        stored.updated_at = now;
        Ok(stored.clone())
    }

    /// Marks `old` as moved to `new_uid` (cancelled, `rescheduled`, `rescheduledToUid`).
    pub(crate) fn mark_rescheduled(
        &mut self,
        old_uid: &str,
        new_uid: &str,
        by: Option<String>,
        now: DateTime<Utc>,
    ) -> Option<BookingRecord> {
        let b = self.booking_by_uid(old_uid).cloned()?;
        self.unindex_busy(&b);
        let stored = self.bookings.get_mut(&b.id)?;
        stored.status = BookingStatus::Cancelled;
        stored.rescheduled = true;
        stored.rescheduled_to_uid = Some(new_uid.to_owned());
        stored.cancelled_by_email = by;
        stored.updated_at = now;
        Some(stored.clone())
    }

    /// `POST /__sim/bookings`: straight into the store, no checks but a known event type.
    pub(crate) fn insert_direct(&mut self, b: SeedBooking) -> Result<BookingRecord, CalError> {
        let et = self
            .event_types
            .get(&b.event_type_id)
            .cloned()
            .ok_or_else(|| {
                CalError::not_found(format!("Event type with id {} not found.", b.event_type_id))
            })?;
        let host_id = b
            .host_user_id
            .or(et.owner_id)
            .or_else(|| et.hosts.first().map(|h| h.user_id))
            .or_else(|| self.children_of(et.id).first().and_then(|c| c.owner_id))
            .ok_or_else(|| CalError::bad_request("the event type has no host to book"))?;
        let host = self
            .booking_host(host_id)
            .ok_or_else(|| CalError::not_found(format!("User {host_id} not found")))?;
        let uid = b.uid.unwrap_or_else(new_uid);
        if self.by_uid.contains_key(&uid) {
            return Err(CalError::bad_request(format!(
                "Booking with uid={uid} exists"
            )));
        }
        let status = match b.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("accepted") => BookingStatus::Accepted,
            Some("cancelled") => BookingStatus::Cancelled,
            Some(other) => {
                return Err(CalError::bad_request(format!("unknown status {other}")));
            }
        };
        let attendee = b
            .attendee
            .map(|a| AttendeeRecord {
                name: a.name,
                email: a.email,
                time_zone: a.time_zone,
                language: "en".into(),
                phone_number: a.phone_number,
            })
            .unwrap_or_else(|| AttendeeRecord {
                name: "Walk-in".into(),
                email: Some("walk-in@example.com".into()),
                time_zone: host.time_zone.clone(),
                language: "en".into(),
                phone_number: None,
            });
        let end = b
            .end
            .unwrap_or(b.start + Duration::minutes(et.length_in_minutes));
        if end <= b.start {
            return Err(CalError::bad_request("end must be after start"));
        }
        let now = Utc::now();
        let id = self.next_id();
        let booking = BookingRecord {
            id,
            uid,
            event_type_id: Some(et.id),
            event_type_slug: et.slug.clone(),
            title: format!("{} between {} and {}", et.title, host.name, attendee.name),
            start: b.start,
            end,
            status,
            hosts: vec![host],
            attendees: vec![attendee],
            metadata: b.metadata,
            booking_fields_responses: Map::new(),
            cancellation_reason: None,
            cancelled_by_email: None,
            rescheduling_reason: None,
            rescheduled_by_email: None,
            rescheduled_from_uid: None,
            rescheduled_to_uid: None,
            rescheduled: false,
            created_at: now,
            updated_at: now,
        };
        self.index(&booking);
        self.bookings.insert(id, booking.clone());
        Ok(booking)
    }

    /// `DELETE /__sim/bookings/{uid}`: the booking vanishes without a trace or a webhook.
    pub(crate) fn remove(&mut self, uid: &str) -> Option<BookingRecord> {
        let id = self.by_uid.remove(uid)?;
        let b = self.bookings.remove(&id)?;
        self.unindex_busy(&b);
        if let Some(et) = b.event_type_id
            && let Some(list) = self.by_event_type.get_mut(&et)
        {
            list.retain(|x| *x != id);
        }
        Some(b)
    }

    /// Whether `caller` may see `b` in `GET /v2/bookings` (FACTS 4.1).
    fn visible(&self, b: &BookingRecord, caller: i64, caller_email: &str) -> bool {
        if b.hosts.iter().any(|h| h.id == caller)
            || b.attendees
                .iter()
                .any(|a| a.email.as_deref() == Some(caller_email))
        {
            return true;
        }
        let et_team = b
            .event_type_id
            .and_then(|id| self.event_types.get(&id))
            .and_then(|et| {
                et.team_id.or_else(|| {
                    et.parent_event_type_id
                        .and_then(|p| self.event_types.get(&p))
                        .and_then(|p| p.team_id)
                })
            });
        self.teams.values().any(|t| {
            t.is_admin(caller)
                && (et_team == Some(t.id) || b.hosts.iter().any(|h| t.members.contains_key(&h.id)))
        })
    }

    pub(crate) fn list(
        &self,
        caller: i64,
        f: &BookingFilter,
        now: DateTime<Utc>,
    ) -> Vec<&BookingRecord> {
        let caller_email = self
            .users
            .get(&caller)
            .map(|u| u.email.clone())
            .unwrap_or_default();
        let candidates: Box<dyn Iterator<Item = &BookingRecord>> = match &f.event_type_ids {
            Some(ids) => Box::new(
                ids.iter()
                    .filter_map(|et| self.by_event_type.get(et))
                    .flatten()
                    .filter_map(|id| self.bookings.get(id)),
            ),
            None => Box::new(self.bookings.values()),
        };
        let mut out: Vec<&BookingRecord> = candidates
            .filter(|b| self.visible(b, caller, &caller_email))
            .filter(|b| {
                f.attendee_email.as_ref().is_none_or(|e| {
                    b.attendees.iter().any(|a| {
                        a.email
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(e))
                    })
                })
            })
            .filter(|b| {
                f.attendee_name
                    .as_ref()
                    .is_none_or(|n| b.attendees.iter().any(|a| a.name.contains(n.as_str())))
            })
            .filter(|b| f.booking_uid.as_ref().is_none_or(|u| &b.uid == u))
            .filter(|b| f.after_start.is_none_or(|t| b.start >= t))
            .filter(|b| f.before_end.is_none_or(|t| b.end <= t))
            .filter(|b| f.after_created_at.is_none_or(|t| b.created_at >= t))
            .filter(|b| f.before_created_at.is_none_or(|t| b.created_at <= t))
            .filter(|b| f.after_updated_at.is_none_or(|t| b.updated_at >= t))
            .filter(|b| f.before_updated_at.is_none_or(|t| b.updated_at <= t))
            .filter(|b| {
                f.status.is_empty()
                    || f.status.iter().any(|s| match s.as_str() {
                        "upcoming" => b.status == BookingStatus::Accepted && b.end >= now,
                        "past" => b.status != BookingStatus::Cancelled && b.end <= now,
                        "cancelled" => b.status == BookingStatus::Cancelled,
                        _ => false,
                    })
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |x: &BookingRecord| match f.sort.map(|s| s.0) {
                Some("end") => x.end,
                Some("created") => x.created_at,
                Some("updated") => x.updated_at,
                _ => x.start,
            };
            key(a).cmp(&key(b)).then(a.id.cmp(&b.id))
        });
        if f.sort.is_some_and(|s| s.1) {
            out.reverse();
        }
        out
    }
}
