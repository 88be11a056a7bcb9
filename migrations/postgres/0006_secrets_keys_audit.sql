-- Secrets at rest, key lifecycle and the audit log. The Cal.com key and webhook secret
-- columns keep their names and hold ciphertext from now on (`pbsec:v1:<key id>:…`); the
-- rows are encrypted by the application on its next start or `phasebook migrate` with the
-- master key set, since SQL never sees that key.
alter table api_keys add column expires_at timestamptz;
alter table api_keys add column last_used_at timestamptz;

-- A rotated webhook secret stays valid until its grace period ends.
alter table tenants add column previous_webhook_secret text;
alter table tenants add column previous_webhook_secret_expires_at timestamptz;
-- The tenant's request limit per API key; null: the server's default.
alter table tenants add column api_rate_per_second integer check (api_rate_per_second > 0);
alter table tenants add column api_rate_burst integer check (api_rate_burst > 0);

-- Who (an API key, or the command line when null) did what to what, and when. Never a
-- secret: targets are paths and ids.
create table audit_log (
    audit_id uuid primary key,
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    api_key_id uuid,
    action text not null,
    target text not null,
    created_at timestamptz not null default now()
);
create index audit_log_by_tenant on audit_log (tenant_id, created_at desc);
