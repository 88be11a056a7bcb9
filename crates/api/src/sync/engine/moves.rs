//! Moving one segment's Cal.com booking after its appointment was rescheduled, so that
//! exactly one booking stands for it, at its new time, and none at the old one.
//!
//! The order of the steps and every decision are the domain's [`MovePlan`]: this file
//! performs each action it names (a Cal.com reschedule, a look at the old position, the
//! cancel of a booking left behind, the record of an attempt) and hands the answer back,
//! until the plan ends. The same look, keeping nothing, clears what a move left behind when
//! the appointment is cancelled while it was moving.

use calcom_client::{CalcomClient, RescheduleBooking};
use chrono::Utc;
use phasebook_domain::EventTypeId;
use phasebook_domain::sync::reschedule::StillMoving;
use phasebook_domain::sync::{
    CalcomFailure, CancelAnswer, MoveAction, MoveAsk, MoveEnd, MovePlan, MoveResult,
    SegmentSyncStatus,
};
use uuid::Uuid;

use super::calcom::{Cancel, cancel, find_bookings, observe};
use super::{Run, RunError, classify};
use crate::store::sync::SegmentWork;

/// The attempt written ahead of the last call, until the plan names its record.
struct Open {
    attempt: Uuid,
    /// A reschedule's: the booking it moves from.
    moved_from: Option<String>,
}

impl Run<'_> {
    pub(super) async fn bring_moved(
        &self,
        mut segment: SegmentWork,
    ) -> Result<SegmentWork, RunError> {
        let (Some(client), Some(map), Some(from)) = (
            self.client.clone(),
            segment.map.clone(),
            segment.moving_from,
        ) else {
            // No Cal.com connection or no event map: booking flags the segment with the
            // reason, and the move resumes after ops fixed it and resynced.
            return self.book_now(segment).await;
        };
        let neighbours: Vec<StillMoving<'_>> = self
            .work
            .segments
            .iter()
            .filter(|s| s.key != segment.key)
            .filter_map(|s| {
                let old_start = s.moving_from?;
                Some(StillMoving {
                    staff_id: &s.staff_id,
                    old_start,
                    old_end: old_start + (s.ends_at - s.starts_at),
                })
            })
            .collect();
        let identity = self.identity(&segment);
        let ask = MoveAsk {
            identity: &identity,
            staff_id: &segment.staff_id,
            starts_at: segment.starts_at,
            ends_at: segment.ends_at,
            from,
            from_event_type: segment.moving_from_event_type_id.map(EventTypeId),
            to: map.bookable_event_type_id,
            neighbours: &neighbours,
        };
        let (plan, first) = MovePlan::new(&segment.booking, &ask, Utc::now());
        match self.drive(&client, &mut segment, plan, first).await? {
            MoveEnd::Moved { .. } => Ok(segment),
            MoveEnd::Rebook => {
                self.saved(None, &segment).await?;
                self.book_now(segment).await
            }
            MoveEnd::Failed { failure, operation } => {
                self.after_failure(segment, &failure, true, operation).await
            }
            MoveEnd::WaitForNeighbour
            | MoveEnd::Adopted
            | MoveEnd::Left
            | MoveEnd::NowhereToLook => {
                self.saved(None, &segment).await?;
                Ok(segment)
            }
        }
    }

    /// The appointment was cancelled while this segment's booking was moving: every booking
    /// of ours at the old position (and where Cal.com moved it) is cancelled, then the
    /// segment is cancelled as usual. `Some` when Cal.com could not be read or did not cancel.
    pub(super) async fn cancel_left_behind(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
    ) -> Result<Option<CalcomFailure>, RunError> {
        let Some(from) = segment.moving_from else {
            return Ok(None);
        };
        let (plan, first) = MovePlan::leave(
            &segment.booking,
            &self.identity(segment),
            from,
            segment.moving_from_event_type_id.map(EventTypeId),
            Utc::now(),
        );
        // The stored uid (if any) was among the bookings cancelled; the cancel that follows
        // finds it done.
        Ok(match self.drive(client, segment, plan, first).await? {
            MoveEnd::Failed { failure, .. } => Some(failure),
            _ => None,
        })
    }

    /// Performs the actions `plan` names, from `action`, until it ends; the segment then
    /// holds the booking as the plan left it. A Cal.com reschedule's end is saved here, with
    /// its attempt; every other end is the caller's to save.
    async fn drive(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        mut plan: MovePlan,
        mut action: MoveAction,
    ) -> Result<MoveEnd, RunError> {
        let mut open: Option<Open> = None;
        loop {
            let result = match action {
                MoveAction::Reschedule { uid, event_type } => {
                    let written = self
                        .write_ahead(segment, "reschedule", Some(event_type), None, Some(&uid))
                        .await?;
                    let request = RescheduleBooking {
                        start: segment.starts_at,
                        rescheduled_by: None,
                        rescheduling_reason: Some(format!(
                            "Appointment {} was moved in phasebook (revision {}).",
                            self.work.appointment_id, self.work.revision
                        )),
                    };
                    let answer = client.reschedule_booking(&uid, &request).await;
                    open = Some(written);
                    MoveResult::Rescheduled(answer.map(|b| observe(&b)).map_err(|e| classify(&e)))
                }
                MoveAction::Find {
                    uid,
                    event_type,
                    at,
                    logged,
                } => {
                    if logged {
                        let written = self
                            .write_ahead(segment, "reconcile_move", Some(event_type), None, None)
                            .await?;
                        open = Some(written);
                    }
                    let found = find_bookings(client, uid.as_deref(), event_type, at).await;
                    MoveResult::Found(
                        found
                            .map(|bookings| bookings.iter().map(observe).collect())
                            .map_err(|e| classify(&e)),
                    )
                }
                MoveAction::CancelStray { uid, event_type } => {
                    let written = self
                        .write_ahead(segment, "cancel_moved", event_type, Some(&uid), None)
                        .await?;
                    open = Some(written);
                    let reason = format!(
                        "Appointment {} was moved to another time in phasebook.",
                        self.work.appointment_id
                    );
                    MoveResult::Cancelled(match cancel(client, &uid, &reason).await {
                        Cancel::Cancelled => CancelAnswer::Cancelled,
                        Cancel::AlreadyCancelled => CancelAnswer::AlreadyCancelled,
                        Cancel::NotFound(_) => CancelAnswer::NotFound,
                        Cancel::Failed(failure) => CancelAnswer::Failed(failure),
                    })
                }
                MoveAction::Record(record) => {
                    segment.booking = plan.booking().clone();
                    // Mid-move the row says syncing; the plan's end sets the real status.
                    let mut snapshot = segment.clone();
                    snapshot.booking.status = SegmentSyncStatus::Syncing;
                    if let Some(open) = open.take() {
                        self.finish_moved(open.attempt, record, open.moved_from, &mut snapshot)
                            .await?;
                    }
                    MoveResult::Recorded
                }
                MoveAction::Done(end) => {
                    segment.booking = plan.booking().clone();
                    if end.done_moving() {
                        segment.moving_from = None;
                        segment.moving_from_event_type_id = None;
                    }
                    if let (MoveEnd::Moved { record, .. }, Some(open)) = (&end, open.take()) {
                        tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = ?record.calcom_booking_uid, moved_from = ?open.moved_from, "segment booking moved in Cal.com");
                        self.finish_moved(open.attempt, record.clone(), open.moved_from, segment)
                            .await?;
                    }
                    return Ok(end);
                }
            };
            action = plan.next(result);
        }
    }

    /// Writes a move's call down before it is sent (see [`Self::begin_on`]).
    async fn write_ahead(
        &self,
        segment: &SegmentWork,
        operation: &'static str,
        event_type: Option<EventTypeId>,
        uid: Option<&str>,
        moved_from: Option<&str>,
    ) -> Result<Open, RunError> {
        let status = SegmentSyncStatus::Syncing;
        let event_type = event_type.map(|e| e.0);
        Ok(Open {
            attempt: self
                .begin_on(segment, operation, event_type, status, uid, moved_from)
                .await?,
            moved_from: moved_from.map(str::to_owned),
        })
    }
}
