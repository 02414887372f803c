use clap::Parser;
use generator::config::{Cli, Command};

/// jemalloc, with the options built in by `.cargo/config.toml` (BENCHMARKS.md, "The
/// allocator: jemalloc").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::config::load_dotenv();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Log { data_dir }) => {
            return generator::print_log(&data_dir, &mut std::io::stdout().lock());
        }
        Some(Command::Healthcheck) => {
            let healthy = common::health::healthy(cli.run.admin_addr, common::health::TIMEOUT);
            std::process::exit(if healthy { 0 } else { 1 });
        }
        None => {}
    }
    let _telemetry = common::telemetry::init("generator", &cli.run.telemetry)?;
    tracing::info!(config = ?cli.run, "starting generator");
    let shutdown = common::shutdown::on_signal();
    let app = generator::Application::build(cli.run, shutdown.clone()).await?;
    app.run_until_stopped().await?;
    tracing::info!("generator stopped");
    Ok(())
}
