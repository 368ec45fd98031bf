//! Fallback file and exec hooks (tracepoints: they see, they cannot refuse). `on_violation =
//! "audit"`: denied opens happen and are logged as would-deny with the deciding rule.
//! `on_violation = "kill"`: a denied exec is SIGKILLed before the new program runs (its marker
//! file never appears), a denied open kills the opener; allowed ones are untouched. Runs on every
//! kernel, the host included.

use enforcer::{
    kernel::Backend,
    policy::{
        compile::RuleKind,
        eval::{self, Request},
    },
};
use enforcer_common::*;
use enforcer_tests::{compile, events, fallback, fixtures::rule_id_of, Agent, TempDir};

#[test]
fn audit_mode_logs_would_deny() {
    let mut backend = fallback("fallback_file_exec::audit_mode_logs_would_deny");
    let dir = TempDir::new("fb-audit");
    let d = dir.path().display().to_string();
    let ok = dir.file("pub/ok.txt", "ok");
    let secret = dir.file("pub/secret.txt", "secret");
    let ro = dir.file("ro/file.txt", "ro");
    let compiled = compile(&format!(
        r#"
[agent]
name = "fb-audit"
on_violation = "audit"
log.file_allow = true

[file]
read = ["{d}/pub/**", "{d}/ro/**"]
deny = ["{d}/pub/secret.txt"]
"#
    ));
    let agent_id = compiled.agent_by_name("fb-audit").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let ops = vec![
        format!("open:{ok}"),
        format!("open:{secret}"),
        format!("write:{ro}"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 21).expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    assert!(
        r.iter().all(|x| x.errno == 0),
        "audit mode on the fallback never refuses: {r:?}"
    );
    let e = events::wait_for(&mut backend, "allowed open", |e| {
        e.header.tgid == pid && events::target(e) == ok
    });
    assert_eq!(e.header.verdict, VERDICT_ALLOW);
    assert_eq!(
        e.header.rule,
        rule_id_of(&compiled, RuleKind::FileRead, &format!("{d}/pub/**"))
    );
    let e = events::wait_for(&mut backend, "would-deny of the secret", |e| {
        e.header.tgid == pid && events::target(e) == secret
    });
    assert_eq!(
        e.header.verdict, VERDICT_AUDIT_DENY,
        "logged as would-deny, not as a deny that did not happen"
    );
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::Open {
            path: secret.clone(),
            write: false,
            read: true,
        },
    );
    assert_eq!(e.header.rule, oracle.rule, "kernel == reference evaluator");
    assert_eq!(
        e.header.rule,
        rule_id_of(
            &compiled,
            RuleKind::FileDeny,
            &format!("{d}/pub/secret.txt")
        )
    );
    let e = events::wait_for(&mut backend, "would-deny of a write", |e| {
        e.header.tgid == pid && events::target(e) == ro
    });
    assert_eq!(e.header.verdict, VERDICT_AUDIT_DENY);
    assert_eq!(e.header.access & ACCESS_WRITE, ACCESS_WRITE);
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    println!("checked: allowed open logged with its rule; denied read and write opens succeed and are logged as audit-deny with the oracle's rule");
}

#[test]
fn kill_mode_exec_never_runs() {
    let mut backend = fallback("fallback_file_exec::kill_mode_exec_never_runs");
    let dir = TempDir::new("fb-kill");
    let d = dir.path().display().to_string();
    let good = dir.busybox("good/busybox");
    let bad = dir.busybox("bad/busybox");
    let secret = dir.file("data/secret.txt", "secret");
    let marker_good = dir.join("out/good-ran");
    let marker_bad = dir.join("out/bad-ran");
    let marker_cat = dir.join("out/cat-ran");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let compiled = compile(&format!(
        r#"
[agent]
name = "fb-kill"
on_violation = "kill"

[file]
read = ["{d}/good/**", "{d}/out/**"]
write = ["{d}/out/**"]

[exec]
allow = ["{d}/good/**"]
"#
    ));
    let agent_id = compiled.agent_by_name("fb-kill").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let ops = vec![
        format!("exec:{good},touch,{marker_good}"),
        format!("exec:{bad},touch,{marker_bad}"),
        // Allowed exec, then a denied open inside it: the child dies before `touch` runs.
        format!("exec:{good},sh,-c,cat {secret} && touch {marker_cat}"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 22).expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    if r[0].errno != 0 {
        let seen: Vec<String> = events::drain_all(&mut backend)
            .iter()
            .map(|e| {
                format!(
                    "op={} verdict={} rule={} pid={} flags={:#x} target={:?}",
                    e.header.op,
                    e.header.verdict,
                    e.header.rule,
                    e.header.pid,
                    e.header.flags,
                    events::target(e)
                )
            })
            .collect();
        panic!("allowed exec: {:?}; events:\n{}", r[0], seen.join("\n"));
    }
    assert!(
        std::path::Path::new(&marker_good).exists(),
        "the allowed program must have run"
    );
    assert!(
        r[1].result.contains("SIGKILL") || r[1].result.contains("signal: 9"),
        "denied exec must be killed: {:?}",
        r[1]
    );
    assert!(
        !std::path::Path::new(&marker_bad).exists(),
        "the denied program must never run: {marker_bad} exists"
    );
    // sh runs `cat` in a child: the shell reports its SIGKILL as status 137 and stops at `&&`.
    assert!(
        r[2].result.contains("137") || r[2].result.contains("signal: 9"),
        "denied open must kill the opener: {:?}",
        r[2]
    );
    assert!(
        !std::path::Path::new(&marker_cat).exists(),
        "nothing after the denied open may run"
    );
    let e = events::wait_for(&mut backend, "killed exec", |e| {
        e.header.op == OP_EXEC && events::target(e) == bad
    });
    assert_eq!(e.header.verdict, VERDICT_KILL);
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    assert_eq!(e.header.chain[0], agent_id, "the child is still the agent");
    let e = events::wait_for(&mut backend, "allowed exec", |e| {
        e.header.op == OP_EXEC && events::target(e) == good && e.header.verdict == VERDICT_ALLOW
    });
    assert_eq!(
        e.header.rule,
        rule_id_of(&compiled, RuleKind::ExecAllow, &format!("{d}/good/**"))
    );
    let e = events::wait_for(&mut backend, "killed open", |e| {
        e.header.op == OP_OPEN && events::target(e) == secret
    });
    assert_eq!(e.header.verdict, VERDICT_KILL);
    assert_ne!(
        e.header.tgid, pid,
        "the opener was the exec'd child, not the agent's first process"
    );
    // A process that is not an agent is never affected.
    let other = Agent::spawn(
        &[format!("exec:{bad},true"), format!("open:{secret}")],
        false,
    );
    let r = other.go(2);
    assert!(
        r.iter()
            .all(|x| x.errno == 0 && !x.result.contains("signal")),
        "non-agent must be unaffected: {r:?}"
    );
    println!("checked: allowed exec runs; denied exec SIGKILLed before running (no marker); denied open kills the opener before its next step; events with verdict kill; non-agent unaffected");
}
