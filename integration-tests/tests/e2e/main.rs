//! Black-box tests: a real nats-server and the real `gateway` and `generator` binaries.
//! Build the binaries first (`scripts/test.sh` does).

mod backup;
mod broken_log;
mod cli;
mod cluster;
mod deploy;
mod harness;
mod nats_auth;
mod netns;
mod partition;
mod pipeline;
mod random;
mod settings;
mod strings;
mod telemetry;
mod uniqueness;
