//! Hostile input (adversarial case 12, docs/testing.md), the file side, on either backend (run at the end of
//! `adversarial_paths`, which already loaded one; its own policy, applied as version 2):
//!
//! - **PATH_MAX**: paths of exactly 4095 bytes are decided on their full name (a prefix allow,
//!   a prefix deny, a `**/*.pem` deny), flagged `path-truncated`, the event carrying all 4095
//!   bytes; a path over PATH_MAX (reached relative to a deep cwd) cannot be resolved and fails
//!   closed, flagged `path-unresolved`: never allowed by truncation.
//! - **odd bytes** in names (newline, quotes, backslash, tab, invalid UTF-8): the event carries
//!   the exact bytes, and the audit record (one JSON line) gives them back through the
//!   documented escape (`audit::record::target_bytes`).
//! - **deleted files**: a descriptor held from before confinement, reopened through
//!   `/proc/self/fd` after the file was unlinked, is judged by the name the file had (BPF LSM
//!   cuts `d_path`'s ` (deleted)` and flags `deleted`; the fallback's dentry walk names it so
//!   already), so an exact deny still applies.
//!
//! On BPF LSM a refused operation fails with EPERM; on the fallback (`on_violation = "kill"`)
//! the agent is killed, so every case runs in an agent of its own.

use std::{
    ffi::{CString, OsStr},
    os::unix::{ffi::OsStrExt as _, process::ExitStatusExt as _},
    sync::Arc,
};

use enforcer::{
    audit::{
        clock::BootClock,
        history::{PolicyHistory, PolicyNames},
        names::FLAG_TARGET_ESCAPED,
        record::{event_record, target_bytes, EventContext},
    },
    kernel::{Backend, RawEvent},
    policy::compile::RuleKind,
};
use enforcer_common::*;

use crate::{adversarial, compile, events, fixtures::rule_id_of, Agent, OpResult, TempDir, EPERM};

/// `base`, then 200-byte directories, then a last name ending in `tail`: exactly `total` bytes.
fn long_path(base: &str, total: usize, tail: &str) -> String {
    let rest = total - base.len();
    let dirs = (rest - 1 - 255).div_ceil(201);
    let name = rest - 1 - 201 * dirs;
    let mut p = base.to_string();
    for _ in 0..dirs {
        p.push('/');
        p.push_str(&"d".repeat(200));
    }
    p.push('/');
    p.push_str(&"f".repeat(name - tail.len()));
    p.push_str(tail);
    assert_eq!(p.len(), total);
    p
}

/// Create `path` below the existing `base` with *at() calls (no call gets a string over
/// PATH_MAX): directories, then a file (or a directory too, if `dir`).
fn create_below(base: &str, path: &str, dir: bool) {
    let c = |s: &str| CString::new(s).expect("no NUL");
    let mut fd = unsafe { libc::open(c(base).as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
    assert!(fd >= 0, "open {base}");
    let comps: Vec<&str> = path[base.len() + 1..].split('/').collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let name = c(comp);
        unsafe {
            if last && !dir {
                let f = libc::openat(fd, name.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                assert!(f >= 0, "create {comp}: {}", std::io::Error::last_os_error());
                libc::write(f, b"x".as_ptr().cast(), 1);
                libc::close(f);
            } else {
                libc::mkdirat(fd, name.as_ptr(), 0o755);
                let next = libc::openat(fd, name.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
                assert!(
                    next >= 0,
                    "open dir {comp}: {}",
                    std::io::Error::last_os_error()
                );
                libc::close(fd);
                fd = next;
            }
        }
    }
    unsafe { libc::close(fd) };
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Hostile<'a> {
    backend: &'a mut dyn Backend,
    lsm: bool,
    agent_id: u32,
    session: u64,
}

impl Hostile<'_> {
    /// Run `before` as a non-agent, register, run `ops`: returns the pid and the answers (the
    /// last op is the attempt: on the fallback it kills, so it has no answer).
    fn attempt(
        &mut self,
        before: &[String],
        ops: &[String],
        refused: bool,
    ) -> (u32, Vec<OpResult>) {
        let mut agent = Agent::spawn(&[], true);
        agent.start();
        for op in before {
            assert_eq!(agent.op(op).errno, 0, "{op} before registration");
        }
        self.session += 1;
        self.backend
            .register(agent.pid, self.agent_id, self.session)
            .expect("register");
        let pid = agent.pid;
        let mut answers = Vec::new();
        for op in ops {
            match agent.op_or_exit(op) {
                Some(r) => answers.push(r),
                None => break,
            }
        }
        if refused && !self.lsm {
            assert_eq!(
                answers.len(),
                ops.len() - 1,
                "the attempt must kill the agent before it answers: {answers:?}"
            );
            assert_eq!(
                agent.wait().signal(),
                Some(libc::SIGKILL),
                "killed: {ops:?}"
            );
        } else {
            let last = answers
                .last()
                .unwrap_or_else(|| panic!("no answer to {ops:?}"));
            let want = if refused { EPERM } else { 0 };
            assert_eq!(last.errno, want, "{ops:?}: {last:?}");
            agent.finish();
        }
        (pid, answers)
    }

    fn deny_verdict(&self) -> u32 {
        if self.lsm {
            VERDICT_DENY
        } else {
            VERDICT_KILL
        }
    }
}

pub fn hostile_input(backend: &mut dyn Backend, lsm: bool) {
    let name = if lsm { "lsm" } else { "fallback" };
    let dir = TempDir::new(&format!("hostile-{name}"));
    let d = dir.path().display().to_string();
    dir.file("pub/deleted.txt", "going away");
    dir.file("secret/.keep", "");
    let on_violation = if lsm { "audit" } else { "kill" };
    let compiled = compile(&format!(
        r#"
[agent]
name = "hostile"
on_violation = "{on_violation}"
log.file_allow = true

[file]
read = ["{d}/pub/**"]
deny = ["{d}/secret/**", "**/*.pem"]
deny_read = ["{d}/pub/deleted.txt"]
"#
    ));
    let agent_id = compiled.agent_by_name("hostile").expect("agent").id;
    backend.apply(&compiled, 2).expect("apply");
    let rule = |kind, pattern: &str| rule_id_of(&compiled, kind, pattern);
    let (read_pub, deny_secret, deny_pem, deny_deleted) = (
        rule(RuleKind::FileRead, &format!("{d}/pub/**")),
        rule(RuleKind::FileDeny, &format!("{d}/secret/**")),
        rule(RuleKind::FileDeny, "**/*.pem"),
        rule(RuleKind::FileDenyRead, &format!("{d}/pub/deleted.txt")),
    );
    let mut h = Hostile {
        backend,
        lsm,
        agent_id,
        session: 300,
    };
    let deny = h.deny_verdict();

    // Exactly PATH_MAX - 1 bytes: decided on the whole name.
    for (case, base, tail, refused, verdict, rule) in [
        (
            "12-hostile/path-max-allowed",
            format!("{d}/pub"),
            "",
            false,
            VERDICT_ALLOW,
            read_pub,
        ),
        (
            "12-hostile/path-max-denied",
            format!("{d}/secret"),
            "",
            true,
            deny,
            deny_secret,
        ),
        (
            "12-hostile/path-max-suffix-denied",
            format!("{d}/pub"),
            ".pem",
            true,
            deny,
            deny_pem,
        ),
    ] {
        let path = long_path(&base, PATH_BUF_BYTES - 1, tail);
        create_below(&base, &path, false);
        let (pid, _) = h.attempt(&[], &[format!("open:{path}")], refused);
        let e = events::wait_for(h.backend, case, |e| {
            e.header.tgid == pid && e.header.op == OP_OPEN
        });
        assert_eq!(
            e.target,
            path.as_bytes(),
            "{case}: the event carries all {} bytes",
            path.len()
        );
        assert_eq!((e.header.verdict, e.header.rule), (verdict, rule), "{case}");
        assert_eq!(
            e.header.flags & (EVENT_FLAG_PATH_TRUNCATED | EVENT_FLAG_PATH_UNRESOLVED),
            EVENT_FLAG_PATH_TRUNCATED,
            "{case}: flagged truncated (matched on the key), resolved"
        );
        adversarial::pass(case, name);
    }

    // Over PATH_MAX: an allowed tree, reached relative to a deep working directory.
    let deep = long_path(&format!("{d}/pub"), 3900, "");
    create_below(&format!("{d}/pub"), &deep, true);
    let file = "g".repeat(250);
    create_below(&deep, &format!("{deep}/{file}"), false);
    let (pid, _) = h.attempt(
        &[],
        &[format!("chdir:{deep}"), format!("open:{file}")],
        true,
    );
    let e = events::wait_for(h.backend, "over PATH_MAX", |e| {
        e.header.tgid == pid && e.header.op == OP_OPEN
    });
    assert_eq!(
        (e.header.verdict, e.header.rule),
        (deny, RULE_DEFAULT_DENY),
        "over PATH_MAX: failed closed"
    );
    assert_ne!(
        e.header.flags & EVENT_FLAG_PATH_UNRESOLVED,
        0,
        "over PATH_MAX: flagged unresolved"
    );
    adversarial::pass("12-hostile/over-path-max", name);

    // Odd bytes: exact bytes in the event, and back out of the audit record's JSON.
    let mut history = PolicyHistory::new(4);
    history.push(2, Arc::new(PolicyNames::of(&compiled)));
    let no_exe = |_: u32| None;
    let ctx = EventContext {
        host: "test",
        clock: BootClock::sample(),
        policies: &history,
        exe_of: &no_exe,
    };
    for odd in [
        &b"new\nline"[..],
        b"quote\"d'",
        b"back\\slash",
        b"tab\tand space",
        b"bad\xff\xfeutf8",
        b"\xc3\xa9t\xc3\xa9",
    ] {
        let path = [format!("{d}/secret/").as_bytes(), odd].concat();
        std::fs::write(OsStr::from_bytes(&path), "odd").expect("create odd name");
        let (pid, _) = h.attempt(&[], &[format!("openx:{}", hex(&path))], true);
        let e: RawEvent = events::wait_for(h.backend, "odd bytes", |e| {
            e.header.tgid == pid && e.header.op == OP_OPEN
        });
        assert_eq!(
            e.target, path,
            "the event carries the exact bytes of {odd:?}"
        );
        assert_eq!((e.header.verdict, e.header.rule), (deny, deny_secret));
        let line = serde_json::to_string(&enforcer::audit::Record::Event(event_record(&e, &ctx)))
            .expect("json");
        assert!(!line.contains('\n'), "one record, one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        let escaped = v["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == FLAG_TARGET_ESCAPED));
        assert_eq!(
            escaped,
            std::str::from_utf8(&path).is_err(),
            "escaped exactly when not UTF-8: {line}"
        );
        let back =
            target_bytes(v["path"].as_str().expect("path"), escaped).expect("a well-formed escape");
        assert_eq!(
            back, path,
            "the audit record gives the exact bytes back: {line}"
        );
        assert_eq!(
            (v["agent"].as_str(), v["rule"].as_str()),
            (
                Some("hostile"),
                Some(compiled.rule(deny_secret).unwrap().text_id.as_str())
            )
        );
    }
    adversarial::pass("12-hostile/odd-bytes-in-names", name);

    // A deleted file, reopened through a descriptor held from before confinement.
    let deleted = format!("{d}/pub/deleted.txt");
    let unlink_and_reopen = format!("reopen:{deleted}");
    let mut agent = Agent::spawn(&[], true);
    agent.start();
    assert_eq!(
        agent.op(&format!("holdr:{deleted}")).errno,
        0,
        "not an agent yet"
    );
    h.session += 1;
    h.backend
        .register(agent.pid, agent_id, h.session)
        .expect("register");
    let pid = agent.pid;
    std::fs::remove_file(&deleted).expect("unlink");
    match agent.op_or_exit(&unlink_and_reopen) {
        Some(r) => {
            assert!(lsm, "the fallback must kill: {r:?}");
            assert_eq!(r.errno, EPERM, "reopen of the deleted file: {r:?}");
            agent.finish();
        }
        None => {
            assert!(!lsm, "BPF LSM must answer EPERM");
            assert_eq!(agent.wait().signal(), Some(libc::SIGKILL));
        }
    }
    let e = events::wait_for(h.backend, "deleted reopen", |e| {
        e.header.tgid == pid && e.header.op == OP_OPEN
    });
    assert_eq!(events::target(&e), deleted, "judged by the name it had");
    assert_eq!(
        (e.header.verdict, e.header.rule),
        (deny, deny_deleted),
        "the exact deny applies"
    );
    if lsm {
        assert_ne!(e.header.flags & EVENT_FLAG_DELETED, 0, "flagged deleted");
    }
    adversarial::pass("12-hostile/deleted-file-reopen", name);

    events::assert_nothing_lost(&*h.backend);
    drop(dir);
    println!("checked ({name}): 4095-byte paths decided on their whole name (allow, prefix deny, suffix deny), over PATH_MAX fails closed (unresolved), odd bytes exact in events and audit JSON, a deleted file is judged by its name");
}
