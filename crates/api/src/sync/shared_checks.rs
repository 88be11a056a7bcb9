//! Event types found to fit a segment, remembered in the database for every process.
//!
//! Before each create the engine checks that the event type still fits the segment (length,
//! host). Each process already remembers a check for a minute; with several replicas on one
//! database each of them read every type once a minute, out of the one request budget the
//! key has with Cal.com. A fit found by any process is written here and trusted by the others
//! for the same minute. Only fits are shared: a type that no longer fits sends the segment to
//! review, and the reading process says why.

use std::time::Duration;

use crate::store::Database;

/// Identifies one check: the Cal.com key (as in `calcom_budgets`), the event type, the host
/// and the segment's length in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckKey {
    pub key_fingerprint: [u8; 32],
    pub event_type_id: i64,
    pub host_user_id: i64,
    pub length_minutes: u32,
}

/// The fits every process of this database remembers.
#[derive(Clone)]
pub struct SharedChecks {
    db: Database,
}

impl std::fmt::Debug for SharedChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedChecks").finish_non_exhaustive()
    }
}

const FITTED_SINCE: &str = "select 1 from calcom_event_type_checks \
     where key_fingerprint = $1 and event_type_id = $2 and host_user_id = $3 \
       and length_minutes = $4 and fitted_at_ms > $5";

const RECORD_FIT: &str = "insert into calcom_event_type_checks \
       (key_fingerprint, event_type_id, host_user_id, length_minutes, fitted_at_ms) \
     values ($1, $2, $3, $4, $5) \
     on conflict (key_fingerprint, event_type_id, host_user_id, length_minutes) \
     do update set fitted_at_ms = excluded.fitted_at_ms";

const FORGET: &str =
    "delete from calcom_event_type_checks where key_fingerprint = $1 and event_type_id = $2";

/// Runs one sqlx call on whichever pool the database has: the statements are the same text
/// in both dialects, only the pool's type differs.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $call:expr) => {
        match $db {
            Database::Postgres(store) => {
                let $pool = &store.pool;
                $call
            }
            Database::Sqlite(store) => {
                let $pool = &store.pool;
                $call
            }
        }
    };
}

fn unix_ms(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

impl SharedChecks {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Whether some process found this fit within `ttl` before `now`. A database that does
    /// not answer counts as "no": the caller then reads Cal.com itself.
    pub async fn fitted_recently(
        &self,
        key: &CheckKey,
        now: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
    ) -> bool {
        let since = unix_ms(now) - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let found = on_pool!(&self.db, pool => sqlx::query(FITTED_SINCE)
            .bind(&key.key_fingerprint[..])
            .bind(key.event_type_id)
            .bind(key.host_user_id)
            .bind(i64::from(key.length_minutes))
            .bind(since)
            .fetch_optional(pool)
            .await
            .map(|row| row.is_some()));
        found.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not read the shared event-type checks");
            false
        })
    }

    /// Remembers a fit found now. A failure only costs another process a read.
    pub async fn record_fit(&self, key: &CheckKey, now: chrono::DateTime<chrono::Utc>) {
        let written = on_pool!(&self.db, pool => sqlx::query(RECORD_FIT)
            .bind(&key.key_fingerprint[..])
            .bind(key.event_type_id)
            .bind(key.host_user_id)
            .bind(i64::from(key.length_minutes))
            .bind(unix_ms(now))
            .execute(pool)
            .await
            .map(|_| ()));
        if let Err(err) = written {
            tracing::warn!(error = %err, "could not share an event-type check");
        }
    }

    /// Forgets every fit of `event_type_id` under this key: Cal.com refused a booking on it,
    /// so no process may trust an older read.
    pub async fn forget(&self, key_fingerprint: &[u8; 32], event_type_id: i64) {
        let deleted = on_pool!(&self.db, pool => sqlx::query(FORGET)
            .bind(&key_fingerprint[..])
            .bind(event_type_id)
            .execute(pool)
            .await
            .map(|_| ()));
        if let Err(err) = deleted {
            tracing::warn!(error = %err, "could not forget a shared event-type check");
        }
    }
}
