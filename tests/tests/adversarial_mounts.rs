//! Adversarial case 14: other roots and other mounts. An agent that mounts (a new file system, a
//! bind mount, a detached tree moved into place), unmounts, chroots, pivots its root or makes a
//! user namespace (where it would hold CAP_SYS_ADMIN) changes what the paths its rules are
//! judged on mean. None of that is allowed without the agent's `[process]` section.
//! BPF LSM: EPERM with one event naming the agent, the operation (`mount`, `chroot`,
//! `namespace`), `default-deny` and the place; an agent whose policy allows them does them, and
//! a non-agent is not affected.
//! Fallback: seen at syscall entry: kill mode kills the caller (the call may complete: a mount
//! can be left behind), audit mode logs and lets it happen (the documented limitation).

use std::os::unix::process::ExitStatusExt as _;

use enforcer::kernel::{Backend, RawEvent};
use enforcer_common::*;
use enforcer_tests::{
    adversarial, compile_files, events, fallback, lsm_or_na, Agent, TempDir, EPERM,
};

struct Setup {
    dir: TempDir,
    d: String,
    compiled: enforcer::policy::compile::CompiledPolicy,
    /// No `[process]`, kill mode; everything allowed, kill mode; no `[process]`, audit mode.
    denied: u32,
    allowed: u32,
    audit: u32,
}

fn setup(name: &str) -> Setup {
    let dir = TempDir::new(name);
    let d = dir.path().display().to_string();
    for sub in ["mnt", "src", "root", "um"] {
        std::fs::create_dir_all(format!("{d}/{sub}")).expect("dir");
    }
    dir.file("src/f.txt", "x\n");
    let agent = |name: &str, on_violation: &str, process: &str| {
        format!(
            r#"
[agent]
name = "{name}"
on_violation = "{on_violation}"
{process}
[file]
read = ["{d}/**"]
write = ["{d}/**"]
"#
        )
    };
    let compiled = compile_files(&[
        ("denied.toml", &agent("adv-mnt", "kill", "")),
        (
            "allowed.toml",
            &agent(
                "adv-mnt-ok",
                "kill",
                "\n[process]\nmount = true\nchroot = true\nuserns = true\n",
            ),
        ),
        ("audit.toml", &agent("adv-mnt-audit", "audit", "")),
    ]);
    let id = |n: &str| compiled.agent_by_name(n).expect("agent").id;
    Setup {
        denied: id("adv-mnt"),
        allowed: id("adv-mnt-ok"),
        audit: id("adv-mnt-audit"),
        dir,
        d,
        compiled,
    }
}

/// (case, operation, event op, the event's target on BPF LSM: a path, or "" for none).
fn attempts(d: &str) -> Vec<(&'static str, String, u32, String)> {
    vec![
        (
            "mount",
            format!("mount:{d}/mnt"),
            OP_MOUNT,
            format!("{d}/mnt"),
        ),
        (
            "bind",
            format!("bind:{d}/src,{d}/mnt"),
            OP_MOUNT,
            format!("{d}/mnt"),
        ),
        (
            "open-tree-move",
            format!("treemove:{d}/src,{d}/mnt"),
            OP_MOUNT,
            format!("{d}/mnt"),
        ),
        (
            "umount",
            format!("umount:{d}/um"),
            OP_MOUNT,
            format!("{d}/um"),
        ),
        (
            "chroot",
            format!("chroot:{d}/root"),
            OP_CHROOT,
            format!("{d}/root"),
        ),
        (
            "pivot-root",
            format!("pivot:{d}/root"),
            OP_CHROOT,
            format!("{d}/root"),
        ),
        ("userns", "userns:-".into(), OP_NAMESPACE, String::new()),
        (
            "userns-mount",
            format!("nsmount:{d}/mnt"),
            OP_NAMESPACE,
            String::new(),
        ),
    ]
}

/// The harness's own mount to unmount (`{d}/um`), and cleanup of whatever a case left.
fn mount_tmpfs(dir: &str) {
    let c = std::ffi::CString::new(dir).expect("path");
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "mount tmpfs on {dir}: {}",
        std::io::Error::last_os_error()
    );
}

fn unmount_all(d: &str) {
    for sub in ["mnt", "um"] {
        let c = std::ffi::CString::new(format!("{d}/{sub}")).expect("path");
        while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
    }
}

fn new_events(backend: &mut dyn Backend, seen: &mut usize, pid: u32) -> Vec<RawEvent> {
    let all = events::drain_all(backend);
    let fresh = all[*seen..]
        .iter()
        .filter(|e| e.header.tgid == pid || e.header.ppid == pid)
        .cloned()
        .collect();
    *seen = all.len();
    fresh
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

#[test]
fn lsm_mounts() {
    let Some(mut backend) = lsm_or_na("adversarial_mounts::lsm_mounts") else {
        return;
    };
    let s = setup("adv-mnt-lsm");
    let d = s.d.clone();
    backend.apply(&s.compiled, 1).expect("apply");
    mount_tmpfs(&format!("{d}/um"));
    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, s.denied, 1501)
        .expect("register");
    agent.start();
    let pid = agent.pid;
    let mut seen = 0;
    for (case, op, ev_op, target) in attempts(&d) {
        let r = agent.op(&op);
        let evs = new_events(&mut backend, &mut seen, pid);
        assert_eq!(r.errno, EPERM, "{case}: {r:?}; events {:?}", summary(&evs));
        let matching: Vec<&RawEvent> = evs.iter().filter(|e| e.header.op == ev_op).collect();
        assert_eq!(matching.len(), 1, "{case}: one event: {:?}", summary(&evs));
        let e = matching[0];
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_DENY, RULE_DEFAULT_DENY, s.denied),
            "{case}: verdict, rule, agent"
        );
        assert_eq!(events::target(e), target, "{case}: the place");
        adversarial::pass(&format!("14-roots/{case}"), "lsm");
    }
    agent.finish();
    // Still mounted: the refused umount changed nothing.
    assert!(
        std::fs::read_to_string("/proc/self/mounts")
            .expect("mounts")
            .contains(&format!("{d}/um ")),
        "the tmpfs on {d}/um must still be there"
    );
    // Allowed by [process]: they happen.
    let mut ok = Agent::spawn(&[], true);
    backend.register(ok.pid, s.allowed, 1502).expect("register");
    ok.start();
    for op in [
        format!("mount:{d}/mnt"),
        format!("umount:{d}/mnt"),
        format!("chroot:{d}/root"),
        "userns:-".to_string(),
    ] {
        let r = ok.op(&op);
        assert_eq!(r.errno, 0, "[process] allows {op}: {r:?}");
    }
    ok.finish();
    // A non-agent is not affected.
    let mut other = Agent::spawn(&[], true);
    other.start();
    for op in [
        format!("mount:{d}/mnt"),
        format!("umount:{d}/mnt"),
        "userns:-".to_string(),
    ] {
        let r = other.op(&op);
        assert_eq!(r.errno, 0, "non-agent {op}: {r:?}");
    }
    let opid = other.pid;
    other.finish();
    assert!(
        !events::drain_all(&mut backend)
            .iter()
            .any(|e| e.header.tgid == opid),
        "no event for a non-agent"
    );
    unmount_all(&d);
    events::assert_nothing_lost(&backend);
    drop(s.dir);
    println!("checked: mount, bind mount, open_tree+move_mount, umount, chroot, pivot_root, unshare(CLONE_NEWUSER) alone and before a mount: EPERM + one deny event each (agent, op, default-deny, place); [process] allows them; non-agents unaffected");
}

#[test]
fn fallback_mounts() {
    let mut backend = fallback("adversarial_mounts::fallback_mounts");
    let s = setup("adv-mnt-fb");
    let d = s.d.clone();
    backend.apply(&s.compiled, 1).expect("apply");
    let mut session = 1600;
    for (case, op, ev_op, _) in attempts(&d) {
        mount_tmpfs(&format!("{d}/um"));
        let agent = Agent::spawn(std::slice::from_ref(&op), false);
        session += 1;
        backend
            .register(agent.pid, s.denied, session)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        // chroot, pivot_root and the namespaces run in a forked child: that child is killed.
        let in_child = matches!(case, "chroot" | "pivot-root" | "userns" | "userns-mount");
        if in_child {
            assert!(
                status.success() && results[0].result.contains("signal 9"),
                "{case}: the child must be killed: {results:?}"
            );
        } else {
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "{case}: the agent must be killed: {results:?}"
            );
        }
        let e = events::wait_for(&mut backend, case, |e| {
            (e.header.tgid == pid || e.header.ppid == pid) && e.header.op == ev_op
        });
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_KILL, RULE_DEFAULT_DENY, s.denied),
            "{case}: verdict, rule, agent"
        );
        unmount_all(&d);
        adversarial::pass(&format!("14-roots/{case}"), "fallback");
    }
    // Allowed by [process]: the agent lives.
    let agent = Agent::spawn(
        &[
            format!("mount:{d}/mnt"),
            format!("umount:{d}/mnt"),
            format!("chroot:{d}/root"),
            "userns:-".into(),
        ],
        false,
    );
    backend
        .register(agent.pid, s.allowed, 1690)
        .expect("register");
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success() && results.iter().all(|r| r.errno == 0),
        "[process] allows them: {results:?}"
    );
    // Audit mode: logged, and the mount happens (the limitation).
    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, s.audit, 1691)
        .expect("register");
    agent.start();
    let pid = agent.pid;
    let mut seen = events::drain_all(&mut backend).len();
    let r = agent.op(&format!("mount:{d}/mnt"));
    assert_eq!(r.errno, 0, "audit mode: the mount happens: {r:?}");
    let evs = new_events(&mut backend, &mut seen, pid);
    assert!(
        evs.iter().any(|e| e.header.op == OP_MOUNT
            && e.header.verdict == VERDICT_AUDIT_DENY
            && e.header.chain[0] == s.audit),
        "audit mode: logged: {:?}",
        summary(&evs)
    );
    adversarial::limitation("14-roots/mount-no-kill", "fallback", "tracepoints cannot refuse: with on_violation = \"audit\" the mount happens and is logged as audit-deny");
    agent.finish();
    unmount_all(&d);
    events::assert_nothing_lost(&backend);
    drop(s.dir);
    println!("checked: mount, bind, open_tree(clone), umount, chroot, pivot_root, unshare(NEWUSER[|NEWNS]): kill mode kills at entry with one kill event (agent, op, default-deny); [process] allows them; audit mode logs (limitation)");
}
