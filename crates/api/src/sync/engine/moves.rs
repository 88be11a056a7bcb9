//! Moving one segment's Cal.com booking after its appointment was rescheduled, so that
//! exactly one booking stands for it, at its new time, and none at the old one.
//!
//! Same event type (so the same host) and a known booking: one Cal.com reschedule (new uid,
//! the old booking cancelled by Cal.com; the attempt records both uids). Otherwise — another
//! stylist, no uid, or an earlier call whose outcome is unknown — the old position is
//! reconciled: a booking already at the new time (a reschedule that landed unseen, found
//! through Cal.com's `rescheduledToUid` link) is adopted, every other booking of ours there
//! is cancelled, and only once all of them are cancelled is the new time booked. The segment
//! keeps `moving_from` until then, so a crash at any point repeats the look, never a create.

use calcom_client::RescheduleBooking;
use chrono::{DateTime, Utc};
use phasebook_domain::EventTypeId;
use phasebook_domain::sync::reschedule::{
    MoveStep, StillMoving, move_step, retry_the_reschedule, waits_for_neighbour,
};
use phasebook_domain::sync::{
    CalcomFailure, ObservedBooking, Operation, SegmentError, SegmentSyncStatus, converge,
};
use uuid::Uuid;

use super::calcom::{Cancel, cancel, find_bookings, observe};
use super::{Run, RunError, classify};
use crate::store::sync::{AttemptFinish, SegmentWork};
use calcom_client::{Booking, CalcomClient};

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
        let others: Vec<StillMoving<'_>> = self
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
        if waits_for_neighbour(
            &segment.staff_id,
            segment.starts_at,
            segment.ends_at,
            &others,
        ) {
            // Runs again right after this run, when the neighbour has moved.
            segment.booking.next_attempt_at =
                Some(Utc::now() + chrono::TimeDelta::milliseconds(50));
            self.save(&segment).await?;
            return Ok(segment);
        }
        let to = map.bookable_event_type_id;
        let from_event_type = segment.moving_from_event_type_id.map(EventTypeId);
        let step = move_step(
            segment.booking.calcom_booking_uid.is_some(),
            segment.booking.earlier_outcome_unknown,
            from_event_type,
            to,
        );
        if let (MoveStep::CalcomReschedule, Some(uid)) =
            (step, segment.booking.calcom_booking_uid.clone())
        {
            let attempt = self
                .begin_on(
                    &segment,
                    "reschedule",
                    Some(to.0),
                    SegmentSyncStatus::Syncing,
                    None,
                    Some(&uid),
                )
                .await?;
            let request = RescheduleBooking {
                start: segment.starts_at,
                rescheduled_by: None,
                rescheduling_reason: Some(format!(
                    "Appointment {} was moved in phasebook (revision {}).",
                    self.work.appointment_id, self.work.revision
                )),
            };
            match client.reschedule_booking(&uid, &request).await {
                Ok(booking) => {
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, moved_from = %uid, "segment booking moved in Cal.com");
                    self.settle(&mut segment, Self::booked(&booking, to));
                    segment.moving_from = None;
                    segment.moving_from_event_type_id = None;
                    self.finish_move(
                        attempt,
                        "rescheduled",
                        None,
                        Some(booking.uid.clone()),
                        uid,
                        &mut segment,
                    )
                    .await?;
                    return Ok(segment);
                }
                Err(err) => {
                    let failure = classify(&err);
                    let outcome = if failure.class.may_have_created() {
                        "unknown"
                    } else {
                        "failed"
                    };
                    segment.booking.last_error = Some(SegmentError::from(&failure));
                    let mut snapshot = segment.clone();
                    snapshot.booking.status = SegmentSyncStatus::Syncing;
                    self.finish_move(
                        attempt,
                        outcome,
                        Some(SegmentError::from(&failure)),
                        None,
                        uid,
                        &mut snapshot,
                    )
                    .await?;
                    if retry_the_reschedule(failure.class) {
                        if failure.class.may_have_created() {
                            segment.booking.earlier_outcome_unknown = true;
                        }
                        return self
                            .after_failure(segment, &failure, true, Operation::Create)
                            .await;
                    }
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, kind = %failure.kind, "Cal.com refused the reschedule; cancelling and booking anew");
                }
            }
        }
        self.reconcile_move(&client, segment, from, from_event_type.unwrap_or(to), to)
            .await
    }

    /// Looks where the booking stood (and where Cal.com moved it), adopts one at the new
    /// time, cancels every other of ours, then books the new time if nothing stands there.
    async fn reconcile_move(
        &self,
        client: &CalcomClient,
        mut segment: SegmentWork,
        from: DateTime<Utc>,
        from_event_type: EventTypeId,
        to: EventTypeId,
    ) -> Result<SegmentWork, RunError> {
        let attempt = self
            .begin(
                &segment,
                "reconcile_move",
                Some(from_event_type.0),
                SegmentSyncStatus::Syncing,
            )
            .await?;
        let bookings = match find_bookings(
            client,
            segment.booking.calcom_booking_uid.as_deref(),
            from_event_type,
            from,
        )
        .await
        {
            Ok(bookings) => bookings,
            Err(err) => {
                let failure = classify(&err);
                segment.booking.last_error = Some(SegmentError::from(&failure));
                let mut snapshot = segment.clone();
                snapshot.booking.status = SegmentSyncStatus::Syncing;
                self.finish(
                    attempt,
                    "failed",
                    Some(SegmentError::from(&failure)),
                    None,
                    &mut snapshot,
                )
                .await?;
                return self
                    .after_failure(segment, &failure, true, Operation::Create)
                    .await;
            }
        };
        let observed: Vec<ObservedBooking> = bookings.iter().map(observe).collect();
        let plan = converge(
            &self.identity(&segment),
            to,
            segment.starts_at,
            segment.ends_at,
            &observed,
        );
        let kept = plan.keep.map(|i| bookings[i].clone());
        // The stored uid stays until every old booking is cancelled: a crash before then
        // repeats this look from the same place.
        let mut snapshot = segment.clone();
        snapshot.booking.status = SegmentSyncStatus::Syncing;
        self.finish(
            attempt,
            if kept.is_some() { "adopted" } else { "missing" },
            None,
            kept.as_ref().map(|b| b.uid.clone()),
            &mut snapshot,
        )
        .await?;
        for stray in plan.strays {
            if let Some(failure) = self
                .cancel_moved(client, &segment, &bookings[stray])
                .await?
            {
                return self
                    .after_failure(segment, &failure, true, Operation::Cancel)
                    .await;
            }
        }
        segment.moving_from = None;
        segment.moving_from_event_type_id = None;
        match kept {
            Some(booking) => {
                self.settle(&mut segment, Self::booked(&booking, to));
                self.save(&segment).await?;
                Ok(segment)
            }
            None => {
                segment.booking.calcom_booking_uid = None;
                segment.booking.calcom_booking_id = None;
                segment.booking.status = SegmentSyncStatus::Pending;
                self.save(&segment).await?;
                self.book_now(segment).await
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
        let Some(from_event_type) = segment
            .moving_from_event_type_id
            .or(segment.booking.event_type_id)
            .map(EventTypeId)
        else {
            return Ok(None);
        };
        let bookings = match find_bookings(
            client,
            segment.booking.calcom_booking_uid.as_deref(),
            from_event_type,
            from,
        )
        .await
        {
            Ok(bookings) => bookings,
            Err(err) => return Ok(Some(classify(&err))),
        };
        let observed: Vec<ObservedBooking> = bookings.iter().map(observe).collect();
        // No event type 0 exists: nothing is kept, every active booking of ours is a stray.
        let plan = converge(
            &self.identity(segment),
            EventTypeId(0),
            from,
            from,
            &observed,
        );
        for stray in plan.strays {
            if let Some(failure) = self.cancel_moved(client, segment, &bookings[stray]).await? {
                return Ok(Some(failure));
            }
        }
        segment.moving_from = None;
        segment.moving_from_event_type_id = None;
        // The stored uid (if any) was among them; the cancel that follows finds it done.
        Ok(None)
    }

    /// Cancels a booking of ours the move left behind; `Some` when Cal.com did not.
    async fn cancel_moved(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
        booking: &Booking,
    ) -> Result<Option<CalcomFailure>, RunError> {
        let attempt = self
            .begin_on(
                segment,
                "cancel_moved",
                booking.event_type_id,
                SegmentSyncStatus::Syncing,
                Some(&booking.uid),
                None,
            )
            .await?;
        let reason = format!(
            "Appointment {} was moved to another time in phasebook.",
            self.work.appointment_id
        );
        let (outcome, failure) = match cancel(client, &booking.uid, &reason).await {
            Cancel::Cancelled => ("cancelled", None),
            Cancel::AlreadyCancelled => ("already_cancelled", None),
            Cancel::NotFound(_) => ("not_found", None),
            Cancel::Failed(failure) => ("failed", Some(failure)),
        };
        let mut snapshot = segment.clone();
        snapshot.booking.status = SegmentSyncStatus::Syncing;
        self.finish(
            attempt,
            outcome,
            failure.as_ref().map(SegmentError::from),
            Some(booking.uid.clone()),
            &mut snapshot,
        )
        .await?;
        Ok(failure)
    }

    async fn save(&self, segment: &SegmentWork) -> Result<(), RunError> {
        if self
            .engine
            .store
            .save_segment(&self.job.fence, None, segment)
            .await?
        {
            Ok(())
        } else {
            Err(RunError::LeaseLost)
        }
    }

    /// Records a move's attempt with both uids: the booking it moved from and the new one.
    async fn finish_move(
        &self,
        attempt: Uuid,
        outcome: &'static str,
        error: Option<SegmentError>,
        uid: Option<String>,
        moved_from: String,
        segment: &mut SegmentWork,
    ) -> Result<(), RunError> {
        let finish = AttemptFinish {
            sync_attempt_id: attempt,
            finished_at: Utc::now(),
            outcome,
            error,
            calcom_booking_uid: uid,
            moved_from_uid: Some(moved_from),
        };
        if self
            .engine
            .store
            .save_segment(&self.job.fence, Some(&finish), segment)
            .await?
        {
            Ok(())
        } else {
            Err(RunError::LeaseLost)
        }
    }
}
