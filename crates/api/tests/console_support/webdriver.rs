//! Just enough of the W3C WebDriver protocol, over the reqwest client the tests already
//! use, to drive headless Chromium through Debian's `chromedriver`: sessions, navigation,
//! elements, script, screenshots, and Chrome's DevTools call for a phone-sized viewport.
//! (fantoccini would bring a second major of `http`, `cookie` and `thiserror` through the
//! `webdriver` crate, for the same dozen calls.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use phasebook_test_support::ChildProcess;
use serde_json::{Value, json};

/// The key W3C WebDriver gives element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `chromedriver` and the browser it drives: `CHROMEDRIVER` and `CHROME_BIN` when set,
/// else Debian's packages on the PATH.
fn find_browser() -> Option<(PathBuf, PathBuf)> {
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"))?;
    let browser = std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .find_map(on_path)
        })?;
    Some((driver, browser))
}

/// A headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
    _driver: ChildProcess,
}

/// An element found on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and opens a session. `None` (after saying why)
    /// when no browser is installed and `CI` is not set; in CI a missing browser fails.
    pub async fn start() -> Option<Browser> {
        let Some((driver, browser)) = find_browser() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but chromedriver/chromium were not found: install Debian's \
                     chromium and chromium-driver (.ci/run does)"
                );
            }
            eprintln!(
                "SKIPPED: no chromedriver and chromium found (apt-get install chromium \
                 chromium-driver); the console browser test did not run"
            );
            return None;
        };
        let driver = ChildProcess::build("chromedriver", Command::new(&driver));
        let port = driver.port();
        let driver = driver
            .arg(format!("--port={port}"))
            .ready_when("/status", |status| status["value"]["ready"] == true)
            .start()
            .await;
        let http = reqwest::Client::new();
        let base = driver.base_url();
        let profile =
            std::env::temp_dir().join(format!("phasebook-chromium-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900",
                        "--no-first-run", "--disable-extensions",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            } }
        });
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Some(Browser {
            http,
            session,
            base,
            profile,
            _driver: driver,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        request = request.json(&body.unwrap_or_else(|| json!({})));
        let answer: Value = request
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("json");
        let value = answer["value"].clone();
        if let Some(error) = value.get("error") {
            panic!("WebDriver {path}: {error} {}", value["message"]);
        }
        value
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let answer: Value = self
            .http
            .get(url)
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("json");
        if let Some(error) = answer["value"].get("error") {
            panic!("WebDriver {path}: {error} {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        for _ in 0..100 {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                return element;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element matches {css:?} on {}", self.current_url().await);
    }

    pub async fn click(&self, element: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            None,
        )
        .await;
    }

    pub async fn type_into(&self, element: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self, element: &Element) -> String {
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.get(&format!("/element/{}/attribute/{name}", element.0))
            .await
            .as_str()
            .map(str::to_string)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Like [`Browser::execute`], for a script that returns a promise.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits up to 15 s for `check` (a script returning a boolean) to hold.
    pub async fn wait_until(&self, check: &str, what: &str) {
        for _ in 0..150 {
            if self.execute(check, vec![]).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("waited in vain for {what} on {}", self.current_url().await);
    }

    /// Chrome's DevTools: lay the page out at `width` (mobile below 600 px).
    pub async fn viewport(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600,
                },
            })),
        )
        .await;
    }

    /// A PNG of the whole page at `width`, saved under `target/console-screenshots/`.
    pub async fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        self.viewport(width, 900).await;
        let height = self
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight);",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 3000) as u32;
        self.viewport(width, height).await;
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("png");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        self.viewport(width, 900).await;
        path
    }
}

/// `target/console-screenshots/` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}

impl Drop for Browser {
    /// Ends the session (chromedriver then closes Chromium), even when the test failed:
    /// a plain blocking HTTP request, since drop cannot await.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
