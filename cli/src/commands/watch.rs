//! `snctl watch`: live events straight from NATS, one line each, until Ctrl-C or SIGTERM.
//!
//! A plain (core NATS) subscription: it shows what happens from now on, not the history the
//! stream keeps. `--task` listens on `sn.*.*.<task>`, which carries every event of one task
//! but the model's ledger entry (`sn.<model>.reserved`); `--model` on `sn.<model>.>`.

use common::{subjects, Event};
use futures::StreamExt;
use uuid::Uuid;

use crate::args::{Global, WatchArgs, DEFAULT_NATS_URL};
use crate::error::Error;
use crate::output::Output;
use crate::render;

/// The subject to subscribe to; with both filters, the task's subject (the model is then
/// checked on each message's subject).
fn subject(task: Option<Uuid>, model: Option<&str>) -> String {
    match (task, model) {
        (Some(task), _) => subjects::of_task(task),
        (None, Some(model)) => subjects::of_model(model),
        (None, None) => subjects::ALL.to_owned(),
    }
}

pub async fn run(global: &Global, out: Output, args: WatchArgs) -> Result<(), Error> {
    if let Some(model) = &args.model {
        if !common::request::valid_model(model) {
            return Err(Error::BadInput(format!(
                "--model {model:?}: must be 1 to 32 characters of A-Z a-z 0-9 _ -"
            )));
        }
    }
    let url = global.nats_url.as_deref().unwrap_or(DEFAULT_NATS_URL);
    let unreachable = |reason: String| Error::NatsUnreachable {
        url: url.to_owned(),
        reason,
    };
    let servers = url
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadInput(format!("--nats-url {url:?}: {e}")))?;
    let client = async_nats::ConnectOptions::new()
        .name("snctl watch")
        .connect(servers)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let subject = subject(args.task, args.model.as_deref());
    let mut events = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    // Once the server has the subscription, say so: from this line on no event is missed
    // (scripts wait for it before they act).
    client
        .flush()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    eprintln!("watching {subject} on {url}; Ctrl-C stops");

    let stop = common::shutdown::signal();
    tokio::pin!(stop);
    loop {
        let message = tokio::select! {
            _ = &mut stop => return Ok(()),
            message = events.next() => message,
        };
        let Some(message) = message else {
            return Err(unreachable("the connection was closed".into()));
        };
        show(&out, &args, &message)?;
    }
}

fn show(out: &Output, args: &WatchArgs, message: &async_nats::Message) -> Result<(), Error> {
    if let Some(model) = &args.model {
        let parsed = subjects::parse(&message.subject);
        if parsed.is_some_and(|p| p.model != model) {
            return Ok(());
        }
    }
    if out.json && args.serials {
        return out.line(&message.payload);
    }
    let event = match Event::from_json_without_serials(&message.payload) {
        Ok(event) => event,
        Err(e) => {
            eprintln!("warning: skipped a message on {}: {e}", message.subject);
            return Ok(());
        }
    };
    if out.json {
        out.line(&event.to_json())
    } else {
        out.line(render::event(&event).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_pick_the_narrowest_subject() {
        let id = Uuid::new_v4();
        assert_eq!(subject(None, None), subjects::ALL);
        assert_eq!(subject(None, Some("0111")), subjects::of_model("0111"));
        assert_eq!(subject(Some(id), None), subjects::of_task(id));
        assert_eq!(subject(Some(id), Some("0111")), subjects::of_task(id));
    }
}
