-- A claim reads each tenant's due jobs through these instead of ranking every due row:
-- with one tenant's backlog of thousands, the ranking cost every claim (every create's
-- wake-up included) a sort of that backlog.
create index sync_jobs_pending_by_tenant on sync_jobs (tenant_id, run_at)
    where state = 'pending';
-- A job someone waits on (the PostgreSQL store's `PG_INTERACTIVE`, written the same way so
-- the planner can use this index for it).
create index sync_jobs_interactive on sync_jobs (tenant_id, run_at)
    where state = 'pending' and (runs > 0 or awaited)
      and run_at - updated_at <= interval '1 second';
