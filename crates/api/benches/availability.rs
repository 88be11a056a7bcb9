//! Availability benchmark (prints figures, asserts nothing). The API runs in this process
//! on SQLite against the Cal.com emulator on loopback, with every slots answer delayed by
//! L = 100 ms. The salon has two stylists and a four-segment service, so one search needs
//! the free time of 8 bookable event types.
//!
//! 1. Cold p95 for one day (targets <= 1.5 L: the 8 reads go out in parallel).
//! 2. Cold search over a week (target <= 2 L: still one read per event type).
//! 3. Warm p95 (cached, target <= 10 ms).
//! 4. 429s from Cal.com when an agent searches 10 times a minute against the 120/min
//!    throttle, every search cold (the worst case: each search follows a booking that
//!    invalidated the cache). Time is scaled down 6 times (120 per 10 s window, a search
//!    every second) so three windows take 30 s instead of 3 minutes.
//! 5. Cal.com requests per search, cold and warm.
//!
//! Each measurement gets a fresh emulator, so no measurement spends another's rate budget.
//!
//! Run: `cargo bench -p phasebook-api --bench availability`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calcom_client::RateLimit;
use calcom_sim::{Faults, RateLimitConfig, RouteFaults, RunningSim, Sim, SimConfig};
use chrono::{Duration as TimeDelta, Utc};
use chrono_tz::Europe::Berlin;
use phasebook_api::free_time::FreeTime;
use phasebook_api::state::AppState;
use phasebook_api::store::Database;
use phasebook_api::sync::{ClientCache, ClientSettings};
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures::{self, FixtureSalon};
use tokio_util::sync::CancellationToken;

const L: Duration = Duration::from_millis(100);

struct World {
    base_url: String,
    http: reqwest::Client,
    salon: FixtureSalon,
    sim: RunningSim,
    free_time: Arc<FreeTime>,
    stop: CancellationToken,
    _db: Database,
    _database: TestDatabase,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn world(rate_limit: RateLimitConfig, client_limit: RateLimit) -> Result<World> {
    let database = TestDatabase::sqlite();
    let db = database.connect().await.context("database")?;
    let segments = fixtures::segments(4, 30, 0);
    let account = fixtures::sim_account(2, &segments);
    let sim = Sim::new(SimConfig {
        rate_limit: Some(rate_limit),
        faults: Faults::default().route("slots.list", RouteFaults::latency(L.as_millis() as u64)),
        webhook: None,
    });
    sim.seed(account.seed.clone())
        .map_err(|e| anyhow::anyhow!("seed: {e}"))?;
    let sim = sim.spawn().await.context("sim")?;
    let salon = fixtures::seed_sim_salon(&db, &sim.base_url, &account, "colour", segments)
        .await
        .context("salon")?;
    // The bench measures availability, not phasebook's per-key request limit.
    db.keys()
        .update_tenant(
            salon.tenant_id,
            &phasebook_api::store::keys::TenantUpdate {
                rate_limit: Some(phasebook_api::store::keys::ApiRateLimit {
                    per_second: 1_000_000,
                    burst: 1_000_000,
                }),
                ..Default::default()
            },
        )
        .await
        .context("lifting the request limit")?;
    let mut state = AppState::new(db.clone());
    let free_time = Arc::new(FreeTime::new(Arc::new(ClientCache::new(ClientSettings {
        rate_limit: client_limit,
        ..ClientSettings::default()
    }))));
    state.free_time = free_time.clone();
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let _ = phasebook_api::app::serve(listener, state, async move {
            server_stop.cancelled().await;
        })
        .await;
    });
    Ok(World {
        base_url,
        http: reqwest::Client::new(),
        salon,
        sim,
        free_time,
        stop,
        _db: db,
        _database: database,
    })
}

impl World {
    /// One search from `days` days ahead over `span` days; returns how long it took.
    async fn search(&self, days: i64, span: i64) -> Result<Duration> {
        let from = (Utc::now() + TimeDelta::days(days))
            .with_timezone(&Berlin)
            .date_naive();
        let to = from + TimeDelta::days(span - 1);
        let started = Instant::now();
        let response = self
            .http
            .get(format!(
                "{}/availability?service_id=colour&time_zone=Europe/Berlin&from={from}&to={to}&limit=200",
                self.base_url
            ))
            .bearer_auth(&self.salon.ops_key)
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let took = started.elapsed();
        if status != reqwest::StatusCode::OK {
            bail!("GET /availability answered {status}");
        }
        Ok(took)
    }

    fn cold(&self) {
        self.free_time.invalidate(self.salon.tenant_id);
    }

    fn throttled(&self) -> u64 {
        self.sim
            .state()
            .requests
            .values()
            .map(|c| c.rate_limited)
            .sum()
    }
}

fn p95(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64) * 0.95).ceil() as usize;
    samples[index.saturating_sub(1).min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn in_l(d: Duration) -> String {
    format!("{:.2} L", d.as_secs_f64() / L.as_secs_f64())
}

async fn run() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let calcom = RateLimitConfig::calcom_default();
    let per_minute = RateLimit::default();

    // 1 and 5: cold, one day. 12 searches of 8 reads stay under 120 per minute.
    let w = world(calcom, per_minute).await?;
    let before = w.free_time.requests_made();
    let mut cold = Vec::new();
    for i in 0..12 {
        w.cold();
        cold.push(w.search(1 + i, 1).await?);
    }
    let cold_requests = (w.free_time.requests_made() - before) as f64 / 12.0;
    // 3 and 5: warm.
    let before = w.free_time.requests_made();
    let mut warm = Vec::new();
    for _ in 0..50 {
        warm.push(w.search(12, 1).await?);
    }
    let warm_requests = (w.free_time.requests_made() - before) as f64 / 50.0;
    drop(w);

    // 2: a week, cold.
    let w = world(calcom, per_minute).await?;
    let mut week = Vec::new();
    for i in 0..5 {
        w.cold();
        week.push(w.search(1 + 7 * i, 7).await?);
    }
    drop(w);

    // 4: an agent 10 times a minute against 120/min, time scaled down 6 times.
    let scaled = RateLimitConfig {
        limit: 120,
        window: Duration::from_secs(10),
        block: Duration::from_secs(10),
    };
    let w = world(
        scaled,
        RateLimit {
            requests: 120,
            per: Duration::from_secs(10),
        },
    )
    .await?;
    let searches = 30;
    let started = Instant::now();
    for i in 0..searches {
        w.cold();
        w.search(1 + i % 20, 1).await?;
        // 10 a minute, scaled: one a second.
        let next = Duration::from_secs(1) * (i as u32 + 1);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let throttled = w.throttled();
    drop(w);

    println!(
        "availability benchmark: 2 stylists, 4-segment service, emulator latency L = {}",
        ms(L)
    );
    println!(
        "  cold, one day     p95 {} = {} (target <= 1.5 L)",
        ms(p95(cold.clone())),
        in_l(p95(cold))
    );
    println!(
        "  cold, one week    max {} = {} (target <= 2 L)",
        ms(*week.iter().max().unwrap_or(&Duration::ZERO)),
        in_l(*week.iter().max().unwrap_or(&Duration::ZERO))
    );
    println!(
        "  warm, one day     p95 {} (target <= 10 ms)",
        ms(p95(warm))
    );
    println!(
        "  429s from Cal.com with an agent searching 10 times a minute, every search cold: {throttled} (target 0)"
    );
    println!("  Cal.com requests per search: cold {cold_requests:.1}, warm {warm_requests:.1}");
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
