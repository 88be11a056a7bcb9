//! What the ops console reads and writes beyond the foundation's [`Store`]: its sessions,
//! the review queue in the order ops works it (newest first), and Cal.com attempts per
//! hour for the sync-health chart. Each statement is written once for both backends; only
//! the hour bucket of an instant differs (a `timestamptz` against unix milliseconds).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use phasebook_domain::sync::AppointmentSyncStatus;
use sqlx::Row;
use uuid::Uuid;

use super::sqlite::{from_ms, to_ms};
use super::{Database, PgStore, SqliteStore, Store, StoreError, StoreResult};

/// A session as opened by a login; `token_hash` and `key_hash` are SHA-256 hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsoleSession {
    pub token_hash: String,
    pub tenant_id: Uuid,
    pub key_hash: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A session that has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub tenant_id: Uuid,
    /// The key is looked up again with this on every request.
    pub key_hash: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Finished Cal.com calls that started in one hour (UTC), and how many of them failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyAttempts {
    pub hour_start: DateTime<Utc>,
    pub attempts: i64,
    /// Outcome `failed` or `unknown`, as `GET /sync/health` counts them.
    pub failures: i64,
}

/// Storage for the ops console. Every read is scoped to one tenant.
#[async_trait]
pub trait ConsoleStore: Store {
    async fn create_console_session(&self, session: &NewConsoleSession) -> StoreResult<()>;
    /// The session with this token hash, unless it expired by `now`.
    async fn find_console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>>;
    async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()>;
    /// Deletes every session expired by `now`; returns how many.
    async fn purge_expired_console_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Appointments that need review, newest first.
    async fn review_queue(&self, tenant_id: Uuid, limit: u32) -> StoreResult<Vec<Uuid>>;
    /// Finished attempts per hour since `since`, hours without attempts left out.
    async fn attempts_by_hour(
        &self,
        tenant_id: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourlyAttempts>>;
}

impl Database {
    /// The console view of the configured backend.
    pub fn console(&self) -> &dyn ConsoleStore {
        match self {
            Self::Postgres(s) => s,
            Self::Sqlite(s) => s,
        }
    }
}

const CREATE_SESSION: &str = "insert into console_sessions (token_hash, tenant_id, key_hash, \
     csrf_token, created_at, expires_at) values ($1, $2, $3, $4, $5, $6)";
const FIND_SESSION: &str = "select tenant_id, key_hash, csrf_token, expires_at \
     from console_sessions where token_hash = $1 and expires_at > $2";
const DELETE_SESSION: &str = "delete from console_sessions where token_hash = $1";
const PURGE_SESSIONS: &str = "delete from console_sessions where expires_at <= $1";
const REVIEW_QUEUE: &str = "select appointment_id from appointments \
     where tenant_id = $1 and sync_status = $2 \
     order by created_at desc, appointment_id desc limit $3";

/// The same statement for both backends around each one's hour number of `started_at`.
macro_rules! attempts_by_hour {
    ($hour:literal) => {
        concat!(
            "select ",
            $hour,
            " as hour, count(*) as attempts, \
             coalesce(sum(case when outcome in ('failed', 'unknown') then 1 else 0 end), 0) \
             as failures \
             from sync_attempts \
             where tenant_id = $1 and started_at >= $2 and finished_at is not null \
             group by 1 order by 1"
        )
    };
}
const PG_ATTEMPTS_BY_HOUR: &str =
    attempts_by_hour!("cast(floor(extract(epoch from started_at) / 3600) as bigint)");
const SQLITE_ATTEMPTS_BY_HOUR: &str = attempts_by_hour!("(started_at / 3600000)");

fn hour_start(hour: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::<Utc>::UNIX_EPOCH
        .checked_add_signed(TimeDelta::hours(hour))
        .ok_or_else(|| StoreError::Corrupt(format!("hour {hour} is out of range")))
}

fn parse_uuid(value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| StoreError::Corrupt(format!("id {value:?}")))
}

const NEEDS_REVIEW: AppointmentSyncStatus = AppointmentSyncStatus::NeedsReview;

#[async_trait]
impl ConsoleStore for PgStore {
    async fn create_console_session(&self, session: &NewConsoleSession) -> StoreResult<()> {
        sqlx::query(CREATE_SESSION)
            .bind(&session.token_hash)
            .bind(session.tenant_id)
            .bind(&session.key_hash)
            .bind(&session.csrf_token)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>> {
        let row = sqlx::query(FIND_SESSION)
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ConsoleSession {
                tenant_id: row.try_get("tenant_id")?,
                key_hash: row.try_get("key_hash")?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query(DELETE_SESSION)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_expired_console_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query(PURGE_SESSIONS)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn review_queue(&self, tenant_id: Uuid, limit: u32) -> StoreResult<Vec<Uuid>> {
        Ok(sqlx::query_scalar(REVIEW_QUEUE)
            .bind(tenant_id)
            .bind(NEEDS_REVIEW.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn attempts_by_hour(
        &self,
        tenant_id: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourlyAttempts>> {
        let rows = sqlx::query(PG_ATTEMPTS_BY_HOUR)
            .bind(tenant_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HourlyAttempts {
                    hour_start: hour_start(row.try_get("hour")?)?,
                    attempts: row.try_get("attempts")?,
                    failures: row.try_get("failures")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn create_console_session(&self, session: &NewConsoleSession) -> StoreResult<()> {
        sqlx::query(CREATE_SESSION)
            .bind(&session.token_hash)
            .bind(session.tenant_id.hyphenated().to_string())
            .bind(&session.key_hash)
            .bind(&session.csrf_token)
            .bind(to_ms(session.created_at))
            .bind(to_ms(session.expires_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleSession>> {
        let row = sqlx::query(FIND_SESSION)
            .bind(token_hash)
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ConsoleSession {
                tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
                key_hash: row.try_get("key_hash")?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: from_ms(row.try_get("expires_at")?)?,
            })
        })
        .transpose()
    }

    async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query(DELETE_SESSION)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_expired_console_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query(PURGE_SESSIONS)
            .bind(to_ms(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn review_queue(&self, tenant_id: Uuid, limit: u32) -> StoreResult<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(REVIEW_QUEUE)
            .bind(tenant_id.hyphenated().to_string())
            .bind(NEEDS_REVIEW.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        ids.iter().map(|id| parse_uuid(id)).collect()
    }

    async fn attempts_by_hour(
        &self,
        tenant_id: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourlyAttempts>> {
        let rows = sqlx::query(SQLITE_ATTEMPTS_BY_HOUR)
            .bind(tenant_id.hyphenated().to_string())
            .bind(to_ms(since))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HourlyAttempts {
                    hour_start: hour_start(row.try_get("hour")?)?,
                    attempts: row.try_get("attempts")?,
                    failures: row.try_get("failures")?,
                })
            })
            .collect()
    }
}
