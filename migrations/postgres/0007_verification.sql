-- The verification sweep: when phasebook last compared a tenant's coming bookings with
-- Cal.com. Claimed atomically, so one replica sweeps a tenant per interval.
alter table tenants add column verified_at timestamptz;
