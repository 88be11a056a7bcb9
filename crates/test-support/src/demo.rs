//! `phasebook demo` as a child process: started on a free loopback port with its own
//! SQLite file, read up to its first line (the JSON summary), killed and cleaned up when
//! dropped.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use uuid::Uuid;

use crate::process::ChildProcess;

pub struct DemoProcess {
    /// Taken in `drop`, so the process is gone before its database files are removed.
    process: Option<ChildProcess>,
    /// The demo's SQLite file.
    pub db: PathBuf,
    pub port: u16,
    /// What `--json` printed first: URLs, keys, the demo appointments.
    pub printed: Value,
}

impl DemoProcess {
    /// Starts `binary demo --json` (pass `env!("CARGO_BIN_EXE_phasebook")`) and waits for
    /// its summary. The demo makes its own master key, so none is passed on.
    pub async fn start(binary: &str) -> Self {
        let db = std::env::temp_dir().join(format!("phasebook-demo-{}.db", Uuid::new_v4()));
        let process = ChildProcess::build("phasebook-demo", Command::new(binary))
            .env_remove("PHASEBOOK_SECRET_KEY")
            .args(["demo", "--json", "--db", &db.display().to_string()])
            .listen("--listen")
            .first_line()
            .start()
            .await;
        let printed = serde_json::from_str(&process.printed);
        // Built before the check, so a summary that does not parse still cleans up.
        let mut demo = Self {
            port: process.port,
            process: Some(process),
            db,
            printed: Value::Null,
        };
        demo.printed = printed.expect("one JSON object");
        demo
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        drop(self.process.take());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.db.display()));
        }
    }
}
