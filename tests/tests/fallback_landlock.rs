//! The Landlock envelope of launcher sessions on the fallback backend (docs/landlock.md): one
//! daemon, one policy; an agent started by `enforcer run` is refused, before anything happens,
//! every open, write, unlink, rename (either name), link (either name), truncate and exec
//! outside the hierarchies its policy can ever allow: EACCES (EXDEV where Landlock refuses a
//! link or rename for lack of the refer right), nothing changed, and a `deny` event flagged
//! `landlock` naming the agent and the rule. Inside the envelope the fallback decides as
//! before (an allowed write works, a denied one is logged as `audit-deny` and happens). A
//! reload that widens the envelope applies to agents launched after it, and says so (a daemon
//! record, and the older session's line in `status`). The launcher also installs its seccomp
//! filter: a 32-bit system call kills the session with a `compat-syscall` event.
//!
//! On BPF LSM kernels no envelope is applied (the LSM hooks refuse with EPERM before the
//! operation): the test checks that (an outside open gets EPERM, not EACCES) and prints
//! ENFORCER-NA.

use std::{os::unix::process::ExitStatusExt as _, path::Path};

use enforcer_tests::{
    daemon::{enforcer_exe, testkit_exe, toml_list, DaemonSetup, LIBC_READS},
    not_applicable, Agent, DaemonBackend,
};
use serde_json::Value;

const TEST: &str = "fallback_landlock::envelope_refuses_outside_and_keeps_inside";
const AGENT: &str = "ll-agent";

fn policy(d: &str, widened: bool) -> String {
    let extra = if widened {
        format!(", \"{d}/later/**\"")
    } else {
        String::new()
    };
    format!(
        r#"
[agent]
name = "{AGENT}"
on_violation = "audit"

[file]
read = [{libc}, "{d}/in/**"]
write = [{{ path = "{d}/in/**", id = "in-write" }}{extra}]
deny_write = [{{ path = "{d}/in/locked/**", id = "in-locked" }}]
deny = [{{ path = "{d}/out/secret/**", id = "no-secret" }}]

[exec]
allow = ["{exe}", "{testkit}"]
"#,
        libc = toml_list(LIBC_READS),
        exe = enforcer_exe(),
        testkit = testkit_exe(),
    )
}

fn content(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The event of `op` on `path` by the agent with `verdict`, flagged `landlock` or not.
fn find<'a>(
    records: &'a [Value],
    op: &str,
    path: &str,
    verdict: &str,
    landlock: bool,
) -> Option<&'a Value> {
    records.iter().find(|r| {
        r["type"] == "event"
            && r["agent"] == AGENT
            && r["op"] == op
            && r["path"] == path
            && r["verdict"] == verdict
            && r["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "landlock"))
                == landlock
    })
}

#[test]
fn envelope_refuses_outside_and_keeps_inside() {
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("landlock");
    let d = setup.dir.path().display().to_string();
    for f in [
        "in/ok",
        "in/locked/l",
        "in/del",
        "out/keep",
        "out/secret/key",
    ] {
        let p = setup.dir.path().join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "original").expect("write fixture");
    }
    std::fs::create_dir_all(setup.dir.path().join("later")).expect("mkdir later");
    std::fs::write(setup.policy_dir.join("agent.toml"), policy(&d, false)).expect("policy");
    let (daemon, backend) = setup.start_first(TEST);

    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    if backend == DaemonBackend::Lsm {
        let r = agent.op(&format!("open:{d}/out/keep"));
        assert_eq!(
            r.errno,
            libc::EPERM,
            "on BPF LSM no envelope is applied: the LSM hook refuses with EPERM ({r:?})"
        );
        not_applicable(
            TEST,
            "BPF LSM refuses before the operation with EPERM; the Landlock envelope is applied on the fallback backend only (docs/landlock.md)",
        );
        agent.kill();
        drop(daemon);
        return;
    }

    // Outside the envelope: refused before it happens.
    let out_keep = format!("{d}/out/keep");
    let outside: Vec<(String, &str, String, &[i32])> = vec![
        (
            format!("open:{out_keep}"),
            "open",
            out_keep.clone(),
            &[libc::EACCES],
        ),
        (
            format!("write:{out_keep}"),
            "open",
            out_keep.clone(),
            &[libc::EACCES],
        ),
        (
            format!("open:{d}/out/secret/key"),
            "open",
            format!("{d}/out/secret/key"),
            &[libc::EACCES],
        ),
        (
            format!("unlink:{out_keep}"),
            "unlink",
            out_keep.clone(),
            &[libc::EACCES],
        ),
        (
            format!("truncate:{out_keep}"),
            "truncate",
            out_keep.clone(),
            &[libc::EACCES],
        ),
        // rename and link, the outside name first and second.
        (
            format!("rename:{out_keep},{d}/in/stolen"),
            "rename",
            out_keep.clone(),
            &[libc::EACCES, libc::EXDEV],
        ),
        (
            format!("rename:{d}/in/ok,{d}/out/moved"),
            "rename",
            format!("{d}/out/moved"),
            &[libc::EACCES, libc::EXDEV],
        ),
        (
            format!("link:{out_keep},{d}/in/linked"),
            "link",
            out_keep.clone(),
            &[libc::EACCES, libc::EXDEV],
        ),
        (
            format!("link:{d}/in/ok,{d}/out/linked"),
            "link",
            format!("{d}/out/linked"),
            &[libc::EACCES, libc::EXDEV],
        ),
        // Refused before the kernel resolved it: the event has the path as the caller gave it.
        (
            "exec:/bin/true".to_string(),
            "exec",
            "/bin/true".to_string(),
            &[libc::EACCES],
        ),
    ];
    for (op, _, _, errnos) in &outside {
        let r = agent.op(op);
        assert!(
            errnos.contains(&r.errno),
            "{op}: outside the envelope must be refused with {errnos:?}, got {r:?}"
        );
    }
    let root = setup.dir.path();
    assert_eq!(
        content(&root.join("out/keep")).as_deref(),
        Some("original"),
        "out/keep unchanged (not unlinked, renamed or truncated)"
    );
    assert_eq!(
        content(&root.join("in/ok")).as_deref(),
        Some("original"),
        "in/ok not renamed away"
    );
    for gone in ["in/stolen", "in/linked", "out/moved", "out/linked"] {
        assert!(!root.join(gone).exists(), "{gone} must not exist");
    }

    // Inside: the fallback decides as before (audit mode: the denied write happens, logged).
    let r = agent.op(&format!("write:{d}/in/ok"));
    assert_eq!(r.errno, 0, "allowed write inside the envelope: {r:?}");
    let r = agent.op(&format!("unlink:{d}/in/locked/l"));
    assert_eq!(
        r.errno, 0,
        "a deny inside the envelope is the fallback's (audit: it happens): {r:?}"
    );

    let records = setup.wait_records("the refusals' deny events", 20, |rs| {
        outside
            .iter()
            .all(|(_, op, path, _)| find(rs, op, path, "deny", true).is_some())
            && find(
                rs,
                "unlink",
                &format!("{d}/in/locked/l"),
                "audit-deny",
                false,
            )
            .is_some()
    });
    let secret = find(
        &records,
        "open",
        &format!("{d}/out/secret/key"),
        "deny",
        true,
    )
    .expect("secret event");
    assert_eq!(
        secret["rule"], "no-secret",
        "the refusal names the deny rule: {secret}"
    );
    let keep = find(&records, "open", &out_keep, "deny", true).expect("keep event");
    assert_eq!(keep["rule"], "default-deny", "{keep}");
    let locked = find(
        &records,
        "unlink",
        &format!("{d}/in/locked/l"),
        "audit-deny",
        false,
    )
    .expect("locked");
    assert_eq!(locked["rule"], "in-locked", "{locked}");

    // A widening reload applies to new runs only, and says so.
    std::fs::write(setup.policy_dir.join("agent.toml"), policy(&d, true)).expect("policy");
    daemon.hup();
    setup.wait_records("the envelope-widened record", 30, |rs| {
        rs.iter()
            .any(|r| r["event"] == "envelope-widened" && r["agent"] == AGENT)
    });
    let status = setup.status();
    let session = status
        .agents
        .iter()
        .find(|a| a.name == AGENT)
        .and_then(|a| a.sessions.first())
        .and_then(|s| s.envelope.clone())
        .expect("the running session's envelope line");
    assert!(
        session.contains("older"),
        "status says the session runs under an older envelope: {session}"
    );
    let r = agent.op(&format!("create:{d}/later/old-session"));
    assert_eq!(
        r.errno,
        libc::EACCES,
        "the running session keeps its envelope: {r:?}"
    );
    agent.kill();
    let mut fresh = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    fresh.start();
    let r = fresh.op(&format!("create:{d}/later/new-session"));
    assert_eq!(
        r.errno, 0,
        "an agent launched after the reload gets the wider envelope: {r:?}"
    );
    fresh.kill();

    // `enforcer run` also installs the seccomp filter (the cases: tests/tests/adversarial_abi.rs):
    // a 32-bit unlink inside the envelope, which no tracepoint sees, kills the session first.
    let mut guarded = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    guarded.start();
    let victim = format!("{d}/in/ok");
    let answer = guarded.op_or_exit(&format!("compat-unlink:{victim}"));
    assert!(
        answer.is_none(),
        "a 32-bit call by a launcher session must kill it: {answer:?}"
    );
    let status = guarded.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGSYS),
        "killed by the seccomp filter: {status}"
    );
    assert!(Path::new(&victim).exists(), "the unlink never ran");
    setup.wait_records("the compat-syscall kill event", 20, |rs| {
        rs.iter().any(|r| {
            r["type"] == "event"
                && r["agent"] == AGENT
                && r["op"] == "compat-syscall"
                && r["verdict"] == "kill"
                && r["rule"] == "default-deny"
        })
    });
    drop(daemon);
}
