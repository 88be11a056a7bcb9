//! The sim's data and what every Cal.com resource shares: the tables and their indexes,
//! seeding, API-key lookup and uid minting. Each resource's rules live in its own file
//! (`event_types`, `availability`, `bookings`, `slots`) as further `impl Data` blocks, so
//! one topic reads in one place while the state stays one struct behind one lock.
//!
//! Bookings are indexed by host (start-ordered) so an availability check touches only the
//! host's bookings near the requested time, never the whole table.

mod availability;
mod bookings;
mod event_types;
mod slots;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::error::SimError;
use crate::model::{BookingRecord, EventTypeRecord, ReservationRecord, TeamRecord, UserRecord};
use crate::seed::{Seed, SeedUser, WorkingHours};

pub(crate) use bookings::{BookingFilter, NewBooking};
pub(crate) use event_types::{TeamEventTypeInput, parse_booking_window};
pub(crate) use slots::{ReserveInput, slots_output};

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

    pub(crate) fn reset(&mut self) {
        *self = Data::default();
    }
}

pub(crate) fn new_uid() -> String {
    // Cal.com uids are opaque url-safe strings; a v4 uuid without dashes has the same feel.
    uuid::Uuid::new_v4().simple().to_string()
}
