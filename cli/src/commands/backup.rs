//! `snctl backup FILE` and `snctl restore FILE`: the `SN` stream to and from a file.
//!
//! The file is NDJSON: a first line describing the stream (`{"format", "stream", "config",
//! "last_sequence", "messages"}`, `config` being the stream's JetStream configuration), then
//! one line per message in stream order: `{"seq", "subject", "headers": [[name, value], ...],
//! "payload": <base64>}`. Every view the gateway serves and every ledger the generator folds
//! is folded from these messages, so a stream restored from the file serves the same views.
//!
//! A backup reads the stream through an ordered consumer up to the last sequence it had when
//! the backup started. A restore refuses to write into a stream that has messages, creates
//! the stream with the saved configuration, and publishes every message in order, each one
//! expected at the next sequence (a service still publishing would make it fail, not
//! interleave).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, message::PublishMessage};
use async_nats::HeaderMap;
use base64::Engine as _;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::args::{BackupArgs, Global, NatsAuthArgs, RestoreArgs, DEFAULT_NATS_URL};
use crate::error::Error;
use crate::output::Output;
use common::subjects::STREAM;

/// Written in the first line; a restore refuses any other.
const FORMAT: &str = "sn-stream-backup/1";
/// How long a backup waits for the next message before it gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers that check the stream's state at publish time: meaningless in a restored stream.
const EXPECTATION_PREFIX: &str = "Nats-Expected-";

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    stream: String,
    config: jetstream::stream::Config,
    last_sequence: u64,
    messages: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    subject: String,
    headers: Vec<(String, String)>,
    payload: String,
}

async fn connect(global: &Global, auth: &NatsAuthArgs) -> Result<jetstream::Context, Error> {
    let url = global.nats_url.as_deref().unwrap_or(DEFAULT_NATS_URL);
    let credentials = auth
        .credentials()
        .map_err(|e| Error::BadInput(e.to_string()))?;
    let servers = url
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadInput(format!("--nats-url {url:?}: {e}")))?;
    let options = credentials
        .apply(async_nats::ConnectOptions::new().name("snctl backup"))
        .await
        .map_err(|e| Error::BadInput(e.to_string()))?;
    let client = options
        .connect(servers)
        .await
        .map_err(|e| Error::NatsUnreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(jetstream::new(client))
}

fn headers_of(map: Option<&HeaderMap>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = map
        .into_iter()
        .flat_map(|m| m.iter())
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect();
    // Stable output: header maps have no order of their own.
    headers.sort();
    headers
}

pub async fn backup(global: &Global, out: Output, args: BackupArgs) -> Result<(), Error> {
    let js = connect(global, &args.nats).await?;
    let mut stream = js
        .get_stream(STREAM)
        .await
        .with_context(|| format!("cannot read stream {STREAM}"))?;
    let info = stream
        .info()
        .await
        .with_context(|| format!("cannot read stream {STREAM}"))?
        .clone();
    let last = info.state.last_sequence;
    let partial = args.file.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut file = std::io::BufWriter::new(file);
    let header = Header {
        format: FORMAT.to_owned(),
        stream: STREAM.to_owned(),
        config: info.config.clone(),
        last_sequence: last,
        messages: info.state.messages,
    };
    write_line(&mut file, &header, &partial)?;
    let mut count = 0u64;
    if info.state.messages > 0 {
        let consumer = stream
            .create_consumer(OrderedConfig::default())
            .await
            .context("cannot read the stream")?;
        let mut messages = consumer
            .messages()
            .await
            .context("cannot read the stream")?;
        loop {
            let message = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| anyhow!("no message from the stream for {READ_TIMEOUT:?}"))?
                .ok_or_else(|| anyhow!("the stream's messages ended before sequence {last}"))?
                .map_err(|e| anyhow!("cannot read the stream: {e}"))?;
            let seq = message
                .info()
                .map_err(|e| anyhow!("cannot read a message's sequence: {e}"))?
                .stream_sequence;
            if seq > last {
                break;
            }
            let line = Line {
                seq,
                subject: message.subject.to_string(),
                headers: headers_of(message.headers.as_ref()),
                payload: base64::engine::general_purpose::STANDARD.encode(&message.payload),
            };
            write_line(&mut file, &line, &partial)?;
            count += 1;
            if seq == last {
                break;
            }
        }
    }
    file.flush()
        .and_then(|()| file.get_ref().sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &args.file)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    let summary = serde_json::json!({
        "file": args.file.display().to_string(),
        "stream": STREAM,
        "messages": count,
        "last_sequence": last,
    });
    let text = format!(
        "{count} messages of {STREAM} (up to sequence {last}) written to {}",
        args.file.display()
    );
    out.text(&if out.json { summary.to_string() } else { text })
}

fn read_lines(path: &Path) -> Result<(Header, Vec<Line>), Error> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let bad = |n: usize, e: &dyn std::fmt::Display| {
        Error::BadInput(format!("{} line {n}: {e}", path.display()))
    };
    let first = lines
        .next()
        .ok_or_else(|| Error::BadInput(format!("{} is empty", path.display())))?
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header: Header = serde_json::from_str(&first).map_err(|e| bad(1, &e))?;
    if header.format != FORMAT || header.stream != STREAM {
        return Err(Error::BadInput(format!(
            "{} is not a backup of stream {STREAM} in format {FORMAT}",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        out.push(serde_json::from_str::<Line>(&line).map_err(|e| bad(i + 2, &e))?);
    }
    if out.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err(Error::BadInput(format!(
            "{}: messages out of order",
            path.display()
        )));
    }
    Ok((header, out))
}

pub async fn restore(global: &Global, out: Output, args: RestoreArgs) -> Result<(), Error> {
    let (header, lines) = read_lines(&args.file)?;
    let js = connect(global, &args.nats).await?;
    let mut config = header.config;
    if let Some(replicas) = args.replicas {
        config.num_replicas = replicas;
    }
    match js.get_stream(STREAM).await {
        Ok(mut existing) => {
            let state = existing
                .info()
                .await
                .with_context(|| format!("cannot read stream {STREAM}"))?
                .state
                .clone();
            if state.messages > 0 || state.last_sequence > 0 {
                return Err(Error::BadInput(format!(
                    "stream {STREAM} exists and is not new (last sequence {}): delete it \
                     first (nats stream rm {STREAM}), with the services stopped",
                    state.last_sequence
                )));
            }
        }
        Err(_) => {
            js.create_stream(config)
                .await
                .with_context(|| format!("cannot create stream {STREAM}"))?;
        }
    }
    let mut duplicates = 0u64;
    for (n, line) in lines.iter().enumerate() {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(&line.payload)
            .map_err(|e| Error::BadInput(format!("message {}: payload: {e}", line.seq)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &line.headers {
            if !name.starts_with(EXPECTATION_PREFIX) {
                headers.append(name.as_str(), value.as_str());
            }
        }
        let publish = PublishMessage::build()
            .payload(payload.into())
            .headers(headers)
            // A duplicate is not stored, so it does not move the sequence on.
            .expected_last_sequence(n as u64 - duplicates);
        let ack = js
            .send_publish(line.subject.clone(), publish)
            .await
            .map_err(|e| anyhow!("cannot publish message {}: {e}", line.seq))?
            .await
            .map_err(|e| anyhow!("message {} was not stored: {e}", line.seq))?;
        if ack.duplicate {
            duplicates += 1;
        }
    }
    let restored = lines.len() as u64 - duplicates;
    let summary = serde_json::json!({
        "file": args.file.display().to_string(),
        "stream": STREAM,
        "messages": restored,
        "duplicates": duplicates,
    });
    let text = format!(
        "{restored} messages restored into {STREAM} from {}{}",
        args.file.display(),
        if duplicates > 0 {
            format!(" ({duplicates} dropped as duplicates within the stream's window)")
        } else {
            String::new()
        }
    );
    out.text(&if out.json { summary.to_string() } else { text })
}

/// One JSON value and a newline.
fn write_line(out: &mut impl Write, value: &impl Serialize, path: &Path) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}
