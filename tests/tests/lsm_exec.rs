//! BPF LSM `bprm_check_security`: exec allowed / denied by default / denied by an explicit rule,
//! scripts (read of the script + exec of its interpreter), EPERM to the caller and the decoded
//! event equal to the reference evaluator, then detach.

use enforcer::{
    kernel::Backend,
    policy::{
        compile::RuleKind,
        eval::{self, Request},
    },
};
use enforcer_common::*;
use enforcer_tests::{compile, events, fixtures::rule_id_of, lsm_or_na, Agent, TempDir, EPERM};

#[test]
fn allow_deny_script_detach() {
    let Some(mut backend) = lsm_or_na("lsm_exec::allow_deny_script_detach") else {
        return;
    };
    let dir = TempDir::new("exec");
    let d = dir.path().display().to_string();
    let allowed = dir.busybox("tools/busybox");
    let forbidden = dir.busybox("tools/forbidden");
    let elsewhere = dir.busybox("other/busybox");
    let script = dir.file("tools/script.sh", &format!("#!{allowed} sh\ntrue\n"));
    let bad_script = dir.file("tools/bad.sh", &format!("#!{elsewhere} sh\ntrue\n"));
    for s in [&script, &bad_script] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let compiled = compile(&format!(
        r#"
[agent]
name = "exec-agent"
log.file_allow = true

[file]
read = ["{d}/tools/**"]

[exec]
allow = ["{d}/tools/**"]
deny = ["{d}/tools/forbidden"]
"#
    ));
    let agent_id = compiled.agent_by_name("exec-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");

    let ops = vec![
        format!("exec:{allowed},true"),
        format!("exec:{elsewhere},true"),
        format!("exec:{forbidden},true"),
        format!("exec:{script}"),
        format!("exec:{bad_script}"),
        format!("exec:{elsewhere},true"),
    ];
    let mut agent = Agent::spawn(&ops, true);
    backend.register(agent.pid, agent_id, 11).expect("register");
    agent.start();

    let r = agent.step();
    assert_eq!(r.errno, 0, "allowed exec must run: {r:?}");
    let e = events::wait_for(&mut backend, "exec allow event", |e| {
        e.header.op == OP_EXEC && events::target(e) == allowed
    });
    assert_eq!(e.header.verdict, VERDICT_ALLOW, "exec allows are logged");
    assert_eq!(
        e.header.rule,
        rule_id_of(&compiled, RuleKind::ExecAllow, &format!("{d}/tools/**")),
        "allowed by the exec rule"
    );

    let r = agent.step();
    assert_eq!(
        r.errno, EPERM,
        "exec outside the allow list is denied: {r:?}"
    );
    let e = events::wait_for(&mut backend, "default-deny exec event", |e| {
        events::target(e) == elsewhere && e.header.verdict == VERDICT_DENY
    });
    assert_eq!(e.header.op, OP_EXEC);
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::Exec {
            path: elsewhere.clone(),
        },
    );
    assert_eq!(oracle.rule, e.header.rule, "kernel == reference evaluator");

    let r = agent.step();
    assert_eq!(r.errno, EPERM, "explicit exec deny beats the allow: {r:?}");
    let e = events::wait_for(&mut backend, "explicit exec deny", |e| {
        events::target(e) == forbidden
    });
    assert_eq!(
        e.header.rule,
        rule_id_of(
            &compiled,
            RuleKind::ExecDeny,
            &format!("{d}/tools/forbidden")
        )
    );
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::Exec {
            path: forbidden.clone(),
        },
    );
    assert_eq!(oracle.rule, e.header.rule, "kernel == reference evaluator");

    let r = agent.step();
    assert_eq!(
        r.errno, 0,
        "a script whose interpreter is allowed runs: {r:?}"
    );
    let e = events::wait_for(&mut backend, "script read event", |e| {
        events::target(e) == script
    });
    assert!(
        e.header.flags & EVENT_FLAG_SCRIPT != 0,
        "the script is checked as a read, flagged SCRIPT"
    );

    let r = agent.step();
    assert_eq!(
        r.errno, EPERM,
        "a script whose interpreter is not allowed is denied: {r:?}"
    );
    events::wait_for(&mut backend, "interpreter deny", |e| {
        events::target(e) == elsewhere && e.header.op == OP_EXEC && e.header.verdict == VERDICT_DENY
    });

    drop(backend);
    let r = agent.step();
    assert_eq!(r.errno, 0, "after detach the same exec runs: {r:?}");
    agent.finish();
    println!("checked: exec allow (+event), default deny, explicit deny beats allow, script via allowed/denied interpreter, detach");
}
