//! The durable sync engine: every staffed segment booked in Cal.com exactly once, kept in
//! step with its appointment (booked or cancelled), with status, review and resync.
//!
//! Appointments reach the engine through the transactional outbox (`sync_jobs`); the
//! [`worker`] leases due jobs, the [`engine`] runs one job, the store (`store::sync`)
//! records every attempt before it is made. The policy itself — statuses, retries,
//! adoption, review reasons — is `phasebook_domain::sync`.

pub mod clients;
pub mod drift;
pub mod engine;
pub mod failure;
pub mod resolve;
pub mod settings;
pub mod shared_checks;
pub mod sweep;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use phasebook_domain::sync::{AppointmentSync, RetryPolicy};
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

pub use clients::{ClientCache, ClientSettings};
pub use settings::SyncArgs;
pub use sweep::VerificationSettings;
pub use worker::Worker;

use crate::store::Database;
use crate::store::StoreResult;
use crate::store::sync::SyncStore;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Stamped on leases and attempts; unique per process.
    pub worker_id: String,
    /// How long a claim holds a job; renewed while the job runs, so it only runs out when
    /// the worker died or hangs.
    pub lease: Duration,
    /// The longest the worker sleeps without looking for due jobs (wake-ups usually come
    /// sooner: in-process after a write, or by PostgreSQL notification).
    pub poll_interval: Duration,
    /// Jobs (appointments) run at the same time.
    pub max_concurrent_jobs: usize,
    /// Segments of one appointment booked at the same time.
    pub segment_parallelism: usize,
    pub retry: RetryPolicy,
    pub client: ClientSettings,
    /// On shutdown, how long running jobs may take to finish before they are released.
    pub shutdown_grace: Duration,
    /// How the verification sweep compares booked segments with Cal.com.
    pub verification: VerificationSettings,
    /// The per-tenant circuit over Cal.com being reachable; `None` turns it off.
    pub breaker: Option<phasebook_domain::sync::breaker::BreakerPolicy>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            max_concurrent_jobs: 32,
            segment_parallelism: 4,
            retry: RetryPolicy::default(),
            client: ClientSettings::default(),
            shutdown_grace: Duration::from_secs(10),
            verification: VerificationSettings::default(),
            breaker: Some(phasebook_domain::sync::breaker::BreakerPolicy::default()),
        }
    }
}

impl SyncConfig {
    /// The most jobs of one tenant this process runs at once: a quarter of its concurrency,
    /// so a tenant whose Cal.com hangs holds at most a quarter of the slots. A salon alone
    /// on the process loses no speed by it at the default 32 slots: its key allows 2 Cal.com
    /// requests a second, and 8 jobs of four segments keep more calls going than that even
    /// when every call runs into the 10 s timeout.
    pub fn jobs_per_tenant(&self) -> usize {
        (self.max_concurrent_jobs / 4).max(1)
    }

    /// The most background jobs (retries, appointments nobody waits on) this process runs
    /// at once: three quarters of its concurrency. The rest is kept for jobs someone waits
    /// on, which would otherwise queue behind a backlog holding every slot.
    pub fn background_jobs(&self) -> usize {
        (self.max_concurrent_jobs - self.max_concurrent_jobs / 4).max(1)
    }
}

/// `<host>-<pid>-<random>`: readable in the attempt log, unique across restarts.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "phasebook".to_string());
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// A finished job run: the appointment's sync status after it.
#[derive(Debug, Clone)]
pub struct SyncEvent {
    pub appointment_id: Uuid,
    pub sync: AppointmentSync,
}

/// What the API holds of the sync engine: the store, a way to wake the worker, and the
/// stream of finished runs (for `Prefer: wait`).
#[derive(Clone)]
pub struct SyncHandle {
    store: Arc<dyn SyncStore>,
    wake: Arc<Notify>,
    events: broadcast::Sender<SyncEvent>,
    /// The database's shared Cal.com budgets (None for a bare store, as in some tests).
    budgets: Option<crate::budget::Budgets>,
    /// On PostgreSQL, tells the other processes' workers (see [`DueNotifier`]).
    notifier: Option<Arc<DueNotifier>>,
}

/// Sends the PostgreSQL wake-up for other processes after a commit made a job due,
/// coalesced: while one NOTIFY is on its way, any number of further wake-ups become one
/// more. (A trigger did this inside every transaction before, which made PostgreSQL
/// serialise the commits on its notification queue.)
pub struct DueNotifier {
    pool: sqlx::PgPool,
    /// Room for one wake-up: a full queue means one is already waiting to be sent.
    queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<()>>,
}

impl DueNotifier {
    fn new(pool: sqlx::PgPool) -> Self {
        Self {
            pool,
            queue: std::sync::OnceLock::new(),
        }
    }

    fn notify(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let queue = self.queue.get_or_init(|| {
            let (queue, mut wakeups) = tokio::sync::mpsc::channel::<()>(1);
            let pool = self.pool.clone();
            // Ends when the notifier (the queue's only sender) is dropped.
            tokio::spawn(async move {
                while wakeups.recv().await.is_some() {
                    if let Err(err) = sqlx::query("select pg_notify($1, '')")
                        .bind(worker::NOTIFY_CHANNEL)
                        .execute(&pool)
                        .await
                    {
                        tracing::warn!(error = %err, "could not notify the other workers; they find the job at their next poll");
                    }
                }
            });
            queue
        });
        let _ = queue.try_send(());
    }
}

/// How a `Prefer: wait` ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    pub sync: AppointmentSync,
    /// True when the sync reached a final state (synced, needs review, cancelled) in time.
    pub finished: bool,
}

impl SyncHandle {
    pub fn new(store: Arc<dyn SyncStore>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            store,
            wake: Arc::new(Notify::new()),
            events,
            budgets: None,
            notifier: None,
        }
    }

    /// The handle for the configured database.
    pub fn for_database(database: &Database) -> Self {
        Self {
            budgets: Some(crate::budget::Budgets::new(database.clone())),
            notifier: postgres_pool(database).map(|pool| Arc::new(DueNotifier::new(pool))),
            ..Self::new(sync_store(database))
        }
    }

    /// The shared Cal.com budgets every client of this process takes its tokens from.
    pub fn budgets(&self) -> Option<&crate::budget::Budgets> {
        self.budgets.as_ref()
    }

    /// A client cache whose clients use the shared budgets when there are any.
    pub fn client_cache(&self, settings: ClientSettings) -> ClientCache {
        match &self.budgets {
            Some(budgets) => ClientCache::shared(settings, budgets.clone()),
            None => ClientCache::new(settings),
        }
    }

    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.store
    }

    /// Tells this process's worker, and on PostgreSQL every other process's, that a job
    /// may be due now. Call it after the commit that made the job due.
    pub fn wake(&self) {
        self.wake.notify_one();
        if let Some(notifier) = &self.notifier {
            notifier.notify();
        }
    }

    /// Tells only this process's worker (a job it ran may be due again).
    pub(crate) fn wake_here(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn wake_signal(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SyncEvent> {
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, event: SyncEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Waits until the appointment's sync is final or `limit` passed. Runs of this
    /// process's worker are seen at once; the store is also polled, for runs made by
    /// another replica. `None`: no such appointment.
    pub async fn wait_for_outcome(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        limit: Duration,
    ) -> StoreResult<Option<WaitOutcome>> {
        const POLL: Duration = Duration::from_millis(250);
        let deadline = tokio::time::Instant::now() + limit;
        let mut events = self.subscribe();
        loop {
            let Some(sync) = self
                .store
                .appointment_sync(tenant_id, appointment_id)
                .await?
            else {
                return Ok(None);
            };
            if sync.status.is_final() {
                return Ok(Some(WaitOutcome {
                    sync,
                    finished: true,
                }));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Some(WaitOutcome {
                    sync,
                    finished: false,
                }));
            }
            let until = deadline.min(now + POLL);
            loop {
                match tokio::time::timeout_at(until, events.recv()).await {
                    Ok(Ok(event)) if event.appointment_id == appointment_id => {
                        if event.sync.status.is_final() {
                            return Ok(Some(WaitOutcome {
                                sync: event.sync,
                                finished: true,
                            }));
                        }
                    }
                    Ok(Ok(_)) => continue,
                    // Lagged or closed: fall back to reading the store.
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
    }
}

/// The sync store of the configured database.
pub fn sync_store(database: &Database) -> Arc<dyn SyncStore> {
    match database {
        Database::Postgres(store) => Arc::new(store.pool.clone()),
        Database::Sqlite(store) => Arc::new(store.pool.clone()),
    }
}

/// The PostgreSQL pool, for the worker's notification listener (`None` on SQLite).
pub fn postgres_pool(database: &Database) -> Option<sqlx::PgPool> {
    match database {
        Database::Postgres(store) => Some(store.pool.clone()),
        Database::Sqlite(_) => None,
    }
}
