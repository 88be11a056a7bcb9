//! `phasebook demo`: a sample salon on a SQLite file — the colouring service (A 30 min,
//! 35 min processing gap, B 15, C 30, D 20), a cut, two stylists — served on loopback with
//! ready-to-paste curl commands that carry a real key.

use anyhow::{Context, Result};
use chrono::{Duration, SubsecRound, Utc};
use phasebook_domain::plan::parse_time_zone;
use phasebook_domain::{CalcomUserId, SegmentKey, SegmentSpec, Service, ServiceId, StaffId};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::{self, IssuedKey, TenantSettings};
use crate::cli::{DemoArgs, ServeConfig, connect, serve_with};
use crate::store::{Role, StaffMember, Store};

const SALON_TIME_ZONE: &str = "Europe/Berlin";

/// Where the demo's Cal.com lives, and how to reach it.
struct CalcomEndpoint {
    base_url: String,
    api_key: String,
    /// Whether something answers there, so the sync worker has a Cal.com to talk to.
    live: bool,
}

fn segment(key: &str, name: &str, minutes: u32, gap: u32) -> Result<SegmentSpec> {
    Ok(SegmentSpec {
        key: SegmentKey::parse(key)?,
        name: name.to_string(),
        duration_minutes: minutes,
        gap_after_minutes: gap,
        gap_after_max_minutes: None,
    })
}

/// The sample services: the colouring service of the design document and a plain cut.
fn sample_services() -> Result<Vec<(ServiceId, Service)>> {
    Ok(vec![
        (
            ServiceId::parse("colour")?,
            Service::new(
                "Colour, cut and blow-dry",
                vec![
                    segment("A", "Apply colour", 30, 35)?,
                    segment("B", "Wash", 15, 0)?,
                    segment("C", "Cut", 30, 0)?,
                    segment("D", "Blow-dry", 20, 0)?,
                ],
            )?,
        ),
        (
            ServiceId::parse("cut")?,
            Service::new("Cut", vec![segment("C", "Cut", 30, 0)?])?,
        ),
    ])
}

/// The two stylists, with the Cal.com users their segments are booked for.
fn sample_staff() -> Result<Vec<(StaffId, &'static str, i64, &'static str)>> {
    Ok(vec![
        (
            StaffId::parse("anna")?,
            "Anna Schmidt",
            1001,
            "anna-schmidt",
        ),
        (StaffId::parse("ben")?, "Ben Okafor", 1002, "ben-okafor"),
    ])
}

async fn seed_salon(store: &dyn Store, calcom: &CalcomEndpoint) -> Result<(IssuedKey, IssuedKey)> {
    let ops = auth::create_tenant(
        store,
        TenantSettings {
            name: "Demo Salon".to_string(),
            calcom_api_key: SecretString::from(calcom.api_key.clone()),
            calcom_base_url: calcom.base_url.clone(),
            calcom_team_id: None,
        },
    )
    .await
    .context("creating the demo tenant")?;
    let agent = auth::issue_api_key(store, ops.tenant_id, Role::Agent)
        .await
        .context("creating the agent key")?;
    let now = Utc::now().trunc_subsecs(3);
    for (service_id, service) in sample_services()? {
        store
            .put_service(ops.tenant_id, &service_id, &service, now)
            .await
            .context("defining the sample services")?;
    }
    for (staff_id, name, user_id, username) in sample_staff()? {
        store
            .put_staff(
                ops.tenant_id,
                &StaffMember {
                    staff_id,
                    name: name.to_string(),
                    calcom_user_id: CalcomUserId(user_id),
                    calcom_username: username.to_string(),
                    time_zone: SALON_TIME_ZONE.to_string(),
                    created_at: now,
                    updated_at: now,
                },
            )
            .await
            .context("defining the sample staff")?;
    }
    Ok((ops, agent))
}

/// Tomorrow at 10:00 in the salon's time zone, as a local date-time.
fn tomorrow_at_ten() -> Result<String> {
    let zone = parse_time_zone(SALON_TIME_ZONE)?;
    let tomorrow = (Utc::now().with_timezone(&zone) + Duration::days(1)).date_naive();
    Ok(format!("{}T10:00", tomorrow.format("%Y-%m-%d")))
}

fn curl_commands(base: &str, start: &str) -> Vec<(String, String)> {
    let booking = format!(
        r#"{{"service_id":"colour","staff_id":"anna","start":"{start}","time_zone":"{SALON_TIME_ZONE}","customer":{{"name":"Ada Lovelace","email":"ada@example.com"}}}}"#
    );
    let collide = format!(
        r#"{{"service_id":"cut","staff_id":"anna","start":"{start}","customer":{{"name":"Grace Hopper"}}}}"#
    );
    let auth = r#"-H "Authorization: Bearer $PHASEBOOK_KEY""#;
    let json = r#"-H 'Content-Type: application/json'"#;
    vec![
        (
            "the services".to_string(),
            format!("curl -s {base}/services {auth}"),
        ),
        (
            "book the colouring service (note the processing gap between A and B)".to_string(),
            format!(
                "curl -s -X POST {base}/appointments {auth} {json} -H 'Idempotency-Key: demo-1' -d '{booking}'"
            ),
        ),
        (
            "replay it with the same key: the same response, header Idempotent-Replayed: true"
                .to_string(),
            format!(
                "curl -si -X POST {base}/appointments {auth} {json} -H 'Idempotency-Key: demo-1' -d '{booking}'"
            ),
        ),
        (
            "collide with it: 409 naming the appointment that holds the time".to_string(),
            format!("curl -s -X POST {base}/appointments {auth} {json} -d '{collide}'"),
        ),
        (
            "read them back, filtered (also: sync_status, requires_manual_review, from, to, limit, cursor)"
                .to_string(),
            format!("curl -s '{base}/appointments?staff_id=anna' {auth}"),
        ),
        (
            "the API reference".to_string(),
            format!("open {base}/docs/"),
        ),
    ]
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let database_url = format!("sqlite://{}", args.db);
    let db = connect(&database_url).await?;
    db.store().migrate().await.context("applying migrations")?;

    // Without an emulator the tenant points at an address where nothing listens, and
    // the sync worker stays off so appointments simply wait in `pending`.
    let calcom = CalcomEndpoint {
        base_url: "http://127.0.0.1:9".to_string(),
        api_key: "cal_demo_key".to_string(),
        live: false,
    };
    let (ops, agent) = seed_salon(db.store(), &calcom).await?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let start = tomorrow_at_ten()?;
    let commands = curl_commands(&base, &start);
    if args.json {
        println!(
            "{}",
            json!({
                "base_url": base,
                "database_url": database_url,
                "tenant_id": ops.tenant_id,
                "ops_key": ops.api_key.expose_secret(),
                "agent_key": agent.api_key.expose_secret(),
                "calcom_base_url": calcom.base_url,
                "commands": commands
                    .iter()
                    .map(|(what, command)| json!({"what": what, "command": command}))
                    .collect::<Vec<_>>(),
            })
        );
    } else {
        println!("phasebook demo salon on {base} (data in {})", args.db);
        println!();
        println!("export PHASEBOOK_KEY={}", agent.api_key.expose_secret());
        println!(
            "# ops key (services, staff): {}",
            ops.api_key.expose_secret()
        );
        for (what, command) in &commands {
            println!();
            println!("# {what}");
            println!("{command}");
        }
        println!();
        println!("Ctrl-C stops the demo.");
    }
    let config = ServeConfig {
        database_url,
        listen: args.listen,
        run_worker: calcom.live,
        sync: crate::sync::SyncConfig::default(),
    };
    serve_with(db, listener, &config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_salon_is_valid_and_the_colouring_service_lasts_130_minutes() {
        let services = sample_services().expect("valid services");
        assert_eq!(services[0].1.total_minutes(), 130);
        assert_eq!(sample_staff().expect("valid staff").len(), 2);
        assert!(tomorrow_at_ten().expect("date").ends_with("T10:00"));
    }
}
