//! The real `phasebook` binary syncing against the Cal.com emulator: killed with SIGKILL
//! at random moments during a sync run and restarted (SQLite and PostgreSQL), and three
//! `phasebook serve` replicas sharing one PostgreSQL. Either way, once the queue drains,
//! every appointment is `synced` (or needs review with a reason), Cal.com holds exactly one
//! active booking per synced segment — the one we stored — and nothing else.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use calcom_sim::{Faults, RouteFaults, SimConfig};
use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::store::sync::SyncView;
use phasebook_api::sync::SyncHandle;
use phasebook_domain::sync::AppointmentSyncStatus;
use phasebook_test_support::app::Seeded;
use phasebook_test_support::fixtures;
use phasebook_test_support::{ChildProcess, SpawnBuilder, TestApp, TestDatabase, wait_until_idle};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long the last process of a run has to empty the queue.
const DRAIN_WITHIN: Duration = Duration::from_secs(90);

/// `phasebook serve` with a worker tuned for tests: millisecond retries, a short lease
/// where a killed worker's jobs must be taken over quickly, and a short Cal.com timeout.
/// Its log is named after `name`.
fn serve(database_url: &str, concurrency: u32, lease_ms: u32, name: &str) -> SpawnBuilder {
    let phasebook =
        phasebook_test_support::phasebook(env!("CARGO_BIN_EXE_phasebook"), database_url);
    ChildProcess::build(&format!("phasebook-{name}"), phasebook)
        .arg("serve")
        .listen("--listen")
        .args([
            "--sync-concurrency",
            &concurrency.to_string(),
            "--sync-retry-base-ms",
            "20",
            "--sync-retry-max-ms",
            "200",
            "--sync-lease-ms",
            &lease_ms.to_string(),
            "--sync-poll-ms",
            "200",
            "--calcom-timeout-ms",
            "1500",
            "--calcom-rate-limit",
            "1000000",
            "--sync-shutdown-grace-ms",
            "500",
        ])
}

/// A salon on the emulator, not serving (see `phasebook_test_support::app`): the
/// `phasebook serve` processes under test serve it.
struct Setup {
    salon_app: Seeded,
    handle: SyncHandle,
}

phasebook_test_support::deref_to!(Setup => salon_app: Seeded);

async fn setup(database: TestDatabase, stylists: usize, faults: Faults) -> Setup {
    let salon_app = TestApp::builder()
        .stylists(stylists)
        .sim(SimConfig {
            faults,
            ..SimConfig::default()
        })
        .without_worker()
        .seed(database)
        .await;
    let handle = SyncHandle::for_database(&salon_app.db);
    Setup { salon_app, handle }
}

/// Books `count` appointments straight through the store, one per [`slot`].
async fn book_slots(setup: &Setup, count: usize) -> Vec<Uuid> {
    let mut appointments = Vec::new();
    for n in 0..count {
        let (staff, start) = slot(setup, n);
        let staff = phasebook_domain::StaffId::parse(&staff).expect("staff");
        appointments.push(
            fixtures::book(&setup.db, &setup.salon, &staff, start)
                .await
                .expect("book"),
        );
    }
    appointments
}

/// Appointment `n`'s start: back-to-back two-hour slots per stylist from 2030-03-01.
fn slot(setup: &Setup, n: usize) -> (String, chrono::DateTime<Utc>) {
    let stylists = setup.account.staff.len();
    let first = Utc
        .with_ymd_and_hms(2030, 3, 1, 0, 0, 0)
        .single()
        .expect("start");
    let hours = 2 * i64::try_from(n / stylists).expect("small");
    (
        setup.account.staff[n % stylists].staff_id.to_string(),
        first + TimeDelta::hours(hours),
    )
}

async fn outstanding(setup: &Setup) -> i64 {
    setup
        .handle
        .store()
        .outstanding_jobs(Utc::now())
        .await
        .expect("outstanding")
        .0
}

/// The invariants after a drained run; returns every appointment's sync view.
async fn check_invariants(setup: &Setup, appointments: &[Uuid], label: &str) -> Vec<SyncView> {
    let mut views = Vec::new();
    for id in appointments {
        let view = setup
            .handle
            .store()
            .sync_view(setup.salon.tenant_id, *id)
            .await
            .expect("view")
            .expect("exists");
        match view.status {
            AppointmentSyncStatus::Synced => assert!(!view.requires_manual_review),
            AppointmentSyncStatus::NeedsReview => {
                let reason = view.review_reason.as_deref().unwrap_or_default();
                assert!(reason.contains("POST /resync/"), "{label}: {reason}");
            }
            other => panic!("{label}: appointment {id} ended {other}: {view:#?}"),
        }
        views.push(view);
    }
    let counted = fixtures::check_exactly_once(&views, &setup.sim.state())
        .unwrap_or_else(|broken| panic!("{label}: {broken}"));
    assert_eq!(
        counted.cancelled_bookings, 0,
        "{label}: nothing was cancelled, so every booking is active"
    );
    views
}

async fn sigkilled_and_restarted_the_binary_still_books_every_segment_once(database: TestDatabase) {
    let label = database.backend();
    const APPOINTMENTS: usize = 80;
    let started = Instant::now();
    // Slow creates, so that kills land while calls are in flight; some answers are lost.
    let faults = Faults::default().with_seed(4242).route(
        "bookings.create",
        RouteFaults {
            latency_ms: 150,
            lost_response_rate: 0.05,
            ..RouteFaults::default()
        },
    );
    let setup = setup(database, 8, faults).await;
    let appointments = book_slots(&setup, APPOINTMENTS).await;

    let mut kills = 0;
    let mut restarts = 0;
    while kills < 5 {
        let server = serve(&setup.database.url, 4, 1500, "crash").start().await;
        restarts += 1;
        let pause = Duration::from_millis(300 + rand::random::<u64>() % 900);
        tokio::time::sleep(pause).await;
        server.kill();
        kills += 1;
        if outstanding(&setup).await == 0 {
            break;
        }
    }
    // The last start runs until the queue is empty.
    let server = serve(&setup.database.url, 4, 1500, "crash-final")
        .start()
        .await;
    let log = server.log_path().display();
    wait_until_idle(
        &setup.handle,
        DRAIN_WITHIN,
        &format!("{label}; log in {log}"),
    )
    .await;
    server.kill();

    let views = check_invariants(&setup, &appointments, label).await;
    let cut_off = views
        .iter()
        .flat_map(|v| &v.attempts)
        .filter(|a| a.outcome.is_none())
        .count();
    let adopted = views
        .iter()
        .flat_map(|v| &v.attempts)
        .filter(|a| a.outcome.as_deref() == Some("adopted"))
        .count();
    println!(
        "crash on {label}: {APPOINTMENTS} appointments, {kills} SIGKILLs over {restarts} starts, \
         {cut_off} calls cut off mid-flight, {adopted} bookings adopted, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    setup.sim.sim.set_faults(Faults::default());
}

/// The move of appointment `n` (one in three moves; every sixth to another stylist 60 days
/// on, the others 30 days on with the same stylist: slots are back to back), or `None`.
fn planned_move(setup: &Setup, n: usize) -> Option<Value> {
    if !n.is_multiple_of(3) {
        return None;
    }
    let (_, start) = slot(setup, n);
    let stylists = setup.account.staff.len();
    Some(if n.is_multiple_of(6) {
        json!({
            "start": (start + TimeDelta::days(60)).to_rfc3339(),
            "staff_id": setup.account.staff[(n + 1) % stylists].staff_id.to_string(),
        })
    } else {
        json!({"start": (start + TimeDelta::days(30)).to_rfc3339()})
    })
}

/// Sends one move to `server`; `Ok` when it was answered 200, else what was answered.
async fn send_move(
    server_port: u16,
    key: &str,
    id: Uuid,
    body: &Value,
    idempotency: &str,
) -> Result<(), String> {
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{server_port}/appointments/{id}/reschedule"
        ))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency)
        .json(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() == reqwest::StatusCode::OK {
        return Ok(());
    }
    Err(format!(
        "{}: {}",
        response.status(),
        response.text().await.unwrap_or_default()
    ))
}

async fn sigkilled_during_reschedules_every_segment_ends_once_at_its_new_time(
    database: TestDatabase,
) {
    let label = database.backend();
    const APPOINTMENTS: usize = 48;
    let started = Instant::now();
    let faults = Faults::default().with_seed(4343).route(
        "bookings",
        RouteFaults {
            latency_ms: 150,
            lost_response_rate: 0.05,
            ..RouteFaults::default()
        },
    );
    let setup = setup(database, 8, faults).await;
    setup
        .db
        .keys()
        .update_tenant(
            setup.salon.tenant_id,
            &phasebook_api::store::keys::TenantUpdate {
                rate_limit: Some(phasebook_api::store::keys::ApiRateLimit {
                    per_second: 1_000_000,
                    burst: 1_000_000,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("rate limit");
    // The slots are years ahead.
    setup
        .db
        .booking()
        .set_booking_settings(
            setup.salon.tenant_id,
            &phasebook_api::store::holds::BookingSettings {
                country: None,
                horizon_days: 3650,
            },
        )
        .await
        .expect("horizon");
    let appointments = book_slots(&setup, APPOINTMENTS).await;
    let moves: Vec<(usize, Uuid, Value)> = appointments
        .iter()
        .enumerate()
        .filter_map(|(n, id)| planned_move(&setup, n).map(|body| (n, *id, body)))
        .collect();

    // Each start sends a share of the moves and is killed while they and the syncs run.
    let mut kills = 0;
    for round in 0..4 {
        let server = serve(&setup.database.url, 4, 1500, "crash-moves")
            .healthy_at("/healthz")
            .start()
            .await;
        let port = server.port;
        let key = setup.salon.ops_key.clone();
        let batch: Vec<(usize, Uuid, Value)> = moves
            .iter()
            .filter(|(n, _, _)| (n / 3) % 4 == round)
            .cloned()
            .collect();
        let sender = tokio::spawn(async move {
            for (n, id, body) in batch {
                let _ = send_move(port, &key, id, &body, &format!("crash-move-{n}")).await;
            }
        });
        let pause = Duration::from_millis(400 + rand::random::<u64>() % 800);
        tokio::time::sleep(pause).await;
        server.kill();
        kills += 1;
        sender.abort();
    }
    // The last start resends every move (a fresh key: a request cut off by a kill leaves
    // its key in flight for two minutes; the same move again changes nothing) and drains.
    let server = serve(&setup.database.url, 4, 1500, "crash-moves-final")
        .healthy_at("/healthz")
        .start()
        .await;
    for (n, id, body) in &moves {
        if let Err(answer) = send_move(
            server.port,
            &setup.salon.ops_key,
            *id,
            body,
            &format!("crash-move-final-{n}"),
        )
        .await
        {
            panic!("{label}: move {n} refused after the restart: {answer}");
        }
    }
    let log = server.log_path().display();
    wait_until_idle(
        &setup.handle,
        DRAIN_WITHIN,
        &format!("{label}; log in {log}"),
    )
    .await;
    server.kill();

    let mut views = Vec::new();
    for id in &appointments {
        let view = setup
            .handle
            .store()
            .sync_view(setup.salon.tenant_id, *id)
            .await;
        views.push(view.expect("view").expect("exists"));
    }
    if let Err(broken) = fixtures::check_exactly_once(&views, &setup.sim.state()) {
        let named = views
            .iter()
            .find(|v| broken.contains(&v.appointment_id.to_string()));
        panic!("{label}: {broken}\n{named:#?}");
    }
    let views = check_invariants(&setup, &appointments, label).await;
    fixtures::check_current_times(&views, &setup.sim.state())
        .unwrap_or_else(|broken| panic!("{label}: {broken}"));
    let moved_away = views
        .iter()
        .flat_map(|v| &v.attempts)
        .filter(|a| a.moved_from_uid.is_some() || a.operation == "cancel_moved")
        .count();
    println!(
        "crash during moves on {label}: {APPOINTMENTS} appointments, {} moved, {kills} SIGKILLs, \
         {moved_away} move attempts, {:.1} s",
        moves.len(),
        started.elapsed().as_secs_f64()
    );
    setup.sim.sim.set_faults(Faults::default());
}

phasebook_test_support::on_both_backends!(
    sigkilled_and_restarted_the_binary_still_books_every_segment_once,
    sigkilled_during_reschedules_every_segment_ends_once_at_its_new_time,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_postgres_share_the_work_and_never_run_a_job_twice_at_once() {
    const APPOINTMENTS: usize = 120;
    let Some(database) = TestDatabase::postgres_from_env().await else {
        eprintln!("DATABASE_URL is not set: the replica test needs PostgreSQL; skipped");
        return;
    };
    let started = Instant::now();
    let faults = Faults::default().with_seed(33).route(
        "bookings.create",
        RouteFaults {
            latency_ms: 40,
            error_rate: 0.05,
            lost_response_rate: 0.05,
            ..RouteFaults::default()
        },
    );
    let setup = setup(database, 8, faults).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let replica = serve(&setup.database.url, 4, 5000, "replica");
        replicas.push(replica.healthy_at("/healthz").start().await);
    }

    // Appointments come in through all three APIs; any replica's worker may take any job
    // (in-process wake-up for its own, PostgreSQL notifications for the others').
    let http = reqwest::Client::new();
    let mut appointments = Vec::new();
    for n in 0..APPOINTMENTS {
        let (staff, start) = slot(&setup, n);
        let replica = &replicas[n % 3];
        let response = http
            .post(format!("http://127.0.0.1:{}/appointments", replica.port))
            .bearer_auth(&setup.salon.ops_key)
            .json(&json!({
                "service_id": "colour",
                "staff_id": staff,
                "start": start.to_rfc3339(),
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
            }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        appointments.push(Uuid::parse_str(body["id"].as_str().expect("id")).expect("uuid"));
    }
    wait_until_idle(&setup.handle, DRAIN_WITHIN, "the replicas").await;
    for replica in replicas {
        replica.kill();
    }

    let views = check_invariants(&setup, &appointments, "replicas").await;
    // Every call for a segment is made by one worker at a time: per segment, the attempts
    // (write-ahead rows with start and finish) of different workers never overlap.
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for view in &views {
        let mut by_segment: HashMap<&str, Vec<_>> = HashMap::new();
        for attempt in &view.attempts {
            let worker = attempt.worker.clone().unwrap_or_default();
            *per_worker.entry(worker).or_default() += 1;
            by_segment
                .entry(attempt.segment_key.as_str())
                .or_default()
                .push(attempt);
        }
        for (segment, attempts) in by_segment {
            let created = attempts
                .iter()
                .filter(|a| matches!(a.outcome.as_deref(), Some("created" | "adopted")))
                .count();
            assert_eq!(
                created, 1,
                "segment {segment} of {} booked once",
                view.appointment_id
            );
            for a in &attempts {
                for b in &attempts {
                    if a.worker == b.worker {
                        continue;
                    }
                    let (Some(a_end), Some(b_end)) = (a.finished_at, b.finished_at) else {
                        // A lease that ran out mid-call (a stalled process) also leaves one.
                        panic!(
                            "no worker died here, every attempt finished: segment {segment} of {}: {:?} by {:?} at {} / {:?} by {:?} at {}",
                            view.appointment_id,
                            a.operation,
                            a.worker,
                            a.started_at,
                            b.operation,
                            b.worker,
                            b.started_at
                        );
                    };
                    let overlap = a.started_at < b_end && b.started_at < a_end;
                    assert!(
                        !overlap,
                        "two workers on segment {segment} of {} at once",
                        view.appointment_id
                    );
                }
            }
        }
    }
    let workers: HashSet<&String> = per_worker.keys().collect();
    assert_eq!(
        workers.len(),
        3,
        "each replica did some work: {per_worker:?}"
    );
    println!(
        "replicas: {APPOINTMENTS} appointments over 3 replicas, attempts per worker {:?}, {:.1} s",
        per_worker.values().collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_back_the_leases_so_the_next_process_carries_on_at_once() {
    const APPOINTMENTS: usize = 6;
    let database = TestDatabase::sqlite();
    // Cal.com never answers a create: every job is mid-call when the signal comes.
    let faults = Faults::default()
        .with_seed(7)
        .route("bookings.create", RouteFaults::hang_rate(1.0));
    let setup = setup(database, 2, faults).await;
    let appointments = book_slots(&setup, APPOINTMENTS).await;
    // Leases far longer than the test: only giving them back lets the next process in.
    // Answering `/healthz` means it serves, so its SIGTERM handler is in place. 24 slots let
    // one salon run all six jobs at once (a tenant gets a quarter of them).
    let mut server = serve(&setup.database.url, 24, 600_000, "sigterm")
        .healthy_at("/healthz")
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut in_flight = 0;
        for id in &appointments {
            let view = setup
                .handle
                .store()
                .sync_view(setup.salon.tenant_id, *id)
                .await
                .expect("view")
                .expect("exists");
            in_flight += view.attempts.iter().filter(|a| a.outcome.is_none()).count();
        }
        if in_flight == APPOINTMENTS * 4 {
            break;
        }
        assert!(Instant::now() < deadline, "creates never went out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = server.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let status = server.wait().await.expect("wait");
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    for id in &appointments {
        assert_eq!(
            phasebook_test_support::sync_job(&setup.db, *id)
                .await
                .expect("job")
                .as_deref(),
            Some("pending"),
            "the lease was given back"
        );
    }

    setup.sim.sim.set_faults(Faults::default());
    let next = serve(&setup.database.url, 24, 600_000, "sigterm-next")
        .start()
        .await;
    let label = "the process started after SIGTERM";
    wait_until_idle(&setup.handle, Duration::from_secs(60), label).await;
    next.kill();
    check_invariants(&setup, &appointments, "sigterm").await;
}
