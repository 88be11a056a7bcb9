//! API keys after creation (list, revoke, expiry, last use), tenants' encrypted secrets
//! (rotation, webhook secrets with a grace period, rate limits) and the audit log of ops
//! actions: the [`KeyStore`] trait and its implementation written once for both backends
//! ([`key_store!`], invoked by `pg.rs` and `sqlite.rs`); only the binding of ids and
//! instants differs (uuid/timestamptz on PostgreSQL, text/unix milliseconds on SQLite).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Database, Role, Store, StoreResult};
use crate::secrets::{self, SecretField};

/// A tenant's own request limit for each of its API keys (token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRateLimit {
    /// Tokens added per second.
    pub per_second: u32,
    /// Bucket size: how many requests may arrive at once.
    pub burst: u32,
}

/// An API key as listed: never the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub api_key_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What revoking a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    AlreadyRevoked,
    NotFound,
    /// Refused: the key is the tenant's last usable ops key.
    LastOpsKey,
}

/// A tenant's secret columns exactly as stored (ciphertext, or plain text from before
/// encryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecrets {
    pub tenant_id: Uuid,
    pub calcom_api_key: String,
    pub webhook_secret: String,
    pub previous_webhook_secret: Option<String>,
}

/// A change to a tenant's Cal.com connection or limits; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    pub calcom_api_key: Option<SecretString>,
    pub calcom_base_url: Option<String>,
    pub calcom_team_id: Option<i64>,
    /// A new webhook secret; the current one stays valid until the instant given.
    pub webhook_secret: Option<(SecretString, DateTime<Utc>)>,
    pub rate_limit: Option<ApiRateLimit>,
}

/// One ops action. `api_key_id` is None for the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub audit_id: Uuid,
    pub tenant_id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub created_at: DateTime<Utc>,
}

/// Key lifecycle, tenant secrets and the audit log. Every call but the secret listing is
/// scoped to one tenant.
#[async_trait]
pub trait KeyStore: Store {
    async fn list_api_keys(&self, tenant_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key of the tenant. With `keep_last_ops`, the tenant's last unrevoked,
    /// unexpired ops key is refused.
    async fn revoke_api_key(
        &self,
        tenant_id: Uuid,
        api_key_id: Uuid,
        now: DateTime<Utc>,
        keep_last_ops: bool,
    ) -> StoreResult<Revocation>;
    /// Records that a key was used (callers limit this to once a minute per key).
    async fn touch_api_key(&self, api_key_id: Uuid, now: DateTime<Utc>) -> StoreResult<()>;

    /// Secret columns as stored, of one tenant or (None) of all.
    async fn stored_secrets(&self, tenant_id: Option<Uuid>) -> StoreResult<Vec<StoredSecrets>>;
    /// Replaces a tenant's secret columns if they still hold `old` (a concurrent update
    /// wins); true when replaced.
    async fn replace_stored_secrets(
        &self,
        old: &StoredSecrets,
        new: &StoredSecrets,
    ) -> StoreResult<bool>;
    /// Applies `update` (secrets are sealed here); false when there is no such tenant.
    async fn update_tenant(&self, tenant_id: Uuid, update: &TenantUpdate) -> StoreResult<bool>;
    /// The secrets a webhook delivery may be signed with now: the current one and, during
    /// its grace period, the previous. Empty for an unknown tenant.
    async fn webhook_secrets(
        &self,
        tenant_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SecretString>>;

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The tenant's audit log, newest first.
    async fn list_audit(&self, tenant_id: Uuid, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}

impl Database {
    /// The key-lifecycle view of the configured backend.
    pub fn keys(&self) -> &dyn KeyStore {
        match self {
            Self::Postgres(s) => s,
            Self::Sqlite(s) => s,
        }
    }
}

/// The owner of an unrevoked key, with its tenant's request limit.
pub(crate) const FIND_API_KEY: &str = "select k.api_key_id, k.tenant_id, k.role, k.expires_at,
        t.api_rate_per_second, t.api_rate_burst
     from api_keys k join tenants t on t.tenant_id = k.tenant_id
     where k.key_hash = $1 and k.revoked_at is null";

pub(crate) const CREATE_API_KEY: &str = "insert into api_keys (api_key_id, tenant_id, role,
        key_hash, key_prefix, created_at, expires_at)
     values ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const CREATE_TENANT: &str = "insert into tenants (tenant_id, name, calcom_api_key,
        calcom_base_url, calcom_team_id, webhook_secret, created_at)
     values ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const LIST_KEYS: &str =
    "select api_key_id, tenant_id, role, key_prefix, created_at, expires_at,
        last_used_at, revoked_at
     from api_keys where tenant_id = $1 order by created_at, api_key_id";

/// Revokes unless it would leave no usable ops key ($4: whether that check applies).
pub(crate) const REVOKE_KEY: &str = "update api_keys set revoked_at = $3
     where tenant_id = $1 and api_key_id = $2 and revoked_at is null
       and (not $4 or role <> 'ops' or exists (
           select 1 from api_keys o
           where o.tenant_id = $1 and o.api_key_id <> $2 and o.role = 'ops'
             and o.revoked_at is null and (o.expires_at is null or o.expires_at > $3)))";

/// Puts concurrent revocations of one tenant in line (PostgreSQL appends `for update`;
/// SQLite's `begin immediate` already does).
pub(crate) const LOCK_TENANT: &str = "select 1 from tenants where tenant_id = $1";

pub(crate) const KEY_STATE: &str =
    "select revoked_at from api_keys where tenant_id = $1 and api_key_id = $2";

pub(crate) const TOUCH_KEY: &str = "update api_keys set last_used_at = $2 where api_key_id = $1";

pub(crate) const STORED_SECRETS: &str = "select tenant_id, calcom_api_key, webhook_secret,
        previous_webhook_secret
     from tenants where ($1 or tenant_id = $2) order by created_at, tenant_id";

pub(crate) const REPLACE_SECRETS: &str = "update tenants
     set calcom_api_key = $2, webhook_secret = $3, previous_webhook_secret = $4
     where tenant_id = $1 and calcom_api_key = $5 and webhook_secret = $6
       and previous_webhook_secret is not distinct from $7";

pub(crate) const UPDATE_TENANT: &str = "update tenants set
        calcom_api_key = coalesce($2, calcom_api_key),
        calcom_base_url = coalesce($3, calcom_base_url),
        calcom_team_id = coalesce($4, calcom_team_id),
        previous_webhook_secret = case when $5 is null then previous_webhook_secret
                                       else webhook_secret end,
        previous_webhook_secret_expires_at = case when $5 is null
                                       then previous_webhook_secret_expires_at else $6 end,
        webhook_secret = coalesce($5, webhook_secret),
        api_rate_per_second = coalesce($7, api_rate_per_second),
        api_rate_burst = coalesce($8, api_rate_burst)
     where tenant_id = $1";

pub(crate) const WEBHOOK_SECRETS: &str = "select webhook_secret, previous_webhook_secret,
        previous_webhook_secret_expires_at
     from tenants where tenant_id = $1";

pub(crate) const RECORD_AUDIT: &str =
    "insert into audit_log (audit_id, tenant_id, api_key_id, action,
        target, created_at)
     values ($1, $2, $3, $4, $5, $6)";

pub(crate) const LIST_AUDIT: &str =
    "select audit_id, tenant_id, api_key_id, action, target, created_at
     from audit_log where tenant_id = $1 order by created_at desc, audit_id desc limit $2";

pub(crate) fn sealed(
    tenant_id: Uuid,
    field: SecretField,
    value: &Option<SecretString>,
) -> StoreResult<Option<String>> {
    value
        .as_ref()
        .map(|v| secrets::seal(tenant_id, field, v))
        .transpose()
        .map_err(Into::into)
}

/// The current secret and, until its grace period ends, the previous one.
pub(crate) fn open_webhook_secrets(
    tenant_id: Uuid,
    current: &str,
    previous: Option<&str>,
    previous_valid: bool,
) -> StoreResult<Vec<SecretString>> {
    let keys = secrets::current();
    let mut out = vec![keys.open(tenant_id, SecretField::WebhookSecret, current)?];
    if let (Some(previous), true) = (previous, previous_valid) {
        out.push(keys.open(tenant_id, SecretField::WebhookSecret, previous)?);
    }
    Ok(out)
}

/// A tenant's limit from its two columns; None when the tenant uses the default.
pub(crate) fn rate_limit(per_second: Option<i64>, burst: Option<i64>) -> Option<ApiRateLimit> {
    let per_second = u32::try_from(per_second?).ok()?;
    Some(ApiRateLimit {
        per_second,
        burst: burst
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(per_second.saturating_mul(2)),
    })
}

/// [`KeyStore`] for one backend, through the codec of the invoking module (see
/// `shared.rs`).
macro_rules! key_store {
    (store = $store:ty, for_update = $for_update:literal) => {
        #[async_trait]
        impl super::keys::KeyStore for $store {
            async fn list_api_keys(
                &self,
                tenant_id: Uuid,
            ) -> StoreResult<Vec<super::keys::ApiKeyRecord>> {
                let rows = sqlx::query(super::keys::LIST_KEYS)
                    .bind(db_id(tenant_id))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(super::keys::ApiKeyRecord {
                            api_key_id: get_id(row, "api_key_id")?,
                            tenant_id: get_id(row, "tenant_id")?,
                            role: parse_role(&row.try_get::<String, _>("role")?)?,
                            key_prefix: row.try_get("key_prefix")?,
                            created_at: get_at(row, "created_at")?,
                            expires_at: get_opt_at(row, "expires_at")?,
                            last_used_at: get_opt_at(row, "last_used_at")?,
                            revoked_at: get_opt_at(row, "revoked_at")?,
                        })
                    })
                    .collect()
            }

            async fn revoke_api_key(
                &self,
                tenant_id: Uuid,
                api_key_id: Uuid,
                now: DateTime<Utc>,
                keep_last_ops: bool,
            ) -> StoreResult<super::keys::Revocation> {
                use super::keys::Revocation;
                let mut tx = self.begin_write().await?;
                // Two ops keys revoking each other at once must not both succeed: the
                // tenant's lock puts them in line.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{}{}",
                    super::keys::LOCK_TENANT,
                    $for_update
                )))
                .bind(db_id(tenant_id))
                .execute(&mut *tx)
                .await?;
                let revoked = sqlx::query(super::keys::REVOKE_KEY)
                    .bind(db_id(tenant_id))
                    .bind(db_id(api_key_id))
                    .bind(db_at(now))
                    .bind(keep_last_ops)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let outcome = if revoked == 1 {
                    Revocation::Revoked
                } else {
                    let state = sqlx::query(super::keys::KEY_STATE)
                        .bind(db_id(tenant_id))
                        .bind(db_id(api_key_id))
                        .fetch_optional(&mut *tx)
                        .await?;
                    match state {
                        None => Revocation::NotFound,
                        Some(row) if get_opt_at(&row, "revoked_at")?.is_some() => {
                            Revocation::AlreadyRevoked
                        }
                        Some(_) => Revocation::LastOpsKey,
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn touch_api_key(&self, api_key_id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
                sqlx::query(super::keys::TOUCH_KEY)
                    .bind(db_id(api_key_id))
                    .bind(db_at(now))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn stored_secrets(
                &self,
                tenant_id: Option<Uuid>,
            ) -> StoreResult<Vec<super::keys::StoredSecrets>> {
                let rows = sqlx::query(super::keys::STORED_SECRETS)
                    .bind(tenant_id.is_none())
                    .bind(tenant_id.map(db_id))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(super::keys::StoredSecrets {
                            tenant_id: get_id(row, "tenant_id")?,
                            calcom_api_key: row.try_get("calcom_api_key")?,
                            webhook_secret: row.try_get("webhook_secret")?,
                            previous_webhook_secret: row.try_get("previous_webhook_secret")?,
                        })
                    })
                    .collect()
            }

            async fn replace_stored_secrets(
                &self,
                old: &super::keys::StoredSecrets,
                new: &super::keys::StoredSecrets,
            ) -> StoreResult<bool> {
                let replaced = sqlx::query(super::keys::REPLACE_SECRETS)
                    .bind(db_id(old.tenant_id))
                    .bind(&new.calcom_api_key)
                    .bind(&new.webhook_secret)
                    .bind(&new.previous_webhook_secret)
                    .bind(&old.calcom_api_key)
                    .bind(&old.webhook_secret)
                    .bind(&old.previous_webhook_secret)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(replaced == 1)
            }

            async fn update_tenant(
                &self,
                tenant_id: Uuid,
                update: &super::keys::TenantUpdate,
            ) -> StoreResult<bool> {
                let api_key = super::keys::sealed(
                    tenant_id,
                    SecretField::CalcomApiKey,
                    &update.calcom_api_key,
                )?;
                let webhook = super::keys::sealed(
                    tenant_id,
                    SecretField::WebhookSecret,
                    &update.webhook_secret.as_ref().map(|(s, _)| s.clone()),
                )?;
                let updated = sqlx::query(super::keys::UPDATE_TENANT)
                    .bind(db_id(tenant_id))
                    .bind(api_key)
                    .bind(&update.calcom_base_url)
                    .bind(update.calcom_team_id)
                    .bind(webhook)
                    .bind(
                        update
                            .webhook_secret
                            .as_ref()
                            .map(|(_, until)| db_at(*until)),
                    )
                    .bind(update.rate_limit.map(|r| i64::from(r.per_second)))
                    .bind(update.rate_limit.map(|r| i64::from(r.burst)))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(updated == 1)
            }

            async fn webhook_secrets(
                &self,
                tenant_id: Uuid,
                now: DateTime<Utc>,
            ) -> StoreResult<Vec<secrecy::SecretString>> {
                let Some(row) = sqlx::query(super::keys::WEBHOOK_SECRETS)
                    .bind(db_id(tenant_id))
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(Vec::new());
                };
                let until = get_opt_at(&row, "previous_webhook_secret_expires_at")?;
                super::keys::open_webhook_secrets(
                    tenant_id,
                    row.try_get("webhook_secret")?,
                    row.try_get("previous_webhook_secret")?,
                    until.is_some_and(|until| until > now),
                )
            }

            async fn record_audit(&self, e: &super::keys::AuditEntry) -> StoreResult<()> {
                sqlx::query(super::keys::RECORD_AUDIT)
                    .bind(db_id(e.audit_id))
                    .bind(db_id(e.tenant_id))
                    .bind(e.api_key_id.map(db_id))
                    .bind(&e.action)
                    .bind(&e.target)
                    .bind(db_at(e.created_at))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_audit(
                &self,
                tenant_id: Uuid,
                limit: u32,
            ) -> StoreResult<Vec<super::keys::AuditEntry>> {
                let rows = sqlx::query(super::keys::LIST_AUDIT)
                    .bind(db_id(tenant_id))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(super::keys::AuditEntry {
                            audit_id: get_id(row, "audit_id")?,
                            tenant_id: get_id(row, "tenant_id")?,
                            api_key_id: get_opt_id(row, "api_key_id")?,
                            action: row.try_get("action")?,
                            target: row.try_get("target")?,
                            created_at: get_at(row, "created_at")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use key_store;
