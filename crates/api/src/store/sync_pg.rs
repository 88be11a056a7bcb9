//! [`SyncStore`] for PostgreSQL: jobs are claimed with `for update skip locked`, so many
//! replicas can poll one database without ever leasing the same job twice.

use chrono::{DateTime, Utc};
use phasebook_domain::sync::{AppointmentSync, SegmentBooking, SegmentSyncStatus, StoredBooking};
use phasebook_domain::{CalcomUserId, EventTypeId, SegmentKey};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::pg::{db_at, db_id, get_at, get_id, get_opt_at};
use super::sync::{
    AppointmentWork, AttemptFinish, AttemptRecord, AttemptStart, BookableUpdate, BookedSegment,
    ClaimedJob, Fence, JobNext, MappedEventType, SegmentSyncView, SegmentWork, StaffCalcom,
    StoreResult, SyncHealth, SyncStore, SyncView, TenantConnection, decode_error, derive_from_rows,
    desired_state, encode_error, every_status_counted, fair_due_jobs, parse_appointment_status,
    parse_segment_status, staff_id,
};
use super::{RETRIES_ON_CONFLICT, StoreError, is_retryable};

super::sync::sync_shared!(pool = PgPool, row = PgRow);

/// The segment's last error as JSON text (the column is `jsonb`).
fn last_error(row: &PgRow) -> StoreResult<Option<String>> {
    let value: Option<serde_json::Value> = row.try_get("last_error")?;
    Ok(value.map(|v| v.to_string()))
}

fn flag(row: &PgRow, column: &str) -> StoreResult<bool> {
    Ok(row.try_get(column)?)
}

/// A job someone waits on: a change to an appointment someone just made (a resync, a
/// cancel, a move: `run_at` at the job's last change, where a retry is scheduled for later
/// than that), or a new appointment whose creator waits for the outcome.
const PG_INTERACTIVE: &str = "(state = 'pending' and run_at <= updated_at + interval '1 second' \
     and (runs > 0 or awaited))";

/// Writes the segment's booking state (inside a transaction that already checked the fence).
async fn write_segment(
    tx: &mut Transaction<'static, Postgres>,
    appointment_id: Uuid,
    segment: &SegmentWork,
) -> StoreResult<()> {
    let last_error: Option<serde_json::Value> =
        encode_error(&segment.booking.last_error).and_then(|text| serde_json::from_str(&text).ok());
    sqlx::query(
        "update appointment_segments set sync_status = $3, event_type_id = $4, \
         calcom_booking_uid = $5, calcom_booking_id = $6, attempts = $7, last_error = $8, \
         next_attempt_at = $9, review_reason = $10, updated_at = now(), \
         moving_from = $11, moving_from_event_type_id = $12 \
         where appointment_id = $1 and segment_key = $2",
    )
    .bind(appointment_id)
    .bind(segment.key.as_str())
    .bind(segment.booking.status.as_str())
    .bind(segment.booking.event_type_id)
    .bind(&segment.booking.calcom_booking_uid)
    .bind(segment.booking.calcom_booking_id)
    .bind(segment.booking.attempts)
    .bind(last_error)
    .bind(segment.booking.next_attempt_at)
    .bind(&segment.booking.review_reason)
    .bind(segment.moving_from)
    .bind(segment.moving_from_event_type_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Locks the job row if the fence still holds. The appointment's row is locked first:
/// every transaction that touches an appointment (cancel, resync, the worker's writes)
/// takes that lock before any other, so they queue instead of deadlocking.
async fn check_fence(tx: &mut Transaction<'static, Postgres>, fence: &Fence) -> StoreResult<bool> {
    sqlx::query("select 1 from appointments where appointment_id = $1 for update")
        .bind(fence.appointment_id)
        .fetch_optional(&mut **tx)
        .await?;
    let held = sqlx::query(
        "select 1 from sync_jobs where appointment_id = $1 and state = 'leased' \
         and lease_owner = $2 and runs = $3 for update",
    )
    .bind(fence.appointment_id)
    .bind(&fence.owner)
    .bind(fence.run)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.is_some())
}

/// Re-derives and stores the appointment's sync status from its segments.
async fn refresh_appointment(
    tx: &mut Transaction<'static, Postgres>,
    appointment_id: Uuid,
) -> StoreResult<Option<AppointmentSync>> {
    let Some(status) = sqlx::query_scalar::<_, String>(
        "select status from appointments where appointment_id = $1 for update",
    )
    .bind(appointment_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let rows: Vec<(String, String, Option<String>, bool)> = sqlx::query_as(
        "select segment_key, sync_status, review_reason, last_error is not null \
         from appointment_segments where appointment_id = $1 order by position",
    )
    .bind(appointment_id)
    .fetch_all(&mut **tx)
    .await?;
    let derived = derive_from_rows(&status, rows);
    sqlx::query(
        "update appointments set sync_status = $2, requires_manual_review = $3, \
         review_reason = $4, updated_at = now() where appointment_id = $1",
    )
    .bind(appointment_id)
    .bind(derived.status.as_str())
    .bind(derived.requires_manual_review)
    .bind(&derived.review_reason)
    .execute(&mut **tx)
    .await?;
    Ok(Some(derived))
}

#[async_trait::async_trait]
impl SyncStore for PgPool {
    async fn claim_jobs_fairly(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        per_tenant: i64,
        interactive_only: bool,
    ) -> StoreResult<Vec<ClaimedJob>> {
        // The due test is repeated on the locked row:
        // the fair pick reads a snapshot, and a row another worker claimed meanwhile is
        // re-checked only against conditions on the row itself.
        let fair = fair_due_jobs(PG_INTERACTIVE);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "with due as ( \
                   select j.sync_job_id, {PG_INTERACTIVE} as interactive \
                   from sync_jobs j where j.sync_job_id in ({fair}) \
                     and ((j.state = 'pending' and j.run_at <= $1) \
                       or (j.state = 'leased' and j.lease_expires_at <= $1)) \
                   for update skip locked) \
                 update sync_jobs j set state = 'leased', lease_owner = $2, \
                   lease_expires_at = $3, runs = j.runs + 1, updated_at = now() \
                 from due where j.sync_job_id = due.sync_job_id \
                 returning j.sync_job_id, j.tenant_id, j.appointment_id, j.runs, j.verify_bookings, \
                   due.interactive",
            )))
            .bind(now)
            .bind(owner)
            .bind(lease_until)
            .bind(limit)
            .bind(per_tenant.max(1))
            .bind(interactive_only)
            .fetch_all(self)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedJob {
                    sync_job_id: row.try_get("sync_job_id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    verify_bookings: row.try_get("verify_bookings")?,
                    interactive: row.try_get("interactive")?,
                    fence: Fence {
                        appointment_id: row.try_get("appointment_id")?,
                        owner: owner.to_string(),
                        run: row.try_get("runs")?,
                    },
                })
            })
            .collect()
    }

    async fn renew_lease(&self, fence: &Fence, lease_until: DateTime<Utc>) -> StoreResult<bool> {
        renew_lease(self, fence, lease_until).await
    }

    async fn release_job(&self, fence: &Fence, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query(
            "update sync_jobs set state = 'pending', run_at = $4, lease_owner = null, \
                 lease_expires_at = null, updated_at = now() where appointment_id = $1 \
                 and state = 'leased' and lease_owner = $2 and runs = $3",
        )
        .bind(fence.appointment_id)
        .bind(&fence.owner)
        .bind(fence.run)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_work(&self, job: &ClaimedJob) -> StoreResult<Option<AppointmentWork>> {
        load_work(self, job).await
    }

    async fn begin_attempt(
        &self,
        fence: &Fence,
        attempt: &AttemptStart,
        segment_status: SegmentSyncStatus,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The appointment first, as every writer does (see `check_fence`); a key-share
        // lock is enough here and lets the segments' attempts begin side by side.
        sqlx::query("select 1 from appointments where appointment_id = $1 for key share")
            .bind(fence.appointment_id)
            .fetch_optional(&mut *tx)
            .await?;
        // One statement: the fence check, the write-ahead row and the segment's status.
        let done = sqlx::query(
            "with attempt as ( \
                   insert into sync_attempts (sync_attempt_id, tenant_id, appointment_id, \
                     segment_key, operation, event_type_id, started_at, worker, \
                     calcom_booking_uid, moved_from_uid) \
                   select $4, $5, $1, $6, $7, $8, $9, $2, $11, $12 where exists (select 1 from sync_jobs j \
                     where j.appointment_id = $1 and j.state = 'leased' and j.lease_owner = $2 \
                     and j.runs = $3) \
                   returning appointment_id, segment_key) \
                 update appointment_segments s set sync_status = $10, updated_at = now() \
                 from attempt where s.appointment_id = attempt.appointment_id \
                   and s.segment_key = attempt.segment_key",
        )
        .bind(fence.appointment_id)
        .bind(&fence.owner)
        .bind(fence.run)
        .bind(attempt.sync_attempt_id)
        .bind(attempt.tenant_id)
        .bind(attempt.segment_key.as_str())
        .bind(attempt.operation)
        .bind(attempt.event_type_id)
        .bind(attempt.started_at)
        .bind(segment_status.as_str())
        .bind(&attempt.calcom_booking_uid)
        .bind(&attempt.moved_from_uid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_segment(
        &self,
        fence: &Fence,
        attempt: Option<&AttemptFinish>,
        segment: &SegmentWork,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if !check_fence(&mut tx, fence).await? {
            return Ok(false);
        }
        if let Some(finish) = attempt {
            let error = finish.error.as_ref();
            sqlx::query(
                "update sync_attempts set finished_at = $2, outcome = $3, error_kind = $4, \
                 http_status = $5, calcom_message = $6, calcom_booking_uid = $7, \
                 moved_from_uid = $8 where sync_attempt_id = $1",
            )
            .bind(finish.sync_attempt_id)
            .bind(finish.finished_at)
            .bind(finish.outcome)
            .bind(error.map(|e| e.kind.clone()))
            .bind(error.and_then(|e| e.http_status).map(i32::from))
            .bind(error.map(|e| e.message.clone()))
            .bind(&finish.calcom_booking_uid)
            .bind(&finish.moved_from_uid)
            .execute(&mut *tx)
            .await?;
        }
        write_segment(&mut tx, fence.appointment_id, segment).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn update_bookable_event_type(
        &self,
        tenant_id: Uuid,
        update: &BookableUpdate,
    ) -> StoreResult<()> {
        sqlx::query(
                "update event_maps set bookable_event_type_id = $5, resolution = $6, \
                 checked_at = $7, unverified_reason = null, updated_at = now() where tenant_id = $1 and service_id = $2 \
                 and segment_key = $3 and staff_id = $4",
            )
            .bind(tenant_id)
            .bind(&update.service_id)
            .bind(update.segment_key.as_str())
            .bind(update.staff_id.as_str())
            .bind(update.bookable.0)
            .bind(&update.resolution)
            .bind(update.checked_at)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn finish_job(
        &self,
        fence: &Fence,
        now: DateTime<Utc>,
        next: JobNext,
    ) -> StoreResult<Option<AppointmentSync>> {
        let mut tx = self.begin().await?;
        if !check_fence(&mut tx, fence).await? {
            return Ok(None);
        }
        let derived = refresh_appointment(&mut tx, fence.appointment_id).await?;
        let (state, run_at) = match next {
            JobNext::Done => ("done", None),
            JobNext::At(at) => ("pending", Some(at)),
        };
        // A request that arrived during the run (`rerun`) makes the job due again now.
        sqlx::query(
            "update sync_jobs set \
                 state = case when rerun then 'pending' else $2 end, \
                 run_at = case when rerun then least(run_at, $4) else coalesce($3, run_at) end, \
                 lease_owner = null, lease_expires_at = null, \
                 verify_bookings = verify_bookings and rerun, rerun = false, \
                 updated_at = now() where appointment_id = $1",
        )
        .bind(fence.appointment_id)
        .bind(state)
        .bind(run_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(derived)
    }

    async fn request_sync(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        now: DateTime<Utc>,
        resync: bool,
    ) -> StoreResult<Option<AppointmentSync>> {
        let mut tries = 0;
        loop {
            match request_sync_once(self, tenant_id, appointment_id, now, resync, resync).await {
                Err(err)
                    if tries < RETRIES_ON_CONFLICT
                        && matches!(&err, StoreError::Database(e) if is_retryable(e)) =>
                {
                    tries += 1;
                    tracing::warn!(appointment_id = %appointment_id, error = %err, "resync request collided with another transaction; trying again");
                }
                other => return other,
            }
        }
    }

    async fn appointment_sync(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<AppointmentSync>> {
        appointment_sync(self, tenant_id, appointment_id).await
    }

    async fn sync_view(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<SyncView>> {
        sync_view(self, tenant_id, appointment_id).await
    }

    async fn sync_health(&self, tenant_id: Uuid, now: DateTime<Utc>) -> StoreResult<SyncHealth> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select sync_status, count(*) from appointments where tenant_id = $1 \
                 group by sync_status",
        )
        .bind(tenant_id)
        .fetch_all(self)
        .await?;
        let since = now - chrono::TimeDelta::hours(24);
        let (total, failed): (i64, i64) = sqlx::query_as(
            "select count(*), count(*) filter (where outcome in ('failed', 'unknown')) \
                 from sync_attempts where tenant_id = $1 and started_at >= $2 \
                 and finished_at is not null",
        )
        .bind(tenant_id)
        .bind(since)
        .fetch_one(self)
        .await?;
        let (pending, leased, oldest): (i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "select count(*) filter (where state = 'pending'), \
                 count(*) filter (where state = 'leased'), \
                 min(run_at) filter (where state <> 'done' and run_at <= $2) \
                 from sync_jobs where tenant_id = $1",
        )
        .bind(tenant_id)
        .bind(now)
        .fetch_one(self)
        .await?;
        let review: i64 = sqlx::query_scalar(
            "select count(*) from appointments where tenant_id = $1 \
                 and requires_manual_review",
        )
        .bind(tenant_id)
        .fetch_one(self)
        .await?;
        let last_verified_at: Option<DateTime<Utc>> =
            sqlx::query_scalar("select verified_at from tenants where tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(self)
                .await?
                .flatten();
        Ok(SyncHealth {
            appointments_by_status: every_status_counted(counts),
            success_rate_24h: (total > 0).then(|| (total - failed) as f64 / total as f64),
            attempts_24h: total,
            failed_attempts_24h: failed,
            oldest_pending_job_age_seconds: oldest
                .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
            jobs_pending: pending,
            jobs_leased: leased,
            appointments_needing_review: review,
            last_verified_at,
        })
    }

    async fn claim_verification(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<TenantConnection>> {
        claim_verification(self, since, now).await
    }

    async fn synced_bookings_between(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredBooking>> {
        synced_bookings_between(self, tenant_id, from, to).await
    }

    async fn request_verification(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tries = 0;
        loop {
            match request_sync_once(self, tenant_id, appointment_id, now, false, true).await {
                Err(err)
                    if tries < RETRIES_ON_CONFLICT
                        && matches!(&err, StoreError::Database(e) if is_retryable(e)) =>
                {
                    tries += 1
                }
                other => return other.map(|found| found.is_some()),
            }
        }
    }

    async fn review_error_kinds(
        &self,
        tenant_id: Uuid,
    ) -> StoreResult<Vec<super::sync::ReviewErrorKind>> {
        sqlx::query_as(
            "select s.appointment_id, s.last_error->>'kind' from appointment_segments s \
                 join appointments a on a.appointment_id = s.appointment_id \
                 where s.tenant_id = $1 and a.status = 'booked' and s.sync_status = 'needs_review'",
        )
        .bind(tenant_id)
        .fetch_all(self)
        .await
        .map_err(StoreError::from)
    }

    async fn webhook_secret(&self, tenant_id: Uuid) -> StoreResult<Option<String>> {
        webhook_secret(self, tenant_id).await
    }

    async fn find_booked_segment(
        &self,
        tenant_id: Uuid,
        booking_uid: Option<&str>,
        booking_id: Option<i64>,
    ) -> StoreResult<Option<BookedSegment>> {
        find_booked_segment(self, tenant_id, booking_uid, booking_id).await
    }

    async fn review_segment(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        segment_key: &SegmentKey,
        reason: &str,
        replacement: Option<(&str, Option<i64>)>,
        _now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let (uid, id) = match replacement {
            Some((uid, id)) => (Some(uid), id),
            None => (None, None),
        };
        sqlx::query(
                "update appointment_segments set sync_status = 'needs_review', review_reason = $4, \
                 calcom_booking_uid = coalesce($5, calcom_booking_uid), \
                 calcom_booking_id = case when $5::text is null then calcom_booking_id else $6 end, \
                 next_attempt_at = null, updated_at = now() \
                 where tenant_id = $1 and appointment_id = $2 and segment_key = $3",
            )
            .bind(tenant_id)
            .bind(appointment_id)
            .bind(segment_key.as_str())
            .bind(reason)
            .bind(uid)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        refresh_appointment(&mut tx, appointment_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_segment_cancelled(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        segment_key: &SegmentKey,
        _now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "update appointment_segments set sync_status = 'cancelled', \
                 next_attempt_at = null, updated_at = now() \
                 where tenant_id = $1 and appointment_id = $2 and segment_key = $3",
        )
        .bind(tenant_id)
        .bind(appointment_id)
        .bind(segment_key.as_str())
        .execute(&mut *tx)
        .await?;
        refresh_appointment(&mut tx, appointment_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outstanding_jobs(&self, now: DateTime<Utc>) -> StoreResult<(i64, i64)> {
        sqlx::query_as(
            "select count(*), count(*) filter (where (state = 'pending' and run_at <= $1) \
                 or (state = 'leased' and lease_expires_at <= $1)) \
                 from sync_jobs where state <> 'done'",
        )
        .bind(now)
        .fetch_one(self)
        .await
        .map_err(StoreError::from)
    }

    async fn next_run_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        next_run_at(self).await
    }
}

/// One try of [`SyncStore::request_sync`]: `resync` starts over what failed or waits for
/// a person, `verify` asks the run to check booked segments in Cal.com.
async fn request_sync_once(
    pool: &PgPool,
    tenant_id: Uuid,
    appointment_id: Uuid,
    now: DateTime<Utc>,
    resync: bool,
    verify: bool,
) -> StoreResult<Option<AppointmentSync>> {
    let mut tx = pool.begin().await?;
    let owned = sqlx::query_scalar::<_, String>(
        "select status from appointments where appointment_id = $1 and tenant_id = $2 \
         for update",
    )
    .bind(appointment_id)
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(status) = owned else {
        return Ok(None);
    };
    if resync {
        // Start over what failed or waits for a person; a cancelled appointment's
        // segments go back to cancelling, a booked one's to pending.
        sqlx::query(sqlx::AssertSqlSafe(super::sync::reset_on_resync_sql(
            "$2", "now()",
        )))
        .bind(appointment_id)
        .bind(status == "cancelled")
        .execute(&mut *tx)
        .await?;
    }
    // A job already leased keeps its lease: the holder finishes, and the flag or
    // state it leaves behind is re-read on the next run.
    sqlx::query(
        "insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at, \
         verify_bookings, created_at, updated_at) \
         values ($1, $2, $3, 'pending', $4, $5, now(), now()) \
         on conflict (appointment_id) do update set \
           state = case when sync_jobs.state = 'leased' then 'leased' else 'pending' end, \
           rerun = sync_jobs.state = 'leased', \
           run_at = $4, verify_bookings = sync_jobs.verify_bookings or $5, \
           updated_at = now()",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(appointment_id)
    .bind(now)
    .bind(verify)
    .execute(&mut *tx)
    .await?;
    let derived = refresh_appointment(&mut tx, appointment_id).await?;
    tx.commit().await?;
    Ok(derived)
}
