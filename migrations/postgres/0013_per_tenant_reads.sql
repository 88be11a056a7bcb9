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

-- Every new appointment segment (the mirror trigger) and every new hold first clears the
-- expired holds of its staff member. That read walked every busy row the staff member ever
-- had through the exclusion index, to find the few that are holds: with a year of
-- appointments, most of a create's time. Hold rows get their own index, and the reads go
-- through it.
create index staff_busy_holds_by_staff on staff_busy (tenant_id, staff_id)
    where hold_id is not null;

-- An expired hold blocks nothing: its rows go before the new time is claimed. One rule for
-- the mirror triggers below and for a new hold (the hold store calls it too).
-- (PL/pgSQL keeps the statement's plan for the session; a SQL function would plan it on
-- every create.)
create function staff_busy_drop_expired_holds(
    p_tenant_id uuid, p_staff_ids text[], p_now timestamptz) returns void
language plpgsql as $$
begin
    delete from staff_busy b using holds h
    where b.hold_id is not null and b.hold_id = h.hold_id and h.expires_at <= p_now
      and b.tenant_id = p_tenant_id and b.staff_id = any(p_staff_ids);
end;
$$;

-- A create inserts all of an appointment's segments in one statement; the mirror of an
-- insert now runs once for that statement (one clearing, one insert) instead of once per
-- segment. Updates and deletes keep the per-row mirror.
create function staff_busy_mirror_new_segments() returns trigger
language plpgsql as $$
begin
    perform staff_busy_drop_expired_holds(tenant_id, array_agg(distinct staff_id), now())
    from new_segments where active group by tenant_id;
    insert into staff_busy (tenant_id, staff_id, starts_at, ends_at, segment_key, appointment_id)
    select tenant_id, staff_id, starts_at, ends_at, segment_key, appointment_id
    from new_segments where active;
    return null;
end;
$$;

create or replace function staff_busy_mirror_appointment_segment() returns trigger
language plpgsql as $$
begin
    delete from staff_busy
    where appointment_id = old.appointment_id and segment_key = old.segment_key;
    if tg_op = 'UPDATE' and new.active then
        perform staff_busy_drop_expired_holds(new.tenant_id, array[new.staff_id], now());
        insert into staff_busy (tenant_id, staff_id, starts_at, ends_at, segment_key, appointment_id)
        values (new.tenant_id, new.staff_id, new.starts_at, new.ends_at, new.segment_key,
                new.appointment_id);
    end if;
    return null;
end;
$$;

drop trigger appointment_segments_staff_busy on appointment_segments;
create trigger appointment_segments_staff_busy
after delete or update of active, staff_id, starts_at, ends_at on appointment_segments
for each row execute function staff_busy_mirror_appointment_segment();
create trigger appointment_segments_staff_busy_new
after insert on appointment_segments
referencing new table as new_segments
for each statement execute function staff_busy_mirror_new_segments();
