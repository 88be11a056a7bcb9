//! [`SyncStore`] for SQLite: ids are TEXT, instants INTEGER unix milliseconds. A claim is a
//! single `update … returning` (SQLite runs one writer at a time, so it is atomic), and
//! every read-then-write transaction starts `immediate` so it never has to upgrade a read
//! lock under contention.

use chrono::{DateTime, Utc};
use phasebook_domain::sync::{AppointmentSync, SegmentBooking, SegmentSyncStatus, StoredBooking};
use phasebook_domain::{CalcomUserId, EventTypeId, SegmentKey};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::sqlite::{db_at, db_id, from_ms, get_at, get_id, get_opt_at};
use super::sync::{
    AppointmentWork, AttemptFinish, AttemptRecord, AttemptStart, BookableUpdate, BookedSegment,
    ClaimedJob, Fence, JobNext, MappedEventType, SegmentSyncView, SegmentWork, StaffCalcom,
    StoreError, StoreResult, SyncHealth, SyncStore, SyncView, TenantConnection, decode_error,
    derive_from_rows, desired_state, encode_error, every_status_counted, fair_due_jobs,
    parse_appointment_status, parse_segment_status, staff_id,
};

/// A job someone waits on (see the PostgreSQL store); instants are milliseconds here.
const SQLITE_INTERACTIVE: &str =
    "(state = 'pending' and run_at <= updated_at + 1000 and (runs > 0 or awaited))";

super::sync::sync_shared!(pool = SqlitePool, row = SqliteRow);

/// The segment's last error as JSON text (the column is text).
fn last_error(row: &SqliteRow) -> StoreResult<Option<String>> {
    Ok(row.try_get("last_error")?)
}

fn flag(row: &SqliteRow, column: &str) -> StoreResult<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

async fn write_segment(
    tx: &mut Transaction<'static, Sqlite>,
    appointment_id: Uuid,
    segment: &SegmentWork,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "update appointment_segments set sync_status = ?3, event_type_id = ?4, \
         calcom_booking_uid = ?5, calcom_booking_id = ?6, attempts = ?7, last_error = ?8, \
         next_attempt_at = ?9, review_reason = ?10, updated_at = ?11, \
         moving_from = ?12, moving_from_event_type_id = ?13 \
         where appointment_id = ?1 and segment_key = ?2",
    )
    .bind(db_id(appointment_id))
    .bind(segment.key.as_str())
    .bind(segment.booking.status.as_str())
    .bind(segment.booking.event_type_id)
    .bind(&segment.booking.calcom_booking_uid)
    .bind(segment.booking.calcom_booking_id)
    .bind(segment.booking.attempts)
    .bind(encode_error(&segment.booking.last_error))
    .bind(segment.booking.next_attempt_at.map(db_at))
    .bind(&segment.booking.review_reason)
    .bind(db_at(now))
    .bind(segment.moving_from.map(db_at))
    .bind(segment.moving_from_event_type_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn check_fence(tx: &mut Transaction<'static, Sqlite>, fence: &Fence) -> StoreResult<bool> {
    let held = sqlx::query(
        "select 1 from sync_jobs where appointment_id = ?1 and state = 'leased' \
         and lease_owner = ?2 and runs = ?3",
    )
    .bind(db_id(fence.appointment_id))
    .bind(&fence.owner)
    .bind(fence.run)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.is_some())
}

async fn refresh_appointment(
    tx: &mut Transaction<'static, Sqlite>,
    appointment_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Option<AppointmentSync>> {
    let Some(status) = sqlx::query_scalar::<_, String>(
        "select status from appointments where appointment_id = ?1",
    )
    .bind(db_id(appointment_id))
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let rows: Vec<(String, String, Option<String>, bool)> = sqlx::query_as(
        "select segment_key, sync_status, review_reason, last_error is not null \
         from appointment_segments where appointment_id = ?1 order by position",
    )
    .bind(db_id(appointment_id))
    .fetch_all(&mut **tx)
    .await?;
    let derived = derive_from_rows(&status, rows);
    sqlx::query(
        "update appointments set sync_status = ?2, requires_manual_review = ?3, \
         review_reason = ?4, updated_at = ?5 where appointment_id = ?1",
    )
    .bind(db_id(appointment_id))
    .bind(derived.status.as_str())
    .bind(derived.requires_manual_review)
    .bind(&derived.review_reason)
    .bind(db_at(now))
    .execute(&mut **tx)
    .await?;
    Ok(Some(derived))
}

#[async_trait::async_trait]
impl SyncStore for SqlitePool {
    async fn claim_jobs_fairly(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        per_tenant: i64,
        interactive_only: bool,
    ) -> StoreResult<Vec<ClaimedJob>> {
        // Which jobs are interactive (see the PostgreSQL claim) is read first, in the
        // same write transaction: SQLite's `returning` sees only the new row.
        let fair = fair_due_jobs(SQLITE_INTERACTIVE);
        let mut tx = self.begin_with("begin immediate").await?;
        let prompt: std::collections::HashSet<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select sync_job_id from sync_jobs where sync_job_id in ({fair}) \
                 and {SQLITE_INTERACTIVE} and $3 is not null"
            )))
            .bind(db_at(now))
            .bind(owner)
            .bind(db_at(lease_until))
            .bind(limit)
            .bind(per_tenant.max(1))
            .bind(interactive_only)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "update sync_jobs set state = 'leased', lease_owner = $2, lease_expires_at = $3, \
                 runs = runs + 1, updated_at = $1 \
                 where sync_job_id in ({fair}) \
                 returning sync_job_id, tenant_id, appointment_id, runs, verify_bookings",
        )))
        .bind(db_at(now))
        .bind(owner)
        .bind(db_at(lease_until))
        .bind(limit)
        .bind(per_tenant.max(1))
        .bind(interactive_only)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedJob {
                    sync_job_id: get_id(row, "sync_job_id")?,
                    tenant_id: get_id(row, "tenant_id")?,
                    interactive: prompt.contains(&row.try_get::<String, _>("sync_job_id")?),
                    verify_bookings: row.try_get::<i64, _>("verify_bookings")? != 0,
                    fence: Fence {
                        appointment_id: get_id(row, "appointment_id")?,
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
            "update sync_jobs set state = 'pending', run_at = ?4, lease_owner = null, \
                 lease_expires_at = null, updated_at = ?4 where appointment_id = ?1 \
                 and state = 'leased' and lease_owner = ?2 and runs = ?3",
        )
        .bind(db_id(fence.appointment_id))
        .bind(&fence.owner)
        .bind(fence.run)
        .bind(db_at(now))
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
        let mut tx = self.begin_with("begin immediate").await?;
        if !check_fence(&mut tx, fence).await? {
            return Ok(false);
        }
        sqlx::query(
            "insert into sync_attempts (sync_attempt_id, tenant_id, appointment_id, \
                 segment_key, operation, event_type_id, started_at, worker, \
                 calcom_booking_uid, moved_from_uid) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(db_id(attempt.sync_attempt_id))
        .bind(db_id(attempt.tenant_id))
        .bind(db_id(attempt.appointment_id))
        .bind(attempt.segment_key.as_str())
        .bind(attempt.operation)
        .bind(attempt.event_type_id)
        .bind(db_at(attempt.started_at))
        .bind(&fence.owner)
        .bind(&attempt.calcom_booking_uid)
        .bind(&attempt.moved_from_uid)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "update appointment_segments set sync_status = ?3, updated_at = ?4 \
                 where appointment_id = ?1 and segment_key = ?2",
        )
        .bind(db_id(attempt.appointment_id))
        .bind(attempt.segment_key.as_str())
        .bind(segment_status.as_str())
        .bind(db_at(attempt.started_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn save_segment(
        &self,
        fence: &Fence,
        attempt: Option<&AttemptFinish>,
        segment: &SegmentWork,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_with("begin immediate").await?;
        if !check_fence(&mut tx, fence).await? {
            return Ok(false);
        }
        if let Some(finish) = attempt {
            let error = finish.error.as_ref();
            sqlx::query(
                "update sync_attempts set finished_at = ?2, outcome = ?3, error_kind = ?4, \
                 http_status = ?5, calcom_message = ?6, calcom_booking_uid = ?7, \
                 moved_from_uid = ?8 \
                 where sync_attempt_id = ?1",
            )
            .bind(db_id(finish.sync_attempt_id))
            .bind(db_at(finish.finished_at))
            .bind(finish.outcome)
            .bind(error.map(|e| e.kind.clone()))
            .bind(error.and_then(|e| e.http_status).map(i32::from))
            .bind(error.map(|e| e.message.clone()))
            .bind(&finish.calcom_booking_uid)
            .bind(&finish.moved_from_uid)
            .execute(&mut *tx)
            .await?;
        }
        write_segment(
            &mut tx,
            fence.appointment_id,
            segment,
            attempt.map_or_else(Utc::now, |f| f.finished_at),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn update_bookable_event_type(
        &self,
        tenant_id: Uuid,
        update: &BookableUpdate,
    ) -> StoreResult<()> {
        sqlx::query(
                "update event_maps set bookable_event_type_id = ?5, resolution = ?6, \
                 checked_at = ?7, unverified_reason = null, updated_at = ?7 where tenant_id = ?1 and service_id = ?2 \
                 and segment_key = ?3 and staff_id = ?4",
            )
            .bind(db_id(tenant_id))
            .bind(&update.service_id)
            .bind(update.segment_key.as_str())
            .bind(update.staff_id.as_str())
            .bind(update.bookable.0)
            .bind(&update.resolution)
            .bind(db_at(update.checked_at))
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
        let mut tx = self.begin_with("begin immediate").await?;
        if !check_fence(&mut tx, fence).await? {
            return Ok(None);
        }
        let derived = refresh_appointment(&mut tx, fence.appointment_id, now).await?;
        let (state, run_at) = match next {
            JobNext::Done => ("done", None),
            JobNext::At(at) => ("pending", Some(db_at(at))),
        };
        // A request that arrived during the run (`rerun`) makes the job due again now.
        sqlx::query(
            "update sync_jobs set \
                 state = case when rerun then 'pending' else ?2 end, \
                 run_at = case when rerun then min(run_at, ?4) else coalesce(?3, run_at) end, \
                 lease_owner = null, lease_expires_at = null, \
                 verify_bookings = verify_bookings and rerun, rerun = 0, \
                 updated_at = ?4 where appointment_id = ?1",
        )
        .bind(db_id(fence.appointment_id))
        .bind(state)
        .bind(run_at)
        .bind(db_at(now))
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
        request_sync_once(self, tenant_id, appointment_id, now, resync, resync).await
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
        request_sync_once(self, tenant_id, appointment_id, now, false, true)
            .await
            .map(|found| found.is_some())
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
        let tenant = db_id(tenant_id);
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select sync_status, count(*) from appointments where tenant_id = ?1 \
                 group by sync_status",
        )
        .bind(&tenant)
        .fetch_all(self)
        .await?;
        let since = now - chrono::TimeDelta::hours(24);
        let (total, failed): (i64, i64) = sqlx::query_as(
            "select count(*), coalesce(sum(outcome in ('failed', 'unknown')), 0) \
                 from sync_attempts where tenant_id = ?1 and started_at >= ?2 \
                 and finished_at is not null",
        )
        .bind(&tenant)
        .bind(db_at(since))
        .fetch_one(self)
        .await?;
        let (pending, leased, oldest): (i64, i64, Option<i64>) = sqlx::query_as(
            "select coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'leased'), 0), \
                 min(case when state <> 'done' and run_at <= ?2 then run_at end) \
                 from sync_jobs where tenant_id = ?1",
        )
        .bind(&tenant)
        .bind(db_at(now))
        .fetch_one(self)
        .await?;
        let review: i64 = sqlx::query_scalar(
            "select count(*) from appointments where tenant_id = ?1 \
                 and requires_manual_review = 1",
        )
        .bind(&tenant)
        .fetch_one(self)
        .await?;
        let verified: Option<i64> =
            sqlx::query_scalar("select verified_at from tenants where tenant_id = ?1")
                .bind(&tenant)
                .fetch_optional(self)
                .await?
                .flatten();
        Ok(SyncHealth {
            appointments_by_status: every_status_counted(counts),
            success_rate_24h: (total > 0).then(|| (total - failed) as f64 / total as f64),
            attempts_24h: total,
            failed_attempts_24h: failed,
            oldest_pending_job_age_seconds: oldest
                .map(|at| (db_at(now) - at).max(0) as f64 / 1000.0),
            jobs_pending: pending,
            jobs_leased: leased,
            appointments_needing_review: review,
            last_verified_at: verified.map(from_ms).transpose()?,
        })
    }

    async fn review_error_kinds(
        &self,
        tenant_id: Uuid,
    ) -> StoreResult<Vec<super::sync::ReviewErrorKind>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "select s.appointment_id, json_extract(s.last_error, '$.kind') \
                 from appointment_segments s \
                 join appointments a on a.appointment_id = s.appointment_id \
                 where s.tenant_id = ?1 and a.status = 'booked' and s.sync_status = 'needs_review'",
        )
        .bind(db_id(tenant_id))
        .fetch_all(self)
        .await?;
        rows.into_iter()
            .map(|(appointment, kind)| {
                Uuid::parse_str(&appointment)
                    .map(|id| (id, kind))
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
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
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_with("begin immediate").await?;
        let (uid, booking_id) = match replacement {
            Some((uid, booking_id)) => (Some(uid), booking_id),
            None => (None, None),
        };
        sqlx::query(
            "update appointment_segments set sync_status = 'needs_review', review_reason = ?4, \
                 calcom_booking_uid = coalesce(?5, calcom_booking_uid), \
                 calcom_booking_id = case when ?5 is null then calcom_booking_id else ?6 end, \
                 next_attempt_at = null, updated_at = ?7 \
                 where tenant_id = ?1 and appointment_id = ?2 and segment_key = ?3",
        )
        .bind(db_id(tenant_id))
        .bind(db_id(appointment_id))
        .bind(segment_key.as_str())
        .bind(reason)
        .bind(uid)
        .bind(booking_id)
        .bind(db_at(now))
        .execute(&mut *tx)
        .await?;
        refresh_appointment(&mut tx, appointment_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_segment_cancelled(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        segment_key: &SegmentKey,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_with("begin immediate").await?;
        sqlx::query(
            "update appointment_segments set sync_status = 'cancelled', \
                 next_attempt_at = null, updated_at = ?4 \
                 where tenant_id = ?1 and appointment_id = ?2 and segment_key = ?3",
        )
        .bind(db_id(tenant_id))
        .bind(db_id(appointment_id))
        .bind(segment_key.as_str())
        .bind(db_at(now))
        .execute(&mut *tx)
        .await?;
        refresh_appointment(&mut tx, appointment_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outstanding_jobs(&self, now: DateTime<Utc>) -> StoreResult<(i64, i64)> {
        sqlx::query_as(
            "select count(*), coalesce(sum((state = 'pending' and run_at <= ?1) \
                 or (state = 'leased' and lease_expires_at <= ?1)), 0) \
                 from sync_jobs where state <> 'done'",
        )
        .bind(db_at(now))
        .fetch_one(self)
        .await
        .map_err(StoreError::from)
    }

    async fn next_run_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        next_run_at(self).await
    }
}

/// [`SyncStore::request_sync`]: `resync` starts over what failed or waits for a person,
/// `verify` asks the run to check booked segments in Cal.com.
async fn request_sync_once(
    pool: &SqlitePool,
    tenant_id: Uuid,
    appointment_id: Uuid,
    now: DateTime<Utc>,
    resync: bool,
    verify: bool,
) -> StoreResult<Option<AppointmentSync>> {
    let mut tx = pool.begin_with("begin immediate").await?;
    let owned = sqlx::query_scalar::<_, String>(
        "select status from appointments where appointment_id = ?1 and tenant_id = ?2",
    )
    .bind(db_id(appointment_id))
    .bind(db_id(tenant_id))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(status) = owned else {
        return Ok(None);
    };
    if resync {
        // Start over what failed or waits for a person; a cancelled appointment's
        // segments go back to cancelling, a booked one's to pending.
        sqlx::query(sqlx::AssertSqlSafe(super::sync::reset_on_resync_sql(
            "$3", "$2",
        )))
        .bind(db_id(appointment_id))
        .bind(db_at(now))
        .bind(status == "cancelled")
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at, \
         verify_bookings, created_at, updated_at) \
         values (?1, ?2, ?3, 'pending', ?4, ?5, ?4, ?4) \
         on conflict (appointment_id) do update set \
           state = case when sync_jobs.state = 'leased' then 'leased' else 'pending' end, \
           rerun = sync_jobs.state = 'leased', \
           run_at = ?4, verify_bookings = sync_jobs.verify_bookings or ?5, \
           updated_at = ?4",
    )
    .bind(db_id(Uuid::now_v7()))
    .bind(db_id(tenant_id))
    .bind(db_id(appointment_id))
    .bind(db_at(now))
    .bind(verify)
    .execute(&mut *tx)
    .await?;
    let derived = refresh_appointment(&mut tx, appointment_id, now).await?;
    tx.commit().await?;
    Ok(derived)
}
