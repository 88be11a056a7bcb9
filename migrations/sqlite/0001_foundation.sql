-- phasebook schema, SQLite. Same tables and columns as the PostgreSQL schema. Ids are
-- TEXT (hyphenated UUIDs); instants are INTEGER unix milliseconds (UTC) so that ordering
-- and overlap checks are plain integer comparisons. The double-booking guard is enforced
-- by the store inside an immediate write transaction.
create table tenants (
    tenant_id text primary key,
    name text not null,
    calcom_api_key text not null,
    calcom_base_url text not null,
    calcom_team_id integer,
    webhook_secret text not null,
    created_at integer not null
);

create table api_keys (
    api_key_id text primary key,
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    role text not null check (role in ('agent', 'viewer', 'ops')),
    key_hash text not null unique,
    key_prefix text not null,
    created_at integer not null,
    revoked_at integer
);

create table services (
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    service_id text not null,
    name text not null,
    created_at integer not null,
    updated_at integer not null,
    primary key (tenant_id, service_id)
);

create table service_segments (
    tenant_id text not null,
    service_id text not null,
    position integer not null,
    segment_key text not null,
    name text not null,
    duration_minutes integer not null check (duration_minutes between 5 and 600),
    gap_after_minutes integer not null check (gap_after_minutes >= 0),
    gap_after_max_minutes integer check (gap_after_max_minutes >= gap_after_minutes),
    primary key (tenant_id, service_id, segment_key),
    unique (tenant_id, service_id, position),
    foreign key (tenant_id, service_id) references services (tenant_id, service_id) on delete cascade
);

create table staff (
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    staff_id text not null,
    name text not null,
    calcom_user_id integer not null,
    calcom_username text not null,
    time_zone text not null,
    created_at integer not null,
    updated_at integer not null,
    primary key (tenant_id, staff_id)
);

create table event_maps (
    tenant_id text not null,
    service_id text not null,
    segment_key text not null,
    staff_id text not null,
    event_type_id integer not null,
    bookable_event_type_id integer not null,
    resolution text not null,
    checked_at integer not null,
    created_at integer not null,
    updated_at integer not null,
    primary key (tenant_id, service_id, segment_key, staff_id),
    foreign key (tenant_id, service_id, segment_key)
        references service_segments (tenant_id, service_id, segment_key) on delete cascade,
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id) on delete cascade
);

create table appointments (
    appointment_id text primary key,
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    service_id text not null,
    staff_id text not null,
    starts_at integer not null,
    ends_at integer not null,
    time_zone text not null,
    status text not null check (status in ('booked', 'cancelled')),
    customer_name text not null,
    customer_email text,
    customer_phone text,
    notes text,
    sync_status text not null,
    requires_manual_review integer not null default 0,
    review_reason text,
    created_at integer not null,
    updated_at integer not null,
    cancelled_at integer,
    foreign key (tenant_id, service_id) references services (tenant_id, service_id),
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id)
);
create index appointments_tenant_list on appointments (tenant_id, starts_at, appointment_id);
create index appointments_tenant_review on appointments (tenant_id, requires_manual_review, sync_status);

create table appointment_segments (
    appointment_id text not null references appointments (appointment_id) on delete cascade,
    segment_key text not null,
    tenant_id text not null,
    position integer not null,
    staff_id text not null,
    starts_at integer not null,
    ends_at integer not null,
    active integer not null default 1,
    sync_status text not null,
    event_type_id integer,
    calcom_booking_uid text,
    calcom_booking_id integer,
    attempts integer not null default 0,
    last_error text,
    next_attempt_at integer,
    updated_at integer not null,
    primary key (appointment_id, segment_key),
    check (ends_at > starts_at)
);
create index appointment_segments_staff_time on appointment_segments (tenant_id, staff_id, starts_at) where active = 1;
create index appointment_segments_booking_uid on appointment_segments (tenant_id, calcom_booking_uid);
create index appointment_segments_booking_id on appointment_segments (tenant_id, calcom_booking_id);

create table idempotency_keys (
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    idempotency_key text not null,
    request_hash text not null,
    state text not null check (state in ('in_flight', 'completed')),
    response_status integer,
    response_body blob,
    appointment_id text,
    created_at integer not null,
    expires_at integer not null,
    primary key (tenant_id, idempotency_key)
);
create index idempotency_keys_expiry on idempotency_keys (expires_at);

create table sync_jobs (
    sync_job_id text primary key,
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    appointment_id text not null unique references appointments (appointment_id) on delete cascade,
    state text not null check (state in ('pending', 'leased', 'done')),
    run_at integer not null,
    lease_owner text,
    lease_expires_at integer,
    runs integer not null default 0,
    created_at integer not null,
    updated_at integer not null
);
create index sync_jobs_due on sync_jobs (state, run_at);

create table sync_attempts (
    sync_attempt_id text primary key,
    tenant_id text not null,
    appointment_id text not null references appointments (appointment_id) on delete cascade,
    segment_key text not null,
    operation text not null,
    event_type_id integer,
    started_at integer not null,
    finished_at integer,
    outcome text,
    error_kind text,
    http_status integer,
    calcom_message text,
    calcom_booking_uid text
);
create index sync_attempts_appointment on sync_attempts (appointment_id, started_at);
create index sync_attempts_recent on sync_attempts (tenant_id, started_at);
