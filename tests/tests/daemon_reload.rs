//! End to end: policy reloads are atomic under load. While a registered agent loops over
//! allowed, explicitly denied and default-denied opens, the daemon reloads 201 times (SIGHUP and
//! policy-file changes), alternating two policies that agree on those paths but differ in rule
//! ids and order: no allowed open is ever denied, no denied one allowed, every event names a
//! policy version that existed and never mixes the rules of the two policies. An invalid edit is
//! rejected whole (file:line:col), and the running policy stays enforced.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use enforcer_tests::{daemon::*, Agent, EPERM};
use serde_json::Value;

const TEST: &str = "daemon_reload::reloads_under_load_never_change_a_decision";
const AGENT: &str = "reload-agent";
const RELOADS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    A,
    B,
}

/// Two policies with the same decisions for `allowed/`, `denied/` and `outside`, but different
/// rule ids, rule order and an extra rule in B, so their compiled maps differ.
fn policy(root: &Path, kind: Kind) -> String {
    let root = root.display();
    let exe = enforcer_exe();
    let libc = toml_list(LIBC_READS);
    let (read, deny) = match kind {
        Kind::A => (
            format!(r#"{{ path = "{root}/allowed/**", id = "allowed-a" }}, {libc}"#),
            format!(r#"{{ path = "{root}/denied/**", id = "denied-a" }}"#),
        ),
        Kind::B => (
            format!(r#"{libc}, "{root}/extra/**", {{ path = "{root}/allowed/**", id = "allowed-b" }}"#),
            format!(r#""{root}/other/**", {{ path = "{root}/denied/**", id = "denied-b" }}"#),
        ),
    };
    format!(
        r#"[agent]
name = "{AGENT}"
mode = "enforce"
on_violation = "audit"
log.file_allow = true

[file]
read = [{read}]
deny = [{deny}]

[exec]
allow = [{{ path = "{exe}", id = "agent-binary" }}]
"#
    )
}

fn kind_of_rule(rule: &str) -> Option<Kind> {
    match rule {
        "allowed-a" | "denied-a" => Some(Kind::A),
        "allowed-b" | "denied-b" => Some(Kind::B),
        _ => None,
    }
}

/// Replace the policy file in one step (a reload never reads a half-written file).
fn write_policy(setup: &DaemonSetup, text: &str) {
    let tmp = setup.dir.path().join("agent.toml.tmp");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, setup.policy_dir.join("agent.toml")).expect("replace policy");
}

fn wait_status(setup: &DaemonSetup, what: &str, pred: impl Fn(&enforcer::api::protocol::StatusReport) -> bool) -> enforcer::api::protocol::StatusReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = setup.status();
        if pred(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon status: {what} did not happen within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `file:LINE:COL` right after `file` in `text`?
fn has_position(text: &str, file: &str) -> bool {
    text.match_indices(file).any(|(i, _)| {
        let rest = &text[i + file.len()..];
        let mut parts = rest.splitn(3, ':');
        let (empty, line, col) = (parts.next(), parts.next(), parts.next());
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        empty == Some("")
            && line.is_some_and(digits)
            && col.is_some_and(|c| digits(&c.chars().take_while(|c| c.is_ascii_digit()).collect::<String>()))
    })
}

#[test]
fn reloads_under_load_never_change_a_decision() {
    let Some(backend) = enforcer_tests::lsm_or_na(TEST) else { return };
    drop(backend);
    let mut setup = DaemonSetup::new("reload");
    let root = setup.dir.path().to_path_buf();
    for dir in ["allowed", "denied"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        for i in 0..4 {
            std::fs::write(root.join(format!("{dir}/f{i}")), "x").unwrap();
        }
    }
    std::fs::write(root.join("outside"), "x").unwrap();
    write_policy(&setup, &policy(&root, Kind::A));
    let mut daemon = setup.start();

    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let looping = {
        let (root, stop, count) = (root.display().to_string(), stop.clone(), count.clone());
        std::thread::spawn(move || {
            // (path, allowed, errno)
            let mut done: Vec<(String, bool, i32)> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let (path, allowed) = match i % 3 {
                    0 => (format!("{root}/allowed/f{}", i % 4), true),
                    1 => (format!("{root}/denied/f{}", i % 4), false),
                    _ => (format!("{root}/outside"), false),
                };
                let r = agent.op(&format!("open:{path}"));
                done.push((path, allowed, r.errno));
                count.fetch_add(1, Ordering::SeqCst);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (agent, done)
        })
    };

    // 200 reloads, alternating B and A; three of four by SIGHUP, the fourth by the file change
    // alone (the watcher). Each waits until the daemon runs a newer version.
    let started = Instant::now();
    for i in 0..RELOADS {
        let kind = if i % 2 == 0 { Kind::B } else { Kind::A };
        let before = setup.status().policy_version;
        write_policy(&setup, &policy(&root, kind));
        if i % 4 != 3 {
            daemon.hup();
        }
        wait_status(&setup, &format!("reload #{i}"), |s| s.policy_version > before);
    }
    println!("{RELOADS} reloads in {:.1}s, {} agent opens so far", started.elapsed().as_secs_f64(), count.load(Ordering::SeqCst));

    // An invalid edit: rejected whole, by the watcher and by SIGHUP; the running policy stays.
    let status = setup.status();
    let (version, failures) = (status.policy_version, status.reload_failures);
    let opens_before = count.load(Ordering::SeqCst);
    let broken = policy(&root, Kind::A).replace("[file]\nread =", "[file]\nraed =");
    write_policy(&setup, &broken);
    let status = wait_status(&setup, "rejection of the invalid edit", |s| s.reload_failures > failures);
    let why = status.last_reload_error.clone().unwrap_or_default();
    assert!(has_position(&why, "agent.toml"), "the rejection does not point at file:line:col: {why}");
    daemon.hup();
    let status = wait_status(&setup, "rejection on SIGHUP", |s| s.reload_failures > failures + 1);
    assert_eq!(status.policy_version, version, "a rejected edit changed the policy version");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < opens_before + 30 {
        assert!(Instant::now() < deadline, "the agent made no progress after the invalid edit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The fix is B: the last valid policy was A, and an edit back to the running policy is not
    // applied again.
    write_policy(&setup, &policy(&root, Kind::B));
    wait_status(&setup, "reload after the fix", |s| s.policy_version > version);

    stop.store(true, Ordering::SeqCst);
    let (agent, done) = looping.join().expect("agent loop");
    agent.finish();
    println!("{} opens by the agent", done.len());

    // 1. No decision changed.
    for (path, allowed, errno) in &done {
        let expected = if *allowed { 0 } else { EPERM };
        assert_eq!(*errno, expected, "open of {path}: errno {errno}, expected {expected}");
    }
    assert!(done.len() >= 300, "too few opens during the reloads: {}", done.len());

    // 2. Every event names a version that existed, and one version never mixes A and B.
    let log = daemon.log_text();
    assert!(log.contains("reload rejected") && has_position(&log, "agent.toml"), "the daemon log does not say why the edit was rejected:\n{log}");
    daemon.stop();
    let records = setup.records();
    let lifecycle = |event: &str| -> Vec<&Value> { records.iter().filter(|r| r["type"] == "daemon" && r["event"] == event).collect() };
    let existed: BTreeSet<u64> = lifecycle("start")
        .into_iter()
        .chain(lifecycle("reload"))
        .filter_map(|r| r["policy_version"].as_u64())
        .collect();
    assert!(existed.len() > RELOADS, "expected more than {RELOADS} versions, the log has {}", existed.len());
    let failed = lifecycle("reload-failed");
    assert!(failed.len() >= 2, "expected two reload-failed records: {failed:?}");
    for r in &failed {
        assert!(has_position(r["message"].as_str().unwrap_or_default(), "agent.toml"), "reload-failed without file:line:col: {r}");
    }
    let mut kind_of_version: BTreeMap<u64, Kind> = BTreeMap::new();
    let mut events = 0;
    for e in records.iter().filter(|r| r["type"] == "event" && r["agent"] == AGENT) {
        events += 1;
        let v = e["policy_version"].as_u64().expect("event without policy_version");
        assert!(existed.contains(&v), "event with policy version {v}, which never existed: {e}");
        let Some(kind) = e["rule"].as_str().and_then(kind_of_rule) else { continue };
        let seen = *kind_of_version.entry(v).or_insert(kind);
        assert_eq!(seen, kind, "policy version {v} decided with rules of both policies: {e}");
        let path = e["path"].as_str().unwrap_or_default();
        let verdict = e["verdict"].as_str().unwrap_or_default();
        if path.contains("/allowed/") {
            assert_eq!(verdict, "allow", "{e}");
        } else if path.contains("/denied/") {
            assert_eq!(verdict, "deny", "{e}");
        }
    }
    let (a, b) = kind_of_version.values().fold((0, 0), |(a, b), k| if *k == Kind::A { (a + 1, b) } else { (a, b + 1) });
    println!("{events} agent events over {} policy versions ({a} of policy A, {b} of policy B)", kind_of_version.len());
    assert!(a >= 10 && b >= 10, "the agent's events span too few versions of each policy: A {a}, B {b}");
    assert!(!records.iter().any(|r| r["type"] == "lost"), "events were lost");
}
