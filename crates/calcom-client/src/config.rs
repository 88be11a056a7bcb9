//! How a `CalcomClient` is set up: where Cal.com is, which key to use, how long to wait,
//! how fast to go and how often to retry a read.

use std::time::Duration;

use secrecy::SecretString;

/// How many requests may start per window; Cal.com allows an API key 120 per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }
}
