//! The salon the event-map tests run against: a Cal.com emulator seeded with a team, two
//! stylists and one event type per branch of the resolution rules, and a phasebook tenant
//! whose key is the team owner's. Shared by `event_maps_http.rs` and `event_maps_cli.rs`.

#![allow(dead_code)]

use calcom_sim::{
    RunningSim, Seed, SeedApiKey, SeedEventType, SeedMember, SeedTeam, SeedUser, SimConfig,
    WorkingHours,
};
use serde_json::{Value, json};

pub const TEAM_ID: i64 = 1;
pub const ANNA: i64 = 101;
pub const BEN: i64 = 102;
/// The team owner's key: the tenant's Cal.com key.
pub const ANNA_KEY: &str = "cal_live_salon_owner";
/// Ben's own key, to change his personal event types as he would.
pub const BEN_KEY: &str = "cal_live_salon_ben";

/// Anna's personal types: 30 min (segment A), 45 min (a length that fits nothing),
/// 15 min (segment B), 20 min (segment D), 30 min (the cut).
pub const ANNA_APPLY: i64 = 1001;
pub const ANNA_LONG: i64 = 1003;
pub const ANNA_WASH: i64 = 1005;
pub const ANNA_BLOW_DRY: i64 = 1006;
pub const ANNA_CUT: i64 = 1007;
/// Ben's personal types: 30 min, and a hidden 30 min one only his own key sees.
pub const BEN_APPLY: i64 = 1002;
pub const BEN_HIDDEN: i64 = 1004;
/// A managed parent (30 min) with a child for Anna only: the incident.
pub const PARENT: i64 = 2001;
pub const PARENT_SLUG: &str = "colour-consult";
pub const ANNA_CHILD: i64 = 2002;
/// A managed parent (20 min) whose only child is Anna's.
pub const PARENT_20: i64 = 2101;
pub const ANNA_CHILD_20: i64 = 2102;
/// Round robin (30 min) with both stylists, and with Ben only.
pub const RR_BOTH: i64 = 3001;
pub const RR_BEN: i64 = 3002;
/// Collective (30 min) with Anna only, with Ben only; collective 15 min with Anna only.
pub const COLLECTIVE_ANNA: i64 = 3003;
pub const COLLECTIVE_BEN: i64 = 3004;
pub const COLLECTIVE_ANNA_15: i64 = 3005;
/// No such event type.
pub const MISSING: i64 = 999_999;

fn stylist(id: i64, username: &str) -> SeedUser {
    SeedUser::new(id, username, "Europe/Berlin").working(WorkingHours::always())
}

/// The seed described above.
pub fn seed() -> Seed {
    let mut ben_hidden = SeedEventType::individual(BEN_HIDDEN, BEN, "ben-private", 30);
    ben_hidden.hidden = true;
    Seed {
        users: vec![stylist(ANNA, "anna"), stylist(BEN, "ben")],
        teams: vec![SeedTeam {
            id: TEAM_ID,
            slug: "salon".into(),
            name: "Salon".into(),
            members: vec![
                SeedMember::new(ANNA, "OWNER"),
                SeedMember::new(BEN, "MEMBER"),
            ],
        }],
        api_keys: vec![
            SeedApiKey {
                key: ANNA_KEY.into(),
                user_id: ANNA,
            },
            SeedApiKey {
                key: BEN_KEY.into(),
                user_id: BEN,
            },
        ],
        event_types: vec![
            SeedEventType::individual(ANNA_APPLY, ANNA, "apply-colour", 30),
            SeedEventType::individual(ANNA_LONG, ANNA, "long-colour", 45),
            SeedEventType::individual(ANNA_WASH, ANNA, "wash", 15),
            SeedEventType::individual(ANNA_BLOW_DRY, ANNA, "blow-dry", 20),
            SeedEventType::individual(ANNA_CUT, ANNA, "cut", 30),
            SeedEventType::individual(BEN_APPLY, BEN, "ben-apply-colour", 30),
            ben_hidden,
            SeedEventType::managed(PARENT, TEAM_ID, PARENT_SLUG, 30, &[(ANNA_CHILD, ANNA)]),
            SeedEventType::managed(PARENT_20, TEAM_ID, "finish", 20, &[(ANNA_CHILD_20, ANNA)]),
            SeedEventType::team(RR_BOTH, TEAM_ID, "roundRobin", "rr-both", 30, &[ANNA, BEN]),
            SeedEventType::team(RR_BEN, TEAM_ID, "roundRobin", "rr-ben", 30, &[BEN]),
            SeedEventType::team(
                COLLECTIVE_ANNA,
                TEAM_ID,
                "collective",
                "co-anna",
                30,
                &[ANNA],
            ),
            SeedEventType::team(COLLECTIVE_BEN, TEAM_ID, "collective", "co-ben", 30, &[BEN]),
            SeedEventType::team(
                COLLECTIVE_ANNA_15,
                TEAM_ID,
                "collective",
                "co-anna-wash",
                15,
                &[ANNA],
            ),
        ],
        bookings: vec![],
    }
}

/// A sim on loopback with [`seed`] loaded.
pub async fn spawn_sim() -> RunningSim {
    spawn_sim_with(seed()).await
}

pub async fn spawn_sim_with(seed: Seed) -> RunningSim {
    phasebook_test_support::spawn_sim(SimConfig::default(), seed).await
}

/// The colouring service: A 30 (gap 35), B 15, C 30, D 20.
pub fn colour_service() -> Value {
    json!({
        "name": "Colour",
        "segments": [
            {"key": "A", "name": "Apply colour", "duration_minutes": 30, "gap_after_minutes": 35},
            {"key": "B", "name": "Wash", "duration_minutes": 15},
            {"key": "C", "name": "Cut", "duration_minutes": 30},
            {"key": "D", "name": "Blow-dry", "duration_minutes": 20}
        ]
    })
}

/// A one-segment cut (C 30).
pub fn cut_service() -> Value {
    json!({"name": "Cut", "segments": [{"key": "C", "name": "Cut", "duration_minutes": 30}]})
}

pub fn staff(name: &str, user: i64, username: &str) -> Value {
    json!({
        "name": name,
        "calcom_user_id": user,
        "calcom_username": username,
        "time_zone": "Europe/Berlin"
    })
}

pub use phasebook_test_support::http_client;

/// Changes an event type the way a person does in Cal.com: `PATCH` on the personal or the
/// team endpoint with `key`. Panics unless Cal.com accepts it.
pub async fn patch_event_type(
    sim: &RunningSim,
    key: &str,
    team: Option<i64>,
    id: i64,
    body: Value,
) {
    let path = match team {
        Some(team) => format!("/v2/teams/{team}/event-types/{id}"),
        None => format!("/v2/event-types/{id}"),
    };
    let response = http_client()
        .patch(format!("{}{path}", sim.base_url))
        .bearer_auth(key)
        .header("cal-api-version", "2024-06-14")
        .json(&body)
        .send()
        .await
        .expect("patch the event type");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "Cal.com refused the change: {status} {text}"
    );
}

/// The ids of the managed children of `parent`, as the sim holds them.
pub fn children_of(sim: &RunningSim, parent: i64) -> Vec<(i64, i64)> {
    sim.state()
        .event_types
        .iter()
        .filter(|e| e.parent_event_type_id == Some(parent))
        .filter_map(|e| e.owner_id.map(|o| (e.id, o)))
        .collect()
}
