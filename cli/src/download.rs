//! `generate -o FILE`: streams a task's serials into FILE chunk by chunk as they are
//! generated, never holding them all in memory. The file name picks the form: CSV for `.csv`, NDJSON for
//! `.ndjson`, one serial per line otherwise. Data goes to `FILE.part` and is renamed only once
//! every serial is there, so FILE never holds a partial download.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::Response;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::api::Api;
use crate::error::Error;
use crate::retry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Text,
    Csv,
    Ndjson,
}

impl FileFormat {
    pub fn for_path(path: &Path) -> FileFormat {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => FileFormat::Csv,
            Some("ndjson") => FileFormat::Ndjson,
            _ => FileFormat::Text,
        }
    }

    /// The `Accept` header that asks the gateway for this form.
    pub fn accept(self) -> &'static str {
        match self {
            FileFormat::Text => "text/plain",
            FileFormat::Csv => "text/csv",
            FileFormat::Ndjson => "application/x-ndjson",
        }
    }

    /// Lines before the first serial (the CSV header).
    fn header_lines(self) -> u64 {
        match self {
            FileFormat::Csv => 1,
            FileFormat::Text | FileFormat::Ndjson => 0,
        }
    }
}

/// Checks, before the server is asked for anything, that FILE names a file in an existing
/// directory.
pub fn check_target(path: &Path) -> Result<(), Error> {
    let bad = |why: &str| Error::BadInput(format!("-o {}: {why}", path.display()));
    if path.file_name().is_none() || path.is_dir() {
        return Err(bad("is not a file name"));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(bad("its directory does not exist"));
    }
    Ok(())
}

/// Removes what a download given up left of `path` (its `.part` file).
pub async fn discard(path: &Path) {
    let _ = tokio::fs::remove_file(part_path(path)).await;
}

fn part_path(path: &Path) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    path.with_file_name(name)
}

/// Downloads the `expected` serials of task `id` into `path`; returns how many were written.
/// `follow`: start while the task still runs (see [`Api::serials`]).
pub async fn to_file(
    api: &Api,
    id: Uuid,
    path: &Path,
    expected: u64,
    bar: &ProgressBar,
    follow: bool,
) -> Result<u64, Error> {
    let format = FileFormat::for_path(path);
    let response =
        retry::transient(async || api.serials(id, format.accept(), follow).await).await?;
    let part = part_path(path);
    let written = match write(api, response, &part, format, bar).await {
        Ok(n) if n == expected => n,
        Ok(n) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(anyhow::anyhow!(
                "the download of task {id} ended after {n} of {expected} serials"
            )
            .into());
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&part, path)
        .await
        .with_context(|| format!("cannot rename {} to {}", part.display(), path.display()))?;
    Ok(written)
}

/// Streams the body into `part`, counting lines for the bar; returns the serials written.
async fn write(
    api: &Api,
    response: Response,
    part: &Path,
    format: FileFormat,
    bar: &ProgressBar,
) -> Result<u64, Error> {
    let cannot_write = || format!("cannot write {}", part.display());
    let file = tokio::fs::File::create(part)
        .await
        .with_context(cannot_write)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 16, file);
    let mut body = response.bytes_stream();
    let mut lines = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| api.unreachable(&e))?;
        out.write_all(&chunk).await.with_context(cannot_write)?;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        bar.set_position(lines.saturating_sub(format.header_lines()));
    }
    out.flush().await.with_context(cannot_write)?;
    out.into_inner()
        .sync_all()
        .await
        .with_context(cannot_write)?;
    Ok(lines.saturating_sub(format.header_lines()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_picks_the_form() {
        assert_eq!(FileFormat::for_path(Path::new("a/s.csv")), FileFormat::Csv);
        assert_eq!(FileFormat::for_path(Path::new("S.CSV")), FileFormat::Csv);
        assert_eq!(
            FileFormat::for_path(Path::new("s.ndjson")),
            FileFormat::Ndjson
        );
        assert_eq!(FileFormat::for_path(Path::new("s.txt")), FileFormat::Text);
        assert_eq!(FileFormat::for_path(Path::new("serials")), FileFormat::Text);
    }

    #[test]
    fn the_part_file_sits_beside_the_target() {
        assert_eq!(
            part_path(Path::new("out/s.csv")),
            PathBuf::from("out/s.csv.part")
        );
    }

    #[test]
    fn targets_are_checked_before_asking() {
        let dir = std::env::temp_dir();
        assert!(check_target(&dir.join("s.csv")).is_ok());
        assert!(check_target(Path::new("s.csv")).is_ok());
        assert!(check_target(&dir).is_err());
        assert!(check_target(&dir.join("no-such-dir-for-snctl/s.csv")).is_err());
    }
}
