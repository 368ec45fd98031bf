//! The hash chain under tampering: an untouched log (rotated, reopened) verifies; one edited
//! byte, a deleted line, a truncated tail, two swapped lines, in one file or across a rotation
//! or a restart, are each reported at the first record that no longer links.

use std::{path::Path, time::Duration};

use super::*;
use crate::audit::{
    reader::log_files,
    writer::{tests::tempdir, AuditWriter, Rotation},
    DaemonRecord, Record,
};

fn record(i: u64) -> Record {
    Record::Daemon(DaemonRecord {
        event: format!("test-{i}"),
        time: "2026-11-23T14:37:00.000000000Z".into(),
        host: "h".into(),
        message: Some(format!("record number {i} with some text to fill the line")),
        ..Default::default()
    })
}

const ROTATION: Rotation = Rotation {
    max_bytes: 1000,
    retain: 100,
    fsync_interval: Duration::ZERO,
};

/// A log of `n` records over several files, written by two writers (a restart after `n / 2`).
fn log_of(n: u64) -> (PathBuf, PathBuf) {
    let dir = tempdir();
    let path = dir.join("audit.jsonl");
    let mut w = AuditWriter::open(&path, ROTATION).unwrap();
    for i in 0..n / 2 {
        w.append(&mut [record(i)]).1.unwrap();
    }
    drop(w);
    let mut w = AuditWriter::open(&path, ROTATION).unwrap();
    for i in n / 2..n {
        w.append(&mut [record(i)]).1.unwrap();
    }
    (dir, path)
}

fn intact(path: &Path) -> Intact {
    verify_log(path).unwrap().unwrap_or_else(|b| panic!("{b}"))
}

fn broken(path: &Path) -> Broken {
    match verify_log(path).unwrap() {
        Ok(i) => panic!("tampering not detected: {i}"),
        Err(b) => b,
    }
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    std::fs::write(
        file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn an_untouched_log_verifies_across_rotations_and_a_restart() {
    let (_dir, path) = log_of(40);
    let files = log_files(&path);
    assert!(files.len() >= 4, "{files:?}");
    let i = intact(&path);
    assert_eq!((i.records, i.first_seq, i.last_seq), (40, 1, 40));
    assert!(i.from_genesis && i.files == files.len());
    let first = lines(&files[0]);
    assert!(
        first[0].ends_with(&format!(",\"prev\":\"{}\"}}", "0".repeat(64))),
        "{}",
        first[0]
    );
    // Every record still reads as before (readers ignore the new field).
    let mut n = 0;
    crate::audit::reader::read_log(&path, &mut |_| n += 1, &mut |e| panic!("{e}")).unwrap();
    assert_eq!(n, 40);
    assert!(i.to_string().starts_with("intact: 40 records in "), "{i}");
}

#[test]
fn one_edited_byte_is_detected_at_the_next_record() {
    let (_dir, path) = log_of(40);
    let file = log_files(&path)[1].clone();
    let mut l = lines(&file);
    l[1] = l[1].replacen("record number", "record mumber", 1);
    write_lines(&file, &l);
    let b = broken(&path);
    assert_eq!((b.at.file.as_path(), b.at.line), (file.as_path(), 3), "{b}");
    assert!(b.reason.contains("`prev` does not match"), "{b}");
}

#[test]
fn a_deleted_line_and_swapped_lines_are_detected() {
    let (_dir, path) = log_of(40);
    let file = log_files(&path)[2].clone();
    let original = lines(&file);
    let mut l = original.clone();
    l.remove(1);
    write_lines(&file, &l);
    let b = broken(&path);
    assert_eq!((b.at.file.as_path(), b.at.line), (file.as_path(), 2), "{b}");

    let mut l = original.clone();
    l.swap(0, 1);
    write_lines(&file, &l);
    let b = broken(&path);
    assert_eq!((b.at.file.as_path(), b.at.line), (file.as_path(), 1), "{b}");
    write_lines(&file, &original);
    intact(&path);
}

#[test]
fn a_truncated_tail_is_detected_in_the_current_and_in_a_rotated_file() {
    let (_dir, path) = log_of(40);
    let files = log_files(&path);
    // Current file cut inside its last line.
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    let b = broken(&path);
    assert!(b.reason.contains("ends inside a line"), "{b}");
    std::fs::write(&path, &text).unwrap();
    intact(&path);
    // A rotated file without its last line: the next file's first record does not link.
    let rotated = &files[1];
    let mut l = lines(rotated);
    l.pop();
    write_lines(rotated, &l);
    let b = broken(&path);
    assert_eq!(
        (b.at.file.as_path(), b.at.line),
        (files[2].as_path(), 1),
        "{b}"
    );
    // A deleted rotated file in the middle: the same.
    let (_dir2, path) = log_of(40);
    let files = log_files(&path);
    std::fs::remove_file(&files[1]).unwrap();
    let b = broken(&path);
    assert_eq!(b.at.file, files[2], "{b}");
}

#[test]
fn retention_is_not_tampering_but_a_rewritten_first_record_is() {
    let (_dir, path) = log_of(40);
    let files = log_files(&path);
    std::fs::remove_file(&files[0]).unwrap();
    let i = intact(&path);
    assert!(!i.from_genesis && i.first_seq > 1, "{i}");
    assert!(i.to_string().contains("older records rotated away"), "{i}");
    // The log's first record claiming another predecessor.
    let (_dir, path) = log_of(4);
    let mut l = lines(&path);
    l[0] = l[0].replace(&"0".repeat(64), &"1".repeat(64));
    write_lines(&path, &l);
    assert!(broken(&path).reason.contains("all zeros"));
}

#[test]
fn a_torn_line_is_accepted_only_when_the_next_start_reports_it() {
    let dir = tempdir();
    let path = dir.join("audit.jsonl");
    let mut w = AuditWriter::open(&path, ROTATION).unwrap();
    w.append(&mut [record(0), record(1)]).1.unwrap();
    drop(w);
    // A crash in the middle of a write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let cut = b"{\"type\":\"event\",\"seq\":3,\"ti";
    std::io::Write::write_all(&mut f, cut).unwrap();
    drop(f);
    let mut w = AuditWriter::open(&path, ROTATION).unwrap();
    let tail = w.opened_tail().clone();
    assert_eq!(tail.torn_bytes, cut.len() as u64);
    let start = |torn: u64| {
        Record::Daemon(DaemonRecord {
            event: "start".into(),
            time: "t".into(),
            detail: Some(serde_json::json!({ "log_tail": { "torn_bytes": torn } })),
            ..Default::default()
        })
    };
    w.append(&mut [start(tail.torn_bytes)]).1.unwrap();
    drop(w);
    let i = intact(&path);
    assert_eq!((i.records, i.torn_lines), (3, 1), "{i}");
    // The same without the report: the torn line is a line that is not a record.
    let mut l = lines(&path);
    let last = l.len() - 1;
    l[last] = l[last].replace("\"torn_bytes\":27", "\"torn_bytes\":26");
    write_lines(&path, &l);
    let b = broken(&path);
    assert_eq!(b.at.line, 3, "{b}");
    assert!(b.reason.contains("not an audit record"), "{b}");
}

#[test]
fn a_start_record_that_found_the_end_changed_breaks_the_log() {
    let dir = tempdir();
    let path = dir.join("audit.jsonl");
    let mut w = AuditWriter::open(&path, ROTATION).unwrap();
    w.append(&mut [
        record(0),
        Record::Daemon(DaemonRecord {
            event: "start".into(),
            time: "t".into(),
            detail: Some(serde_json::json!({ "log_tail": {
                "torn_bytes": 0, "truncated": true, "altered": false,
                "reason": "records are missing at its end" } })),
            ..Default::default()
        }),
    ])
    .1
    .unwrap();
    let b = broken(&path);
    assert_eq!(b.at.seq, Some(2), "{b}");
    assert!(b.reason.contains("records are missing"), "{b}");
}

#[test]
fn records_from_before_the_chain_are_accepted_only_at_the_old_end() {
    let dir = tempdir();
    let path = dir.join("audit.jsonl");
    let old: Vec<String> = (1..=3)
        .map(|seq| {
            format!(
                r#"{{"type":"daemon","seq":{seq},"time":"t","host":"h","event":"old","pid":1}}"#
            )
        })
        .collect();
    write_lines(&path, &old);
    assert!(broken(&path)
        .reason
        .contains("no record carries the hash chain"));
    let mut w = AuditWriter::open(&path, ROTATION).unwrap();
    w.append(&mut [record(3), record(4)]).1.unwrap();
    drop(w);
    let i = intact(&path);
    assert_eq!((i.records, i.unchained), (5, 3), "{i}");
    assert!(
        i.to_string()
            .contains("3 older records were written without the chain"),
        "{i}"
    );
    // An unchained record after chained ones is an edit.
    let mut l = lines(&path);
    let prev_at = l[4].find(",\"prev\"").unwrap();
    l[4] = format!("{}}}", &l[4][..prev_at]);
    write_lines(&path, &l);
    assert!(broken(&path).reason.contains("no `prev` field"));
}
