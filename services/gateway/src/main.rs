use clap::Parser;

/// jemalloc, configured at build time in `.cargo/config.toml` (BENCHMARKS.md, "Allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use gateway::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::config::load_dotenv();
    let config = Config::parse();
    let _telemetry = common::telemetry::init("gateway", &config.telemetry)?;
    tracing::info!(?config, "starting gateway");
    let shutdown = common::shutdown::on_signal();
    let app = gateway::Application::build(config, shutdown.clone()).await?;
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until_stopped().await?;
    tracing::info!("gateway stopped");
    Ok(())
}
