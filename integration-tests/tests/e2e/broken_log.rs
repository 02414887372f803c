//! A generator whose event log fails takes itself out: its log folder is a small tmpfs that
//! fills up during big tasks. It must report not ready, stop taking requests, hand back the
//! ones it holds without recording a failure, and leave them to the other replica, which
//! finishes every task with exactly its range.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;

use crate::harness::*;

const MODEL: &str = "0111";
/// Serials per task: hundreds of batches of `BATCH_SIZE`, far more log than the disk holds.
const COUNT: u64 = 200_000;
/// Room left on the broken generator's disk once it is ready: a few dozen batches' entries.
const ROOM: u64 = 64 * 1024;

/// A folder on a tmpfs of its own, unmounted on drop (a failing test included).
struct Tmpfs(Option<TempDir>);

impl Tmpfs {
    /// `None` where mounting is not permitted (not root, no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempdir();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs(Some(dir)))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("mounted").path()
    }

    /// Fills the disk with a file of its own until `room` bytes are left.
    fn fill_but(&self, room: u64) {
        let stat = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.path())
            .output()
            .unwrap();
        let out = String::from_utf8(stat.stdout).unwrap();
        let mut fields = out.split_whitespace().map(|f| f.parse::<u64>().unwrap());
        let (free_blocks, block) = (fields.next().unwrap(), fields.next().unwrap());
        let ballast = (free_blocks * block).saturating_sub(room);
        std::fs::write(self.path().join("ballast"), vec![0u8; ballast as usize]).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Lazily: a generator still holding files in it is killed right after.
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
        }
    }
}

/// Readiness as (status, body).
async fn readiness(g: &Service) -> Option<(u16, String)> {
    let r = g.http.get(g.url("/readyz")).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

fn serial(n: u64) -> String {
    format!("{MODEL}{n:08}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_whose_disk_fills_up_hands_its_requests_to_the_other_replica() {
    let Some(disk) = Tmpfs::mount("16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    // Arrange: one generator alone on a small disk, one log flush per batch. Two deliveries
    // per request: one may go to the broken replica, the other must finish the task.
    let nats = spawn_nats();
    let gw = spawn_gateway(&nats.url(), &[]);
    let settings = [
        ("BATCH_SIZE", "1000"),
        ("BATCHES_PER_FLUSH", "1"),
        ("MAX_DELIVER", "2"),
        ("PULL_EXPIRES_SECS", "2"),
    ];
    let broken = spawn_generator(&nats.url(), &disk.path().join("generator"), &settings);
    broken.wait_ready().await;
    gw.wait_ready().await;
    disk.fill_but(ROOM);

    // Act: big tasks for it alone; the disk fills up during the first.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let first = 1 + i * COUNT;
        let id = submit(
            &gw,
            json!({"code_model": MODEL, "number": first, "count": COUNT}),
        )
        .await;
        tasks.push((id, first));
    }
    let why = wait_for(
        "the generator on the full disk to report not ready",
        Duration::from_secs(60),
        || async {
            let (status, body) = readiness(&broken).await?;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert!(
        why.contains("event log failed"),
        "readiness names the log: {why}"
    );
    // Once it has let go of its last pull.
    wait_for_log(&broken, "takes no more requests", Duration::from_secs(30)).await;
    let healthy_dir = tempdir();
    let healthy = spawn_generator(&nats.url(), healthy_dir.path(), &settings);
    healthy.wait_ready().await;
    // Requests sent while both run: the broken replica takes none of them.
    let mut later = Vec::new();
    for i in 3..5 {
        let first = 1 + i * COUNT;
        let id = submit(
            &gw,
            json!({"code_model": MODEL, "number": first, "count": COUNT}),
        )
        .await;
        later.push(id.clone());
        tasks.push((id, first));
    }

    // Assert: every task ends SUCCESS through the other replica, with exactly its range.
    let mut seen = HashSet::new();
    for (id, first) in &tasks {
        let view = finished(&gw, id, Duration::from_secs(240)).await;
        assert_eq!(view["state"], "SUCCESS", "{view}");
        assert_eq!(view["count"], COUNT, "{view}");
        assert_eq!(view["first_serial"], serial(*first), "{view}");
        assert_eq!(view["last_serial"], serial(first + COUNT - 1), "{view}");
        let got = serials(&gw, id).await;
        let want: Vec<String> = (*first..first + COUNT).map(serial).collect();
        assert!(got == want, "task {id} issued other serials than its range");
        for s in got {
            assert!(seen.insert(s.clone()), "serial {s} issued twice");
        }
    }
    // Nothing in the stream says a task failed, and each task holds one range, its own.
    let js = nats.js().await;
    let mut reserved: Vec<(String, u64, u64)> = Vec::new();
    for (subject, event, _) in stream_messages(&js).await {
        assert!(
            !subject.contains(".failed."),
            "a failure was published: {subject} {event}"
        );
        if subject.ends_with(".reserved") {
            let d = &event["data"];
            reserved.push((
                d["task_id"].as_str().unwrap().to_owned(),
                d["first"].as_u64().unwrap(),
                d["last"].as_u64().unwrap(),
            ));
        }
    }
    for (id, first) in &tasks {
        let mine: Vec<_> = reserved.iter().filter(|(t, ..)| t == id).collect();
        assert_eq!(mine.len(), 1, "task {id} reserved once: {mine:?}");
        assert_eq!((mine[0].1, mine[0].2), (*first, first + COUNT - 1));
    }
    // The broken replica stays out, said why, and never touched the later requests.
    let (status, _) = readiness(&broken)
        .await
        .expect("the broken replica still answers");
    assert_eq!(status, 503);
    let metrics = scrape(&broken).await;
    assert_eq!(metrics.get("sn_log_failed"), Some(&1.0));
    let log = std::fs::read_to_string(&broken.proc.log).unwrap();
    assert!(log.contains("the event log failed"), "{log}");
    for id in &later {
        assert!(
            !log.contains(id.as_str()),
            "the broken replica took request {id}"
        );
    }
}
