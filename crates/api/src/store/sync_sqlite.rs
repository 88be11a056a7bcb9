//! [`SyncStore`] for SQLite: ids are TEXT, instants INTEGER unix milliseconds. A claim is a
//! single `update … returning` (SQLite runs one writer at a time, so it is atomic), and
//! every read-then-write transaction starts `immediate` so it never has to upgrade a read
//! lock under contention. Everything else is written once in `sync.rs`.

use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::sqlite::{db_at, db_id, get_at, get_id, get_json, get_opt_at};
use super::sync::{due_jobs, fair_due_jobs};

super::sync::sync_shared!(
    pool = SqlitePool,
    row = SqliteRow,
    db = Sqlite,
    for_update = ""
);

/// A job someone waits on (see the PostgreSQL store); instants are milliseconds here.
const SQLITE_INTERACTIVE: &str =
    "(state = 'pending' and run_at <= updated_at + 1000 and (runs > 0 or awaited))";

async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("begin immediate").await
}

/// No row locks: `begin immediate` already holds the database's one write lock.
async fn lock_appointment(
    _tx: &mut Transaction<'static, Sqlite>,
    _appointment_id: Uuid,
    _lock: AppointmentLock,
) -> StoreResult<()> {
    Ok(())
}

/// Which jobs are interactive (see the PostgreSQL claim) is read first, in the same write
/// transaction: SQLite's `returning` sees only the new row.
async fn claim_due_jobs(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    per_tenant: i64,
    interactive_only: bool,
) -> StoreResult<Vec<ClaimedJob>> {
    let fair = fair_due_jobs(&due_jobs(SQLITE_INTERACTIVE));
    let mut tx = begin_write(pool).await?;
    let prompt: std::collections::HashSet<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select sync_job_id from sync_jobs where sync_job_id in ({fair}) \
             and {SQLITE_INTERACTIVE} and $3 is not null"
        )))
        .bind(db_at(now))
        .bind(owner)
        .bind(db_at(lease_until))
        .bind(limit)
        .bind(per_tenant)
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
    .bind(per_tenant)
    .bind(interactive_only)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|row| {
            let interactive = prompt.contains(&row.try_get::<String, _>("sync_job_id")?);
            claimed_job(row, owner, interactive)
        })
        .collect()
}
