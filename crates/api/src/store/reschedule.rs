//! Moving an appointment in one transaction: its new plan replaces the old one only if no
//! other appointment or live hold holds the new time (its own old time does not count), so
//! the old time stays held until the move is decided and nothing can slip into a gap. The
//! segments whose Cal.com booking must follow are marked for the sync engine.
//! `reschedule_pg.rs` and `reschedule_sqlite.rs` implement [`RescheduleStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::sync::reschedule::RescheduleRefusal;
use phasebook_domain::{PlannedSegment, StaffId};
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
    pub key: String,
    pub staff_id: String,
    pub starts_at: DateTime<Utc>,
    /// The segment's event type, or the one its last call was made on (a worker killed
    /// between sending a create and recording it leaves only the attempt to say).
    pub event_type_id: Option<i64>,
    pub has_booking_uid: bool,
    pub moving_from: Option<DateTime<Utc>>,
    pub moving_from_event_type_id: Option<i64>,
    pub outcome_unknown: bool,
}

/// Where a segment's booking may still stand after the move: `None` when nothing needs to
/// follow. A segment already moving keeps where its booking stood first (a later move
/// cannot have booked anything before the first one was settled).
pub(crate) fn moving_from(
    before: &SegmentBefore,
    after: &PlannedSegment,
) -> Option<(DateTime<Utc>, Option<i64>)> {
    let changed = before.starts_at != after.starts_at || before.staff_id != after.staff_id.as_str();
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
