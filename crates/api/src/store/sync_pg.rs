//! [`SyncStore`] for PostgreSQL: jobs are claimed with `for update skip locked`, so many
//! replicas can poll one database without ever leasing the same job twice. Everything else
//! is written once in `sync.rs`.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Transaction};

use super::pg::{db_at, db_id, get_at, get_id, get_json, get_opt_at};
use super::sync::{TENANT_REACH, fair_due_jobs};

super::sync::sync_shared!(
    pool = PgPool,
    row = PgRow,
    db = Postgres,
    for_update = " for update"
);

/// A job someone waits on: a change to an appointment someone just made (a resync, a
/// cancel, a move: `run_at` at the job's last change, where a retry is scheduled for later
/// than that), or a new appointment whose creator waits for the outcome.
/// Written as the partial index `sync_jobs_interactive` is, so a claim reads a tenant's
/// interactive jobs through it.
const PG_INTERACTIVE: &str = "(state = 'pending' and (runs > 0 or awaited) \
     and run_at - updated_at <= interval '1 second')";

/// A claim's candidates, read per tenant so a tenant with a backlog costs a claim a few
/// index entries, not a sort of its whole backlog: the tenants with a due job are found by
/// skipping through `sync_jobs_pending_by_tenant` one tenant at a time, and each gives its
/// earliest interactive jobs and its earliest jobs of any kind, as many as one claim could
/// take from it ([`TENANT_REACH`]); expired leases are few and read whole. The ranking of
/// `fair_due_jobs` over these gives the same turns as over every due row.
fn pg_candidates() -> String {
    format!(
        "with recursive due_tenants(tenant_id) as ( \
           (select tenant_id from sync_jobs where state = 'pending' and run_at <= $1 \
            order by tenant_id limit 1) \
           union all \
           select (select j.tenant_id from sync_jobs j where j.state = 'pending' \
                   and j.run_at <= $1 and j.tenant_id > t.tenant_id \
                   order by j.tenant_id limit 1) \
           from due_tenants t where t.tenant_id is not null) \
         select c.* from due_tenants t cross join lateral ( \
           (select sync_job_id, tenant_id, run_at, true as interactive, \
              (runs = 0 and awaited) as awaited from sync_jobs \
            where tenant_id = t.tenant_id and run_at <= $1 and {PG_INTERACTIVE} \
            order by run_at limit {TENANT_REACH}) \
           union \
           (select sync_job_id, tenant_id, run_at, {PG_INTERACTIVE} as interactive, \
              (runs = 0 and awaited) as awaited from sync_jobs \
            where tenant_id = t.tenant_id and run_at <= $1 and state = 'pending' and not $6 \
            order by run_at limit {TENANT_REACH})) c \
         where t.tenant_id is not null \
         union all \
         select sync_job_id, tenant_id, run_at, false, false from sync_jobs \
         where state = 'leased' and lease_expires_at <= $1"
    )
}

async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

async fn lock_appointment(
    tx: &mut Transaction<'static, Postgres>,
    appointment_id: Uuid,
    lock: AppointmentLock,
) -> StoreResult<()> {
    let sql = match lock {
        AppointmentLock::Update => {
            "select 1 from appointments where appointment_id = $1 for update"
        }
        AppointmentLock::KeyShare => {
            "select 1 from appointments where appointment_id = $1 for key share"
        }
    };
    sqlx::query(sql)
        .bind(appointment_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(())
}

/// The due test is repeated on the locked row: the fair pick reads a snapshot, and a row
/// another worker claimed meanwhile is re-checked only against conditions on the row itself.
async fn claim_due_jobs(
    pool: &PgPool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    per_tenant: i64,
    interactive_only: bool,
) -> StoreResult<Vec<ClaimedJob>> {
    let fair = fair_due_jobs(&pg_candidates());
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "with due as ( \
           select j.sync_job_id, {PG_INTERACTIVE} as interactive \
           from sync_jobs j where j.sync_job_id in ({fair}) \
             and ((j.state = 'pending' and j.run_at <= $1) \
               or (j.state = 'leased' and j.lease_expires_at <= $1)) \
           for update skip locked) \
         update sync_jobs j set state = 'leased', lease_owner = $2, \
           lease_expires_at = $3, runs = j.runs + 1, updated_at = $1 \
         from due where j.sync_job_id = due.sync_job_id \
         returning j.sync_job_id, j.tenant_id, j.appointment_id, j.runs, j.verify_bookings, \
           due.interactive",
    )))
    .bind(now)
    .bind(owner)
    .bind(lease_until)
    .bind(limit)
    .bind(per_tenant)
    .bind(interactive_only)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| claimed_job(row, owner, row.try_get("interactive")?))
        .collect()
}
