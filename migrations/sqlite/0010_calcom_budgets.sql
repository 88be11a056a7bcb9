-- One Cal.com request budget per API key, shared by every process on this file; see the
-- PostgreSQL migration. Instants are unix milliseconds.
create table calcom_budgets (
    key_fingerprint blob primary key,
    window_ends_at integer not null,
    used integer not null,
    paused_until integer
);
