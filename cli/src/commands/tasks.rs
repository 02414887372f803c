//! `snctl task ID` and `snctl tasks`: the gateway's task views, as text or raw JSON.

use crate::api::{Api, TaskQuery};
use crate::args::{TaskArgs, TasksArgs};
use crate::error::Error;
use crate::output::Output;
use crate::render;

pub async fn show(api: &Api, out: Output, args: TaskArgs) -> Result<(), Error> {
    let reply = api.task(args.id, None).await?;
    out.view(&reply.json, || render::task(&reply.view))
}

pub async fn list(api: &Api, out: Output, args: TasksArgs) -> Result<(), Error> {
    let query = TaskQuery {
        state: args.state.map(|s| s.as_str()),
        code_model: args.model.as_deref(),
        limit: args.limit,
        cursor: args.cursor.as_deref(),
    };
    let reply = api.tasks(&query).await?;
    out.view(&reply.json, || render::tasks(&reply.view))
}
