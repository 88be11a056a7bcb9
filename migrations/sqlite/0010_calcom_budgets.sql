-- One Cal.com request budget per API key, shared by every process on this file; see the
-- PostgreSQL migration. Instants are unix milliseconds.
create table calcom_budgets (
    key_fingerprint blob primary key,
    window_ends_at integer not null,
    used integer not null,
    -- Interactive requests in this window and in the one before: background work leaves
    -- room for as many interactive requests as the last window had.
    interactive_used integer not null default 0,
    interactive_last integer not null default 0,
    paused_until integer
);

-- A caller waits for this job's first run (`Prefer: wait`): its Cal.com requests are
-- interactive, not background work.
alter table sync_jobs add column awaited integer not null default 0;
