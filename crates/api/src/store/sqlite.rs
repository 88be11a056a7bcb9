//! The SQLite store: the embedded default (one file, one process). Instants are unix
//! milliseconds and ids hyphenated text; the double-booking guard is an overlap query and
//! the insert inside one `begin immediate` transaction, which takes the write lock before
//! reading. Everything the two backends share is written once in `shared.rs`.

use phasebook_domain::service_change::{repointed_map_reason, resized_map_reason};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::{
    AppointmentStatus, CalcomUserId, Customer, SegmentSpec, Service, ServiceId, StaffId,
};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::secrets::SecretField;

use super::shared::{self, APPOINTMENT_COLUMNS, SEGMENT_COLUMNS};
use super::{
    ACQUIRE_TIMEOUT, ApiKeyOwner, Appointment, AppointmentQuery, AppointmentSegment,
    IDEMPOTENCY_STALE_IN_FLIGHT, IDEMPOTENCY_TTL, IdempotencyClaim, IdempotentResponse,
    KeyedAnswer, NewApiKey, NewAppointment, NewTenant, StaffMember, Store, StoreError, StoreResult,
    StoredService, parse_appointment_status, parse_appointment_sync_status, parse_role,
    parse_segment_key, parse_segment_sync_status, parse_service_id, parse_staff_id,
    rebuild_customer, rebuild_service,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

/// Unix milliseconds, the schema's instant representation.
pub(crate) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {ms} is out of range")))
}

pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_uuid(value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| StoreError::Corrupt(format!("id {value:?}")))
}

// The codec of `shared.rs` (the store's other SQLite modules use it too).
pub(crate) fn db_id(id: Uuid) -> String {
    uuid_text(id)
}

pub(crate) fn db_at(at: DateTime<Utc>) -> i64 {
    to_ms(at)
}

pub(crate) fn get_id(row: &SqliteRow, column: &str) -> StoreResult<Uuid> {
    parse_uuid(&row.try_get::<String, _>(column)?)
}

pub(crate) fn get_at(row: &SqliteRow, column: &str) -> StoreResult<DateTime<Utc>> {
    from_ms(row.try_get(column)?)
}

pub(crate) fn get_opt_at(row: &SqliteRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_ms)
        .transpose()
}

/// JSON is stored as text.
pub(crate) fn get_json(row: &SqliteRow, column: &str) -> StoreResult<Option<serde_json::Value>> {
    row.try_get::<Option<String>, _>(column)?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|_| StoreError::Corrupt(format!("{column} is not JSON")))
        })
        .transpose()
}

pub(crate) fn get_opt_id(row: &SqliteRow, column: &str) -> StoreResult<Option<Uuid>> {
    row.try_get::<Option<String>, _>(column)?
        .as_deref()
        .map(parse_uuid)
        .transpose()
}

shared::dialect_store!(
    store = SqliteStore,
    row = SqliteRow,
    backend = "sqlite",
    db = Sqlite,
    for_update = ""
);

super::event_maps::event_map_store!(store = SqliteStore, row = SqliteRow);

super::booking_context::booking_context_store!(store = SqliteStore, row = SqliteRow, db = Sqlite);

super::keys::key_store!(store = SqliteStore, for_update = "");

super::console::console_store!(
    store = SqliteStore,
    attempts_by_hour = super::console::SQLITE_ATTEMPTS_BY_HOUR
);

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("begin immediate").await
    }

    /// False when the key is taken: then nothing is written.
    async fn create_appointment_rows(
        &self,
        a: &NewAppointment,
        idempotency: Option<KeyedAnswer<'_>>,
    ) -> StoreResult<bool> {
        let (Some(starts_at), Some(ends_at)) = (a.starts_at(), a.ends_at()) else {
            return Err(StoreError::Corrupt("an appointment needs segments".into()));
        };
        // `begin immediate` takes the write lock before the overlap check, so no other
        // writer can slip a segment in between the check and the insert.
        let mut tx = self.pool.begin_with("begin immediate").await?;
        if let Some(answer) = idempotency {
            let claimed = Self::claim_key_on(
                &mut tx,
                a.tenant_id,
                answer.key,
                answer.request_hash,
                Some(answer.response),
                a.created_at,
            )
            .await?;
            if !claimed {
                // Give the write lock back now, not when the pool next uses the connection.
                tx.rollback().await?;
                return Ok(false);
            }
        }
        let pin = idempotency.map(|answer| (answer.key, answer.response));
        insert_appointment_rows(&mut tx, a, starts_at, ends_at, pin).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The overlap check and the inserts of one appointment, inside the caller's immediate
/// transaction. Live holds block the time as appointments do; expired ones are ignored.
pub(crate) async fn insert_appointment_rows(
    tx: &mut sqlx::SqliteConnection,
    a: &NewAppointment,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    idempotency: Option<(&str, &IdempotentResponse)>,
) -> StoreResult<()> {
    let tenant = uuid_text(a.tenant_id);
    let id = uuid_text(a.appointment_id);
    let now = to_ms(a.created_at);
    for segment in &a.segments {
        let conflict: Option<String> = sqlx::query_scalar(
            "select appointment_id from appointment_segments
                 where tenant_id = ?1 and staff_id = ?2 and active = 1
                   and starts_at < ?4 and ends_at > ?3
                 order by starts_at limit 1",
        )
        .bind(&tenant)
        .bind(segment.staff_id.as_str())
        .bind(to_ms(segment.starts_at))
        .bind(to_ms(segment.ends_at))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(conflict) = conflict {
            return Err(StoreError::DoubleBooking {
                conflicting_appointment_id: Some(parse_uuid(&conflict)?),
            });
        }
    }
    if super::holds_sqlite::live_hold_overlaps(&mut *tx, a.tenant_id, &a.segments, a.created_at)
        .await?
    {
        return Err(StoreError::DoubleBooking {
            conflicting_appointment_id: None,
        });
    }
    sqlx::query(
        "insert into appointments (appointment_id, tenant_id, service_id, staff_id, starts_at,
                 ends_at, time_zone, status, customer_name, customer_email, customer_phone, notes,
                 sync_status, requires_manual_review, created_at, updated_at,
                 customer_email_normalised)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'booked', ?8, ?9, ?10, ?11, 'pending', 0, ?12, ?12,
                 ?13)",
    )
    .bind(&id)
    .bind(&tenant)
    .bind(a.service_id.as_str())
    .bind(a.staff_id.as_str())
    .bind(to_ms(starts_at))
    .bind(to_ms(ends_at))
    .bind(&a.time_zone)
    .bind(a.customer.name())
    .bind(a.customer.email())
    .bind(a.customer.phone())
    .bind(a.notes.as_deref())
    .bind(now)
    .bind(a.customer.email_lookup_form())
    .execute(&mut *tx)
    .await?;
    // Every segment in one statement, as on PostgreSQL.
    let mut segments: QueryBuilder<Sqlite> = QueryBuilder::new(
        "insert into appointment_segments (appointment_id, segment_key, tenant_id, position,
             staff_id, starts_at, ends_at, active, sync_status, updated_at) ",
    );
    segments.push_values(a.segments.iter().enumerate(), |mut row, (position, s)| {
        row.push_bind(&id)
            .push_bind(s.key.as_str())
            .push_bind(&tenant)
            .push_bind(position as i64)
            .push_bind(s.staff_id.as_str())
            .push_bind(to_ms(s.starts_at))
            .push_bind(to_ms(s.ends_at))
            .push("1, 'pending'")
            .push_bind(now);
    });
    segments.build().execute(&mut *tx).await?;
    sqlx::query(
        "insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at,
                 awaited, created_at, updated_at)
             values (?1, ?2, ?3, 'pending', ?4, ?5, ?4, ?4)",
    )
    .bind(uuid_text(Uuid::now_v7()))
    .bind(&tenant)
    .bind(&id)
    .bind(now)
    .bind(a.awaited)
    .execute(&mut *tx)
    .await?;
    if let Some((key, response)) = idempotency {
        sqlx::query(
            "update idempotency_keys
                 set state = 'completed', response_status = ?3, response_body = ?4,
                     appointment_id = ?5
                 where tenant_id = ?1 and idempotency_key = ?2",
        )
        .bind(&tenant)
        .bind(key)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
