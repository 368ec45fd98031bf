//! `enforcer replay` and `enforcer learn` as a user runs them: exit codes, output, the learned
//! file passing `enforcer check`. Logs are written from `EventRecord`, so they follow the schema.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use enforcer::audit::{EventRecord, Record};

fn enforcer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run enforcer {args:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "enforcer-lifecycle-cli-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn event(op: &str, path: &str, access: &str, verdict: &str) -> EventRecord {
    EventRecord {
        time: "2026-11-23T14:00:00.000000000Z".into(),
        host: "build-7".into(),
        agent: Some("coder".into()),
        session: "5f1c0e9a7b3d2c11".into(),
        comm: "agent".into(),
        op: op.into(),
        path: Some(path.into()),
        access: vec![access.into()],
        verdict: verdict.into(),
        rule: "default-deny".into(),
        policy_version: 1,
        ..Default::default()
    }
}

fn write_log(dir: &Path, events: &[EventRecord]) -> String {
    let path = dir.join("audit.jsonl");
    let lines: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut r = Record::Event(e.clone());
            r.set_seq(i as u64 + 1);
            serde_json::to_string(&r).unwrap()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

fn audit_run() -> Vec<EventRecord> {
    vec![
        event("open", "/work/project/src/main.rs", "read", "audit-deny"),
        event("open", "/work/project/src/lib.rs", "read", "audit-deny"),
        event("open", "/work/project/Cargo.toml", "read", "audit-deny"),
        event("open", "/etc/ld.so.cache", "read", "audit-deny"),
        event(
            "open",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "read",
            "audit-deny",
        ),
        event("exec", "/usr/bin/git", "exec", "audit-deny"),
        event("open", "/home/dev/.ssh/id_ed25519", "read", "audit-deny"),
    ]
}

#[test]
fn learn_writes_a_policy_that_check_accepts_and_replay_confirms() {
    let dir = scratch("learn");
    let log = write_log(&dir, &audit_run());
    std::fs::create_dir_all(dir.join("sets")).unwrap();
    let sets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/sets");
    for set in ["libc.toml", "secrets.toml"] {
        std::fs::copy(sets.join(set), dir.join("sets").join(set)).unwrap();
    }
    let out_file = dir.join("coder.toml");
    let out = enforcer(&[
        "learn",
        "--agent",
        "coder",
        "--log",
        &log,
        "--sets",
        &dir.join("sets").display().to_string(),
        "--out",
        &out_file.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let policy = std::fs::read_to_string(&out_file).unwrap();
    assert!(policy.contains("\"/work/project/**\","), "{policy}");
    assert!(policy.contains("\"libc\","), "{policy}");
    assert!(
        text(&out.stderr).contains("decides all 7 as observed"),
        "{}",
        text(&out.stderr)
    );

    let check = enforcer(&["check", &out_file.display().to_string()]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );

    // Every audit-denied operation becomes allowed, except the SSH key.
    let replay = enforcer(&[
        "replay",
        "--policy",
        &out_file.display().to_string(),
        "--log",
        &log,
        "--format",
        "json",
        "--fail-on-change",
    ]);
    assert_eq!(replay.status.code(), Some(1), "{}", text(&replay.stderr));
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(report["changed"], true);
    assert_eq!(
        report["report"]["newly_allowed"].as_array().unwrap().len(),
        6
    );
    assert_eq!(
        report["report"]["newly_denied"].as_array().unwrap().len(),
        0
    );
    assert_eq!(report["report"]["unchanged"], 1);
}

#[test]
fn replay_exit_status_and_invalid_policies() {
    let dir = scratch("replay");
    let log = write_log(&dir, &[event("open", "/work/project/a", "read", "allow")]);
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[agent]\nname = \"coder\"\n[file]\nread = [\"/work/project/**\"]\n",
    )
    .unwrap();
    let good = good.display().to_string();
    let same = enforcer(&[
        "replay",
        "--policy",
        &good,
        "--log",
        &log,
        "--fail-on-change",
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
    assert!(
        text(&same.stdout).contains("no recorded decision would change"),
        "{}",
        text(&same.stdout)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[agent]\nname = \"coder\"\n[file]\nraed = [\"/x\"]\n").unwrap();
    let bad = bad.display().to_string();
    let replay = enforcer(&["replay", "--policy", &bad, "--log", &log]);
    let check = enforcer(&["check", &bad]);
    assert_eq!(replay.status.code(), Some(2));
    assert_eq!(text(&replay.stdout), "", "nothing but the errors");
    assert_eq!(
        text(&replay.stderr),
        text(&check.stderr),
        "the same errors as `enforcer check`"
    );
    assert!(
        text(&replay.stderr).contains("bad.toml:4:1"),
        "{}",
        text(&replay.stderr)
    );
}
