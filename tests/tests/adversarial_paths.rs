//! Adversarial case 6 (issue #8): an agent tries to reach a denied tree under another name.
//! Aliases the kernel resolves before the hooks run - a symlink into the tree,
//! `/proc/self/root/...`, a reopen through `/proc/self/fd/N` of a descriptor obtained before
//! the agent was confined, `openat` with a directory descriptor and `..`, a relative path from a
//! cwd - are judged on the canonical path: EPERM on BPF LSM, SIGKILL on the fallback in kill
//! mode, each with one event naming the agent and the deny rule. A bind mount in a new mount
//! namespace makes a *new name*: path rules are about names and mount(2) is not hooked, so a
//! privileged agent reads the tree under that name (asserted as the documented limitation,
//! docs/kernel-maps.md "Path aliases"). Then case 12's file side (tests/src/hostile.rs): paths at
//! and over PATH_MAX, odd bytes in names, a deleted file reopened.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::{kernel::Backend, policy::compile::RuleKind};
use enforcer_common::*;
use enforcer_tests::{adversarial, compile, events, fallback, fixtures::rule_id_of, lsm_or_na, Agent, TempDir, EPERM};

struct Setup {
    dir: TempDir,
    d: String,
    bb: String,
    compiled: enforcer::policy::compile::CompiledPolicy,
    agent_id: u32,
    deny_rule: u32,
}

/// `{d}/secret/<case>.txt` per case (so each event is told apart by its target), `{d}/pub/link`
/// -> `{d}/secret`, an empty mount point `{d}/mnt`, busybox at `{d}/bin/busybox`.
fn setup(name: &str, on_violation: &str) -> Setup {
    let dir = TempDir::new(name);
    let d = dir.path().display().to_string();
    for case in ["symlink", "procroot", "procfd", "openat", "relative", "bind"] {
        dir.file(&format!("secret/{case}.txt"), "secret\n");
    }
    dir.file("pub/ro.txt", "readable, not writable");
    std::os::unix::fs::symlink(format!("{d}/secret"), format!("{d}/pub/link")).expect("symlink");
    std::fs::create_dir_all(format!("{d}/mnt")).expect("mount point");
    let bb = dir.join("bin/busybox");
    std::fs::create_dir_all(format!("{d}/bin")).expect("bin");
    std::fs::copy(enforcer_tests::fixtures::busybox(), &bb).expect("copy busybox");
    let compiled = compile(&format!(
        r#"
[agent]
name = "adv-paths"
on_violation = "{on_violation}"
log.file_allow = true

[file]
read = ["{d}/pub/**", "{d}/mnt/**", "{d}/bin/**"]
deny = ["{d}/secret/**"]

[exec]
allow = ["{d}/bin/**"]
"#
    ));
    let agent_id = compiled.agent_by_name("adv-paths").expect("agent").id;
    let deny_rule = rule_id_of(&compiled, RuleKind::FileDeny, &format!("{d}/secret/**"));
    Setup { dir, d, bb, compiled, agent_id, deny_rule }
}

/// The alias attempts: (case, operations; the last one is the evasion, on `{d}/secret/<case>.txt`).
/// `procfd` is special: its `holdr` runs before the agent is registered.
fn attempts(s: &Setup) -> Vec<(&'static str, Vec<String>)> {
    let d = &s.d;
    vec![
        ("symlink", vec![format!("open:{d}/pub/link/symlink.txt")]),
        ("procroot", vec![format!("open:/proc/self/root{d}/secret/procroot.txt")]),
        ("openat", vec![format!("openat:{d}/pub,../secret/openat.txt")]),
        ("relative", vec![format!("chdir:{d}/pub"), "open:../secret/relative.txt".into()]),
    ]
}

/// The bind-mount attempt: a private mount namespace, the denied tree bind-mounted on an
/// allowed name, then read there.
fn bind_mount_op(s: &Setup) -> String {
    let (d, bb) = (&s.d, &s.bb);
    format!("exec:{bb},unshare,-m,--propagation,private,{bb},sh,-c,{bb} mount --bind {d}/secret {d}/mnt && {bb} cat {d}/mnt/bind.txt")
}

#[test]
fn lsm_path_aliases() {
    let test = "adversarial_paths::lsm_path_aliases";
    let Some(mut backend) = lsm_or_na(test) else { return };
    let s = setup("adv-paths-lsm", "audit");
    let d = s.d.clone();
    backend.apply(&s.compiled, 1).expect("apply");
    let mut agent = Agent::spawn(&[], true);
    agent.start();
    // A descriptor of a denied file obtained before confinement (not an agent yet: allowed).
    let r = agent.op(&format!("holdr:{d}/secret/procfd.txt"));
    assert_eq!(r.errno, 0, "before registration the open is not judged: {r:?}");
    backend.register(agent.pid, s.agent_id, 61).expect("register");
    let pid = agent.pid;

    let mut denied = Vec::new();
    let mut cases = attempts(&s);
    cases.push(("procfd", vec![format!("reopen:{d}/secret/procfd.txt")]));
    for (case, ops) in &cases {
        let mut last = None;
        for op in ops {
            last = Some(agent.op(op));
        }
        let r = last.expect("an operation");
        assert_eq!(r.errno, EPERM, "{case}: the alias must be refused with EPERM: {r:?}");
        let target = format!("{d}/secret/{case}.txt");
        let e = events::wait_for(&mut backend, &format!("{case}: deny event on the canonical path"), |e| e.header.tgid == pid && events::target(e) == target);
        assert_eq!(e.header.op, OP_OPEN, "{case}");
        assert_eq!(e.header.verdict, VERDICT_DENY, "{case}");
        assert_eq!(e.header.rule, s.deny_rule, "{case}: decided by the deny rule");
        assert_eq!(e.header.chain[0], s.agent_id, "{case}: the event names the agent");
        denied.push(target);
        adversarial::pass(&format!("6-path-alias/{case}"), "lsm");
    }

    // A readable (not writable) file reopened for writing through /proc/self/fd.
    let ro = format!("{d}/pub/ro.txt");
    assert_eq!(agent.op(&format!("holdr:{ro}")).errno, 0, "reading ro.txt is allowed");
    let r = agent.op(&format!("reopenw:{ro}"));
    assert_eq!(r.errno, EPERM, "reopen for writing of a read-only file: {r:?}");
    let e = events::wait_for(&mut backend, "write reopen deny", |e| e.header.tgid == pid && events::target(e) == ro && e.header.verdict == VERDICT_DENY);
    assert_eq!(e.header.access & ACCESS_WRITE, ACCESS_WRITE, "judged as a write");
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY, "no rule allows writing it");
    adversarial::pass("6-path-alias/procfd-write", "lsm");

    // The bind mount: the documented limitation.
    let r = agent.op(&bind_mount_op(&s));
    assert_eq!(r.errno, 0, "bind mount + read under the new name (the limitation): {r:?}");
    let alias = format!("{d}/mnt/bind.txt");
    let e = events::wait_for(&mut backend, "read under the bind-mount name", |e| events::target(e) == alias && e.header.op == OP_OPEN);
    assert_eq!(e.header.verdict, VERDICT_ALLOW, "judged under the new name");
    assert_eq!(e.header.rule, rule_id_of(&s.compiled, RuleKind::FileRead, &format!("{d}/mnt/**")));
    assert_eq!(e.header.chain[0], s.agent_id, "the reader is still the agent");
    adversarial::limitation("6-path-alias/bind-mount", "lsm", "mount(2) is not hooked: a CAP_SYS_ADMIN agent (or one in its own user namespace) can bind-mount a denied tree onto an allowed name; the read is judged by that name");
    agent.finish();

    // Nothing lost: one deny event per refused alias, no ring-buffer losses.
    let all = events::drain_all(&mut backend);
    for target in &denied {
        let n = all.iter().filter(|e| e.header.tgid == pid && events::target(e) == *target && e.header.verdict == VERDICT_DENY).count();
        assert_eq!(n, 1, "exactly one deny event for {target}");
    }
    events::assert_nothing_lost(&backend);
    drop(s.dir);
    // Case 12 (hostile names and lengths) with this backend: its own policy (version 2).
    enforcer_tests::hostile::hostile_input(&mut backend, true);
    println!("checked: symlink, /proc/self/root, /proc/self/fd reopen (read of a pre-confinement descriptor, write of a read-only file), openat(dirfd, ../), relative ../ all EPERM with one deny event each naming the agent and rule; bind mount alias = documented limitation");
}

#[test]
fn fallback_path_aliases() {
    let test = "adversarial_paths::fallback_path_aliases";
    let mut backend = fallback(test);
    let s = setup("adv-paths-fb", "kill");
    let d = s.d.clone();
    backend.apply(&s.compiled, 1).expect("apply");
    let mut session = 70;
    let mut killed_pids = Vec::new();
    // Kill mode: every evasion kills the agent, so each case gets its own agent.
    for (case, ops) in attempts(&s) {
        let agent = Agent::spawn(&ops, false);
        session += 1;
        backend.register(agent.pid, s.agent_id, session).expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{case}: the agent must be killed at the alias open ({results:?})");
        assert_eq!(results.len(), ops.len() - 1, "{case}: no result after the evasion: {results:?}");
        let target = format!("{d}/secret/{case}.txt");
        let e = events::wait_for(&mut backend, &format!("{case}: kill event on the canonical path"), |e| e.header.tgid == pid && events::target(e) == target);
        assert_eq!(e.header.op, OP_OPEN, "{case}");
        assert_eq!(e.header.verdict, VERDICT_KILL, "{case}");
        assert_eq!(e.header.rule, s.deny_rule, "{case}: decided by the deny rule");
        assert_eq!(e.header.chain[0], s.agent_id, "{case}: the event names the agent");
        killed_pids.push((pid, target));
        adversarial::pass(&format!("6-path-alias/{case}"), "fallback");
    }

    // /proc/self/fd reopen of a descriptor held from before confinement.
    let mut agent = Agent::spawn(&[], true);
    agent.start();
    let target = format!("{d}/secret/procfd.txt");
    assert_eq!(agent.op(&format!("holdr:{target}")).errno, 0, "before registration the open is not judged");
    backend.register(agent.pid, s.agent_id, 80).expect("register");
    let pid = agent.pid;
    let r = agent.op_or_exit(&format!("reopen:{target}"));
    assert!(r.is_none(), "the reopen must kill the agent before it answers: {r:?}");
    assert_eq!(agent.wait().signal(), Some(libc::SIGKILL), "procfd: killed");
    let e = events::wait_for(&mut backend, "procfd kill event", |e| e.header.tgid == pid && events::target(e) == target);
    assert_eq!((e.header.verdict, e.header.rule, e.header.chain[0]), (VERDICT_KILL, s.deny_rule, s.agent_id), "procfd event");
    killed_pids.push((pid, target));
    adversarial::pass("6-path-alias/procfd", "fallback");

    // Reopen for writing of a read-only file.
    let ro = format!("{d}/pub/ro.txt");
    let agent = Agent::spawn(&[format!("holdr:{ro}"), format!("reopenw:{ro}")], false);
    backend.register(agent.pid, s.agent_id, 81).expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    assert_eq!(results.len(), 1, "the read is allowed, the write reopen kills: {results:?}");
    assert_eq!(results[0].errno, 0);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "procfd-write: killed");
    let e = events::wait_for(&mut backend, "write reopen kill", |e| e.header.tgid == pid && events::target(e) == ro && e.header.verdict == VERDICT_KILL);
    assert_eq!(e.header.access & ACCESS_WRITE, ACCESS_WRITE, "judged as a write");
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    adversarial::pass("6-path-alias/procfd-write", "fallback");

    // The bind mount: the same limitation as on BPF LSM (the open tracepoint sees the new name).
    let agent = Agent::spawn(&[bind_mount_op(&s)], false);
    backend.register(agent.pid, s.agent_id, 82).expect("register");
    let (results, status) = agent.go_until_exit();
    assert!(status.success(), "the agent survives the bind-mount read (the limitation): {results:?}");
    assert_eq!(results[0].errno, 0, "bind mount + read under the new name: {:?}", results[0]);
    let alias = format!("{d}/mnt/bind.txt");
    let e = events::wait_for(&mut backend, "read under the bind-mount name", |e| events::target(e) == alias && e.header.op == OP_OPEN);
    assert_eq!(e.header.verdict, VERDICT_ALLOW, "judged under the new name");
    assert_eq!(e.header.chain[0], s.agent_id, "the reader is still the agent");
    adversarial::limitation("6-path-alias/bind-mount", "fallback", "mount(2) is not observed: a CAP_SYS_ADMIN agent (or one in its own user namespace) can bind-mount a denied tree onto an allowed name; the read is judged by that name");

    let all = events::drain_all(&mut backend);
    for (pid, target) in &killed_pids {
        let n = all.iter().filter(|e| e.header.tgid == *pid && events::target(e) == *target).count();
        assert_eq!(n, 1, "exactly one event for {target}");
    }
    events::assert_nothing_lost(&backend);
    drop(s.dir);
    enforcer_tests::hostile::hostile_input(&mut backend, false);
    println!("checked: symlink, /proc/self/root, /proc/self/fd reopen (pre-confinement descriptor; write of a read-only file), openat(dirfd, ../), relative ../: each kills the agent with one kill event naming the agent and rule; bind mount alias = documented limitation");
}
