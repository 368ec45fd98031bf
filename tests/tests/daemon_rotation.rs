//! End to end: the audit log rotates under load without losing, repeating or reordering a
//! record. A registered agent opens thousands of distinct files (file-allow logging: one event
//! each), one after the other, while the daemon's log rotates at the smallest size the daemon
//! accepts, with a retention count that keeps every file: across all files `seq` runs from 1
//! without a gap or a repeat, every open has exactly one event and they come in the order of the
//! opens (a missing one only if a `lost` record counts it), no file is over the rotation size.
//! Then the daemon restarts (adopting its pinned state) with a smaller retention count and the
//! agent goes on: exactly that many rotated files remain, older ones deleted - those of the
//! larger count included - and they hold the newest records without a gap. Runs on every
//! kernel with the fallback backend: the log does not depend on the backend, and the fallback
//! loads and is adopted several times faster than BPF LSM under emulation.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use enforcer::{
    audit::reader::{log_files, rotated_files},
    daemon::config::MIN_ROTATE_BYTES,
};
use enforcer_tests::{daemon::*, Agent};
use serde_json::Value;

const AGENT: &str = "rotation-agent";
/// Opens of the first run: about 20 files of the smallest rotation size.
const OPENS: usize = 3000;
/// Keeps every file of the first run.
const RETAIN_ALL: u32 = 1000;
const RETAIN_FEW: u32 = 3;

fn policy(root: &Path) -> String {
    format!(
        r#"[agent]
name = "{AGENT}"
log.file_allow = true

[file]
read = [{{ path = "{root}/gen/**", id = "generated" }}, {libc}]

[exec]
allow = [{{ path = "{exe}", id = "agent-binary" }}]
"#,
        root = root.display(),
        libc = toml_list(LIBC_READS),
        exe = testkit_exe()
    )
}

fn generated(root: &Path, i: usize) -> String {
    format!("{}/gen/f{i}", root.display())
}

/// The agent opens `range`'s files, each once, in order: one open per request and a pause, so
/// the stream goes on over many of the daemon's drains (every 50 ms) and rotations.
fn run_agent(setup: &DaemonSetup, root: &Path, range: std::ops::Range<usize>) {
    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    for i in range {
        let r = agent.op(&format!("open:{}", generated(root, i)));
        assert_eq!(r.errno, 0, "an allowed open failed: {r:?}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    agent.finish();
}

/// The log's files in write order, each checked whole: complete lines only (the daemon has
/// stopped), each one a JSON record, the file no larger than the rotation size.
fn read_files(log: &Path) -> Vec<(PathBuf, Vec<Value>)> {
    let mut files = Vec::new();
    for path in log_files(log) {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let longest = text.lines().map(|l| l.len()).max().unwrap_or(0);
        assert!(
            text.len() as u64 <= MIN_ROTATE_BYTES,
            "{} is {} bytes, over the rotation size; longest line {longest}: {}",
            path.display(),
            text.len(),
            text.lines()
                .max_by_key(|l| l.len())
                .unwrap_or_default()
                .chars()
                .take(600)
                .collect::<String>()
        );
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in the middle of a line",
            path.display()
        );
        let records = text
            .lines()
            .enumerate()
            .map(|(n, l)| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("{}:{}: not a record ({e}): {l}", path.display(), n + 1)
                })
            })
            .collect();
        files.push((path, records));
    }
    files
}

/// What the log holds of the opens `range`: the index of each open's event in log order, and
/// the kernel losses counted for the agent.
struct Found {
    indices: Vec<usize>,
    lost: u64,
}

fn found(records: &[Value], root: &Path, range: &std::ops::Range<usize>) -> Found {
    let by_path: HashMap<String, usize> = range.clone().map(|i| (generated(root, i), i)).collect();
    let mut indices = Vec::new();
    let mut lost = 0;
    for r in records {
        if r["type"] == "lost" && r["source"] == "kernel" && r["agent"] == AGENT {
            lost += r["count"].as_u64().expect("lost record without count");
        }
        let Some(&i) = r["path"].as_str().and_then(|p| by_path.get(p)) else {
            continue;
        };
        assert_eq!(
            (
                r["type"].as_str(),
                r["verdict"].as_str(),
                r["agent"].as_str()
            ),
            (Some("event"), Some("allow"), Some(AGENT)),
            "{r}"
        );
        indices.push(i);
    }
    Found { indices, lost }
}

/// `seq` runs on by exactly one from record to record.
fn assert_gapless(records: &[Value], what: &str) {
    for w in records.windows(2) {
        let (a, b) = (w[0]["seq"].as_u64(), w[1]["seq"].as_u64());
        assert!(
            a.is_some() && b.map(|b| b - 1) == a,
            "{what}: seq {a:?} followed by {b:?}: a gap or a repeat\n{}\n{}",
            w[0],
            w[1]
        );
    }
}

/// Each open's event once, in the order of the opens, from `first` to the end of `range`;
/// opens without an event are exactly the `lost` count.
fn assert_once_in_order(f: &Found, first: usize, range: &std::ops::Range<usize>, what: &str) {
    for w in f.indices.windows(2) {
        assert!(
            w[0] < w[1],
            "{what}: the event of open #{} comes after that of #{} (a repeat or out of order)",
            w[1],
            w[0]
        );
    }
    let expected = (range.end - first) as u64;
    let missing = expected - f.indices.len() as u64;
    assert_eq!(
        missing, f.lost,
        "{what}: {missing} of {expected} opens have no event, `lost` records count {}",
        f.lost
    );
}

#[test]
fn rotation_under_load_loses_and_repeats_nothing() {
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("rotation");
    let root = setup.dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("gen")).unwrap();
    std::fs::write(setup.policy_dir.join("agent.toml"), policy(&root)).unwrap();
    let rotation = |retain: u32| {
        vec![
            "--audit-rotate-bytes".to_string(),
            MIN_ROTATE_BYTES.to_string(),
            "--audit-retain".into(),
            retain.to_string(),
        ]
    };

    // 1. Every file kept: the whole stream is there.
    setup.extra = rotation(RETAIN_ALL);
    let first = 0..OPENS;
    for i in first.clone() {
        std::fs::write(generated(&root, i), "x").unwrap();
    }
    setup.backend = "fallback";
    let mut daemon = setup.start();
    let t0 = std::time::Instant::now();
    run_agent(&setup, &root, first.clone());
    let opened = t0.elapsed();
    // A clean stop drains the ring buffer before its `stop` record: every event is written.
    daemon.stop();
    let files = read_files(&setup.audit_log);
    let numbers: Vec<u32> = rotated_files(&setup.audit_log)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let rotations = numbers.len() as u32;
    assert!(
        rotations >= 10,
        "{OPENS} opens rotated the log only {rotations} times"
    );
    assert_eq!(
        numbers,
        (1..=rotations).rev().collect::<Vec<_>>(),
        "rotated files missing with retention {RETAIN_ALL}"
    );
    let records: Vec<Value> = files.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
    assert_eq!(records[0]["seq"], 1, "the first record of a new log");
    assert_gapless(&records, "every file kept");
    let f = found(&records, &root, &first);
    assert_once_in_order(&f, 0, &first, "every file kept");
    println!(
        "{OPENS} opens in {:.1}s, {} events and {} lost over {} files ({rotations} rotations), {} records with gapless seq",
        opened.as_secs_f64(),
        f.indices.len(),
        f.lost,
        files.len(),
        records.len()
    );
    let last_of_first_run = records.last().unwrap()["seq"].as_u64().unwrap();

    // 2. Restarted with a smaller retention count: after the next rotations only that many
    //    rotated files remain, the newest, without a gap; the agent's newest events are all
    //    there, each once, in order.
    setup.extra = rotation(RETAIN_FEW);
    let per_file = OPENS / rotations as usize;
    let second = OPENS..OPENS + per_file * (RETAIN_FEW as usize + 3);
    for i in second.clone() {
        std::fs::write(generated(&root, i), "x").unwrap();
    }
    let mut daemon = setup.start();
    run_agent(&setup, &root, second.clone());
    daemon.stop();
    let files = read_files(&setup.audit_log);
    let kept: Vec<u32> = rotated_files(&setup.audit_log)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        kept,
        (1..=RETAIN_FEW).rev().collect::<Vec<_>>(),
        "rotated files after lowering the retention count to {RETAIN_FEW}"
    );
    let records: Vec<Value> = files.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
    assert_gapless(&records, "retention lowered");
    let oldest_kept = records[0]["seq"].as_u64().unwrap();
    assert!(oldest_kept > last_of_first_run, "records of the first run (up to seq {last_of_first_run}) survived: the oldest kept is {oldest_kept}");
    let f = found(&records, &root, &second);
    let oldest_open = *f.indices.first().expect("no event of the second run kept");
    assert!(
        oldest_open > second.start,
        "the oldest rotated files were not removed: the first open's event is still there"
    );
    assert_once_in_order(&f, oldest_open, &second, "retention lowered");
    println!(
        "{} more opens: {RETAIN_FEW} rotated files kept (seq {oldest_kept}..), holding the events of opens #{oldest_open}..#{}",
        second.len(),
        second.end - 1
    );
}
