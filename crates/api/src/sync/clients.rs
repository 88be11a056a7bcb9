//! One Cal.com client per tenant, built on first use and kept: the client holds the
//! tenant's budget handle, so every job of a tenant in this process must share it. With
//! [`Budgets`] the budget is the key's row in the database, shared by every process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calcom_client::{CalcomClient, CalcomError, ClientConfig, RateLimit};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::budget::{Budgets, KeyBudget};
use crate::store::sync::TenantConnection;

/// How clients are configured (the same for every tenant).
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    pub timeout: Duration,
    pub rate_limit: RateLimit,
    pub read_retries: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout: ClientConfig::DEFAULT_TIMEOUT,
            rate_limit: RateLimit::default(),
            read_retries: ClientConfig::DEFAULT_READ_RETRIES,
        }
    }
}

struct Entry {
    /// Base URL and a hash of the key: a changed credential gets a fresh client.
    fingerprint: [u8; 32],
    client: Arc<CalcomClient>,
}

/// The per-tenant client cache.
pub struct ClientCache {
    settings: ClientSettings,
    budgets: Option<Budgets>,
    clients: Mutex<HashMap<Uuid, Entry>>,
}

impl ClientCache {
    pub fn new(settings: ClientSettings) -> Self {
        Self {
            settings,
            budgets: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Clients whose requests take their tokens from the database's shared budgets.
    pub fn shared(settings: ClientSettings, budgets: Budgets) -> Self {
        Self {
            budgets: Some(budgets),
            ..Self::new(settings)
        }
    }

    /// The tenant's client, creating it when missing or when its credentials changed.
    pub fn get(&self, tenant: &TenantConnection) -> Result<Arc<CalcomClient>, CalcomError> {
        let fingerprint = key_fingerprint(&tenant.base_url, &tenant.api_key);

        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = clients.get(&tenant.tenant_id)
            && entry.fingerprint == fingerprint
        {
            return Ok(entry.client.clone());
        }
        let client = Arc::new(CalcomClient::new(ClientConfig {
            base_url: tenant.base_url.clone(),
            api_key: tenant.api_key.clone(),
            timeout: self.settings.timeout,
            rate_limit: self.settings.rate_limit,
            read_retries: self.settings.read_retries,
            budget: self.budgets.as_ref().map(|budgets| {
                Arc::new(KeyBudget(
                    budgets.for_key(fingerprint, self.settings.rate_limit),
                )) as Arc<dyn calcom_client::Budget>
            }),
            wait_when_rate_limited: false,
        })?);
        clients.insert(
            tenant.tenant_id,
            Entry {
                fingerprint,
                client: client.clone(),
            },
        );
        Ok(client)
    }
}

/// SHA-256 of a Cal.com base URL and API key: names the key (in this cache and in the
/// budget table) without holding it.
pub fn key_fingerprint(base_url: &str, api_key: &secrecy::SecretString) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(base_url.as_bytes());
    hasher.update([0]);
    hasher.update(api_key.expose_secret().as_bytes());
    hasher.finalize().into()
}
