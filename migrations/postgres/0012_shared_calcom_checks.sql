-- An event type found to fit a segment (length, host) is remembered here for every process
-- on this database, so replicas do not each read the same type from Cal.com once a minute
-- out of one shared request budget. Keyed like `calcom_budgets`: a SHA-256 of the Cal.com
-- base URL and key. Instants are unix milliseconds, as in SQLite, so both dialects share
-- the statements.
create table calcom_event_type_checks (
    key_fingerprint bytea not null,
    event_type_id bigint not null,
    host_user_id bigint not null,
    length_minutes integer not null,
    fitted_at_ms bigint not null,
    primary key (key_fingerprint, event_type_id, host_user_id, length_minutes)
);

-- An interactive request that found the window spent says so here: until then, background
-- work takes no token, so the next window starts with the callers who waited.
alter table calcom_budgets add column interactive_waiting_until timestamptz;
-- Interactive requests refused a token in this window, each counted once: with the ones
-- served they are the demand the next window leaves room for.
alter table calcom_budgets add column interactive_refused integer not null default 0;
