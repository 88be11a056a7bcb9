//! The `phasebook` command line: one enum of subcommands, configuration from flags and
//! `PHASEBOOK_*` variables, and what each command does. Every printing command accepts
//! `--json` and then prints exactly one JSON object.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::auth::{self, IssuedKey, TenantSettings};
use crate::demo::DemoArgs;
use crate::routes;
use crate::server::{DEFAULT_LISTEN, ServeConfig, connect, require_master_keys, serve};
use crate::store::Role;
use crate::telemetry::{self, LogFormat};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://phasebook.db";
pub const DEFAULT_CALCOM_BASE_URL: &str = "https://api.cal.com";

#[derive(Debug, Parser)]
#[command(
    name = "phasebook",
    version,
    about = "Composite salon appointments, kept in sync with Cal.com"
)]
pub struct Cli {
    /// `sqlite://FILE` (created when missing) or `postgres://…`.
    #[arg(long, env = "PHASEBOOK_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// Log line format (logs go to stderr).
    #[arg(long, env = "PHASEBOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub secret_keys: crate::secrets::cli::SecretKeyArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (and the sync worker unless --no-worker); applies migrations first.
    Serve(ServeArgs),
    /// Run only the sync worker (no HTTP API); applies migrations first.
    Worker(WorkerArgs),
    /// Apply pending database migrations.
    Migrate(JsonFlag),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print the OpenAPI document (as checked in at openapi/openapi.json).
    Openapi,
    /// Start a ready-to-curl sample salon: SQLite file, sample data, printed commands.
    /// (Built with the default `demo` feature only: it runs the Cal.com emulator.)
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Audit every event map against Cal.com; exits with 1 when anything needs fixing.
    Doctor(crate::event_maps::cli::DoctorArgs),
    /// Create one hidden single-host Cal.com team event type per segment of a service for
    /// a staff member, verify each, and store the event maps (idempotent).
    Provision(crate::event_maps::cli::ProvisionArgs),
    /// The master keys that encrypt tenants' Cal.com keys and webhook secrets.
    #[command(subcommand)]
    Secrets(crate::secrets::cli::SecretsCommand),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PHASEBOOK_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Serve the API only; run the sync worker elsewhere (`phasebook worker`).
    #[arg(long)]
    pub no_worker: bool,
    #[command(flatten)]
    pub sync: crate::sync::SyncArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub sync: crate::sync::SyncArgs,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id and an ops key (shown once).
    Create(TenantCreateArgs),
    /// Replace a tenant's Cal.com key (checked with Cal.com first), rotate its webhook
    /// secret, or set its API request limit.
    Update(crate::secrets::cli::TenantUpdateArgs),
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    #[arg(long)]
    pub name: String,
    /// The salon's Cal.com API key.
    #[arg(long, env = "PHASEBOOK_CALCOM_API_KEY", hide_env_values = true)]
    pub calcom_api_key: String,
    #[arg(long, default_value = DEFAULT_CALCOM_BASE_URL)]
    pub calcom_base_url: String,
    /// The Cal.com team whose managed event types the salon uses.
    #[arg(long)]
    pub calcom_team_id: Option<i64>,
    /// ISO 3166 alpha-2 country national phone numbers are read with (e.g. DE). Unset:
    /// only international numbers (+49…) are accepted.
    #[arg(long)]
    pub country: Option<String>,
    /// How many days ahead the salon takes bookings.
    #[arg(long, default_value_t = phasebook_domain::preflight::DEFAULT_HORIZON_DAYS)]
    pub booking_horizon_days: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a tenant and print it (shown once).
    Create(KeyCreateArgs),
    /// List a tenant's API keys: prefix, role, created, last used, expiry (never the key).
    List(crate::secrets::cli::KeyListArgs),
    /// Revoke an API key; it is refused everywhere within seconds.
    Revoke(crate::secrets::cli::KeyRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    #[arg(long)]
    pub tenant: Uuid,
    /// agent, viewer or ops.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// The key is refused after this long, e.g. `90d`, `12h`, `2w` (default: never).
    #[arg(long, value_parser = auth::parse_lifetime)]
    pub expires_in: Option<chrono::TimeDelta>,
    #[arg(long)]
    pub json: bool,
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

/// Parses the command line and runs the command.
pub async fn run() -> Result<()> {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    // The keys are installed before any database is opened: every store seals and opens
    // with them. The demo makes its own, for its own fresh database.
    crate::secrets::install(match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(_) => crate::secrets::SecretBox::new(crate::secrets::MasterKey::generate().0),
        _ => cli.secret_keys.secret_box()?,
    });
    match cli.command {
        Command::Serve(args) => {
            serve(ServeConfig {
                database_url: cli.database_url,
                listen: args.listen,
                run_worker: !args.no_worker,
                sync: args.sync.config(),
            })
            .await
        }
        Command::Worker(args) => {
            require_master_keys(&cli.database_url).await?;
            crate::sync::worker::run_standalone(&cli.database_url, args.sync.config()).await
        }
        Command::Migrate(flag) => {
            let db = connect(&cli.database_url).await?;
            db.store().migrate().await.context("applying migrations")?;
            let usage = crate::secrets::rotation::key_usage(db.keys())
                .await
                .context("reading how secrets are stored")?;
            print_result(
                flag.json,
                json!({"migrated": true, "database": db.store().backend(), "secrets": usage}),
                &format!("migrations applied; secret columns by master key: {usage:?}"),
            );
            db.close().await;
            Ok(())
        }
        Command::Tenant(TenantCommand::Create(args)) => {
            tenant_create(&cli.database_url, args).await
        }
        Command::Tenant(TenantCommand::Update(args)) => {
            crate::secrets::cli::tenant_update(&cli.database_url, args).await
        }
        Command::Key(KeyCommand::Create(args)) => key_create(&cli.database_url, args).await,
        Command::Key(KeyCommand::List(args)) => {
            crate::secrets::cli::key_list(&cli.database_url, args).await
        }
        Command::Key(KeyCommand::Revoke(args)) => {
            crate::secrets::cli::key_revoke(&cli.database_url, args).await
        }
        Command::Secrets(command) => crate::secrets::cli::run(&cli.database_url, command).await,
        Command::Openapi => {
            print!("{}", routes::openapi_json());
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Doctor(args) => {
            let db = connect(&cli.database_url).await?;
            db.store().migrate().await.context("applying migrations")?;
            let mut report = Vec::new();
            let ok = crate::event_maps::cli::doctor(&db, &args, &mut report)
                .await
                .context("auditing event maps")?;
            db.close().await;
            std::io::Write::write_all(&mut std::io::stdout(), &report)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Provision(args) => {
            let db = connect(&cli.database_url).await?;
            db.store().migrate().await.context("applying migrations")?;
            let mut report = Vec::new();
            crate::event_maps::cli::provision(&db, &args, &mut report)
                .await
                .context("provisioning event types")?;
            db.close().await;
            std::io::Write::write_all(&mut std::io::stdout(), &report)?;
            Ok(())
        }
    }
}

pub(crate) fn print_result(json: bool, value: serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

pub(crate) fn issued_json(issued: &IssuedKey) -> serde_json::Value {
    json!({
        "tenant_id": issued.tenant_id,
        "api_key_id": issued.api_key_id,
        "role": issued.role.as_str(),
        "api_key": issued.api_key.expose_secret(),
        "expires_at": issued.expires_at,
    })
}

async fn tenant_create(database_url: &str, args: TenantCreateArgs) -> Result<()> {
    if args.name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    let country = args
        .country
        .as_deref()
        .map(phasebook_domain::phone::Country::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--country: {}", e.message))?;
    if !(1..=phasebook_domain::preflight::MAX_HORIZON_DAYS).contains(&args.booking_horizon_days) {
        bail!(
            "--booking-horizon-days must be 1 to {}",
            phasebook_domain::preflight::MAX_HORIZON_DAYS
        );
    }
    let db = connect(database_url).await?;
    db.store().migrate().await.context("applying migrations")?;
    let issued = auth::create_tenant(
        db.store(),
        TenantSettings {
            name: args.name.trim().to_string(),
            calcom_api_key: SecretString::from(args.calcom_api_key),
            calcom_base_url: args.calcom_base_url,
            calcom_team_id: args.calcom_team_id,
        },
    )
    .await
    .context("creating the tenant")?;
    db.booking()
        .set_booking_settings(
            issued.tenant_id,
            &crate::store::holds::BookingSettings {
                country: country.map(|c| c.as_str().to_string()),
                horizon_days: args.booking_horizon_days,
            },
        )
        .await
        .context("storing the booking settings")?;
    // Cal.com signs its webhooks with a secret set when the webhook is registered there, so
    // ops needs the tenant's secret and path once, now.
    let webhook_secret = crate::sync::sync_store(&db)
        .webhook_secret(issued.tenant_id)
        .await
        .context("reading the webhook secret")?
        .context("the new tenant has no webhook secret")?;
    let webhook_path = format!("/webhooks/calcom/{}", issued.tenant_id);
    let mut out = issued_json(&issued);
    out["webhook_path"] = json!(webhook_path);
    out["webhook_secret"] = json!(webhook_secret);
    print_result(
        args.json,
        out,
        &format!(
            "tenant {}\nops API key (shown once, store it now): {}\n\
             Cal.com webhook (BOOKING_CANCELLED, BOOKING_RESCHEDULED): POST <this server>{webhook_path}\n\
             webhook secret (enter it in Cal.com; shown once): {webhook_secret}",
            issued.tenant_id,
            issued.api_key.expose_secret()
        ),
    );
    db.close().await;
    Ok(())
}

async fn key_create(database_url: &str, args: KeyCreateArgs) -> Result<()> {
    let db = connect(database_url).await?;
    db.store().migrate().await.context("applying migrations")?;
    if !db.store().tenant_exists(args.tenant).await? {
        bail!("there is no tenant {}", args.tenant);
    }
    let expires_at = args
        .expires_in
        .map(|lifetime| chrono::Utc::now() + lifetime);
    let issued = auth::issue_expiring_api_key(db.store(), args.tenant, args.role, expires_at)
        .await
        .context("creating the key")?;
    crate::secrets::cli::record_cli_action(
        &db,
        args.tenant,
        "create key",
        format!("key {} ({})", issued.api_key_id, issued.role.as_str()),
    )
    .await?;
    print_result(
        args.json,
        issued_json(&issued),
        &format!(
            "{} API key for tenant {} (shown once, store it now): {}",
            issued.role.as_str(),
            issued.tenant_id,
            issued.api_key.expose_secret()
        ),
    );
    db.close().await;
    Ok(())
}
