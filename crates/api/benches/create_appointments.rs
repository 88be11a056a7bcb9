//! Load benchmark for `POST /appointments` on PostgreSQL: clients drive the real
//! `phasebook serve` process over loopback with an agent key, then `pgbench` runs the same
//! SQL transaction (appointment + 4 segments + outbox row) on the same server, and the
//! figures issue 12 asks for are printed:
//!
//! - database round trips of one create, counted on the wire: a second `serve` talks to
//!   PostgreSQL through a proxy in this process that reads the frontend protocol and counts
//!   every Sync and simple Query (one round trip each) and the statements bound, for a
//!   create without a key, with `Idempotency-Key`, and with `Prefer: wait=0`;
//! - p95 latency at 8 clients (`BENCH_LATENCY_CLIENTS`);
//! - throughput at 32 clients (`BENCH_CLIENTS`) over pgbench's at as many clients, with the
//!   statements per create PostgreSQL committed meanwhile (`pg_stat_database.xact_commit`);
//! - the server's peak RSS.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p phasebook-api --bench create_appointments`
//! Optional: `BENCH_SECONDS` (default 20, per phase).
//!
//! Then the same database is filled to `BENCH_LOOKUP_ROWS` appointments (default 1,000,000;
//! about five per caller) and a caller lookup (`GET /appointments?customer_phone=…`, and by
//! e-mail) is shown using its index: PostgreSQL's plan is printed, and lookups over HTTP
//! are timed.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `phasebook serve` without its worker (there is no Cal.com here), once it is ready.
async fn serve(db_url: &str) -> Result<Server> {
    let port = free_port()?;
    let child = phasebook()
        .args(["serve", "--no-worker"])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .env("PHASEBOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("PHASEBOOK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .is_err()
    {
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("phasebook did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(server)
}

/// A create's body: client `c`'s `n`th appointment, three hours after its previous one.
fn booking(c: usize, n: i64, from: DateTime<Utc>) -> Value {
    let start = from + chrono::Duration::minutes(n * 180);
    json!({
        "service_id": "colour",
        "staff_id": format!("stylist-{c}"),
        "start": start.to_rfc3339(),
        "time_zone": "Europe/Berlin",
        "customer": {"name": "Load Test", "email": "load@example.com"}
    })
}

#[derive(Default)]
struct Load {
    latencies: Vec<Duration>,
    errors: u64,
}

/// `clients` clients create appointments with an Idempotency-Key for `seconds`, client `c`
/// for stylist `first_stylist + c`; the latencies are sorted, and the wall time of the phase
/// is returned with them.
async fn drive(
    http: &Arc<reqwest::Client>,
    base: &str,
    auth: &str,
    (clients, first_stylist): (usize, usize),
    seconds: u64,
    from: DateTime<Utc>,
) -> Result<(Load, f64)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let auth = auth.to_string();
        let url = format!("{base}/appointments");
        tasks.push(tokio::spawn(async move {
            let mut load = Load::default();
            let mut n: i64 = 0;
            while Instant::now() < deadline {
                n += 1;
                let sent = Instant::now();
                let res = http
                    .post(&url)
                    .header("authorization", &auth)
                    .header("idempotency-key", format!("bench-{from}-{c}-{n}"))
                    .json(&booking(first_stylist + c, n, from))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        load.latencies.push(sent.elapsed());
                    }
                    _ => load.errors += 1,
                }
            }
            load
        }));
    }
    let mut all = Load::default();
    for task in tasks {
        let load = task.await?;
        all.latencies.extend(load.latencies);
        all.errors += load.errors;
    }
    all.latencies.sort();
    Ok((all, began.elapsed().as_secs_f64()))
}

/// Transactions PostgreSQL committed in the database so far.
fn xact_commit(db_url: &str) -> Result<u64> {
    psql_output(
        db_url,
        "select xact_commit from pg_stat_database where datname = current_database()",
    )?
    .trim()
    .parse()
    .context("xact_commit")
}

/// What the proxy saw the server send PostgreSQL.
#[derive(Default)]
struct Tally {
    /// Sync and simple Query messages: each waits for the server's ReadyForQuery.
    round_trips: AtomicU64,
    /// Statements bound or sent, by the start of their text.
    statements: Mutex<HashMap<String, u64>>,
}

impl Tally {
    fn snapshot(&self) -> (u64, HashMap<String, u64>) {
        let statements = self
            .statements
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        (self.round_trips.load(Ordering::SeqCst), statements)
    }
}

/// Reads the frontend side of one PostgreSQL connection (protocol 3): the untyped start-up
/// messages, then typed messages (a tag byte and a length).
#[derive(Default)]
struct Frontend {
    pending: Vec<u8>,
    started: bool,
    /// Prepared statement name → its text.
    prepared: HashMap<String, String>,
}

fn c_string(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    (text, bytes.get(end + 1..).unwrap_or_default())
}

fn label(sql: &str) -> String {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(72)
        .collect()
}

impl Frontend {
    fn feed(&mut self, bytes: &[u8], tally: &Tally) {
        self.pending.extend_from_slice(bytes);
        loop {
            let (header, tag) = if self.started { (5, true) } else { (8, false) };
            if self.pending.len() < header {
                return;
            }
            let at = usize::from(tag);
            let length = u32::from_be_bytes([
                self.pending[at],
                self.pending[at + 1],
                self.pending[at + 2],
                self.pending[at + 3],
            ]) as usize;
            let total = at + length;
            if self.pending.len() < total {
                return;
            }
            let message: Vec<u8> = self.pending.drain(..total).collect();
            if !tag {
                let code = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
                // SSLRequest and GSSENCRequest come before the StartupMessage.
                self.started = !matches!(code, 80_877_103 | 80_877_104);
                continue;
            }
            let body = &message[5..];
            let count = |sql: &str| {
                if let Ok(mut statements) = tally.statements.lock() {
                    *statements.entry(label(sql)).or_default() += 1;
                }
            };
            match message[0] {
                b'P' => {
                    let (name, rest) = c_string(body);
                    let (sql, _) = c_string(rest);
                    self.prepared.insert(name, sql);
                }
                b'B' => {
                    let (_, rest) = c_string(body);
                    let (name, _) = c_string(rest);
                    count(self.prepared.get(&name).map_or("?", String::as_str));
                }
                b'Q' => {
                    count(&c_string(body).0);
                    tally.round_trips.fetch_add(1, Ordering::SeqCst);
                }
                b'S' => {
                    tally.round_trips.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    }
}

/// Forwards connections to `upstream`, reading what the client sends.
async fn proxy(listener: TcpListener, upstream: String, tally: Arc<Tally>) {
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = TcpStream::connect(&upstream).await else {
            continue;
        };
        let tally = tally.clone();
        tokio::spawn(async move {
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
            let mut frontend = Frontend::default();
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n) = from_client.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                frontend.feed(&buffer[..n], &tally);
                if to_server.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Round trips and statements of one create, counted on the wire: a `serve` whose
/// database URL points at the proxy books `N` appointments one after the other for each
/// kind of request.
async fn count_round_trips(db_url: &str, auth: &str, from: DateTime<Utc>) -> Result<String> {
    const N: i64 = 100;
    let url: url_parts::DbUrl = db_url.parse()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let tally = Arc::new(Tally::default());
    let proxy_task = tokio::spawn(proxy(listener, url.host_port.clone(), tally.clone()));
    // Plain TCP, so the proxy can read the protocol.
    let server = serve(&url.through(port)).await?;
    let http = reqwest::Client::new();
    let mut out = String::from(
        "  per create, counted on the wire (sequential, warm connections); round trips are Syncs, and\n  include sqlx's ping of each connection it takes back into its pool (off the request's path):\n",
    );
    let kinds: [(&str, bool, bool); 3] = [
        ("no key", false, false),
        ("Idempotency-Key", true, false),
        ("Idempotency-Key, Prefer: wait=0", true, true),
    ];
    for (k, (name, keyed, wait)) in kinds.into_iter().enumerate() {
        let send = |n: i64| {
            let mut request = http
                .post(format!("{}/appointments", server.base))
                .header("authorization", auth)
                .json(&booking(0, n + k as i64 * 200, from));
            if keyed {
                request = request.header("idempotency-key", format!("count-{k}-{n}"));
            }
            if wait {
                request = request.header("prefer", "wait=0");
            }
            request.send()
        };
        // Warm-up: connections opened and statements prepared.
        for n in 0..5 {
            send(n).await?.error_for_status()?;
        }
        let (trips_before, statements_before) = tally.snapshot();
        for n in 5..5 + N {
            send(n).await?.error_for_status()?;
        }
        // The coalesced NOTIFY after the commit is sent from a task of its own.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (trips, statements) = tally.snapshot();
        out.push_str(&format!(
            "    {name:<34} {:.2} round trips\n",
            (trips - trips_before) as f64 / N as f64
        ));
        let mut rows: Vec<(String, f64)> = statements
            .into_iter()
            .map(|(sql, count)| {
                let before = statements_before.get(&sql).copied().unwrap_or(0);
                (sql, (count - before) as f64 / N as f64)
            })
            .filter(|(_, per)| *per > 0.0)
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (sql, per) in rows {
            out.push_str(&format!("      {per:.2}  {sql}\n"));
        }
    }
    drop(server);
    proxy_task.abort();
    Ok(out)
}

/// Just enough of a PostgreSQL URL to point it at the proxy.
mod url_parts {
    use anyhow::{Context, Error};

    pub struct DbUrl {
        prefix: String,
        pub host_port: String,
        rest: String,
    }

    impl std::str::FromStr for DbUrl {
        type Err = Error;
        fn from_str(url: &str) -> Result<Self, Error> {
            let (scheme, after) = url.split_once("://").context("a URL")?;
            let (authority, path) = after.split_once('/').unwrap_or((after, ""));
            let (user, host_port) = match authority.rsplit_once('@') {
                Some((user, host)) => (format!("{user}@"), host),
                None => (String::new(), authority),
            };
            let host_port = if host_port.contains(':') {
                host_port.to_string()
            } else {
                format!("{host_port}:5432")
            };
            Ok(Self {
                prefix: format!("{scheme}://{user}"),
                host_port,
                rest: path.to_string(),
            })
        }
    }

    impl DbUrl {
        /// The same database through 127.0.0.1:`port`, without TLS.
        pub fn through(&self, port: u16) -> String {
            let separator = if self.rest.contains('?') { '&' } else { '?' };
            format!(
                "{}127.0.0.1:{port}/{}{separator}sslmode=disable",
                self.prefix, self.rest
            )
        }
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
    let latency_clients = env_or("BENCH_LATENCY_CLIENTS", 8) as usize;
    let db_name = format!("phasebook_bench_{}", std::process::id());
    psql(&admin_url, &format!("create database {db_name}"))?;
    let db_url = with_database(&admin_url, &db_name);
    let outcome = run(&db_url, seconds, clients, latency_clients).await;
    psql(
        &admin_url,
        &format!("drop database if exists {db_name} with (force)"),
    )?;
    outcome
}

async fn run(db_url: &str, seconds: u64, clients: usize, latency_clients: usize) -> Result<()> {
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

    let out = phasebook()
        .args([
            "key", "create", "--tenant", &tenant_id, "--role", "agent", "--json",
        ])
        .env("PHASEBOOK_DATABASE_URL", db_url)
        .output()?;
    if !out.status.success() {
        bail!(
            "key create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let issued: Value = serde_json::from_slice(&out.stdout)?;
    // Agents book; an ops key's every change is also written to the audit log.
    let agent = format!(
        "Bearer {}",
        issued["api_key"].as_str().context("agent api_key")?
    );

    let server = serve(db_url).await?;
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;

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
    // One stylist per client and phase, so clients never collide on the double-booking
    // guard, however many appointments a phase books.
    let stylists = clients + latency_clients;
    for c in 0..stylists {
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
            last = stylists - 1
        ),
    )?;

    // Each phase books its own stretch of the calendar, so none collides with another.
    let day = |n: i64| chrono::Utc::now() + chrono::Duration::days(n);
    let trips = count_round_trips(db_url, &agent, day(250)).await?;
    let http = Arc::new(http);
    let (latency, _) = drive(
        &http,
        &base,
        &agent,
        (latency_clients, clients),
        seconds,
        day(1),
    )
    .await?;
    let committed_before = xact_commit(db_url)?;
    let (load, elapsed) = drive(&http, &base, &agent, (clients, 0), seconds, day(1)).await?;
    // PostgreSQL publishes a backend's counts within a second of its last transaction.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let committed = xact_commit(db_url)?.saturating_sub(committed_before);
    let rss = peak_rss_mib(server.child.id()).unwrap_or(f64::NAN);
    drop(server);

    let pgbench_tps = pgbench(db_url, &tenant_id, seconds, clients)?.tps;
    // The floor under the 8-client latency: the same transaction with nothing around it.
    let pgbench_8 = pgbench(db_url, &tenant_id, seconds, latency_clients)?;
    let lookup = caller_lookup(db_url, &tenant_id, &auth).await?;
    let rps = load.latencies.len() as f64 / elapsed;
    let ratio = rps / pgbench_tps;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95_8 = percentile(&latency.latencies, 95.0);
    println!(
        "POST /appointments on PostgreSQL over loopback, agent key, Idempotency-Key, {seconds} s per phase"
    );
    print!("{trips}");
    println!(
        "  {latency_clients} clients   created {} ({} errors)  p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms   (target p95 <= 15 ms: {})",
        latency.latencies.len(),
        latency.errors,
        ms(percentile(&latency.latencies, 50.0)),
        ms(p95_8),
        ms(percentile(&latency.latencies, 99.0)),
        if p95_8 <= Duration::from_millis(15) {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "             pgbench, the same transaction at {latency_clients} clients: p50 {:.2} ms  p95 {:.2} ms  ({:.0} tps)",
        ms(percentile(&pgbench_8.latencies, 50.0)),
        ms(percentile(&pgbench_8.latencies, 95.0)),
        pgbench_8.tps,
    );
    println!(
        "  {clients} clients  created {} ({} errors)  {rps:.0} requests/s  p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms",
        load.latencies.len(),
        load.errors,
        ms(percentile(&load.latencies, 50.0)),
        ms(percentile(&load.latencies, 95.0)),
        ms(percentile(&load.latencies, 99.0)),
    );
    println!(
        "             {:.2} transactions committed per create (pg_stat_database.xact_commit; every autocommit statement is one)",
        committed as f64 / load.latencies.len().max(1) as f64
    );
    println!(
        "  peak RSS   {rss:.1} MiB   (target <= 60 MB: {})",
        if rss <= 60.0 { "met" } else { "missed" }
    );
    println!(
        "  pgbench    {pgbench_tps:.0} tps at {clients} clients (same transaction, same database, same run)"
    );
    println!(
        "  ratio      {ratio:.2}   (target >= 0.6 at {clients} clients: {})",
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

    let server = serve(db_url).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
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

/// What pgbench measured: transactions per second, and each transaction's latency.
struct Pgbench {
    tps: f64,
    latencies: Vec<Duration>,
}

/// Runs the appointment transaction in pgbench and returns its throughput and latencies
/// (from pgbench's per-transaction log).
fn pgbench(db_url: &str, tenant_id: &str, seconds: u64, clients: usize) -> Result<Pgbench> {
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
    let logs = std::env::temp_dir().join(format!(
        "phasebook-pgbench-{}-{clients}",
        std::process::id()
    ));
    std::fs::create_dir_all(&logs)?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            // Prepared, as sqlx sends phasebook's statements: planning is not counted
            // against pgbench when it is not against phasebook.
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-l",
        ])
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .arg("-f")
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
    // One line per transaction: client, transaction number, latency in µs, ...
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        latencies.extend(text.lines().filter_map(|line| {
            let micros: u64 = line.split_whitespace().nth(2)?.parse().ok()?;
            Some(Duration::from_micros(micros))
        }));
    }
    let _ = std::fs::remove_dir_all(&logs);
    latencies.sort();
    Ok(Pgbench { tps, latencies })
}
