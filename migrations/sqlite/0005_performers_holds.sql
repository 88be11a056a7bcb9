-- Who performs what, per-tenant booking settings, and holds (see the PostgreSQL
-- migration). The guard over appointment and hold segments is the store's overlap check
-- inside an immediate write transaction; a hold past `expires_at` is ignored by it.
create table staff_services (
    tenant_id text not null,
    staff_id text not null,
    service_id text not null,
    primary key (tenant_id, staff_id, service_id),
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id) on delete cascade,
    foreign key (tenant_id, service_id) references services (tenant_id, service_id) on delete cascade
);
insert into staff_services (tenant_id, staff_id, service_id)
select distinct tenant_id, staff_id, service_id from event_maps;

alter table tenants add column country text;
alter table tenants add column booking_horizon_days integer not null default 365
    check (booking_horizon_days between 1 and 3650);

create table holds (
    hold_id text primary key,
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    service_id text not null,
    staff_id text not null,
    time_zone text not null,
    status text not null check (status in ('held', 'released', 'booked')),
    expires_at integer not null,
    appointment_id text,
    reservations_cleared_at integer,
    created_at integer not null,
    updated_at integer not null,
    foreign key (tenant_id, service_id) references services (tenant_id, service_id) on delete cascade,
    foreign key (tenant_id, staff_id) references staff (tenant_id, staff_id) on delete cascade
);
create index holds_uncleared on holds (expires_at) where reservations_cleared_at is null;

create table hold_segments (
    hold_id text not null references holds (hold_id) on delete cascade,
    segment_key text not null,
    tenant_id text not null,
    position integer not null,
    staff_id text not null,
    starts_at integer not null,
    ends_at integer not null,
    event_type_id integer not null,
    calcom_reservation_uid text,
    primary key (hold_id, segment_key),
    check (ends_at > starts_at)
);
create index hold_segments_staff_time on hold_segments (tenant_id, staff_id, starts_at);

-- A new event map says its staff member performs the service (see PostgreSQL).
create trigger event_maps_performer after insert on event_maps
begin
    insert or ignore into staff_services (tenant_id, staff_id, service_id)
    values (new.tenant_id, new.staff_id, new.service_id);
end;
