//! Adversarial case 6 (docs/testing.md, "The adversarial suite"): an agent tries to reach a denied tree under another name.
//! Aliases the kernel resolves before the hooks run - a symlink into the tree,
//! `/proc/self/root/...`, a reopen through `/proc/self/fd/N` of a descriptor obtained before
//! the agent was confined, `openat` with a directory descriptor and `..`, a relative path from a
//! cwd - are judged on the canonical path: EPERM on BPF LSM, SIGKILL on the fallback in kill
//! mode, each with one event naming the agent and the deny rule. A bind mount in a new mount
//! namespace would make a *new name* (path rules are about names): the mount is refused (BPF
//! LSM `sb_mount`; the fallback kills at unshare(CLONE_NEWNS)), see tests/tests/
//! adversarial_mounts.rs for every other way to mount. Then case 12's file side (tests/src/hostile.rs): paths at
//! and over PATH_MAX, odd bytes in names, a deleted file reopened.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::{kernel::Backend, policy::compile::RuleKind};
use enforcer_common::*;
use enforcer_tests::{
    adversarial, compile, events, fallback, fixtures::rule_id_of, lsm_or_na, Agent, TempDir, EPERM,
};

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
    for case in [
        "symlink", "procroot", "procfd", "openat", "relative", "bind",
    ] {
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
    Setup {
        dir,
        d,
        bb,
        compiled,
        agent_id,
        deny_rule,
    }
}

/// The alias attempts: (case, operations; the last one is the evasion, on `{d}/secret/<case>.txt`).
/// `procfd` is special: its `holdr` runs before the agent is registered.
fn attempts(s: &Setup) -> Vec<(&'static str, Vec<String>)> {
    let d = &s.d;
    vec![
        ("symlink", vec![format!("open:{d}/pub/link/symlink.txt")]),
        (
            "procroot",
            vec![format!("open:/proc/self/root{d}/secret/procroot.txt")],
        ),
        (
            "openat",
            vec![format!("openat:{d}/pub,../secret/openat.txt")],
        ),
        (
            "relative",
            vec![
                format!("chdir:{d}/pub"),
                "open:../secret/relative.txt".into(),
            ],
        ),
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
    let Some(mut backend) = lsm_or_na(test) else {
        return;
    };
    let s = setup("adv-paths-lsm", "audit");
    let d = s.d.clone();
    backend.apply(&s.compiled, 1).expect("apply");
    let mut agent = Agent::spawn(&[], true);
    agent.start();
    // A descriptor of a denied file obtained before confinement (not an agent yet: allowed).
    let r = agent.op(&format!("holdr:{d}/secret/procfd.txt"));
    assert_eq!(
        r.errno, 0,
        "before registration the open is not judged: {r:?}"
    );
    backend
        .register(agent.pid, s.agent_id, 61)
        .expect("register");
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
        assert_eq!(
            r.errno, EPERM,
            "{case}: the alias must be refused with EPERM: {r:?}"
        );
        let target = format!("{d}/secret/{case}.txt");
        let e = events::wait_for(
            &mut backend,
            &format!("{case}: deny event on the canonical path"),
            |e| e.header.tgid == pid && events::target(e) == target,
        );
        assert_eq!(e.header.op, OP_OPEN, "{case}");
        assert_eq!(e.header.verdict, VERDICT_DENY, "{case}");
        assert_eq!(
            e.header.rule, s.deny_rule,
            "{case}: decided by the deny rule"
        );
        assert_eq!(
            e.header.chain[0], s.agent_id,
            "{case}: the event names the agent"
        );
        denied.push(target);
        adversarial::pass(&format!("6-path-alias/{case}"), "lsm");
    }

    // A readable (not writable) file reopened for writing through /proc/self/fd.
    let ro = format!("{d}/pub/ro.txt");
    assert_eq!(
        agent.op(&format!("holdr:{ro}")).errno,
        0,
        "reading ro.txt is allowed"
    );
    let r = agent.op(&format!("reopenw:{ro}"));
    assert_eq!(
        r.errno, EPERM,
        "reopen for writing of a read-only file: {r:?}"
    );
    let e = events::wait_for(&mut backend, "write reopen deny", |e| {
        e.header.tgid == pid && events::target(e) == ro && e.header.verdict == VERDICT_DENY
    });
    assert_eq!(
        e.header.access & ACCESS_WRITE,
        ACCESS_WRITE,
        "judged as a write"
    );
    assert_eq!(
        e.header.rule, RULE_DEFAULT_DENY,
        "no rule allows writing it"
    );
    adversarial::pass("6-path-alias/procfd-write", "lsm");

    // The bind mount: a private mount namespace (no LSM hook; harmless alone), then every mount
    // in it is refused by sb_mount (no `[process] mount` in this policy).
    let r = agent.op(&bind_mount_op(&s));
    assert_ne!(r.errno, 0, "the bind mount must fail: {r:?}");
    // busybox unshare's own propagation change (mount MS_PRIVATE on /) is the first mount
    // refused: any mount event of this agent's process tree.
    let e = events::wait_for(&mut backend, "the refused mount", |e| {
        e.header.op == OP_MOUNT && e.header.chain[0] == s.agent_id
    });
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (VERDICT_DENY, RULE_DEFAULT_DENY, s.agent_id),
        "mount: verdict, rule, agent"
    );
    let alias = format!("{d}/mnt/bind.txt");
    assert!(
        !events::drain_all(&mut backend)
            .iter()
            .any(|e| events::target(e) == alias),
        "nothing may be read under the bind-mount name"
    );
    adversarial::pass("6-path-alias/bind-mount", "lsm");
    agent.finish();

    // Nothing lost: one deny event per refused alias, no ring-buffer losses.
    let all = events::drain_all(&mut backend);
    for target in &denied {
        let n = all
            .iter()
            .filter(|e| {
                e.header.tgid == pid
                    && events::target(e) == *target
                    && e.header.verdict == VERDICT_DENY
            })
            .count();
        assert_eq!(n, 1, "exactly one deny event for {target}");
    }
    events::assert_nothing_lost(&backend);
    drop(s.dir);
    // Case 12 (hostile names and lengths) with this backend: its own policy (version 2).
    enforcer_tests::hostile::hostile_input(&mut backend, true);
    println!("checked: symlink, /proc/self/root, /proc/self/fd reopen (read of a pre-confinement descriptor, write of a read-only file), openat(dirfd, ../), relative ../ all EPERM with one deny event each naming the agent and rule; bind mount refused (mount event)");
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
        backend
            .register(agent.pid, s.agent_id, session)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{case}: the agent must be killed at the alias open ({results:?})"
        );
        assert_eq!(
            results.len(),
            ops.len() - 1,
            "{case}: no result after the evasion: {results:?}"
        );
        let target = format!("{d}/secret/{case}.txt");
        let e = events::wait_for(
            &mut backend,
            &format!("{case}: kill event on the canonical path"),
            |e| e.header.tgid == pid && events::target(e) == target,
        );
        assert_eq!(e.header.op, OP_OPEN, "{case}");
        assert_eq!(e.header.verdict, VERDICT_KILL, "{case}");
        assert_eq!(
            e.header.rule, s.deny_rule,
            "{case}: decided by the deny rule"
        );
        assert_eq!(
            e.header.chain[0], s.agent_id,
            "{case}: the event names the agent"
        );
        killed_pids.push((pid, target));
        adversarial::pass(&format!("6-path-alias/{case}"), "fallback");
    }

    // /proc/self/fd reopen of a descriptor held from before confinement.
    let mut agent = Agent::spawn(&[], true);
    agent.start();
    let target = format!("{d}/secret/procfd.txt");
    assert_eq!(
        agent.op(&format!("holdr:{target}")).errno,
        0,
        "before registration the open is not judged"
    );
    backend
        .register(agent.pid, s.agent_id, 80)
        .expect("register");
    let pid = agent.pid;
    let r = agent.op_or_exit(&format!("reopen:{target}"));
    assert!(
        r.is_none(),
        "the reopen must kill the agent before it answers: {r:?}"
    );
    assert_eq!(agent.wait().signal(), Some(libc::SIGKILL), "procfd: killed");
    let e = events::wait_for(&mut backend, "procfd kill event", |e| {
        e.header.tgid == pid && events::target(e) == target
    });
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (VERDICT_KILL, s.deny_rule, s.agent_id),
        "procfd event"
    );
    killed_pids.push((pid, target));
    adversarial::pass("6-path-alias/procfd", "fallback");

    // Reopen for writing of a read-only file.
    let ro = format!("{d}/pub/ro.txt");
    let agent = Agent::spawn(&[format!("holdr:{ro}"), format!("reopenw:{ro}")], false);
    backend
        .register(agent.pid, s.agent_id, 81)
        .expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    assert_eq!(
        results.len(),
        1,
        "the read is allowed, the write reopen kills: {results:?}"
    );
    assert_eq!(results[0].errno, 0);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "procfd-write: killed");
    let e = events::wait_for(&mut backend, "write reopen kill", |e| {
        e.header.tgid == pid && events::target(e) == ro && e.header.verdict == VERDICT_KILL
    });
    assert_eq!(
        e.header.access & ACCESS_WRITE,
        ACCESS_WRITE,
        "judged as a write"
    );
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    adversarial::pass("6-path-alias/procfd-write", "fallback");

    // The bind mount: the mount namespace is refused at unshare (CLONE_NEWNS): the process
    // that asks (busybox unshare, a child of the agent) is killed before the mount.
    let agent = Agent::spawn(&[bind_mount_op(&s)], false);
    backend
        .register(agent.pid, s.agent_id, 82)
        .expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success(),
        "try-ops itself survives (its child asked): {results:?}"
    );
    assert!(
        results[0].errno != 0 && results[0].result.contains("signal"),
        "the unshare must be killed: {:?}",
        results[0]
    );
    let e = events::wait_for(&mut backend, "the killed unshare", |e| {
        e.header.op == OP_NAMESPACE && e.header.ppid == pid
    });
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (VERDICT_KILL, RULE_DEFAULT_DENY, s.agent_id),
        "namespace: verdict, rule, agent"
    );
    let alias = format!("{d}/mnt/bind.txt");
    assert!(
        !events::drain_all(&mut backend)
            .iter()
            .any(|e| events::target(e) == alias),
        "nothing may be read under the bind-mount name"
    );
    adversarial::pass("6-path-alias/bind-mount", "fallback");

    let all = events::drain_all(&mut backend);
    for (pid, target) in &killed_pids {
        let n = all
            .iter()
            .filter(|e| e.header.tgid == *pid && events::target(e) == *target)
            .count();
        assert_eq!(n, 1, "exactly one event for {target}");
    }
    envelope_cases(&mut backend, &s);
    events::assert_nothing_lost(&backend);
    drop(s.dir);
    enforcer_tests::hostile::hostile_input(&mut backend, false);
    println!("checked: symlink, /proc/self/root, /proc/self/fd reopen (pre-confinement descriptor; write of a read-only file), openat(dirfd, ../), relative ../: each kills the agent with one kill event naming the agent and rule; bind mount refused (mount event)");
}

/// The same aliases and the write cases with the agent inside its Landlock envelope (what
/// `enforcer run` applies on the fallback, docs/landlock.md): the envelope holds only the allowed
/// trees (`pub`, `mnt`, `bin`; nothing writable), so each attempt is refused with `EACCES` (or
/// `EXDEV`) before it happens and nothing changes, whatever name the agent uses; the event is a
/// `deny` flagged `landlock` naming the agent. A path change is still killed at entry in kill
/// mode (the observer cannot know Landlock will refuse it): the file is unchanged either way.
fn envelope_cases(backend: &mut dyn Backend, s: &Setup) {
    let d = &s.d;
    let Some(abi) = enforcer::kernel::landlock::probe_abi() else {
        panic!("this kernel has no Landlock: the envelope cases need it (the fallback kernels of the matrix all have it)");
    };
    let envelope = enforcer::policy::envelope::compute(&s.compiled, "adv-paths", 1)
        .expect("the agent has an envelope");
    // Where the agent may read it (it reads it before the envelope applies).
    let env_file = s.dir.join("pub/envelope.json");
    std::fs::write(&env_file, serde_json::to_string(&envelope).expect("json")).expect("write");
    for case in ["symlink", "procroot", "openat", "relative"] {
        s.dir.file(&format!("secret/{case}.txt"), "secret\n");
    }
    s.dir.file("secret/moved.txt", "secret\n");
    s.dir.file("pub/kept.txt", "kept\n");
    // The aliases a path names (open_by_handle_at names none: Landlock does not restrict it,
    // and it needs CAP_DAC_READ_SEARCH; the fallback decides it as above).
    let mut cases: Vec<(String, Vec<String>)> = attempts(s)
        .into_iter()
        .filter(|(case, _)| ["symlink", "procroot", "openat", "relative"].contains(case))
        .map(|(case, ops)| (format!("6-path-alias/{case}+landlock"), ops))
        .collect();
    cases.extend([
        (
            "4-write/open-write+landlock".to_string(),
            vec![format!("write:{d}/pub/kept.txt")],
        ),
        (
            "4-write/truncate+landlock".to_string(),
            vec![format!("truncate:{d}/pub/kept.txt")],
        ),
        (
            "4-write/unlink+landlock".to_string(),
            vec![format!("unlink:{d}/pub/kept.txt")],
        ),
        (
            "4-write/rename-out+landlock".to_string(),
            vec![format!("rename:{d}/secret/moved.txt,{d}/pub/moved.txt")],
        ),
        (
            "4-write/link-out+landlock".to_string(),
            vec![format!("link:{d}/secret/moved.txt,{d}/pub/linked.txt")],
        ),
    ]);
    if abi < 3 {
        // Landlock's truncate right is ABI 3 (6.2): on older kernels truncate(2) is decided by
        // the fallback alone, killed at entry, and may complete (docs/landlock.md).
        cases.retain(|(case, _)| !case.starts_with("4-write/truncate"));
        adversarial::limitation(
            "4-write/truncate+landlock",
            "fallback",
            &format!("Landlock ABI {abi} has no truncate right (ABI 3): truncate(2) is killed at entry by the fallback and may complete"),
        );
    }
    let mut session = 90;
    for (case, ops) in cases {
        let mut all_ops = vec![format!("landlock:{env_file}")];
        all_ops.extend(ops.iter().cloned());
        let agent = Agent::spawn(&all_ops, false);
        session += 1;
        backend
            .register(agent.pid, s.agent_id, session)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        if results.first().map(|r| r.errno) != Some(0) {
            let seen: Vec<String> = events::drain_all(backend)
                .iter()
                .filter(|e| e.header.tgid == pid)
                .map(|e| {
                    format!(
                        "op {} verdict {} rule {} {}",
                        e.header.op,
                        e.header.verdict,
                        e.header.rule,
                        events::target(e)
                    )
                })
                .collect();
            panic!("{case}: the envelope must apply: {results:?} {status:?}; its events: {seen:?}");
        }
        if let Some(last) = results.get(all_ops.len() - 1) {
            assert!(
                last.errno == libc::EACCES || last.errno == libc::EXDEV,
                "{case}: refused by Landlock with EACCES/EXDEV: {results:?}"
            );
        } else {
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "{case}: no answer means killed at entry: {results:?}"
            );
        }
        // Nothing changed, whatever the agent's fate.
        assert_eq!(
            std::fs::read_to_string(format!("{d}/pub/kept.txt"))
                .ok()
                .as_deref(),
            Some("kept\n"),
            "{case}: pub/kept.txt unchanged"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{d}/secret/moved.txt"))
                .ok()
                .as_deref(),
            Some("secret\n"),
            "{case}: secret/moved.txt still there"
        );
        for made in ["pub/moved.txt", "pub/linked.txt"] {
            assert!(
                !std::path::Path::new(&format!("{d}/{made}")).exists(),
                "{case}: {made} not made"
            );
        }
        let e = events::wait_for(backend, &format!("{case}: the landlock refusal"), |e| {
            e.header.tgid == pid && e.header.flags & EVENT_FLAG_LANDLOCK != 0
        });
        assert_eq!(
            (e.header.verdict, e.header.chain[0]),
            (VERDICT_DENY, s.agent_id),
            "{case}: a deny naming the agent (target {}, rule {})",
            events::target(&e),
            e.header.rule
        );
        println!(
            "{case}: errno {:?}, event deny rule {} target {}",
            results.last().map(|r| r.errno),
            e.header.rule,
            events::target(&e)
        );
        adversarial::pass(&case, "fallback");
    }
}
