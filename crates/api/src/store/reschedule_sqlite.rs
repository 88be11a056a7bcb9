//! [`RescheduleStore`] on SQLite: `begin immediate` takes the write lock before the new
//! time is checked against every other active segment and live hold, so nothing slips in
//! between the check and the move.

use async_trait::async_trait;
use phasebook_domain::AppointmentStatus;
use phasebook_domain::sync::reschedule::may_reschedule;
use phasebook_domain::sync::{
    DesiredState, SegmentState, SegmentSyncStatus, derive_appointment_sync,
};
use sqlx::Row;

use super::reschedule::{
    AppointmentMove, MoveOutcome, RescheduleStore, SegmentBefore, moving_from,
};
use super::sqlite::{SqliteStore, from_ms, parse_uuid, to_ms, uuid_text};
use super::{StoreError, StoreResult, parse_appointment_status};

use super::sqlite::{get_at, get_opt_at};

super::reschedule::segment_before_reader!(row = sqlx::sqlite::SqliteRow);

#[async_trait]
impl RescheduleStore for SqliteStore {
    async fn move_appointment(&self, change: &AppointmentMove) -> StoreResult<MoveOutcome> {
        let (Some(first), Some(last)) = (change.segments.first(), change.segments.last()) else {
            return Err(StoreError::Corrupt("a move needs segments".into()));
        };
        let tenant = uuid_text(change.tenant_id);
        let id = uuid_text(change.appointment_id);
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let row = sqlx::query(
            "select status, starts_at from appointments
             where tenant_id = ?1 and appointment_id = ?2",
        )
        .bind(&tenant)
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(MoveOutcome::NotFound);
        };
        let status: AppointmentStatus = parse_appointment_status(row.try_get("status")?)?;
        if let Err(refusal) =
            may_reschedule(status, from_ms(row.try_get("starts_at")?)?, change.now)
        {
            return Ok(MoveOutcome::Refused(refusal));
        }
        // A reschedule waits for a running sync rather than superseding it (see the
        // PostgreSQL store); a lease that expired belongs to no one any more.
        let running: Option<bool> = sqlx::query_scalar(
            "select state = 'leased' and lease_expires_at > ?2 from sync_jobs
             where appointment_id = ?1",
        )
        .bind(&id)
        .bind(to_ms(change.now))
        .fetch_optional(&mut *tx)
        .await?;
        if running == Some(true) {
            return Ok(MoveOutcome::SyncRunning);
        }
        if let Some(hold_id) = change.hold_id {
            sqlx::query(super::reschedule::TAKE_HOLD)
                .bind(uuid_text(hold_id))
                .bind(&id)
                .bind(to_ms(change.now))
                .bind(&tenant)
                .execute(&mut *tx)
                .await?;
        }
        for segment in &change.segments {
            let conflict: Option<String> = sqlx::query_scalar(
                "select appointment_id from appointment_segments
                 where tenant_id = ?1 and staff_id = ?2 and active = 1 and appointment_id <> ?5
                   and starts_at < ?4 and ends_at > ?3
                 order by starts_at limit 1",
            )
            .bind(&tenant)
            .bind(segment.staff_id.as_str())
            .bind(to_ms(segment.starts_at))
            .bind(to_ms(segment.ends_at))
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(conflict) = conflict {
                return Err(StoreError::DoubleBooking {
                    conflicting_appointment_id: Some(parse_uuid(&conflict)?),
                });
            }
        }
        if super::holds_sqlite::live_hold_overlaps(
            &mut tx,
            change.tenant_id,
            &change.segments,
            change.now,
        )
        .await?
        {
            return Err(StoreError::DoubleBooking {
                conflicting_appointment_id: None,
            });
        }
        let before = sqlx::query(super::reschedule::SEGMENTS_BEFORE)
            .bind(&tenant)
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(segment_before)
            .collect::<StoreResult<Vec<_>>>()?;
        for after in &change.segments {
            let Some(old) = before.iter().find(|b| b.key == after.key) else {
                return Err(StoreError::Corrupt(format!(
                    "segment {} is not the appointment's",
                    after.key
                )));
            };
            if old.starts_at == after.starts_at && old.staff_id == after.staff_id {
                continue;
            }
            let from = moving_from(old, after);
            sqlx::query(
                "update appointment_segments set staff_id = ?3, starts_at = ?4, ends_at = ?5,
                     sync_status = 'pending', attempts = 0, last_error = null,
                     next_attempt_at = null, review_reason = null, moving_from = ?6,
                     moving_from_event_type_id = ?7,
                     event_type_id = case when ?6 is null then null else event_type_id end,
                     updated_at = ?8
                 where appointment_id = ?1 and segment_key = ?2",
            )
            .bind(&id)
            .bind(after.key.as_str())
            .bind(after.staff_id.as_str())
            .bind(to_ms(after.starts_at))
            .bind(to_ms(after.ends_at))
            .bind(from.map(|(at, _)| to_ms(at)))
            .bind(from.and_then(|(_, et)| et).map(|et| et.0))
            .bind(to_ms(change.now))
            .execute(&mut *tx)
            .await?;
        }
        let status_rows = sqlx::query(
            "select segment_key, sync_status, review_reason, last_error is not null as retrying
             from appointment_segments where appointment_id = ?1",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let mut states = Vec::new();
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
            "update appointments set staff_id = ?3, starts_at = ?4, ends_at = ?5,
                 time_zone = ?6, revision = revision + 1, sync_status = ?7,
                 requires_manual_review = ?8, review_reason = ?9, updated_at = ?10
             where tenant_id = ?1 and appointment_id = ?2
             returning revision",
        )
        .bind(&tenant)
        .bind(&id)
        .bind(change.staff_id.as_str())
        .bind(to_ms(first.starts_at))
        .bind(to_ms(last.ends_at))
        .bind(&change.time_zone)
        .bind(sync.status.as_str())
        .bind(sync.requires_manual_review)
        .bind(sync.review_reason.as_deref())
        .bind(to_ms(change.now))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "update sync_jobs set state = 'pending', run_at = ?2, updated_at = ?2
             where appointment_id = ?1",
        )
        .bind(&id)
        .bind(to_ms(change.now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MoveOutcome::Moved { revision })
    }
}
