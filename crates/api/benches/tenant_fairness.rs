//! Fairness benchmark (prints figures, asserts nothing). Needs PostgreSQL (`DATABASE_URL`);
//! skipped without it.
//!
//! 100 tenants on one PostgreSQL and one `serve` process (default concurrency 32). One
//! tenant's Cal.com hangs on every booking create (each call runs into the 10 s timeout)
//! and that tenant has 5,000 appointments queued. Each of the 99 others books a
//! four-segment appointment with `Prefer: wait=10` (the emulator answers after L = 100 ms):
//! POST → synced p50/p95 against the target 1.5 L + 50 ms, and how many did not sync within
//! the 10 s wait. Also how many jobs of the hanging tenant were running at the end.
//!
//! Run: `DATABASE_URL=postgres://… cargo bench -p phasebook-api --bench tenant_fairness`
//! (optional `BENCH_HANGING_JOBS`, default 5000).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calcom_sim::{Faults, RouteFaults, Sim, SimConfig};
use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::state::AppState;
use phasebook_api::sync::{ClientSettings, SyncConfig};
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const L: Duration = Duration::from_millis(100);
const TENANTS: usize = 100;
const SEGMENTS: usize = 4;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn sim(faults: Faults, account: &fixtures::SimAccount) -> Result<calcom_sim::RunningSim> {
    let sim = Sim::new(SimConfig {
        rate_limit: None,
        faults,
        webhook: None,
    });
    sim.seed(account.seed.clone())
        .map_err(|e| anyhow::anyhow!("seed: {e}"))?;
    sim.spawn().await.context("sim")
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(database) = TestDatabase::postgres_from_env().await else {
        println!("tenant_fairness: DATABASE_URL is not set to PostgreSQL; skipped");
        return Ok(());
    };
    let hanging_jobs: usize = std::env::var("BENCH_HANGING_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let db = database.connect().await.context("database")?;
    let segments = fixtures::segments(SEGMENTS, 30, 0);
    let account = fixtures::sim_account(1, &segments);
    let latency = Faults::default().route("*", RouteFaults::latency(L.as_millis() as u64));
    let healthy_sim = sim(latency, &account).await?;
    let hanging_sim = sim(
        Faults::default().route("bookings.create", RouteFaults::hang_rate(1.0)),
        &account,
    )
    .await?;

    let staff = account.staff[0].staff_id.clone();
    let start = |n: usize| {
        Utc.with_ymd_and_hms(2030, 4, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + TimeDelta::hours(3 * n as i64)
    };
    let hanging = fixtures::seed_sim_salon(
        &db,
        &hanging_sim.base_url,
        &account,
        "colour",
        segments.clone(),
    )
    .await
    .context("hanging salon")?;
    let mut salons = Vec::new();
    for _ in 1..TENANTS {
        salons.push(
            fixtures::seed_sim_salon(
                &db,
                &healthy_sim.base_url,
                &account,
                "colour",
                segments.clone(),
            )
            .await
            .context("salon")?,
        );
    }
    let queued = Instant::now();
    for n in 0..hanging_jobs {
        fixtures::book(&db, &hanging, &staff, start(n))
            .await
            .context("queueing")?;
    }
    println!(
        "setup: {TENANTS} tenants, {hanging_jobs} appointments queued for the hanging one in {:.1} s",
        queued.elapsed().as_secs_f64()
    );

    let state = AppState::new(db.clone());
    let stop = CancellationToken::new();
    let config = SyncConfig {
        worker_id: "fairness".into(),
        client: ClientSettings {
            timeout: Duration::from_secs(10),
            rate_limit: calcom_client::RateLimit {
                requests: 1_000_000,
                per: Duration::from_secs(60),
            },
            read_retries: 0,
        },
        ..SyncConfig::default()
    };
    let concurrency = config.max_concurrent_jobs;
    state.sync.spawn_worker(
        config,
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
    // Let the worker fill up with the hanging tenant's jobs first.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let http = reqwest::Client::new();
    let post = |salon: &fixtures::FixtureSalon, n: usize| {
        let request = http
            .post(format!("{base_url}/appointments"))
            .bearer_auth(&salon.ops_key)
            .header("Prefer", "wait=10")
            .json(&json!({
                "service_id": "colour",
                "staff_id": staff.as_str(),
                "start": start(n).to_rfc3339(),
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
            }));
        async move {
            let sent = Instant::now();
            let response = request.send().await?;
            if response.status() != reqwest::StatusCode::CREATED {
                bail!("POST /appointments answered {}", response.status());
            }
            let body: Value = response.json().await?;
            Ok::<_, anyhow::Error>((sent.elapsed(), body["sync"]["status"] == "synced"))
        }
    };
    // The tenants share one Cal.com account (and so its stylist's calendar): each books its
    // own times (the hanging tenant's are on another emulator). Warm-up: each tenant's first create reads its event types once (the
    // pre-create check); not measured.
    for (i, salon) in salons.iter().enumerate() {
        post(salon, 3 * i).await?;
    }
    let pool = match &db {
        phasebook_api::store::Database::Postgres(_) => {
            phasebook_api::sync::postgres_pool(&db).context("pool")?
        }
        phasebook_api::store::Database::Sqlite(_) => bail!("PostgreSQL only"),
    };
    let measured_from = Utc::now();
    let mut times = Vec::new();
    let mut unsynced = 0;
    for round in 1..=2 {
        for (i, salon) in salons.iter().enumerate() {
            let (taken, synced) = post(salon, 3 * i + round).await?;
            if synced {
                times.push(taken);
            } else {
                unsynced += 1;
            }
        }
    }
    times.sort();
    let running = sqlx::query_scalar::<_, i64>(
        "select count(*) from sync_jobs where tenant_id = $1 and state = 'leased'",
    )
    .bind(hanging.tenant_id)
    .fetch_one(&pool)
    .await?;
    stop.cancel();
    // Where a measured create's time went, read off the stored rows: from the appointment's
    // insert to its first Cal.com call (wake-up and claim), the calls themselves (every
    // segment's, L each), and from the last answer to the job's end (the run's writes).
    let phases: Vec<(String, f64, f64)> = sqlx::query_as(
        "with measured as ( \
           select a.created_at, min(t.started_at) as first_call, \
             max(t.finished_at) as last_answer, j.updated_at as done_at \
           from appointments a \
           join sync_attempts t on t.appointment_id = a.appointment_id \
           join sync_jobs j on j.appointment_id = a.appointment_id \
           where a.tenant_id <> $1 and a.created_at >= $2 and j.state = 'done' \
           group by a.appointment_id, a.created_at, j.updated_at), \
         phases(phase, seconds) as ( \
           select 'insert -> first call', extract(epoch from first_call - created_at) \
             from measured \
           union all select 'first call -> last answer', \
             extract(epoch from last_answer - first_call) from measured \
           union all select 'last answer -> job done', \
             extract(epoch from done_at - last_answer) from measured) \
         select phase, \
           (percentile_cont(0.5) within group (order by seconds) * 1000)::float8, \
           (percentile_cont(0.95) within group (order by seconds) * 1000)::float8 \
         from phases group by phase order by min(phase)",
    )
    .bind(hanging.tenant_id)
    .bind(measured_from)
    .fetch_all(&pool)
    .await?;
    let target = L.mul_f64(1.5) + Duration::from_millis(50);
    println!(
        "[postgres, {TENANTS} tenants, one hanging with {hanging_jobs} queued] the others' \
         POST -> synced (Prefer: wait): p50 {:.0} ms, p95 {:.0} ms = {:.2} L (target <= \
         1.5 L + 50 ms = {} ms), {} synced, {unsynced} not synced within 10 s; the hanging \
         tenant held {running} of {concurrency} worker slots",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        percentile(&times, 0.95).as_secs_f64() / L.as_secs_f64(),
        target.as_millis(),
        times.len(),
    );
    for (phase, p50, p95) in phases {
        println!("  {phase:<26} p50 {p50:.0} ms, p95 {p95:.0} ms");
    }
    Ok(())
}
