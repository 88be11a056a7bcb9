//! Load run: booking creates per second against an in-process sim over loopback (printed
//! with the ratio to the 5,000/s target), and how exactly configured latency is applied
//! (observed minus configured, p50/p99). Prints figures; asserts nothing.
//!
//! `cargo bench -p calcom-sim --bench creates` (env `SIM_BENCH_SECS`, `SIM_BENCH_CONCURRENCY`,
//! `SIM_BENCH_SERVER_THREADS` override the defaults 4 s, 64, 2).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use calcom_sim::{
    Faults, RouteFaults, Seed, SeedApiKey, SeedEventType, SeedUser, Sim, SimConfig, WorkingHours,
};
use chrono::{TimeZone, Utc};
use serde_json::json;

const TARGET: f64 = 5_000.0;
const HOSTS: i64 = 256;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> Seed {
    let mut seed = Seed::default();
    for i in 0..HOSTS {
        let id = 1 + i;
        seed.users.push(
            SeedUser::new(id, &format!("stylist{id}"), "UTC").working(WorkingHours::always()),
        );
        seed.event_types
            .push(SeedEventType::individual(10_000 + id, id, "segment", 15));
    }
    seed.api_keys.push(SeedApiKey {
        key: "cal_live_bench".into(),
        user_id: 1,
    });
    seed
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let secs = env("SIM_BENCH_SECS", 4);
    let concurrency = env("SIM_BENCH_CONCURRENCY", 64);
    let server_threads = env("SIM_BENCH_SERVER_THREADS", 2) as usize;

    // The sim gets its own runtime with `server_threads` workers (the "2 cores").
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .enable_all()
        .build()?;
    let sim = Sim::new(SimConfig::default());
    sim.seed(seed()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = server_rt.block_on(sim.clone().spawn())?;
    let base = running.base_url.clone();

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let (created, failed, elapsed) = client_rt.block_on(async {
        let clients: Vec<reqwest::Client> = (0..16)
            .map(|_| reqwest::Client::builder().pool_max_idle_per_host(64).build())
            .collect::<Result<_, _>>()?;
        let next = Arc::new(AtomicU64::new(0));
        let created = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let origin = Utc
            .with_ymd_and_hms(2031, 1, 6, 0, 0, 0)
            .single()
            .ok_or_else(|| anyhow::anyhow!("date"))?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let http = clients[t as usize % clients.len()].clone();
            let (next, created, failed, base) =
                (next.clone(), created.clone(), failed.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed) as i64;
                    let host = n % HOSTS + 1;
                    // Each host gets consecutive 15-minute slots: never a conflict.
                    let start = origin + chrono::Duration::minutes(15 * (n / HOSTS));
                    let body = json!({
                        "start": start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "eventTypeId": 10_000 + host,
                        "attendee": {"name": "Load", "email": "load@example.com", "timeZone": "UTC"},
                        "metadata": {"appointment_id": n.to_string(), "segment": "A"},
                    });
                    let ok = http
                        .post(format!("{base}/v2/bookings"))
                        .header("cal-api-version", "2024-08-13")
                        .bearer_auth("cal_live_bench")
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16() == 201)
                        .unwrap_or(false);
                    if ok {
                        created.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for task in tasks {
            task.await?;
        }
        Ok::<_, anyhow::Error>((
            created.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            started.elapsed(),
        ))
    })?;
    let rate = created as f64 / elapsed.as_secs_f64();
    println!(
        "creates: {created} in {:.2} s with {concurrency} concurrent requests, sim on {server_threads} worker threads ({failed} failed)",
        elapsed.as_secs_f64()
    );
    println!(
        "creates/s: {rate:.0}   ratio to {TARGET:.0}/s: {:.2}",
        rate / TARGET
    );
    println!("bookings held by the sim: {}", sim.state().bookings.len());

    // Latency accuracy: 100 ms configured on event-type reads, measured end to end, minus
    // the same call's time without latency (median), minus the configured 100 ms.
    let configured = Duration::from_millis(100);
    let (base_p50, observed) = client_rt.block_on(async {
        let http = reqwest::Client::new();
        let call = || {
            http.get(format!("{base}/v2/event-types?username=stylist1"))
                .header("cal-api-version", "2024-06-14")
                .send()
        };
        let mut baseline = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            call().await?.bytes().await?;
            baseline.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        baseline.sort_by(f64::total_cmp);
        sim.set_faults(Faults::default().route("event_types", RouteFaults::latency(100)));
        let mut observed = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            call().await?.bytes().await?;
            observed.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        observed.sort_by(f64::total_cmp);
        Ok::<_, anyhow::Error>((percentile(&baseline, 0.5), observed))
    })?;
    let extra: Vec<f64> = observed
        .iter()
        .map(|o| o - base_p50 - configured.as_secs_f64() * 1000.0)
        .collect();
    println!(
        "latency 100 ms: observed p50 {:.2} ms, p99 {:.2} ms; observed - configured - baseline p50 ({base_p50:.2} ms): p50 {:+.2} ms, p99 {:+.2} ms, min {:+.2} ms",
        percentile(&observed, 0.5),
        percentile(&observed, 0.99),
        percentile(&extra, 0.5),
        percentile(&extra, 0.99),
        extra.first().copied().unwrap_or(f64::NAN),
    );
    drop(running);
    Ok(())
}
