//! The file differential test, shared by the LSM and fallback backends: thousands of random
//! (path, open mode) cases; for every one the kernel's verdict (EPERM or not on BPF LSM; the
//! event's allow / audit-deny for the fallback's `on_violation = "audit"` agent) and the
//! deciding rule id in its event must equal the user-space reference evaluator's. Paths mix
//! exact, subtree, single-component wildcard, basename and suffix rules, explicit denies, and
//! paths longer than the 252-byte key window.

use std::collections::HashMap;

use enforcer::{
    kernel::Backend,
    policy::eval::{self, Request, Verdict},
};
use enforcer_common::*;

use crate::{compile, events, fixtures::Rng, Agent, TempDir, EPERM};

const CASES: usize = 2000;

/// `refuses`: the backend fails a denied open with EPERM (LSM); otherwise the agent is in audit
/// mode and only the events' verdicts say deny (fallback).
pub fn run(backend: &mut dyn Backend, refuses: bool) {
    let root = TempDir::new("diff");
    let r = root.path().display().to_string();
    let mode = if refuses {
        ""
    } else {
        "on_violation = \"audit\"\n"
    };
    let compiled = compile(&format!(
        r#"
[agent]
name = "diff-agent"
{mode}log.file_allow = true

[file]
read = ["{r}/a/**", "{r}/*/pub/**", "{r}/c/file1", "**/*.md", "**/notes"]
write = ["{r}/c/**", "{r}/*/tmp/**"]
deny = ["{r}/a/priv/**", "**/*.pem", "**/.env", "{r}/b/pub/x.md"]
deny_write = ["{r}/c/ro/**"]
"#
    ));
    let agent_id = compiled.agent_by_name("diff-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");

    let seed = std::env::var("ENFORCER_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    println!("seed {seed} (set ENFORCER_DIFF_SEED to reproduce)");
    let mut rng = Rng(seed);
    let long = "L".repeat(120);
    let dirs = [
        "a",
        "b",
        "c",
        "pub",
        "priv",
        "tmp",
        "ro",
        "d",
        long.as_str(),
    ];
    let files = [
        "x.md",
        "key.pem",
        ".env",
        "f.tar.gz",
        "file1",
        "notes",
        "zz",
        "a.b.c.d.e.pem",
        "y",
    ];
    // Unique random files, created so the opens reach the LSM hook.
    let mut paths = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while paths.len() < CASES / 2 {
        let depth = 1 + rng.next_u64() % 4;
        let mut p = r.clone();
        for _ in 0..depth {
            p.push('/');
            p.push_str(rng.pick(&dirs));
        }
        p.push('/');
        p.push_str(rng.pick(&files));
        if p.len() >= 4000 || !seen.insert(p.clone()) {
            continue;
        }
        std::fs::create_dir_all(std::path::Path::new(&p).parent().unwrap()).expect("mkdir");
        std::fs::write(&p, "x").expect("create fixture");
        paths.push(p);
    }
    let modes = ["open", "write", "rw"];
    let cases: Vec<(String, &str)> = (0..CASES)
        .map(|i| (paths[i % paths.len()].clone(), rng.pick(&modes)))
        .collect();
    let ops: Vec<String> = cases.iter().map(|(p, m)| format!("{m}:{p}")).collect();
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 99).expect("register");
    let pid = agent.pid;
    let results = agent.go(ops.len());

    // Events of this process by (path, access) -> rule ids seen.
    let mut by_target: HashMap<(String, u32), Vec<(u32, u32)>> = HashMap::new();
    for e in events::drain_all(backend)
        .into_iter()
        .filter(|e| e.header.tgid == pid && e.header.op == OP_OPEN)
    {
        by_target
            .entry((events::target(&e), e.header.access))
            .or_default()
            .push((e.header.verdict, e.header.rule));
    }
    let mut mismatches = Vec::new();
    let (mut allowed, mut denied, mut long_paths) = (0, 0, 0);
    for ((path, mode), res) in cases.iter().zip(&results) {
        let (read, write) = match *mode {
            "open" => (true, false),
            "write" => (false, true),
            _ => (true, true),
        };
        let oracle = eval::evaluate(
            &compiled,
            agent_id,
            &Request::Open {
                path: path.clone(),
                read,
                write,
            },
        );
        if path.len() + 1 > PATH_KEY_BYTES {
            long_paths += 1;
        }
        let oracle_allows = oracle.verdict == Verdict::Allow;
        if oracle_allows {
            allowed += 1
        } else {
            denied += 1
        }
        let want_errno = if oracle_allows || !refuses { 0 } else { EPERM };
        if res.errno != want_errno {
            mismatches.push(format!(
                "{mode} {path}: kernel errno {} vs oracle {:?} rule {}",
                res.errno, oracle.verdict, oracle.rule
            ));
            continue;
        }
        let want = match (oracle_allows, refuses) {
            (true, _) => VERDICT_ALLOW,
            (false, true) => VERDICT_DENY,
            (false, false) => VERDICT_AUDIT_DENY,
        };
        let access = (if read { ACCESS_READ } else { 0 }) | (if write { ACCESS_WRITE } else { 0 });
        let seen = by_target
            .get(&(path.clone(), access))
            .cloned()
            .unwrap_or_default();
        if !seen
            .iter()
            .any(|&(verdict, rule)| verdict == want && rule == oracle.rule)
        {
            mismatches.push(format!("{mode} {path}: oracle {:?} rule {} not among kernel events (verdict, rule) {seen:?}", oracle.verdict, oracle.rule));
        }
    }
    println!("{} cases: {allowed} allowed, {denied} denied, {long_paths} longer than the key window, {} mismatches", cases.len(), mismatches.len());
    assert!(
        mismatches.is_empty(),
        "kernel and reference evaluator disagree on {} of {} cases:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        allowed > CASES / 10 && denied > CASES / 10,
        "the mix must exercise both verdicts"
    );
}
