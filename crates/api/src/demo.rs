//! `phasebook demo`: a sample salon on a SQLite file, served with ready-to-paste curl
//! commands.

use anyhow::Result;

use crate::cli::DemoArgs;

pub async fn run(args: DemoArgs) -> Result<()> {
    let _ = args;
    anyhow::bail!("demo is not available yet")
}
