//! Agent identity in the kernel, one body for both backends (run by `lsm_identity` and
//! `fallback_identity`): descendants inherit the agent (fork + exec), a non-agent that execs a
//! `match.exe` binary becomes that agent, and an agent cannot switch to another agent by exec'ing
//! that agent's binary. On the fallback both agents use `on_violation = "kill"`, so a denied
//! open kills the opener and is logged with verdict kill; on BPF LSM it is refused (deny).

use enforcer::kernel::Backend;
use enforcer_common::*;

use crate::{adversarial, events, Agent, TempDir};

pub fn descendants_inherit_exe_match_joins_no_switching(backend: &mut dyn Backend, lsm: bool) {
    let name = if lsm { "lsm" } else { "fallback" };
    let on_violation = if lsm { "" } else { "on_violation = \"kill\"\n" };
    let verdict = if lsm { VERDICT_DENY } else { VERDICT_KILL };
    let dir = TempDir::new("identity");
    let d = dir.path().display().to_string();
    let secret = dir.file("secret.txt", "secret");
    let readable = dir.file("readable.txt", "ok");
    // Two copies of busybox: one is agent B's own binary (match.exe).
    let tool = dir.join("bin/busybox");
    let b_exe = dir.join("b/busybox");
    for p in [&tool, &b_exe] {
        std::fs::create_dir_all(std::path::Path::new(p).parent().unwrap()).unwrap();
        std::fs::copy(crate::fixtures::busybox(), p).expect("copy busybox");
    }
    // A second policy file for agent B, matched by its executable.
    let set = enforcer::policy::load_sources(&[
        (
            "a.toml",
            &format!(
                "[agent]\nname = \"agent-a\"\n{on_violation}[file]\nread = [\"{d}/readable.txt\", \"{d}/bin/**\", \"{d}/b/**\"]\n[exec]\nallow = [\"{d}/bin/**\", \"{d}/b/**\"]\n"
            ),
        ),
        (
            "b.toml",
            &format!(
                "[agent]\nname = \"agent-b\"\n{on_violation}match.exe = [\"{b_exe}\"]\n[file]\nread = [\"{d}/**\"]\n[exec]\nallow = [\"{d}/**\"]\n"
            ),
        ),
    ])
    .unwrap_or_else(|e| panic!("policy: {e}"));
    let compiled = enforcer::policy::compile(&set, &enforcer::policy::ResolvedHosts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let a = compiled.agent_by_name("agent-a").unwrap().id;
    let b = compiled.agent_by_name("agent-b").unwrap().id;
    backend.apply(&compiled, 1).expect("apply");

    // 1. Descendants inherit: agent A runs `busybox cat secret` (fork + exec): denied in the child.
    let ops = vec![
        format!("exec:{tool},cat,{readable}"),
        format!("exec:{tool},cat,{secret}"),
        // 3. No switching: exec of agent B's binary keeps the process in agent A.
        format!("exec:{b_exe},cat,{secret}"),
        // 4. Double fork + setsid: a grandchild in a new session is still agent A.
        format!("exec:{tool},sh,-c,{tool} setsid {tool} cat {secret}; true"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, a, 21).expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    assert_eq!(
        r[0].errno, 0,
        "the child may read what A may read: {:?}",
        r[0]
    );
    assert_ne!(
        r[1].result, "ok",
        "the child (a descendant) must not read the secret: {:?}",
        r[1]
    );
    let e = events::wait_for(backend, "descendant's denied open", |e| {
        events::target(e) == secret && e.header.verdict == verdict
    });
    assert_ne!(
        e.header.tgid, pid,
        "the denied open came from the child process"
    );
    assert_eq!(e.header.chain[0], a, "the child is agent A");
    assert_eq!(
        e.header.session, 21,
        "the child shares the launcher's session"
    );
    assert_eq!(e.header.ppid, pid, "its parent is the agent process");
    assert_ne!(
        r[2].result, "ok",
        "exec of B's binary does not make A's child B (B could read it): {:?}",
        r[2]
    );
    let e = events::wait_for(backend, "no-switch denied open", |e| {
        events::target(e) == secret
            && e.header.verdict == verdict
            && e.header.chain[0] == a
            && e.header.tgid != pid
            && e.header.ppid == pid
    });
    assert_eq!(
        e.header.chain[0], a,
        "still agent A after exec'ing agent B's binary"
    );
    let e = events::wait_for(backend, "setsid grandchild's denied open", |e| {
        events::target(e) == secret
            && e.header.verdict == verdict
            && e.header.ppid != pid
            && e.header.tgid != pid
    });
    assert_eq!(
        e.header.chain[0], a,
        "a double-forked, setsid grandchild is still agent A"
    );
    assert_eq!(e.header.session, 21, "and keeps the launcher's session");
    adversarial::pass("8-identity/setsid-double-fork", name);

    // 2. Exe match: a non-agent (this test's child, never registered) execs B's binary and
    //    becomes agent B: B may read the secret, but not outside its directory.
    let out = std::process::Command::new(&b_exe)
        .args(["cat", &secret])
        .output()
        .expect("run B");
    assert!(out.status.success(), "agent B may read the secret: {out:?}");
    let out = std::process::Command::new(&b_exe)
        .args(["cat", "/proc/self/status"])
        .output()
        .expect("run B");
    assert!(
        !out.status.success(),
        "agent B is confined: it may not read /proc/self/status: {out:?}"
    );
    let e = events::wait_for(backend, "exe-matched join", |e| {
        e.header.op == OP_JOIN && e.header.chain[0] == b
    });
    assert_eq!(e.header.access, JOIN_EXE, "joined by its executable");
    events::wait_for(backend, "agent B's denied open", |e| {
        e.header.chain[0] == b && e.header.verdict == verdict && e.header.op == OP_OPEN
    });
    // The test process itself is no agent.
    std::fs::read(&secret).expect("non-agents are unaffected");
    crate::identity_escape::unshare_and_pid_reuse(backend, lsm);
    println!("checked: fork+exec descendants and setsid grandchildren inherit agent and session, exec of another agent's binary does not switch, match.exe joins a non-agent (JOIN event), non-agents unaffected; then new namespaces and pid reuse (identity_escape)");
}
