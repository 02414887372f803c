use clap::Parser;
use gateway::config::{Cli, Command};

/// jemalloc, with the options built in by `.cargo/config.toml` (BENCHMARKS.md, "The
/// allocator: jemalloc").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::config::load_dotenv();
    let Cli {
        command,
        run: config,
    } = Cli::parse();
    if let Some(Command::Healthcheck) = command {
        let healthy = common::health::healthy(config.http_addr, common::health::TIMEOUT);
        std::process::exit(if healthy { 0 } else { 1 });
    }
    let _telemetry = common::telemetry::init("gateway", &config.telemetry)?;
    tracing::info!(?config, "starting gateway");
    let shutdown = common::shutdown::on_signal();
    let app = gateway::Application::build(config, shutdown.clone()).await?;
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until_stopped().await?;
    tracing::info!("gateway stopped");
    Ok(())
}
