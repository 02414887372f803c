//! Entry point: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::config::load_dotenv();
    let cli = snctl::Cli::parse();
    match snctl::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_quiet() {
                eprintln!("error: {e}");
            }
            e.exit().into()
        }
    }
}
