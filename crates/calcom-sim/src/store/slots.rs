//! Slots and slot reservations: free times of an event type cut into Cal.com's steps, and
//! the short holds that take a slot out of them. Together because a live reservation is
//! what removes a slot, and both follow `/v2/slots` version 2024-09-04.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::availability::{intersect, union, within_booking_window};
use super::{Data, Span};
use crate::error::CalError;
use crate::model::{BookingStatus, EventTypeRecord, ReservationRecord, SchedulingType};
use crate::seed::SeedReservation;
use crate::time::iso_offset;

pub(crate) const RESERVE_BOOKED: &str = "Can't reserve a slot if the event is already booked.";
pub(crate) const RESERVE_TAKEN: &str =
    "This time slot is already reserved by another user. Please choose a different time.";

/// Cal.com's default hold, in minutes.
pub(crate) const DEFAULT_RESERVATION_MINUTES: i64 = 5;

/// A validated `POST`/`PATCH /v2/slots/reservations` body.
#[derive(Debug, Clone)]
pub(crate) struct ReserveInput {
    pub event_type_id: i64,
    pub slot_start: DateTime<Utc>,
    pub slot_duration: Option<i64>,
    pub reservation_duration: Option<i64>,
}

impl Data {
    /// The user ids whose calendars make up `et`'s availability: every one must be free
    /// (`fixed`), plus one of `pool` when it is not empty.
    fn host_sets(et: &EventTypeRecord) -> (Vec<i64>, Vec<i64>) {
        match (et.owner_id, et.scheduling_type) {
            (Some(owner), _) => (vec![owner], Vec::new()),
            (None, Some(SchedulingType::Collective)) => {
                (et.hosts.iter().map(|h| h.user_id).collect(), Vec::new())
            }
            _ => {
                let ids = |mandatory: bool| {
                    et.hosts
                        .iter()
                        .filter(|h| (h.mandatory == Some(true)) == mandatory)
                        .map(|h| h.user_id)
                        .collect()
                };
                (ids(true), ids(false))
            }
        }
    }

    /// Where `et` can take a booking inside `[from, to]`: the fixed hosts' free time
    /// intersected, and with the union of the pool's (Cal.com's aggregated availability).
    fn event_type_ranges(
        &self,
        et: &EventTypeRecord,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        ignore_uid: Option<&str>,
    ) -> Vec<Span> {
        let (fixed, pool) = Self::host_sets(et);
        if fixed.is_empty() && pool.is_empty() {
            return Vec::new();
        }
        let mut ranges: Option<Vec<Span>> = None;
        for user in &fixed {
            let free = self.free_ranges(*user, from, to, ignore_uid);
            ranges = Some(match ranges {
                None => free,
                Some(r) => intersect(&r, &free),
            });
        }
        if !pool.is_empty() {
            let any = union(
                pool.iter()
                    .flat_map(|u| self.free_ranges(*u, from, to, ignore_uid))
                    .collect(),
            );
            ranges = Some(match ranges {
                None => any,
                Some(r) => intersect(&r, &any),
            });
        }
        ranges
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(s, e)| {
                let (s, e) = (s.max(from), e.min(to));
                (s < e).then_some((s, e))
            })
            .collect()
    }

    /// Bookable slots of `et` starting in `[from, to]`, computed as Cal.com does (see
    /// `FIDELITY.md`): free ranges cut on the slot interval, minus live reservations of the
    /// same hosts, inside the minimum notice and the booking window (read in `tz`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn slots(
        &self,
        et: &EventTypeRecord,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        duration: Option<i64>,
        ignore_uid: Option<&str>,
        now: DateTime<Utc>,
        tz: &Tz,
    ) -> Vec<Span> {
        if et.is_managed_parent() {
            return Vec::new();
        }
        let length = duration.unwrap_or(et.length_in_minutes).max(1);
        let frequency = et.slot_interval.unwrap_or(length).max(1);
        let earliest = ceil_minute(now + Duration::minutes(et.minimum_booking_notice));
        let step = [60, 30, 20, 15, 10, 5]
            .into_iter()
            .find(|i| frequency % i == 0)
            .unwrap_or(1);
        let length_d = Duration::minutes(length);
        let frequency_d = Duration::minutes(frequency);
        // A slot may end on the range's last second (an end of 23:59:59 takes a slot to 24:00).
        let fits = |s: DateTime<Utc>, range_end: DateTime<Utc>| {
            s + length_d - Duration::seconds(1) <= range_end
        };
        let mut starts: BTreeSet<DateTime<Utc>> = BTreeSet::new();
        for (range_start, range_end) in self.event_type_ranges(et, from, to, ignore_uid) {
            let mut s = align(range_start.max(earliest), step);
            // A start inside an earlier slot moves to that slot when it lies in this range,
            // else past it, so ranges of one grid do not produce overlapping starts.
            if let Some(prev) = starts.range(..s).next_back().copied()
                && s < prev + frequency_d
            {
                s = if prev >= range_start {
                    prev
                } else {
                    prev + frequency_d
                };
            }
            while fits(s, range_end) {
                starts.insert(s);
                s += frequency_d;
            }
        }
        let (fixed, pool) = Self::host_sets(et);
        let reserved: Vec<Span> = self
            .reservations
            .values()
            .filter(|r| r.reservation_until > now)
            .filter(|r| fixed.contains(&r.user_id) || pool.contains(&r.user_id))
            .map(|r| (r.slot_start, r.slot_end))
            .collect();
        starts
            .into_iter()
            .map(|s| (s, s + length_d))
            .filter(|&(s, e)| !reserved.iter().any(|&(rs, re)| rs < e && s < re))
            .filter(|&(s, _)| within_booking_window(et, s, now, tz))
            .collect()
    }

    // ---- reservations -------------------------------------------------------------------

    /// The checks Cal.com's reserve and update share: the event type, a variable length,
    /// no accepted booking of this event type and no live reservation of it overlapping.
    /// `update` is the reservation being changed; Cal.com's overlap check does not skip it,
    /// so moving a live reservation onto a time overlapping itself is refused too.
    fn check_reservation(
        &self,
        input: &ReserveInput,
        now: DateTime<Utc>,
    ) -> Result<(EventTypeRecord, DateTime<Utc>), CalError> {
        let et = self.event_types.get(&input.event_type_id).ok_or_else(|| {
            CalError::not_found(format!(
                "Event Type with ID={} not found",
                input.event_type_id
            ))
        })?;
        if let Some(d) = input.slot_duration {
            let lengths: Vec<i64> = et
                .metadata
                .get("multipleDuration")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            if lengths.is_empty() {
                return Err(CalError::bad_request(
                    "You passed 'slotDuration' but this event type is not a variable length event type.",
                ));
            }
            if !lengths.contains(&d) {
                let list: Vec<String> = lengths.iter().map(i64::to_string).collect();
                return Err(CalError::bad_request(format!(
                    "Provided 'slotDuration' is not one of the possible lengths for the event type. The possible lengths for this variable length event type are: {}",
                    list.join(", ")
                )));
            }
        }
        let end = input.slot_start
            + Duration::minutes(input.slot_duration.unwrap_or(et.length_in_minutes));
        let booked = self.by_event_type.get(&et.id).is_some_and(|ids| {
            ids.iter().filter_map(|id| self.bookings.get(id)).any(|b| {
                b.status == BookingStatus::Accepted && b.start < end && input.slot_start < b.end
            })
        });
        if booked {
            return Err(CalError::unprocessable(RESERVE_BOOKED));
        }
        let taken = self.reservations.values().any(|r| {
            r.event_type_id == et.id
                && r.reservation_until > now
                && r.slot_start < end
                && input.slot_start < r.slot_end
        });
        if taken {
            return Err(CalError::unprocessable(RESERVE_TAKEN));
        }
        Ok((et.clone(), end))
    }

    /// Whether `caller` may choose a reservation's duration for `et`: the owner, someone
    /// sharing a team with the owner, or a member of the type's team.
    pub(crate) fn may_set_reservation_duration(&self, caller: i64, et_id: i64) -> bool {
        let Some(et) = self.event_types.get(&et_id) else {
            return true;
        };
        match (et.owner_id, et.team_id) {
            (Some(owner), _) => {
                owner == caller
                    || self
                        .teams
                        .values()
                        .any(|t| t.members.contains_key(&owner) && t.members.contains_key(&caller))
            }
            (None, Some(team)) => self
                .teams
                .get(&team)
                .is_some_and(|t| t.members.contains_key(&caller)),
            _ => false,
        }
    }

    /// `POST /v2/slots/reservations` (Cal.com's `SlotsService_2024_09_04.reserveSlot`).
    pub(crate) fn reserve(
        &mut self,
        input: &ReserveInput,
        now: DateTime<Utc>,
    ) -> Result<ReservationRecord, CalError> {
        let (et, end) = self.check_reservation(input, now)?;
        let user_id = et
            .owner_id
            .or_else(|| et.hosts.first().map(|h| h.user_id))
            .ok_or_else(|| {
                CalError::bad_request("Cannot reserve a slot for a team event without any hosts")
            })?;
        let minutes = input
            .reservation_duration
            .unwrap_or(DEFAULT_RESERVATION_MINUTES);
        let record = ReservationRecord {
            reservation_uid: uuid::Uuid::new_v4().to_string(),
            event_type_id: et.id,
            user_id,
            slot_start: input.slot_start,
            slot_end: end,
            slot_duration: (end - input.slot_start).num_minutes(),
            reservation_duration: minutes,
            reservation_until: now + Duration::minutes(minutes),
        };
        self.reservations
            .insert(record.reservation_uid.clone(), record.clone());
        Ok(record)
    }

    /// `PATCH /v2/slots/reservations/{uid}`: new time and event type, and the hold restarts
    /// from now (default 5 minutes). The host it is held for stays as it was.
    pub(crate) fn update_reservation(
        &mut self,
        uid: &str,
        input: &ReserveInput,
        now: DateTime<Utc>,
    ) -> Result<ReservationRecord, CalError> {
        if !self.reservations.contains_key(uid) {
            return Err(CalError::not_found(format!(
                "Slot with uid={uid} not found"
            )));
        }
        let (et, end) = self.check_reservation(input, now)?;
        let minutes = input
            .reservation_duration
            .unwrap_or(DEFAULT_RESERVATION_MINUTES);
        let stored = self
            .reservations
            .get_mut(uid)
            .ok_or_else(CalError::internal)?;
        stored.event_type_id = et.id;
        stored.slot_start = input.slot_start;
        stored.slot_end = end;
        stored.slot_duration = (end - input.slot_start).num_minutes();
        stored.reservation_duration = minutes;
        stored.reservation_until = now + Duration::minutes(minutes);
        Ok(stored.clone())
    }

    /// `POST /__sim/reservations`: straight into the store, no checks but a known event type.
    pub(crate) fn insert_reservation(
        &mut self,
        r: SeedReservation,
    ) -> Result<ReservationRecord, CalError> {
        let et = self.event_types.get(&r.event_type_id).ok_or_else(|| {
            CalError::not_found(format!("Event Type with ID={} not found", r.event_type_id))
        })?;
        let user_id = r
            .user_id
            .or(et.owner_id)
            .or_else(|| et.hosts.first().map(|h| h.user_id))
            .ok_or_else(|| CalError::bad_request("the event type has no host to hold"))?;
        let duration = r.slot_duration.unwrap_or(et.length_in_minutes);
        let record = ReservationRecord {
            reservation_uid: r
                .reservation_uid
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            event_type_id: et.id,
            user_id,
            slot_start: r.slot_start,
            slot_end: r.slot_start + Duration::minutes(duration),
            slot_duration: duration,
            reservation_duration: (r.reservation_until - Utc::now()).num_minutes().max(0),
            reservation_until: r.reservation_until,
        };
        self.reservations
            .insert(record.reservation_uid.clone(), record.clone());
        Ok(record)
    }
}

/// Rounds up to the next whole minute.
fn ceil_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.duration_trunc(Duration::minutes(1)).unwrap_or(t);
    if floor < t {
        floor + Duration::minutes(1)
    } else {
        floor
    }
}

/// Cal.com starts a range's slots on the next UTC minute-of-hour that is a multiple of
/// `step` (the largest of 60, 30, 20, 15, 10, 5 dividing the slot interval).
fn align(t: DateTime<Utc>, step: i64) -> DateTime<Utc> {
    let t = ceil_minute(t);
    let minute = i64::from(t.minute());
    if minute % step == 0 {
        return t;
    }
    let hour = t.duration_trunc(Duration::hours(1)).unwrap_or(t);
    hour + Duration::minutes((minute + step - 1) / step * step)
}

/// Slot output keyed by date in `tz` (FACTS 6).
pub(crate) fn slots_output(
    slots: &[(DateTime<Utc>, DateTime<Utc>)],
    tz: &Tz,
    range: bool,
) -> Value {
    let mut by_day: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (s, e) in slots {
        let ls = s.with_timezone(tz);
        let le = e.with_timezone(tz);
        let item = if range {
            json!({"start": iso_offset(&ls.fixed_offset()), "end": iso_offset(&le.fixed_offset())})
        } else {
            json!({"start": iso_offset(&ls.fixed_offset())})
        };
        by_day
            .entry(ls.date_naive().format("%Y-%m-%d").to_string())
            .or_default()
            .push(item);
    }
    json!(by_day)
}
