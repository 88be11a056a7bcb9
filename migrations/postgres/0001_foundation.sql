-- phasebook schema, PostgreSQL. Every row belongs to a tenant; every query filters by it.
create extension if not exists btree_gist;

create table tenants (
    tenant_id uuid primary key,
    name text not null,
    calcom_api_key text not null,
    calcom_base_url text not null,
    calcom_team_id bigint,
    webhook_secret text not null,
    created_at timestamptz not null default now()
);

create table api_keys (
    api_key_id uuid primary key,
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    role text not null check (role in ('agent', 'viewer', 'ops')),
    key_hash text not null unique,
    key_prefix text not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);

create table services (
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    service_id text not null,
    name text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, service_id)
);

create table service_segments (
    tenant_id uuid not null,
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
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    staff_id text not null,
    name text not null,
    calcom_user_id bigint not null,
    calcom_username text not null,
    time_zone text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, staff_id)
);

-- (service, segment, staff) -> the configured Cal.com event type and the id that is
-- actually bookable for that host (a managed parent's child, or the id itself).
create table event_maps (
    tenant_id uuid not null,
    service_id text not null,
    segment_key text not null,
    staff_id text not null,
    event_type_id bigint not null,
    bookable_event_type_id bigint not null,
    resolution text not null,
    checked_at timestamptz not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, service_id, segment_key, staff_id),
    foreign key (tenant_id, service_id, segment_key)
        references service_segments (tenant_id, service_id, segment_key) on delete cascade,
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id) on delete cascade
);

create table appointments (
    appointment_id uuid primary key,
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    service_id text not null,
    staff_id text not null,
    starts_at timestamptz not null,
    ends_at timestamptz not null,
    time_zone text not null,
    status text not null check (status in ('booked', 'cancelled')),
    customer_name text not null,
    customer_email text,
    customer_phone text,
    notes text,
    sync_status text not null,
    requires_manual_review boolean not null default false,
    review_reason text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    cancelled_at timestamptz,
    foreign key (tenant_id, service_id) references services (tenant_id, service_id),
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id)
);
create index appointments_tenant_list on appointments (tenant_id, starts_at, appointment_id);
create index appointments_tenant_review on appointments (tenant_id, requires_manual_review, sync_status);

-- One staffed segment and its Cal.com booking. `active` is false once the appointment is
-- cancelled, which releases the staff member's time for the double-booking guard.
create table appointment_segments (
    appointment_id uuid not null references appointments (appointment_id) on delete cascade,
    segment_key text not null,
    tenant_id uuid not null,
    position integer not null,
    staff_id text not null,
    starts_at timestamptz not null,
    ends_at timestamptz not null,
    active boolean not null default true,
    sync_status text not null,
    event_type_id bigint,
    calcom_booking_uid text,
    calcom_booking_id bigint,
    attempts integer not null default 0,
    last_error jsonb,
    next_attempt_at timestamptz,
    updated_at timestamptz not null default now(),
    primary key (appointment_id, segment_key),
    check (ends_at > starts_at),
    constraint appointment_segments_no_double_booking exclude using gist (
        tenant_id with =,
        staff_id with =,
        tstzrange(starts_at, ends_at, '[)') with &&
    ) where (active)
);
create index appointment_segments_booking_uid on appointment_segments (tenant_id, calcom_booking_uid);
create index appointment_segments_booking_id on appointment_segments (tenant_id, calcom_booking_id);

create table idempotency_keys (
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    idempotency_key text not null,
    request_hash text not null,
    state text not null check (state in ('in_flight', 'completed')),
    response_status integer,
    response_body bytea,
    appointment_id uuid,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    primary key (tenant_id, idempotency_key)
);
create index idempotency_keys_expiry on idempotency_keys (expires_at);

-- The transactional outbox: one row per appointment, written in the same transaction as
-- the appointment. The worker drives the appointment towards its desired state
-- (`appointments.status`: booked -> every segment booked; cancelled -> every booking
-- cancelled), so a job needs no kind of its own.
create table sync_jobs (
    sync_job_id uuid primary key,
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    appointment_id uuid not null unique references appointments (appointment_id) on delete cascade,
    state text not null check (state in ('pending', 'leased', 'done')),
    run_at timestamptz not null,
    lease_owner text,
    lease_expires_at timestamptz,
    runs integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index sync_jobs_due on sync_jobs (state, run_at);

-- One row per call phasebook made to Cal.com for a segment (write-ahead: inserted before
-- the request is sent, completed after).
create table sync_attempts (
    sync_attempt_id uuid primary key,
    tenant_id uuid not null,
    appointment_id uuid not null references appointments (appointment_id) on delete cascade,
    segment_key text not null,
    operation text not null,
    event_type_id bigint,
    started_at timestamptz not null,
    finished_at timestamptz,
    outcome text,
    error_kind text,
    http_status integer,
    calcom_message text,
    calcom_booking_uid text
);
create index sync_attempts_appointment on sync_attempts (appointment_id, started_at);
create index sync_attempts_recent on sync_attempts (tenant_id, started_at);
