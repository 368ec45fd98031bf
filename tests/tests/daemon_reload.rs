//! End to end: policy reloads are atomic under load. While a registered agent loops over
//! allowed, explicitly denied and default-denied operations (tests/src/workload.rs: opens and
//! connects on BPF LSM, connects on the fallback - what each backend refuses with EPERM), the
//! daemon reloads 201 times (SIGHUP and policy-file changes), alternating two policies that
//! agree on those operations but differ in rule ids and order: no allowed operation is ever
//! denied, no denied one allowed, every event names a policy version that existed and never
//! mixes the rules of the two policies. An invalid edit is rejected whole (file:line:col), and
//! the running policy stays enforced. Runs on every kernel with the backend the daemon chooses.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use enforcer_tests::{
    daemon::*,
    workload::{Class, RuleIds, Step, Workload},
    Agent,
};
use serde_json::Value;

const TEST: &str = "daemon_reload::reloads_under_load_never_change_a_decision";
const AGENT: &str = "reload-agent";
const RELOADS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    A,
    B,
}

/// A and B decide every step the same; B's rules come in another order, with extra rules that
/// match none of the steps, so their compiled maps differ.
fn ids(kind: Kind) -> RuleIds {
    match kind {
        Kind::A => RuleIds {
            allow: "allowed-a",
            deny: "denied-a",
        },
        Kind::B => RuleIds {
            allow: "allowed-b",
            deny: "denied-b",
        },
    }
}

fn policy(work: &Workload, kind: Kind) -> String {
    work.policy(AGENT, ids(kind), kind == Kind::B)
}

fn kind_of_rule(rule: &str) -> Option<Kind> {
    [Kind::A, Kind::B].into_iter().find(|&k| ids(k).owns(rule))
}

/// Replace the policy file in one step (a reload never reads a half-written file).
fn write_policy(setup: &DaemonSetup, text: &str) {
    let tmp = setup.dir.path().join("agent.toml.tmp");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, setup.policy_dir.join("agent.toml")).expect("replace policy");
}

fn wait_status(
    setup: &DaemonSetup,
    what: &str,
    pred: impl Fn(&enforcer::api::protocol::StatusReport) -> bool,
) -> enforcer::api::protocol::StatusReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = setup.status();
        if pred(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "daemon status: {what} did not happen within 60 s"
        );
        // Each status request has the daemon scan /proc and its process table: polling harder
        // competes with the reload it waits for.
        std::thread::sleep(Duration::from_millis(50));
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
            && col.is_some_and(|c| {
                digits(
                    &c.chars()
                        .take_while(|c| c.is_ascii_digit())
                        .collect::<String>(),
                )
            })
    })
}

#[test]
fn reloads_under_load_never_change_a_decision() {
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("reload");
    let work = Arc::new(Workload::new(setup.dir.path()));
    write_policy(&setup, &policy(&work, Kind::A));
    let (mut daemon, backend) = setup.start_first(TEST);

    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let looping = {
        let (work, stop, count) = (work.clone(), stop.clone(), count.clone());
        std::thread::spawn(move || {
            let mut done: Vec<(Step, i32)> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let step = work.step(backend, i);
                let r = agent.op(&step.op);
                done.push((step, r.errno));
                count.fetch_add(1, Ordering::SeqCst);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (agent, done)
        })
    };

    // 200 reloads, alternating B and A; three of four by SIGHUP, the fourth by the file change
    // alone (the watcher). Each waits until the daemon runs a newer version.
    let started = Instant::now();
    let mut version = setup.status().policy_version;
    for i in 0..RELOADS {
        let kind = if i % 2 == 0 { Kind::B } else { Kind::A };
        write_policy(&setup, &policy(&work, kind));
        if i % 4 != 3 {
            daemon.hup();
        }
        version = wait_status(&setup, &format!("reload #{i}"), |s| {
            s.policy_version > version
        })
        .policy_version;
    }
    println!(
        "{RELOADS} reloads in {:.1}s, {} agent operations so far",
        started.elapsed().as_secs_f64(),
        count.load(Ordering::SeqCst)
    );

    // An invalid edit: rejected whole, by the watcher and by SIGHUP; the running policy stays.
    let status = setup.status();
    let (version, failures) = (status.policy_version, status.reload_failures);
    let ops_before = count.load(Ordering::SeqCst);
    let broken = policy(&work, Kind::A).replace("[file]\nread =", "[file]\nraed =");
    write_policy(&setup, &broken);
    let status = wait_status(&setup, "rejection of the invalid edit", |s| {
        s.reload_failures > failures
    });
    let why = status.last_reload_error.clone().unwrap_or_default();
    assert!(
        has_position(&why, "agent.toml"),
        "the rejection does not point at file:line:col: {why}"
    );
    daemon.hup();
    let status = wait_status(&setup, "rejection on SIGHUP", |s| {
        s.reload_failures > failures + 1
    });
    assert_eq!(
        status.policy_version, version,
        "a rejected edit changed the policy version"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < ops_before + 30 {
        assert!(
            Instant::now() < deadline,
            "the agent made no progress after the invalid edit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ops_rejected = count.load(Ordering::SeqCst);
    // The fix is B: the last valid policy was A, and an edit back to the running policy is not
    // applied again.
    write_policy(&setup, &policy(&work, Kind::B));
    wait_status(&setup, "reload after the fix", |s| {
        s.policy_version > version
    });

    stop.store(true, Ordering::SeqCst);
    let (agent, done) = looping.join().expect("agent loop");
    agent.finish();
    println!(
        "{} operations by the agent, {} while the invalid edit was rejected",
        done.len(),
        ops_rejected - ops_before
    );

    // 1. No decision changed.
    for (step, errno) in &done {
        assert_eq!(
            *errno,
            step.class.errno(),
            "{}: errno {errno}",
            step.describe()
        );
    }
    assert!(
        done.len() >= 300,
        "too few operations during the reloads: {}",
        done.len()
    );

    // 2. Every event names a version that existed, and one version never mixes A and B; every
    //    event of a step has the step's verdict.
    let log = daemon.log_text();
    assert!(
        log.contains("reload rejected") && has_position(&log, "agent.toml"),
        "the daemon log does not say why the edit was rejected:\n{log}"
    );
    daemon.stop();
    let records = setup.records();
    let lifecycle = |event: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["type"] == "daemon" && r["event"] == event)
            .collect()
    };
    let existed: BTreeSet<u64> = lifecycle("start")
        .into_iter()
        .chain(lifecycle("reload"))
        .filter_map(|r| r["policy_version"].as_u64())
        .collect();
    assert!(
        existed.len() > RELOADS,
        "expected more than {RELOADS} versions, the log has {}",
        existed.len()
    );
    let failed = lifecycle("reload-failed");
    assert!(
        failed.len() >= 2,
        "expected two reload-failed records: {failed:?}"
    );
    for r in &failed {
        assert!(
            has_position(r["message"].as_str().unwrap_or_default(), "agent.toml"),
            "reload-failed without file:line:col: {r}"
        );
    }
    let class_of: HashMap<String, Class> = done
        .iter()
        .map(|(step, _)| (step.target_key(), step.class))
        .collect();
    let mut kind_of_version: BTreeMap<u64, Kind> = BTreeMap::new();
    let (mut events, mut step_events) = (0, 0);
    for e in records
        .iter()
        .filter(|r| r["type"] == "event" && r["agent"] == AGENT)
    {
        events += 1;
        let v = e["policy_version"]
            .as_u64()
            .expect("event without policy_version");
        assert!(
            existed.contains(&v),
            "event with policy version {v}, which never existed: {e}"
        );
        if let Some(class) = Step::key_of(e).and_then(|k| class_of.get(&k)) {
            step_events += 1;
            assert_eq!(
                e["verdict"].as_str(),
                Some(class.verdict()),
                "an event of a {class:?} step: {e}"
            );
        }
        let Some(kind) = e["rule"].as_str().and_then(kind_of_rule) else {
            continue;
        };
        let seen = *kind_of_version.entry(v).or_insert(kind);
        assert_eq!(
            seen, kind,
            "policy version {v} decided with rules of both policies: {e}"
        );
    }
    let (a, b) = kind_of_version.values().fold((0, 0), |(a, b), k| {
        if *k == Kind::A {
            (a + 1, b)
        } else {
            (a, b + 1)
        }
    });
    println!("{events} agent events ({step_events} of the loop's steps) over {} policy versions ({a} of policy A, {b} of policy B)", kind_of_version.len());
    assert_eq!(
        step_events,
        done.len(),
        "every operation of the loop has exactly one event"
    );
    assert!(
        a >= 10 && b >= 10,
        "the agent's events span too few versions of each policy: A {a}, B {b}"
    );
    assert!(
        !records.iter().any(|r| r["type"] == "lost"),
        "events were lost"
    );
    enforcer_tests::adversarial::pass("3-reload/200-reloads-no-flip", backend.name());
}
