//! Identity escapes (adversarial case 8, docs/testing.md) that need no daemon, on either backend (run at the end of
//! `lsm_identity` and `fallback_identity`, which already loaded one):
//!
//! - **new namespaces**: an agent unshares user, mount, pid and network namespaces (mapped to
//!   root in its own user namespace, pid 1 of its own pid namespace) and reads a denied file.
//!   Identity is kept by the kernel's global thread id, not by anything the namespaces change:
//!   it is still the agent, the read is refused (EPERM / killed), and the event names the agent,
//!   its session and the pid the host sees (not its pid inside the namespace).
//! - **pid reuse**: an agent exits; a process that is no agent gets exactly its pid
//!   (`ns_last_pid`) and reads the same file: allowed, no event. The exit tracepoint removed the
//!   dead agent's `PROCS` entry before its pid could be freed.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::kernel::Backend;
use enforcer_common::*;

use crate::{adversarial, compile, events, Agent, TempDir, EPERM};

pub fn unshare_and_pid_reuse(backend: &mut dyn Backend, lsm: bool) {
    let name = if lsm { "lsm" } else { "fallback" };
    let dir = TempDir::new(&format!("identity-escape-{name}"));
    let d = dir.path().display().to_string();
    let secret = dir.file("secret.txt", "secret");
    let bb = dir.busybox("bin/busybox");
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch");
    let on_violation = if lsm { "audit" } else { "kill" };
    // Reads and writes under /proc: busybox unshare writes its uid/gid maps there. The
    // namespaces (and busybox unshare's propagation change, a mount) are allowed: what is tested
    // here is the identity inside them (tests/tests/adversarial_mounts.rs refuses them).
    let compiled = compile(&format!(
        r#"
[agent]
name = "ns-agent"
on_violation = "{on_violation}"

[process]
mount = true
userns = true

[file]
read = ["{d}/bin/**", "/proc/**"]
write = ["{d}/scratch/**", "/proc/**"]

[exec]
allow = ["{d}/bin/**"]
"#
    ));
    let agent_id = compiled.agent_by_name("ns-agent").expect("agent").id;
    backend.apply(&compiled, 2).expect("apply");
    let deny_verdict = if lsm { VERDICT_DENY } else { VERDICT_KILL };

    // New user, mount, pid and network namespaces; the shell is pid 1 of its pid namespace and
    // writes the pid the host sees (procfs is still the host's) before it execs cat.
    let hostpid_file = format!("{d}/scratch/hostpid");
    let script = format!("read hostpid rest < /proc/self/stat; echo $hostpid $$ > {hostpid_file}; exec {bb} cat {secret}");
    let op = format!("exec:{bb},unshare,-r,-m,-p,-n,-f,{bb},sh,-c,{script}");
    let agent = Agent::spawn(std::slice::from_ref(&op), false);
    backend.register(agent.pid, agent_id, 91).expect("register");
    let launcher = agent.pid;
    let r = agent.go(1);
    assert_ne!(
        r[0].result, "ok",
        "the read from inside the new namespaces must fail: {:?}",
        r[0]
    );
    let written = std::fs::read_to_string(&hostpid_file).unwrap_or_else(|e| {
        panic!(
            "{hostpid_file}: {e} (the unshared shell did not run?) {:?}",
            r[0]
        )
    });
    let mut pids = written
        .split_whitespace()
        .map(|p| p.parse::<u32>().expect("pid"));
    let (host_pid, ns_pid) = (
        pids.next().expect("host pid"),
        pids.next().expect("namespace pid"),
    );
    assert_eq!(ns_pid, 1, "the shell is pid 1 of its own pid namespace");
    let e = events::wait_for(backend, "the namespaced read", |e| {
        events::target(e) == secret && e.header.op == OP_OPEN
    });
    assert_eq!(
        e.header.verdict, deny_verdict,
        "decided like any other read of the agent"
    );
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    assert_eq!(
        (e.header.chain[0], e.header.depth),
        (agent_id, 1),
        "the event names the agent"
    );
    assert_eq!(e.header.session, 91, "and its session");
    assert_eq!(
        e.header.tgid, host_pid,
        "the event names the pid the host sees (not {ns_pid})"
    );
    assert_ne!(e.header.tgid, launcher, "the reader is a descendant");
    adversarial::pass("8-identity/unshare-user-mount-pid-net", name);

    // Pid reuse: the agent exits (EPERM, or killed), then a non-agent gets its pid.
    let agent = Agent::spawn(&[format!("open:{secret}")], false);
    backend.register(agent.pid, agent_id, 92).expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    if lsm {
        assert_eq!(results[0].errno, EPERM, "the agent's read: {results:?}");
    } else {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the agent is killed at its read: {results:?}"
        );
    }
    let e = events::wait_for(backend, "the dead agent's read", |e| {
        e.header.tgid == pid && events::target(e) == secret
    });
    assert_eq!(
        (e.header.verdict, e.header.chain[0], e.header.session),
        (deny_verdict, agent_id, 92)
    );
    assert_eq!(
        backend.proc_state(pid).expect("PROCS lookup"),
        None,
        "the exit removed the agent's entry"
    );
    let reuser = Agent::spawn_with_pid(pid, &[format!("open:{secret}")], false)
        .unwrap_or_else(|| panic!("could not get pid {pid} again through ns_last_pid"));
    assert_eq!(
        backend.proc_state(pid).expect("PROCS lookup"),
        None,
        "the process with the recycled pid is no agent"
    );
    let r = reuser.go(1);
    assert_eq!(
        r[0].errno, 0,
        "a non-agent with a dead agent's pid reads freely: {:?}",
        r[0]
    );
    let all = events::drain_all(backend);
    let of_pid: Vec<_> = all.iter().filter(|e| e.header.tgid == pid).collect();
    assert_eq!(
        of_pid.len(),
        1,
        "only the dead agent's read has an event for pid {pid}, not its successor's"
    );
    adversarial::pass("8-identity/pid-reuse", name);
    events::assert_nothing_lost(&*backend);
    println!("checked ({name}): an agent in new user/mount/pid/net namespaces is still the agent (event with the host pid {host_pid}, not {ns_pid}); a non-agent that got a dead agent's pid ({pid}) is no agent");
}
