//! `snctl generate`: submits a request, then (with `--wait` or `-o`) follows the task with a
//! progress bar; with `-o` its serials stream into the file while they are generated.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use common::State;
use indicatif::ProgressBar;
use uuid::Uuid;

use serde_json::{json, Map, Value};

use crate::api::{Api, ApiError, Reply};
use crate::args::GenerateArgs;
use crate::error::Error;
use crate::output::Output;
use crate::views::{Reported, TaskView};
use crate::{download, progress, render, retry, wait};

/// One long-poll round when a bar shows progress (so it moves), and when nobody watches.
const LONG_POLL_WATCHED: Duration = Duration::from_secs(1);
const LONG_POLL_UNWATCHED: Duration = Duration::from_secs(5);

/// The `POST /generate_sn` body; fields left out take the server's defaults.
fn body(args: &GenerateArgs) -> Value {
    let mut body = json!({"code_model": args.model, "count": args.count});
    if let Some(number) = args.number {
        body["number"] = json!(number);
    }
    if args.width.is_some() || args.check_digit.is_some() {
        let mut format = Map::new();
        if let Some(width) = args.width {
            format.insert("width".into(), json!(width));
        }
        if let Some(check) = args.check_digit {
            format.insert("check_digit".into(), json!(check.as_str()));
        }
        body["format"] = Value::Object(format);
    }
    body
}

pub async fn run(api: &Api, out: Output, args: GenerateArgs) -> Result<(), Error> {
    if let Some(path) = &args.output {
        download::check_target(path)?;
    }
    let accepted = api
        .generate(&body(&args), args.idempotency_key.as_deref())
        .await?;
    if !args.waits() {
        return out.view(&accepted.json, || render::accepted(&accepted.view));
    }

    let id = accepted.view.id;
    let visible = out.progress_visible();
    let long_poll = if visible {
        LONG_POLL_WATCHED
    } else {
        LONG_POLL_UNWATCHED
    };
    let bar = progress::TaskBar::new(visible);
    let waiting = wait::until_done(api, id, long_poll, |view| bar.update(view));
    // With -o, the serials stream into the file while they are generated (the task's bar
    // shows the progress of both).
    let (done, followed) = match &args.output {
        Some(path) => {
            let (done, followed) = follow_into(api, id, path, args.count, waiting).await;
            (done, Some(followed))
        }
        None => (waiting.await, None),
    };
    bar.finish();
    let done = match (done, &followed) {
        // Every serial arrived, so the task succeeded: only the long poll broke off.
        (Err(_), Some(Some(Ok(_)))) => retry::transient(async || api.task(id, None).await).await?,
        (done, _) => done?,
    };
    if done.view.state == Reported::Known(State::Failure) {
        out.view(&done.json, || render::task(&done.view))?;
        let (code, message) = done
            .view
            .error
            .map(|e| (e.code, e.message))
            .unwrap_or_else(|| ("unknown".into(), "no reason given".into()));
        return Err(Error::TaskFailed { id, code, message });
    }

    let (Some(path), Some(followed)) = (&args.output, followed) else {
        return out.view(&done.json, || render::task(&done.view));
    };
    let written = match followed {
        Some(Ok(written)) => written,
        // The followed stream broke off or stalled (a gateway restart, say): the task is
        // done, so download it whole.
        Some(Err(_)) | None => {
            let bar = progress::download(visible, done.view.count);
            let written = download::to_file(api, id, path, done.view.count, &bar, false).await;
            bar.finish_and_clear();
            written?
        }
    };
    out.view(&done.json, || {
        format!(
            "{}wrote {written} serials to {}\n",
            render::task(&done.view),
            path.display()
        )
    })
}

/// How long a followed download may go without a byte once its task has ended before it
/// is given up (and the task downloaded whole instead).
const FOLLOW_IDLE: Duration = Duration::from_secs(30);

/// Runs `waiting` (the task's long polls) and a followed download of its serials into
/// `path` side by side. Returns the long polls' answer and the download's, or `None` for a
/// download given up: the long polls failed, or the task ended and the download then went
/// `FOLLOW_IDLE` without a byte. A download given up leaves no `.part` file.
async fn follow_into(
    api: &Api,
    id: Uuid,
    path: &Path,
    expected: u64,
    waiting: impl Future<Output = Result<Reply<TaskView>, ApiError>>,
) -> (
    Result<Reply<TaskView>, ApiError>,
    Option<Result<u64, Error>>,
) {
    let progress = ProgressBar::hidden();
    let mut following = Box::pin(download::to_file(api, id, path, expected, &progress, true));
    let mut waiting = Box::pin(waiting);
    let (done, followed) = tokio::select! {
        followed = &mut following => (waiting.await, Some(followed)),
        done = &mut waiting => {
            let mut followed = None;
            if done.is_ok() {
                let mut seen = progress.position();
                loop {
                    match tokio::time::timeout(FOLLOW_IDLE, &mut following).await {
                        Ok(r) => {
                            followed = Some(r);
                            break;
                        }
                        Err(_) if progress.position() != seen => seen = progress.position(),
                        Err(_) => break,
                    }
                }
            }
            (done, followed)
        }
    };
    drop(following);
    if followed.is_none() {
        download::discard(path).await;
    }
    (done, followed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn args(line: &[&str]) -> GenerateArgs {
        let cli = Cli::try_parse_from(line).unwrap();
        match cli.command {
            Command::Generate(a) => a,
            _ => panic!("not generate"),
        }
    }

    #[test]
    fn the_old_body_stays_minimal() {
        let a = args(&["snctl", "generate", "--model", "0111", "--count", "10"]);
        assert_eq!(body(&a), json!({"code_model": "0111", "count": 10}));
    }

    #[test]
    fn every_option_reaches_the_body() {
        let a = args(&[
            "snctl",
            "generate",
            "--model",
            "0111",
            "--number",
            "5",
            "--count",
            "10",
            "--width",
            "9",
            "--check-digit",
            "gs1",
        ]);
        assert_eq!(
            body(&a),
            json!({"code_model": "0111", "number": 5, "count": 10,
                   "format": {"width": 9, "check_digit": "gs1"}})
        );
    }
}
