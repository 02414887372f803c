//! `snctl lookup SERIAL`: which model, number and task issued a serial.

use crate::api::Api;
use crate::args::LookupArgs;
use crate::error::Error;
use crate::output::Output;
use crate::render;

pub async fn run(api: &Api, out: Output, args: LookupArgs) -> Result<(), Error> {
    let reply = api.lookup(&args.serial).await?;
    out.view(&reply.json, || render::serial(&reply.view))
}
