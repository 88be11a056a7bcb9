//! The sim's data and Cal.com's rules over it: event types (with managed children), the
//! availability check, bookings with their indexes, slots and reservations.
//!
//! Bookings are indexed by host (start-ordered) so an availability check touches only the
//! host's bookings near the requested time, never the whole table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{
    DateTime, Datelike, Duration, DurationRound, LocalResult, NaiveDate, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::{CalError, SimError};
use crate::model::{
    AttendeeRecord, BookingHostRecord, BookingRecord, BookingStatus, BookingWindow,
    EventTypeRecord, HostRecord, HostView, ReservationRecord, SchedulingType, TeamRecord,
    UserRecord,
};
use crate::seed::{Seed, SeedBooking, SeedEventType, SeedReservation, SeedUser, WorkingHours};
use crate::time::iso_offset;

pub(crate) const MANAGED_PARENT_MESSAGE: &str = "is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.";
pub(crate) const USER_BUSY: &str =
    "User either already has booking at this time or is not available";
pub(crate) const TEAM_BUSY: &str =
    "One of the hosts either already has booking at this time or is not available";
pub(crate) const IN_THE_PAST: &str = "Attempting to book a meeting in the past.";
pub(crate) const TOO_SOON: &str = "The event type can't be booked at the \"start\" time provided. This could be because it's too soon (violating the minimum booking notice) or too far in the future (outside the event's scheduling window). Try fetching available slots first using the GET /v2/slots endpoint and then make a booking with \"start\" time equal to one of the available slots.";
pub(crate) const ALREADY_CANCELLED: &str = "This booking has already been cancelled.";
pub(crate) const HOST_NEEDS_REASON: &str = "Cancellation reason is required when you are the host";
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

/// Hash of an API key as Cal.com stores it: SHA-256 of the key without its `cal_` prefix.
pub(crate) fn key_hash(key: &str) -> String {
    let stripped = key.strip_prefix("cal_").unwrap_or(key);
    hex::encode(Sha256::digest(stripped.as_bytes()))
}

/// The `(start, end, organizer)` identity Cal.com keeps unique for accepted bookings.
type IdempotencyKey = (i64, i64, i64);

/// A half-open UTC range `[start, end)`.
pub(crate) type Span = (DateTime<Utc>, DateTime<Utc>);

/// One host's accepted bookings: (start, booking id) → end.
type HostCalendar = BTreeMap<(DateTime<Utc>, i64), DateTime<Utc>>;

#[derive(Debug, Default)]
pub(crate) struct Data {
    pub users: BTreeMap<i64, UserRecord>,
    pub usernames: HashMap<String, i64>,
    pub teams: BTreeMap<i64, TeamRecord>,
    pub api_keys: HashMap<String, i64>,
    pub event_types: BTreeMap<i64, EventTypeRecord>,
    pub bookings: HashMap<i64, BookingRecord>,
    by_uid: HashMap<String, i64>,
    by_event_type: HashMap<i64, Vec<i64>>,
    /// Accepted bookings per host: (start, booking id) → end.
    busy: HashMap<i64, HostCalendar>,
    idempotency: HashSet<IdempotencyKey>,
    /// The longest accepted booking, bounding how far back an overlap search looks.
    longest: Duration,
    next_booking_id: i64,
    pub reservations: HashMap<String, ReservationRecord>,
}

/// A validated `POST /v2/bookings` body.
#[derive(Debug, Clone)]
pub(crate) struct NewBooking {
    pub start: DateTime<Utc>,
    pub event_type_id: i64,
    pub attendee: AttendeeRecord,
    pub metadata: Map<String, Value>,
    pub booking_fields_responses: Map<String, Value>,
}

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

/// A validated team event type create/update body.
#[derive(Debug, Clone, Default)]
pub(crate) struct TeamEventTypeInput {
    pub title: Option<String>,
    pub slug: Option<String>,
    pub length_in_minutes: Option<i64>,
    pub scheduling_type: Option<SchedulingType>,
    pub hosts: Option<Vec<HostRecord>>,
    pub assign_all_team_members: Option<bool>,
    pub description: Option<String>,
    pub hidden: Option<bool>,
    pub minimum_booking_notice: Option<i64>,
    pub before_event_buffer: Option<i64>,
    pub after_event_buffer: Option<i64>,
    pub slot_interval: Option<i64>,
    /// `Some(None)`: `{"disabled": true}`, back to unlimited.
    pub booking_window: Option<Option<BookingWindow>>,
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

fn parse_day(day: &str) -> Option<usize> {
    let d = day.trim().to_ascii_lowercase();
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    names.iter().position(|n| d.starts_with(n))
}

fn parse_minutes(raw: &str) -> Option<u32> {
    let (h, m) = raw.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.get(..2).unwrap_or(m).parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

fn working_minutes(hours: &[WorkingHours]) -> Result<[Vec<(u32, u32)>; 7], SimError> {
    let mut out: [Vec<(u32, u32)>; 7] = Default::default();
    let defaults;
    let hours = if hours.is_empty() {
        defaults = [WorkingHours::new(
            &["Mon", "Tue", "Wed", "Thu", "Fri"],
            "09:00",
            "17:00",
        )];
        &defaults[..]
    } else {
        hours
    };
    for wh in hours {
        let start = parse_minutes(&wh.start_time)
            .ok_or_else(|| SimError::InvalidSeed(format!("bad time {:?}", wh.start_time)))?;
        let end = parse_minutes(&wh.end_time)
            .ok_or_else(|| SimError::InvalidSeed(format!("bad time {:?}", wh.end_time)))?;
        if end <= start {
            return Err(SimError::InvalidSeed(format!(
                "working hours end {} before start {}",
                wh.end_time, wh.start_time
            )));
        }
        for day in &wh.days {
            let i = parse_day(day)
                .ok_or_else(|| SimError::InvalidSeed(format!("bad weekday {day:?}")))?;
            out[i].push((start, end));
        }
    }
    Ok(out)
}

fn default_managed_metadata() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("managedEventConfig".into(), json!({}));
    m
}

impl Data {
    fn tz_of(&self, user_id: i64) -> Tz {
        self.users
            .get(&user_id)
            .and_then(|u| u.time_zone.parse().ok())
            .unwrap_or(chrono_tz::UTC)
    }

    pub(crate) fn user_by_key(&self, key: &str) -> Option<i64> {
        self.api_keys.get(&key_hash(key)).copied()
    }

    fn next_event_type_id(&self) -> i64 {
        self.event_types.keys().next_back().copied().unwrap_or(0) + 1
    }

    // ---- seeding ----------------------------------------------------------------------

    pub(crate) fn seed(&mut self, seed: Seed) -> Result<(), SimError> {
        for u in seed.users {
            self.add_user(u)?;
        }
        for t in seed.teams {
            if self.teams.contains_key(&t.id) {
                return Err(SimError::Duplicate {
                    what: "team",
                    id: t.id,
                });
            }
            let mut members = BTreeMap::new();
            for m in t.members {
                if !self.users.contains_key(&m.user_id) {
                    return Err(SimError::Unknown {
                        what: "team member",
                        id: m.user_id,
                    });
                }
                members.insert(m.user_id, m.role.to_ascii_uppercase());
            }
            self.teams.insert(
                t.id,
                TeamRecord {
                    id: t.id,
                    slug: t.slug,
                    name: t.name,
                    members,
                },
            );
        }
        for k in seed.api_keys {
            if !k.key.starts_with("cal_") {
                return Err(SimError::InvalidSeed(
                    "API keys start with cal_ (cal_… or cal_live_…)".into(),
                ));
            }
            if !self.users.contains_key(&k.user_id) {
                return Err(SimError::Unknown {
                    what: "user",
                    id: k.user_id,
                });
            }
            self.api_keys.insert(key_hash(&k.key), k.user_id);
        }
        for et in seed.event_types {
            self.add_event_type(et)?;
        }
        for b in seed.bookings {
            self.insert_direct(b)
                .map_err(|e| SimError::InvalidSeed(e.message))?;
        }
        Ok(())
    }

    fn add_user(&mut self, u: SeedUser) -> Result<(), SimError> {
        if self.users.contains_key(&u.id) {
            return Err(SimError::Duplicate {
                what: "user",
                id: u.id,
            });
        }
        if u.time_zone.parse::<Tz>().is_err() {
            return Err(SimError::InvalidSeed(format!(
                "user {}: unknown time zone {}",
                u.id, u.time_zone
            )));
        }
        let working = working_minutes(&u.working_hours)?;
        self.usernames.insert(u.username.clone(), u.id);
        self.users.insert(
            u.id,
            UserRecord {
                id: u.id,
                name: u.name.unwrap_or_else(|| u.username.clone()),
                username: u.username,
                email: u.email,
                time_zone: u.time_zone,
                working_minutes: working,
            },
        );
        Ok(())
    }

    fn add_event_type(&mut self, et: SeedEventType) -> Result<(), SimError> {
        if self.event_types.contains_key(&et.id) {
            return Err(SimError::Duplicate {
                what: "event type",
                id: et.id,
            });
        }
        let scheduling =
            match &et.scheduling_type {
                Some(raw) => Some(SchedulingType::parse(raw).ok_or_else(|| {
                    SimError::InvalidSeed(format!("unknown scheduling type {raw}"))
                })?),
                None => None,
            };
        match (et.owner_id, et.team_id) {
            (Some(owner), None) if self.users.contains_key(&owner) => {}
            (None, Some(team)) if self.teams.contains_key(&team) && scheduling.is_some() => {}
            _ => {
                return Err(SimError::InvalidSeed(format!(
                    "event type {}: needs an existing ownerId, or a teamId with a schedulingType",
                    et.id
                )));
            }
        }
        let managed = scheduling == Some(SchedulingType::Managed);
        let metadata = et.metadata.clone().unwrap_or_else(|| {
            if managed {
                default_managed_metadata()
            } else {
                Map::new()
            }
        });
        let record = EventTypeRecord {
            id: et.id,
            slug: et.slug.clone(),
            title: et.title.clone(),
            description: et.description.clone().unwrap_or_default(),
            length_in_minutes: et.length_in_minutes,
            owner_id: et.owner_id,
            team_id: et.team_id,
            parent_event_type_id: None,
            scheduling_type: scheduling,
            hosts: if managed {
                Vec::new()
            } else {
                et.hosts
                    .iter()
                    .map(|h| HostRecord {
                        user_id: h.user_id,
                        mandatory: h.mandatory,
                        priority: h.priority.clone(),
                    })
                    .collect()
            },
            assign_all_team_members: et.assign_all_team_members,
            hidden: et.hidden,
            metadata,
            slot_interval: et.slot_interval,
            minimum_booking_notice: et.minimum_booking_notice.unwrap_or(0),
            before_event_buffer: 0,
            after_event_buffer: 0,
            booking_window: et.booking_window.clone(),
        };
        for child in &et.children {
            if self.event_types.contains_key(&child.id) || child.id == et.id {
                return Err(SimError::Duplicate {
                    what: "event type",
                    id: child.id,
                });
            }
            if !self.users.contains_key(&child.owner_id) {
                return Err(SimError::Unknown {
                    what: "user",
                    id: child.owner_id,
                });
            }
        }
        for child in et.children {
            let c = child_of(&record, child.id, child.owner_id);
            self.event_types.insert(child.id, c);
        }
        self.event_types.insert(et.id, record);
        Ok(())
    }

    // ---- event types ------------------------------------------------------------------

    pub(crate) fn children_of(&self, parent_id: i64) -> Vec<&EventTypeRecord> {
        self.event_types
            .values()
            .filter(|e| e.parent_event_type_id == Some(parent_id))
            .collect()
    }

    pub(crate) fn host_views(&self, et: &EventTypeRecord) -> Vec<HostView> {
        let view = |user_id: i64, mandatory: Option<bool>, priority: Option<String>| {
            let user = self.users.get(&user_id);
            HostView {
                user_id,
                name: user.map(|u| u.name.clone()).unwrap_or_default(),
                username: user.map(|u| u.username.clone()).unwrap_or_default(),
                mandatory,
                priority,
            }
        };
        if et.is_managed_parent() {
            self.children_of(et.id)
                .iter()
                .filter_map(|c| c.owner_id)
                .map(|uid| view(uid, None, None))
                .collect()
        } else {
            et.hosts
                .iter()
                .map(|h| view(h.user_id, h.mandatory, h.priority.clone()))
                .collect()
        }
    }

    pub(crate) fn team_output(&self, et: &EventTypeRecord) -> Value {
        let team = et.team_id.and_then(|t| self.teams.get(&t));
        crate::model::team_event_type_output(et, &self.host_views(et), team)
    }

    pub(crate) fn personal_output(&self, et: &EventTypeRecord) -> Value {
        let username = et
            .owner_id
            .and_then(|o| self.users.get(&o))
            .map(|u| u.username.as_str())
            .unwrap_or("");
        crate::model::personal_event_type_output(et, username)
    }

    fn team_admin_check(&self, team_id: i64, caller: i64) -> Result<&TeamRecord, CalError> {
        let team = self
            .teams
            .get(&team_id)
            .ok_or_else(|| CalError::not_found(format!("Team with id={team_id} not found")))?;
        if !team.is_admin(caller) {
            return Err(CalError::forbidden(format!(
                "RolesGuard - user with id={caller} does not have the required role TEAM_ADMIN in team with id={team_id}."
            )));
        }
        Ok(team)
    }

    fn validate_hosts(&self, team: &TeamRecord, hosts: &[HostRecord]) -> Result<(), CalError> {
        let invalid: Vec<String> = hosts
            .iter()
            .filter(|h| !team.members.contains_key(&h.user_id))
            .map(|h| h.user_id.to_string())
            .collect();
        if invalid.is_empty() {
            Ok(())
        } else {
            Err(CalError::not_found(format!(
                "Invalid hosts: {} are not members of team with id {}.",
                invalid.join(", "),
                team.id
            )))
        }
    }

    /// `POST /v2/teams/{teamId}/event-types`: the parent plus, for a managed type with
    /// hosts or `assignAllTeamMembers`, one child per host.
    pub(crate) fn create_team_event_type(
        &mut self,
        team_id: i64,
        caller: i64,
        input: TeamEventTypeInput,
    ) -> Result<Vec<i64>, CalError> {
        let team = self.team_admin_check(team_id, caller)?.clone();
        let (Some(title), Some(slug), Some(length), Some(scheduling)) = (
            input.title.clone(),
            input.slug.clone(),
            input.length_in_minutes,
            input.scheduling_type,
        ) else {
            return Err(CalError::bad_request(
                "title, slug, lengthInMinutes and schedulingType are required",
            ));
        };
        if let Some(hosts) = &input.hosts {
            self.validate_hosts(&team, hosts)?;
        }
        if self
            .event_types
            .values()
            .any(|e| e.team_id == Some(team_id) && e.slug == slug)
        {
            return Err(CalError::bad_request(format!(
                "Team with id={team_id} already has event type with slug={slug}"
            )));
        }
        let id = self.next_event_type_id();
        let managed = scheduling == SchedulingType::Managed;
        let assign_all = input.assign_all_team_members.unwrap_or(false);
        let record = EventTypeRecord {
            id,
            slug,
            title,
            description: input.description.clone().unwrap_or_default(),
            length_in_minutes: length,
            owner_id: None,
            team_id: Some(team_id),
            parent_event_type_id: None,
            scheduling_type: Some(scheduling),
            hosts: if managed {
                Vec::new()
            } else if assign_all {
                all_members(&team)
            } else {
                input.hosts.clone().unwrap_or_default()
            },
            assign_all_team_members: assign_all,
            hidden: input.hidden.unwrap_or(false),
            // The v2 create path injects `managedEventConfig: {}` (FACTS 5.2).
            metadata: if managed {
                default_managed_metadata()
            } else {
                Map::new()
            },
            slot_interval: input.slot_interval,
            minimum_booking_notice: input.minimum_booking_notice.unwrap_or(0),
            before_event_buffer: input.before_event_buffer.unwrap_or(0),
            after_event_buffer: input.after_event_buffer.unwrap_or(0),
            booking_window: input.booking_window.clone().flatten(),
        };
        self.event_types.insert(id, record);
        let mut ids = vec![id];
        if managed {
            let wanted = if assign_all {
                Some(team.members.keys().copied().collect())
            } else {
                input
                    .hosts
                    .as_ref()
                    .map(|h| h.iter().map(|h| h.user_id).collect())
            };
            ids.extend(self.sync_children(id, wanted));
        }
        Ok(ids)
    }

    /// `PATCH /v2/teams/{teamId}/event-types/{id}`: `hosts` replaces the set of children
    /// (new hosts get one, dropped hosts lose theirs); without it existing children are
    /// updated.
    pub(crate) fn update_team_event_type(
        &mut self,
        team_id: i64,
        id: i64,
        caller: i64,
        input: TeamEventTypeInput,
    ) -> Result<Vec<i64>, CalError> {
        let team = self.team_admin_check(team_id, caller)?.clone();
        let not_found = || CalError::not_found(format!("Event type with id={id} not found"));
        let et = self.event_types.get(&id).ok_or_else(not_found)?;
        if et.team_id != Some(team_id) {
            return Err(not_found());
        }
        if let Some(hosts) = &input.hosts {
            self.validate_hosts(&team, hosts)?;
        }
        let managed = et.is_managed_parent();
        let assign_all = input.assign_all_team_members;
        if let Some(et) = self.event_types.get_mut(&id) {
            if let Some(v) = &input.title {
                et.title = v.clone();
            }
            if let Some(v) = &input.slug {
                et.slug = v.clone();
            }
            if let Some(v) = input.length_in_minutes {
                et.length_in_minutes = v;
            }
            if let Some(v) = &input.description {
                et.description = v.clone();
            }
            if let Some(v) = input.hidden {
                et.hidden = v;
            }
            if let Some(v) = input.minimum_booking_notice {
                et.minimum_booking_notice = v;
            }
            if let Some(v) = input.before_event_buffer {
                et.before_event_buffer = v;
            }
            if let Some(v) = input.after_event_buffer {
                et.after_event_buffer = v;
            }
            if input.slot_interval.is_some() {
                et.slot_interval = input.slot_interval;
            }
            if let Some(w) = &input.booking_window {
                et.booking_window = w.clone();
            }
            if let Some(v) = assign_all {
                et.assign_all_team_members = v;
            }
            if !managed {
                if assign_all == Some(true) {
                    et.hosts = all_members(&team);
                } else if let Some(hosts) = &input.hosts {
                    et.hosts = hosts.clone();
                }
            }
        }
        let mut ids = vec![id];
        if managed {
            let wanted = if assign_all == Some(true) {
                Some(team.members.keys().copied().collect())
            } else {
                input
                    .hosts
                    .as_ref()
                    .map(|h| h.iter().map(|h| h.user_id).collect())
            };
            ids.extend(self.sync_children(id, wanted));
        }
        Ok(ids)
    }

    /// Cal.com's core updater for managed children. Returns the children's ids afterwards.
    fn sync_children(&mut self, parent_id: i64, wanted: Option<Vec<i64>>) -> Vec<i64> {
        let Some(parent) = self.event_types.get(&parent_id).cloned() else {
            return Vec::new();
        };
        // Without an object `managedEventConfig` the updater silently does nothing
        // (FACTS 5.3), e.g. the `[]` a PHP client writes for an empty object.
        if !parent
            .metadata
            .get("managedEventConfig")
            .is_some_and(Value::is_object)
        {
            return self.children_of(parent_id).iter().map(|c| c.id).collect();
        }
        let existing: BTreeMap<i64, i64> = self
            .children_of(parent_id)
            .iter()
            .filter_map(|c| c.owner_id.map(|o| (o, c.id)))
            .collect();
        let wanted: Vec<i64> = match wanted {
            Some(list) => {
                let mut seen = HashSet::new();
                list.into_iter().filter(|u| seen.insert(*u)).collect()
            }
            None => existing.keys().copied().collect(),
        };
        for (owner, child_id) in &existing {
            if !wanted.contains(owner) {
                self.delete_event_type(*child_id);
            }
        }
        let mut ids = Vec::new();
        for owner in wanted {
            if let Some(child_id) = existing.get(&owner) {
                let refreshed = child_of(&parent, *child_id, owner);
                self.event_types.insert(*child_id, refreshed);
                ids.push(*child_id);
                continue;
            }
            // A member's personal type with the same slug is deleted to make room.
            let clash: Vec<i64> = self
                .event_types
                .values()
                .filter(|e| {
                    e.owner_id == Some(owner) && e.slug == parent.slug && e.team_id.is_none()
                })
                .map(|e| e.id)
                .collect();
            for id in clash {
                self.delete_event_type(id);
            }
            let child_id = self.next_event_type_id();
            self.event_types
                .insert(child_id, child_of(&parent, child_id, owner));
            ids.push(child_id);
        }
        ids
    }

    /// Bookings keep existing with `eventTypeId` nulled (FACTS 5.3).
    fn delete_event_type(&mut self, id: i64) {
        self.event_types.remove(&id);
        if let Some(booking_ids) = self.by_event_type.remove(&id) {
            for bid in booking_ids {
                if let Some(b) = self.bookings.get_mut(&bid) {
                    b.event_type_id = None;
                }
            }
        }
    }

    /// `PATCH /v2/event-types/{id}`: personal types of the caller only. Unknown fields
    /// (such as `hosts`) are stripped by Cal.com's global pipe, so they change nothing.
    pub(crate) fn update_personal_event_type(
        &mut self,
        id: i64,
        caller: i64,
        body: &Map<String, Value>,
    ) -> Result<(), CalError> {
        let et = self
            .event_types
            .get_mut(&id)
            .filter(|e| e.owner_id == Some(caller) && e.team_id.is_none())
            .ok_or_else(|| CalError::not_found(format!("Event type with id={id} not found")))?;
        if let Some(v) = body.get("title").and_then(Value::as_str) {
            et.title = v.to_owned();
        }
        if let Some(v) = body.get("slug").and_then(Value::as_str) {
            et.slug = v.to_owned();
        }
        if let Some(v) = body.get("description").and_then(Value::as_str) {
            et.description = v.to_owned();
        }
        if let Some(v) = body.get("lengthInMinutes").and_then(Value::as_i64) {
            if v < 1 {
                return Err(CalError::bad_request(
                    "lengthInMinutes must not be less than 1",
                ));
            }
            et.length_in_minutes = v;
        }
        if let Some(v) = body.get("hidden").and_then(Value::as_bool) {
            et.hidden = v;
        }
        if let Some(v) = body.get("minimumBookingNotice").and_then(Value::as_i64) {
            et.minimum_booking_notice = v;
        }
        if let Some(v) = body.get("slotInterval").and_then(Value::as_i64) {
            et.slot_interval = Some(v);
        }
        if let Some(w) = parse_booking_window(body.get("bookingWindow"))? {
            et.booking_window = w;
        }
        Ok(())
    }

    // ---- availability -----------------------------------------------------------------

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
    fn free_ranges(
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

    fn booking_host(&self, user_id: i64) -> Option<BookingHostRecord> {
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

    // ---- bookings ---------------------------------------------------------------------

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

    // ---- slots ------------------------------------------------------------------------

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

    pub(crate) fn reset(&mut self) {
        *self = Data::default();
    }
}

fn all_members(team: &TeamRecord) -> Vec<HostRecord> {
    team.members
        .keys()
        .map(|&user_id| HostRecord {
            user_id,
            mandatory: None,
            priority: None,
        })
        .collect()
}

fn child_of(parent: &EventTypeRecord, id: i64, owner: i64) -> EventTypeRecord {
    EventTypeRecord {
        id,
        slug: parent.slug.clone(),
        title: parent.title.clone(),
        description: parent.description.clone(),
        length_in_minutes: parent.length_in_minutes,
        owner_id: Some(owner),
        team_id: None,
        parent_event_type_id: Some(parent.id),
        scheduling_type: Some(SchedulingType::Managed),
        hosts: Vec::new(),
        assign_all_team_members: false,
        hidden: false,
        metadata: parent.metadata.clone(),
        slot_interval: parent.slot_interval,
        minimum_booking_notice: parent.minimum_booking_notice,
        before_event_buffer: parent.before_event_buffer,
        after_event_buffer: parent.after_event_buffer,
        booking_window: parent.booking_window.clone(),
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
fn intersect(a: &[Span], b: &[Span]) -> Vec<Span> {
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
fn union(mut ranges: Vec<Span>) -> Vec<Span> {
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

/// Reads `bookingWindow` of an event type create/update body: absent → `None`,
/// `{"disabled": true}` → `Some(None)`, a window → `Some(Some(w))`.
pub(crate) fn parse_booking_window(
    raw: Option<&Value>,
) -> Result<Option<Option<BookingWindow>>, CalError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(v) if v.get("disabled").and_then(Value::as_bool) == Some(true) => Ok(Some(None)),
        Some(v) => serde_json::from_value(v.clone())
            .map(|w| Some(Some(w)))
            .map_err(|e| {
                CalError::bad_request(format!(
                    "bookingWindow must be a businessDays, calendarDays or range window or {{disabled: true}}: {e}"
                ))
            }),
    }
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

pub(crate) fn new_uid() -> String {
    // Cal.com uids are opaque url-safe strings; a v4 uuid without dashes has the same feel.
    uuid::Uuid::new_v4().simple().to_string()
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
