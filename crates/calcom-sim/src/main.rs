//! The `calcom-sim` binary: a Cal.com v2 emulator on a port, seeded from a file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use calcom_sim::{Faults, RateLimitConfig, RouteFaults, Seed, Sim, SimConfig, WebhookConfig};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "calcom-sim", about = "A Cal.com API v2 emulator")]
struct Args {
    #[arg(long, default_value_t = 4010, env = "CALCOM_SIM_PORT")]
    port: u16,
    #[arg(long, default_value = "127.0.0.1", env = "CALCOM_SIM_HOST")]
    host: String,
    /// JSON seed (see `salon.json`).
    #[arg(long)]
    seed_file: Option<PathBuf>,
    /// Requests per window per API key (Cal.com: 120).
    #[arg(long, default_value_t = 120)]
    rate_limit: u32,
    #[arg(long, default_value_t = 60)]
    rate_window_secs: u64,
    /// How long a key is blocked after going over (Cal.com: 60 s).
    #[arg(long, default_value_t = 60)]
    rate_block_secs: u64,
    /// Switch rate limiting off.
    #[arg(long)]
    no_rate_limit: bool,
    /// Latency added to every `/v2` answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the fault RNG.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// JSON file with a `Faults` value (`{"seed":1,"routes":{"bookings.create":{"errorRate":0.1}}}`).
    #[arg(long)]
    faults_file: Option<PathBuf>,
    #[arg(long, env = "CALCOM_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,
    #[arg(long, env = "CALCOM_SIM_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let mut faults = match &args.faults_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<Faults>(&text).context("parsing the faults file")?
        }
        None => Faults::default(),
    };
    if args.fault_seed != 0 || args.faults_file.is_none() {
        faults.seed = args.fault_seed;
    }
    if args.latency_ms > 0 {
        faults
            .routes
            .entry("*".to_owned())
            .or_insert_with(RouteFaults::default)
            .latency_ms = args.latency_ms;
    }
    let rate_limit = (!args.no_rate_limit && args.rate_limit > 0).then(|| RateLimitConfig {
        limit: args.rate_limit,
        window: Duration::from_secs(args.rate_window_secs.max(1)),
        block: Duration::from_secs(args.rate_block_secs),
    });
    let webhook = args.webhook_url.clone().map(|url| WebhookConfig {
        url,
        secret: args.webhook_secret.clone(),
    });
    let sim = Sim::new(SimConfig {
        rate_limit,
        faults,
        webhook,
    });
    if let Some(path) = &args.seed_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let seed: Seed = serde_json::from_str(&text).context("parsing the seed file")?;
        sim.seed(seed).context("loading the seed")?;
    }
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    tracing::info!(addr = %listener.local_addr()?, "calcom-sim listening");
    sim.serve_until_ctrl_c(listener).await?;
    Ok(())
}
