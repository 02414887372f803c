use clap::Parser;
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
