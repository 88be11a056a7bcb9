//! The attempt log and the segment's saves, each fenced by the job's lease. An attempt is
//! written (and committed) before its Cal.com call is sent, so a process killed mid-call
//! still leaves a row naming what it asked; its outcome is saved later together with the
//! segment's booking, in one store call.

use chrono::Utc;
use phasebook_domain::sync::{
    Answer, AttemptResult, CalcomFailure, Decision, Outcome, SegmentSyncStatus,
};
use uuid::Uuid;

use super::{Run, RunError};
use crate::store::sync::{AttemptFinish, AttemptStart, SegmentWork};

impl Run<'_> {
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
        let store = &self.engine.store;
        let written = store
            .begin_attempt(&self.job.fence, &attempt, status)
            .await?;
        written
            .then_some(attempt.sync_attempt_id)
            .ok_or(RunError::LeaseLost)
    }

    /// Saves a finished call's attempt, as the domain recorded it, with `segment`, and
    /// counts the call on the tenant's circuit.
    pub(super) async fn finish_with(
        &self,
        attempt: Uuid,
        result: AttemptResult,
        segment: &mut SegmentWork,
    ) -> Result<(), RunError> {
        self.finish_moved(attempt, result, None, segment).await
    }

    /// [`Self::finish_with`] for a move: a reschedule's attempt also names the booking it
    /// moved from.
    pub(super) async fn finish_moved(
        &self,
        attempt: Uuid,
        result: AttemptResult,
        moved_from: Option<String>,
        segment: &mut SegmentWork,
    ) -> Result<(), RunError> {
        self.engine.observe_call(
            self.work.tenant.tenant_id,
            result.error.as_ref().map(|e| e.kind.as_str()),
        );
        let finish = AttemptFinish {
            sync_attempt_id: attempt,
            finished_at: Utc::now(),
            outcome: result.outcome,
            error: result.error,
            calcom_booking_uid: result.calcom_booking_uid,
            moved_from_uid: moved_from,
        };
        self.saved(Some(&finish), segment).await
    }

    /// Hands Cal.com's `answer` to the segment's booking and saves what the domain makes of
    /// it with the attempt. Returns the failure the answer leaves for the run to act on.
    pub(super) async fn record(
        &self,
        attempt: Uuid,
        segment: &mut SegmentWork,
        answer: Answer,
    ) -> Result<Option<CalcomFailure>, RunError> {
        let taken = segment.booking.clone().take(answer, Utc::now());
        segment.booking = taken.booking;
        let mut saved = segment.clone();
        saved.booking = taken.saved;
        self.finish_with(attempt, taken.attempt, &mut saved).await?;
        Ok(taken.failure)
    }

    /// Applies `outcome`, the end of the segment's run, and saves its new state.
    pub(super) async fn save_outcome(
        &self,
        mut segment: SegmentWork,
        outcome: Outcome,
    ) -> Result<SegmentWork, RunError> {
        let (appointment_id, key) = (self.work.appointment_id, &segment.key);
        match &outcome {
            Outcome::Failed {
                failure,
                decision: Decision::Retry { at } | Decision::ReconcileFirst { at },
                ..
            } => {
                tracing::info!(appointment_id = %appointment_id, segment = %key, kind = %failure.kind, retry_at = %at, "Cal.com call failed; retry scheduled");
            }
            Outcome::Failed {
                failure,
                decision: Decision::NeedsReview { .. },
                ..
            } => {
                tracing::warn!(appointment_id = %appointment_id, segment = %key, kind = %failure.kind, "segment needs review");
            }
            Outcome::Review { .. } => {
                tracing::warn!(appointment_id = %appointment_id, segment = %key, "segment needs review");
            }
            _ => {}
        }
        self.settle(&mut segment, outcome);
        self.saved(None, &segment).await?;
        Ok(segment)
    }

    pub(super) async fn saved(
        &self,
        finish: Option<&AttemptFinish>,
        segment: &SegmentWork,
    ) -> Result<(), RunError> {
        let store = &self.engine.store;
        let saved = store.save_segment(&self.job.fence, finish, segment).await?;
        saved.then_some(()).ok_or(RunError::LeaseLost)
    }
}
