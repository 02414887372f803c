//! One module per subcommand; `run` builds what they share (the API client, the output
//! mode) and calls the subcommand asked for.

mod backup;
mod generate;
mod lookup;
mod models;
mod tasks;
mod up;
mod watch;

use crate::api::Api;
use crate::args::{Cli, Command};
use crate::error::Error;
use crate::output::Output;

pub async fn run(cli: Cli) -> Result<(), Error> {
    let Cli { global, command } = cli;
    let out = Output::new(global.json);
    let api = || Api::new(global.url.clone(), global.token.clone()).map_err(Error::BadInput);
    match command {
        Command::Generate(args) => generate::run(&api()?, out, args).await,
        Command::Task(args) => tasks::show(&api()?, out, args).await,
        Command::Tasks(args) => tasks::list(&api()?, out, args).await,
        Command::Lookup(args) => lookup::run(&api()?, out, args).await,
        Command::Models(args) => models::run(&api()?, out, args).await,
        Command::Watch(args) => watch::run(&global, out, args).await,
        Command::Up => up::run(&global, out).await,
        Command::Backup(args) => backup::backup(&global, out, args).await,
        Command::Restore(args) => backup::restore(&global, out, args).await,
    }
}
