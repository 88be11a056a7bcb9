//! Bearer API keys: how they are made (random, shown once), stored (SHA-256 only) and
//! checked on every request, and which role may do what.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{NewApiKey, NewTenant, Role, Store, StoreResult};

/// Every key starts with this, so leaked keys are easy to spot by secret scanners.
pub const KEY_PREFIX: &str = "pb_live_";
const KEY_RANDOM_CHARS: usize = 32;

/// A fresh random key: `pb_live_` and 32 url-safe characters (~190 bits).
pub fn generate_api_key() -> String {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

/// A fresh webhook secret: `whsec_` and 32 random characters.
pub fn generate_webhook_secret() -> String {
    generate_api_key().replacen(KEY_PREFIX, "whsec_", 1)
}

/// The only form of a key that is stored: lowercase hex SHA-256.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What a request wants to do, checked against the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read appointments, services and staff.
    Read,
    /// Create and cancel appointments.
    BookAppointments,
    /// Define services and staff, and everything else ops does.
    Operate,
}

impl Permission {
    pub fn allowed_for(self, role: Role) -> bool {
        match self {
            Self::Read => true,
            Self::BookAppointments => matches!(role, Role::Agent | Role::Ops),
            Self::Operate => role == Role::Ops,
        }
    }

    fn needed_role(self) -> &'static str {
        match self {
            Self::Read => "viewer",
            Self::BookAppointments => "agent or ops",
            Self::Operate => "ops",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub role: Role,
    pub api_key_id: Uuid,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.allowed_for(self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                needed: permission.needed_role(),
            })
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The guard middleware authenticated the key already (and limited its rate).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(*caller);
        }
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let (caller, _) = state.guard.authenticate(state, key).await?;
        Ok(caller)
    }
}

/// A tenant's Cal.com connection, as given to `phasebook tenant create`.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    pub calcom_api_key: SecretString,
    pub calcom_base_url: String,
    pub calcom_team_id: Option<i64>,
}

/// A key as shown once to its creator.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub api_key_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    pub api_key: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates a tenant and its first ops key.
pub async fn create_tenant(store: &dyn Store, settings: TenantSettings) -> StoreResult<IssuedKey> {
    let tenant_id = Uuid::now_v7();
    store
        .create_tenant(&NewTenant {
            tenant_id,
            name: settings.name,
            calcom_api_key: settings.calcom_api_key,
            calcom_base_url: settings.calcom_base_url,
            calcom_team_id: settings.calcom_team_id,
            webhook_secret: SecretString::from(generate_webhook_secret()),
            created_at: Utc::now(),
        })
        .await?;
    issue_api_key(store, tenant_id, Role::Ops).await
}

/// Creates a key for an existing tenant; the caller checks the tenant exists.
pub async fn issue_api_key(
    store: &dyn Store,
    tenant_id: Uuid,
    role: Role,
) -> StoreResult<IssuedKey> {
    issue_expiring_api_key(store, tenant_id, role, None).await
}

/// Creates a key that is refused after `expires_at` (never, when None).
pub async fn issue_expiring_api_key(
    store: &dyn Store,
    tenant_id: Uuid,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> StoreResult<IssuedKey> {
    let key = generate_api_key();
    let api_key_id = Uuid::now_v7();
    store
        .create_api_key(&NewApiKey {
            api_key_id,
            tenant_id,
            role,
            key_hash: hash_api_key(&key),
            key_prefix: key.chars().take(KEY_PREFIX.len() + 4).collect(),
            created_at: Utc::now(),
            expires_at,
        })
        .await?;
    Ok(IssuedKey {
        api_key_id,
        tenant_id,
        role,
        api_key: SecretString::from(key),
        expires_at,
    })
}

/// Reads a lifetime such as `90d`, `12h`, `30m` or `2w` (a positive whole number and a
/// unit).
pub fn parse_lifetime(text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; use e.g. 90d, 12h, 30m or 2w"))?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} does not start with a positive whole number"))?;
    let delta = match unit {
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        other => return Err(format!("{other:?} is not a unit; use m, h, d or w")),
    };
    delta
        .filter(|d| *d <= TimeDelta::days(3660))
        .ok_or_else(|| format!("{text:?} is longer than ten years"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hash_to_hex() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        assert_ne!(a, b);
        let hash = hash_api_key(&a);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a));
    }

    #[test]
    fn roles_map_to_permissions() {
        assert!(Permission::Read.allowed_for(Role::Viewer));
        assert!(!Permission::BookAppointments.allowed_for(Role::Viewer));
        assert!(Permission::BookAppointments.allowed_for(Role::Agent));
        assert!(!Permission::Operate.allowed_for(Role::Agent));
        assert!(Permission::Operate.allowed_for(Role::Ops));
    }

    #[test]
    fn lifetimes_read_minutes_hours_days_and_weeks() {
        assert_eq!(parse_lifetime("90d"), Ok(TimeDelta::days(90)));
        assert_eq!(parse_lifetime("12h"), Ok(TimeDelta::hours(12)));
        assert_eq!(parse_lifetime("30m"), Ok(TimeDelta::minutes(30)));
        assert_eq!(parse_lifetime("2w"), Ok(TimeDelta::weeks(2)));
        for bad in ["90", "d", "0d", "-1d", "5y", "99999w"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
