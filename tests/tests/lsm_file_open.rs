//! BPF LSM `file_open`: allow -> deny -> audit mode -> detach -> allow, with EPERM seen by the
//! caller, the matching event decoded, and the verdict and rule id equal to the reference
//! evaluator's.

use enforcer::{
    kernel::Backend,
    policy::eval::{self, Request, Verdict},
};
use enforcer_common::*;
use enforcer_tests::{compile, events, fixtures::rule_id, lsm_or_na, Agent, TempDir, EPERM};

fn policy(dir: &str, mode: &str) -> String {
    format!(
        r#"
[agent]
name = "file-agent"
mode = "{mode}"

[file]
read = ["{dir}/**"]
deny = ["{dir}/secret.txt"]
"#
    )
}

#[test]
fn allow_deny_audit_detach() {
    let Some(mut backend) = lsm_or_na("lsm_file_open::allow_deny_audit_detach") else {
        return;
    };
    let dir = TempDir::new("file-open");
    let allowed = dir.file("allowed.txt", "ok");
    let secret = dir.file("secret.txt", "secret");
    let elsewhere = TempDir::new("file-open-elsewhere");
    let outside = elsewhere.file("outside.txt", "no rule names this");
    let compiled = compile(&policy(&dir.path().display().to_string(), "enforce"));
    let agent_id = compiled.agent_by_name("file-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply policy");

    let ops = vec![
        format!("open:{allowed}"),
        format!("open:{secret}"),
        format!("open:{outside}"),
        format!("write:{allowed}"),
        format!("open:{secret}"),
    ];
    let mut agent = Agent::spawn(&ops, true);
    backend
        .register(agent.pid, agent_id, 7)
        .expect("register agent");
    agent.start();

    // allow
    let r = agent.step();
    assert_eq!(r.errno, 0, "allowed read must succeed: {r:?}");
    // deny (explicit deny rule)
    let r = agent.step();
    assert_eq!(r.errno, EPERM, "explicit deny must give EPERM: {r:?}");
    let deny_rule = rule_id(&compiled, &format!("{}/secret.txt", dir.path().display()));
    let e = events::wait_for(&mut backend, "deny of secret.txt", |e| {
        e.header.op == OP_OPEN && e.header.verdict == VERDICT_DENY && events::target(e) == secret
    });
    assert_eq!(e.header.rule, deny_rule, "event names the deny rule");
    assert_eq!(e.header.tgid, agent.pid, "event names the agent process");
    assert_eq!(e.header.chain[0], agent_id, "event names the agent");
    assert_eq!(e.header.session, 7, "event carries the session");
    assert_eq!(e.header.policy_version, 1);
    assert_eq!(e.header.access, ACCESS_READ);
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::Open {
            path: secret.clone(),
            read: true,
            write: false,
        },
    );
    assert_eq!(
        (oracle.verdict, oracle.rule),
        (Verdict::Deny, e.header.rule),
        "kernel == reference evaluator"
    );
    // default deny (no rule matches)
    let r = agent.step();
    assert_eq!(
        r.errno, EPERM,
        "a path no rule allows is denied by default: {r:?}"
    );
    let e = events::wait_for(&mut backend, "default deny of a path no rule names", |e| {
        events::target(e) == outside
    });
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    // write needs write permission
    let r = agent.step();
    assert_eq!(
        r.errno, EPERM,
        "read permission does not allow writing: {r:?}"
    );
    let e = events::wait_for(&mut backend, "write deny", |e| {
        events::target(e) == allowed && e.header.access & ACCESS_WRITE != 0
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);

    // Non-agents are unaffected.
    std::fs::read(&secret).expect("the test process (not an agent) reads the secret");

    // detach: dropping the backend detaches the programs; the same process may now open it.
    drop(backend);
    let r = agent.step();
    assert_eq!(r.errno, 0, "after detach the open succeeds: {r:?}");
    agent.finish();
    println!("checked: allow, explicit deny (EPERM + event + rule id == oracle), default deny, write deny, non-agent unaffected, detach");
}

#[test]
fn audit_mode_logs_but_never_blocks() {
    let Some(mut backend) = lsm_or_na("lsm_file_open::audit_mode_logs_but_never_blocks") else {
        return;
    };
    let dir = TempDir::new("file-audit");
    let secret = dir.file("secret.txt", "secret");
    let compiled = compile(&policy(&dir.path().display().to_string(), "audit"));
    let agent_id = compiled.agent_by_name("file-agent").expect("agent").id;
    backend.apply(&compiled, 3).expect("apply");
    let agent = Agent::spawn(&[format!("open:{secret}")], false);
    backend.register(agent.pid, agent_id, 9).expect("register");
    let pid = agent.pid;
    let r = agent.go(1);
    assert_eq!(r[0].errno, 0, "audit mode never blocks: {:?}", r[0]);
    let e = events::wait_for(&mut backend, "audit-deny event", |e| {
        e.header.tgid == pid && events::target(e) == secret
    });
    assert_eq!(e.header.verdict, VERDICT_AUDIT_DENY, "logged as would-deny");
    assert_eq!(e.header.policy_version, 3);
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::Open {
            path: secret.clone(),
            read: true,
            write: false,
        },
    );
    assert_eq!(
        (oracle.verdict, oracle.rule),
        (Verdict::AuditDeny, e.header.rule)
    );
    println!("checked: audit mode open allowed, AUDIT_DENY event with the deny rule");
}
