//! `snctl up`: the whole service on this machine, in the foreground.
//!
//! Starts `nats-server -js` on 127.0.0.1:4222 (store `./data/nats`) unless a NATS URL is given
//! or something already listens there, then the `generator` and `gateway` binaries found next
//! to snctl. Once both answer `/readyz` it prints where to reach them; on Ctrl-C, SIGTERM or
//! SIGHUP it stops them in reverse order (a stop signal, then wait) and exits 0. A child that
//! dies on its own takes the others down and snctl exits 1.

mod child;
mod probe;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures::future::select_all;
use rustix::process::Signal as ChildSignal;
use serde_json::json;
use tokio::process::Command;
use tokio::signal::unix::{signal, Signal, SignalKind};

use self::child::Child;
use self::probe::{accepting, listening, ready};
use crate::args::{Global, DEFAULT_NATS_URL};
use crate::error::Error;
use crate::output::Output;

const NATS_ADDR: &str = "127.0.0.1:4222";
const NATS_STORE: &str = "./data/nats";
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";
/// How long the stack may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each child may take to stop after its stop signal.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The signals that stop the stack. Handlers are installed at once, before any child starts,
/// so no signal can kill snctl and leave its children behind.
struct StopSignals(Vec<Signal>);

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .map(|kind| signal(kind).context("cannot listen for signals"))
        .collect::<anyhow::Result<_>>()
        .map(StopSignals)
    }

    async fn recv(&mut self) {
        select_all(self.0.iter_mut().map(|s| Box::pin(s.recv()))).await;
    }
}

/// An address from the environment, as the services read it, and the loopback URL that
/// reaches it (an unspecified listen address such as 0.0.0.0 is reached on 127.0.0.1).
fn address(var: &str, default: &str) -> Result<(String, String), Error> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let mut addr: SocketAddr = raw
        .parse()
        .map_err(|_| Error::BadInput(format!("{var}={raw:?} is not an address like {default}")))?;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    Ok((raw, format!("http://{addr}")))
}

/// A binary in the directory of the running snctl.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the snctl executable")?;
    let path = exe
        .with_file_name(name)
        .with_extension(std::env::consts::EXE_EXTENSION);
    if !path.is_file() {
        return Err(anyhow!(
            "cannot find {name} next to snctl (looked for {})",
            path.display()
        ));
    }
    Ok(path)
}

/// Resolves with the first child to exit (never, without children).
async fn first_exit(children: &mut [Child]) -> anyhow::Error {
    if children.is_empty() {
        return std::future::pending().await;
    }
    let exits = children.iter_mut().map(|c| Box::pin(c.exited()));
    let ((name, status), _, _) = select_all(exits).await;
    match status {
        Ok(status) => anyhow!("{name} exited on its own ({status})"),
        Err(e) => anyhow!("lost track of {name}: {e}"),
    }
}

/// The running children and the signals that stop them.
struct Stack {
    children: Vec<Child>,
    signals: StopSignals,
}

impl Stack {
    /// Adds a started child; if it could not start, stops the others first.
    async fn add(&mut self, child: anyhow::Result<Child>) -> Result<(), Error> {
        match child {
            Ok(child) => {
                self.children.push(child);
                Ok(())
            }
            Err(e) => {
                self.stop().await;
                Err(e.into())
            }
        }
    }

    /// Runs `work` while watching the children and the signals. `Some` with its result when
    /// it finished; `None` when a stop signal came first. Whenever `work` does not succeed,
    /// everything is stopped before this returns.
    async fn until<T>(
        &mut self,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<Option<T>, Error> {
        let outcome = tokio::select! {
            result = work => result.map(Some),
            died = first_exit(&mut self.children) => Err(died.into()),
            _ = self.signals.recv() => Ok(None),
        };
        if !matches!(outcome, Ok(Some(_))) {
            self.stop().await;
        }
        outcome
    }

    /// Stops every child, the last started first. Failures are reported, not returned: the
    /// others must still be stopped.
    async fn stop(&mut self) {
        for child in self.children.iter_mut().rev() {
            match child.stop(STOP_GRACE).await {
                Ok(status) if status.success() => {}
                Ok(status) => eprintln!("{} stopped with {status}", child.name),
                Err(e) => eprintln!("error: {e:#}"),
            }
        }
        self.children.clear();
    }
}

pub async fn run(global: &Global, out: Output) -> Result<(), Error> {
    let (http_addr, url) = address("HTTP_ADDR", DEFAULT_HTTP_ADDR)?;
    let (admin_addr, admin_url) = address("ADMIN_ADDR", DEFAULT_ADMIN_ADDR)?;
    let generator = sibling("generator")?;
    let gateway = sibling("gateway")?;
    let mut stack = Stack {
        children: Vec::new(),
        signals: StopSignals::install()?,
    };

    let nats_url = match &global.nats_url {
        Some(url) => url.clone(),
        None if listening(NATS_ADDR).await => DEFAULT_NATS_URL.to_owned(),
        None => {
            let mut nats = Command::new("nats-server");
            nats.args(["-js", "-a", "127.0.0.1", "-p", "4222", "-sd", NATS_STORE]);
            stack
                .add(Child::spawn("nats-server", nats, ChildSignal::INT))
                .await?;
            if stack
                .until(accepting(NATS_ADDR, READY_TIMEOUT))
                .await?
                .is_none()
            {
                return Ok(());
            }
            DEFAULT_NATS_URL.to_owned()
        }
    };
    let mut command = Command::new(&generator);
    command
        .env("NATS_URL", &nats_url)
        .env("ADMIN_ADDR", &admin_addr);
    stack
        .add(Child::spawn("generator", command, ChildSignal::TERM))
        .await?;
    let mut command = Command::new(&gateway);
    command
        .env("NATS_URL", &nats_url)
        .env("HTTP_ADDR", &http_addr);
    // Without --token (API_TOKEN), writes are open: this is a local stack.
    command.env("AUTH", "off");
    if let Some(token) = &global.token {
        command.env("API_TOKEN", token);
    }
    stack
        .add(Child::spawn("gateway", command, ChildSignal::TERM))
        .await?;

    let urls = [format!("{url}/readyz"), format!("{admin_url}/readyz")];
    if stack.until(ready(&urls, READY_TIMEOUT)).await?.is_none() {
        return Ok(());
    }
    let banner = if out.json {
        json!({"url": url, "nats_url": nats_url, "admin_url": admin_url}).to_string()
    } else {
        banner(&url, &nats_url, global.token.is_some())
    };
    let shown = out.text(&banner);
    // Runs until a signal (Ok) or a child that dies (Err); the stack is stopped either way.
    stack
        .until(async {
            shown?;
            std::future::pending().await
        })
        .await
        .map(|_: Option<()>| ())
}

fn banner(url: &str, nats_url: &str, token: bool) -> String {
    let auth = if token {
        " -H 'Authorization: Bearer <token>'"
    } else {
        ""
    };
    format!(
        "serial-number service ready at {url} (NATS {nats_url})\n\
         try:  curl -s -X POST {url}/generate_sn -H 'Content-Type: application/json'{auth} \
         -d '{{\"code_model\":\"0111\",\"count\":10}}'\n\
         or:   snctl --url {url} generate --model 0111 --count 10 --wait\n\
         Ctrl-C stops everything.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let (raw, url) = address("SNCTL_TEST_UNSET_ADDR", "0.0.0.0:8080").unwrap();
        assert_eq!(raw, "0.0.0.0:8080");
        assert_eq!(url, "http://127.0.0.1:8080");
    }

    #[test]
    fn the_banner_has_a_working_curl_line() {
        let text = banner("http://127.0.0.1:8080", DEFAULT_NATS_URL, false);
        assert!(text.contains(
            "curl -s -X POST http://127.0.0.1:8080/generate_sn -H 'Content-Type: application/json' -d '{\"code_model\":\"0111\",\"count\":10}'"
        ), "{text}");
    }
}
