//! How a `CalcomClient` is set up: where Cal.com is, which key to use, how long to wait,
//! how fast to go and how often to retry a read.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::budget::Budget;

/// How many requests may start per window; Cal.com allows an API key 120 per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests: 120,
            per: Duration::from_secs(60),
        }
    }
}

/// Settings for one API key. `Debug` never shows the key (`SecretString` redacts it).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Without `/v2`, e.g. `https://api.cal.com`; request paths add `/v2/...`.
    pub base_url: String,
    pub api_key: SecretString,
    /// Whole-request timeout (connect, send, answer). Default 10 s.
    pub timeout: Duration,
    pub rate_limit: RateLimit,
    /// Extra attempts for GET requests only, after transport failures, lost answers and
    /// 5xx. Writes are never retried by the client. Default 2.
    pub read_retries: u32,
    /// Where each request takes its token; `None`: a budget of `rate_limit` in this
    /// process only. Give clients of one key the same budget (see [`Budget`]).
    pub budget: Option<Arc<dyn Budget>>,
    /// After a 429, wait for Cal.com's reset and send again instead of failing (Cal.com
    /// refuses a throttled request before doing anything, so a write is safe to repeat).
    /// For tools nobody waits on (`doctor`, `provision`). Default off.
    pub wait_when_rate_limited: bool,
}

impl ClientConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_READ_RETRIES: u32 = 2;

    /// A configuration with the default timeout, rate limit and read retries.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            timeout: Self::DEFAULT_TIMEOUT,
            rate_limit: RateLimit::default(),
            read_retries: Self::DEFAULT_READ_RETRIES,
            budget: None,
            wait_when_rate_limited: false,
        }
    }
}
