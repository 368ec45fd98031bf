//! Objects without a path (docs/policy.md, "Objects without a path"): a pipe, eventfd or memfd
//! the agent holds, reopened through `/proc/self/fd/N` (what every rustc does with a build's
//! jobserver pipe), is allowed on both backends and the agent lives; another process's pipe
//! reached through `/proc/<pid>/fd/N`, which the agent does not hold, is denied (BPF LSM: EPERM;
//! fallback kill mode: killed) with one event flagged `pathless`, rule `default-deny`, naming
//! the object. The same for ftruncate/fchmod of a memfd the agent made (allowed) and truncate of
//! another process's memfd through its `/proc/<pid>/fd` link (denied; on the fallback judged by
//! that lexical path, which no rule allows). No path rule is involved: the policy allows nothing.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::kernel::Backend;
use enforcer_common::*;
use enforcer_tests::{compile_files, events, fallback, lsm_or_na, Agent, EPERM};

const POLICY: &str = r#"
[agent]
name = "pathless"
on_violation = "kill"
"#;

/// What a held object's reopen may answer past our hooks: 0, or the kernel's own refusal of
/// reopening that kind (anonymous inodes without an open method: ENXIO).
fn not_ours(errno: i32) -> bool {
    errno == 0 || errno == libc::ENXIO
}

/// A memfd of this test process the agent does not inherit.
fn foreign_memfd() -> libc::c_int {
    let fd = unsafe { libc::memfd_create(c"enforcer-foreign".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create");
    fd
}

/// A pipe of this (non-agent) test process the agent does not inherit (close-on-exec).
fn foreign_pipe() -> (libc::c_int, libc::c_int) {
    let mut p = [0; 2];
    assert_eq!(
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    (p[0], p[1])
}

fn steal_op(write_fd: libc::c_int) -> String {
    format!("write:/proc/{}/fd/{write_fd}", std::process::id())
}

fn check_event(backend: &mut dyn Backend, pid: u32, agent: u32, verdict: u32) {
    let e = events::wait_for(backend, "the stolen pipe's event", |e| {
        e.header.tgid == pid && e.header.op == OP_OPEN
    });
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (verdict, RULE_DEFAULT_DENY, agent),
        "verdict, rule, agent"
    );
    assert_ne!(e.header.flags & EVENT_FLAG_PATHLESS, 0, "flagged pathless");
    let target = events::target(&e);
    assert!(target.starts_with("pipe"), "names the object: {target:?}");
}

#[test]
fn lsm_pathless() {
    let Some(mut backend) = lsm_or_na("pathless_objects::lsm_pathless") else {
        return;
    };
    let compiled = compile_files(&[("p.toml", POLICY)]);
    let id = compiled.agent_by_name("pathless").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let (r, w) = foreign_pipe();
    let mut agent = Agent::spawn(&[], true);
    backend.register(agent.pid, id, 1801).expect("register");
    agent.start();
    let pid = agent.pid;
    for kind in ["pipe", "eventfd", "memfd"] {
        let res = agent.op(&format!("reopen-own:{kind}"));
        assert!(not_ours(res.errno), "a held {kind} reopens: {res:?}");
    }
    let res = agent.op("memfd-ops:-");
    assert_eq!(
        res.errno, 0,
        "ftruncate and fchmod of its own memfd: {res:?}"
    );
    let denied_held: Vec<_> = events::drain_all(&mut backend)
        .into_iter()
        .filter(|e| e.header.tgid == pid && e.header.verdict != VERDICT_ALLOW)
        .map(|e| events::target(&e))
        .collect();
    assert!(
        denied_held.is_empty(),
        "no denial for held objects: {denied_held:?}"
    );
    let res = agent.op(&steal_op(w));
    assert_eq!(res.errno, EPERM, "another process's pipe: {res:?}");
    check_event(&mut backend, pid, id, VERDICT_DENY);
    // Truncating another process's memfd through its /proc/<pid>/fd link.
    let m = foreign_memfd();
    let res = agent.op(&format!("truncate:/proc/{}/fd/{m}", std::process::id()));
    assert_eq!(res.errno, EPERM, "another process's memfd: {res:?}");
    let e = events::wait_for(&mut backend, "the memfd truncate", |e| {
        e.header.tgid == pid && e.header.op == OP_TRUNCATE
    });
    assert_ne!(e.header.flags & EVENT_FLAG_PATHLESS, 0, "flagged pathless");
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    agent.finish();
    unsafe { (libc::close(r), libc::close(w), libc::close(m)) };
    events::assert_nothing_lost(&backend);
    println!("checked: held pipe (both ends), eventfd, memfd reopened through /proc/self/fd, ftruncate+fchmod of its own memfd: not refused, no deny event; another process's pipe through /proc/<pid>/fd: EPERM, one deny event flagged pathless naming pipe:[..]; truncate of another process's memfd through /proc/<pid>/fd: EPERM, flagged pathless");
}

#[test]
fn fallback_pathless() {
    let mut backend = fallback("pathless_objects::fallback_pathless");
    let compiled = compile_files(&[("p.toml", POLICY)]);
    let id = compiled.agent_by_name("pathless").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let agent = Agent::spawn(
        &[
            "reopen-own:pipe".to_string(),
            "reopen-own:eventfd".to_string(),
            "reopen-own:memfd".to_string(),
            "memfd-ops:-".to_string(),
        ],
        false,
    );
    backend.register(agent.pid, id, 1811).expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success() && results.iter().all(|r| not_ours(r.errno)),
        "kill mode: held objects reopen and the agent lives: {results:?}"
    );
    let flagged: Vec<_> = events::drain_all(&mut backend)
        .into_iter()
        .filter(|e| e.header.tgid == pid && e.header.verdict != VERDICT_ALLOW)
        .map(|e| events::target(&e))
        .collect();
    assert!(
        flagged.is_empty(),
        "no denial for held objects: {flagged:?}"
    );
    let (r, w) = foreign_pipe();
    let agent = Agent::spawn(&[steal_op(w)], false);
    backend.register(agent.pid, id, 1812).expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "another process's pipe kills: {results:?}"
    );
    check_event(&mut backend, pid, id, VERDICT_KILL);
    unsafe { (libc::close(r), libc::close(w)) };
    events::assert_nothing_lost(&backend);
    println!("checked (kill mode): held pipe (both ends), eventfd, memfd reopened through /proc/self/fd, ftruncate+fchmod of its own memfd: the agent lives, no deny event; another process's pipe: killed, one kill event flagged pathless naming pipefs:");
}
