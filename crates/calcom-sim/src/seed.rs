//! The seed format: users, teams, API keys, event types and bookings to load into a sim,
//! in Cal.com's camelCase. The same JSON is read from `--seed-file` and `POST /__sim/seed`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::BookingWindow;

/// Everything a sim can be seeded with. Seeding adds to what is there; ids must be new.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Seed {
    pub users: Vec<SeedUser>,
    pub teams: Vec<SeedTeam>,
    pub api_keys: Vec<SeedApiKey>,
    pub event_types: Vec<SeedEventType>,
    pub bookings: Vec<SeedBooking>,
}

/// A Cal.com user. Without `workingHours` the user has Cal.com's default schedule
/// (Monday to Friday, 09:00–17:00 in their zone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedUser {
    pub id: i64,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    pub email: String,
    /// IANA zone; working hours are read in it.
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub working_hours: Vec<WorkingHours>,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// Local working time on some weekdays. Days are English names or their three-letter
/// abbreviations; times are `HH:MM`, and `24:00` means the end of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkingHours {
    pub days: Vec<String>,
    pub start_time: String,
    pub end_time: String,
}

impl WorkingHours {
    pub fn new(days: &[&str], start_time: &str, end_time: &str) -> Self {
        Self {
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            start_time: start_time.to_owned(),
            end_time: end_time.to_owned(),
        }
    }

    /// Every day, all day: handy for load runs.
    pub fn always() -> Self {
        Self::new(
            &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "00:00",
            "24:00",
        )
    }
}

impl SeedUser {
    pub fn new(id: i64, username: &str, time_zone: &str) -> Self {
        Self {
            id,
            username: username.to_owned(),
            name: Some(capitalise(username)),
            email: format!("{username}@example.com"),
            time_zone: time_zone.to_owned(),
            working_hours: Vec::new(),
        }
    }

    pub fn working(mut self, hours: WorkingHours) -> Self {
        self.working_hours.push(hours);
        self
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A team and its members. `role` is `OWNER`, `ADMIN` or `MEMBER`; owners and admins may
/// create and change the team's event types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedTeam {
    pub id: i64,
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub members: Vec<SeedMember>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedMember {
    pub user_id: i64,
    #[serde(default = "member")]
    pub role: String,
}

fn member() -> String {
    "MEMBER".to_owned()
}

impl SeedMember {
    pub fn new(user_id: i64, role: &str) -> Self {
        Self {
            user_id,
            role: role.to_owned(),
        }
    }
}

/// An API key (`cal_…` or `cal_live_…`) acting as `userId`. The sim keeps only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedApiKey {
    pub key: String,
    pub user_id: i64,
}

/// An event type as stored, not as created through the API: a personal type has `ownerId`;
/// a team type has `teamId` and `schedulingType` (`managed`, `roundRobin`, `collective`).
/// A managed parent's existing children are listed in `children` (and nothing else makes
/// them at seed time — that is what lets a seed reproduce a parent without children).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedEventType {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub length_in_minutes: i64,
    #[serde(default)]
    pub owner_id: Option<i64>,
    #[serde(default)]
    pub team_id: Option<i64>,
    #[serde(default)]
    pub scheduling_type: Option<String>,
    #[serde(default)]
    pub hosts: Vec<SeedHost>,
    #[serde(default)]
    pub children: Vec<SeedChild>,
    #[serde(default)]
    pub assign_all_team_members: bool,
    #[serde(default)]
    pub hidden: bool,
    /// Managed parents default to `{"managedEventConfig": {}}`.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Minutes between slot starts; defaults to the length.
    #[serde(default)]
    pub slot_interval: Option<i64>,
    /// Minutes; bookings closer to now are refused.
    #[serde(default)]
    pub minimum_booking_notice: Option<i64>,
    /// How far ahead it can be booked (Cal.com's API shape, e.g.
    /// `{"type": "calendarDays", "value": 30}`); none means unlimited.
    #[serde(default)]
    pub booking_window: Option<BookingWindow>,
}

impl SeedEventType {
    /// A personal event type of `owner_id`.
    pub fn individual(id: i64, owner_id: i64, slug: &str, length_in_minutes: i64) -> Self {
        Self {
            id,
            slug: slug.to_owned(),
            title: title_of(slug),
            length_in_minutes,
            owner_id: Some(owner_id),
            team_id: None,
            scheduling_type: None,
            hosts: Vec::new(),
            children: Vec::new(),
            assign_all_team_members: false,
            hidden: false,
            metadata: None,
            description: None,
            slot_interval: None,
            minimum_booking_notice: None,
            booking_window: None,
        }
    }

    /// A managed parent of `team_id` with one existing child per `(child id, owner)`.
    pub fn managed(
        id: i64,
        team_id: i64,
        slug: &str,
        length_in_minutes: i64,
        children: &[(i64, i64)],
    ) -> Self {
        let mut parent = Self::individual(id, 0, slug, length_in_minutes);
        parent.owner_id = None;
        parent.team_id = Some(team_id);
        parent.scheduling_type = Some("managed".to_owned());
        parent.children = children
            .iter()
            .map(|&(id, owner_id)| SeedChild { id, owner_id })
            .collect();
        parent
    }

    /// A round-robin or collective type of `team_id` with these hosts.
    pub fn team(
        id: i64,
        team_id: i64,
        scheduling_type: &str,
        slug: &str,
        length_in_minutes: i64,
        host_ids: &[i64],
    ) -> Self {
        let mut et = Self::individual(id, 0, slug, length_in_minutes);
        et.owner_id = None;
        et.team_id = Some(team_id);
        et.scheduling_type = Some(scheduling_type.to_owned());
        et.hosts = host_ids
            .iter()
            .map(|&user_id| SeedHost {
                user_id,
                mandatory: None,
                priority: None,
            })
            .collect();
        et
    }
}

fn title_of(slug: &str) -> String {
    slug.split('-')
        .map(capitalise)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedHost {
    pub user_id: i64,
    #[serde(default)]
    pub mandatory: Option<bool>,
    #[serde(default)]
    pub priority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedChild {
    pub id: i64,
    pub owner_id: i64,
}

/// A booking put straight into the store (no availability check, no webhook): the way to
/// make a host busy, or to plant what another system booked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedBooking {
    #[serde(default)]
    pub uid: Option<String>,
    pub event_type_id: i64,
    pub start: DateTime<Utc>,
    /// Defaults to start + the event type's length.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// `accepted` (default) or `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    /// The organizer; defaults to the event type's owner or first host.
    #[serde(default)]
    pub host_user_id: Option<i64>,
    #[serde(default)]
    pub attendee: Option<SeedAttendee>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl SeedBooking {
    pub fn new(event_type_id: i64, start: DateTime<Utc>) -> Self {
        Self {
            uid: None,
            event_type_id,
            start,
            end: None,
            status: None,
            host_user_id: None,
            attendee: None,
            metadata: Map::new(),
        }
    }
}

/// A slot reservation put straight into the store (`POST /__sim/reservations`): no checks,
/// any `reservationUntil` (a past one makes an expired hold, which hides nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedReservation {
    /// Defaults to a new uuid.
    #[serde(default)]
    pub reservation_uid: Option<String>,
    pub event_type_id: i64,
    pub slot_start: DateTime<Utc>,
    /// Minutes; defaults to the event type's length.
    #[serde(default)]
    pub slot_duration: Option<i64>,
    pub reservation_until: DateTime<Utc>,
    /// The host it holds; defaults to the event type's owner or first host.
    #[serde(default)]
    pub user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedAttendee {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub phone_number: Option<String>,
}

/// The example salon, `salon.json` next to `Cargo.toml`.
pub const SALON_JSON: &str = include_str!("../salon.json");

/// Ids in [`Seed::salon`], for tests.
pub mod salon {
    pub const TEAM_ID: i64 = 1;
    pub const TEAM_SLUG: &str = "salon";
    /// Anna: team owner, the key `API_KEY` acts as her.
    pub const ANNA: i64 = 101;
    pub const BEN: i64 = 102;
    pub const API_KEY: &str = "cal_live_demo_salon";
    /// Ben's own key.
    pub const BEN_API_KEY: &str = "cal_live_demo_ben";
    /// Anna's individual colouring segments A–D (15, 30, 45, 30 minutes).
    pub const ANNA_SEGMENTS: [i64; 4] = [1001, 1002, 1003, 1004];
    pub const BEN_SEGMENTS: [i64; 4] = [1011, 1012, 1013, 1014];
    /// The managed parent "colour-consult" (30 min) …
    pub const MANAGED_PARENT: i64 = 2001;
    pub const MANAGED_SLUG: &str = "colour-consult";
    /// … with a child only for Anna; Ben has none (the incident).
    pub const ANNA_CHILD: i64 = 2002;
    /// A round-robin team type with both stylists as hosts.
    pub const ROUND_ROBIN: i64 = 3001;
}

impl Seed {
    /// The example salon: team `salon`, stylists Anna and Ben (09:00–19:00 Monday to
    /// Saturday, Europe/Berlin), individual segment types per stylist, a managed parent with
    /// a child only for Anna, and a round-robin type. Same content as `salon.json`.
    pub fn salon() -> Self {
        // Parsing is checked by a unit test; an empty seed here would fail every test using it.
        serde_json::from_str(SALON_JSON).unwrap_or_default()
    }

    pub fn merge(mut self, other: Seed) -> Self {
        self.users.extend(other.users);
        self.teams.extend(other.teams);
        self.api_keys.extend(other.api_keys);
        self.event_types.extend(other.event_types);
        self.bookings.extend(other.bookings);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salon_json_parses_and_holds_the_incident() {
        let seed: Seed = serde_json::from_str(SALON_JSON).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seed, Seed::salon());
        assert_eq!(seed.users.len(), 2);
        let parent = seed
            .event_types
            .iter()
            .find(|e| e.id == salon::MANAGED_PARENT)
            .unwrap_or_else(|| panic!("no parent"));
        assert_eq!(parent.children.len(), 1);
        assert_eq!(parent.children[0].owner_id, salon::ANNA);
    }
}
