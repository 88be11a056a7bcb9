//! The command line of secrets and keys: where the master keys come from
//! (`PHASEBOOK_SECRET_KEY` or `--secret-key-file`, plus an extra decrypt-only key during a rotation),
//! `phasebook secrets …`, `phasebook tenant update` and `phasebook key list|revoke`.
//! Nothing here prints a secret except what it has just created.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{TimeDelta, Utc};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use super::rotation::{self, Reseal};
use super::{MasterKey, SecretBox};
use crate::auth;
use crate::cli::print_result;
use crate::server::connect;
use crate::store::Database;
use crate::store::keys::{ApiRateLimit, AuditEntry, Revocation, TenantUpdate};

/// Where the master keys come from. The key itself is read from the environment
/// (`PHASEBOOK_SECRET_KEY`) or a file, never from a flag, so it does not show in `ps`.
#[derive(Debug, Args)]
pub struct SecretKeyArgs {
    /// A file holding the master key (base64 or hex, 32 bytes); instead of
    /// PHASEBOOK_SECRET_KEY.
    #[arg(long, env = "PHASEBOOK_SECRET_KEY_FILE", global = true)]
    pub secret_key_file: Option<PathBuf>,
    /// A file holding a second master key that only decrypts (the other key of a
    /// rotation); instead of PHASEBOOK_EXTRA_SECRET_KEY.
    #[arg(long, env = "PHASEBOOK_EXTRA_SECRET_KEY_FILE", global = true)]
    pub extra_secret_key_file: Option<PathBuf>,
}

fn read_key(file: Option<&PathBuf>, variable: &str) -> Result<Option<MasterKey>> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the key file {}", path.display()))?,
        ),
        None => std::env::var(variable)
            .ok()
            .filter(|v| !v.trim().is_empty()),
    };
    text.map(|text| MasterKey::parse(&text).with_context(|| format!("reading {variable}")))
        .transpose()
}

impl SecretKeyArgs {
    /// The configured keys (possibly none).
    pub fn secret_box(&self) -> Result<SecretBox> {
        let primary = read_key(self.secret_key_file.as_ref(), "PHASEBOOK_SECRET_KEY")?;
        let extra = read_key(
            self.extra_secret_key_file.as_ref(),
            "PHASEBOOK_EXTRA_SECRET_KEY",
        )?;
        Ok(match (primary, extra) {
            (Some(primary), Some(extra)) => SecretBox::new(primary).with_decrypt_key(extra),
            (Some(primary), None) => SecretBox::new(primary),
            (None, Some(_)) => bail!(
                "an extra master key is configured but no main one: set \
                 PHASEBOOK_SECRET_KEY or pass --secret-key-file"
            ),
            (None, None) => SecretBox::without_key(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every tenant's secrets under a new master key. The configured keys still
    /// decrypt what they sealed, so serving goes on; see the rotation runbook.
    Rotate(RotateArgs),
    /// Print a new random master key (base64) and its id.
    GenerateKey(JsonOnly),
    /// How many secret columns each master key sealed, and which keys are configured.
    Status(JsonOnly),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The file holding the new master key.
    #[arg(long)]
    pub new_key_file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonOnly {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TenantUpdateArgs {
    #[arg(long)]
    pub tenant: Uuid,
    /// The salon's new Cal.com API key; it must be able to list the team's event types.
    #[arg(long)]
    pub calcom_api_key: Option<String>,
    #[arg(long)]
    pub calcom_base_url: Option<String>,
    #[arg(long)]
    pub calcom_team_id: Option<i64>,
    /// Generate a new webhook secret (printed once); the old one is accepted for the grace
    /// period.
    #[arg(long)]
    pub rotate_webhook_secret: bool,
    /// How long the old webhook secret stays valid after a rotation, e.g. `24h`.
    #[arg(long, default_value = "24h", value_parser = auth::parse_lifetime)]
    pub webhook_grace: TimeDelta,
    /// Requests per second allowed for each of the tenant's API keys (default 20).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// How many requests a key may send at once (default: twice the rate).
    #[arg(long, requires = "rate_limit")]
    pub rate_burst: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    #[arg(long)]
    pub tenant: Uuid,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    #[arg(long)]
    pub tenant: Uuid,
    /// The key's id (`api_key_id`, as `key list` shows it).
    #[arg(long)]
    pub key: Uuid,
    #[arg(long)]
    pub json: bool,
}

async fn open_database(url: &str) -> Result<Database> {
    let db = connect(url).await?;
    db.store().migrate().await.context("applying migrations")?;
    Ok(db)
}

/// Writes an audit entry for an action of the command line (no API key).
pub async fn record_cli_action(
    db: &Database,
    tenant_id: Uuid,
    action: &str,
    target: String,
) -> Result<()> {
    db.keys()
        .record_audit(&AuditEntry {
            audit_id: Uuid::now_v7(),
            tenant_id,
            api_key_id: None,
            action: action.to_string(),
            target,
            created_at: Utc::now(),
        })
        .await
        .context("writing the audit log")
}

pub async fn run(database_url: &str, command: SecretsCommand) -> Result<()> {
    match command {
        SecretsCommand::GenerateKey(args) => {
            let (key, text) = MasterKey::generate();
            print_result(
                args.json,
                json!({"key_id": key.id(), "secret_key": text.expose_secret()}),
                text.expose_secret(),
            );
            Ok(())
        }
        SecretsCommand::Status(args) => {
            let db = open_database(database_url).await?;
            let usage = rotation::key_usage(db.keys()).await?;
            let keys = super::current();
            db.close().await;
            print_result(
                args.json,
                json!({
                    "columns_by_key": usage,
                    "primary_key_id": keys.primary_id(),
                    "configured_key_ids": keys.key_ids(),
                }),
                &format!(
                    "secret columns by master key: {usage:?}\nconfigured keys: {:?} (primary {:?})",
                    keys.key_ids(),
                    keys.primary_id()
                ),
            );
            Ok(())
        }
        SecretsCommand::Rotate(args) => {
            let text = std::fs::read_to_string(&args.new_key_file).with_context(|| {
                format!("reading the new key file {}", args.new_key_file.display())
            })?;
            let new_key = MasterKey::parse(&text).context("reading the new master key")?;
            let new_id = new_key.id().to_string();
            let keys = super::current().as_ref().clone().with_primary(new_key);
            let db = open_database(database_url).await?;
            rotation::check_keys_cover_database(db.keys(), &keys)
                .await
                .map_err(anyhow::Error::msg)?;
            let (done, tenants) = rotation::reseal(db.keys(), &keys, Reseal::NotUnderPrimary)
                .await
                .context("re-encrypting the secrets")?;
            for tenant_id in &tenants {
                record_cli_action(
                    &db,
                    *tenant_id,
                    "rotate secrets",
                    format!("master key {new_id}"),
                )
                .await?;
            }
            let usage = rotation::key_usage(db.keys()).await?;
            db.close().await;
            print_result(
                args.json,
                json!({
                    "new_key_id": new_id,
                    "tenants": done.tenants,
                    "columns": done.columns,
                    "columns_by_key": usage,
                }),
                &format!(
                    "re-encrypted {} secret columns of {} tenants under master key {new_id}; \
                     secret columns by master key now: {usage:?}",
                    done.columns, done.tenants
                ),
            );
            Ok(())
        }
    }
}

pub async fn tenant_update(database_url: &str, args: TenantUpdateArgs) -> Result<()> {
    let db = open_database(database_url).await?;
    let current = db
        .event_maps()
        .tenant_calcom(args.tenant)
        .await
        .context("reading the tenant")?
        .with_context(|| format!("there is no tenant {}", args.tenant))?;
    let base_url = args
        .calcom_base_url
        .clone()
        .unwrap_or_else(|| current.base_url.clone());
    let team_id = args.calcom_team_id.or(current.team_id);
    let mut update = TenantUpdate {
        calcom_base_url: args.calcom_base_url.clone(),
        calcom_team_id: args.calcom_team_id,
        ..TenantUpdate::default()
    };
    let mut changed = Vec::new();
    let mut warning = None;
    if let Some(key) = &args.calcom_api_key {
        let key = SecretString::from(key.clone());
        let team_id = team_id.context(
            "the tenant has no Cal.com team id, so the new key cannot be checked: pass --calcom-team-id",
        )?;
        warning = check_calcom_key(&base_url, &key, team_id).await?;
        update.calcom_api_key = Some(key);
        changed.push("calcom_api_key");
    }
    if args.calcom_base_url.is_some() {
        changed.push("calcom_base_url");
    }
    if args.calcom_team_id.is_some() {
        changed.push("calcom_team_id");
    }
    let mut new_webhook_secret = None;
    let grace_until = Utc::now() + args.webhook_grace;
    if args.rotate_webhook_secret {
        let secret = SecretString::from(auth::generate_webhook_secret());
        new_webhook_secret = Some(secret.expose_secret().to_string());
        update.webhook_secret = Some((secret, grace_until));
        changed.push("webhook_secret");
    }
    if let Some(per_second) = args.rate_limit {
        if per_second == 0 || args.rate_burst == Some(0) {
            bail!("--rate-limit and --rate-burst must be at least 1");
        }
        update.rate_limit = Some(ApiRateLimit {
            per_second,
            burst: args.rate_burst.unwrap_or(per_second.saturating_mul(2)),
        });
        changed.push("rate_limit");
    }
    if changed.is_empty() {
        bail!(
            "nothing to update: pass --calcom-api-key, --calcom-base-url, --calcom-team-id, \
             --rotate-webhook-secret or --rate-limit"
        );
    }
    if !db.keys().update_tenant(args.tenant, &update).await? {
        bail!("there is no tenant {}", args.tenant);
    }
    record_cli_action(&db, args.tenant, "update tenant", changed.join(", ")).await?;
    db.close().await;
    let mut out = json!({"tenant_id": args.tenant, "updated": changed});
    let mut text = format!("tenant {} updated: {}", args.tenant, changed.join(", "));
    if let Some(secret) = &new_webhook_secret {
        out["webhook_secret"] = json!(secret);
        out["previous_webhook_secret_valid_until"] = json!(grace_until);
        text.push_str(&format!(
            "\nnew webhook secret (enter it in Cal.com; shown once): {secret}\n\
             the previous secret is accepted until {grace_until}"
        ));
    }
    if let Some(warning) = &warning {
        out["warning"] = json!(warning);
        text.push_str(&format!("\nwarning: {warning}"));
    }
    if let Some(limit) = update.rate_limit {
        out["rate_limit"] = json!({"per_second": limit.per_second, "burst": limit.burst});
    }
    print_result(args.json, out, &text);
    Ok(())
}

/// A replacement key must act as a Cal.com user (`/v2/me`) and be able to list the team's
/// event types, or nothing could be booked with it; the check runs before anything is
/// stored. Returns a warning when the key belongs to a plain team member.
async fn check_calcom_key(
    base_url: &str,
    key: &SecretString,
    team_id: i64,
) -> Result<Option<String>> {
    let client = calcom_client::CalcomClient::new(calcom_client::ClientConfig {
        base_url: base_url.to_string(),
        api_key: key.clone(),
        timeout: calcom_client::ClientConfig::DEFAULT_TIMEOUT,
        rate_limit: calcom_client::RateLimit::default(),
        read_retries: calcom_client::ClientConfig::DEFAULT_READ_RETRIES,
        budget: None,
        wait_when_rate_limited: false,
    })
    .context("building a Cal.com client")?;
    let refused = |e: calcom_client::CalcomError| {
        anyhow::anyhow!(
            "the new Cal.com key cannot list the event types of team {team_id}, so it was not \
             stored: {e}"
        )
    };
    client.me().await.map_err(refused)?;
    client
        .list_team_event_types(team_id, None)
        .await
        .map_err(refused)?;
    Ok(team_role_warning(&client, team_id).await)
}

/// A warning when the client's key belongs to a plain member of the team: Cal.com then
/// shows it only that member's own bookings, so reconciling another stylist's booking
/// finds nothing and ends in a false review. Also a warning when the role cannot be read.
pub async fn team_role_warning(
    client: &calcom_client::CalcomClient,
    team_id: i64,
) -> Option<String> {
    let me = match client.me().await {
        Ok(me) => me,
        Err(e) => return Some(format!("could not tell whose Cal.com key this is: {e}")),
    };
    match client.list_team_memberships(team_id).await {
        Ok(members) => match members.iter().find(|m| m.user_id == me.id) {
            Some(m) if m.sees_team_bookings() => None,
            Some(m) => Some(format!(
                "the Cal.com key belongs to {} (user {}), a plain {} of team {team_id}: it \
                 sees only that user's bookings, so reconciliation cannot find the other \
                 stylists' bookings and flags them for review; use an admin's or the \
                 owner's key",
                me.username, me.id, m.role
            )),
            None => Some(format!(
                "the Cal.com key belongs to {} (user {}), who is not a member of team {team_id}",
                me.username, me.id
            )),
        },
        Err(e) => Some(format!(
            "could not read the members of Cal.com team {team_id} with this key: {e}"
        )),
    }
}

pub async fn key_list(database_url: &str, args: KeyListArgs) -> Result<()> {
    let db = open_database(database_url).await?;
    if !db.store().tenant_exists(args.tenant).await? {
        bail!("there is no tenant {}", args.tenant);
    }
    let keys = db.keys().list_api_keys(args.tenant).await?;
    db.close().await;
    let now = Utc::now();
    let items: Vec<_> = keys
        .iter()
        .map(|k| {
            json!({
                "api_key_id": k.api_key_id,
                "key_prefix": k.key_prefix,
                "role": k.role.as_str(),
                "created_at": k.created_at,
                "last_used_at": k.last_used_at,
                "expires_at": k.expires_at,
                "revoked_at": k.revoked_at,
            })
        })
        .collect();
    let mut text = String::from(
        "key id                                prefix        role    created               last used             state",
    );
    for k in &keys {
        let state = match (k.revoked_at, k.expires_at) {
            (Some(at), _) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
            (None, Some(at)) if at <= now => format!("expired {}", at.format("%Y-%m-%d %H:%M")),
            (None, Some(at)) => format!("expires {}", at.format("%Y-%m-%d %H:%M")),
            (None, None) => "active".to_string(),
        };
        text.push_str(&format!(
            "\n{}  {:<12}  {:<6}  {}  {:<20}  {state}",
            k.api_key_id,
            k.key_prefix,
            k.role.as_str(),
            k.created_at.format("%Y-%m-%d %H:%M UTC"),
            k.last_used_at
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "never".to_string()),
        ));
    }
    print_result(
        args.json,
        json!({"tenant_id": args.tenant, "keys": items}),
        &text,
    );
    Ok(())
}

pub async fn key_revoke(database_url: &str, args: KeyRevokeArgs) -> Result<()> {
    let db = open_database(database_url).await?;
    // The command line is where a lost last ops key is replaced, so it may revoke it.
    let outcome = db
        .keys()
        .revoke_api_key(args.tenant, args.key, Utc::now(), false)
        .await?;
    match outcome {
        Revocation::NotFound => bail!("tenant {} has no key {}", args.tenant, args.key),
        Revocation::Revoked => {
            record_cli_action(&db, args.tenant, "revoke key", format!("key {}", args.key)).await?;
        }
        Revocation::AlreadyRevoked | Revocation::LastOpsKey => {}
    }
    db.close().await;
    let already = outcome == Revocation::AlreadyRevoked;
    print_result(
        args.json,
        json!({"api_key_id": args.key, "revoked": true, "already_revoked": already}),
        &if already {
            format!("key {} was already revoked", args.key)
        } else {
            format!(
                "key {} revoked; serving processes refuse it within {} s",
                args.key,
                crate::guard::AUTH_CACHE_TTL.as_secs()
            )
        },
    );
    Ok(())
}
