//! One Cal.com client per tenant, built on first use and kept: the client holds the
//! tenant's rate limiter, so every job of a tenant in this process must share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calcom_client::{CalcomClient, CalcomError, ClientConfig, RateLimit};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

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
    clients: Mutex<HashMap<Uuid, Entry>>,
}

impl ClientCache {
    pub fn new(settings: ClientSettings) -> Self {
        Self {
            settings,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's client, creating it when missing or when its credentials changed.
    pub fn get(&self, tenant: &TenantConnection) -> Result<Arc<CalcomClient>, CalcomError> {
        let mut hasher = Sha256::new();
        hasher.update(tenant.base_url.as_bytes());
        hasher.update([0]);
        hasher.update(tenant.api_key.expose_secret().as_bytes());
        let fingerprint: [u8; 32] = hasher.finalize().into();

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
