//! The worker loop: lease due jobs, run them (bounded), keep their leases alive, sleep
//! until woken (in-process after a write, by PostgreSQL notification, at the next due
//! retry, or at the poll interval), and on shutdown stop claiming, let running jobs finish
//! for a grace period, then give back what is left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::engine::{Engine, RunError};
use super::{ClientCache, SyncConfig, SyncEvent, SyncHandle};
use crate::store::StoreResult;
use crate::store::sync::{ClaimedJob, Fence, SyncStore};

/// The PostgreSQL channel a process notifies after it made a job due (`SyncHandle::wake`).
pub const NOTIFY_CHANNEL: &str = "phasebook_sync";

/// Runs sync jobs; one per process.
pub struct Worker {
    engine: Arc<Engine>,
    handle: SyncHandle,
    config: SyncConfig,
    /// Leases this worker holds right now, renewed by the heartbeat.
    held: Arc<Mutex<HashMap<Uuid, Fence>>>,
    /// Background jobs (nobody waits on them) running now: they may fill at most
    /// [`SyncConfig::background_jobs`] slots, so a job someone waits on always finds one.
    background: std::sync::atomic::AtomicUsize,
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

impl Worker {
    pub fn new(handle: SyncHandle, config: SyncConfig) -> Self {
        let mut engine = Engine::new(
            handle.store().clone(),
            Arc::new(handle.client_cache(config.client)),
            config.worker_id.clone(),
        );
        engine.policy = config.retry;
        engine.segment_parallelism = config.segment_parallelism;
        engine.breaker_policy = config.breaker;
        engine.event_type_checks.shared = handle
            .budgets()
            .map(|b| super::shared_checks::SharedChecks::new(b.database().clone()));
        Self {
            engine: Arc::new(engine),
            handle,
            config,
            held: Arc::new(Mutex::new(HashMap::new())),
            background: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Replaces the jitter source (tests use a fixed fraction for reproducible timing).
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        if let Some(engine) = Arc::get_mut(&mut self.engine) {
            engine.jitter = jitter;
        }
        self
    }

    pub fn worker_id(&self) -> &str {
        &self.config.worker_id
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn store(&self) -> &Arc<dyn SyncStore> {
        self.handle.store()
    }

    pub(crate) fn config(&self) -> &SyncConfig {
        &self.config
    }

    pub(crate) fn handle(&self) -> &SyncHandle {
        &self.handle
    }

    pub(crate) fn clients(&self) -> &ClientCache {
        &self.engine.clients
    }

    fn hold(&self, fence: &Fence) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fence.appointment_id, fence.clone());
    }

    fn drop_hold(&self, fence: &Fence) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(&fence.appointment_id) == Some(fence) {
            held.remove(&fence.appointment_id);
        }
    }

    /// How many more background jobs may start now.
    fn background_room(&self) -> usize {
        self.config
            .background_jobs()
            .saturating_sub(self.background.load(std::sync::atomic::Ordering::Acquire))
    }

    async fn claim_kind(
        &self,
        limit: usize,
        interactive_only: bool,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = Utc::now();
        self.store()
            .claim_jobs_fairly(
                &self.config.worker_id,
                now,
                now + to_delta(self.config.lease),
                i64::try_from(limit).unwrap_or(i64::MAX),
                i64::try_from(self.config.jobs_per_tenant()).unwrap_or(i64::MAX),
                interactive_only,
            )
            .await
    }

    /// Claims up to `limit` due jobs: interactive ones first, background ones only into
    /// the slots they may fill.
    async fn claim(&self, limit: usize) -> StoreResult<Vec<ClaimedJob>> {
        let room = self.background_room();
        let mut jobs = if room >= limit {
            self.claim_kind(limit, false).await?
        } else {
            let mut jobs = self.claim_kind(limit, true).await?;
            let left = (limit - jobs.len()).min(room);
            if left > 0 {
                jobs.extend(self.claim_kind(left, false).await?);
            }
            jobs
        };
        jobs.sort_by_key(|job| !job.interactive);
        let background = jobs.iter().filter(|job| !job.interactive).count();
        self.background
            .fetch_add(background, std::sync::atomic::Ordering::AcqRel);
        for job in &jobs {
            self.hold(&job.fence);
        }
        Ok(jobs)
    }

    /// Runs one claimed job and publishes the outcome.
    async fn run_claimed(&self, job: ClaimedJob) {
        let span = tracing::info_span!("sync_job", appointment_id = %job.appointment_id(), run = job.fence.run);
        // A retry waits behind every interactive Cal.com call of the tenant's key.
        let priority = if job.interactive {
            calcom_client::Priority::Interactive
        } else {
            calcom_client::Priority::Background
        };
        let run = priority.scope(self.engine.run_job(&job));
        async {
            match run.await {
                Ok(Some(sync)) => {
                    tracing::info!(status = %sync.status, review = sync.requires_manual_review, "sync run finished");
                    self.handle.publish(SyncEvent {
                        appointment_id: job.appointment_id(),
                        sync,
                    });
                }
                Ok(None) => {}
                Err(RunError::LeaseLost) => {
                    tracing::warn!("lease lost during the run; another worker owns the job now");
                }
                Err(RunError::Store(err)) => {
                    // Whatever was recorded stands (every write is fenced and whole); the
                    // job is given back at once so the next pass carries on, instead of
                    // waiting for the lease to run out. If even that fails, the lease does.
                    tracing::error!(error = %err, "sync run failed on the database; giving the job back");
                    if let Err(err) = self.store().release_job(&job.fence, Utc::now()).await {
                        tracing::error!(error = %err, "could not give the job back; its lease will run out");
                    }
                }
            }
        }
        .instrument(span)
        .await;
        self.drop_hold(&job.fence);
        if !job.interactive {
            self.background
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        // A request during the run (or a give-back) may have left the job due at once.
        self.handle.wake_here();
    }

    /// Claims the jobs due now and runs each once (a failed call is not retried within the
    /// pass, even when its retry falls due meanwhile); returns how many runs were made.
    pub async fn run_one_pass(&self) -> StoreResult<usize> {
        let jobs = self.claim(self.config.max_concurrent_jobs.max(1)).await?;
        let runs = jobs.len();
        futures::future::join_all(jobs.into_iter().map(|job| self.run_claimed(job))).await;
        Ok(runs)
    }

    /// Claims every due job and runs it, until none is due; returns how many runs were made.
    /// For tests and one-shot use: it never sleeps, so retries scheduled for later stay.
    pub async fn run_pending_jobs(&self) -> StoreResult<usize> {
        let mut runs = 0;
        loop {
            let jobs = self.claim(self.config.max_concurrent_jobs.max(1)).await?;
            if jobs.is_empty() {
                return Ok(runs);
            }
            runs += jobs.len();
            futures::future::join_all(jobs.into_iter().map(|job| self.run_claimed(job))).await;
        }
    }

    /// Runs jobs, waiting for scheduled retries, until no job is outstanding or `limit`
    /// passed. Returns the number of jobs still outstanding.
    pub async fn run_until_idle(&self, limit: Duration) -> StoreResult<i64> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.run_pending_jobs().await?;
            let (outstanding, _) = self.store().outstanding_jobs(Utc::now()).await?;
            if outstanding == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(outstanding);
            }
            let wait = match self.store().next_run_at().await? {
                Some(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                None => Duration::ZERO,
            };
            let wait = wait.clamp(Duration::from_millis(5), Duration::from_millis(500));
            tokio::time::sleep_until((tokio::time::Instant::now() + wait).min(deadline)).await;
        }
    }

    /// The worker loop; returns after `shutdown` is cancelled and running jobs finished or
    /// were released.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(worker_id = %self.config.worker_id, "sync worker started");
        let wake = self.handle.wake_signal();
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_jobs.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(self.clone().heartbeat(heartbeat_stop.clone()));
        let sweeper = tokio::spawn(
            calcom_client::Priority::Background.scope(self.clone().sweeper(heartbeat_stop.clone())),
        );

        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            let mut saturated = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(jobs) => {
                        saturated = jobs.len() == free;
                        for job in jobs {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            let worker = self.clone();
                            tasks.spawn(async move {
                                worker.run_claimed(job).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not claim sync jobs");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
            if saturated {
                // There may be more due; claim again as soon as a slot frees.
                if permits.available_permits() == 0 {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    }
                }
                continue;
            }
            let sleep = self.sleep_time().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty()
                    && (permits.available_permits() == 0 || self.background_room() == 0) => {}
            }
        }

        tracing::info!(running = tasks.len(), "sync worker stopping");
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let left: Vec<Fence> = self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .map(|(_, fence)| fence)
                .collect();
            for fence in left {
                // An attempt cut off here has no outcome recorded, so the next run
                // reconciles before it creates anything.
                match self.store().release_job(&fence, Utc::now()).await {
                    Ok(_) => {
                        tracing::info!(appointment_id = %fence.appointment_id, "released sync job on shutdown")
                    }
                    Err(err) => {
                        tracing::warn!(appointment_id = %fence.appointment_id, error = %err, "could not release sync job; its lease will expire")
                    }
                }
            }
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        let _ = sweeper.await;
        tracing::info!(worker_id = %self.config.worker_id, "sync worker stopped");
    }

    /// Until the next due job (bounded by the poll interval).
    async fn sleep_time(&self) -> Duration {
        let poll = self.config.poll_interval;
        // Due background jobs wait for a running one to finish (which wakes the loop).
        if self.background_room() == 0 {
            return poll;
        }
        match self.store().next_run_at().await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(5), poll),
            Ok(None) => poll,
            Err(_) => poll,
        }
    }

    /// Renews every held lease at a third of the lease time.
    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let every = (self.config.lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let fences: Vec<Fence> = self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            let until = Utc::now() + to_delta(self.config.lease);
            for fence in fences {
                match self.store().renew_lease(&fence, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(appointment_id = %fence.appointment_id, "lease lost; the run stops at its next write")
                    }
                    Err(err) => {
                        tracing::warn!(appointment_id = %fence.appointment_id, error = %err, "could not renew lease")
                    }
                }
            }
        }
    }
}

/// Wakes this process's worker whenever PostgreSQL says a job became due (another
/// replica's API wrote it, or a retry's time came), reconnecting after failures.
pub async fn listen_for_due_jobs(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "could not connect the sync notification listener");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(err) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(error = %err, "could not listen for sync notifications");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything that became due while not listening is found by the next claim.
        wake.notify_one();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(_) => wake.notify_one(),
                    Err(err) => {
                        tracing::warn!(error = %err, "sync notification listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

impl SyncHandle {
    /// Starts the worker (and on PostgreSQL the notification listener) in the background.
    /// Await the returned handle after cancelling `shutdown`.
    pub fn spawn_worker(
        &self,
        config: SyncConfig,
        postgres: Option<PgPool>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let worker = Arc::new(Worker::new(self.clone(), config));
        if let Some(pool) = postgres {
            tokio::spawn(listen_for_due_jobs(
                pool,
                self.wake_signal(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(worker.run(shutdown))
    }
}

/// `phasebook worker`: connects, migrates, and runs the worker until Ctrl-C/SIGTERM.
pub async fn run_standalone(database_url: &str, config: SyncConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let db = crate::store::Database::connect(database_url)
        .await
        .context("connecting to the database")?;
    db.store().migrate().await.context("applying migrations")?;
    let handle = SyncHandle::for_database(&db);
    let stop = CancellationToken::new();
    let worker = handle.spawn_worker(config, super::postgres_pool(&db), stop.clone());
    let sweep = tokio::spawn(crate::routes::holds::sweep_reservations_every(
        crate::state::AppState::new(db.clone()),
        std::time::Duration::from_secs(15),
        stop.clone(),
    ));
    tracing::info!(database = db.store().backend(), "phasebook worker running");
    crate::app::shutdown_signal().await;
    stop.cancel();
    let _ = worker.await;
    let _ = sweep.await;
    db.close().await;
    Ok(())
}
