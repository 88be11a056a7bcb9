//! Setting up a salon whose segments can be synced, for the sync tests, the benchmark and
//! the demo: a tenant pointing at a Cal.com (usually the emulator), a service, staff, and
//! one event map per (segment, staff), written straight to the store.

use chrono::{DateTime, SubsecRound, Utc};
use phasebook_domain::{
    CalcomUserId, Customer, SegmentKey, SegmentSpec, Service, ServiceId, StaffId, plan_appointment,
};
use secrecy::SecretString;
use uuid::Uuid;

use phasebook_api::auth::{self, TenantSettings};
use phasebook_api::store::{Database, NewAppointment, StaffMember, StoreError, StoreResult};

/// A staff member and their Cal.com user.
#[derive(Debug, Clone)]
pub struct FixtureStaff {
    pub staff_id: StaffId,
    pub calcom_user_id: i64,
    pub calcom_username: String,
}

/// What [`seed_salon`] created.
#[derive(Debug, Clone)]
pub struct FixtureSalon {
    pub tenant_id: Uuid,
    /// An ops key for the HTTP API.
    pub ops_key: String,
    pub service_id: ServiceId,
    pub segments: Vec<SegmentSpec>,
    pub staff: Vec<FixtureStaff>,
}

/// Stores an event map as if `PUT /event-maps` had resolved it (an individual type when
/// both ids are equal, a managed parent's child otherwise).
pub async fn put_event_map(
    db: &Database,
    tenant_id: Uuid,
    service_id: &ServiceId,
    segment_key: &SegmentKey,
    staff_id: &StaffId,
    event_type_id: i64,
    bookable_event_type_id: i64,
) -> StoreResult<()> {
    let resolution = if event_type_id == bookable_event_type_id {
        "individual"
    } else {
        "managed_parent_child"
    };
    // Through the store's one writer, as `PUT /event-maps` writes it.
    db.event_maps()
        .put_event_map(
            tenant_id,
            &phasebook_api::store::event_maps::NewEventMap {
                service_id: service_id.clone(),
                segment_key: segment_key.clone(),
                staff_id: staff_id.clone(),
                event_type_id: phasebook_domain::EventTypeId(event_type_id),
                bookable_event_type_id: phasebook_domain::EventTypeId(bookable_event_type_id),
                resolution: resolution.to_string(),
                checked_at: Utc::now().trunc_subsecs(3),
            },
        )
        .await?;
    Ok(())
}

/// Removes a (segment, staff) event map, as an install that never mapped it.
pub async fn remove_event_map(
    db: &Database,
    tenant_id: Uuid,
    service_id: &ServiceId,
    segment_key: &SegmentKey,
    staff_id: &StaffId,
) -> StoreResult<()> {
    let key = phasebook_api::store::event_maps::EventMapKey {
        service_id: service_id.clone(),
        segment_key: segment_key.clone(),
        staff_id: staff_id.clone(),
    };
    db.event_maps().delete_event_map(tenant_id, &key).await?;
    Ok(())
}

fn invalid(e: phasebook_domain::FieldError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A tenant on `calcom_base_url`, one service of `segments`, and `staff`. Event maps are
/// left to the caller (they depend on the Cal.com side).
pub async fn seed_salon(
    db: &Database,
    calcom_base_url: &str,
    calcom_api_key: &str,
    service_id: &str,
    segments: Vec<SegmentSpec>,
    staff: Vec<FixtureStaff>,
) -> StoreResult<FixtureSalon> {
    seed_salon_in_team(
        db,
        calcom_base_url,
        calcom_api_key,
        None,
        service_id,
        segments,
        staff,
    )
    .await
}

async fn seed_salon_in_team(
    db: &Database,
    calcom_base_url: &str,
    calcom_api_key: &str,
    calcom_team_id: Option<i64>,
    service_id: &str,
    segments: Vec<SegmentSpec>,
    staff: Vec<FixtureStaff>,
) -> StoreResult<FixtureSalon> {
    let store = db.store();
    let issued = auth::create_tenant(
        store,
        TenantSettings {
            name: "Fixture salon".into(),
            calcom_api_key: SecretString::from(calcom_api_key.to_string()),
            calcom_base_url: calcom_base_url.to_string(),
            calcom_team_id,
        },
    )
    .await?;
    // Fixture salons take bookings years ahead: sync tests book in 2030.
    db.booking()
        .set_booking_settings(
            issued.tenant_id,
            &phasebook_api::store::holds::BookingSettings {
                country: None,
                horizon_days: phasebook_domain::preflight::MAX_HORIZON_DAYS,
            },
        )
        .await?;
    let service_id = ServiceId::parse(service_id).map_err(invalid)?;
    let service = Service::new("Colour", segments.clone()).map_err(invalid)?;
    let now = Utc::now().trunc_subsecs(3);
    store
        .put_service(issued.tenant_id, &service_id, &service, now)
        .await?;
    for member in &staff {
        store
            .put_staff(
                issued.tenant_id,
                &StaffMember {
                    staff_id: member.staff_id.clone(),
                    name: member.calcom_username.clone(),
                    calcom_user_id: CalcomUserId(member.calcom_user_id),
                    calcom_username: member.calcom_username.clone(),
                    time_zone: "Europe/Berlin".into(),
                    created_at: now,
                    updated_at: now,
                },
            )
            .await?;
    }
    Ok(FixtureSalon {
        tenant_id: issued.tenant_id,
        ops_key: secrecy::ExposeSecret::expose_secret(&issued.api_key).to_string(),
        service_id,
        segments,
        staff,
    })
}

/// Segments `A`, `B`, … of `minutes` each, with `gap` minutes between them.
pub fn segments(count: usize, minutes: u32, gap: u32) -> Vec<SegmentSpec> {
    (0..count)
        .filter_map(|i| {
            let key = SegmentKey::parse(&((b'A' + i as u8) as char).to_string()).ok()?;
            Some(SegmentSpec {
                name: format!("Step {key}"),
                key,
                duration_minutes: minutes,
                gap_after_minutes: if i + 1 == count { 0 } else { gap },
                gap_after_max_minutes: None,
            })
        })
        .collect()
}

/// `count` appointments booked straight through the store, the staff taking turns: the
/// `n`-th goes to `staff[n % staff.len()]` at `first + spacing * (n / staff.len())`.
pub async fn book_in_turns(
    db: &Database,
    salon: &FixtureSalon,
    staff: &[FixtureStaff],
    count: usize,
    first: DateTime<Utc>,
    spacing: chrono::TimeDelta,
) -> StoreResult<Vec<Uuid>> {
    let mut appointments = Vec::with_capacity(count);
    for n in 0..count {
        let turn = i32::try_from(n / staff.len()).expect("small");
        let start = first + spacing * turn;
        appointments.push(book(db, salon, &staff[n % staff.len()].staff_id, start).await?);
    }
    Ok(appointments)
}

/// Creates an appointment of the salon's service for `staff` at `start` (straight to the
/// store, as `POST /appointments` does: appointment, segments and job in one transaction).
pub async fn book(
    db: &Database,
    salon: &FixtureSalon,
    staff: &StaffId,
    start: DateTime<Utc>,
) -> StoreResult<Uuid> {
    let service = Service::new("Colour", salon.segments.clone()).map_err(invalid)?;
    let assigned = vec![staff.clone(); salon.segments.len()];
    let now = Utc::now().trunc_subsecs(3);
    let appointment = NewAppointment {
        appointment_id: Uuid::now_v7(),
        tenant_id: salon.tenant_id,
        service_id: salon.service_id.clone(),
        staff_id: staff.clone(),
        time_zone: "Europe/Berlin".into(),
        customer: Customer::new("Ada Lovelace", Some("ada@example.com"), None).map_err(invalid)?,
        notes: None,
        segments: plan_appointment(&service, start.trunc_subsecs(3), &assigned),
        created_at: now,
        awaited: false,
    };
    db.store().create_appointment(&appointment, None).await?;
    Ok(appointment.appointment_id)
}

/// The Cal.com side of a fixture salon, as an emulator seed: one Cal.com user per stylist
/// (working around the clock, so any future time is bookable), a team they all belong to
/// whose owner is the first stylist (the API key acts as them, so it sees every stylist's
/// bookings, as a salon owner's key does), and one individual event type per (stylist,
/// segment) of the segment's length.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub seed: calcom_sim::Seed,
    pub api_key: String,
    pub team_id: i64,
    pub staff: Vec<FixtureStaff>,
    /// `event_types[stylist][segment]`.
    pub event_types: Vec<Vec<i64>>,
}

/// The Cal.com API key of every [`sim_account`].
pub const SIM_API_KEY: &str = "cal_test_fixture_salon";
/// The team of every [`sim_account`].
pub const SIM_TEAM_ID: i64 = 1;

/// A [`SimAccount`] for `stylists` stylists (`stylist-1`, … with Cal.com users 501, …)
/// and `segments`.
pub fn sim_account(stylists: usize, segments: &[SegmentSpec]) -> SimAccount {
    use calcom_sim::{
        Seed, SeedApiKey, SeedEventType, SeedMember, SeedTeam, SeedUser, WorkingHours,
    };
    let mut seed = Seed::default();
    let mut staff = Vec::new();
    let mut event_types = Vec::new();
    for i in 0..stylists {
        let user_id = 501 + i as i64;
        let username = format!("stylist-{}", i + 1);
        seed.users.push(
            SeedUser::new(user_id, &username, "Europe/Berlin").working(WorkingHours::always()),
        );
        let mut ids = Vec::new();
        for (j, segment) in segments.iter().enumerate() {
            let id = 10_000 + 100 * (i as i64 + 1) + j as i64 + 1;
            let slug = format!("segment-{}", segment.key.as_str().to_lowercase());
            seed.event_types.push(SeedEventType::individual(
                id,
                user_id,
                &slug,
                i64::from(segment.duration_minutes),
            ));
            ids.push(id);
        }
        event_types.push(ids);
        if let Ok(staff_id) = StaffId::parse(&username) {
            staff.push(FixtureStaff {
                staff_id,
                calcom_user_id: user_id,
                calcom_username: username,
            });
        }
    }
    seed.teams.push(SeedTeam {
        id: SIM_TEAM_ID,
        slug: "fixture-salon".into(),
        name: "Fixture salon".into(),
        members: staff
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SeedMember::new(s.calcom_user_id, if i == 0 { "OWNER" } else { "MEMBER" })
            })
            .collect(),
    });
    if let Some(owner) = staff.first() {
        seed.api_keys.push(SeedApiKey {
            key: SIM_API_KEY.into(),
            user_id: owner.calcom_user_id,
        });
    }
    SimAccount {
        seed,
        api_key: SIM_API_KEY.into(),
        team_id: SIM_TEAM_ID,
        staff,
        event_types,
    }
}

/// A salon on the emulator at `calcom_base_url` (seeded with `account.seed`): tenant,
/// service, the account's stylists, and every (segment, stylist) mapped to its event type.
pub async fn seed_sim_salon(
    db: &Database,
    calcom_base_url: &str,
    account: &SimAccount,
    service_id: &str,
    segments: Vec<SegmentSpec>,
) -> StoreResult<FixtureSalon> {
    let salon = seed_salon_in_team(
        db,
        calcom_base_url,
        &account.api_key,
        Some(account.team_id),
        service_id,
        segments,
        account.staff.clone(),
    )
    .await?;
    for (member, ids) in account.staff.iter().zip(&account.event_types) {
        for (segment, id) in salon.segments.iter().zip(ids) {
            put_event_map(
                db,
                salon.tenant_id,
                &salon.service_id,
                &segment.key,
                &member.staff_id,
                *id,
                *id,
            )
            .await?;
        }
    }
    Ok(salon)
}

/// What [`check_exactly_once`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactlyOnce {
    pub synced_segments: usize,
    /// Bookings a reschedule moved away from (cancelled on purpose).
    pub moved_bookings: usize,
    pub cancelled_bookings: usize,
}

/// The sync contract's invariants after a drained run, checked against what Cal.com (the
/// emulator) holds: one active booking per synced segment, with our uid, id and metadata;
/// no active booking we do not know about; and every booking no longer active is one we
/// cancelled on purpose (a cancelled segment's, or one a reschedule moved away from, as the
/// attempt log names it), so no duplicate was ever created. The error says which rule broke.
pub fn check_exactly_once(
    views: &[phasebook_api::store::sync::SyncView],
    calcom: &calcom_sim::State,
) -> Result<ExactlyOnce, String> {
    use phasebook_domain::sync::SegmentSyncStatus;
    use std::collections::{HashMap, HashSet};

    type Owner<'a> = (Uuid, &'a str, Option<i64>, DateTime<Utc>, Option<i64>);
    let mut ours: HashMap<&str, Owner<'_>> = HashMap::new();
    let mut cancelled: HashSet<&str> = HashSet::new();
    let mut moved_away: HashSet<&str> = HashSet::new();
    for view in views {
        // Bookings a move left behind: Cal.com's reschedule cancelled the old one, or the
        // engine cancelled it (before booking another stylist, or as a stray).
        for attempt in &view.attempts {
            // Whatever the answer said (it may have been lost after Cal.com cancelled), the
            // attempt shows phasebook asked for exactly this booking to go.
            let moved_away_uid = match attempt.operation.as_str() {
                "reschedule" => attempt.moved_from_uid.as_deref(),
                // A booking of ours away from the planned time (left by a create whose
                // answer was lost before the move) is cancelled as a stray.
                "cancel_moved" | "cancel_stray" => attempt.calcom_booking_uid.as_deref(),
                _ => None,
            };
            if let Some(uid) = moved_away_uid {
                moved_away.insert(uid);
            }
        }
        for segment in &view.segments {
            let uid = segment.calcom_booking_uid.as_deref();
            match (segment.status, uid) {
                (SegmentSyncStatus::Synced, None) => {
                    return Err(format!(
                        "segment {} of {} is synced without a booking uid",
                        segment.key, view.appointment_id
                    ));
                }
                (SegmentSyncStatus::Synced, Some(uid)) => {
                    let entry = (
                        view.appointment_id,
                        segment.key.as_str(),
                        segment.calcom_booking_id,
                        segment.starts_at,
                        segment.event_type_id,
                    );
                    if ours.insert(uid, entry).is_some() {
                        return Err(format!("booking uid {uid} is stored for two segments"));
                    }
                }
                (SegmentSyncStatus::Cancelled, Some(uid)) if !cancelled.insert(uid) => {
                    return Err(format!("cancelled booking uid {uid} is stored twice"));
                }
                _ => {}
            }
        }
    }

    let mut active = 0;
    for booking in &calcom.bookings {
        if booking.status != calcom_sim::BookingStatus::Accepted {
            let uid = booking.uid.as_str();
            if !cancelled.contains(uid) && !moved_away.contains(uid) {
                return Err(format!(
                    "Cal.com holds a {:?} booking {} that no cancelled segment owns (a duplicate): {:?}",
                    booking.status, booking.uid, booking.metadata
                ));
            }
            continue;
        }
        active += 1;
        let Some((appointment_id, key, id, _, _)) = ours.get(booking.uid.as_str()) else {
            return Err(format!(
                "Cal.com holds an active booking {} that no synced segment owns: {:?}",
                booking.uid, booking.metadata
            ));
        };
        if Some(booking.id) != *id {
            return Err(format!(
                "booking {}: Cal.com's id {} but we stored {id:?}",
                booking.uid, booking.id
            ));
        }
        let appointment = appointment_id.to_string();
        let text = |name: &str| {
            booking
                .metadata
                .get(name)
                .and_then(serde_json::Value::as_str)
        };
        if text("phasebook_appointment") != Some(appointment.as_str())
            || text("phasebook_segment") != Some(*key)
        {
            return Err(format!(
                "booking {} carries metadata {:?}, not appointment {appointment} segment {key}",
                booking.uid, booking.metadata
            ));
        }
    }
    if active != ours.len() {
        return Err(format!(
            "{} synced segments but {active} active bookings in Cal.com",
            ours.len()
        ));
    }
    let gone = calcom.bookings.len() - active;
    let meant_gone = cancelled.union(&moved_away).count();
    if gone != meant_gone {
        return Err(format!(
            "{meant_gone} bookings cancelled or moved away on purpose but {gone} no longer active in Cal.com"
        ));
    }
    Ok(ExactlyOnce {
        synced_segments: ours.len(),
        moved_bookings: moved_away.len(),
        cancelled_bookings: cancelled.len(),
    })
}

/// After moves: every synced segment's active booking stands at the segment's current start
/// on the segment's event type, so nothing is left at an old time (run after
/// [`check_exactly_once`], which proves there is one such booking per segment).
pub fn check_current_times(
    views: &[phasebook_api::store::sync::SyncView],
    calcom: &calcom_sim::State,
) -> Result<(), String> {
    use phasebook_domain::sync::SegmentSyncStatus;
    for view in views {
        for segment in &view.segments {
            if segment.status != SegmentSyncStatus::Synced {
                continue;
            }
            let uid = segment.calcom_booking_uid.as_deref().unwrap_or_default();
            let Some(booking) = calcom.bookings.iter().find(|b| b.uid == uid) else {
                return Err(format!(
                    "segment {} of {}: booking {uid} is not in Cal.com",
                    segment.key, view.appointment_id
                ));
            };
            if booking.start != segment.starts_at || booking.event_type_id != segment.event_type_id
            {
                return Err(format!(
                    "booking {uid} stands at {} on event type {:?}, but segment {} of {} is planned at {} on {:?}",
                    booking.start,
                    booking.event_type_id,
                    segment.key,
                    view.appointment_id,
                    segment.starts_at,
                    segment.event_type_id
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use calcom_sim::{SeedBooking, Sim, salon};
    use chrono::TimeZone;
    use phasebook_domain::sync::{AppointmentSyncStatus, SegmentSyncStatus};
    use serde_json::json;

    use super::*;
    use phasebook_api::store::sync::{SegmentSyncView, SyncView};

    fn at(hour: u32) -> DateTime<Utc> {
        // A Monday morning in Berlin, inside the salon's working hours.
        Utc.with_ymd_and_hms(2030, 6, 3, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    /// A booking in the emulator that carries appointment `id`, segment `key` as metadata.
    fn booked(sim: &Sim, id: Uuid, key: &str, hour: u32) -> (String, i64) {
        let mut booking = SeedBooking::new(salon::ANNA_SEGMENTS[0], at(hour));
        booking
            .metadata
            .insert("phasebook_appointment".into(), json!(id.to_string()));
        booking
            .metadata
            .insert("phasebook_segment".into(), json!(key));
        let record = sim.insert_booking(booking).expect("inserted");
        (record.uid, record.id)
    }

    /// A segment key, its status, and its booking's uid and id.
    type Segment<'a> = (&'a str, SegmentSyncStatus, Option<(String, i64)>);

    fn view(id: Uuid, segments: Vec<Segment<'_>>) -> SyncView {
        SyncView {
            appointment_id: id,
            status: AppointmentSyncStatus::Synced,
            requires_manual_review: false,
            review_reason: None,
            cancellation_reason: None,
            job_state: None,
            next_run_at: None,
            attempts: Vec::new(),
            segments: segments
                .into_iter()
                .map(|(key, status, booking)| SegmentSyncView {
                    key: key.into(),
                    staff_id: "anna".into(),
                    starts_at: at(9),
                    ends_at: at(10),
                    status,
                    event_type_id: None,
                    calcom_booking_uid: booking.as_ref().map(|b| b.0.clone()),
                    calcom_booking_id: booking.map(|b| b.1),
                    attempts: 1,
                    last_error: None,
                    next_attempt_at: None,
                    review_reason: None,
                    moving_from: None,
                })
                .collect(),
        }
    }

    #[test]
    fn one_booking_per_synced_segment_passes() {
        let sim = Sim::salon();
        let id = Uuid::now_v7();
        let a = booked(&sim, id, "A", 8);
        let b = booked(&sim, id, "B", 10);
        let views = [view(
            id,
            vec![
                ("A", SegmentSyncStatus::Synced, Some(a)),
                ("B", SegmentSyncStatus::Synced, Some(b)),
            ],
        )];
        let counted = check_exactly_once(&views, &sim.state()).expect("holds");
        assert_eq!(counted.synced_segments, 2);
    }

    #[test]
    fn a_second_booking_for_a_segment_is_a_duplicate() {
        let sim = Sim::salon();
        let id = Uuid::now_v7();
        let a = booked(&sim, id, "A", 8);
        booked(&sim, id, "A", 10);
        let views = [view(id, vec![("A", SegmentSyncStatus::Synced, Some(a))])];
        let broken = check_exactly_once(&views, &sim.state()).expect_err("duplicate");
        assert!(broken.contains("no synced segment owns"), "{broken}");
    }

    #[test]
    fn a_stored_id_or_metadata_that_differs_from_calcom_is_caught() {
        let sim = Sim::salon();
        let id = Uuid::now_v7();
        let (uid, real_id) = booked(&sim, id, "A", 8);
        let wrong_id = [view(
            id,
            vec![(
                "A",
                SegmentSyncStatus::Synced,
                Some((uid.clone(), real_id + 1)),
            )],
        )];
        let broken = check_exactly_once(&wrong_id, &sim.state()).expect_err("id");
        assert!(broken.contains("we stored"), "{broken}");
        let other_segment = [view(
            id,
            vec![("B", SegmentSyncStatus::Synced, Some((uid, real_id)))],
        )];
        let broken = check_exactly_once(&other_segment, &sim.state()).expect_err("metadata");
        assert!(broken.contains("carries metadata"), "{broken}");
    }

    #[test]
    fn a_synced_segment_whose_booking_vanished_is_caught() {
        let sim = Sim::salon();
        let id = Uuid::now_v7();
        let a = booked(&sim, id, "A", 8);
        sim.remove_booking(&a.0);
        let views = [view(id, vec![("A", SegmentSyncStatus::Synced, Some(a))])];
        let broken = check_exactly_once(&views, &sim.state()).expect_err("vanished");
        assert!(
            broken.contains("1 synced segments but 0 active"),
            "{broken}"
        );
    }
}
