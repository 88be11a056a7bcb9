//! Child processes for the tests that run a real binary: a free loopback port, the command's
//! stderr kept in a temporary file (it is what a failure message shows), a wait until the
//! process answers or prints its first line, and a SIGKILL when the handle is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long a child has to become ready before the test fails.
const READY_WITHIN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// `binary` (pass `env!("CARGO_BIN_EXE_phasebook")`) on `database_url`, with this test
/// process's master key and JSON log lines: the environment every `phasebook` command in
/// the tests runs with.
pub fn phasebook(binary: &str, database_url: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .env("PHASEBOOK_DATABASE_URL", database_url)
        .env("PHASEBOOK_SECRET_KEY", crate::secret_key())
        .env("PHASEBOOK_LOG_FORMAT", "json");
    command
}

/// A loopback port nothing listens on at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// When [`SpawnBuilder::start`] returns.
enum Ready {
    /// At once: the test decides itself when to look at the process.
    Started,
    /// Once `GET path` on the port answers with a success status (and, when given, a JSON
    /// body the check accepts).
    Http {
        path: String,
        body: Option<fn(&serde_json::Value) -> bool>,
    },
    /// Once the process printed its first line on stdout.
    FirstLine,
}

/// A command about to be started as a [`ChildProcess`]; see [`ChildProcess::build`].
pub struct SpawnBuilder {
    command: Command,
    name: String,
    port: u16,
    ready: Ready,
}

impl SpawnBuilder {
    /// The port the process is told to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Adds `flag 127.0.0.1:PORT` (e.g. `--listen`).
    pub fn listen(self, flag: &str) -> Self {
        let address = format!("127.0.0.1:{}", self.port);
        self.args([flag, &address])
    }

    /// Waits until `GET path` answers with a success status.
    pub fn healthy_at(mut self, path: &str) -> Self {
        self.ready = Ready::Http {
            path: path.to_string(),
            body: None,
        };
        self
    }

    /// Waits until `GET path` answers with a success status and a JSON body `ready` accepts.
    pub fn ready_when(mut self, path: &str, ready: fn(&serde_json::Value) -> bool) -> Self {
        self.ready = Ready::Http {
            path: path.to_string(),
            body: Some(ready),
        };
        self
    }

    /// Waits for the first line on stdout, kept in [`ChildProcess::printed`].
    pub fn first_line(mut self) -> Self {
        self.ready = Ready::FirstLine;
        self
    }

    /// Starts the process and waits as told; a process that does not get ready in time
    /// fails the test with what it wrote on stderr.
    pub async fn start(mut self) -> ChildProcess {
        let log = std::env::temp_dir().join(format!("{}-{}.log", self.name, Uuid::new_v4()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let stdout = match self.ready {
            Ready::FirstLine => Stdio::piped(),
            _ => Stdio::null(),
        };
        let child = self
            .command
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", self.name));
        // Built before the wait, so a failed wait still kills the child.
        let mut process = ChildProcess {
            child,
            port: self.port,
            log,
            printed: String::new(),
        };
        match self.ready {
            Ready::Started => {}
            Ready::Http { path, body } => process.wait_until_ready(&path, body).await,
            Ready::FirstLine => process.read_first_line().await,
        }
        process
    }
}

/// A running child process; killed with SIGKILL (no shutdown code runs) when dropped, its
/// log removed unless the test is failing.
pub struct ChildProcess {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// The first line of stdout, when the process was started with
    /// [`SpawnBuilder::first_line`].
    pub printed: String,
}

impl ChildProcess {
    /// `command` to be started on a free port; `name` names its log file and failures.
    pub fn build(name: &str, command: Command) -> SpawnBuilder {
        SpawnBuilder {
            command,
            name: name.to_string(),
            port: free_port(),
            ready: Ready::Started,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Where the process's stderr goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then everything it wrote on stderr.
    pub fn stop(self) -> String {
        let mut this = self;
        this.kill_and_reap();
        this.log()
    }

    /// SIGKILL now.
    pub fn kill(self) {
        drop(self);
    }

    /// Waits for the process to exit by itself (after a signal the test sent).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill_and_reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn wait_until_ready(&mut self, path: &str, body: Option<fn(&serde_json::Value) -> bool>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let url = format!("{}{path}", self.base_url());
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => match body {
                    None => true,
                    Some(check) => response
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| check(&v)),
                },
                _ => false,
            };
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the process exited ({status}) before {url} answered:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn read_first_line(&mut self) {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read stdout");
        assert!(
            !line.is_empty(),
            "the process printed nothing:\n{}",
            self.log()
        );
        self.printed = line;
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill_and_reap();
        // A failing test names the log in its message; it stays for reading.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
