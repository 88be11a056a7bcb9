//! What the ops console reads and writes beyond the foundation's [`Store`]: its sessions,
//! the review queue in the order ops works it (newest first), and Cal.com attempts per
//! hour for the sync-health chart. Written once for both backends ([`console_store!`],
//! invoked by `pg.rs` and `sqlite.rs`); only the hour bucket of an instant differs (a
//! `timestamptz` against unix milliseconds).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use phasebook_domain::sync::AppointmentSyncStatus;
use uuid::Uuid;

use super::{Database, Store, StoreError, StoreResult};

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

pub(crate) const CREATE_SESSION: &str = "insert into console_sessions (token_hash, tenant_id, key_hash, \
     csrf_token, created_at, expires_at) values ($1, $2, $3, $4, $5, $6)";
pub(crate) const FIND_SESSION: &str = "select tenant_id, key_hash, csrf_token, expires_at \
     from console_sessions where token_hash = $1 and expires_at > $2";
pub(crate) const DELETE_SESSION: &str = "delete from console_sessions where token_hash = $1";
pub(crate) const PURGE_SESSIONS: &str = "delete from console_sessions where expires_at <= $1";
pub(crate) const REVIEW_QUEUE: &str = "select appointment_id from appointments \
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
pub(crate) const PG_ATTEMPTS_BY_HOUR: &str =
    attempts_by_hour!("cast(floor(extract(epoch from started_at) / 3600) as bigint)");
pub(crate) const SQLITE_ATTEMPTS_BY_HOUR: &str = attempts_by_hour!("(started_at / 3600000)");

pub(crate) fn hour_start(hour: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::<Utc>::UNIX_EPOCH
        .checked_add_signed(TimeDelta::hours(hour))
        .ok_or_else(|| StoreError::Corrupt(format!("hour {hour} is out of range")))
}

pub(crate) const NEEDS_REVIEW: AppointmentSyncStatus = AppointmentSyncStatus::NeedsReview;

/// [`ConsoleStore`] for one backend, through the codec of the invoking module (see
/// `shared.rs`); `attempts_by_hour` is the backend's statement.
macro_rules! console_store {
    (store = $store:ty, attempts_by_hour = $attempts_by_hour:path) => {
        #[async_trait]
        impl super::console::ConsoleStore for $store {
            async fn create_console_session(
                &self,
                session: &super::console::NewConsoleSession,
            ) -> StoreResult<()> {
                sqlx::query(super::console::CREATE_SESSION)
                    .bind(&session.token_hash)
                    .bind(db_id(session.tenant_id))
                    .bind(&session.key_hash)
                    .bind(&session.csrf_token)
                    .bind(db_at(session.created_at))
                    .bind(db_at(session.expires_at))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn find_console_session(
                &self,
                token_hash: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<super::console::ConsoleSession>> {
                let row = sqlx::query(super::console::FIND_SESSION)
                    .bind(token_hash)
                    .bind(db_at(now))
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| {
                    Ok(super::console::ConsoleSession {
                        tenant_id: get_id(&row, "tenant_id")?,
                        key_hash: row.try_get("key_hash")?,
                        csrf_token: row.try_get("csrf_token")?,
                        expires_at: get_at(&row, "expires_at")?,
                    })
                })
                .transpose()
            }

            async fn delete_console_session(&self, token_hash: &str) -> StoreResult<()> {
                sqlx::query(super::console::DELETE_SESSION)
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_expired_console_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
                let done = sqlx::query(super::console::PURGE_SESSIONS)
                    .bind(db_at(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn review_queue(&self, tenant_id: Uuid, limit: u32) -> StoreResult<Vec<Uuid>> {
                let rows = sqlx::query(super::console::REVIEW_QUEUE)
                    .bind(db_id(tenant_id))
                    .bind(super::console::NEEDS_REVIEW.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| get_id(row, "appointment_id"))
                    .collect()
            }

            async fn attempts_by_hour(
                &self,
                tenant_id: Uuid,
                since: DateTime<Utc>,
            ) -> StoreResult<Vec<super::console::HourlyAttempts>> {
                let rows = sqlx::query($attempts_by_hour)
                    .bind(db_id(tenant_id))
                    .bind(db_at(since))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(super::console::HourlyAttempts {
                            hour_start: super::console::hour_start(row.try_get("hour")?)?,
                            attempts: row.try_get("attempts")?,
                            failures: row.try_get("failures")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use console_store;
