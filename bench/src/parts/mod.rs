//! The parts of the suite. Each measures one thing against a [`Target`] and returns its
//! figures; `lib::run` repeats them and keeps every run's value.

pub mod big_task;
pub mod latency;
pub mod replay;
pub mod throughput;

use std::sync::Arc;

use crate::api::Api;
use crate::config::Config;
use crate::rss::Watched;
use crate::stack::{Binaries, Stack};

/// The stack a part measures: one sn-bench started for it, or the running one of `--url`.
pub struct Target {
    pub api: Arc<Api>,
    pub gateway_pid: Option<u32>,
    pub generator_pid: Option<u32>,
    pub nats_pid: Option<u32>,
    /// The stack's NATS, for reading task timelines off the stream.
    pub nats_url: Option<String>,
    pub stack: Option<Stack>,
}

impl Target {
    /// A fresh stack, or the running one when `--url` is given.
    pub async fn acquire(config: &Config, bins: &Binaries) -> anyhow::Result<Target> {
        if let Some(url) = &config.url {
            return Ok(Target {
                api: Arc::new(Api::new(url)?),
                gateway_pid: config.gateway_pid,
                generator_pid: config.generator_pid,
                nats_pid: None,
                nats_url: config.nats_url.clone(),
                stack: None,
            });
        }
        let stack = Stack::start(bins).await?;
        Ok(Target {
            api: Arc::new(Api::new(&stack.gateway.base)?),
            gateway_pid: Some(stack.gateway.proc.pid()),
            generator_pid: Some(stack.generator.proc.pid()),
            nats_pid: Some(stack.nats.proc.pid()),
            nats_url: Some(stack.nats.url.clone()),
            stack: Some(stack),
        })
    }

    pub fn is_remote(&self) -> bool {
        self.stack.is_none()
    }

    /// Every process whose memory and CPU time a part can watch, sn-bench included.
    pub fn watched(&self) -> Vec<Watched> {
        let mut w = Vec::new();
        for (name, pid) in [
            ("gateway", self.gateway_pid),
            ("generator", self.generator_pid),
            ("nats", self.nats_pid),
        ] {
            if let Some(pid) = pid {
                w.push(Watched { name, pid });
            }
        }
        w.push(Watched {
            name: "sn-bench",
            pid: std::process::id(),
        });
        w
    }
}

/// `1M`, `10M`, `250k` or the plain number: how figure keys name a task size.
pub fn size_label(n: u64) -> String {
    let whole = |unit: u64| n >= unit && n / unit * unit == n;
    if whole(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if whole(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_named_briefly() {
        assert_eq!(size_label(1_000_000), "1M");
        assert_eq!(size_label(10_000_000), "10M");
        assert_eq!(size_label(250_000), "250k");
        assert_eq!(size_label(1_234), "1234");
    }
}
