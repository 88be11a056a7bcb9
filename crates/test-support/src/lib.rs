//! Test support for phasebook's tests and benches, kept out of the service: throw-away
//! databases ([`TestDatabase`], [`on_both_backends!`]), salons seeded on the Cal.com
//! emulator ([`fixtures`]), and [`spawn_app`]-style harnesses that start the app, the
//! emulator and the worker ([`app`]), and the real binaries as child processes
//! ([`process`]).

pub mod app;
pub mod database;
pub mod demo;
pub mod fixtures;
pub mod process;

pub use app::{
    Seeded, TestApp, TestAppBuilder, content_type, fast_sync_config, faulty_sim, http_client,
    lift_request_limit, run_until_idle, send_as, serve_app, soak_sync_config, spawn_app, spawn_sim,
    wait_until_idle,
};
pub use database::{TestDatabase, count_rows, databases, secret_key, sync_job};
pub use demo::DemoProcess;
pub use process::{ChildProcess, SpawnBuilder, free_port, phasebook};
