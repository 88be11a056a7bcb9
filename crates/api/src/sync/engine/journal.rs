//! The attempt log and the segment's saved state, as the engine writes them: every write
//! is fenced by the job's lease, and a lost lease stops the run ([`RunError::LeaseLost`]).
//! Nothing here decides; it records what the run did.

use chrono::Utc;
use phasebook_domain::sync::{Outcome, SegmentError, SegmentSyncStatus};
use uuid::Uuid;

use super::{Run, RunError};
use crate::store::sync::{AttemptFinish, AttemptStart, SegmentWork};

fn fenced(saved: bool) -> Result<(), RunError> {
    if saved {
        Ok(())
    } else {
        Err(RunError::LeaseLost)
    }
}

impl Run<'_> {
    /// Writes the attempt down before its call is made.
    pub(super) async fn begin(
        &self,
        segment: &SegmentWork,
        operation: &'static str,
        event_type_id: Option<i64>,
        status: SegmentSyncStatus,
    ) -> Result<Uuid, RunError> {
        self.begin_on(segment, operation, event_type_id, status, None, None)
            .await
    }

    /// [`Self::begin`] for a call that ends a known booking (`uid`, or `moved_from` for a
    /// reschedule): the write-ahead row names it, so a kill before the answer still shows
    /// that phasebook asked for exactly this booking to go.
    pub(super) async fn begin_on(
        &self,
        segment: &SegmentWork,
        operation: &'static str,
        event_type_id: Option<i64>,
        status: SegmentSyncStatus,
        uid: Option<&str>,
        moved_from: Option<&str>,
    ) -> Result<Uuid, RunError> {
        let attempt = AttemptStart {
            sync_attempt_id: Uuid::now_v7(),
            tenant_id: self.work.tenant.tenant_id,
            appointment_id: self.work.appointment_id,
            segment_key: segment.key.clone(),
            operation,
            event_type_id,
            started_at: Utc::now(),
            calcom_booking_uid: uid.map(str::to_owned),
            moved_from_uid: moved_from.map(str::to_owned),
        };
        let begun = self
            .engine
            .store
            .begin_attempt(&self.job.fence, &attempt, status)
            .await?;
        fenced(begun).map(|()| attempt.sync_attempt_id)
    }

    /// Records how the attempt's call ended, with the segment's state, in one save; the
    /// call's answer is counted on the tenant's circuit.
    pub(super) async fn finish(
        &self,
        attempt: Uuid,
        outcome: &'static str,
        error: Option<SegmentError>,
        uid: Option<String>,
        segment: &SegmentWork,
    ) -> Result<(), RunError> {
        self.engine.observe_call(
            self.work.tenant.tenant_id,
            error.as_ref().map(|e| e.kind.as_str()),
        );
        let finish = AttemptFinish {
            sync_attempt_id: attempt,
            finished_at: Utc::now(),
            outcome,
            error,
            calcom_booking_uid: uid,
            moved_from_uid: None,
        };
        self.save_with(Some(&finish), segment).await
    }

    /// [`Self::finish`] while the segment's state is still to be decided: it is saved as
    /// `status` meanwhile, so that a crash in between still leaves the attempt known.
    pub(super) async fn finish_as(
        &self,
        status: SegmentSyncStatus,
        attempt: Uuid,
        outcome: &'static str,
        error: Option<SegmentError>,
        uid: Option<String>,
        segment: &SegmentWork,
    ) -> Result<(), RunError> {
        let mut snapshot = segment.clone();
        snapshot.booking.status = status;
        self.finish(attempt, outcome, error, uid, &snapshot).await
    }

    /// Records a move's attempt with both uids: the booking it moved from and the new one.
    pub(super) async fn finish_move(
        &self,
        attempt: Uuid,
        outcome: &'static str,
        error: Option<SegmentError>,
        uid: Option<String>,
        moved_from: String,
        segment: &SegmentWork,
    ) -> Result<(), RunError> {
        let finish = AttemptFinish {
            sync_attempt_id: attempt,
            finished_at: Utc::now(),
            outcome,
            error,
            calcom_booking_uid: uid,
            moved_from_uid: Some(moved_from),
        };
        self.save_with(Some(&finish), segment).await
    }

    /// Saves the segment's state (no attempt ends with it).
    pub(super) async fn save(&self, segment: &SegmentWork) -> Result<(), RunError> {
        self.save_with(None, segment).await
    }

    /// Applies `outcome` to the segment and saves its new state.
    pub(super) async fn save_outcome(
        &self,
        mut segment: SegmentWork,
        outcome: Outcome,
    ) -> Result<SegmentWork, RunError> {
        self.settle(&mut segment, outcome);
        self.save(&segment).await?;
        Ok(segment)
    }

    async fn save_with(
        &self,
        finish: Option<&AttemptFinish>,
        segment: &SegmentWork,
    ) -> Result<(), RunError> {
        let saved = self
            .engine
            .store
            .save_segment(&self.job.fence, finish, segment)
            .await?;
        fenced(saved)
    }
}
