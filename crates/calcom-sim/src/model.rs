//! What the sim holds (users, teams, event types, bookings, reservations) and how each is
//! rendered in Cal.com's v2 output shapes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::time::iso;

/// A user with working hours per weekday (Monday = 0), as local minutes `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub email: String,
    pub time_zone: String,
    /// Index 0 = Monday; each entry is a list of `[startMinute, endMinute)` in local time.
    pub working_minutes: [Vec<(u32, u32)>; 7],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamRecord {
    pub id: i64,
    pub slug: String,
    pub name: String,
    /// user id → `OWNER` | `ADMIN` | `MEMBER`
    pub members: BTreeMap<i64, String>,
}

impl TeamRecord {
    pub(crate) fn is_admin(&self, user_id: i64) -> bool {
        matches!(
            self.members.get(&user_id).map(String::as_str),
            Some("OWNER" | "ADMIN")
        )
    }
}

/// How a team event type picks its host(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SchedulingType {
    Managed,
    RoundRobin,
    Collective,
}

impl SchedulingType {
    /// Accepts the API words and the database enum names (`ROUND_ROBIN`).
    pub fn parse(raw: &str) -> Option<Self> {
        let folded: String = raw
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        match folded.as_str() {
            "managed" => Some(Self::Managed),
            "roundrobin" => Some(Self::RoundRobin),
            "collective" => Some(Self::Collective),
            _ => None,
        }
    }

    pub fn as_api_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::RoundRobin => "roundRobin",
            Self::Collective => "collective",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub user_id: i64,
    #[serde(default)]
    pub mandatory: Option<bool>,
    #[serde(default)]
    pub priority: Option<String>,
}

/// An event type: personal (`ownerId`), team (`teamId` + `schedulingType`), or a managed
/// child (`ownerId` + `parentEventTypeId`, no team).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeRecord {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub length_in_minutes: i64,
    pub owner_id: Option<i64>,
    pub team_id: Option<i64>,
    pub parent_event_type_id: Option<i64>,
    pub scheduling_type: Option<SchedulingType>,
    /// For round robin / collective types. A managed parent's hosts are its children's owners.
    pub hosts: Vec<HostRecord>,
    pub assign_all_team_members: bool,
    pub hidden: bool,
    pub metadata: Map<String, Value>,
    pub slot_interval: Option<i64>,
    pub minimum_booking_notice: i64,
    pub before_event_buffer: i64,
    pub after_event_buffer: i64,
    /// How far ahead it can be booked; `None` is Cal.com's "unlimited".
    #[serde(default)]
    pub booking_window: Option<BookingWindow>,
}

/// Cal.com's `bookingWindow` (its `periodType` fields), in the API's shape:
/// `{"type": "calendarDays", "value": 30}`, `{"type": "businessDays", "value": 10}` or
/// `{"type": "range", "value": ["2030-06-01", "2030-06-30"]}`. Days are counted from today
/// and the last day is bookable to its end, both in the zone of whoever asks (the slot
/// query's `timeZone`, the attendee's zone for a booking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BookingWindow {
    /// Monday to Friday count; Saturday and Sunday are skipped.
    #[serde(rename_all = "camelCase")]
    BusinessDays {
        value: u32,
        /// Cal.com's rolling window counts only days with free slots; the sim treats it
        /// as a fixed window (see `FIDELITY.md`).
        #[serde(default)]
        rolling: bool,
    },
    #[serde(rename_all = "camelCase")]
    CalendarDays {
        value: u32,
        #[serde(default)]
        rolling: bool,
    },
    /// First and last bookable date, inclusive.
    Range { value: [chrono::NaiveDate; 2] },
}

impl EventTypeRecord {
    pub fn is_managed_parent(&self) -> bool {
        self.scheduling_type == Some(SchedulingType::Managed) && self.parent_event_type_id.is_none()
    }
}

/// Who attends a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttendeeRecord {
    pub name: String,
    pub email: Option<String>,
    pub time_zone: String,
    pub language: String,
    pub phone_number: Option<String>,
}

/// The organizer(s) of a booking, copied from the user at booking time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingHostRecord {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub username: String,
    pub time_zone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    Accepted,
    Cancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A booking as the sim stores it. `eventTypeId` becomes `null` when its event type (a
/// managed child) is deleted, as in Cal.com's database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingRecord {
    pub id: i64,
    pub uid: String,
    pub event_type_id: Option<i64>,
    pub event_type_slug: String,
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: BookingStatus,
    pub hosts: Vec<BookingHostRecord>,
    pub attendees: Vec<AttendeeRecord>,
    pub metadata: Map<String, Value>,
    pub booking_fields_responses: Map<String, Value>,
    pub cancellation_reason: Option<String>,
    pub cancelled_by_email: Option<String>,
    pub rescheduling_reason: Option<String>,
    pub rescheduled_by_email: Option<String>,
    pub rescheduled_from_uid: Option<String>,
    pub rescheduled_to_uid: Option<String>,
    /// Cal.com's `rescheduled` flag on a booking that was moved.
    pub rescheduled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl BookingRecord {
    pub fn duration_minutes(&self) -> i64 {
        (self.end - self.start).num_minutes()
    }

    pub fn organizer_id(&self) -> Option<i64> {
        self.hosts.first().map(|h| h.id)
    }

    /// `BookingOutput_2024_08_13`.
    pub(crate) fn output(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "uid": self.uid,
            "title": self.title,
            "description": "",
            "hosts": self.hosts.iter().map(|h| json!({
                "id": h.id, "name": h.name, "email": h.email,
                "username": h.username, "timeZone": h.time_zone,
            })).collect::<Vec<_>>(),
            "status": self.status.as_str(),
            "start": iso(&self.start),
            "end": iso(&self.end),
            "duration": self.duration_minutes(),
            "eventTypeId": self.event_type_id,
            "eventType": {"id": self.event_type_id, "slug": self.event_type_slug},
            "location": "",
            "absentHost": false,
            "createdAt": iso(&self.created_at),
            "updatedAt": iso(&self.updated_at),
            "metadata": self.metadata,
            "icsUid": format!("{}@cal.com", self.uid),
            "attendees": self.attendees.iter().map(|a| {
                let mut v = json!({
                    "name": a.name, "timeZone": a.time_zone,
                    "language": a.language, "absent": false,
                });
                if let Some(email) = &a.email {
                    v["email"] = json!(email);
                }
                if let Some(phone) = &a.phone_number {
                    v["phoneNumber"] = json!(phone);
                }
                v
            }).collect::<Vec<_>>(),
            "guests": [],
            "bookingFieldsResponses": self.booking_fields_responses,
        });
        let optional = [
            ("cancellationReason", &self.cancellation_reason),
            ("cancelledByEmail", &self.cancelled_by_email),
            ("reschedulingReason", &self.rescheduling_reason),
            ("rescheduledByEmail", &self.rescheduled_by_email),
            ("rescheduledFromUid", &self.rescheduled_from_uid),
            ("rescheduledToUid", &self.rescheduled_to_uid),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                out[key] = json!(v);
            }
        }
        out
    }
}

/// A held slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationRecord {
    pub reservation_uid: String,
    pub event_type_id: i64,
    /// The host it is held for (the owner, or a team type's first host): Cal.com hides
    /// this user's overlapping slots on every event type they host.
    #[serde(default)]
    pub user_id: i64,
    pub slot_start: DateTime<Utc>,
    pub slot_end: DateTime<Utc>,
    pub slot_duration: i64,
    pub reservation_duration: i64,
    pub reservation_until: DateTime<Utc>,
}

impl ReservationRecord {
    /// `ReserveSlotOutput_2024_09_04`.
    pub(crate) fn output(&self) -> Value {
        json!({
            "eventTypeId": self.event_type_id,
            "slotStart": iso(&self.slot_start),
            "slotEnd": iso(&self.slot_end),
            "slotDuration": self.slot_duration,
            "reservationUid": self.reservation_uid,
            "reservationDuration": self.reservation_duration,
            "reservationUntil": iso(&self.reservation_until),
        })
    }
}

/// Fields every event type output carries with fixed values in the sim.
fn common_event_type_fields(et: &EventTypeRecord) -> Value {
    json!({
        "id": et.id,
        "lengthInMinutes": et.length_in_minutes,
        "title": et.title,
        "slug": et.slug,
        "description": et.description,
        "locations": [],
        "bookingFields": [],
        "disableGuests": false,
        "slotInterval": et.slot_interval,
        "minimumBookingNotice": et.minimum_booking_notice,
        "beforeEventBuffer": et.before_event_buffer,
        "afterEventBuffer": et.after_event_buffer,
        "recurrence": null,
        "metadata": et.metadata,
        "price": 0,
        "currency": "usd",
        "lockTimeZoneToggleOnBookingPage": false,
        "forwardParamsSuccessRedirect": null,
        "successRedirectUrl": null,
        "isInstantEvent": false,
        "scheduleId": null,
        "hidden": et.hidden,
        "bookingRequiresAuthentication": false,
        "bookingWindow": et.booking_window,
    })
    .as_object()
    .map(|m| {
        // Unlimited windows are left out, as Cal.com's output service does.
        let mut m = m.clone();
        if m.get("bookingWindow").is_some_and(Value::is_null) {
            m.remove("bookingWindow");
        }
        Value::Object(m)
    })
    .unwrap_or_default()
}

/// `EventTypeOutput_2024_06_14` (personal types and managed children as their owner sees
/// them): `ownerId`, no `parentEventTypeId` or `schedulingType` (FACTS 5.2). The spec types
/// `users` as a list of strings; the sim sends the owner's username there.
pub(crate) fn personal_event_type_output(et: &EventTypeRecord, owner_username: &str) -> Value {
    let mut v = common_event_type_fields(et);
    v["ownerId"] = json!(et.owner_id);
    v["users"] = json!([owner_username]);
    if v["slotInterval"].is_null()
        && let Some(map) = v.as_object_mut()
    {
        map.remove("slotInterval");
    }
    v
}

/// A host entry of a team event type as Cal.com's output service builds it.
#[derive(Debug, Clone)]
pub(crate) struct HostView {
    pub user_id: i64,
    pub name: String,
    pub username: String,
    pub mandatory: Option<bool>,
    pub priority: Option<String>,
}

/// `TeamEventTypeOutput_2024_06_14` as Cal.com sends it (FACTS 5.2): host objects, numeric
/// `ownerId` / `parentEventTypeId`, `teamId: null` on children — where the spec differs.
pub(crate) fn team_event_type_output(
    et: &EventTypeRecord,
    hosts: &[HostView],
    team: Option<&TeamRecord>,
) -> Value {
    let mut v = common_event_type_fields(et);
    if v["slotInterval"].is_null()
        && let Some(map) = v.as_object_mut()
    {
        map.remove("slotInterval");
    }
    v["teamId"] = json!(et.team_id);
    v["ownerId"] = json!(et.owner_id);
    v["parentEventTypeId"] = json!(et.parent_event_type_id);
    v["assignAllTeamMembers"] = json!(et.assign_all_team_members);
    v["schedulingType"] = json!(et.scheduling_type.map(SchedulingType::as_api_str));
    v["hosts"] = hosts
        .iter()
        .map(|h| {
            let mut host = json!({
                "userId": h.user_id, "name": h.name, "username": h.username, "avatarUrl": null,
            });
            if et.scheduling_type == Some(SchedulingType::RoundRobin) {
                host["mandatory"] = json!(h.mandatory.unwrap_or(false));
                host["priority"] = json!(h.priority.clone().unwrap_or_else(|| "medium".into()));
            }
            host
        })
        .collect();
    v["team"] = match team {
        Some(t) => json!({
            "id": t.id, "slug": t.slug, "bannerUrl": "", "name": t.name, "logoUrl": "",
            "weekStart": "Monday", "brandColor": "#292929", "darkBrandColor": "#fafafa",
            "theme": "light",
        }),
        None => Value::Null,
    };
    v
}
