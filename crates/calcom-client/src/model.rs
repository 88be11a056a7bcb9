//! What Cal.com returns: bookings, event types, slots and reservations, decoded leniently
//! (unknown fields ignored, missing optional fields tolerated, `null` read as empty) so a
//! new field on Cal.com's side never breaks a sync.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// Reads `null` or a missing field as the type's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Keeps the list items that decode as `T` and drops the rest; the published spec and the
/// server disagree on some item shapes (e.g. team event type hosts), and a host list with
/// one odd entry should not make the whole event type unreadable.
fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let items = Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default();
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect())
}

/// A booking's status. Cal.com sends lower-case words; webhooks use upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    #[serde(alias = "ACCEPTED")]
    Accepted,
    #[serde(alias = "PENDING")]
    Pending,
    #[serde(alias = "CANCELLED")]
    Cancelled,
    #[serde(alias = "REJECTED")]
    Rejected,
    /// Any status this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// A person attending a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingAttendee {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub absent: Option<bool>,
}

/// The host (organizer) of a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingHost {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// The `{id, slug}` reference a booking carries to its event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingEventType {
    pub id: i64,
    #[serde(default)]
    pub slug: Option<String>,
}

/// A Cal.com booking (API version 2024-08-13). Times are UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    pub id: i64,
    pub uid: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub status: BookingStatus,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Minutes.
    #[serde(default)]
    pub duration: Option<i64>,
    /// Filled from `eventType.id` when Cal.com omits the deprecated `eventTypeId`.
    #[serde(default)]
    pub event_type_id: Option<i64>,
    #[serde(default)]
    pub event_type: Option<BookingEventType>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub attendees: Vec<BookingAttendee>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub hosts: Vec<BookingHost>,
    #[serde(default)]
    pub rescheduled_to_uid: Option<String>,
    #[serde(default)]
    pub rescheduled_from_uid: Option<String>,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    #[serde(default)]
    pub cancelled_by_email: Option<String>,
    #[serde(default)]
    pub rescheduling_reason: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Booking {
    /// Applies the fallbacks that serde attributes cannot express.
    pub(crate) fn normalise(mut self) -> Self {
        if self.event_type_id.is_none() {
            self.event_type_id = self.event_type.as_ref().map(|e| e.id);
        }
        self
    }
}

/// One page of `GET /v2/bookings`.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingPage {
    pub bookings: Vec<Booking>,
    /// `pagination.totalItems`, when Cal.com sends it.
    pub total: Option<u64>,
    pub has_next_page: bool,
}

/// How a team event type distributes bookings among its hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulingType {
    Managed,
    RoundRobin,
    Collective,
}

impl SchedulingType {
    /// The lower-case word the v2 API uses on the wire.
    pub fn as_api_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::RoundRobin => "roundRobin",
            Self::Collective => "collective",
        }
    }

    /// Accepts the API words (`roundRobin`) and the database enum names (`ROUND_ROBIN`).
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
}

impl fmt::Display for SchedulingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api_str())
    }
}

impl Serialize for SchedulingType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_api_str())
    }
}

impl<'de> Deserialize<'de> for SchedulingType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown scheduling type {raw:?}")))
    }
}

/// An unknown scheduling type reads as `None` instead of failing the event type.
fn lenient_scheduling_type<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SchedulingType>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|raw| SchedulingType::parse(&raw)))
}

/// A host listed on a team event type. For a managed parent Cal.com synthesises one entry
/// per child, without the child's event type id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub user_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub mandatory: Option<bool>,
    #[serde(default)]
    pub priority: Option<String>,
}

/// A personal or team event type (API version 2024-06-14).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    pub id: i64,
    pub slug: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    pub length_in_minutes: i64,
    /// The owning user (`userId` in Cal.com's database); set on personal types and managed children.
    #[serde(default)]
    pub owner_id: Option<i64>,
    #[serde(default)]
    pub team_id: Option<i64>,
    /// Set on a managed child: the parent's id.
    #[serde(default)]
    pub parent_event_type_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_scheduling_type")]
    pub scheduling_type: Option<SchedulingType>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub hosts: Vec<Host>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hidden: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, Value>,
}

/// One bookable slot. Times carry the offset of the zone asked for (UTC by default).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub start: DateTime<FixedOffset>,
    pub end: Option<DateTime<FixedOffset>>,
    pub seats_remaining: Option<i64>,
    pub seats_total: Option<i64>,
    pub booking_uid: Option<String>,
}

impl<'de> Deserialize<'de> for Slot {
    /// Accepts the object Cal.com sends (`{start, end?, seats…}`) and, because the published
    /// spec describes slot items as strings, a bare start time as well.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Object {
            start: DateTime<FixedOffset>,
            #[serde(default)]
            end: Option<DateTime<FixedOffset>>,
            #[serde(default)]
            seats_remaining: Option<i64>,
            #[serde(default)]
            seats_total: Option<i64>,
            #[serde(default)]
            booking_uid: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Object(Object),
            Start(DateTime<FixedOffset>),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Object(o) => Slot {
                start: o.start,
                end: o.end,
                seats_remaining: o.seats_remaining,
                seats_total: o.seats_total,
                booking_uid: o.booking_uid,
            },
            Wire::Start(start) => Slot {
                start,
                end: None,
                seats_remaining: None,
                seats_total: None,
                booking_uid: None,
            },
        })
    }
}

/// A held slot (`POST /v2/slots/reservations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotReservation {
    pub reservation_uid: String,
    pub event_type_id: i64,
    pub slot_start: DateTime<Utc>,
    #[serde(default)]
    pub slot_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub slot_duration: Option<i64>,
    #[serde(default)]
    pub reservation_duration: Option<i64>,
    #[serde(default)]
    pub reservation_until: Option<DateTime<Utc>>,
}

/// `data` that may be one object or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(item) => vec![item],
            Self::Many(items) => items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn booking_json() -> Value {
        json!({
            "id": 101, "uid": "bk_1", "title": "Colour A between Ann and Bea",
            "description": "", "status": "accepted",
            "hosts": [{"id": 7, "name": "Ann", "email": "ann@example.com", "username": "ann", "timeZone": "Europe/Berlin"}],
            "start": "2030-05-01T08:00:00.000Z", "end": "2030-05-01T08:30:00.000Z", "duration": 30,
            "eventTypeId": 55, "eventType": {"id": 55, "slug": "colour-a"},
            "location": "", "absentHost": false,
            "createdAt": "2030-04-01T10:00:00.000Z", "updatedAt": "2030-04-01T10:00:00.000Z",
            "metadata": {"appointment_id": "a1", "segment": "A"},
            "attendees": [{"name": "Bea", "email": "bea@example.com", "timeZone": "Europe/Berlin", "language": "en", "absent": false}],
            "bookingFieldsResponses": {"name": "Bea"},
            "brandNewField": {"anything": true}
        })
    }

    #[test]
    fn booking_decodes_the_2024_08_13_shape() {
        let b: Booking = serde_json::from_value(booking_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.id, 101);
        assert_eq!(b.status, BookingStatus::Accepted);
        assert_eq!(b.event_type_id, Some(55));
        assert_eq!(b.duration, Some(30));
        assert_eq!(b.metadata.get("segment"), Some(&json!("A")));
        assert_eq!(b.attendees[0].email.as_deref(), Some("bea@example.com"));
        assert_eq!(b.hosts[0].id, 7);
    }

    #[test]
    fn booking_tolerates_nulls_missing_fields_and_new_statuses() {
        let mut v = booking_json();
        v["metadata"] = Value::Null;
        v["status"] = json!("awaiting_host");
        v["title"] = Value::Null;
        if let Some(obj) = v.as_object_mut() {
            obj.remove("eventTypeId");
            obj.remove("attendees");
        }
        let b: Booking = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        let b = b.normalise();
        assert_eq!(b.status, BookingStatus::Unknown);
        assert!(b.metadata.is_empty());
        assert!(b.attendees.is_empty());
        assert_eq!(b.event_type_id, Some(55));
    }

    #[test]
    fn upper_case_statuses_are_read() {
        let s: BookingStatus =
            serde_json::from_value(json!("CANCELLED")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, BookingStatus::Cancelled);
    }

    #[test]
    fn scheduling_type_accepts_api_words_and_enum_names() {
        for (raw, want) in [
            ("managed", SchedulingType::Managed),
            ("MANAGED", SchedulingType::Managed),
            ("roundRobin", SchedulingType::RoundRobin),
            ("ROUND_ROBIN", SchedulingType::RoundRobin),
            ("collective", SchedulingType::Collective),
            ("COLLECTIVE", SchedulingType::Collective),
        ] {
            assert_eq!(SchedulingType::parse(raw), Some(want), "{raw}");
        }
        assert_eq!(
            serde_json::to_value(SchedulingType::RoundRobin).ok(),
            Some(json!("roundRobin"))
        );
    }

    #[test]
    fn team_event_type_decodes_managed_child_and_parent() {
        let parent: EventType = serde_json::from_value(json!({
            "id": 10, "slug": "wash", "title": "Wash", "lengthInMinutes": 15,
            "teamId": 3, "ownerId": null, "parentEventTypeId": null, "schedulingType": "MANAGED",
            "hosts": [{"userId": 7, "name": "Ann", "username": "ann", "avatarUrl": null}, "odd-string-host"],
            "metadata": {"managedEventConfig": {}}, "hidden": false
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parent.scheduling_type, Some(SchedulingType::Managed));
        assert_eq!(parent.hosts.len(), 1);
        assert_eq!(parent.owner_id, None);

        let child: EventType = serde_json::from_value(json!({
            "id": 11, "slug": "wash", "title": "Wash", "lengthInMinutes": 15,
            "ownerId": 7, "parentEventTypeId": 10, "teamId": null, "schedulingType": "weird"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(child.parent_event_type_id, Some(10));
        assert_eq!(child.scheduling_type, None);
        assert!(child.metadata.is_empty());
    }

    #[test]
    fn slots_accept_objects_and_bare_strings() {
        let slots: Vec<Slot> = serde_json::from_value(json!([
            {"start": "2050-09-05T09:00:00.000+02:00", "end": "2050-09-05T10:00:00.000+02:00"},
            "2050-09-05T11:00:00.000+02:00"
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(slots.len(), 2);
        assert!(slots[0].end.is_some());
        assert_eq!(slots[1].start.offset().local_minus_utc(), 7200);
    }
}

/// The user an API key acts as (`GET /v2/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: i64,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// One member of a team (`TeamMembershipOutput`). `role` is `MEMBER`, `ADMIN` or `OWNER`:
/// a plain member's key cannot read the other members' bookings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamMembership {
    pub id: i64,
    pub user_id: i64,
    pub team_id: i64,
    pub accepted: bool,
    pub role: String,
}

impl TeamMembership {
    /// Admins and owners see every member's bookings; members only their own.
    pub fn sees_team_bookings(&self) -> bool {
        matches!(self.role.as_str(), "ADMIN" | "OWNER")
    }
}
