//! `sn-bench`: parses the command line, runs the benchmarks until done or stopped by a
//! signal, prints the report and optionally writes it as JSON.

use clap::Parser;
use sn_bench::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Returning early drops every stack started, which kills its processes.
    let report = tokio::select! {
        r = sn_bench::run(&config) => r?,
        s = stopped() => anyhow::bail!("stopped by {s}"),
    };
    print!("{}", report.table());
    if let Some(path) = &config.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn stopped() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
