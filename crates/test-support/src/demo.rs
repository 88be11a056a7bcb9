//! `phasebook demo` as a child process: started on a free loopback port with its own
//! SQLite file, read up to its first line (the JSON summary), killed and cleaned up when
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use uuid::Uuid;

pub struct DemoProcess {
    child: Child,
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let db = std::env::temp_dir().join(format!("phasebook-demo-{}.db", Uuid::new_v4()));
        let mut child = Command::new(binary)
            .env_remove("PHASEBOOK_SECRET_KEY")
            .args([
                "demo",
                "--json",
                "--db",
                &db.display().to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo");
        let stdout = child.stdout.take().expect("stdout");
        // Built before the read, so a failed read still kills the child.
        let mut demo = Self {
            child,
            db,
            port,
            printed: Value::Null,
        };
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read");
        demo.printed = serde_json::from_str(&line).expect("one JSON object");
        demo
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.db.display()));
        }
    }
}
