//! Shared Cal.com budget benchmark (prints figures, asserts nothing). Needs PostgreSQL
//! (`DATABASE_URL`); skipped without it.
//!
//! Three replicas (each its own database pool, budgets, clients, worker and HTTP server,
//! sharing nothing but the database) and a `doctor` loop, one salon, the emulator answering
//! every call after L = 100 ms and throttling the key at R = 120 requests per 60 s (60 s
//! block when exceeded, as Cal.com does):
//!
//! 1. idle: `POST /appointments` with `Prefer: wait=10` (a four-segment appointment, the
//!    interactive call a voice agent waits on) on an otherwise idle system — p50/p95;
//! 2. loaded, from the first budget window after the idle run: the same creates offered
//!    steadily at 0.92 R (Cal.com bookings) over the three replicas while the doctor audits
//!    in a loop: Cal.com bookings made per minute as a
//!    fraction of R (target >= 0.9), requests answered 429 (target 0), the creates' p95
//!    against idle (target: within 1.5 L + 50 ms of it), what the doctor got (the rest).
//!
//! Run: `DATABASE_URL=postgres://… cargo bench -p phasebook-api --bench calcom_budget`
//! (optional `BENCH_BUDGET_WINDOWS`, minutes measured, default 2; `BENCH_OFFERED`, the
//! bookings offered as a fraction of R, default 0.92; `BENCH_DOCTOR_PAUSE_MS`, pause between
//! doctor runs, default 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calcom_sim::{Faults, RateLimitConfig, RouteFaults, Sim, SimConfig};
use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::event_maps::cli::DoctorArgs;
use phasebook_api::state::AppState;
use phasebook_api::sync::{ClientSettings, SyncConfig};
use phasebook_domain::sync::RetryPolicy;
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const L: Duration = Duration::from_millis(100);
const R: u32 = 120;
const WINDOW: Duration = Duration::from_secs(60);
const STYLISTS: usize = 2;
const SEGMENTS: usize = 4;
/// The bookings offered under load, as a fraction of R, unless `BENCH_OFFERED` says.
const OFFERED: f64 = 0.92;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Appointment `n`: back-to-back three-hour slots per stylist from 2030-04-01.
fn body(account: &fixtures::SimAccount, n: usize) -> Value {
    let first = Utc
        .with_ymd_and_hms(2030, 4, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let start = first + TimeDelta::hours(3 * (n / STYLISTS) as i64);
    json!({
        "service_id": "colour",
        "staff_id": account.staff[n % STYLISTS].staff_id.as_str(),
        "start": start.to_rfc3339(),
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
    })
}

async fn replica(url: &str, n: usize, stop: &CancellationToken) -> Result<String> {
    let db = phasebook_api::store::Database::connect(url)
        .await
        .context("replica database")?;
    let state = AppState::new(db.clone());
    state.sync.spawn_worker(
        SyncConfig {
            worker_id: format!("replica-{n}"),
            retry: RetryPolicy {
                max_attempts: 8,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(5),
                min_delay: Duration::from_millis(50),
            },
            client: ClientSettings {
                timeout: Duration::from_secs(10),
                rate_limit: calcom_client::RateLimit {
                    requests: R,
                    per: WINDOW,
                },
                read_retries: 1,
            },
            ..SyncConfig::default()
        },
        phasebook_api::sync::postgres_pool(&db),
        stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let _ = phasebook_api::app::serve(listener, state, async move {
            server_stop.cancelled().await;
        })
        .await;
    });
    Ok(base_url)
}

async fn post(
    http: &reqwest::Client,
    base_url: &str,
    key: &str,
    body: &Value,
    wait: bool,
) -> Result<Value> {
    let mut request = http
        .post(format!("{base_url}/appointments"))
        .bearer_auth(key)
        .json(body);
    if wait {
        request = request.header("Prefer", "wait=10");
    }
    let response = request.send().await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!("POST /appointments answered {}", response.status());
    }
    Ok(response.json().await?)
}

/// One interactive probe: the time to a final answer, or None when it did not sync.
async fn probe(
    http: &reqwest::Client,
    base_url: &str,
    key: &str,
    body: &Value,
) -> Result<Option<Duration>> {
    let sent = Instant::now();
    let answer = post(http, base_url, key, body, true).await?;
    let elapsed = sent.elapsed();
    Ok((answer["sync"]["status"] == "synced").then_some(elapsed))
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(database) = TestDatabase::postgres_from_env().await else {
        println!("calcom_budget: DATABASE_URL is not set to PostgreSQL; skipped");
        return Ok(());
    };
    let windows: u32 = std::env::var("BENCH_BUDGET_WINDOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let offered: f64 = std::env::var("BENCH_OFFERED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(OFFERED);
    let doctor_pause = Duration::from_millis(
        std::env::var("BENCH_DOCTOR_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );

    let db = database.connect().await.context("database")?;
    let segments = fixtures::segments(SEGMENTS, 30, 0);
    let account = fixtures::sim_account(STYLISTS, &segments);
    let sim = Sim::new(SimConfig {
        rate_limit: Some(RateLimitConfig {
            limit: R,
            window: WINDOW,
            block: WINDOW,
        }),
        faults: Faults::default().route("*", RouteFaults::latency(L.as_millis() as u64)),
        webhook: None,
    });
    sim.seed(account.seed.clone())
        .map_err(|e| anyhow::anyhow!("seed: {e}"))?;
    let sim = sim.spawn().await.context("sim")?;
    let salon = fixtures::seed_sim_salon(&db, &sim.base_url, &account, "colour", segments)
        .await
        .context("salon")?;
    // The bench measures Cal.com's budget, not phasebook's per-key request limit.
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

    // 0. What one token costs: the atomic statement on the key's row, from 32 tasks at once
    //    (a key with room enough never to wait).
    {
        let budgets = phasebook_api::budget::Budgets::new(db.clone());
        let budget = budgets.for_key(
            [1u8; 32],
            calcom_client::RateLimit {
                requests: 1_000_000,
                per: WINDOW,
            },
        );
        let takes = 3_200;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let budget = budget.clone();
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                for _ in 0..takes / 32 {
                    let sent = Instant::now();
                    let _ = budget.try_take(calcom_client::Priority::Interactive).await;
                    latencies.push(sent.elapsed());
                }
                latencies
            });
        }
        let mut latencies = Vec::new();
        while let Some(batch) = tasks.join_next().await {
            latencies.extend(batch?);
        }
        latencies.sort();
        let elapsed = started.elapsed();
        println!(
            "[postgres] shared budget: {takes} tokens of one key taken by 32 tasks in {:.0} ms = \
             {:.0} tokens/s; one take p50 {:.2} ms, p95 {:.2} ms (a Cal.com call is ~{} ms, a \
             key allows {:.0} a second)",
            ms(elapsed),
            f64::from(takes) / elapsed.as_secs_f64(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.95)),
            L.as_millis(),
            f64::from(R) / WINDOW.as_secs_f64(),
        );
    }

    let stop = CancellationToken::new();
    let mut replicas = Vec::new();
    for n in 0..3 {
        replicas.push(replica(&database.url, n, &stop).await?);
    }
    let http = reqwest::Client::new();
    let key = salon.ops_key.clone();
    let mut next_probe = 0usize;

    // 1. Idle.
    let idle_started = Instant::now();
    let mut idle = Vec::new();
    for i in 0..6 {
        let replica = &replicas[i % 3];
        let taken = probe(&http, replica, &key, &body(&account, next_probe)).await?;
        next_probe += 1;
        // The first probe reads every event type once (the pre-create check); not counted.
        if i > 0 {
            idle.push(taken.context("an idle probe did not sync")?);
        }
    }
    idle.sort();
    // The budget counts fixed windows from the first request, so the idle probes' tokens sit
    // in the window the load would start in, and at 0.92 R a backlog that one minute leaves
    // drains at a few requests a minute. The load starts on a fresh window, to measure the
    // sustained rate rather than that first minute.
    tokio::time::sleep_until((idle_started + WINDOW + Duration::from_secs(2)).into()).await;

    // 2. Loaded: a doctor loop in its own "process" and a backlog nobody waits for.
    let doctor_requests = Arc::new(AtomicU64::new(0));
    let doctor_runs = Arc::new(AtomicU64::new(0));
    let doctor = {
        let url = database.url.clone();
        let stop = stop.clone();
        let requests = doctor_requests.clone();
        let runs = doctor_runs.clone();
        async move {
            let Ok(db) = phasebook_api::store::Database::connect(&url).await else {
                return;
            };
            let args = DoctorArgs {
                tenant: None,
                json: true,
            };
            while !stop.is_cancelled() {
                let mut out = Vec::new();
                let run = phasebook_api::event_maps::cli::doctor(&db, &args, &mut out);
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = run => {}
                }
                runs.fetch_add(1, Ordering::Relaxed);
                let report: Value = serde_json::from_slice(&out).unwrap_or_default();
                let used: u64 = report["tenants"]
                    .as_array()
                    .map(|ts| {
                        ts.iter()
                            .filter_map(|t| t["calcom_budget"]["requests"].as_u64())
                            .sum()
                    })
                    .unwrap_or(0);
                requests.fetch_add(used, Ordering::Relaxed);
                tokio::time::sleep(doctor_pause).await;
            }
        }
    };
    let load = async {
        // Voice-agent bookings (Prefer: wait) offered at a steady `OFFERED` of R, one
        // appointment (four Cal.com bookings) at a time, spread over the three replicas.
        let every = Duration::from_secs_f64(
            WINDOW.as_secs_f64() / (f64::from(R) * offered / SEGMENTS as f64),
        );
        let loaded_from = Utc::now();
        let loaded_started = Instant::now();
        let measured = WINDOW * windows;
        let mut calls = tokio::task::JoinSet::new();
        let mut n = 0usize;
        while loaded_started.elapsed() < measured {
            let (http, base_url, key) = (http.clone(), replicas[n % 3].clone(), key.clone());
            let body = body(&account, next_probe + n);
            n += 1;
            calls.spawn(async move { probe(&http, &base_url, &key, &body).await });
            tokio::time::sleep(every).await;
        }
        let mut loaded = Vec::new();
        let mut unsynced = 0;
        while let Some(call) = calls.join_next().await {
            match call?? {
                Some(taken) => loaded.push(taken),
                None => unsynced += 1,
            }
        }
        let loaded_to = loaded_from + TimeDelta::from_std(measured)?;
        stop.cancel();
        Ok::<_, anyhow::Error>((loaded, unsynced, loaded_from, loaded_to))
    };
    let ((), measured_run) = tokio::join!(doctor, load);
    let (mut loaded, unsynced, loaded_from, loaded_to) = measured_run?;
    loaded.sort();

    let state = sim.state();
    let booked = state
        .bookings
        .iter()
        .filter(|b| b.created_at >= loaded_from && b.created_at < loaded_to)
        .count();
    let (requests, throttled) = state
        .requests
        .values()
        .fold((0, 0), |(r, t), c| (r + c.total, t + c.rate_limited));
    let minutes = (loaded_to - loaded_from).num_milliseconds() as f64 / 60_000.0;
    let booked_per_minute = booked as f64 / minutes;
    let idle_p95 = percentile(&idle, 0.95);
    let loaded_p95 = percentile(&loaded, 0.95);
    let allowance = L.mul_f64(1.5) + Duration::from_millis(50);
    println!(
        "[postgres, 3 replicas + doctor loop, R = {R}/min, L = {} ms, offered {offered} R] idle \
         Prefer: wait create: p50 {:.0} ms, p95 {:.0} ms ({} runs)",
        L.as_millis(),
        ms(percentile(&idle, 0.5)),
        ms(idle_p95),
        idle.len(),
    );
    println!(
        "  loaded {minutes:.1} min: {booked} Cal.com bookings = {booked_per_minute:.0}/min = \
         {:.3} R (target >= 0.9); all Cal.com requests of the run {requests}, {throttled} \
         answered 429 (target 0)",
        booked_per_minute / f64::from(R),
    );
    println!(
        "  Prefer: wait creates under load: p50 {:.0} ms, p95 {:.0} ms = idle p95 + {:.0} ms \
         (target <= idle + 1.5 L + 50 ms = idle + {} ms), {} synced, {unsynced} not synced \
         within 10 s",
        ms(percentile(&loaded, 0.5)),
        ms(loaded_p95),
        ms(loaded_p95.saturating_sub(idle_p95)),
        allowance.as_millis(),
        loaded.len(),
    );
    let by_route: Vec<String> = state
        .requests
        .iter()
        .filter(|(_, c)| c.total > 0)
        .map(|(route, c)| format!("{route} {}", c.total))
        .collect();
    println!("  Cal.com requests by route: {}", by_route.join(", "));
    println!(
        "  doctor: {} runs finished, {} Cal.com requests ({:.0}/min)",
        doctor_runs.load(Ordering::Relaxed),
        doctor_requests.load(Ordering::Relaxed),
        doctor_requests.load(Ordering::Relaxed) as f64 / minutes,
    );
    Ok(())
}
