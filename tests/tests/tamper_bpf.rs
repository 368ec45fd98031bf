//! Tampering through bpf(): an agent may never call it (with CAP_BPF it could get the pinned
//! maps - BPF_OBJ_GET opens no file, so file rules never see it - and edit its own rules or
//! identity). BPF LSM refuses with EPERM (`bpf` hook); the fallback kills (on_violation =
//! "kill") or logs. A process that is not an agent is unaffected.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::kernel::Backend;
use enforcer_common::*;
use enforcer_tests::{compile, events, fallback, lsm_or_na, Agent, EPERM};

const BPF_PROG_GET_NEXT_ID: u32 = 11;

#[test]
fn lsm() {
    let Some(mut backend) = lsm_or_na("tamper_bpf::lsm") else {
        return;
    };
    let compiled = compile("[agent]\nname = \"bpf-agent\"\n");
    let agent_id = compiled.agent_by_name("bpf-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let agent = Agent::spawn(&["bpf:-".to_string()], false);
    backend.register(agent.pid, agent_id, 81).expect("register");
    let pid = agent.pid;
    let r = agent.go(1);
    assert_eq!(
        r[0].errno, EPERM,
        "an agent's bpf() must be refused: {:?}",
        r[0]
    );
    let e = events::wait_for(&mut backend, "bpf deny", |e| {
        e.header.tgid == pid && e.header.op == OP_BPF
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);
    assert_eq!(
        e.header.open_flags, BPF_PROG_GET_NEXT_ID,
        "the event names the bpf command"
    );
    let other = Agent::spawn(&["bpf:-".to_string()], false);
    assert_eq!(other.go(1)[0].errno, 0, "a non-agent's bpf() is unaffected");
    enforcer_tests::adversarial::pass("11-tamper/bpf-call", "lsm");
    println!("checked: bpf() by an agent refused with EPERM and logged with its command; non-agent unaffected");
}

#[test]
fn fallback_backend() {
    let mut backend = fallback("tamper_bpf::fallback_backend");
    let set = enforcer::policy::load_sources(&[
        (
            "a.toml",
            "[agent]\nname = \"bpf-audit\"\non_violation = \"audit\"\n",
        ),
        (
            "k.toml",
            "[agent]\nname = \"bpf-kill\"\non_violation = \"kill\"\n",
        ),
    ])
    .unwrap_or_else(|e| panic!("policy: {e}"));
    let compiled = enforcer::policy::compile(&set, &enforcer::policy::ResolvedHosts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let audit_id = compiled.agent_by_name("bpf-audit").unwrap().id;
    let kill_id = compiled.agent_by_name("bpf-kill").unwrap().id;
    backend.apply(&compiled, 1).expect("apply");
    // Audit: the call happens, the event says audit-deny.
    let agent = Agent::spawn(&["bpf:-".to_string()], false);
    backend.register(agent.pid, audit_id, 82).expect("register");
    let pid = agent.pid;
    assert_eq!(agent.go(1)[0].errno, 0, "audit mode never refuses");
    let e = events::wait_for(&mut backend, "bpf audit-deny", |e| {
        e.header.tgid == pid && e.header.op == OP_BPF
    });
    assert_eq!(e.header.verdict, VERDICT_AUDIT_DENY);
    // Kill: the agent dies at the call, before it can use its answer.
    let agent = Agent::spawn(&["bpf:-".to_string(), "open:/".to_string()], false);
    backend.register(agent.pid, kill_id, 83).expect("register");
    let pid = agent.pid;
    let (done, status) = agent.go_until_exit();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "a kill-mode agent calling bpf() is killed: {done:?} {status:?}"
    );
    assert!(
        done.len() <= 1 && done.iter().all(|r| r.op == "bpf"),
        "nothing after the bpf() call ran: {done:?}"
    );
    let e = events::wait_for(&mut backend, "bpf kill", |e| {
        e.header.tgid == pid && e.header.op == OP_BPF
    });
    assert_eq!(e.header.verdict, VERDICT_KILL);
    let other = Agent::spawn(&["bpf:-".to_string()], false);
    assert_eq!(other.go(1)[0].errno, 0, "a non-agent's bpf() is unaffected");
    enforcer_tests::adversarial::pass("11-tamper/bpf-call", "fallback");
    println!("checked: bpf() by an audit agent logged as audit-deny, by a kill agent killed before its next operation; non-agent unaffected");
}
