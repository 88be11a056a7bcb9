//! The state every handler receives. One struct, cloned per request (all fields are cheap
//! handles); later subsystems add their fields here.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::store::{Database, Store};

#[derive(Clone)]
pub struct AppState {
    /// The concrete backend, for code that needs backend-specific queries.
    pub db: Database,
    /// The same database behind the [`Store`] trait, for handlers.
    pub store: Arc<dyn Store>,
    /// Renders `/metrics`; None when no recorder could be installed.
    pub metrics: Option<PrometheusHandle>,
    /// The sync engine: its store, the worker's wake-up, finished runs.
    pub sync: crate::sync::SyncHandle,
    /// API-key cache, per-key request limits and the audit hook.
    pub guard: Arc<crate::guard::Guard>,
    /// Cal.com's free time for availability, read through per-tenant clients and cached.
    pub free_time: Arc<crate::free_time::FreeTime>,
}

impl AppState {
    pub fn new(db: Database) -> Self {
        let store = db.shared();
        let sync = crate::sync::SyncHandle::for_database(&db);
        let free_time = Arc::new(crate::free_time::FreeTime::new(Arc::new(
            sync.client_cache(crate::sync::ClientSettings::default()),
        )));
        Self {
            db,
            sync,
            store,
            metrics: crate::telemetry::metrics_handle(),
            guard: Arc::new(crate::guard::Guard::default()),
            free_time,
        }
    }
}
