//! `enforcer events` over a rotated audit log written by the real writer (user space only).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use enforcer::audit::{
    writer::{AuditWriter, Rotation},
    DaemonRecord, EventRecord, Record,
};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("enforcer-events-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn event(i: u64) -> Record {
    let verdict = ["allow", "deny", "audit-deny"][(i % 3) as usize];
    let agent = if i.is_multiple_of(2) {
        "coder"
    } else {
        "helper"
    };
    Record::Event(EventRecord {
        time: format!("2026-11-23T14:{:02}:00.000000000Z", i % 60),
        host: "h".into(),
        agent: Some(agent.into()),
        session: format!("{:016x}", 0xab + (i % 2)),
        op: if i.is_multiple_of(4) {
            "exec".into()
        } else {
            "open".into()
        },
        path: Some(format!("/work/file-{i}")),
        verdict: verdict.into(),
        rule: "default-deny".into(),
        policy_version: 1,
        ..Default::default()
    })
}

/// 60 events plus a lifecycle record, rotated over several files.
fn write_log(dir: &Path) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let rotation = Rotation {
        max_bytes: 64 * 1024,
        retain: 50,
        fsync_interval: Duration::ZERO,
    };
    let mut writer = AuditWriter::open(&path, rotation).unwrap();
    writer
        .append(&mut [Record::Daemon(DaemonRecord {
            event: "start".into(),
            time: "2026-11-23T13:59:00.000000000Z".into(),
            ..Default::default()
        })])
        .1
        .unwrap();
    // Long paths make each record big enough to rotate every few records.
    for i in 0..60 {
        let mut record = event(i);
        if let Record::Event(e) = &mut record {
            e.path = Some(format!("/work/{}/file-{i}", "d".repeat(4000)));
        }
        writer.append(&mut [record]).1.unwrap();
    }
    path
}

fn events(log: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(["events", "--socket", "/nonexistent/api.sock", "--log"])
        .arg(log)
        .args(args)
        .output()
        .expect("running enforcer events")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "enforcer events failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn reads_rotated_files_in_order_and_filters() {
    let dir = tempdir("filter");
    let log = write_log(&dir);
    assert!(
        enforcer::audit::reader::log_files(&log).len() >= 3,
        "the fixture must span several rotated files"
    );

    let all = json_lines(&events(&log, &["--format", "json"]));
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=61).collect::<Vec<_>>(),
        "every record, oldest file first"
    );

    let denies = json_lines(&events(
        &log,
        &["--format", "json", "--verdict", "deny", "--agent", "helper"],
    ));
    assert!(!denies.is_empty());
    assert!(
        denies
            .iter()
            .all(|r| r["verdict"] == "deny" && r["agent"] == "helper"),
        "{denies:?}"
    );
    assert_eq!(
        denies.len(),
        (0..60).filter(|i| i % 3 == 1 && i % 2 == 1).count()
    );

    let execs = json_lines(&events(
        &log,
        &["--format", "json", "--op", "exec", "--session", "ab"],
    ));
    assert_eq!(execs.len(), 15, "exec events of session ab");

    let late = json_lines(&events(
        &log,
        &["--format", "json", "--since", "2026-11-23T14:50:00Z"],
    ));
    assert!(
        late.iter()
            .all(|r| r["time"].as_str().unwrap() >= "2026-11-23T14:50:00"),
        "{late:?}"
    );
    assert_eq!(late.len(), 10);
}

#[test]
fn text_format_is_plain_when_piped() {
    let dir = tempdir("text");
    let log = write_log(&dir);
    let out = events(&log, &["--verdict", "deny"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().count() == 20 && text.lines().all(|l| l.contains(" DENY ")),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes when stdout is not a terminal"
    );
}

#[test]
fn unknown_filter_names_are_errors() {
    let dir = tempdir("bad");
    let log = write_log(&dir);
    let out = events(&log, &["--op", "opne"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unknown op \"opne\""), "{stderr}");
    let out = events(&dir.join("missing.jsonl"), &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no audit log at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--follow` against a stand-in daemon that closes the stream (a restart) and comes back: the
/// records written meanwhile come from the log, nothing is printed twice.
#[test]
fn follow_continues_across_a_daemon_restart_without_gap_or_repeat() {
    use std::{
        io::{BufRead, BufReader, Write},
        os::unix::net::UnixListener,
        process::Stdio,
    };

    let dir = tempdir("follow");
    let path = dir.join("audit.jsonl");
    let rotation = Rotation {
        max_bytes: 1 << 20,
        retain: 2,
        fsync_interval: Duration::ZERO,
    };
    let mut writer = AuditWriter::open(&path, rotation).unwrap();
    writer.append(&mut [event(0), event(1)]).1.unwrap();
    let socket = dir.join("api.sock");
    let listener = UnixListener::bind(&socket).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(["events", "--follow", "--format", "json", "--socket"])
        .arg(&socket)
        .arg("--log")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    std::thread::spawn(move || {
        let serve_once = |writer: &mut AuditWriter, record: Record| {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            assert!(request.contains("subscribe"), "{request}");
            let subscribed = format!(
                "{{\"result\":\"subscribed\",\"next_seq\":{}}}\n",
                writer.next_seq()
            );
            (&stream).write_all(subscribed.as_bytes()).unwrap();
            let (live, written) = writer.append(&mut [record]);
            written.unwrap();
            (&stream).write_all(live[0].as_bytes()).unwrap();
        };
        serve_once(&mut writer, event(2));
        // The daemon is away: this record only reaches the log.
        writer.append(&mut [event(3)]).1.unwrap();
        serve_once(&mut writer, event(4));
    });

    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => seqs.push(
                serde_json::from_str::<serde_json::Value>(&line).unwrap()["seq"]
                    .as_u64()
                    .unwrap(),
            ),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4, 5],
        "every record exactly once, in order"
    );
}
