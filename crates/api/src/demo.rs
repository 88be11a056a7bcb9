//! `phasebook demo`: a sample salon on a SQLite file — the colouring service (A 30 min,
//! 35 min processing gap, B 15, C 30, D 20), a cut, two stylists — with the Cal.com
//! emulator running in the same process as the salon's Cal.com account, every segment
//! mapped, and the sync worker on. It books two appointments by itself and prints how
//! their sync ended (one `synced`, one `needs_review` with its reason), then serves on
//! loopback with ready-to-paste curl commands that carry a real key.

use std::net::SocketAddr;

use clap::Args;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use calcom_sim::{
    RateLimitConfig, Seed, SeedApiKey, SeedEventType, SeedMember, SeedTeam, SeedUser, Sim,
    SimConfig, WorkingHours,
};
use chrono::{DateTime, Datelike, Duration, NaiveTime, SubsecRound, TimeZone, Utc, Weekday};
use phasebook_domain::plan::parse_time_zone;
use phasebook_domain::sync::AppointmentSync;
use phasebook_domain::{
    CalcomUserId, Customer, SegmentKey, SegmentSpec, Service, ServiceId, StaffId, plan_appointment,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::{self, IssuedKey, TenantSettings};
use crate::server::{DEFAULT_LISTEN, ServeConfig, connect, start_background};
use crate::state::AppState;
use crate::store::event_maps::NewEventMap;
use crate::store::{Database, NewAppointment, Role, StaffMember, Store};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SQLite file for the demo salon.
    #[arg(long, default_value = "phasebook-demo.db")]
    pub db: String,
    /// Address to listen on.
    #[arg(long, env = "PHASEBOOK_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[arg(long)]
    pub json: bool,
}

const SALON_TIME_ZONE: &str = "Europe/Berlin";

/// Where the demo's Cal.com lives, and how to reach it.
struct CalcomEndpoint {
    base_url: String,
    api_key: String,
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

/// The salon's Cal.com API key on the emulator (it acts as Anna, the team's owner, so it
/// sees both stylists' bookings).
const CALCOM_API_KEY: &str = "cal_live_demo_salon";
const CALCOM_TEAM_ID: i64 = 1;
/// A managed "Blow-dry" event type of the team. Anna has her child of it; Ben joined the
/// team later and Cal.com never made his (the incident this service exists for).
const MANAGED_BLOW_DRY: i64 = 2001;
const ANNA_BLOW_DRY_CHILD: i64 = 2002;

/// The individual Cal.com event type of (stylist, service, segment):
/// 1000 + 100 × (stylist + 1) + 10 × service + segment, e.g. 1100 = Anna's colour A,
/// 1201 = Ben's colour B.
fn event_type_id(stylist: usize, service: usize, segment: usize) -> i64 {
    1000 + 100 * (stylist as i64 + 1) + 10 * service as i64 + segment as i64
}

/// The salon's Cal.com account as the emulator holds it: both stylists (Monday to
/// Saturday, 09:00–19:00), the team, the key, one individual event type per (stylist,
/// service, segment) of the segment's length, and the managed blow-dry type.
fn calcom_seed() -> Result<Seed> {
    let services = sample_services()?;
    let staff = sample_staff()?;
    let mut seed = Seed::default();
    let hours = WorkingHours::new(
        &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat"],
        "09:00",
        "19:00",
    );
    for (i, (_, name, user_id, username)) in staff.iter().enumerate() {
        let mut user = SeedUser::new(*user_id, username, SALON_TIME_ZONE).working(hours.clone());
        user.name = Some((*name).to_string());
        seed.users.push(user);
        for (k, (service_id, service)) in services.iter().enumerate() {
            for (j, segment) in service.segments().iter().enumerate() {
                let slug = format!(
                    "{}-{}",
                    service_id.as_str(),
                    segment.key.as_str().to_lowercase()
                );
                let mut et = SeedEventType::individual(
                    event_type_id(i, k, j),
                    *user_id,
                    &slug,
                    i64::from(segment.duration_minutes),
                );
                et.title = format!("{} {}: {}", service.name(), segment.key, segment.name);
                seed.event_types.push(et);
            }
        }
    }
    seed.teams.push(SeedTeam {
        id: CALCOM_TEAM_ID,
        slug: "demo-salon".to_string(),
        name: "Demo Salon".to_string(),
        members: vec![
            SeedMember::new(1001, "OWNER"),
            SeedMember::new(1002, "MEMBER"),
        ],
    });
    seed.api_keys.push(SeedApiKey {
        key: CALCOM_API_KEY.to_string(),
        user_id: 1001,
    });
    seed.event_types.push(SeedEventType::managed(
        MANAGED_BLOW_DRY,
        CALCOM_TEAM_ID,
        "blow-dry",
        20,
        &[(ANNA_BLOW_DRY_CHILD, 1001)],
    ));
    Ok(seed)
}

/// Maps every (service, segment, stylist) to its individual event type — except Ben's
/// blow-dry (colour D), which is mapped to the managed parent.
///
/// `PUT /event-maps` refuses that map today (it resolves the parent and finds no child for
/// Ben), so it is written straight to the store, the way installs from before that check
/// hold it: the demo shows what the sync engine does with such a map.
async fn map_segments(db: &Database, tenant_id: Uuid) -> Result<()> {
    let services = sample_services()?;
    for (i, (staff_id, ..)) in sample_staff()?.iter().enumerate() {
        for (k, (service_id, service)) in services.iter().enumerate() {
            for (j, segment) in service.segments().iter().enumerate() {
                let broken = staff_id.as_str() == "ben"
                    && service_id.as_str() == "colour"
                    && segment.key.as_str() == "D";
                let id = if broken {
                    MANAGED_BLOW_DRY
                } else {
                    event_type_id(i, k, j)
                };
                // Individual event types, stored as `PUT /event-maps` stores a resolved one.
                db.event_maps()
                    .put_event_map(
                        tenant_id,
                        &NewEventMap {
                            service_id: service_id.clone(),
                            segment_key: segment.key.clone(),
                            staff_id: staff_id.clone(),
                            event_type_id: phasebook_domain::EventTypeId(id),
                            bookable_event_type_id: phasebook_domain::EventTypeId(id),
                            resolution: "individual".to_string(),
                            checked_at: Utc::now().trunc_subsecs(3),
                        },
                    )
                    .await
                    .context("mapping the sample segments")?;
            }
        }
    }
    Ok(())
}

async fn seed_salon(store: &dyn Store, calcom: &CalcomEndpoint) -> Result<(IssuedKey, IssuedKey)> {
    let ops = auth::create_tenant(
        store,
        TenantSettings {
            name: "Demo Salon".to_string(),
            calcom_api_key: SecretString::from(calcom.api_key.clone()),
            calcom_base_url: calcom.base_url.clone(),
            calcom_team_id: Some(CALCOM_TEAM_ID),
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

/// The next day the salon is open (not Sunday), from tomorrow, in the salon's zone.
fn next_opening_day() -> Result<chrono::NaiveDate> {
    let zone = parse_time_zone(SALON_TIME_ZONE)?;
    let mut day = (Utc::now().with_timezone(&zone) + Duration::days(1)).date_naive();
    if day.weekday() == Weekday::Sun {
        day += Duration::days(1);
    }
    Ok(day)
}

/// The next opening day at 10:00 in the salon's time zone, as a local date-time.
fn next_opening_day_at_ten() -> Result<String> {
    Ok(format!("{}T10:00", next_opening_day()?.format("%Y-%m-%d")))
}

/// The next opening day at `hour`:00 in the salon's zone, as a UTC instant.
fn next_opening_day_at(hour: u32) -> Result<DateTime<Utc>> {
    let zone = parse_time_zone(SALON_TIME_ZONE)?;
    let time = NaiveTime::from_hms_opt(hour, 0, 0).context("a valid hour")?;
    let local = next_opening_day()?.and_time(time);
    zone.from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .context("an unambiguous local time")
}

/// Books the colouring service for `staff` at `start` straight in the store (as
/// `POST /appointments` does: appointment, segments and sync job in one transaction).
async fn book_colour(
    store: &dyn Store,
    tenant_id: Uuid,
    staff: &StaffId,
    start: DateTime<Utc>,
    customer: &str,
) -> Result<Uuid> {
    let (service_id, service) = sample_services()?
        .into_iter()
        .next()
        .context("the colouring service")?;
    let assigned = vec![staff.clone(); service.segments().len()];
    let appointment = NewAppointment {
        appointment_id: Uuid::now_v7(),
        tenant_id,
        service_id,
        staff_id: staff.clone(),
        time_zone: SALON_TIME_ZONE.to_string(),
        customer: Customer::new(customer, Some("guest@example.com"), None)?,
        notes: None,
        segments: plan_appointment(&service, start, &assigned),
        created_at: Utc::now().trunc_subsecs(3),
        awaited: false,
    };
    store
        .create_appointment(&appointment, None)
        .await
        .context("booking a demo appointment")?;
    Ok(appointment.appointment_id)
}

/// One of the demo's own appointments and how its sync ended.
struct DemoBooking {
    what: &'static str,
    appointment_id: Uuid,
    sync: Option<AppointmentSync>,
    finished: bool,
}

impl DemoBooking {
    fn json(&self) -> Value {
        json!({
            "what": self.what,
            "appointment_id": self.appointment_id,
            "finished": self.finished,
            "sync": self.sync,
        })
    }
}

fn curl_commands(base: &str, start: &str, broken: Uuid) -> Vec<(String, String)> {
    let booking = format!(
        r#"{{"service_id":"colour","staff_id":"anna","start":"{start}","time_zone":"{SALON_TIME_ZONE}","customer":{{"name":"Ada Lovelace","email":"ada@example.com"}}}}"#
    );
    let collide = format!(
        r#"{{"service_id":"cut","staff_id":"anna","start":"{start}","customer":{{"name":"Grace Hopper","email":"grace@example.com"}}}}"#
    );
    let day = start.split('T').next().unwrap_or(start);
    let hold = format!(
        r#"{{"service_id":"colour","staff_id":"anna","start":"{day}T12:30","time_zone":"{SALON_TIME_ZONE}","ttl_seconds":120}}"#
    );
    let from_hold =
        r#"{"hold_id":"'"$HOLD"'","customer":{"name":"Ada Lovelace","phone":"+4915123456789"}}"#;
    let moved = format!(r#"{{"start":"{day}T10:15","time_zone":"{SALON_TIME_ZONE}"}}"#);
    let auth = r#"-H "Authorization: Bearer $PHASEBOOK_KEY""#;
    let ops = r#"-H "Authorization: Bearer $PHASEBOOK_OPS_KEY""#;
    let json = r#"-H 'Content-Type: application/json'"#;
    vec![
        (
            "the services".to_string(),
            format!("curl -s {base}/services {auth}"),
        ),
        (
            "book the colouring service and wait up to 5 s for Cal.com (note the processing gap between A and B, and each segment's calcom_booking_uid)".to_string(),
            format!(
                "curl -s -X POST {base}/appointments {auth} {json} -H 'Idempotency-Key: demo-1' -H 'Prefer: wait=5' -d '{booking}'"
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
            "find: options for the colouring service with anna that day, each segment placed (Cal.com's free time minus our own appointments and holds)".to_string(),
            format!(
                "curl -s '{base}/availability?service_id=colour&staff_id=anna&from={day}&to={day}&time_zone={SALON_TIME_ZONE}&limit=3' {auth}"
            ),
        ),
        (
            "hold: keep the 12:30 option for two minutes while the caller decides (a second hold of it answers 409)".to_string(),
            format!(
                "HOLD=$(curl -s -X POST {base}/holds {auth} {json} -d '{hold}' | grep -o '\"id\":\"[^\"]*\"' | cut -d'\"' -f4); echo $HOLD"
            ),
        ),
        (
            "book: turn the hold into the appointment, exactly the held times (410 hold-expired once it ran out)".to_string(),
            format!(
                "curl -s -X POST {base}/appointments {auth} {json} -H 'Idempotency-Key: demo-hold-1' -d '{from_hold}'"
            ),
        ),
        (
            "find the caller: her appointments by e-mail in any case (or ?customer_phone= in local or international form)".to_string(),
            format!("curl -s '{base}/appointments?customer_email=ADA@EXAMPLE.COM' {auth}"),
        ),
        (
            "move the colouring 15 minutes later: same id, revision 1, each segment moved once in Cal.com (its own old time is no conflict)".to_string(),
            format!(
                "APPT=$(curl -s '{base}/appointments?customer_email=ada@example.com&limit=1' {auth} | grep -o '\"id\":\"[^\"]*\"' | head -1 | cut -d'\"' -f4); curl -s -X POST {base}/appointments/$APPT/reschedule {auth} {json} -H 'Idempotency-Key: demo-move-1' -H 'Prefer: wait=5' -d '{moved}'"
            ),
        ),
        (
            "read them back, filtered (also: sync_status, requires_manual_review, from, to, limit, cursor)"
                .to_string(),
            format!("curl -s '{base}/appointments?staff_id=anna' {auth}"),
        ),
        (
            "why the broken appointment needs review: per segment status, last error and the attempt log".to_string(),
            format!("curl -s {base}/appointments/{broken}/sync {auth}"),
        ),
        (
            "everything that needs a human, and the sync health".to_string(),
            format!(
                "curl -s '{base}/appointments?requires_manual_review=true' {auth}; curl -s {base}/sync/health {auth}"
            ),
        ),
        (
            "retry it (ops; safe to repeat — it stays in review until the event map is fixed)".to_string(),
            format!("curl -s -X POST {base}/resync/{broken} {ops}"),
        ),
        (
            "the event-map audit (ops): the broken map, with its fix".to_string(),
            format!("curl -s {base}/event-maps/audit {ops}"),
        ),
        (
            "the API reference".to_string(),
            format!("open {base}/docs/"),
        ),
    ]
}

pub async fn run(args: DemoArgs) -> Result<()> {
    // A fresh salon each run: tenants of earlier runs would point at their emulator, which
    // stopped with them.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.db));
    }
    let database_url = format!("sqlite://{}", args.db);
    let db = connect(&database_url).await?;
    db.store().migrate().await.context("applying migrations")?;

    // The salon's Cal.com: the emulator, in this process, on a loopback port, throttled
    // like Cal.com throttles an API key.
    let sim = Sim::new(SimConfig {
        rate_limit: Some(RateLimitConfig::calcom_default()),
        ..SimConfig::default()
    });
    sim.seed(calcom_seed()?)
        .map_err(|e| anyhow::anyhow!("seeding the Cal.com emulator: {e}"))?;
    let sim = sim.spawn().await.context("starting the Cal.com emulator")?;
    let calcom = CalcomEndpoint {
        base_url: sim.base_url.clone(),
        api_key: CALCOM_API_KEY.to_string(),
    };
    let (ops, agent) = seed_salon(db.store(), &calcom).await?;
    map_segments(&db, ops.tenant_id).await?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);

    let config = ServeConfig {
        database_url: database_url.clone(),
        listen: args.listen,
        run_worker: true,
        sync: crate::sync::SyncConfig::default(),
    };
    let state = AppState::new(db.clone());
    let stop = CancellationToken::new();
    let tasks = start_background(&state, &config, &stop);

    // The demo's own two bookings: Anna's syncs; Ben's blow-dry is mapped to the managed
    // parent he has no child of, so it ends in review with the reason and the fix.
    let anna = StaffId::parse("anna")?;
    let ben = StaffId::parse("ben")?;
    let mut bookings = vec![
        DemoBooking {
            what: "colouring with Anna",
            appointment_id: book_colour(
                db.store(),
                ops.tenant_id,
                &anna,
                next_opening_day_at(15)?,
                "Grace Hopper",
            )
            .await?,
            sync: None,
            finished: false,
        },
        DemoBooking {
            what: "colouring with Ben (his blow-dry is mapped to a managed parent without his child)",
            appointment_id: book_colour(
                db.store(),
                ops.tenant_id,
                &ben,
                next_opening_day_at(10)?,
                "Katherine Johnson",
            )
            .await?,
            sync: None,
            finished: false,
        },
    ];
    state.sync.wake();
    for booking in &mut bookings {
        let outcome = state
            .sync
            .wait_for_outcome(
                ops.tenant_id,
                booking.appointment_id,
                StdDuration::from_secs(20),
            )
            .await
            .context("reading the sync status")?;
        if let Some(outcome) = outcome {
            booking.finished = outcome.finished;
            booking.sync = Some(outcome.sync);
        }
    }
    let broken = bookings[1].appointment_id;

    let start = next_opening_day_at_ten()?;
    let commands = curl_commands(&base, &start, broken);
    if args.json {
        println!(
            "{}",
            json!({
                "base_url": base,
                "console_url": format!("{base}/ops"),
                "database_url": database_url,
                "tenant_id": ops.tenant_id,
                "ops_key": ops.api_key.expose_secret(),
                "agent_key": agent.api_key.expose_secret(),
                "calcom_base_url": calcom.base_url,
                "demo_appointments": bookings.iter().map(DemoBooking::json).collect::<Vec<_>>(),
                "commands": commands
                    .iter()
                    .map(|(what, command)| json!({"what": what, "command": command}))
                    .collect::<Vec<_>>(),
            })
        );
    } else {
        println!("phasebook demo salon on {base} (data in {})", args.db);
        println!(
            "Cal.com emulator on {} (the salon's Cal.com account: two stylists, their event types, a managed blow-dry type)",
            calcom.base_url
        );
        println!();
        println!("The demo booked two appointments by itself:");
        for booking in &bookings {
            let status = booking
                .sync
                .as_ref()
                .map_or("unknown".to_string(), |s| s.status.to_string());
            let still = if booking.finished {
                ""
            } else {
                " (still going)"
            };
            println!(
                "  {} {}: sync {status}{still}",
                booking.appointment_id, booking.what
            );
            if let Some(reason) = booking.sync.as_ref().and_then(|s| s.review_reason.as_ref()) {
                println!("    needs review: {reason}");
            }
        }
        println!();
        println!(
            "Ops console: {base}/ops (log in with the ops key below; the appointment in review is first on the queue)"
        );
        println!();
        println!("export PHASEBOOK_KEY={}", agent.api_key.expose_secret());
        println!("export PHASEBOOK_OPS_KEY={}", ops.api_key.expose_secret());
        for (what, command) in &commands {
            println!();
            println!("# {what}");
            println!("{command}");
        }
        println!();
        println!("Ctrl-C stops the demo.");
    }
    tracing::info!(listen = %base, database = "sqlite", worker = true, "phasebook demo serving");
    let result = crate::app::serve(listener, state, crate::app::shutdown_signal()).await;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    sim.shutdown().await;
    db.close().await;
    result.context("serving HTTP")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_salon_is_valid_and_the_colouring_service_lasts_130_minutes() {
        let services = sample_services().expect("valid services");
        assert_eq!(services[0].1.total_minutes(), 130);
        assert_eq!(sample_staff().expect("valid staff").len(), 2);
        assert!(next_opening_day_at_ten().expect("date").ends_with("T10:00"));
        assert_ne!(next_opening_day().expect("date").weekday(), Weekday::Sun);
    }

    #[test]
    fn every_sample_segment_has_an_event_type_of_its_length_in_the_emulator_seed() {
        let seed = calcom_seed().expect("seed");
        let services = sample_services().expect("services");
        for i in 0..2 {
            for (k, (_, service)) in services.iter().enumerate() {
                for (j, segment) in service.segments().iter().enumerate() {
                    let et = seed
                        .event_types
                        .iter()
                        .find(|e| e.id == event_type_id(i, k, j))
                        .expect("event type");
                    assert_eq!(et.length_in_minutes, i64::from(segment.duration_minutes));
                }
            }
        }
        let ids: std::collections::HashSet<i64> = seed.event_types.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), seed.event_types.len(), "ids are unique");
    }
}
