//! Re-encrypting stored secrets: plain text left from before encryption (on every
//! migration, when a master key is configured) and every row under a new master key
//! (`phasebook secrets rotate`). Each row is swapped only if nobody changed it meanwhile,
//! so a rotation can run while replicas serve and ops update tenants.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{SecretBox, SecretError, SecretField, sealed_key_id};
use crate::store::StoreResult;
use crate::store::keys::{KeyStore, StoredSecrets};

/// The label [`key_usage`] gives plain-text columns.
pub const PLAIN_TEXT: &str = "plain text";

/// How many secret columns each master key id sealed (plain text under [`PLAIN_TEXT`]).
pub async fn key_usage(store: &dyn KeyStore) -> StoreResult<BTreeMap<String, usize>> {
    let mut usage = BTreeMap::new();
    for row in store.stored_secrets(None).await? {
        for value in columns(&row) {
            let label = sealed_key_id(value).unwrap_or(PLAIN_TEXT).to_string();
            *usage.entry(label).or_insert(0) += 1;
        }
    }
    Ok(usage)
}

fn columns(row: &StoredSecrets) -> impl Iterator<Item = &str> {
    [
        Some(row.calcom_api_key.as_str()),
        Some(row.webhook_secret.as_str()),
        row.previous_webhook_secret.as_deref(),
    ]
    .into_iter()
    .flatten()
}

/// Fails with a message ops can act on when `keys` cannot open every stored secret: no
/// master key while ciphertext exists, or a ciphertext sealed by a key not configured.
pub async fn check_keys_cover_database(
    store: &dyn KeyStore,
    keys: &SecretBox,
) -> Result<(), String> {
    let usage = key_usage(store).await.map_err(|e| e.to_string())?;
    let sealed: Vec<&String> = usage.keys().filter(|k| *k != PLAIN_TEXT).collect();
    if sealed.is_empty() {
        return Ok(());
    }
    if !keys.has_key() {
        return Err(format!(
            "this database holds encrypted Cal.com keys and webhook secrets, but no master \
             key is configured: set PHASEBOOK_SECRET_KEY or pass --secret-key-file \
             (master key ids in use: {})",
            join(&sealed)
        ));
    }
    let missing: Vec<&String> = sealed.into_iter().filter(|k| !keys.knows(k)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "secrets in this database were encrypted with master key(s) {} which are not \
             configured (configured: {}); add the old key with --extra-secret-key-file",
            join(&missing),
            keys.key_ids().join(", ")
        ));
    }
    Ok(())
}

fn join(ids: &[&String]) -> String {
    ids.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a pass over the tenants changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Tenants with at least one column rewritten.
    pub tenants: usize,
    pub columns: usize,
}

/// Which columns a pass rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Plain text only (the migration step).
    PlainText,
    /// Everything not sealed by the primary key (a rotation).
    NotUnderPrimary,
}

/// Rewrites the chosen columns of every tenant under `keys`' primary key. Rows changed
/// concurrently are read again and retried; the tenants touched are returned with the
/// counts.
pub async fn reseal(
    store: &dyn KeyStore,
    keys: &SecretBox,
    which: Reseal,
) -> StoreResult<(Resealed, Vec<Uuid>)> {
    let Some(primary) = keys.primary_id().map(str::to_string) else {
        return Ok((Resealed::default(), Vec::new()));
    };
    let mut done = Resealed::default();
    let mut touched = Vec::new();
    for mut row in store.stored_secrets(None).await? {
        for _attempt in 0..5 {
            let (new, changed) = resealed_row(&row, keys, &primary, which)?;
            if changed == 0 {
                break;
            }
            if store.replace_stored_secrets(&row, &new).await? {
                done.tenants += 1;
                done.columns += changed;
                touched.push(row.tenant_id);
                break;
            }
            match store.stored_secrets(Some(row.tenant_id)).await?.pop() {
                Some(fresh) => row = fresh,
                None => break,
            }
        }
    }
    Ok((done, touched))
}

fn resealed_row(
    row: &StoredSecrets,
    keys: &SecretBox,
    primary: &str,
    which: Reseal,
) -> Result<(StoredSecrets, usize), SecretError> {
    let mut changed = 0;
    let mut one = |value: &str, field: SecretField| -> Result<String, SecretError> {
        let rewrite = match (sealed_key_id(value), which) {
            (None, _) => true,
            (Some(_), Reseal::PlainText) => false,
            (Some(id), Reseal::NotUnderPrimary) => id != primary,
        };
        if !rewrite {
            return Ok(value.to_string());
        }
        changed += 1;
        let plain = match sealed_key_id(value) {
            None => value.to_string(),
            Some(_) => keys
                .open(row.tenant_id, field, value)?
                .expose_secret()
                .to_string(),
        };
        keys.seal(row.tenant_id, field, &plain)
    };
    let new = StoredSecrets {
        tenant_id: row.tenant_id,
        calcom_api_key: one(&row.calcom_api_key, SecretField::CalcomApiKey)?,
        webhook_secret: one(&row.webhook_secret, SecretField::WebhookSecret)?,
        previous_webhook_secret: row
            .previous_webhook_secret
            .as_deref()
            .map(|v| one(v, SecretField::WebhookSecret))
            .transpose()?,
    };
    Ok((new, changed))
}

/// The migration step: with a master key, encrypts every plain-text secret; without one,
/// warns when plain text remains.
pub async fn seal_plaintext_on_migrate(store: &dyn KeyStore) -> StoreResult<()> {
    let keys = super::current();
    if !keys.has_key() {
        if let Some(columns) = key_usage(store).await?.get(PLAIN_TEXT) {
            tracing::warn!(
                columns,
                "Cal.com keys and webhook secrets are stored in plain text; set \
                 PHASEBOOK_SECRET_KEY and run `phasebook migrate` to encrypt them"
            );
        }
        return Ok(());
    }
    let (done, _) = reseal(store, &keys, Reseal::PlainText).await?;
    if done.columns > 0 {
        tracing::info!(
            tenants = done.tenants,
            columns = done.columns,
            key_id = keys.primary_id().unwrap_or_default(),
            "plain-text secrets encrypted"
        );
    }
    Ok(())
}
