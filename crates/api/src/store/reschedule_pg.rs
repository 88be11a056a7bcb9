//! [`RescheduleStore`] on PostgreSQL: the appointment and its job are locked, the segments
//! are taken off the guard and put back at their new times, so the exclusion constraint
//! over `staff_busy` judges the new time against everyone else only.

use async_trait::async_trait;
use phasebook_domain::AppointmentStatus;
use phasebook_domain::sync::reschedule::may_reschedule;
use phasebook_domain::sync::{
    DesiredState, SegmentState, SegmentSyncStatus, derive_appointment_sync,
};
use sqlx::Row;
use uuid::Uuid;

use super::pg::PgStore;
use super::reschedule::{
    AppointmentMove, MoveOutcome, RescheduleStore, SegmentBefore, moving_from,
};
use super::{RETRIES_ON_CONFLICT, StoreError, StoreResult, is_retryable, parse_appointment_status};

use super::pg::{get_at, get_opt_at};

super::reschedule::segment_before_reader!(row = sqlx::postgres::PgRow);

const EXCLUSION_VIOLATION: &str = "23P01";

fn is_exclusion(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some(EXCLUSION_VIOLATION))
}

#[async_trait]
impl RescheduleStore for PgStore {
    async fn move_appointment(&self, change: &AppointmentMove) -> StoreResult<MoveOutcome> {
        let mut tries = 0;
        loop {
            match self.move_once(change).await {
                Err(StoreError::Database(err)) if is_exclusion(&err) => {
                    return Err(StoreError::DoubleBooking {
                        conflicting_appointment_id: self.conflict_of(change).await?,
                    });
                }
                Err(StoreError::Database(err))
                    if tries < RETRIES_ON_CONFLICT && is_retryable(&err) =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

impl PgStore {
    async fn move_once(&self, change: &AppointmentMove) -> StoreResult<MoveOutcome> {
        let (Some(first), Some(last)) = (change.segments.first(), change.segments.last()) else {
            return Err(StoreError::Corrupt("a move needs segments".into()));
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "select status, starts_at from appointments
             where tenant_id = $1 and appointment_id = $2 for update",
        )
        .bind(change.tenant_id)
        .bind(change.appointment_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(MoveOutcome::NotFound);
        };
        let status: AppointmentStatus = parse_appointment_status(row.try_get("status")?)?;
        if let Err(refusal) = may_reschedule(status, row.try_get("starts_at")?, change.now) {
            return Ok(MoveOutcome::Refused(refusal));
        }
        // A reschedule waits for a running sync rather than superseding it: a call already
        // sent cannot be taken back, and its booking could land unseen beside the new one.
        // A lease that expired belongs to no one any more.
        let running: Option<bool> = sqlx::query_scalar(
            "select state = 'leased' and lease_expires_at > $2 from sync_jobs
             where appointment_id = $1 for update",
        )
        .bind(change.appointment_id)
        .bind(change.now)
        .fetch_optional(&mut *tx)
        .await?;
        if running == Some(true) {
            return Ok(MoveOutcome::SyncRunning);
        }
        if let Some(hold_id) = change.hold_id {
            sqlx::query(super::reschedule::TAKE_HOLD)
                .bind(hold_id)
                .bind(change.appointment_id)
                .bind(change.now)
                .bind(change.tenant_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("delete from staff_busy where hold_id = $1")
                .bind(hold_id)
                .execute(&mut *tx)
                .await?;
        }
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} for update",
            super::reschedule::SEGMENTS_BEFORE
        )))
        .bind(change.tenant_id)
        .bind(change.appointment_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(segment_before)
        .collect::<StoreResult<Vec<_>>>()?;
        // Off the guard first, so a segment may move onto its neighbour's old time.
        sqlx::query(
            "update appointment_segments set active = false
             where tenant_id = $1 and appointment_id = $2",
        )
        .bind(change.tenant_id)
        .bind(change.appointment_id)
        .execute(&mut *tx)
        .await?;
        let mut states = Vec::new();
        for after in &change.segments {
            let Some(old) = before.iter().find(|b| b.key == after.key) else {
                return Err(StoreError::Corrupt(format!(
                    "segment {} is not the appointment's",
                    after.key
                )));
            };
            let unchanged = old.starts_at == after.starts_at && old.staff_id == after.staff_id;
            if unchanged {
                sqlx::query(
                    "update appointment_segments set active = true
                     where appointment_id = $1 and segment_key = $2",
                )
                .bind(change.appointment_id)
                .bind(after.key.as_str())
                .execute(&mut *tx)
                .await?;
                continue;
            }
            let from = moving_from(old, after);
            sqlx::query(
                "update appointment_segments set active = true, staff_id = $3, starts_at = $4,
                     ends_at = $5, sync_status = 'pending', attempts = 0, last_error = null,
                     next_attempt_at = null, review_reason = null, moving_from = $6,
                     moving_from_event_type_id = $7,
                     event_type_id = case when $6::timestamptz is null then null
                                          else event_type_id end,
                     updated_at = $8
                 where appointment_id = $1 and segment_key = $2",
            )
            .bind(change.appointment_id)
            .bind(after.key.as_str())
            .bind(after.staff_id.as_str())
            .bind(after.starts_at)
            .bind(after.ends_at)
            .bind(from.map(|(at, _)| at))
            .bind(from.and_then(|(_, et)| et).map(|et| et.0))
            .bind(change.now)
            .execute(&mut *tx)
            .await?;
        }
        let status_rows = sqlx::query(
            "select segment_key, sync_status, review_reason, last_error is not null as retrying
             from appointment_segments where appointment_id = $1",
        )
        .bind(change.appointment_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in &status_rows {
            let key: String = r.try_get("segment_key")?;
            let status: String = r.try_get("sync_status")?;
            if let Ok(key) = phasebook_domain::SegmentKey::parse(&key) {
                states.push(SegmentState {
                    key,
                    status: SegmentSyncStatus::parse(&status).unwrap_or(SegmentSyncStatus::Pending),
                    retrying: r.try_get("retrying")?,
                    review_reason: r.try_get("review_reason")?,
                });
            }
        }
        let sync = derive_appointment_sync(DesiredState::Booked, &states);
        let revision: i32 = sqlx::query_scalar(
            "update appointments set staff_id = $3, starts_at = $4, ends_at = $5,
                 time_zone = $6, revision = revision + 1, sync_status = $7,
                 requires_manual_review = $8, review_reason = $9, updated_at = $10
             where tenant_id = $1 and appointment_id = $2
             returning revision",
        )
        .bind(change.tenant_id)
        .bind(change.appointment_id)
        .bind(change.staff_id.as_str())
        .bind(first.starts_at)
        .bind(last.ends_at)
        .bind(&change.time_zone)
        .bind(sync.status.as_str())
        .bind(sync.requires_manual_review)
        .bind(sync.review_reason.as_deref())
        .bind(change.now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "update sync_jobs set state = 'pending', run_at = $2, updated_at = $2
             where appointment_id = $1",
        )
        .bind(change.appointment_id)
        .bind(change.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MoveOutcome::Moved { revision })
    }

    /// After the guard refused: which other appointment holds part of the new time
    /// (`None`: a live hold does).
    async fn conflict_of(&self, change: &AppointmentMove) -> StoreResult<Option<Uuid>> {
        for segment in &change.segments {
            let found: Option<Uuid> = sqlx::query_scalar(
                "select appointment_id from appointment_segments
                 where tenant_id = $1 and staff_id = $2 and active and appointment_id <> $5
                   and starts_at < $4 and ends_at > $3
                 order by starts_at limit 1",
            )
            .bind(change.tenant_id)
            .bind(segment.staff_id.as_str())
            .bind(segment.starts_at)
            .bind(segment.ends_at)
            .bind(change.appointment_id)
            .fetch_optional(&self.pool)
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}
