-- Sync engine additions: the review reason of a segment, a resync's request to verify
-- booked segments in Cal.com, which worker made each attempt, and a notification so that
-- every replica's worker wakes up as soon as a job becomes due.
alter table appointment_segments add column review_reason text;
alter table sync_jobs add column verify_bookings boolean not null default false;
-- Set when the appointment changed while its job was leased: the holder runs it again.
alter table sync_jobs add column rerun boolean not null default false;
alter table sync_attempts add column worker text;
create index sync_jobs_expired_leases on sync_jobs (lease_expires_at) where state = 'leased';

create function phasebook_sync_job_due() returns trigger language plpgsql as $$
begin
    perform pg_notify('phasebook_sync', new.appointment_id::text);
    return null;
end
$$;

-- Only jobs due now (a retry scheduled for later would wake everyone for nothing); the
-- second of slack covers a client clock slightly ahead of the database's.
create trigger sync_jobs_due_notify
    after insert or update of state, run_at on sync_jobs
    for each row
    when (new.state = 'pending' and new.run_at <= now() + interval '1 second')
    execute function phasebook_sync_job_due();
