//! `snctl generate`: submits a request, then (with `--wait` or `-o`) follows the task with a
//! progress bar; with `-o` its serials stream into the file while they are generated.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::api::Api;
use crate::args::GenerateArgs;
use crate::error::Error;
use crate::output::Output;
use crate::views::State;
use crate::{download, progress, render, wait};

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
            let hidden = indicatif::ProgressBar::hidden();
            let following = download::to_file(api, id, path, args.count, &hidden, true);
            let (done, followed) = tokio::join!(waiting, following);
            (done, Some(followed))
        }
        None => (waiting.await, None),
    };
    bar.finish();
    let done = done?;
    if done.view.state == State::Failure {
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
        Ok(written) => written,
        // The followed stream broke off (a gateway restart, say): the task is done, so
        // download it whole.
        Err(_) => {
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
