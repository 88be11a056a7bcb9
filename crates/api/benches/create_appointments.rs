//! Load benchmark for `POST /appointments` on PostgreSQL: 32 concurrent clients drive the
//! real `phasebook serve` process over loopback for 20 s, then `pgbench` runs the same SQL
//! transaction (appointment + 4 segments + outbox row) on the same server for 20 s, and
//! the ratio of the two throughputs is printed with latency percentiles and peak RSS.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p phasebook-api --bench create_appointments`
//! Optional: `BENCH_SECONDS` (default 20), `BENCH_CLIENTS` (default 32).
//!
//! Then the same database is filled to `BENCH_LOOKUP_ROWS` appointments (default 1,000,000;
//! about five per caller) and a caller lookup (`GET /appointments?customer_phone=…`, and by
//! e-mail) is shown using its index: PostgreSQL's plan is printed, and lookups over HTTP
//! are timed.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const SEGMENTS: usize = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn phasebook() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_phasebook"));
    command.env("PHASEBOOK_SECRET_KEY", phasebook_test_support::secret_key());
    command
}

fn psql(admin_url: &str, sql: &str) -> Result<()> {
    let status = Command::new("psql")
        .args([admin_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .context("psql must be installed")?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

/// The database URL with its path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{name}")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Peak resident set size of a process in MiB, read from the kernel.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "set DATABASE_URL to a PostgreSQL server (the benchmark creates its own database)"
        );
        return Ok(());
    };
    let seconds = env_or("BENCH_SECONDS", 20);
    let clients = env_or("BENCH_CLIENTS", 32) as usize;
    let db_name = format!("phasebook_bench_{}", std::process::id());
    psql(&admin_url, &format!("create database {db_name}"))?;
    let db_url = with_database(&admin_url, &db_name);
    let outcome = run(&db_url, seconds, clients).await;
    psql(
        &admin_url,
        &format!("drop database if exists {db_name} with (force)"),
    )?;
    outcome
}

async fn run(db_url: &str, seconds: u64, clients: usize) -> Result<()> {
    let status = phasebook()
        .args(["migrate"])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .status()?;
    if !status.success() {
        bail!("phasebook migrate failed");
    }
    let out = phasebook()
        .args([
            "tenant",
            "create",
            "--name",
            "bench salon",
            "--calcom-api-key",
            "cal_bench_unused",
            "--calcom-base-url",
            "http://127.0.0.1:9",
            "--json",
        ])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .output()?;
    if !out.status.success() {
        bail!(
            "tenant create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let created: Value = serde_json::from_slice(&out.stdout)?;
    let tenant_id = created["tenant_id"]
        .as_str()
        .context("tenant_id")?
        .to_string();
    let key = created["api_key"].as_str().context("api_key")?.to_string();
    // The bench measures how fast phasebook books, not its per-key request limit.
    let status = phasebook()
        .args([
            "tenant",
            "update",
            "--tenant",
            &tenant_id,
            "--rate-limit",
            "1000000",
        ])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("tenant update failed");
    }

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let child = phasebook()
        .args(["serve", "--no-worker"])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .env("PHASEBOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("PHASEBOOK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server(child);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let ready = Instant::now();
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("phasebook did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let auth = format!("Bearer {key}");
    let service = json!({
        "name": "Colour, cut and blow-dry",
        "segments": [
            {"key": "A", "name": "Apply colour", "duration_minutes": 30, "gap_after_minutes": 35},
            {"key": "B", "name": "Wash", "duration_minutes": 15, "gap_after_minutes": 0},
            {"key": "C", "name": "Cut", "duration_minutes": 30, "gap_after_minutes": 0},
            {"key": "D", "name": "Blow-dry", "duration_minutes": 20, "gap_after_minutes": 0}
        ]
    });
    let r = http
        .put(format!("{base}/services/colour"))
        .header("authorization", &auth)
        .json(&service)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("PUT /services failed: {}", r.text().await?);
    }
    // One stylist per client, so clients never collide on the double-booking guard.
    for c in 0..clients {
        let r = http
            .put(format!("{base}/staff/stylist-{c}"))
            .header("authorization", &auth)
            .json(&json!({
                "name": format!("Stylist {c}"),
                "calcom_user_id": 1000 + c,
                "calcom_username": format!("stylist-{c}"),
                "time_zone": "Europe/Berlin"
            }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("PUT /staff failed: {}", r.text().await?);
        }
    }
    // Every segment mapped for every stylist, so the booking pre-flight passes (there is no
    // Cal.com here to check a map through the API; the worker is off).
    psql(
        db_url,
        &format!(
            "insert into staff_services (tenant_id, staff_id, service_id) \
             select '{tenant_id}'::uuid, 'stylist-' || c, 'colour' \
             from generate_series(0, {last}) c on conflict do nothing; \
             insert into event_maps (tenant_id, service_id, segment_key, staff_id, \
               event_type_id, bookable_event_type_id, resolution, checked_at) \
             select '{tenant_id}'::uuid, 'colour', k, 'stylist-' || c, 5000 + c, 5000 + c, \
               'individual', now() \
             from generate_series(0, {last}) c, unnest(array['A', 'B', 'C', 'D']) k",
            last = clients - 1
        ),
    )?;

    let start_day = chrono::Utc::now() + chrono::Duration::days(30);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let http = Arc::new(http);
    let mut tasks = Vec::new();
    let began = Instant::now();
    for c in 0..clients {
        let http = http.clone();
        let auth = auth.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n: i64 = 0;
            while Instant::now() < deadline {
                let start = start_day + chrono::Duration::minutes(n * 180);
                n += 1;
                let body = json!({
                    "service_id": "colour",
                    "staff_id": format!("stylist-{c}"),
                    "start": start.to_rfc3339(),
                    "time_zone": "Europe/Berlin",
                    "customer": {"name": "Load Test", "email": "load@example.com"}
                });
                let sent = Instant::now();
                let res = http
                    .post(format!("{base}/appointments"))
                    .header("authorization", &auth)
                    .header("idempotency-key", format!("bench-{c}-{n}"))
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = began.elapsed().as_secs_f64();
    latencies.sort();
    let rps = latencies.len() as f64 / elapsed;
    let rss = peak_rss_mib(server.0.id()).unwrap_or(f64::NAN);
    drop(server);

    let pgbench_tps = pgbench(db_url, &tenant_id, seconds, clients)?;
    let lookup = caller_lookup(db_url, &tenant_id, &auth).await?;
    let p50 = percentile(&latencies, 50.0);
    let p95 = percentile(&latencies, 95.0);
    let p99 = percentile(&latencies, 99.0);
    let ratio = rps / pgbench_tps;
    println!("POST /appointments on PostgreSQL, {clients} clients, {seconds} s over loopback");
    println!("  created        {} ({} errors)", latencies.len(), errors);
    println!("  requests/s     {rps:.0}");
    println!(
        "  latency        p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms   (target p95 <= 15 ms at 8 clients: {})",
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if p95 <= Duration::from_millis(15) {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "  peak RSS       {rss:.1} MiB   (target <= 60 MB: {})",
        if rss <= 60.0 { "met" } else { "missed" }
    );
    println!("  pgbench tps    {pgbench_tps:.0}   (same transaction, same database, same run)");
    println!(
        "  ratio          {ratio:.2}   (target >= 0.6 at 32 clients: {})",
        if ratio >= 0.6 { "met" } else { "missed" }
    );
    println!("{lookup}");
    Ok(())
}

/// psql's output of one statement, unaligned.
fn psql_output(db_url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([db_url, "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("psql must be installed")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fills the database to `BENCH_LOOKUP_ROWS` appointments of callers with about five
/// appointments each, prints the plans of a caller lookup by phone and by e-mail, and times
/// lookups through a fresh `phasebook serve`.
async fn caller_lookup(db_url: &str, tenant_id: &str, auth: &str) -> Result<String> {
    let rows = env_or("BENCH_LOOKUP_ROWS", 1_000_000);
    let callers = (rows / 5).max(1);
    let filled = Instant::now();
    psql(
        db_url,
        &format!(
            "insert into appointments (appointment_id, tenant_id, service_id, staff_id, starts_at,
               ends_at, time_zone, status, customer_name, customer_email,
               customer_email_normalised, customer_phone, sync_status)
             select gen_random_uuid(), '{tenant_id}', 'colour', 'stylist-0',
               timestamptz '2200-01-01' + g * interval '3 hours',
               timestamptz '2200-01-01' + g * interval '3 hours' + interval '130 minutes',
               'Europe/Berlin', 'booked', 'Caller',
               'Caller' || (g % {callers}) || '@Example.com',
               'caller' || (g % {callers}) || '@example.com',
               '+4179' || lpad((g % {callers})::text, 7, '0'), 'synced'
             from generate_series(1, greatest(0, {rows} - (select count(*) from appointments))) g;
             analyze appointments"
        ),
    )?;
    let total = psql_output(db_url, "select count(*) from appointments")?;
    let mut out = format!(
        "caller lookup at {} appointments ({callers} callers; filled in {:.1} s)\n",
        total.trim(),
        filled.elapsed().as_secs_f64()
    );
    // The statement `list_appointments` sends, with its values written in.
    let columns = "appointment_id, tenant_id, service_id, staff_id, starts_at, ends_at, \
                   time_zone, status, customer_name, customer_email, customer_phone, notes, \
                   sync_status, requires_manual_review, review_reason, created_at, updated_at, \
                   cancelled_at, cancellation_reason, revision";
    for (what, filter) in [
        ("phone", "customer_phone = '+41790000042'"),
        (
            "e-mail",
            "customer_email_normalised = 'caller42@example.com'",
        ),
    ] {
        let plan = psql_output(
            db_url,
            &format!(
                "explain (analyze, costs off, timing off, summary on) select {columns} \
                 from appointments where tenant_id = '{tenant_id}' and {filter} \
                 order by starts_at, appointment_id limit 51"
            ),
        )?;
        out.push_str(&format!("  plan by {what}:\n"));
        for line in plan.lines().filter(|l| !l.trim().is_empty()) {
            out.push_str(&format!("    {line}\n"));
        }
    }

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let child = phasebook()
        .args(["serve", "--no-worker"])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .env("PHASEBOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("PHASEBOOK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let _server = Server(child);
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("phasebook did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for param in ["customer_phone", "customer_email"] {
        let mut latencies = Vec::new();
        let mut found = 0;
        for i in 0..200u64 {
            let caller = (i * 7919) % callers;
            let value = match param {
                "customer_phone" => format!("%2B4179{caller:07}"),
                _ => format!("CALLER{caller}%40example.com"),
            };
            let sent = Instant::now();
            let page: Value = http
                .get(format!("{base}/appointments?{param}={value}"))
                .header("authorization", auth)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            latencies.push(sent.elapsed());
            found += page["items"].as_array().map_or(0, Vec::len);
        }
        latencies.sort();
        out.push_str(&format!(
            "  GET /appointments?{param}=…  200 callers, {found} appointments found, p50 {:.2} ms  p95 {:.2} ms\n",
            percentile(&latencies, 50.0).as_secs_f64() * 1e3,
            percentile(&latencies, 95.0).as_secs_f64() * 1e3,
        ));
    }
    Ok(out)
}

/// Runs the appointment transaction in pgbench and returns its transactions per second.
fn pgbench(db_url: &str, tenant_id: &str, seconds: u64, clients: usize) -> Result<f64> {
    // Staff ids that exist (foreign keys), each client far away in time from the HTTP run
    // and from each other so the exclusion constraint never fires.
    let script = format!(
        r#"\set staff random(0, {max_staff})
\set slot random(1, 500000000)
with a as (
  insert into appointments (appointment_id, tenant_id, service_id, staff_id, starts_at, ends_at,
    time_zone, status, customer_name, sync_status)
  values (gen_random_uuid(), '{tenant_id}', 'colour', 'stylist-' || :staff,
    timestamptz '2100-01-01' + (:slot * interval '3 hours'),
    timestamptz '2100-01-01' + (:slot * interval '3 hours') + interval '130 minutes',
    'Europe/Berlin', 'booked', 'Load Test', 'pending')
  returning appointment_id, tenant_id, staff_id, starts_at
), s as (
  insert into appointment_segments (appointment_id, segment_key, tenant_id, position, staff_id,
    starts_at, ends_at, sync_status)
  select a.appointment_id, v.k, a.tenant_id, v.p, a.staff_id,
    a.starts_at + v.o * interval '1 minute', a.starts_at + (v.o + v.d) * interval '1 minute', 'pending'
  from a, (values ('A', 0, 0, 30), ('B', 1, 65, 15), ('C', 2, 80, 30), ('D', 3, 110, 20)) as v(k, p, o, d)
)
insert into sync_jobs (sync_job_id, tenant_id, appointment_id, state, run_at)
select gen_random_uuid(), a.tenant_id, a.appointment_id, 'pending', now() from a;
"#,
        max_staff = clients - 1,
    );
    debug_assert_eq!(SEGMENTS, 4);
    let path = std::env::temp_dir().join(format!("phasebook-bench-{}.sql", std::process::id()));
    std::fs::write(&path, script)?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&path)
        .arg(db_url)
        .output()
        .context("pgbench must be installed (postgresql-contrib / postgresql client)")?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .context("could not read tps from pgbench output")?;
    Ok(tps)
}
