//! The exec differential test, shared by the LSM and fallback backends: random executions of
//! hard links to busybox (named after applets, in many directories) against exact, subtree,
//! single-component wildcard and basename exec rules with explicit denies. For every case the
//! kernel's verdict and the rule id in its event must equal the reference evaluator's.

use std::collections::HashMap;

use enforcer::{
    kernel::Backend,
    policy::eval::{self, Request, Verdict},
};
use enforcer_common::*;

use crate::{compile, events, fixtures::Rng, Agent, TempDir, EPERM};

const CASES: usize = 240;

/// `refuses`: the backend fails a denied exec with EPERM (LSM); otherwise the agent is in audit
/// mode and only the events' verdicts say deny (fallback).
pub fn run(backend: &mut dyn Backend, refuses: bool) {
    let root = TempDir::new("execdiff");
    let r = root.path().display().to_string();
    // One copy of busybox on this filesystem, then hard links: exec paths are the links' names.
    let original = root.join("busybox");
    std::fs::copy(crate::fixtures::busybox(), &original).expect("copy busybox");
    let dirs = [
        "bin",
        "bin/danger",
        "a/tools",
        "b/tools",
        "opt",
        "opt/tools",
        "x",
        "x/y",
    ];
    let names = ["true", "echo", "pwd", "hostname"];
    let mut paths = Vec::new();
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
        for n in names {
            let p = root.join(&format!("{d}/{n}"));
            std::fs::hard_link(&original, &p).expect("hard link");
            paths.push(p);
        }
    }
    let mode = if refuses {
        ""
    } else {
        "on_violation = \"audit\"\n"
    };
    let compiled = compile(&format!(
        r#"
[agent]
name = "execdiff-agent"
{mode}
[exec]
allow = ["{r}/bin/**", "{r}/*/tools/**", "**/echo", "{r}/opt/true"]
deny = ["{r}/bin/danger/**", "**/hostname", "{r}/opt/tools/pwd"]
"#
    ));
    let agent_id = compiled.agent_by_name("execdiff-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let seed = std::env::var("ENFORCER_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xe8ec_0001_u64);
    println!("seed {seed} (set ENFORCER_DIFF_SEED to reproduce)");
    let mut rng = Rng(seed);
    let cases: Vec<String> = (0..CASES)
        .map(|_| paths[(rng.next_u64() % paths.len() as u64) as usize].clone())
        .collect();
    let ops: Vec<String> = cases.iter().map(|p| format!("exec:{p}")).collect();
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 88).expect("register");
    let pid = agent.pid;
    let results = agent.go(ops.len());
    // Exec events of the agent's children, by path: (verdict, rule).
    let mut seen: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
    for e in events::drain_all(backend)
        .into_iter()
        .filter(|e| e.header.op == OP_EXEC && e.header.ppid == pid)
    {
        seen.entry(events::target(&e))
            .or_default()
            .push((e.header.verdict, e.header.rule));
    }
    let mut mismatches = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for (path, res) in cases.iter().zip(&results) {
        let oracle = eval::evaluate(&compiled, agent_id, &Request::Exec { path: path.clone() });
        let allow = oracle.verdict == Verdict::Allow;
        if allow {
            allowed += 1
        } else {
            denied += 1
        }
        if refuses && (res.errno == EPERM) == allow {
            mismatches.push(format!(
                "{path}: kernel errno {} vs oracle {:?} rule {}",
                res.errno, oracle.verdict, oracle.rule
            ));
            continue;
        }
        if !refuses && res.errno == EPERM {
            mismatches.push(format!("{path}: the fallback must never refuse an exec"));
            continue;
        }
        let want = match (allow, refuses) {
            (true, _) => VERDICT_ALLOW,
            (false, true) => VERDICT_DENY,
            (false, false) => VERDICT_AUDIT_DENY,
        };
        let got = seen.get(path).cloned().unwrap_or_default();
        if !got
            .iter()
            .any(|&(v, rule)| v == want && rule == oracle.rule)
        {
            mismatches.push(format!(
                "{path}: oracle {:?} rule {} not among kernel events {got:?}",
                oracle.verdict, oracle.rule
            ));
        }
    }
    println!(
        "{} exec cases: {allowed} allowed, {denied} denied, {} mismatches",
        cases.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "kernel and reference evaluator disagree:\n{}",
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
