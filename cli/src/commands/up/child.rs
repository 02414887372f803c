//! A process that `snctl up` runs. Each one gets its own process group, so a Ctrl-C at the
//! terminal reaches snctl alone and snctl decides the order in which they stop: a generator
//! still finishing its work needs NATS, so NATS goes last. Each is stopped with its own clean
//! stop signal: SIGTERM for the services, SIGINT for nats-server (which exits 1 on SIGTERM
//! and 0 on SIGINT, shutting down cleanly either way).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use rustix::process::{kill_process, Pid, Signal};
use tokio::process::Command;

pub struct Child {
    pub name: &'static str,
    stop_signal: Signal,
    process: tokio::process::Child,
}

impl Child {
    /// Starts `command`, its output going to snctl's own; `stop_signal` asks it to stop.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        stop_signal: Signal,
    ) -> anyhow::Result<Child> {
        let program = command.as_std().get_program().to_owned();
        let process = command
            .process_group(0)
            .stdin(Stdio::null())
            // A safety net: a child never outlives a snctl that failed half-way.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.to_string_lossy()))?;
        Ok(Child {
            name,
            stop_signal,
            process,
        })
    }

    /// Resolves when the process exits, whatever the reason.
    pub async fn exited(&mut self) -> (&'static str, std::io::Result<ExitStatus>) {
        (self.name, self.process.wait().await)
    }

    /// The stop signal, then up to `grace` for a clean exit, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        // `id` is `None` once the exit status was collected: nothing left to signal.
        if let Some(pid) = self.process.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = kill_process(pid, self.stop_signal);
        }
        match tokio::time::timeout(grace, self.process.wait()).await {
            Ok(status) => status.with_context(|| format!("cannot wait for {}", self.name)),
            Err(_) => {
                eprintln!(
                    "{} did not stop within {} s; killing it",
                    self.name,
                    grace.as_secs()
                );
                self.process
                    .kill()
                    .await
                    .with_context(|| format!("cannot kill {}", self.name))?;
                self.process
                    .wait()
                    .await
                    .with_context(|| format!("cannot wait for {}", self.name))
            }
        }
    }
}
