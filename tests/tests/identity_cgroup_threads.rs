//! Identity beyond fork/exec, on both backends: a process in a `match.cgroup` cgroup becomes
//! that agent at its first hooked operation (a JOIN event), stays the agent after moving itself
//! back out of the cgroup, and a new thread of an agent process is the agent too. The LSM
//! backend refuses with EPERM; the fallback (on_violation = "audit") logs would-deny - the
//! identity in the events is the same.

use std::process::Command;

use enforcer::kernel::{cgroup2_mount, Backend};
use enforcer_common::*;
use enforcer_tests::{events, fallback, lsm_or_na, Agent, TempDir, EPERM};

struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let dir = cgroup2_mount().expect("cgroup2 mounted").join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `deny_verdict`: VERDICT_DENY (LSM) or VERDICT_AUDIT_DENY (fallback, audit).
fn run(backend: &mut dyn Backend, lsm: bool, test: &str) {
    let deny_verdict = if lsm {
        VERDICT_DENY
    } else {
        VERDICT_AUDIT_DENY
    };
    let dir = TempDir::new("cg-threads");
    let d = dir.path().display().to_string();
    let secret = dir.file("secret.txt", "secret");
    let readable = dir.file("readable.txt", "ok");
    let bb = std::fs::canonicalize(enforcer_tests::fixtures::busybox())
        .unwrap()
        .display()
        .to_string();
    let cg_name = format!("enforcer-test-{}", std::process::id());
    let cg = Cgroup::new(&cg_name);
    let root_procs = cgroup2_mount()
        .unwrap()
        .join("cgroup.procs")
        .display()
        .to_string();
    let set = enforcer::policy::load_sources(&[
        (
            "cg.toml",
            &format!(
                "[agent]\nname = \"cg-agent\"\nlog.file_allow = true\nmatch.cgroup = [\"/{cg_name}\"]\n[file]\nread = [\"{d}/readable.txt\", \"{bb}\", \"/etc/**\", \"/proc/**\"]\nwrite = [\"{root_procs}\"]\n[exec]\nallow = [\"{bb}\"]\n"
            ),
        ),
        (
            "t.toml",
            &format!("[agent]\nname = \"thread-agent\"\n[file]\nread = [\"{d}/readable.txt\"]\n"),
        ),
    ])
    .unwrap_or_else(|e| panic!("policy: {e}"));
    let compiled = enforcer::policy::compile(&set, &enforcer::policy::ResolvedHosts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let cg_agent = compiled.agent_by_name("cg-agent").unwrap().id;
    let thread_agent = compiled.agent_by_name("thread-agent").unwrap().id;
    backend.apply(&compiled, 1).expect("apply");

    // 1. cgroup match: a non-agent shell moves itself into the cgroup, then reads; then moves
    //    itself back to the root cgroup and reads the secret: still the agent.
    let script = format!(
        "echo $$ > {cg}/cgroup.procs && {bb} cat {readable} && echo $$ > {root_procs} && {bb} cat {secret}",
        cg = cg.0.display()
    );
    let out = Command::new(&bb)
        .args(["sh", "-c", &script])
        .output()
        .expect("run sh");
    let joined = events::wait_for(backend, "cgroup join", |e| {
        e.header.op == OP_JOIN && e.header.chain[0] == cg_agent
    });
    assert_eq!(joined.header.access, JOIN_CGROUP, "joined by its cgroup");
    let e = events::wait_for(backend, "secret read after leaving the cgroup", |e| {
        events::target(e) == secret && e.header.chain[0] == cg_agent
    });
    assert_eq!(
        e.header.verdict, deny_verdict,
        "still the agent after moving out of its cgroup"
    );
    if lsm {
        assert!(
            !out.status.success(),
            "the read after leaving must fail with EPERM: {out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "{out:?}"
        );
    }
    let e = events::wait_for(backend, "allowed read in the cgroup", |e| {
        events::target(e) == readable && e.header.chain[0] == cg_agent
    });
    assert_eq!(e.header.verdict, VERDICT_ALLOW);
    // Adversarial case 8 (docs/testing.md): writing its pid into another cgroup does not shed the identity.
    enforcer_tests::adversarial::pass(
        "8-identity/cgroup-move",
        if lsm { "lsm" } else { "fallback" },
    );

    // 2. Threads: a new thread of an agent process is the agent.
    let ops = vec![
        format!("thread-open:{readable}"),
        format!("thread-open:{secret}"),
        format!("open:{secret}"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend
        .register(agent.pid, thread_agent, 44)
        .expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    assert_eq!(r[0].errno, 0, "{:?}", r[0]);
    if lsm {
        assert_eq!(
            r[1].errno, EPERM,
            "a thread of the agent is confined: {:?}",
            r[1]
        );
    }
    let e = events::wait_for(backend, "thread's denied open", |e| {
        e.header.tgid == pid && e.header.pid != pid && events::target(e) == secret
    });
    assert_eq!(e.header.verdict, deny_verdict);
    assert_eq!(e.header.chain[0], thread_agent, "the thread is the agent");
    assert_eq!(e.header.session, 44, "and shares the session");
    println!("{test}: checked cgroup join (JOIN event), membership kept after leaving the cgroup, threads inherit agent and session");
}

#[test]
fn lsm() {
    let Some(mut backend) = lsm_or_na("identity_cgroup_threads::lsm") else {
        return;
    };
    run(&mut backend, true, "identity_cgroup_threads::lsm");
}

#[test]
fn fallback_backend() {
    let mut backend = fallback("identity_cgroup_threads::fallback_backend");
    run(
        &mut backend,
        false,
        "identity_cgroup_threads::fallback_backend",
    );
}
