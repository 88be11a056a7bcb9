-- Ops console sessions; see the PostgreSQL migration. Instants are unix milliseconds.
create table console_sessions (
    token_hash text primary key,
    tenant_id text not null references tenants (tenant_id) on delete cascade,
    key_hash text not null,
    csrf_token text not null,
    created_at integer not null,
    expires_at integer not null
);
create index console_sessions_expiry on console_sessions (expires_at);
