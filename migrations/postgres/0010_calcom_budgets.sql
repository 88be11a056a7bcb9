-- One Cal.com request budget per API key, shared by every process on this database: the
-- current window (when it ends, how many requests it counted) and the pause a 429 set.
-- The key is identified by a SHA-256 of its base URL and the key, never stored in clear.
create table calcom_budgets (
    key_fingerprint bytea primary key,
    window_ends_at timestamptz not null,
    used integer not null,
    -- Interactive requests in this window and in the one before: background work leaves
    -- room for as many interactive requests as the last window had.
    interactive_used integer not null default 0,
    interactive_last integer not null default 0,
    paused_until timestamptz
);


-- Wake-ups for other processes are sent after the commit by the process that made a job
-- due, coalesced per process; the trigger serialised every commit on the notification
-- queue.
drop trigger sync_jobs_due_notify on sync_jobs;
drop function phasebook_sync_job_due();

-- A caller waits for this job's first run (`Prefer: wait`): its Cal.com requests are
-- interactive, not background work.
alter table sync_jobs add column awaited boolean not null default false;
