-- An event type found to fit a segment (length, host), remembered for every process on this
-- file; see the PostgreSQL migration.
create table calcom_event_type_checks (
    key_fingerprint blob not null,
    event_type_id integer not null,
    host_user_id integer not null,
    length_minutes integer not null,
    fitted_at_ms integer not null,
    primary key (key_fingerprint, event_type_id, host_user_id, length_minutes)
);

-- An interactive request that found the window spent says so here (unix milliseconds):
-- until then, background work takes no token.
alter table calcom_budgets add column interactive_waiting_until integer;
-- Interactive requests refused a token in this window, each counted once.
alter table calcom_budgets add column interactive_refused integer not null default 0;
