-- Secrets at rest, key lifecycle and the audit log (see the PostgreSQL migration). Instants
-- are unix milliseconds.
alter table api_keys add column expires_at integer;
alter table api_keys add column last_used_at integer;

alter table tenants add column previous_webhook_secret text;
alter table tenants add column previous_webhook_secret_expires_at integer;
alter table tenants add column api_rate_per_second integer check (api_rate_per_second > 0);
alter table tenants add column api_rate_burst integer check (api_rate_burst > 0);

create table audit_log (
    audit_id text primary key,
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    api_key_id text,
    action text not null,
    target text not null,
    created_at integer not null
);
create index audit_log_by_tenant on audit_log (tenant_id, created_at desc);
