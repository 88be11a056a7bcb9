-- The verification sweep: when phasebook last compared a tenant's coming bookings with
-- Cal.com (milliseconds since the epoch, as every SQLite timestamp here).
alter table tenants add column verified_at integer;
