//! One Cal.com budget per API key across processes: two processes (two connections to the
//! database, each with its own budgets and clients, sharing nothing in memory) never send
//! more than the key's limit together, a 429 seen by one pauses the other, and interactive
//! calls go before background work. And job claiming is fair: tenants take turns, each
//! within a cap. SQLite always, PostgreSQL when `DATABASE_URL` is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use calcom_client::{Budget, CalcomClient, ClientConfig, Priority, RateLimit, SecretString};
use calcom_sim::{RateLimitConfig, RunningSim, Seed, SimConfig, salon};
use phasebook_api::budget::{Budgets, KeyBudget, SharedBudget};
use phasebook_api::store::Database;
use phasebook_test_support::{TestDatabase, databases, spawn_sim};

/// A second "process": its own pool on the same database.
async fn process(database: &TestDatabase) -> Database {
    database.connect().await.expect("connect")
}

async fn throttled_sim(limit: u32, window: Duration, block: Duration) -> RunningSim {
    spawn_sim(
        SimConfig {
            rate_limit: Some(RateLimitConfig {
                limit,
                window,
                block,
            }),
            ..Default::default()
        },
        Seed::salon(),
    )
    .await
}

fn client(sim: &RunningSim, db: &Database, limit: RateLimit) -> CalcomClient {
    let key = SecretString::from(salon::API_KEY.to_owned());
    let fingerprint = phasebook_api::sync::clients::key_fingerprint(&sim.base_url, &key);
    let mut config = ClientConfig::new(sim.base_url.clone(), key);
    config.read_retries = 0;
    config.rate_limit = limit;
    config.budget = Some(Arc::new(KeyBudget(
        Budgets::new(db.clone()).for_key(fingerprint, limit),
    )));
    CalcomClient::new(config).expect("client")
}

fn rejected(sim: &RunningSim) -> u64 {
    sim.state().requests.values().map(|r| r.rate_limited).sum()
}

/// Whether the budget gave a token of `priority` at once.
async fn granted(budget: &SharedBudget, priority: Priority) -> bool {
    budget.try_take(priority).await.expect("take").is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_shared_by_two_processes() {
    for database in databases().await {
        let window = Duration::from_secs(2);
        let sim = throttled_sim(6, window, Duration::from_secs(30)).await;
        let limit = RateLimit {
            requests: 6,
            per: window,
        };
        let (a, b) = (process(&database).await, process(&database).await);
        let (ca, cb) = (client(&sim, &a, limit), client(&sim, &b, limit));
        let started = Instant::now();
        // Each process alone would send its 8 at once; together they are 16 for a key
        // that allows 6 per window.
        let burst = |c: CalcomClient| async move {
            for _ in 0..8 {
                c.get_event_type(salon::ANNA_SEGMENTS[0])
                    .await
                    .expect("never refused");
            }
        };
        tokio::join!(burst(ca.clone()), burst(cb.clone()));
        assert_eq!(rejected(&sim), 0, "{}: no 429", database.url);
        assert_eq!(ca.usage().requests + cb.usage().requests, 16);
        // 16 requests at 6 per window need three windows: two full waits.
        assert!(
            started.elapsed() >= window * 2,
            "{}: 16 requests went out in {:?}",
            database.url,
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_both_processes_until_the_reset() {
    for database in databases().await {
        let block = Duration::from_secs(3);
        let sim = throttled_sim(2, Duration::from_secs(60), block).await;
        let limit = RateLimit {
            requests: 2,
            per: Duration::from_secs(60),
        };
        // Another tool with the same key and its own limiter spends Cal.com's window and
        // gets the key blocked.
        let mut outsider = ClientConfig::new(
            sim.base_url.clone(),
            SecretString::from(salon::API_KEY.to_owned()),
        );
        outsider.read_retries = 0;
        outsider.rate_limit = RateLimit {
            requests: 100,
            per: Duration::from_secs(60),
        };
        let outsider = CalcomClient::new(outsider).expect("client");
        for _ in 0..2 {
            outsider
                .get_event_type(salon::ANNA_SEGMENTS[0])
                .await
                .expect("within Cal.com's limit");
        }
        let blocked = Instant::now();
        outsider
            .get_event_type(salon::ANNA_SEGMENTS[0])
            .await
            .expect_err("429");
        let (a, b) = (process(&database).await, process(&database).await);
        let (ca, cb) = (client(&sim, &a, limit), client(&sim, &b, limit));
        let err = ca
            .get_event_type(salon::ANNA_SEGMENTS[0])
            .await
            .expect_err("the key is blocked");
        assert!(
            matches!(err, calcom_client::CalcomError::RateLimited { .. }),
            "{err:?}"
        );
        // The other process waits for the reset instead of collecting 429s.
        tokio::time::sleep(Duration::from_millis(200)).await;
        cb.get_event_type(salon::ANNA_SEGMENTS[0])
            .await
            .expect("after the pause");
        assert!(
            blocked.elapsed() >= block,
            "{}: the other process went on after {:?}",
            database.url,
            blocked.elapsed()
        );
        assert_eq!(
            rejected(&sim),
            2,
            "{}: the outsider's 429 and the first process's, none from the second",
            database.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_calls_overtake_background_work() {
    for database in databases().await {
        let (a, b) = (process(&database).await, process(&database).await);
        let limit = RateLimit {
            requests: 5,
            per: Duration::from_secs(60),
        };
        let fingerprint = [7u8; 32];
        let background = KeyBudget(Budgets::new(a).for_key(fingerprint, limit));
        let interactive = KeyBudget(Budgets::new(b).for_key(fingerprint, limit));
        // Background work takes what it may at once (its share of the time gone by).
        let mut taken = 0;
        while granted(&background.0, Priority::Background).await {
            taken += 1;
        }
        assert!(taken >= 1, "{}: background got nothing", database.url);
        let queued = tokio::spawn({
            let background = background.clone();
            async move { background.acquire(Priority::Background).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !queued.is_finished(),
            "background waits for the next window"
        );
        tokio::time::timeout(
            Duration::from_secs(1),
            interactive.acquire(Priority::Interactive),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: an interactive call waited behind background work",
                database.url
            )
        });
        queued.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_leaves_room_for_as_many_callers_as_the_last_window_had() {
    for database in databases().await {
        let limit = RateLimit {
            requests: 5,
            per: Duration::from_secs(1),
        };
        let budget = Budgets::new(process(&database).await).for_key([9u8; 32], limit);
        for _ in 0..4 {
            assert!(granted(&budget, Priority::Interactive).await);
        }
        // The next window: four callers are expected again, so background work gets one.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(
            granted(&budget, Priority::Background).await,
            "{}",
            database.url
        );
        assert!(
            !granted(&budget, Priority::Background).await,
            "{}: background took a caller's share",
            database.url
        );
        assert!(
            granted(&budget, Priority::Interactive).await,
            "{}",
            database.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_starting_on_a_quiet_minute_leaves_it_to_callers() {
    for database in databases().await {
        let limit = RateLimit {
            requests: 20,
            per: Duration::from_secs(60),
        };
        let budget = Budgets::new(process(&database).await).for_key([13u8; 32], limit);
        // A doctor run asks for the whole window at once, with no caller seen lately.
        let mut background = 0;
        for _ in 0..20 {
            if granted(&budget, Priority::Background).await {
                background += 1;
            }
        }
        assert!(
            (1..=2).contains(&background),
            "{}: background took {background} of 20 in the window's first moment",
            database.url
        );
        // Callers arriving later in the minute find the rest.
        for n in 0..20 - background {
            assert!(
                granted(&budget, Priority::Interactive).await,
                "{}: caller {n} found the window spent",
                database.url
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_calcoms_next_window_starts_it_here_too() {
    for database in databases().await {
        let limit = RateLimit {
            requests: 10,
            per: Duration::from_secs(10),
        };
        let budget = Budgets::new(process(&database).await).for_key([15u8; 32], limit);
        for _ in 0..8 {
            assert!(granted(&budget, Priority::Interactive).await);
        }
        // Cal.com counted one more in this window than we did: we count it too.
        budget
            .correct(calcom_client::WindowReport {
                remaining: 1,
                reset_after: Duration::from_secs(5),
            })
            .await
            .expect("correct");
        assert!(granted(&budget, Priority::Interactive).await);
        assert!(
            !granted(&budget, Priority::Interactive).await,
            "{}: Cal.com's count of this window was not applied",
            database.url
        );
        // Cal.com's window turned before ours: one request counted in its next window,
        // which ends in 19 s.
        budget
            .correct(calcom_client::WindowReport {
                remaining: 9,
                reset_after: Duration::from_secs(19),
            })
            .await
            .expect("correct");
        for n in 0..9 {
            assert!(
                granted(&budget, Priority::Interactive).await,
                "{}: request {n} of Cal.com's new window was refused",
                database.url
            );
        }
        assert!(
            !granted(&budget, Priority::Interactive).await,
            "{}: more than Cal.com's limit in its window",
            database.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_refused_a_token_count_in_the_room_the_next_window_keeps() {
    for database in databases().await {
        let limit = RateLimit {
            requests: 10,
            per: Duration::from_secs(5),
        };
        let budget = Budgets::new(process(&database).await).for_key([11u8; 32], limit);
        let key = KeyBudget(budget.clone());
        // Background work takes two early in the window, callers the other eight.
        for priority in [
            [Priority::Background; 2].as_slice(),
            &[Priority::Interactive; 8],
        ]
        .concat()
        {
            assert!(granted(&budget, priority).await);
        }
        // Three more callers find the window spent: callers asked for ten in this window.
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let key = key.clone();
                tokio::spawn(async move { key.acquire(Priority::Interactive).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "the window is spent"
        );
        for caller in waiting {
            tokio::time::timeout(Duration::from_secs(10), caller)
                .await
                .expect("served in the next window")
                .expect("caller task");
        }
        // Well inside the next window, after the waiting callers' mark has lapsed: the room
        // kept is what callers asked for last time (the whole window), not the eight they
        // got, so background work gets nothing this time.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !granted(&budget, Priority::Background).await,
            "{}: background took a share callers asked for in the last window",
            database.url
        );
        assert!(
            granted(&budget, Priority::Interactive).await,
            "{}: a caller still finds a token",
            database.url
        );
    }
}

#[tokio::test]
async fn job_claiming_takes_tenants_in_turns_and_caps_each_one() {
    use chrono::{TimeDelta, TimeZone, Utc};
    use phasebook_test_support::fixtures;

    for database in databases().await {
        let db = process(&database).await;
        let segments = fixtures::segments(2, 30, 0);
        let account = fixtures::sim_account(1, &segments);
        let calcom = "http://127.0.0.1:9";
        let busy = fixtures::seed_sim_salon(&db, calcom, &account, "colour", segments.clone())
            .await
            .expect("busy salon");
        let quiet = fixtures::seed_sim_salon(&db, calcom, &account, "colour", segments)
            .await
            .expect("quiet salon");
        let staff = &account.staff[0].staff_id;
        let day = |d: u32| {
            Utc.with_ymd_and_hms(2030, 5, d, 9, 0, 0)
                .single()
                .expect("date")
        };
        // The busy salon's backlog is older than the quiet salon's one appointment.
        for d in 1..=10 {
            fixtures::book(&db, &busy, staff, day(d))
                .await
                .expect("book");
        }
        let quiet_job = fixtures::book(&db, &quiet, staff, day(20))
            .await
            .expect("book");
        let store = phasebook_api::sync::sync_store(&db);
        let now = Utc::now();
        let lease = now + TimeDelta::seconds(60);
        let first = store
            .claim_jobs_fairly("worker", now, lease, 2, 10, false)
            .await
            .expect("claim");
        let tenants: Vec<_> = first.iter().map(|j| j.tenant_id).collect();
        assert!(
            tenants.contains(&busy.tenant_id) && tenants.contains(&quiet.tenant_id),
            "{}: two slots, one for each salon, not both for the older backlog",
            database.url
        );
        assert!(first.iter().any(|j| j.appointment_id() == quiet_job));
        // One busy job is running; a cap of three lets two more of it in, however many wait.
        let more = store
            .claim_jobs_fairly("worker", now, lease, 10, 3, false)
            .await
            .expect("claim");
        assert_eq!(more.len(), 2, "{}", database.url);
        assert!(more.iter().all(|j| j.tenant_id == busy.tenant_id));
    }
}

/// The distinct appointments of `ids` with a Cal.com call on the wire.
async fn in_flight(
    handle: &phasebook_api::sync::SyncHandle,
    tenant: uuid::Uuid,
    ids: &[uuid::Uuid],
) -> usize {
    let mut running = 0;
    for id in ids {
        let view = handle
            .store()
            .sync_view(tenant, *id)
            .await
            .expect("view")
            .expect("exists");
        if view.attempts.iter().any(|a| a.outcome.is_none()) {
            running += 1;
        }
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salon_whose_calcom_hangs_holds_a_quarter_of_the_worker_and_the_others_still_sync() {
    use calcom_sim::{Faults, RouteFaults};
    use chrono::{TimeZone, Utc};
    use phasebook_api::sync::{ClientSettings, SyncConfig, SyncHandle, postgres_pool};
    use phasebook_test_support::{fast_sync_config, faulty_sim, fixtures};
    use tokio_util::sync::CancellationToken;

    for database in databases().await {
        let db = process(&database).await;
        let segments = fixtures::segments(2, 30, 0);
        let account = fixtures::sim_account(1, &segments);
        let hanging = spawn_sim(
            faulty_sim(Faults::default().route("bookings.create", RouteFaults::hang_rate(1.0))),
            account.seed.clone(),
        )
        .await;
        let healthy = spawn_sim(SimConfig::default(), account.seed.clone()).await;
        let stuck =
            fixtures::seed_sim_salon(&db, &hanging.base_url, &account, "colour", segments.clone())
                .await
                .expect("stuck salon");
        let other = fixtures::seed_sim_salon(&db, &healthy.base_url, &account, "colour", segments)
            .await
            .expect("other salon");
        let staff = &account.staff[0].staff_id;
        let day = |d: u32| {
            Utc.with_ymd_and_hms(2030, 6, d, 9, 0, 0)
                .single()
                .expect("date")
        };
        let mut backlog = Vec::new();
        for d in 1..=8 {
            backlog.push(
                fixtures::book(&db, &stuck, staff, day(d))
                    .await
                    .expect("book"),
            );
        }
        let handle = SyncHandle::for_database(&db);
        let stop = CancellationToken::new();
        let worker = handle.spawn_worker(
            SyncConfig {
                max_concurrent_jobs: 8,
                client: ClientSettings {
                    // Longer than the test: a hanging call holds its slot throughout.
                    timeout: Duration::from_secs(120),
                    read_retries: 0,
                    ..ClientSettings::default()
                },
                shutdown_grace: Duration::from_millis(50),
                ..fast_sync_config("hanging-tenant")
            },
            postgres_pool(&db),
            stop.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while in_flight(&handle, stuck.tenant_id, &backlog).await < 2 {
            assert!(
                Instant::now() < deadline,
                "{}: the backlog never started",
                database.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Eight slots, eight jobs due for the hanging salon: it gets a quarter of them, and
        // another salon's appointment syncs meanwhile.
        let booked = fixtures::book(&db, &other, staff, day(20))
            .await
            .expect("book");
        handle.wake();
        while phasebook_test_support::sync_job(&db, booked)
            .await
            .expect("job")
            .as_deref()
            != Some("done")
        {
            assert!(
                Instant::now() < deadline,
                "{}: the other salon's appointment waited behind the hanging one",
                database.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            in_flight(&handle, stuck.tenant_id, &backlog).await,
            2,
            "{}: the hanging salon holds a quarter of the eight slots, no more",
            database.url
        );
        stop.cancel();
        worker.await.expect("worker stopped");
    }
}
