//! The sync worker's command-line and `PHASEBOOK_SYNC_*` settings, shared by
//! `phasebook serve` and `phasebook worker`.

use std::time::Duration;

use calcom_client::RateLimit;
use chrono::TimeDelta;
use clap::Args;
use phasebook_domain::sync::RetryPolicy;
use phasebook_domain::sync::breaker::BreakerPolicy;

use super::{ClientSettings, SyncConfig, VerificationSettings, default_worker_id};

/// How the sync worker runs. The defaults suit production; tests and load runs shorten them.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Jobs (appointments) synced at the same time by this process.
    #[arg(long, env = "PHASEBOOK_SYNC_CONCURRENCY", default_value_t = 32)]
    pub sync_concurrency: usize,
    /// Segments of one appointment booked at the same time.
    #[arg(long, env = "PHASEBOOK_SYNC_SEGMENT_PARALLELISM", default_value_t = 4)]
    pub sync_segment_parallelism: usize,
    /// Attempts per segment before it is flagged for review.
    #[arg(long, env = "PHASEBOOK_SYNC_MAX_ATTEMPTS", default_value_t = 8)]
    pub sync_max_attempts: u32,
    /// First retry delay ceiling in milliseconds (doubles per attempt, full jitter).
    #[arg(long, env = "PHASEBOOK_SYNC_RETRY_BASE_MS", default_value_t = 45_000)]
    pub sync_retry_base_ms: u64,
    /// Largest retry delay in milliseconds.
    #[arg(long, env = "PHASEBOOK_SYNC_RETRY_MAX_MS", default_value_t = 900_000)]
    pub sync_retry_max_ms: u64,
    /// How long a claimed job stays leased without renewal, in milliseconds.
    #[arg(long, env = "PHASEBOOK_SYNC_LEASE_MS", default_value_t = 60_000)]
    pub sync_lease_ms: u64,
    /// Longest sleep between looks for due jobs, in milliseconds.
    #[arg(long, env = "PHASEBOOK_SYNC_POLL_MS", default_value_t = 5_000)]
    pub sync_poll_ms: u64,
    /// Timeout of one Cal.com request, in milliseconds.
    #[arg(long, env = "PHASEBOOK_CALCOM_TIMEOUT_MS", default_value_t = 10_000)]
    pub calcom_timeout_ms: u64,
    /// Cal.com requests per minute per API key (Cal.com allows an API key 120).
    #[arg(long, env = "PHASEBOOK_CALCOM_RATE_LIMIT", default_value_t = 120)]
    pub calcom_rate_limit: u32,
    /// On shutdown, how long running jobs may take before they are released, in ms.
    #[arg(
        long,
        env = "PHASEBOOK_SYNC_SHUTDOWN_GRACE_MS",
        default_value_t = 10_000
    )]
    pub sync_shutdown_grace_ms: u64,
    /// How often each tenant's coming bookings are compared with Cal.com, in seconds
    /// (0 turns the verification sweep off).
    #[arg(long, env = "PHASEBOOK_VERIFY_EVERY_SECS", default_value_t = 900)]
    pub verify_every_secs: u64,
    /// How many days ahead the verification sweep looks.
    #[arg(long, env = "PHASEBOOK_VERIFY_DAYS", default_value_t = 14)]
    pub verify_days: u32,
    /// Consecutive Cal.com calls of a tenant that found it unreachable before its jobs
    /// wait for a probe instead of calling (0 turns the circuit breaker off).
    #[arg(long, env = "PHASEBOOK_CALCOM_BREAKER_FAILURES", default_value_t = 12)]
    pub calcom_breaker_failures: u32,
    /// How often an open circuit probes Cal.com (`GET /v2/me`), in seconds.
    #[arg(
        long,
        env = "PHASEBOOK_CALCOM_BREAKER_PROBE_SECS",
        default_value_t = 10
    )]
    pub calcom_breaker_probe_secs: u32,
}

impl SyncArgs {
    pub fn config(&self) -> SyncConfig {
        SyncConfig {
            worker_id: default_worker_id(),
            lease: Duration::from_millis(self.sync_lease_ms.max(100)),
            poll_interval: Duration::from_millis(self.sync_poll_ms.max(10)),
            max_concurrent_jobs: self.sync_concurrency.max(1),
            segment_parallelism: self.sync_segment_parallelism.max(1),
            retry: RetryPolicy {
                max_attempts: self.sync_max_attempts.max(1),
                base_delay: Duration::from_millis(self.sync_retry_base_ms),
                max_delay: Duration::from_millis(self.sync_retry_max_ms.max(1)),
                min_delay: Duration::from_millis(self.sync_retry_base_ms.min(1000)),
            },
            client: ClientSettings {
                timeout: Duration::from_millis(self.calcom_timeout_ms.max(1)),
                rate_limit: RateLimit {
                    requests: self.calcom_rate_limit.max(1),
                    per: Duration::from_secs(60),
                },
                ..ClientSettings::default()
            },
            shutdown_grace: Duration::from_millis(self.sync_shutdown_grace_ms),
            verification: VerificationSettings {
                every: (self.verify_every_secs > 0)
                    .then(|| Duration::from_secs(self.verify_every_secs)),
                days: self.verify_days.max(1),
                ..VerificationSettings::default()
            },
            breaker: (self.calcom_breaker_failures > 0).then(|| BreakerPolicy {
                failures_to_open: self.calcom_breaker_failures,
                probe_every: TimeDelta::seconds(i64::from(self.calcom_breaker_probe_secs.max(1))),
            }),
        }
    }
}
