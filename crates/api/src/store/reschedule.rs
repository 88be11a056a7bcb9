//! Moving an appointment in one transaction: its new plan replaces the old one only if no
//! other appointment or live hold holds the new time (its own old time does not count), so
//! the old time stays held until the move is decided and nothing can slip into a gap. The
//! segments whose Cal.com booking must follow are marked for the sync engine.
//! `reschedule_pg.rs` and `reschedule_sqlite.rs` implement [`RescheduleStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::sync::reschedule::RescheduleRefusal;
use phasebook_domain::{EventTypeId, PlannedSegment, SegmentKey, StaffId};
use uuid::Uuid;

use super::{Database, StoreResult};

/// An appointment's new plan.
#[derive(Debug, Clone)]
pub struct AppointmentMove {
    pub tenant_id: Uuid,
    pub appointment_id: Uuid,
    pub staff_id: StaffId,
    pub time_zone: String,
    /// Every segment of the service, by key, at its new time and staff member.
    pub segments: Vec<PlannedSegment>,
    /// A hold the move takes the time of: marked booked by this appointment in the same
    /// transaction, so it no longer counts as a conflict (and stays held if the move fails).
    pub hold_id: Option<Uuid>,
    pub now: DateTime<Utc>,
}

/// Marks the hold a move takes as booked by the appointment. `$1` hold, `$2` appointment,
/// `$3` now, `$4` tenant.
pub(crate) const TAKE_HOLD: &str = "update holds set status = 'booked', appointment_id = $2, \
     updated_at = $3 where hold_id = $1 and tenant_id = $4 and status = 'held'";

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveOutcome {
    /// Stored; the appointment's revision is now this.
    Moved {
        revision: i32,
    },
    /// The tenant has no such appointment.
    NotFound,
    Refused(RescheduleRefusal),
    /// The sync job is leased to a worker right now: try again once it let go.
    SyncRunning,
}

/// A segment row as the move reads it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentBefore {
    pub key: SegmentKey,
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    /// The segment's event type, or the one its last call was made on (a worker killed
    /// between sending a create and recording it leaves only the attempt to say).
    pub event_type_id: Option<EventTypeId>,
    pub has_booking_uid: bool,
    pub moving_from: Option<DateTime<Utc>>,
    pub moving_from_event_type_id: Option<EventTypeId>,
    pub outcome_unknown: bool,
}

/// The appointment's segments as [`SegmentBefore`] reads them (`$1` tenant, `$2`
/// appointment); PostgreSQL appends `for update`.
pub(crate) const SEGMENTS_BEFORE: &str = concat!(
    "select segment_key, staff_id, starts_at, \
     coalesce(event_type_id, (select x.event_type_id from sync_attempts x \
         where x.appointment_id = s.appointment_id \
           and x.segment_key = s.segment_key and x.event_type_id is not null \
         order by x.started_at desc limit 1)) as event_type_id, \
     calcom_booking_uid is not null as has_booking_uid, moving_from, \
     moving_from_event_type_id, ",
    super::create_outcome_unknown_column!(),
    " from appointment_segments s where tenant_id = $1 and appointment_id = $2"
);

/// `fn segment_before(row) -> StoreResult<SegmentBefore>` over the invoking module's codec
/// (see `shared.rs`).
macro_rules! segment_before_reader {
    (row = $row:ty) => {
        fn segment_before(r: &$row) -> StoreResult<SegmentBefore> {
            Ok(SegmentBefore {
                key: super::parse_segment_key(&r.try_get::<String, _>("segment_key")?)?,
                staff_id: super::parse_staff_id(&r.try_get::<String, _>("staff_id")?)?,
                starts_at: get_at(r, "starts_at")?,
                event_type_id: r
                    .try_get::<Option<i64>, _>("event_type_id")?
                    .map(phasebook_domain::EventTypeId),
                has_booking_uid: r.try_get("has_booking_uid")?,
                moving_from: get_opt_at(r, "moving_from")?,
                moving_from_event_type_id: r
                    .try_get::<Option<i64>, _>("moving_from_event_type_id")?
                    .map(phasebook_domain::EventTypeId),
                outcome_unknown: r.try_get("create_outcome_unknown")?,
            })
        }
    };
}

pub(crate) use segment_before_reader;

/// Where a segment's booking may still stand after the move: `None` when nothing needs to
/// follow. A segment already moving keeps where its booking stood first (a later move
/// cannot have booked anything before the first one was settled).
pub(crate) fn moving_from(
    before: &SegmentBefore,
    after: &PlannedSegment,
) -> Option<(DateTime<Utc>, Option<EventTypeId>)> {
    let changed = before.starts_at != after.starts_at || before.staff_id != after.staff_id;
    if !changed {
        return before
            .moving_from
            .map(|at| (at, before.moving_from_event_type_id));
    }
    if let Some(at) = before.moving_from {
        return Some((
            at,
            before.moving_from_event_type_id.or(before.event_type_id),
        ));
    }
    phasebook_domain::sync::reschedule::segment_must_move(
        changed,
        before.has_booking_uid,
        before.outcome_unknown,
    )
    .then_some((before.starts_at, before.event_type_id))
}

/// Storage for moves. Dyn-compatible; one implementation per backend.
#[async_trait]
pub trait RescheduleStore: Send + Sync {
    /// Replaces the appointment's plan with `change` (see the module), bumps its revision
    /// and makes its sync job due. Fails with `StoreError::DoubleBooking` when another
    /// appointment or a live hold holds part of the new time.
    async fn move_appointment(&self, change: &AppointmentMove) -> StoreResult<MoveOutcome>;
}

impl Database {
    /// Moving appointments, on the configured backend.
    pub fn reschedules(&self) -> &dyn RescheduleStore {
        match self {
            Self::Postgres(s) => s,
            Self::Sqlite(s) => s,
        }
    }
}
