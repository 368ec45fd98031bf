//! Every kind of BPF LSM hook (exec, connect, sendmsg, unlink, rename, mkdir, open) through the
//! same sequence: audit mode (the operation happens, the event says audit-deny with the rule) ->
//! enforce (EPERM and a deny event) -> the programs detached (the same process does it again and
//! it works). lsm_file_open does the same for opens with allow rules in between.

use std::net::{TcpListener, UdpSocket};

use enforcer::kernel::Backend;
use enforcer_common::*;
use enforcer_tests::{compile, events, lsm_or_na, Agent, TempDir, EPERM};

fn policy(mode: &str) -> String {
    // No rules: everything the agent does is a default deny.
    format!("[agent]\nname = \"modes-agent\"\nmode = \"{mode}\"\n")
}

/// The operations, each once per phase, in a fresh directory per phase: (try-ops op, event op,
/// event target or None for network).
fn ops(
    dir: &TempDir,
    bb: &str,
    tcp: u16,
    udp: u16,
    phase: &str,
) -> Vec<(String, u32, Option<String>)> {
    let f = dir.file(&format!("{phase}/victim"), "x");
    let g = dir.file(&format!("{phase}/moved"), "x");
    let nd = dir.join(&format!("{phase}/newdir"));
    vec![
        (format!("exec:{bb},true"), OP_EXEC, Some(bb.to_string())),
        (format!("connect:127.0.0.1:{tcp}"), OP_CONNECT, None),
        (format!("udp:127.0.0.1:{udp}"), OP_SENDMSG, None),
        (format!("open:{f}"), OP_OPEN, Some(f.clone())),
        (format!("unlink:{f}"), OP_UNLINK, Some(f.clone())),
        (format!("rename:{g},{g}2"), OP_RENAME, Some(g.clone())),
        (format!("mkdir:{nd}"), OP_MKDIR, Some(nd.clone())),
    ]
}

#[test]
fn audit_enforce_detach() {
    let Some(mut backend) = lsm_or_na("lsm_every_hook_modes::audit_enforce_detach") else {
        return;
    };
    let bb = std::fs::canonicalize(enforcer_tests::fixtures::busybox())
        .unwrap()
        .display()
        .to_string();
    let tcp = TcpListener::bind("127.0.0.1:0").expect("listen");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (tp, up) = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let dir = TempDir::new("modes");
    let audit_ops = ops(&dir, &bb, tp, up, "audit");
    let enforce_ops = ops(&dir, &bb, tp, up, "enforce");
    let detached_ops = ops(&dir, &bb, tp, up, "detached");

    // Audit mode: everything happens, every operation logged as audit-deny.
    let compiled = compile(&policy("audit"));
    let agent_id = compiled.agent_by_name("modes-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply audit");
    let list: Vec<String> = audit_ops.iter().map(|o| o.0.clone()).collect();
    let agent = Agent::spawn(&list, false);
    backend.register(agent.pid, agent_id, 61).expect("register");
    let pid = agent.pid;
    for (res, (op, ev_op, target)) in agent.go(list.len()).iter().zip(&audit_ops) {
        assert_eq!(res.errno, 0, "audit mode never blocks: {op}: {res:?}");
        let e = events::wait_for(&mut backend, &format!("audit-deny of {op}"), |e| {
            (e.header.tgid == pid || e.header.ppid == pid)
                && e.header.op == *ev_op
                && target.as_ref().is_none_or(|t| events::target(e) == *t)
                && e.header.verdict == VERDICT_AUDIT_DENY
        });
        assert_eq!(e.header.rule, RULE_DEFAULT_DENY, "{op}");
    }

    // Enforce: the same operations (fresh targets) fail with EPERM, logged as deny.
    let compiled = compile(&policy("enforce"));
    backend.apply(&compiled, 2).expect("apply enforce");
    let mut list: Vec<String> = enforce_ops.iter().map(|o| o.0.clone()).collect();
    list.extend(detached_ops.iter().map(|o| o.0.clone()));
    let mut agent = Agent::spawn(&list, true);
    backend.register(agent.pid, agent_id, 62).expect("register");
    let pid = agent.pid;
    agent.start();
    for (op, ev_op, target) in &enforce_ops {
        let res = agent.step();
        assert_eq!(res.errno, EPERM, "enforce mode refuses {op}: {res:?}");
        let e = events::wait_for(&mut backend, &format!("deny of {op}"), |e| {
            (e.header.tgid == pid || e.header.ppid == pid)
                && e.header.op == *ev_op
                && target.as_ref().is_none_or(|t| events::target(e) == *t)
                && e.header.verdict == VERDICT_DENY
        });
        assert_eq!(
            e.header.policy_version, 2,
            "{op}: events carry the policy version"
        );
    }

    // Detach: dropping the backend removes the programs; the same process now succeeds.
    drop(backend);
    for (op, _, _) in &detached_ops {
        let res = agent.step();
        assert_eq!(res.errno, 0, "after detach {op} works again: {res:?}");
    }
    agent.finish();
    println!("checked: exec, connect, sendmsg, open, unlink, rename, mkdir: audit (happens, audit-deny event) -> enforce (EPERM, deny event, version 2) -> detach (works)");
}
