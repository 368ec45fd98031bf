//! Adversarial case 13: an agent acts through a process outside its own agent chain (its
//! launching shell, another session, any non-agent of the same uid): ptrace attach and seize,
//! `/proc/<pid>/mem`, process_vm_readv/writev, pidfd_getfd, PTRACE_TRACEME towards a non-agent
//! parent, and TIOCSTI/TIOCLINUX on a terminal.
//! BPF LSM: each is refused (EPERM; EACCES for /proc/<pid>/mem, which the kernel maps so) with
//! one event naming the agent, `default-deny` and the target process; an agent tracing its own
//! children still works, and a non-agent is not affected.
//! Fallback: seen at syscall entry: kill mode kills the agent (event `kill`), audit mode logs
//! (`audit-deny`) and the call goes through (the documented limitation); `/proc/<pid>/mem` is
//! judged by the file rules on its path only.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::kernel::{Backend, RawEvent};
use enforcer_common::*;
use enforcer_tests::{adversarial, events, fallback, lsm_or_na, Agent, EPERM};

/// One agent per mode. The agent may use ptys and /proc (so the refusals below are the process
/// hooks', not the file rules').
fn policy() -> enforcer::policy::compile::CompiledPolicy {
    let agent = |name: &str, on_violation: &str| {
        format!(
            r#"
[agent]
name = "{name}"
on_violation = "{on_violation}"

[file]
read = ["/dev/ptmx", "/dev/pts/**", "/proc/**"]
write = ["/dev/ptmx", "/dev/pts/**", "/proc/**"]
"#
        )
    };
    enforcer_tests::compile_files(&[
        ("kill.toml", &agent("adv-proc", "kill")),
        ("audit.toml", &agent("adv-proc-audit", "audit")),
    ])
}

fn agent_id(p: &enforcer::policy::compile::CompiledPolicy, name: &str) -> u32 {
    p.agent_by_name(name).expect("agent").id
}

/// The denied attempts against process `victim` (a non-agent), `other` (the same agent in
/// another session) and `harness` (this test, the agent's parent): (case, operation, event op,
/// the target pid in the event or 0 for a terminal).
fn attempts(victim: u32, other: u32, harness: u32) -> Vec<(&'static str, String, u32, u32)> {
    vec![
        ("attach", format!("ptrace:{victim}"), OP_PTRACE, victim),
        ("seize", format!("seize:{victim}"), OP_PTRACE, victim),
        ("proc-mem", format!("memw:{victim}"), OP_PTRACE, victim),
        ("vm-read", format!("vmread:{victim}"), OP_PTRACE, victim),
        ("vm-write", format!("vmwrite:{victim}"), OP_PTRACE, victim),
        ("pidfd-getfd", format!("getfd:{victim}"), OP_PTRACE, victim),
        ("other-session", format!("seize:{other}"), OP_PTRACE, other),
        ("traceme", "traceme:-".into(), OP_PTRACE, harness),
        ("tiocsti", "tiocsti:-".into(), OP_TTY_INJECT, 0),
        ("tioclinux", "tioclinux:-".into(), OP_TTY_INJECT, 0),
    ]
}

fn summary(evs: &[RawEvent]) -> Vec<(u32, u32, u32, String)> {
    evs.iter()
        .map(|e| {
            (
                e.header.op,
                e.header.verdict,
                e.header.rule,
                events::target(e),
            )
        })
        .collect()
}

/// The one event of `case` among `evs`: its op, and for a process target the target's pid.
fn the_event<'a>(case: &str, evs: &'a [RawEvent], op: u32, target: u32) -> &'a RawEvent {
    let matching: Vec<&RawEvent> = evs
        .iter()
        .filter(|e| {
            e.header.op == op
                && (target == 0 || events::target(e).split(' ').next() == Some(&target.to_string()))
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{case}: exactly one event for the attempt: {:?}",
        summary(evs)
    );
    matching[0]
}

#[test]
fn lsm_process_access() {
    let Some(mut backend) = lsm_or_na("adversarial_process::lsm_process_access") else {
        return;
    };
    let compiled = policy();
    let id = agent_id(&compiled, "adv-proc");
    backend.apply(&compiled, 1).expect("apply");
    let mut victim = Agent::spawn(&[], true);
    victim.start();
    let mut other = Agent::spawn(&[], true);
    backend.register(other.pid, id, 1302).expect("register");
    other.start();
    let mut agent = Agent::spawn(&[], true);
    backend.register(agent.pid, id, 1301).expect("register");
    agent.start();
    let pid = agent.pid;
    let mut seen = 0;
    for (case, op, ev_op, target) in attempts(victim.pid, other.pid, std::process::id()) {
        let r = agent.op(&op);
        let evs = events::since(&mut backend, &mut seen, pid);
        // /proc/<pid>/mem: mm_access turns the refusal into EACCES.
        let want = if case == "proc-mem" {
            libc::EACCES
        } else {
            EPERM
        };
        assert_eq!(r.errno, want, "{case}: {r:?}; events {:?}", summary(&evs));
        // Kernels with pidfs (6.9+) open a pidfd through file_open: pidfd_open itself is refused
        // by the file rules (no rule names `anon_inode:[pidfd]`), before pidfd_getfd is asked.
        if case == "pidfd-getfd"
            && evs.iter().any(|e| {
                e.header.op == OP_OPEN
                    && e.header.verdict == VERDICT_DENY
                    && events::target(e) == "anon_inode:[pidfd]"
            })
        {
            println!("{case}: pidfd_open refused by file_open (pidfs)");
            adversarial::pass(&format!("13-process/{case}"), "lsm");
            continue;
        }
        let e = the_event(case, &evs, ev_op, target);
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_DENY, RULE_DEFAULT_DENY, id),
            "{case}: verdict, rule, agent"
        );
        if target != 0 {
            // `<pid> (<comm>)`: try-ops is `enforcer-testkit` (comm cut to 15 bytes), the harness
            // its test binary.
            let t = events::target(e);
            assert!(
                t.starts_with(&format!("{target} ("))
                    && t.ends_with(')')
                    && (case == "traceme" || t.ends_with("(enforcer-testki)")),
                "{case}: the event names the target process: {t:?}"
            );
        } else {
            assert!(
                events::target(e).starts_with("/dev/pts/"),
                "{case}: the event names the terminal: {:?}",
                events::target(e)
            );
        }
        println!(
            "{case}: errno {} event {:?}",
            r.errno,
            summary(std::slice::from_ref(e))
        );
        adversarial::pass(&format!("13-process/{case}"), "lsm");
    }
    // Its own chain: a debugger inside the agent traces its children.
    for op in ["trace-child:-", "traceme-child:-"] {
        let r = agent.op(op);
        assert_eq!(r.errno, 0, "{op}: an agent may trace its own child: {r:?}");
    }
    // A non-agent is not affected: it reads an agent's memory (EFAULT: allowed, unmapped
    // address), pushes a character into a pty, traces its child.
    for (op, want) in [
        (format!("vmread:{pid}"), libc::EFAULT),
        ("tiocsti:-".to_string(), 0),
        ("trace-child:-".to_string(), 0),
    ] {
        let r = victim.op(&op);
        assert_eq!(r.errno, want, "non-agent {op}: {r:?}");
    }
    let vpid = victim.pid;
    assert!(
        !events::drain_all(&mut backend)
            .iter()
            .any(|e| e.header.tgid == vpid),
        "no event for a non-agent"
    );
    agent.finish();
    other.finish();
    victim.finish();
    events::assert_nothing_lost(&backend);
    println!("checked: ptrace attach/seize, /proc/pid/mem, process_vm_readv/writev, pidfd_getfd into a non-agent and into another session, PTRACE_TRACEME to a non-agent parent, TIOCSTI/TIOCLINUX: refused with one deny event each (agent, default-deny, target); own children traceable; non-agents unaffected");
}

/// After a kill-mode attach the victim may hold the SIGSTOP PTRACE_ATTACH queued: let it run.
fn resume(pid: u32) {
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
}

#[test]
fn fallback_process_access() {
    let mut backend = fallback("adversarial_process::fallback_process_access");
    match backend.features().iter().find(|(n, _)| n == "process-ops") {
        Some((_, Err(why))) => assert!(why.contains("not refused"), "process-ops: {why}"),
        other => panic!("the fallback must say what it does with process calls: {other:?}"),
    }
    let compiled = policy();
    let (kill_id, audit_id) = (
        agent_id(&compiled, "adv-proc"),
        agent_id(&compiled, "adv-proc-audit"),
    );
    backend.apply(&compiled, 1).expect("apply");
    let mut victim = Agent::spawn(&[], true);
    victim.start();
    let mut other = Agent::spawn(&[], true);
    backend
        .register(other.pid, kill_id, 1402)
        .expect("register");
    other.start();
    let mut session = 1410;
    for (case, op, ev_op, target) in attempts(victim.pid, other.pid, std::process::id()) {
        let agent = Agent::spawn(std::slice::from_ref(&op), false);
        session += 1;
        backend
            .register(agent.pid, kill_id, session)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        resume(victim.pid);
        resume(other.pid);
        if case == "proc-mem" {
            // No syscall to see: the open of /proc/<pid>/mem is judged by the file rules, and
            // this policy allows /proc.
            assert!(
                status.success() && results[0].errno == 0,
                "{case}: the documented limitation: {results:?}"
            );
            adversarial::limitation(&format!("13-process/{case}"), "fallback", "/proc/<pid>/mem is an open: judged by the file rules on its path only (a policy that allows /proc/** allows it)");
            continue;
        }
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{case}: the agent must be killed at entry: {results:?}"
        );
        let e = events::wait_for(&mut backend, case, |e| {
            e.header.tgid == pid && e.header.op == ev_op
        });
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_KILL, RULE_DEFAULT_DENY, kill_id),
            "{case}: verdict, rule, agent"
        );
        if target != 0 && case != "pidfd-getfd" {
            assert_eq!(events::target(&e), target.to_string(), "{case}: target pid");
        }
        adversarial::pass(&format!("13-process/{case}"), "fallback");
    }
    // Its own chain: allowed, the agent lives.
    let agent = Agent::spawn(&["trace-child:-".into(), "traceme-child:-".into()], false);
    session += 1;
    backend
        .register(agent.pid, kill_id, session)
        .expect("register");
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success() && results.iter().all(|r| r.errno == 0),
        "an agent may trace its own children: {results:?}"
    );
    // Audit mode: logged, not refused.
    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, audit_id, 1499)
        .expect("register");
    agent.start();
    let pid = agent.pid;
    let mut seen = events::drain_all(&mut backend).len();
    for (case, op, want) in [
        ("seize", format!("seize:{}", victim.pid), 0),
        ("vm-read", format!("vmread:{}", victim.pid), libc::EFAULT),
        ("pidfd-getfd", format!("getfd:{}", victim.pid), 0),
        ("tiocsti", "tiocsti:-".to_string(), 0),
    ] {
        let r = agent.op(&op);
        assert_eq!(r.errno, want, "{case} (audit): goes through: {r:?}");
        let evs = events::since(&mut backend, &mut seen, pid);
        let op = if case == "tiocsti" {
            OP_TTY_INJECT
        } else {
            OP_PTRACE
        };
        let e = the_event(case, &evs, op, 0);
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_AUDIT_DENY, RULE_DEFAULT_DENY, audit_id),
            "{case}: verdict, rule, agent"
        );
        adversarial::limitation(&format!("13-process/{case}-no-kill"), "fallback", "tracepoints cannot refuse: with on_violation = \"audit\" the call goes through and is logged as audit-deny");
    }
    agent.finish();
    other.finish();
    victim.finish();
    events::assert_nothing_lost(&backend);
    println!("checked: process-ops reported; kill mode: every attempt killed at syscall entry with one kill event (agent, default-deny, target pid), /proc/pid/mem left to the file rules (limitation), own children traceable; audit mode: logged and not refused (limitation)");
}
