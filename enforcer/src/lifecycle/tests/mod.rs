//! Both commands driven from synthetic audit logs. Fixtures are built from `EventRecord` and go
//! through a real JSONL file and the log reader, so they follow the schema as it changes.

mod collapse;
mod learn;
mod replay;

use std::path::{Path, PathBuf};

use super::{
    for_each_event,
    probe::{read_sets, SetSource},
    LogSource,
};
use crate::audit::{EventRecord, Record};

pub(crate) const T0: &str = "2026-11-23T14:00:00.000000000Z";

fn base(agent: &str, op: &str, verdict: &str, rule: &str, pattern: Option<&str>) -> EventRecord {
    EventRecord {
        time: T0.into(),
        host: "build-7".into(),
        agent: Some(agent.into()),
        session: "5f1c0e9a7b3d2c11".into(),
        pid: 4711,
        tid: 4711,
        ppid: 4700,
        uid: 1000,
        comm: "agent".into(),
        op: op.into(),
        verdict: verdict.into(),
        rule: rule.into(),
        rule_pattern: pattern.map(Into::into),
        policy_version: 3,
        ..Default::default()
    }
}

/// An open of `path` for `access` (`read`, `write` or both).
pub(crate) fn open(
    agent: &str,
    path: &str,
    access: &[&str],
    verdict: &str,
    rule: &str,
    pattern: Option<&str>,
) -> EventRecord {
    EventRecord {
        path: Some(path.into()),
        access: access.iter().map(|a| a.to_string()).collect(),
        open_flags: Some(if access.contains(&"write") { 0o1 } else { 0 }),
        ..base(agent, "open", verdict, rule, pattern)
    }
}

pub(crate) fn read(agent: &str, path: &str, verdict: &str) -> EventRecord {
    let rule = if verdict == "allow" {
        "p.toml:3"
    } else {
        "default-deny"
    };
    open(
        agent,
        path,
        &["read"],
        verdict,
        rule,
        (verdict == "allow").then_some("/**"),
    )
}

pub(crate) fn exec(agent: &str, path: &str, verdict: &str) -> EventRecord {
    EventRecord {
        path: Some(path.into()),
        access: vec!["exec".into()],
        ..base(agent, "exec", verdict, "default-deny", None)
    }
}

pub(crate) fn connect(
    agent: &str,
    addr: &str,
    port: u16,
    proto: &str,
    verdict: &str,
    rule: &str,
    pattern: Option<&str>,
) -> EventRecord {
    EventRecord {
        addr: Some(addr.into()),
        port: Some(port),
        proto: Some(proto.into()),
        access: vec!["connect".into()],
        ..base(agent, "connect", verdict, rule, pattern)
    }
}

pub(crate) fn connect_unix(agent: &str, path: &str, verdict: &str) -> EventRecord {
    EventRecord {
        unix_path: Some(path.into()),
        access: vec!["connect".into()],
        ..base(agent, "connect", verdict, "default-deny", None)
    }
}

pub(crate) fn join(agent: &str) -> EventRecord {
    base(agent, "join", "allow", "default-deny", None)
}

/// Write `events` as an audit log (JSON lines, seq numbered) and read them back with the log
/// reader, as the commands do.
pub(crate) fn through_log(name: &str, events: &[EventRecord]) -> (PathBuf, Vec<EventRecord>) {
    // One directory per call: tests sharing a fixture name run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "enforcer-lifecycle-{}-{name}-{call}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let mut text = String::new();
    for (i, e) in events.iter().enumerate() {
        let mut record = Record::Event(e.clone());
        record.set_seq(i as u64 + 1);
        text.push_str(&serde_json::to_string(&record).unwrap());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    let mut back = Vec::new();
    for_each_event(
        &LogSource::Files(vec![path.clone()]),
        &mut |e| back.push(e.clone()),
        &mut |e| panic!("fixture line unreadable: {e}"),
    )
    .unwrap();
    assert_eq!(back.len(), events.len());
    (path, back)
}

/// The repository's permission sets (policies/sets).
pub(crate) fn repo_sets() -> Vec<SetSource> {
    read_sets(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/sets")).unwrap()
}
