//! The `phasebook` binary; everything lives in the library's `cli` module.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    phasebook_api::cli::run().await
}
