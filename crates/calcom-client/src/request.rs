//! What the client sends: request types, their pre-send validation, and the exact JSON
//! bodies / query strings built from them. The wire shapes live here (and only here) so the
//! contract tests can check the very bytes the client would send.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::CalcomError;
use crate::metadata::BookingMetadata;
use crate::model::SchedulingType;

/// Languages Cal.com's booking input accepts (`inputs/language.ts`).
pub const ATTENDEE_LANGUAGES: [&str; 43] = [
    "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "es-419", "et", "eu", "fi", "fr",
    "he", "hr", "hu", "id", "it", "iw", "ja", "km", "ko", "lv", "nl", "no", "pl", "pt", "pt-BR",
    "ro", "ru", "sk", "sr", "sv", "ta", "th", "tr", "uk", "vi", "zh-CN", "zh-TW", "az",
];

/// Cal.com's `take` bounds for `GET /v2/bookings`.
pub const MAX_BOOKINGS_PAGE: u32 = 250;

/// UTC with a `Z` and milliseconds, the form Cal.com documents and echoes.
pub(crate) fn utc_z(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn to_value<T: Serialize>(body: &T) -> Result<Value, CalcomError> {
    serde_json::to_value(body).map_err(|e| CalcomError::invalid("body", e.to_string()))
}

fn require_non_blank(field: &str, value: &str) -> Result<(), CalcomError> {
    if value.trim().is_empty() {
        return Err(CalcomError::invalid(field, "must not be empty"));
    }
    Ok(())
}

fn require_positive(field: &str, value: i64) -> Result<(), CalcomError> {
    if value <= 0 {
        return Err(CalcomError::invalid(field, "must be a positive id"));
    }
    Ok(())
}

/// Cal.com validates zones with `IsTimeZone`; the IANA database in chrono-tz is the same list.
pub(crate) fn validate_time_zone(field: &str, zone: &str) -> Result<(), CalcomError> {
    zone.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| CalcomError::invalid(field, "not an IANA time zone"))
}

/// A deliberately simple shape check; Cal.com does the real one, we only keep obvious
/// garbage from costing a request.
fn validate_email(field: &str, email: &str) -> Result<(), CalcomError> {
    let ok = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(CalcomError::invalid(field, "not an email address"))
    }
}

/// International format: `+` then 7–15 digits (E.164). Cal.com's libphonenumber check has
/// no default country, so anything without the `+` fails there.
fn validate_phone(field: &str, phone: &str) -> Result<(), CalcomError> {
    let Some(digits) = phone.strip_prefix('+') else {
        return Err(CalcomError::invalid(
            field,
            "must start with + (international format)",
        ));
    };
    if !(7..=15).contains(&digits.len())
        || !digits.chars().all(|c| c.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(CalcomError::invalid(
            field,
            "must be + followed by 7 to 15 digits (E.164)",
        ));
    }
    Ok(())
}

/// The person a booking is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Attendee {
    pub name: String,
    pub email: Option<String>,
    /// IANA zone, e.g. `Europe/Berlin`; Cal.com renders times for the attendee in it.
    pub time_zone: String,
    /// International format, e.g. `+4915112345678`.
    pub phone_number: Option<String>,
    pub language: Option<String>,
}

impl Attendee {
    pub fn validate(&self) -> Result<(), CalcomError> {
        require_non_blank("attendee.name", &self.name)?;
        validate_time_zone("attendee.timeZone", &self.time_zone)?;
        if self.email.is_none() && self.phone_number.is_none() {
            return Err(CalcomError::invalid(
                "attendee",
                "needs an email or a phone number",
            ));
        }
        if let Some(email) = &self.email {
            validate_email("attendee.email", email)?;
        }
        if let Some(phone) = &self.phone_number {
            validate_phone("attendee.phoneNumber", phone)?;
        }
        if let Some(language) = &self.language
            && !ATTENDEE_LANGUAGES.contains(&language.as_str())
        {
            return Err(CalcomError::invalid(
                "attendee.language",
                "not a language Cal.com accepts",
            ));
        }
        Ok(())
    }
}

/// `POST /v2/bookings` for one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateBooking {
    pub start: DateTime<Utc>,
    /// Must be a bookable id: an individual type or a managed child, never a managed parent.
    pub event_type_id: i64,
    pub attendee: Attendee,
    pub metadata: BookingMetadata,
    /// Sent as `bookingFieldsResponses.notes` (the "additional notes" system field).
    pub notes: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttendeeWire<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    time_zone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
}

#[derive(Serialize)]
struct BookingFieldsWire<'a> {
    notes: &'a str,
}

/// Only fields Cal.com's whitelist knows: an unknown one (`end`, `title`, `responses`,
/// top-level `timeZone`) is a 400.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBookingWire<'a> {
    start: String,
    event_type_id: i64,
    attendee: AttendeeWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a BookingMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_fields_responses: Option<BookingFieldsWire<'a>>,
}

impl CreateBooking {
    pub fn validate(&self) -> Result<(), CalcomError> {
        require_positive("eventTypeId", self.event_type_id)?;
        self.attendee.validate()
    }

    /// The JSON body `create_booking` sends, after validation.
    pub fn wire_body(&self) -> Result<Value, CalcomError> {
        self.validate()?;
        let attendee = &self.attendee;
        to_value(&CreateBookingWire {
            start: utc_z(&self.start),
            event_type_id: self.event_type_id,
            attendee: AttendeeWire {
                name: attendee.name.trim(),
                email: attendee.email.as_deref(),
                time_zone: &attendee.time_zone,
                phone_number: attendee.phone_number.as_deref(),
                language: attendee.language.as_deref(),
            },
            metadata: (!self.metadata.is_empty()).then_some(&self.metadata),
            booking_fields_responses: self
                .notes
                .as_deref()
                .filter(|n| !n.trim().is_empty())
                .map(|notes| BookingFieldsWire { notes }),
        })
    }
}

/// `POST /v2/bookings/{uid}/cancel`.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelBooking {
    /// Required by Cal.com when the key's user hosts the booking, so always sent.
    pub cancellation_reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CancelBookingWire<'a> {
    cancellation_reason: &'a str,
}

impl CancelBooking {
    pub fn wire_body(&self) -> Result<Value, CalcomError> {
        require_non_blank("cancellationReason", &self.cancellation_reason)?;
        to_value(&CancelBookingWire {
            cancellation_reason: &self.cancellation_reason,
        })
    }
}

/// `POST /v2/bookings/{uid}/reschedule`: Cal.com makes a new booking with a new uid and
/// copies the metadata over.
#[derive(Debug, Clone, PartialEq)]
pub struct RescheduleBooking {
    pub start: DateTime<Utc>,
    pub rescheduled_by: Option<String>,
    pub rescheduling_reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RescheduleBookingWire<'a> {
    start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rescheduled_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rescheduling_reason: Option<&'a str>,
}

impl RescheduleBooking {
    pub fn wire_body(&self) -> Result<Value, CalcomError> {
        if let Some(email) = &self.rescheduled_by {
            validate_email("rescheduledBy", email)?;
        }
        to_value(&RescheduleBookingWire {
            start: utc_z(&self.start),
            rescheduled_by: self.rescheduled_by.as_deref(),
            rescheduling_reason: self
                .rescheduling_reason
                .as_deref()
                .filter(|r| !r.trim().is_empty()),
        })
    }
}

/// Status filter values of `GET /v2/bookings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingListStatus {
    Upcoming,
    Recurring,
    Past,
    Cancelled,
    Unconfirmed,
}

impl BookingListStatus {
    fn as_api_str(self) -> &'static str {
        match self {
            Self::Upcoming => "upcoming",
            Self::Recurring => "recurring",
            Self::Past => "past",
            Self::Cancelled => "cancelled",
            Self::Unconfirmed => "unconfirmed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    fn as_api_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// Filters for `GET /v2/bookings`. Leave `status` empty to get every status, cancelled
/// included (what reconciliation needs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListBookings {
    pub event_type_id: Option<i64>,
    pub event_type_ids: Vec<i64>,
    pub attendee_email: Option<String>,
    pub booking_uid: Option<String>,
    pub status: Vec<BookingListStatus>,
    /// Start ≥ this (inclusive).
    pub after_start: Option<DateTime<Utc>>,
    /// End ≤ this (inclusive).
    pub before_end: Option<DateTime<Utc>>,
    pub after_updated_at: Option<DateTime<Utc>>,
    pub sort_start: Option<SortOrder>,
    /// 1–250; Cal.com's default is 100.
    pub take: Option<u32>,
    pub skip: Option<u32>,
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl ListBookings {
    /// The query string pairs `list_bookings` sends, after validation.
    pub fn query_pairs(&self) -> Result<Vec<(&'static str, String)>, CalcomError> {
        let mut q = Vec::new();
        if let Some(id) = self.event_type_id {
            require_positive("eventTypeId", id)?;
            q.push(("eventTypeId", id.to_string()));
        }
        if !self.event_type_ids.is_empty() {
            q.push(("eventTypeIds", join_ids(&self.event_type_ids)));
        }
        if let Some(email) = &self.attendee_email {
            q.push(("attendeeEmail", email.clone()));
        }
        if let Some(uid) = &self.booking_uid {
            q.push(("bookingUid", uid.clone()));
        }
        if !self.status.is_empty() {
            let words: Vec<&str> = self.status.iter().map(|s| s.as_api_str()).collect();
            q.push(("status", words.join(",")));
        }
        if let Some(t) = &self.after_start {
            q.push(("afterStart", utc_z(t)));
        }
        if let Some(t) = &self.before_end {
            q.push(("beforeEnd", utc_z(t)));
        }
        if let Some(t) = &self.after_updated_at {
            q.push(("afterUpdatedAt", utc_z(t)));
        }
        if let Some(order) = self.sort_start {
            q.push(("sortStart", order.as_api_str().to_owned()));
        }
        if let Some(take) = self.take {
            if !(1..=MAX_BOOKINGS_PAGE).contains(&take) {
                return Err(CalcomError::invalid("take", "must be between 1 and 250"));
            }
            q.push(("take", take.to_string()));
        }
        if let Some(skip) = self.skip {
            q.push(("skip", skip.to_string()));
        }
        Ok(q)
    }
}

/// Priority of a round-robin host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostPriority {
    Lowest,
    Low,
    Medium,
    High,
    Highest,
}

/// A user assigned to a team event type; for a managed parent, each one gets a child.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostAssignment {
    pub user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandatory: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<HostPriority>,
}

impl HostAssignment {
    pub fn user(user_id: i64) -> Self {
        Self {
            user_id,
            mandatory: None,
            priority: None,
        }
    }
}

/// We look children up by slug later, so the slug must already be in Cal.com's slug form;
/// otherwise Cal.com would rewrite it and the lookup would miss.
fn validate_slug(slug: &str) -> Result<(), CalcomError> {
    let ok = !slug.is_empty()
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CalcomError::invalid(
            "slug",
            "must be lower-case letters, digits and '-'",
        ))
    }
}

fn validate_hosts(hosts: &[HostAssignment]) -> Result<(), CalcomError> {
    for host in hosts {
        require_positive("hosts.userId", host.user_id)?;
    }
    Ok(())
}

/// `POST /v2/teams/{teamId}/event-types`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTeamEventType {
    pub title: String,
    pub slug: String,
    pub length_in_minutes: u32,
    pub scheduling_type: SchedulingType,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostAssignment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assign_all_team_members: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    /// Minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_booking_notice: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_event_buffer: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_event_buffer: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_interval: Option<u32>,
}

impl CreateTeamEventType {
    pub fn new(
        title: impl Into<String>,
        slug: impl Into<String>,
        length_in_minutes: u32,
        scheduling_type: SchedulingType,
    ) -> Self {
        Self {
            title: title.into(),
            slug: slug.into(),
            length_in_minutes,
            scheduling_type,
            hosts: Vec::new(),
            assign_all_team_members: None,
            description: None,
            hidden: None,
            minimum_booking_notice: None,
            before_event_buffer: None,
            after_event_buffer: None,
            slot_interval: None,
        }
    }

    pub fn wire_body(&self) -> Result<Value, CalcomError> {
        require_non_blank("title", &self.title)?;
        validate_slug(&self.slug)?;
        if self.length_in_minutes == 0 {
            return Err(CalcomError::invalid(
                "lengthInMinutes",
                "must be at least 1",
            ));
        }
        validate_hosts(&self.hosts)?;
        to_value(self)
    }
}

/// `PATCH /v2/teams/{teamId}/event-types/{id}`. `hosts: Some(list)` **replaces** the host
/// set (dropped hosts of a managed parent lose their child); `None` leaves hosts alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTeamEventType {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length_in_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostAssignment>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assign_all_team_members: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_booking_notice: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_event_buffer: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_event_buffer: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_interval: Option<u32>,
}

impl UpdateTeamEventType {
    pub fn wire_body(&self) -> Result<Value, CalcomError> {
        if let Some(title) = &self.title {
            require_non_blank("title", title)?;
        }
        if let Some(slug) = &self.slug {
            validate_slug(slug)?;
        }
        if self.length_in_minutes == Some(0) {
            return Err(CalcomError::invalid(
                "lengthInMinutes",
                "must be at least 1",
            ));
        }
        if let Some(hosts) = &self.hosts {
            validate_hosts(hosts)?;
        }
        to_value(self)
    }
}

/// `GET /v2/slots` for one event type (always `format=range`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotsQuery {
    pub event_type_id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Zone the returned times are expressed in; UTC when absent.
    pub time_zone: Option<String>,
    /// Only for event types with several lengths.
    pub duration: Option<u32>,
    /// Shows this booking's own slot as free.
    pub booking_uid_to_reschedule: Option<String>,
}

impl SlotsQuery {
    pub fn query_pairs(&self) -> Result<Vec<(&'static str, String)>, CalcomError> {
        require_positive("eventTypeId", self.event_type_id)?;
        if self.end < self.start {
            return Err(CalcomError::invalid("end", "is before start"));
        }
        let mut q = vec![
            ("eventTypeId", self.event_type_id.to_string()),
            ("start", utc_z(&self.start)),
            ("end", utc_z(&self.end)),
            ("format", "range".to_owned()),
        ];
        if let Some(zone) = &self.time_zone {
            validate_time_zone("timeZone", zone)?;
            q.push(("timeZone", zone.clone()));
        }
        if let Some(duration) = self.duration {
            q.push(("duration", duration.to_string()));
        }
        if let Some(uid) = &self.booking_uid_to_reschedule {
            q.push(("bookingUidToReschedule", uid.clone()));
        }
        Ok(q)
    }
}

/// `POST /v2/slots/reservations`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveSlot {
    pub event_type_id: i64,
    pub slot_start: DateTime<Utc>,
    /// Minutes; only for event types with several lengths.
    pub slot_duration: Option<u32>,
    /// Minutes the hold lasts (Cal.com's default is 5; a custom value needs auth).
    pub reservation_duration: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReserveSlotWire {
    event_type_id: i64,
    slot_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot_duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_duration: Option<u32>,
}

impl ReserveSlot {
    pub fn wire_body(&self) -> Result<Value, CalcomError> {
        require_positive("eventTypeId", self.event_type_id)?;
        if self.slot_duration == Some(0) || self.reservation_duration == Some(0) {
            return Err(CalcomError::invalid(
                "duration",
                "must be at least 1 minute",
            ));
        }
        to_value(&ReserveSlotWire {
            event_type_id: self.event_type_id,
            slot_start: utc_z(&self.slot_start),
            slot_duration: self.slot_duration,
            reservation_duration: self.reservation_duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn attendee() -> Attendee {
        Attendee {
            name: "Bea Kunde".into(),
            email: Some("bea@example.com".into()),
            time_zone: "Europe/Berlin".into(),
            phone_number: None,
            language: None,
        }
    }

    fn booking() -> CreateBooking {
        CreateBooking {
            start: Utc
                .with_ymd_and_hms(2030, 5, 1, 8, 0, 0)
                .single()
                .unwrap_or_default(),
            event_type_id: 55,
            attendee: attendee(),
            metadata: BookingMetadata::new([("appointment_id", "a1"), ("segment", "A")])
                .unwrap_or_default(),
            notes: None,
        }
    }

    fn invalid_field(result: Result<Value, CalcomError>) -> String {
        match result {
            Err(CalcomError::InvalidRequest { field, .. }) => field,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn booking_body_has_only_whitelisted_fields_and_a_utc_start() {
        let body = booking().wire_body().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({
                "start": "2030-05-01T08:00:00.000Z",
                "eventTypeId": 55,
                "attendee": {"name": "Bea Kunde", "email": "bea@example.com", "timeZone": "Europe/Berlin"},
                "metadata": {"appointment_id": "a1", "segment": "A"}
            })
        );
    }

    #[test]
    fn a_start_given_with_an_offset_is_sent_in_utc() {
        let local = chrono::FixedOffset::east_opt(2 * 3600)
            .and_then(|o| o.with_ymd_and_hms(2030, 5, 1, 10, 0, 0).single())
            .unwrap_or_else(|| panic!("bad date"));
        let mut b = booking();
        b.start = local.with_timezone(&Utc);
        let body = b.wire_body().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["start"], "2030-05-01T08:00:00.000Z");
    }

    #[test]
    fn notes_go_to_booking_fields_responses() {
        let mut b = booking();
        b.notes = Some("Allergic to ammonia".into());
        let body = b.wire_body().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body["bookingFieldsResponses"],
            json!({"notes": "Allergic to ammonia"})
        );
        b.notes = Some("   ".into());
        let body = b.wire_body().unwrap_or_else(|e| panic!("{e}"));
        assert!(body.get("bookingFieldsResponses").is_none());
    }

    #[test]
    fn phone_only_attendee_is_accepted() {
        let mut b = booking();
        b.attendee.email = None;
        b.attendee.phone_number = Some("+4915112345678".into());
        b.attendee.language = Some("de".into());
        let body = b.wire_body().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body["attendee"],
            json!({"name": "Bea Kunde", "timeZone": "Europe/Berlin", "phoneNumber": "+4915112345678", "language": "de"})
        );
    }

    #[test]
    fn attendee_checks_refuse_before_sending() {
        let mut b = booking();
        b.attendee.name = " ".into();
        assert_eq!(invalid_field(b.wire_body()), "attendee.name");

        let mut b = booking();
        b.attendee.time_zone = "Mars/Olympus".into();
        assert_eq!(invalid_field(b.wire_body()), "attendee.timeZone");

        let mut b = booking();
        b.attendee.time_zone = "+02:00".into();
        assert_eq!(invalid_field(b.wire_body()), "attendee.timeZone");

        let mut b = booking();
        b.attendee.email = None;
        assert_eq!(invalid_field(b.wire_body()), "attendee");

        let mut b = booking();
        b.attendee.phone_number = Some("015112345678".into());
        assert_eq!(invalid_field(b.wire_body()), "attendee.phoneNumber");

        let mut b = booking();
        b.attendee.phone_number = Some("+49 151 1234".into());
        assert_eq!(invalid_field(b.wire_body()), "attendee.phoneNumber");

        let mut b = booking();
        b.attendee.email = Some("not-an-email".into());
        assert_eq!(invalid_field(b.wire_body()), "attendee.email");

        let mut b = booking();
        b.attendee.language = Some("xx".into());
        assert_eq!(invalid_field(b.wire_body()), "attendee.language");

        let mut b = booking();
        b.event_type_id = 0;
        assert_eq!(invalid_field(b.wire_body()), "eventTypeId");
    }

    #[test]
    fn utc_zone_is_accepted() {
        let mut b = booking();
        b.attendee.time_zone = "UTC".into();
        assert!(b.wire_body().is_ok());
    }

    #[test]
    fn cancel_requires_a_reason() {
        let body = CancelBooking {
            cancellation_reason: "customer cancelled".into(),
        }
        .wire_body()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body, json!({"cancellationReason": "customer cancelled"}));
        let blank = CancelBooking {
            cancellation_reason: "".into(),
        };
        assert_eq!(invalid_field(blank.wire_body()), "cancellationReason");
    }

    #[test]
    fn reschedule_body() {
        let body = RescheduleBooking {
            start: Utc
                .with_ymd_and_hms(2030, 5, 2, 9, 30, 0)
                .single()
                .unwrap_or_default(),
            rescheduled_by: None,
            rescheduling_reason: Some("moved by salon".into()),
        }
        .wire_body()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({"start": "2030-05-02T09:30:00.000Z", "reschedulingReason": "moved by salon"})
        );
    }

    #[test]
    fn list_query_leaves_status_out_by_default() {
        let q = ListBookings {
            event_type_id: Some(55),
            after_start: Some(
                Utc.with_ymd_and_hms(2030, 5, 1, 8, 0, 0)
                    .single()
                    .unwrap_or_default(),
            ),
            before_end: Some(
                Utc.with_ymd_and_hms(2030, 5, 1, 8, 30, 0)
                    .single()
                    .unwrap_or_default(),
            ),
            take: Some(250),
            ..ListBookings::default()
        }
        .query_pairs()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            q,
            vec![
                ("eventTypeId", "55".to_owned()),
                ("afterStart", "2030-05-01T08:00:00.000Z".to_owned()),
                ("beforeEnd", "2030-05-01T08:30:00.000Z".to_owned()),
                ("take", "250".to_owned()),
            ]
        );
        let too_many = ListBookings {
            take: Some(251),
            ..ListBookings::default()
        };
        assert!(too_many.query_pairs().is_err());
    }

    #[test]
    fn team_event_type_bodies() {
        let mut create = CreateTeamEventType::new("Wash", "wash", 15, SchedulingType::Managed);
        create.hosts = vec![HostAssignment::user(7), HostAssignment::user(8)];
        let body = create.wire_body().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({"title": "Wash", "slug": "wash", "lengthInMinutes": 15, "schedulingType": "managed",
                   "hosts": [{"userId": 7}, {"userId": 8}]})
        );
        create.slug = "Wash Hair".into();
        assert_eq!(invalid_field(create.wire_body()), "slug");

        let patch = UpdateTeamEventType {
            hosts: Some(vec![HostAssignment::user(7)]),
            ..UpdateTeamEventType::default()
        };
        assert_eq!(
            patch.wire_body().unwrap_or_else(|e| panic!("{e}")),
            json!({"hosts": [{"userId": 7}]})
        );
    }

    #[test]
    fn slots_query_is_always_range_format() {
        let q = SlotsQuery {
            event_type_id: 55,
            start: Utc
                .with_ymd_and_hms(2030, 5, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            end: Utc
                .with_ymd_and_hms(2030, 5, 2, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            time_zone: Some("Europe/Berlin".into()),
            duration: None,
            booking_uid_to_reschedule: None,
        }
        .query_pairs()
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(q.contains(&("format", "range".to_owned())));
        assert!(q.contains(&("timeZone", "Europe/Berlin".to_owned())));
    }

    #[test]
    fn reservation_body() {
        let body = ReserveSlot {
            event_type_id: 55,
            slot_start: Utc
                .with_ymd_and_hms(2030, 5, 1, 8, 0, 0)
                .single()
                .unwrap_or_default(),
            slot_duration: None,
            reservation_duration: Some(10),
        }
        .wire_body()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({"eventTypeId": 55, "slotStart": "2030-05-01T08:00:00.000Z", "reservationDuration": 10})
        );
    }
}
