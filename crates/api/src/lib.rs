//! The phasebook service: HTTP API, authentication, the store on PostgreSQL or SQLite,
//! configuration and the `phasebook` command line.

pub mod app;
pub mod auth;
pub mod budget;
pub mod cli;
pub mod console;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod event_maps;
pub mod extract;
pub mod free_time;
pub mod guard;
pub mod idempotency;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
