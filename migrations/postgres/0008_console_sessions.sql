-- Ops console sessions. A browser that pasted an ops or viewer key holds a random token in
-- an HttpOnly cookie; only the token's SHA-256 is stored, with the SHA-256 of the key the
-- session was opened with, so the key is looked up again on every request (revoking it
-- ends its sessions). Each session has its own CSRF token and an absolute expiry.
create table console_sessions (
    token_hash text primary key,
    tenant_id uuid not null references tenants (tenant_id) on delete cascade,
    key_hash text not null,
    csrf_token text not null,
    created_at timestamptz not null,
    expires_at timestamptz not null
);
create index console_sessions_expiry on console_sessions (expires_at);
