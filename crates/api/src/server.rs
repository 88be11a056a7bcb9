//! A serving process: connect and migrate, refuse to start without the master keys that
//! open the stored secrets, serve HTTP, and run the background tasks (idempotency purge,
//! hold sweeper, sync worker) until shutdown. Used by `serve`, `worker` and `demo`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::state::AppState;
use crate::store::Database;

/// Where `serve` and `demo` listen unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What `serve` runs. `run_worker` tells the background tasks whether this process also
/// drives the sync outbox.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    pub run_worker: bool,
    pub sync: crate::sync::SyncConfig,
}

/// Refuses to go on when the configured master keys cannot open every stored secret.
pub async fn require_master_keys(url: &str) -> Result<()> {
    let db = connect(url).await?;
    db.store().migrate().await.context("applying migrations")?;
    let checked =
        crate::secrets::rotation::check_keys_cover_database(db.keys(), &crate::secrets::current())
            .await;
    db.close().await;
    checked.map_err(anyhow::Error::msg)
}

pub async fn connect(url: &str) -> Result<Database> {
    Database::connect(url)
        .await
        .with_context(|| format!("connecting to the {} database", scheme(url)))
}

/// The URL scheme only: a URL may carry a password.
fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or_default()
}

/// Connects, migrates and serves until Ctrl-C/SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let db = connect(&config.database_url).await?;
    db.store().migrate().await.context("applying migrations")?;
    crate::secrets::rotation::check_keys_cover_database(db.keys(), &crate::secrets::current())
        .await
        .map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    serve_with(db, listener, &config).await
}

/// Serves a migrated database on a bound listener until Ctrl-C/SIGTERM, with the
/// background tasks `config` asks for.
pub async fn serve_with(db: Database, listener: TcpListener, config: &ServeConfig) -> Result<()> {
    let state = AppState::new(db.clone());
    tracing::info!(
        listen = %listener.local_addr()?,
        database = db.store().backend(),
        worker = config.run_worker,
        "phasebook serving"
    );
    let stop = CancellationToken::new();
    let tasks = start_background(&state, config, &stop);
    let result = app::serve(listener, state, app::shutdown_signal()).await;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    db.close().await;
    result.context("serving HTTP")
}

/// Background tasks of a serving process; they stop when `stop` is cancelled.
pub fn start_background(
    state: &AppState,
    config: &ServeConfig,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(app::purge_idempotency_keys(
        state.clone(),
        Duration::from_secs(15 * 60),
        stop.clone(),
    ))];
    if config.run_worker {
        tasks.push(tokio::spawn(
            crate::routes::holds::sweep_reservations_every(
                state.clone(),
                Duration::from_secs(15),
                stop.clone(),
            ),
        ));
        tasks.push(state.sync.spawn_worker(
            config.sync.clone(),
            crate::sync::postgres_pool(&state.db),
            stop.clone(),
        ));
    }
    tasks
}
