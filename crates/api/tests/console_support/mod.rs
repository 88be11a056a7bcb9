//! A salon for the ops-console tests: the real app on a loopback port with the sync worker
//! running, the Cal.com emulator as the salon's Cal.com, the colouring service (A 30 min,
//! 35 min processing gap, B 15, C 30, D 20) and two stylists. On 7 January 2030 stylist-1's
//! appointment syncs; stylist-2's needs review, because their segment D is mapped to a
//! managed parent without their child. Also: a viewer key, and a second tenant.
#![allow(dead_code)]

pub mod webdriver;

use std::time::Duration;

use calcom_sim::SeedEventType;
use chrono::{DateTime, TimeZone, Utc};
use phasebook_api::auth;
use phasebook_api::store::Role;
use phasebook_domain::{SegmentKey, SegmentSpec};
use phasebook_test_support::fixtures;
use phasebook_test_support::{TestApp, TestDatabase, fast_sync_config};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

/// The day of the salon's two appointments, in the salon's zone (Europe/Berlin).
pub const DAY: &str = "2030-01-07";
/// A managed parent of the team with no child for anyone.
pub const CHILDLESS_PARENT: i64 = 9001;

pub struct World {
    /// The app, the emulator and the worker (see `phasebook_test_support::app`).
    pub app: TestApp,
    /// Follows no redirect, so tests see them.
    pub http: reqwest::Client,
    pub viewer_key: String,
    /// Stylist-2's appointment, in review.
    pub broken: Uuid,
    /// Stylist-1's appointment, synced.
    pub synced: Uuid,
    /// The ops key of another salon on the same database.
    pub other_tenant_key: String,
}

phasebook_test_support::deref_to!(World => app: TestApp);

fn segment(key: &str, name: &str, minutes: u32, gap: u32) -> SegmentSpec {
    SegmentSpec {
        key: SegmentKey::parse(key).expect("key"),
        name: name.to_string(),
        duration_minutes: minutes,
        gap_after_minutes: gap,
        gap_after_max_minutes: None,
    }
}

/// `hh:mm` on [`DAY`] in Berlin (UTC+1 in January).
pub fn berlin(hh: u32, mm: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 7, hh - 1, mm, 0)
        .single()
        .expect("instant")
}

pub async fn setup(database: TestDatabase) -> World {
    let segments = vec![
        segment("A", "Apply colour", 30, 35),
        segment("B", "Wash", 15, 0),
        segment("C", "Cut", 30, 0),
        segment("D", "Blow-dry", 20, 0),
    ];
    let seeded = TestApp::builder()
        .stylists(2)
        .segments(segments)
        .account(|account| {
            account.seed.event_types.push(SeedEventType::managed(
                CHILDLESS_PARENT,
                fixtures::SIM_TEAM_ID,
                "blow-dry",
                20,
                &[],
            ));
        })
        .worker(fast_sync_config("console-test"))
        .seed(database)
        .await;
    let stylist_2 = seeded.account.staff[1].staff_id.clone();
    fixtures::put_event_map(
        &seeded.db,
        seeded.salon.tenant_id,
        &seeded.salon.service_id,
        &SegmentKey::parse("D").expect("key"),
        &stylist_2,
        CHILDLESS_PARENT,
        CHILDLESS_PARENT,
    )
    .await
    .expect("broken map");
    let app = seeded.serve().await;

    let (db, salon) = (&app.db, &app.salon);
    let synced = fixtures::book(db, salon, &app.account.staff[0].staff_id, berlin(10, 0))
        .await
        .expect("book stylist-1");
    let broken = fixtures::book(db, salon, &stylist_2, berlin(14, 0))
        .await
        .expect("book stylist-2");
    app.sync.wake();
    for (id, want) in [(synced, "synced"), (broken, "needs_review")] {
        let outcome = app
            .sync
            .wait_for_outcome(salon.tenant_id, id, Duration::from_secs(20))
            .await
            .expect("sync")
            .expect("appointment");
        assert_eq!(outcome.sync.status.as_str(), want, "{outcome:?}");
    }

    let viewer = auth::issue_api_key(db.store(), salon.tenant_id, Role::Viewer)
        .await
        .expect("viewer key");
    let other = auth::create_tenant(
        db.store(),
        auth::TenantSettings {
            name: "Another salon".into(),
            calcom_api_key: "cal_other".to_string().into(),
            calcom_base_url: app.sim.base_url.clone(),
            calcom_team_id: None,
        },
    )
    .await
    .expect("other tenant");
    World {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        viewer_key: viewer.api_key.expose_secret().to_string(),
        broken,
        synced,
        other_tenant_key: other.api_key.expose_secret().to_string(),
        app,
    }
}

/// The value of `name="csrf_token"` in a page.
pub fn csrf_token(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// The value a `Set-Cookie` header of the response gives cookie `name`.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// A urlencoded form body.
pub fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).expect("form")
}

/// A console session opened over plain HTTP.
pub struct HttpSession {
    pub cookie: String,
    pub csrf_token: String,
}

impl World {
    /// The stylist-2 event type that fixes segment D.
    pub fn individual_blow_dry(&self) -> i64 {
        self.account.event_types[1][3]
    }

    /// Maps stylist-2's segment D to their own event type through the API.
    pub async fn fix_the_event_map(&self) {
        let response = self
            .http
            .put(format!("{}/event-maps/colour/D/stylist-2", self.url))
            .bearer_auth(&self.salon.ops_key)
            .json(&json!({ "event_type_id": self.individual_blow_dry() }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "the fixed map is stored");
    }

    /// `GET /appointments/{id}/sync` through the API.
    pub async fn sync_view(&self, id: Uuid) -> Value {
        self.http
            .get(format!("{}/appointments/{id}/sync", self.url))
            .bearer_auth(&self.salon.ops_key)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Logs in through the login form, as a browser would, with `extra` headers.
    pub async fn login_over_http(
        &self,
        key: &str,
        extra: &[(&str, &str)],
    ) -> (reqwest::Response, Option<HttpSession>) {
        let mut request = self.http.get(format!("{}/ops/login", self.url));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let page = request.send().await.expect("login page");
        let login_cookie = set_cookie(&page, "phasebook_console_login").expect("login cookie");
        let login_cookie = login_cookie
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let token = csrf_token(&page.text().await.expect("html")).expect("token");
        let mut request = self
            .http
            .post(format!("{}/ops/login", self.url))
            .header("cookie", &login_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("api_key", key), ("csrf_token", &token)]));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("login");
        let Some(session) = set_cookie(&response, "phasebook_console") else {
            return (response, None);
        };
        let cookie = session.split(';').next().unwrap_or_default().to_string();
        let queue = self
            .http
            .get(format!("{}/ops", self.url))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("queue")
            .text()
            .await
            .expect("html");
        let csrf_token = csrf_token(&queue).expect("session token");
        (response, Some(HttpSession { cookie, csrf_token }))
    }

    pub async fn get_page(&self, session: &HttpSession, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header("cookie", &session.cookie)
            .send()
            .await
            .expect("request")
    }
}
