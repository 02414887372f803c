//! The log's tests: storage and its write order, the entry format, the ledger snapshot, and a
//! full disk.

use std::num::NonZeroU64;
use std::path::Path;
use std::time::Duration;

use common::serial::{CheckDigit, Format, Order, SerialFormatter};
use uuid::Uuid;

use super::entry::{image_bytes, WITHOUT_SERIALS};
use super::snapshot::{ledger_kv, ledger_writes};
use super::*;
use common::ledger::Range;

/// Opens a log with the generator's way of writing serials.
fn open_log(dir: &Path) -> Result<EventLog, LogError> {
    EventLog::open(dir, std::sync::Arc::new(crate::task::Serials))
}

/// Opens a log again once the handle before it is gone. sled lets go of its file lock
/// only when its own threads drop their last reference, a moment after ours.
fn reopen(dir: &Path) -> EventLog {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open_log(dir) {
            Ok(log) => return log,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn entry(s: &str) -> Entry {
    Entry {
        subject: s.into(),
        id: format!("id-{s}"),
        payload: bytes::Bytes::from(format!("{{\"x\":\"{s}\"}}")),
        serials: None,
    }
}

/// The subjects of read entries, in order.
fn subjects(entries: Vec<(u64, Entry)>) -> Vec<String> {
    entries.into_iter().map(|(_, e)| e.subject).collect()
}

#[tokio::test]
async fn append_is_ordered_pending_until_published_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let task = Uuid::new_v4();
    let other = Uuid::new_v4();
    {
        let log = open_log(dir.path()).unwrap();
        let a = log.append(task, &[entry("a"), entry("b")], true).unwrap();
        log.append(other, &[entry("c")], true).unwrap();
        log.flush().await.unwrap();
        log.mark_published(&a[..1]).unwrap();
        log.flush().await.unwrap();
    }
    let log = reopen(dir.path());
    let all: Vec<_> = log.iter().map(|r| r.unwrap().1.subject).collect();
    assert_eq!(all, ["a", "b", "c"]);
    let pending = subjects(log.pending().unwrap());
    assert_eq!(pending, ["b", "c"]);
    let mine: Vec<_> = log
        .task_entries(task)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(mine, [entry("a"), entry("b")]);
}

/// Appends `written` to a new log, checks that each entry is stored in at most
/// `stored_at_most(entry)` bytes, and opens the log again.
async fn stored_and_reopened(
    written: &[Entry],
    stored_at_most: impl Fn(&Entry) -> usize,
) -> (tempfile::TempDir, EventLog) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_log(dir.path()).unwrap();
        let seqs = log.append(Uuid::new_v4(), written, true).unwrap();
        log.flush().await.unwrap();
        for (seq, entry) in seqs.iter().zip(written) {
            let stored = log.tree.get(key(EVENT, *seq)).unwrap().unwrap();
            assert!(
                stored.len() <= stored_at_most(entry),
                "{} of {} bytes stored",
                stored.len(),
                entry.payload.len()
            );
        }
    }
    let log = reopen(dir.path());
    (dir, log)
}

fn batch(format: Format, first: u64, count: u64) -> Entry {
    batch_with(&SerialFormatter::new("0111", format), first, count)
}

fn batch_with(formatter: &SerialFormatter, first: u64, count: u64) -> Entry {
    let task = Uuid::new_v4();
    let format = formatter.format();
    let b = common::events::GeneratedBatch {
        source: "/sn/generator",
        task_id: task,
        code_model: "0111",
        batch: 3,
        first_number: first,
        count,
        formatter,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    };
    let mut payload = Vec::new();
    let bytes = b.encode(time::OffsetDateTime::now_utc(), &mut payload);
    Entry {
        subject: common::subjects::generated("0111", task),
        id: b.id(),
        payload: payload.into(),
        serials: Some(SerialsAt {
            bytes,
            code_model: "0111".into(),
            format,
            first,
            count,
        }),
    }
}

#[tokio::test]
async fn a_batch_is_stored_as_its_range_and_read_back_byte_for_byte() {
    let formats = [CheckDigit::None, CheckDigit::Gs1, CheckDigit::Luhn].map(|check_digit| Format {
        width: 6,
        check_digit,
        ..Format::default()
    });
    // Across a change of length (999,999 -> 1,000,000 overflows width 6), and empty.
    let widest = Format {
        width: 20,
        check_digit: CheckDigit::None,
        ..Format::default()
    };
    let written: Vec<Entry> = formats
        .iter()
        .map(|&f| batch(f, 995_000, 10_000))
        // Empty, and the last numbers there are.
        .chain([
            batch(Format::default(), 1, 0),
            batch(widest, u64::MAX - 2, 3),
        ])
        .collect();
    // A few hundred bytes each, whatever the batch's size.
    let (_dir, log) = stored_and_reopened(&written, |_| 1023).await;
    let read: Vec<Entry> = log.iter().map(|r| r.unwrap().1).collect();
    assert_eq!(read, written);
    assert!(read[0].payload.len() > 100_000);
    let pending: Vec<Entry> = log.pending().unwrap().into_iter().map(|(_, e)| e).collect();
    assert_eq!(pending, written);
}

#[test]
fn a_log_written_by_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A new log records the version that wrote it, and opens again.
    drop(open_log(dir.path()).unwrap());
    let log = reopen(dir.path());
    assert_eq!(
        log.tree.get(VERSION).unwrap().as_deref(),
        Some(&LOG_VERSION.to_be_bytes()[..])
    );
    // As a later build would leave it.
    log.tree
        .insert(VERSION, &(LOG_VERSION + 1).to_be_bytes())
        .unwrap();
    log.tree.flush().unwrap();
    drop(log);
    // sled lets go of its file lock a moment after the handle is dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        let err = open_log(dir.path()).err().expect("a newer log is refused");
        if !err.to_string().contains("lock") || std::time::Instant::now() > deadline {
            break err;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(matches!(err, LogError::Newer { found, .. } if found == LOG_VERSION + 1));
    assert!(err.to_string().contains("newer generator"), "{err}");
}

#[tokio::test]
async fn a_random_order_batch_is_stored_as_numbers_and_read_back_byte_for_byte() {
    let keys = common::serial::Keyring::parse(Some("a master key of the log tests")).unwrap();
    let written: Vec<Entry> = [
        (6, CheckDigit::Gs1),
        (8, CheckDigit::None),
        (19, CheckDigit::Luhn),
    ]
    .into_iter()
    .map(|(width, check_digit)| {
        let format = Format {
            order: Order::Random,
            key_id: keys.current().ok(),
            one_in: NonZeroU64::new(10),
            ..Format::new(width, check_digit)
        };
        let formatter = SerialFormatter::keyed("0111", format, &keys).unwrap();
        batch_with(&formatter, 90_000, 10_000)
    })
    .chain([batch_with(
        &SerialFormatter::keyed(
            "0111",
            Format {
                order: Order::Random,
                key_id: keys.current().ok(),
                ..Format::new(8, CheckDigit::None)
            },
            &keys,
        )
        .unwrap(),
        1,
        0,
    )])
    .collect();
    // The digits as numbers, and the event around them.
    let (_dir, log) = stored_and_reopened(&written, |entry| {
        let s = entry.serials.as_ref().unwrap();
        s.count as usize * image_bytes(s.format.width) + 1024
    })
    .await;
    let read: Vec<Entry> = log.iter().map(|r| r.unwrap().1).collect();
    assert_eq!(read, written);
    assert!(read[0].payload.len() > 100_000);
    // An image wider than the width (six digits, three bytes) reads as corrupt.
    let entry = &written[0];
    let head = entry.serials.as_ref().unwrap().bytes.start;
    let images_at =
        2 + entry.subject.len() + 2 + entry.id.len() + 3 + 16 + 2 + 4 + 4 + 8 + 8 + head;
    let mut bad = entry.encode();
    bad[images_at..images_at + 3].copy_from_slice(&[0xff; 3]);
    assert!(matches!(
        Entry::decode(9, &bad, &crate::task::Serials),
        Err(LogError::Corrupt(9))
    ));
    bad[images_at..images_at + 3].copy_from_slice(&[0x0f, 0x42, 0x3f]);
    assert!(
        Entry::decode(9, &bad, &crate::task::Serials).is_ok(),
        "999,999 is six digits"
    );
}

#[tokio::test]
async fn an_older_log_is_stamped_with_this_version_at_its_first_random_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    log.tree.insert(VERSION, &1u32.to_be_bytes()).unwrap();
    drop(log);
    let version = |log: &EventLog| log.tree.get(VERSION).unwrap().unwrap().to_vec();
    // Opened, and given a sequential batch: still readable by the older build.
    let log = reopen(dir.path());
    log.append(Uuid::new_v4(), &[batch(Format::default(), 1, 10)], true)
        .unwrap();
    assert_eq!(version(&log), 1u32.to_be_bytes());
    // A random-order batch needs this version, and the log says so from then on.
    let keys = common::serial::Keyring::parse(Some("a master key of the log tests")).unwrap();
    let format = Format {
        order: Order::Random,
        key_id: keys.current().ok(),
        ..Format::default()
    };
    let formatter = SerialFormatter::keyed("0111", format, &keys).unwrap();
    log.append(Uuid::new_v4(), &[batch_with(&formatter, 1, 10)], true)
        .unwrap();
    assert_eq!(version(&log), LOG_VERSION.to_be_bytes());
}

#[test]
fn a_damaged_entry_reads_as_corrupt() {
    let entry = batch(Format::default(), 1, 10);
    let good = entry.encode();
    let marker = 4 + entry.subject.len() + entry.id.len();
    assert_eq!(good[marker], WITHOUT_SERIALS);
    // Cut inside a field, or a count no batch has.
    for cut in [1, marker + 5, marker + 25] {
        assert!(matches!(
            Entry::decode(9, &good[..cut], &crate::task::Serials),
            Err(LogError::Corrupt(9))
        ));
    }
    let count = marker + 3 + 8;
    let mut huge = good.clone();
    huge[count..count + 8].copy_from_slice(&(1u64 << 20).to_be_bytes());
    assert!(matches!(
        Entry::decode(9, &huge, &crate::task::Serials),
        Err(LogError::Corrupt(9))
    ));
    // A check digit under a model that is not all digits, and a model no request has.
    let mut lettered = batch(Format::default(), 1, 10);
    lettered.serials.as_mut().unwrap().code_model = "A-7".into();
    let mut bad = lettered.encode();
    bad[marker + 2] = 1;
    assert!(matches!(
        Entry::decode(9, &bad, &crate::task::Serials),
        Err(LogError::Corrupt(9))
    ));
    lettered.serials.as_mut().unwrap().code_model = "a b".into();
    assert!(matches!(
        Entry::decode(9, &lettered.encode(), &crate::task::Serials),
        Err(LogError::Corrupt(9))
    ));
}

#[tokio::test]
async fn ledger_snapshot_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    let r = StoredRange {
        range: Range {
            first: 1,
            last: 10,
            task: Uuid::new_v4(),
        },
        seq: 3,
        automatic: true,
    };
    let s = StoredRange {
        range: Range {
            first: 11,
            last: 20,
            task: Uuid::new_v4(),
        },
        seq: 7,
        automatic: false,
    };
    let scheme = StoredScheme {
        model: "0111".into(),
        scheme: Format {
            order: Order::Random,
            key_id: std::num::NonZeroU32::new(0xdead_beef),
            one_in: std::num::NonZeroU64::new(10_000),
            ..Format::new(9, CheckDigit::Luhn)
        },
        seq: 2,
    };
    log.save_ledger(
        &[("0111".into(), r), ("A_b".into(), s)],
        std::slice::from_ref(&scheme),
        Some(42),
    )
    .unwrap();
    log.save_stream(-5).unwrap();
    let saved = log.load_ledger().unwrap();
    assert_eq!(saved.position, 42);
    assert_eq!(saved.stream, Some(-5));
    assert_eq!(saved.schemes, [scheme]);
    assert_eq!(
        saved.ranges,
        [("0111".to_string(), r), ("A_b".to_string(), s)]
    );
}

#[tokio::test]
async fn a_quarantined_snapshot_is_set_aside_whole_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    let r = first_ten(Uuid::new_v4());
    let scheme = StoredScheme {
        model: "0111".into(),
        scheme: Format::default(),
        seq: 5,
    };
    log.save_ledger(
        &[("0111".into(), r)],
        std::slice::from_ref(&scheme),
        Some(9),
    )
    .unwrap();
    log.save_stream(1).unwrap();
    let saved = log.load_ledger().unwrap();
    log.quarantine_ledger(&saved, 2).unwrap();
    // The snapshot is empty, for the new stream; the old ranges wait apart.
    let now = log.load_ledger().unwrap();
    assert_eq!(
        (
            now.ranges.len(),
            now.schemes.len(),
            now.position,
            now.stream
        ),
        (0, 0, 0, Some(2))
    );
    assert_eq!(log.quarantined().unwrap(), [("0111".to_string(), r)]);
    // A new stream's range at the same first number does not hide the old one.
    let other = StoredRange {
        range: Range {
            task: Uuid::new_v4(),
            ..r.range
        },
        ..r
    };
    log.save_ledger(&[("0111".into(), other)], &[], Some(3))
        .unwrap();
    assert_eq!(log.quarantined().unwrap(), [("0111".to_string(), r)]);
    log.release_quarantine().unwrap();
    assert!(log.quarantined().unwrap().is_empty());
    assert_eq!(
        log.load_ledger().unwrap().ranges,
        [("0111".to_string(), other)]
    );
}

#[tokio::test]
async fn a_range_saved_before_the_automatic_flag_reads_as_automatic() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    let r = first_ten(Uuid::new_v4());
    let (k, v) = ledger_kv(
        "0111",
        &StoredRange {
            automatic: false,
            ..r
        },
    );
    log.tree.insert(k, &v[..32]).unwrap();
    // A scheme saved before orders and densities: width, check digit, sequence.
    let mut old = vec![9, 1];
    old.extend_from_slice(&7u64.to_be_bytes());
    log.tree.insert(b"s0111", old).unwrap();
    let saved = log.load_ledger().unwrap();
    assert_eq!(saved.ranges, [("0111".to_string(), r)]);
    assert_eq!(
        saved.schemes,
        [StoredScheme {
            model: "0111".into(),
            scheme: Format::new(9, CheckDigit::Gs1),
            seq: 7
        }]
    );
}

/// Numbers 1 to 10 reserved for `task` at stream sequence 5.
fn first_ten(task: Uuid) -> StoredRange {
    StoredRange {
        range: Range {
            first: 1,
            last: 10,
            task,
        },
        seq: 5,
        automatic: true,
    }
}

/// A log holding just these writes: what a crash right after them leaves behind, as sled
/// recovers a prefix of its writes.
fn log_of(writes: &[(sled::IVec, sled::IVec)]) -> (tempfile::TempDir, EventLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).unwrap();
    for (k, v) in writes {
        log.tree.insert(k, v.clone()).unwrap();
    }
    (dir, log)
}

#[tokio::test]
async fn every_prefix_of_an_append_is_a_log_a_restart_handles() {
    let task = Uuid::new_v4();
    let range = first_ten(task);
    let granted = Granted {
        entry: entry("reserved"),
        range: Some(("0111".into(), range)),
    };
    let entries = [entry("batch 0"), entry("batch 1"), entry("completed")];
    let (_dir, planner) = log_of(&[]);
    let (writes, _) = planner
        .append_writes(task, Some(&granted), &entries, true)
        .unwrap();
    let in_order = ["reserved", "batch 0", "batch 1", "completed"];
    for n in 0..=writes.len() {
        let (_dir, log) = log_of(&writes[..n]);
        // Nothing logged is left unpublished for ever: every entry but the reservation's
        // copy (published before it was logged) is pending, so a restart publishes it.
        let logged: Vec<_> = log
            .iter()
            .map(|r| r.unwrap().1.subject)
            .filter(|s| s != "reserved")
            .collect();
        assert_eq!(logged, subjects(log.pending().unwrap()), "after {n} writes");
        // Every logged entry is in the task's index (a redelivery finds it), and the
        // index is the start of the task's entries: never its last event without every
        // entry before it, which a redelivery would replay as the whole task.
        let indexed = subjects(log.task_entries(task).unwrap());
        let all: Vec<_> = log.iter().map(|r| r.unwrap().1.subject).collect();
        assert_eq!(indexed, all, "after {n} writes");
        assert_eq!(indexed, in_order[..indexed.len()], "after {n} writes");
        if !indexed.is_empty() {
            assert_eq!(
                log.load_ledger().unwrap().ranges,
                [("0111".to_string(), range)]
            );
        }
    }
    assert_eq!(
        subjects(log_of(&writes).1.task_entries(task).unwrap()),
        in_order
    );

    // The snapshot: a position moved forward only with every range saved with it.
    let before = ledger_writes(&[], &[], Some(3));
    let ranges = [
        ("0111".to_string(), range),
        (
            "A_b".to_string(),
            StoredRange {
                range: Range {
                    first: 1,
                    last: 2,
                    task: Uuid::new_v4(),
                },
                seq: 7,
                automatic: false,
            },
        ),
    ];
    let schemes = [StoredScheme {
        model: "A_b".into(),
        scheme: Format::default(),
        seq: 6,
    }];
    let save = ledger_writes(&ranges, &schemes, Some(7));
    for n in 0..=save.len() {
        let writes: Vec<_> = before.iter().chain(&save[..n]).cloned().collect();
        let saved = log_of(&writes).1.load_ledger().unwrap();
        assert!(
            saved.position == 3 || (saved.ranges == ranges && saved.schemes == schemes),
            "after {n} writes: {saved:?}"
        );
    }
    let saved = log_of(&save).1.load_ledger().unwrap();
    assert_eq!((saved.ranges, saved.position), (ranges.to_vec(), 7));
}

#[tokio::test]
async fn a_granted_reservation_is_logged_before_the_entries_it_comes_with() {
    let dir = tempfile::tempdir().unwrap();
    let task = Uuid::new_v4();
    let range = first_ten(task);
    {
        let log = open_log(dir.path()).unwrap();
        let granted = Granted {
            entry: entry("reserved"),
            range: Some(("0111".into(), range)),
        };
        let seqs = log
            .append_with(task, Some(&granted), &[entry("batch"), entry("done")], true)
            .unwrap();
        assert_eq!(
            seqs.len(),
            2,
            "the sequences of the entries, not the reservation"
        );
        // Without a range (granted by the follower's fold): only the copy is logged.
        let copy = Granted {
            entry: entry("other"),
            range: None,
        };
        log.append_with(Uuid::new_v4(), Some(&copy), &[], false)
            .unwrap();
        log.flush().await.unwrap();
    }
    let log = reopen(dir.path());
    let mine = subjects(log.task_entries(task).unwrap());
    assert_eq!(mine, ["reserved", "batch", "done"]);
    // Published already: never republished.
    let pending = subjects(log.pending().unwrap());
    assert_eq!(pending, ["batch", "done"]);
    let all: Vec<_> = log.iter().map(|r| r.unwrap().1.subject).collect();
    assert_eq!(all, ["reserved", "batch", "done", "other"]);
    assert_eq!(
        log.load_ledger().unwrap().ranges,
        [("0111".to_string(), range)]
    );
}

/// A folder on a tmpfs of `size` (`mount -o size=`), unmounted on drop; `None` where
/// mounting is not permitted (not root, no CAP_SYS_ADMIN).
struct Tmpfs(Option<tempfile::TempDir>);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs(Some(dir)))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("mounted").path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(dir.path())
                .status();
        }
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_log_for_good_and_says_why() {
    // Entries of the size the generator logs, and ones large enough for sled to write
    // as files of their own.
    for size in [1024, 64 * 1024] {
        let Some(disk) = Tmpfs::mount("2m") else {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        };
        fill_up(disk.path(), size).await;
    }
}

/// Appends entries of `size` bytes, one flush each (as with BATCHES_PER_FLUSH=1), until
/// the log fails; then checks how it failed.
async fn fill_up(dir: &Path, size: usize) {
    let mut log = open_log(dir).unwrap();
    // Values this large may leave sled silent rather than failing: given up on sooner.
    log.flush_deadline = Duration::from_secs(3);
    assert!(log.fault().is_none());
    let big = |i: usize| Entry {
        payload: bytes::Bytes::from(vec![b'x'; size]),
        ..entry(&format!("e{i}"))
    };
    // Up to ten times what the disk holds.
    let mut failed = None;
    for i in 0..(20 << 20) / size {
        let written = match log.append(Uuid::new_v4(), &[big(i)], true) {
            Ok(_) => log.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            failed = Some(e);
            break;
        }
    }
    // It says so, rather than leaving a flush waiting for ever (see `FLUSH_DEADLINE`).
    let e = failed.expect("a 2 MiB disk fills up");
    assert!(matches!(e, LogError::Io { .. }), "{e}");
    let why = log.fault().expect("the failure is kept").to_owned();
    eprintln!("entries of {size} bytes: {why}");
    assert!(why.contains("event log"), "{why}");
    assert!(
        futures::FutureExt::now_or_never(log.failed()).is_some(),
        "waiters are told"
    );
    // The first reason stays, whatever fails next.
    let _ = log.append(Uuid::new_v4(), &[big(0)], true);
    let _ = log.flush().await;
    assert_eq!(log.fault(), Some(why.as_str()));
}
