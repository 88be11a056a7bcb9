-- Who performs what, per-tenant booking settings, and holds (find -> hold -> book).

-- The services a staff member performs. Filled from today's event maps: whoever has a map
-- for a service performs it.
create table staff_services (
    tenant_id uuid not null,
    staff_id text not null,
    service_id text not null,
    primary key (tenant_id, staff_id, service_id),
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id) on delete cascade,
    foreign key (tenant_id, service_id) references services (tenant_id, service_id) on delete cascade
);
insert into staff_services (tenant_id, staff_id, service_id)
select distinct tenant_id, staff_id, service_id from event_maps;

-- The country national phone numbers are read with (ISO 3166 alpha-2; null: none are
-- accepted) and how many days ahead the tenant takes bookings.
alter table tenants add column country text;
alter table tenants add column booking_horizon_days integer not null default 365
    check (booking_horizon_days between 1 and 3650);

-- A hold keeps an option's staffed time for a few minutes while the caller decides. Its
-- time is blocked only until `expires_at`; `status` says how it ended.
create table holds (
    hold_id uuid primary key,
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    service_id text not null,
    staff_id text not null,
    time_zone text not null,
    status text not null check (status in ('held', 'released', 'booked')),
    expires_at timestamptz not null,
    appointment_id uuid,
    -- Set once every Cal.com reservation of the hold is deleted (or never existed).
    reservations_cleared_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    foreign key (tenant_id, service_id) references services (tenant_id, service_id) on delete cascade,
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id) on delete cascade
);
create index holds_uncleared on holds (expires_at) where reservations_cleared_at is null;

create table hold_segments (
    hold_id uuid not null references holds (hold_id) on delete cascade,
    segment_key text not null,
    tenant_id uuid not null,
    position integer not null,
    staff_id text not null,
    starts_at timestamptz not null,
    ends_at timestamptz not null,
    event_type_id bigint not null,
    calcom_reservation_uid text,
    primary key (hold_id, segment_key),
    check (ends_at > starts_at)
);

-- The one double-booking guard for appointments and holds together: every active
-- appointment segment and every live hold segment is a row here, and the exclusion
-- constraint refuses two rows of one staff member that share a moment. Appointment rows
-- are mirrored by a trigger; hold rows are written by the store, and deleted when the
-- hold ends or (inside the transaction that needs the time) once it has expired.
create table staff_busy (
    tenant_id uuid not null,
    staff_id text not null,
    starts_at timestamptz not null,
    ends_at timestamptz not null,
    segment_key text not null,
    appointment_id uuid references appointments (appointment_id) on delete cascade,
    hold_id uuid references holds (hold_id) on delete cascade,
    check ((appointment_id is null) <> (hold_id is null)),
    constraint staff_busy_no_double_booking exclude using gist (
        tenant_id with =,
        staff_id with =,
        tstzrange(starts_at, ends_at, '[)') with &&
    )
);
create index staff_busy_appointment on staff_busy (appointment_id, segment_key);
create index staff_busy_hold on staff_busy (hold_id);

insert into staff_busy (tenant_id, staff_id, starts_at, ends_at, segment_key, appointment_id)
select tenant_id, staff_id, starts_at, ends_at, segment_key, appointment_id
from appointment_segments where active;

create function staff_busy_mirror_appointment_segment() returns trigger
language plpgsql as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        delete from staff_busy
        where appointment_id = old.appointment_id and segment_key = old.segment_key;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.active then
        -- An expired hold blocks nothing: its rows go before the new time is claimed.
        delete from staff_busy b using holds h
        where b.hold_id = h.hold_id and b.tenant_id = new.tenant_id
          and b.staff_id = new.staff_id and h.expires_at <= now();
        insert into staff_busy (tenant_id, staff_id, starts_at, ends_at, segment_key, appointment_id)
        values (new.tenant_id, new.staff_id, new.starts_at, new.ends_at, new.segment_key,
                new.appointment_id);
    end if;
    return null;
end;
$$;

create trigger appointment_segments_staff_busy
after insert or delete or update of active, staff_id, starts_at, ends_at on appointment_segments
for each row execute function staff_busy_mirror_appointment_segment();

-- A new event map says its staff member performs the service, as the fill above read
-- today's maps; only `PUT /staff` with `services` takes a service away.
create function staff_services_from_event_map() returns trigger
language plpgsql as $$
begin
    insert into staff_services (tenant_id, staff_id, service_id)
    values (new.tenant_id, new.staff_id, new.service_id)
    on conflict do nothing;
    return null;
end;
$$;

create trigger event_maps_performer
after insert on event_maps
for each row execute function staff_services_from_event_map();
