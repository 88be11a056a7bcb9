//! The PostgreSQL store: the production backend. The double-booking guard is the
//! exclusion constraint `appointment_segments_no_double_booking`; this module turns its
//! violation (SQLSTATE 23P01) into a conflict naming the appointment that holds the time.
//! Everything the two backends share is written once in `shared.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::service_change::{repointed_map_reason, resized_map_reason};
use phasebook_domain::{
    AppointmentStatus, CalcomUserId, Customer, SegmentSpec, Service, ServiceId, StaffId,
};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::secrets::SecretField;

use super::shared::{self, APPOINTMENT_COLUMNS, SEGMENT_COLUMNS};
use super::{
    ACQUIRE_TIMEOUT, ApiKeyOwner, Appointment, AppointmentQuery, AppointmentSegment,
    IDEMPOTENCY_STALE_IN_FLIGHT, IDEMPOTENCY_TTL, IdempotencyClaim, IdempotentResponse, KeyPin,
    KeyedAnswer, NewApiKey, NewAppointment, NewTenant, RETRIES_ON_CONFLICT, StaffMember, Store,
    StoreError, StoreResult, StoredService, is_retryable, parse_appointment_status,
    parse_appointment_sync_status, parse_role, parse_segment_key, parse_segment_sync_status,
    parse_service_id, parse_staff_id, rebuild_customer, rebuild_service,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

const EXCLUSION_VIOLATION: &str = "23P01";

/// A pooled connection idle this long is pinged before it is handed out again.
const PING_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

// The codec of `shared.rs`: PostgreSQL stores ids and instants natively.
pub(crate) fn db_id(id: Uuid) -> Uuid {
    id
}

pub(crate) fn db_at(at: DateTime<Utc>) -> DateTime<Utc> {
    at
}

pub(crate) fn get_id(row: &PgRow, column: &str) -> StoreResult<Uuid> {
    Ok(row.try_get(column)?)
}

pub(crate) fn get_at(row: &PgRow, column: &str) -> StoreResult<DateTime<Utc>> {
    Ok(row.try_get(column)?)
}

pub(crate) fn get_opt_at(row: &PgRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(row.try_get(column)?)
}

pub(crate) fn get_json(row: &PgRow, column: &str) -> StoreResult<Option<serde_json::Value>> {
    Ok(row.try_get(column)?)
}

pub(crate) fn get_opt_id(row: &PgRow, column: &str) -> StoreResult<Option<Uuid>> {
    Ok(row.try_get(column)?)
}

shared::dialect_store!(
    store = PgStore,
    row = PgRow,
    backend = "postgres",
    db = Postgres,
    for_update = " for update"
);

super::event_maps::event_map_store!(store = PgStore, row = PgRow);

super::booking_context::booking_context_store!(store = PgStore, row = PgRow, db = Postgres);

super::keys::key_store!(store = PgStore, for_update = " for update");

super::console::console_store!(
    store = PgStore,
    attempts_by_hour = super::console::PG_ATTEMPTS_BY_HOUR
);

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection it hands out by default: one more round trip
            // before each statement. A connection in steady use is known to be alive; one
            // that sat idle (the server may have restarted) is still checked.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// After an exclusion violation: which active appointment holds the time now.
    pub(crate) async fn find_conflict(
        &self,
        appointment: &NewAppointment,
    ) -> StoreResult<Option<Uuid>> {
        for segment in &appointment.segments {
            let found: Option<Uuid> = sqlx::query_scalar(
                "select appointment_id from appointment_segments
                 where tenant_id = $1 and staff_id = $2 and active
                   and starts_at < $4 and ends_at > $3
                 order by starts_at limit 1",
            )
            .bind(appointment.tenant_id)
            .bind(segment.staff_id.as_str())
            .bind(segment.starts_at)
            .bind(segment.ends_at)
            .fetch_optional(&self.pool)
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn insert_appointment(
        &self,
        a: &NewAppointment,
        idempotency: Option<KeyedAnswer<'_>>,
    ) -> Result<bool, sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        insert_appointment_rows(&mut connection, a, idempotency.map(KeyPin::Unclaimed)).await
    }

    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// False when the key is taken: then nothing is written.
    async fn create_appointment_rows(
        &self,
        appointment: &NewAppointment,
        idempotency: Option<KeyedAnswer<'_>>,
    ) -> StoreResult<bool> {
        let mut tries = 0;
        loop {
            match self.insert_appointment(appointment, idempotency).await {
                Ok(written) => return Ok(written),
                Err(err)
                    if err
                        .as_database_error()
                        .and_then(|e| e.code())
                        .is_some_and(|code| code == EXCLUSION_VIOLATION) =>
                {
                    return Err(StoreError::DoubleBooking {
                        conflicting_appointment_id: self.find_conflict(appointment).await?,
                    });
                }
                // Concurrent overlapping inserts can deadlock on the guard's index instead
                // of meeting the constraint; run again, the winner is committed by then.
                Err(err) if tries < RETRIES_ON_CONFLICT && is_retryable(&err) => tries += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// The inserts of one appointment inside the caller's transaction; the exclusion constraint
/// (through `staff_busy`) refuses overlaps with active appointments and live holds. False,
/// with nothing written, when `idempotency` claims a key that is taken.
pub(crate) async fn insert_appointment_rows(
    tx: &mut sqlx::PgConnection,
    a: &NewAppointment,
    idempotency: Option<KeyPin<'_>>,
) -> Result<bool, sqlx::Error> {
    let (Some(starts_at), Some(ends_at)) = (a.starts_at(), a.ends_at()) else {
        return Err(sqlx::Error::Protocol(
            "an appointment needs segments".into(),
        ));
    };
    let keys: Vec<&str> = a.segments.iter().map(|s| s.key.as_str()).collect();
    let positions: Vec<i32> = (0..a.segments.len() as i32).collect();
    let staff: Vec<&str> = a.segments.iter().map(|s| s.staff_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = a.segments.iter().map(|s| s.starts_at).collect();
    let ends: Vec<DateTime<Utc>> = a.segments.iter().map(|s| s.ends_at).collect();
    let (key, response, claim_hash) = match idempotency {
        None => (None, None, None),
        Some(KeyPin::Claimed(key, response)) => (Some(key), Some(response), None),
        Some(KeyPin::Unclaimed(answer)) => (
            Some(answer.key),
            Some(answer.response),
            Some(answer.request_hash),
        ),
    };
    // One statement for the key, the appointment, its segments, its sync job: one round
    // trip, atomic on its own (no BEGIN/COMMIT needed outside a hold's transaction). A
    // claimed key (`$24`) gates every insert, so a taken key writes nothing; a key claimed
    // before is completed instead. The exclusion constraint still checks each segment
    // row, and the foreign keys are checked at the end of the statement.
    let written: i64 = sqlx::query_scalar(concat!(
        "with claim as (
             insert into idempotency_keys (tenant_id, idempotency_key, request_hash, state,
                 created_at, expires_at, response_status, response_body, appointment_id)
             select $2, $19, $24, 'completed', $12, $25, $20, $21, $1
             where $24::text is not null",
        shared::idempotency_takeover!("$12", "$26"),
        " returning 1),
         go as (select where $24::text is null or exists (select from claim)),
         appointment as (
             insert into appointments (appointment_id, tenant_id, service_id, staff_id,
                 starts_at, ends_at, time_zone, status, customer_name, customer_email,
                 customer_phone, notes, sync_status, requires_manual_review, created_at,
                 updated_at, customer_email_normalised)
             select $1, $2, $3, $4, $5, $6, $7, 'booked', $8, $9, $10, $11, 'pending', false,
                 $12, $12, $23
             from go),
         segments as (
             insert into appointment_segments (appointment_id, segment_key, tenant_id,
                 position, staff_id, starts_at, ends_at, active, sync_status, updated_at)
             select $1, k, $2, p, s, st, en, true, 'pending', $12
             from go, unnest($13::text[], $14::int[], $15::text[], $16::timestamptz[],
                         $17::timestamptz[]) as t(k, p, s, st, en)),
         job as (
             insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at,
                 awaited, created_at, updated_at)
             select $18, $2, $1, 'pending', $12, $22, $12, $12 from go),
         pinned as (
             update idempotency_keys
             set state = 'completed', response_status = $20, response_body = $21,
                 appointment_id = $1
             where $24::text is null and $19::text is not null
               and tenant_id = $2 and idempotency_key = $19)
         select count(*) from go"
    ))
    .bind(a.appointment_id)
    .bind(a.tenant_id)
    .bind(a.service_id.as_str())
    .bind(a.staff_id.as_str())
    .bind(starts_at)
    .bind(ends_at)
    .bind(&a.time_zone)
    .bind(a.customer.name())
    .bind(a.customer.email())
    .bind(a.customer.phone())
    .bind(a.notes.as_deref())
    .bind(a.created_at)
    .bind(&keys)
    .bind(&positions)
    .bind(&staff)
    .bind(&starts)
    .bind(&ends)
    .bind(Uuid::now_v7())
    .bind(key)
    .bind(response.map(|r| i32::from(r.status)))
    .bind(response.map(|r| r.body.as_slice()))
    .bind(a.awaited)
    .bind(a.customer.email_lookup_form())
    .bind(claim_hash)
    .bind(a.created_at + IDEMPOTENCY_TTL)
    .bind(a.created_at - IDEMPOTENCY_STALE_IN_FLIGHT)
    .fetch_one(&mut *tx)
    .await?;
    Ok(written > 0)
}
