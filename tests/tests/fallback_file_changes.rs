//! Fallback observation of file changes other than open (unlink, rmdir, mkdir, rename source
//! and destination, symlink, truncate, chmod) and of unix-socket connects, by `sys_enter_*`
//! tracepoints: the same rules, rule ids and op names as the LSM path hooks. Audit mode logs
//! would-deny; kill mode kills `rm -rf` at its first forbidden unlink. Paths given relative to
//! the cwd are made absolute; `..` fails closed. Runs on every kernel, the host included.

use enforcer::kernel::Backend;
use enforcer_common::*;
use enforcer_tests::{compile, events, fallback, fixtures::rule_id, Agent, TempDir};

fn mkfiles(dir: &TempDir, names: &[&str]) {
    for n in names {
        dir.file(n, "x");
    }
}

#[test]
fn audit_mode_sees_every_change() {
    let mut backend = fallback("fallback_file_changes::audit_mode_sees_every_change");
    let dir = TempDir::new("fb-changes");
    let d = dir.path().display().to_string();
    mkfiles(&dir, &["ro/a", "ro/b", "ro/t", "ro/m", "rw/c", "rw/ok"]);
    std::fs::create_dir_all(dir.join("ro/sub")).unwrap();
    let sock = dir.join("ro/s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("unix listen");
    let compiled = compile(&format!(
        r#"
[agent]
name = "fb-changes"
on_violation = "audit"

[file]
read = ["{d}/**"]
write = ["{d}/rw/**"]
deny_write = [{{ path = "{d}/ro/m", id = "m-is-read-only" }}]
"#
    ));
    let agent_id = compiled.agent_by_name("fb-changes").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let ops = vec![
        format!("unlink:{d}/rw/ok"),
        format!("unlink:{d}/ro/a"),
        format!("mkdir:{d}/ro/newdir"),
        format!("rmdir:{d}/ro/sub"),
        format!("rename:{d}/ro/b,{d}/rw/b"),
        format!("rename:{d}/rw/c,{d}/ro/c"),
        format!("symlink:/etc/passwd,{d}/ro/link"),
        format!("truncate:{d}/ro/t"),
        format!("chmod:{d}/ro/m"),
        format!("unix:{sock}"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 31).expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    assert!(
        r.iter().all(|x| x.errno == 0),
        "audit mode on the fallback never refuses: {r:?}"
    );
    let want = [
        (OP_UNLINK, format!("{d}/ro/a"), 0),
        (OP_MKDIR, format!("{d}/ro/newdir"), 0),
        (OP_RMDIR, format!("{d}/ro/sub"), 0),
        (OP_RENAME, format!("{d}/ro/b"), 0),
        (OP_RENAME, format!("{d}/ro/c"), EVENT_FLAG_SECOND_PATH),
        (OP_SYMLINK, format!("{d}/ro/link"), 0),
        (OP_TRUNCATE, format!("{d}/ro/t"), 0),
        (OP_CHMOD, format!("{d}/ro/m"), 0),
    ];
    for (op, path, flag) in &want {
        let e = events::wait_for(
            &mut backend,
            &format!("would-deny op {op} of {path}"),
            |e| e.header.tgid == pid && e.header.op == *op && events::target(e) == *path,
        );
        assert_eq!(e.header.verdict, VERDICT_AUDIT_DENY, "op {op} {path}");
        assert_eq!(e.header.access, ACCESS_WRITE, "op {op} {path}");
        assert_eq!(
            e.header.flags & flag,
            *flag,
            "op {op} {path}: flags {:#x}",
            e.header.flags
        );
    }
    let e = events::wait_for(&mut backend, "chmod of the deny_write file", |e| {
        e.header.op == OP_CHMOD && e.header.tgid == pid
    });
    assert_eq!(
        e.header.rule,
        rule_id(&compiled, &format!("{d}/ro/m")),
        "the explicit deny_write rule decided"
    );
    let e = events::wait_for(&mut backend, "unix connect", |e| {
        e.header.tgid == pid && e.header.op == OP_CONNECT && events::target(e) == sock
    });
    assert_eq!(e.header.verdict, VERDICT_AUDIT_DENY);
    assert_eq!(e.header.net_family, AF_UNIX);
    // Allowed changes are not denials.
    let all = events::drain_all(&mut backend);
    assert!(
        !all.iter().any(|e| e.header.tgid == pid
            && e.header.verdict != VERDICT_ALLOW
            && events::target(e).starts_with(&format!("{d}/rw/"))),
        "nothing under rw/ may be denied"
    );
    println!("checked: unlink, mkdir, rmdir, rename (both ends), symlink, truncate, chmod and unix connect logged as audit-deny with op, path, flags and rule");
}

#[test]
fn kill_mode_stops_rm_rf_and_resolves_relative_paths() {
    let mut backend =
        fallback("fallback_file_changes::kill_mode_stops_rm_rf_and_resolves_relative_paths");
    let dir = TempDir::new("fb-rmrf");
    let d = dir.path().display().to_string();
    let tree: Vec<String> = (0..20).map(|i| format!("ro/tree/f{i:02}")).collect();
    mkfiles(&dir, &tree.iter().map(String::as_str).collect::<Vec<_>>());
    mkfiles(&dir, &["ro/x", "ro/y", "rw/z"]);
    // Canonical: /bin may be a symlink to /usr/bin, and exec decisions see the real path.
    let bb = std::fs::canonicalize(enforcer_tests::fixtures::busybox())
        .expect("busybox")
        .display()
        .to_string();
    let compiled = compile(&format!(
        r#"
[agent]
name = "fb-rmrf"
on_violation = "kill"

[file]
read = ["{d}/**", "{bb}"]
write = ["{d}/rw/**"]

[exec]
allow = ["{bb}"]
"#
    ));
    let agent_id = compiled.agent_by_name("fb-rmrf").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let ops = vec![
        format!("exec:{bb},rm,-rf,{d}/ro/tree"),
        format!("exec:{bb},sh,-c,cd {d}/ro && {bb} rm ./x"),
        format!("exec:{bb},sh,-c,cd {d}/rw && {bb} rm ../ro/y"),
        format!("exec:{bb},sh,-c,cd {d}/rw && {bb} rm z"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 32).expect("register");
    let r = agent.go(ops.len());
    let killed = |x: &enforcer_tests::OpResult| {
        x.result.contains("signal: 9") || x.result.contains("SIGKILL") || x.result.contains("137")
    };
    assert!(killed(&r[0]), "rm -rf must be killed: {:?}", r[0]);
    let left = tree
        .iter()
        .filter(|f| std::path::Path::new(&dir.join(f)).exists())
        .count();
    assert!(
        left >= tree.len() - 1,
        "rm -rf was killed at its first unlink (which completes): {left} of {} files left",
        tree.len()
    );
    let e = events::wait_for(&mut backend, "killed unlink of the tree", |e| {
        e.header.op == OP_UNLINK && events::target(e).starts_with(&format!("{d}/ro/tree/"))
    });
    assert_eq!(e.header.verdict, VERDICT_KILL);
    // A path relative to the cwd is judged on its absolute form ("./" skipped).
    assert!(killed(&r[1]), "rm ./x in ro/ must be killed: {:?}", r[1]);
    let e = events::wait_for(&mut backend, "relative unlink", |e| {
        e.header.op == OP_UNLINK && events::target(e) == format!("{d}/ro/x")
    });
    assert_eq!(e.header.verdict, VERDICT_KILL);
    // `..` cannot be judged by its text: fail closed, flagged.
    assert!(
        killed(&r[2]),
        "rm ../ro/y must be killed (unresolvable): {:?}",
        r[2]
    );
    let e = events::wait_for(&mut backend, "unresolvable unlink", |e| {
        e.header.op == OP_UNLINK && e.header.flags & EVENT_FLAG_PATH_UNRESOLVED != 0
    });
    assert_eq!(e.header.verdict, VERDICT_KILL);
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    // Allowed: a relative unlink inside rw/.
    assert_eq!(r[3].errno, 0, "rm z in rw/ is allowed: {:?}", r[3]);
    assert!(!std::path::Path::new(&dir.join("rw/z")).exists());
    println!("checked: rm -rf killed at its first unlink ({left}/{} files left); cwd-relative and ./ paths resolved; .. fails closed; allowed relative unlink runs", tree.len());
}
