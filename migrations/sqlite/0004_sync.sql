-- Sync engine additions (see the PostgreSQL migration; SQLite has a single process, which
-- wakes its worker in memory, so there is no notification trigger).
alter table appointment_segments add column review_reason text;
alter table sync_jobs add column verify_bookings integer not null default 0;
-- Set when the appointment changed while its job was leased: the holder runs it again.
alter table sync_jobs add column rerun integer not null default 0;
alter table sync_attempts add column worker text;
create index sync_jobs_expired_leases on sync_jobs (lease_expires_at) where state = 'leased';
