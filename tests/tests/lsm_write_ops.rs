//! BPF LSM path hooks: writing is more than opening for write. An agent may write under
//! `<root>/a` and only read under `<root>/b` (an explicit `deny_write`): unlink, mkdir, rmdir,
//! rename (either name), link (either name), symlink, truncate, ftruncate, chmod, chown, mknod
//! and open(O_CREAT) succeed in `a` and fail with EPERM in `b`, each with an event naming the
//! operation, the full path and the rule, equal to the reference evaluator's verdict for a
//! write of that path. Also: `rm -rf` of a read-only tree, paths across nested mounts (the
//! dentry walk), audit mode, and non-agents.

use std::path::Path;

use enforcer::{
    audit::names::op_name,
    kernel::{lsm::LsmBackend, Backend, RawEvent},
    policy::{
        compile::{CompiledPolicy, RuleKind},
        eval::{self, Request, Verdict},
    },
};
use enforcer_common::*;
use enforcer_tests::{
    compile, events,
    fixtures::{busybox, rule_id_of},
    lsm_or_na, Agent, OpResult, TempDir, EPERM,
};

fn policy(root: &str, mode: &str, protect_b: bool) -> String {
    let deny = if protect_b {
        format!(r#"deny_write = ["{root}/b/**"]"#)
    } else {
        String::new()
    };
    let exe = std::fs::canonicalize(busybox()).expect("busybox path");
    format!(
        r#"
[agent]
name = "writer"
mode = "{mode}"
log.file_allow = true

[file]
read = ["{root}/**"]
write = ["{root}/**"]
{deny}

[exec]
allow = ["{}"]
"#,
        exe.display()
    )
}

struct Setup {
    backend: LsmBackend,
    compiled: CompiledPolicy,
    agent_id: u32,
    dir: TempDir,
}

impl Setup {
    fn new(test: &str, mode: &str) -> Option<Setup> {
        let backend = lsm_or_na(&format!("lsm_write_ops::{test}"))?;
        let dir = TempDir::new(&format!("write-ops-{test}"));
        std::fs::create_dir_all(dir.path().join("a")).expect("mkdir a");
        std::fs::create_dir_all(dir.path().join("b")).expect("mkdir b");
        let compiled = compile(&policy(&dir.path().display().to_string(), mode, true));
        let agent_id = compiled.agent_by_name("writer").expect("agent").id;
        let mut s = Setup {
            backend,
            compiled,
            agent_id,
            dir,
        };
        s.backend.apply(&s.compiled, 1).expect("apply policy");
        Some(s)
    }

    /// Path builders for `a` and `b` that do not borrow the setup.
    fn dirs(&self) -> (impl Fn(&str) -> String, impl Fn(&str) -> String) {
        let (a, b) = (self.dir.join("a"), self.dir.join("b"));
        (
            move |r: &str| format!("{a}/{r}"),
            move |r: &str| format!("{b}/{r}"),
        )
    }

    fn write_rule(&self) -> u32 {
        rule_id_of(
            &self.compiled,
            RuleKind::FileWrite,
            &format!("{}/**", self.dir.path().display()),
        )
    }

    fn deny_rule(&self) -> u32 {
        rule_id_of(
            &self.compiled,
            RuleKind::FileDenyWrite,
            &format!("{}/b/**", self.dir.path().display()),
        )
    }

    /// Run `ops` as a fresh agent process; returns its pid and the results.
    fn run(&mut self, ops: &[String]) -> (u32, Vec<OpResult>) {
        let agent = Agent::spawn(ops, false);
        self.backend
            .register(agent.pid, self.agent_id, 11)
            .expect("register agent");
        let pid = agent.pid;
        (pid, agent.go(ops.len()))
    }

    /// The event of process `pid` for `op` on `target` with `verdict` (and, if `second`, the
    /// second-path flag); checks the decoded op name, the rule and the reference evaluator.
    fn expect(
        &mut self,
        pid: u32,
        op: u32,
        target: &str,
        verdict: u32,
        second: bool,
        rule: u32,
    ) -> RawEvent {
        let what = format!(
            "{} {} of {target} (second path: {second})",
            names(verdict),
            op_name(op)
        );
        let e = events::wait_for(&mut self.backend, &what, |e| {
            e.header.tgid == pid
                && e.header.op == op
                && e.header.verdict == verdict
                && events::target(e) == target
                && (e.header.flags & EVENT_FLAG_SECOND_PATH != 0) == second
        });
        assert_eq!(e.header.rule, rule, "{what}: rule id");
        assert_eq!(e.header.access, ACCESS_WRITE, "{what}: decided as a write");
        assert_eq!(e.header.chain[0], self.agent_id, "{what}: the agent");
        assert_eq!(
            e.header.flags & (EVENT_FLAG_PATH_UNRESOLVED | EVENT_FLAG_PATH_TRUNCATED),
            0,
            "{what}: path resolved"
        );
        let oracle = eval::evaluate(
            &self.compiled,
            self.agent_id,
            &Request::Open {
                path: target.into(),
                read: false,
                write: true,
            },
        );
        let want = match verdict {
            VERDICT_ALLOW => Verdict::Allow,
            VERDICT_DENY => Verdict::Deny,
            _ => Verdict::AuditDeny,
        };
        assert_eq!(
            (oracle.verdict, oracle.rule),
            (want, e.header.rule),
            "{what}: kernel == reference evaluator (write of the path)"
        );
        e
    }
}

fn names(verdict: u32) -> &'static str {
    match verdict {
        VERDICT_ALLOW => "allowed",
        VERDICT_DENY => "denied",
        _ => "audit-denied",
    }
}

fn assert_ok(r: &OpResult) {
    assert_eq!(r.errno, 0, "must succeed: {r:?}");
}

fn assert_eperm(r: &OpResult) {
    assert_eq!(r.errno, EPERM, "must fail with EPERM: {r:?}");
}

fn exists(p: &str) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[test]
fn each_write_op_allowed_in_a_denied_in_b() {
    let Some(mut t) = Setup::new("each_write_op_allowed_in_a_denied_in_b", "enforce") else {
        return;
    };
    for d in ["a", "b"] {
        let p = |rel: &str| t.dir.join(&format!("{d}/{rel}"));
        for f in ["unlink.txt", "trunc.txt", "chmod.txt", "link-src.txt"] {
            std::fs::write(p(f), "keep").expect("fixture");
        }
        std::fs::create_dir(p("rmdir")).expect("fixture dir");
    }
    let (a, b) = t.dirs();
    // (operation, expected to succeed, event op, event target)
    let cases: Vec<(String, bool, u32, String)> = vec![
        (
            format!("unlink:{}", a("unlink.txt")),
            true,
            OP_UNLINK,
            a("unlink.txt"),
        ),
        (
            format!("unlink:{}", b("unlink.txt")),
            false,
            OP_UNLINK,
            b("unlink.txt"),
        ),
        (
            format!("mkdir:{}", a("newdir")),
            true,
            OP_MKDIR,
            a("newdir"),
        ),
        (
            format!("mkdir:{}", b("newdir")),
            false,
            OP_MKDIR,
            b("newdir"),
        ),
        (format!("rmdir:{}", a("rmdir")), true, OP_RMDIR, a("rmdir")),
        (format!("rmdir:{}", b("rmdir")), false, OP_RMDIR, b("rmdir")),
        (
            format!("symlink:/etc/passwd,{}", a("sym")),
            true,
            OP_SYMLINK,
            a("sym"),
        ),
        (
            format!("symlink:/etc/passwd,{}", b("sym")),
            false,
            OP_SYMLINK,
            b("sym"),
        ),
        (
            format!("truncate:{}", a("trunc.txt")),
            true,
            OP_TRUNCATE,
            a("trunc.txt"),
        ),
        (
            format!("truncate:{}", b("trunc.txt")),
            false,
            OP_TRUNCATE,
            b("trunc.txt"),
        ),
        (
            format!("chmod:{}", a("chmod.txt")),
            true,
            OP_CHMOD,
            a("chmod.txt"),
        ),
        (
            format!("chmod:{}", b("chmod.txt")),
            false,
            OP_CHMOD,
            b("chmod.txt"),
        ),
        (
            format!("chown:{}", a("chmod.txt")),
            true,
            OP_CHOWN,
            a("chmod.txt"),
        ),
        (
            format!("chown:{}", b("chmod.txt")),
            false,
            OP_CHOWN,
            b("chmod.txt"),
        ),
        (format!("mknod:{}", a("fifo")), true, OP_MKNOD, a("fifo")),
        (format!("mknod:{}", b("fifo")), false, OP_MKNOD, b("fifo")),
        // Creating a file through open(O_CREAT) reaches path_mknod first.
        (
            format!("create:{}", a("created.txt")),
            true,
            OP_MKNOD,
            a("created.txt"),
        ),
        (
            format!("create:{}", b("created.txt")),
            false,
            OP_MKNOD,
            b("created.txt"),
        ),
        // link: the existing file is the first name, the new one the second.
        (
            format!("link:{},{}", a("link-src.txt"), a("link-new")),
            true,
            OP_LINK,
            a("link-src.txt"),
        ),
        (
            format!("link:{},{}", b("link-src.txt"), a("link-new2")),
            false,
            OP_LINK,
            b("link-src.txt"),
        ),
    ];
    let ops: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let (pid, results) = t.run(&ops);
    let (allow, deny) = (t.write_rule(), t.deny_rule());
    for ((op, ok, ev, target), r) in cases.iter().zip(&results) {
        if *ok {
            assert_ok(r);
            t.expect(pid, *ev, target, VERDICT_ALLOW, false, allow);
        } else {
            assert_eperm(r);
            let e = t.expect(pid, *ev, target, VERDICT_DENY, false, deny);
            assert_eq!(
                op_name(e.header.op),
                op.split(':')
                    .next()
                    .map(|o| if o == "create" { "mknod" } else { o })
                    .unwrap()
            );
        }
    }
    // The second name of an allowed link.
    t.expect(pid, OP_LINK, &a("link-new"), VERDICT_ALLOW, true, allow);
    // Nothing in b changed.
    for f in ["unlink.txt", "link-src.txt"] {
        assert_eq!(
            std::fs::read_to_string(b(f)).expect("b file still there"),
            "keep",
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(b("trunc.txt")).unwrap(),
        "keep",
        "b/trunc.txt not truncated"
    );
    assert!(Path::new(&b("rmdir")).is_dir(), "b/rmdir still there");
    for f in ["newdir", "sym", "fifo", "created.txt"] {
        assert!(!exists(&b(f)), "b/{f} must not have been created");
    }
    assert!(!exists(&a("link-new2")), "no link to a protected file in a");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(b("chmod.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644,
        "b/chmod.txt mode unchanged"
    );
    assert!(
        !exists(&a("unlink.txt"))
            && exists(&a("newdir"))
            && !exists(&a("rmdir"))
            && exists(&a("link-new")),
        "the ops in a happened"
    );

    // Non-agents are unaffected.
    std::fs::remove_file(b("unlink.txt")).expect("a non-agent unlinks in b");
    std::fs::create_dir(b("newdir")).expect("a non-agent mkdirs in b");
    std::fs::rename(b("trunc.txt"), b("renamed.txt")).expect("a non-agent renames in b");
    println!("checked: unlink, mkdir, rmdir, symlink, truncate, chmod, chown, mknod, create, link: allowed in a (allow events, write rule), EPERM in b (deny events: op name, path, deny rule == evaluator), b unchanged, non-agent unaffected");
}

#[test]
fn rename_into_and_out_of_a_protected_dir() {
    let Some(mut t) = Setup::new("rename_into_and_out_of_a_protected_dir", "enforce") else {
        return;
    };
    let (a, b) = t.dirs();
    std::fs::write(a("src.txt"), "a").unwrap();
    std::fs::write(a("leave.txt"), "a").unwrap();
    std::fs::write(b("out.txt"), "b").unwrap();
    std::fs::create_dir(b("subdir")).unwrap();
    let ops = vec![
        format!("rename:{},{}", a("src.txt"), a("dst.txt")),
        format!("rename:{},{}", a("leave.txt"), b("moved-in.txt")),
        format!("rename:{},{}", b("out.txt"), a("moved-out.txt")),
        format!("rename:{},{}", b("subdir"), a("subdir")),
        format!("rename:{},{}", b("out.txt"), b("renamed.txt")),
    ];
    let (pid, r) = t.run(&ops);
    let (allow, deny) = (t.write_rule(), t.deny_rule());
    assert_ok(&r[0]);
    t.expect(pid, OP_RENAME, &a("src.txt"), VERDICT_ALLOW, false, allow);
    t.expect(pid, OP_RENAME, &a("dst.txt"), VERDICT_ALLOW, true, allow);
    // Into b: the source is fine, the destination is not.
    assert_eperm(&r[1]);
    t.expect(pid, OP_RENAME, &a("leave.txt"), VERDICT_ALLOW, false, allow);
    t.expect(pid, OP_RENAME, &b("moved-in.txt"), VERDICT_DENY, true, deny);
    // Out of b: the source is denied (and decides alone).
    assert_eperm(&r[2]);
    t.expect(pid, OP_RENAME, &b("out.txt"), VERDICT_DENY, false, deny);
    assert_eperm(&r[3]);
    t.expect(pid, OP_RENAME, &b("subdir"), VERDICT_DENY, false, deny);
    assert_eperm(&r[4]);
    assert!(
        exists(&a("dst.txt"))
            && exists(&a("leave.txt"))
            && exists(&b("out.txt"))
            && exists(&b("subdir"))
    );
    assert!(
        !exists(&b("moved-in.txt"))
            && !exists(&a("moved-out.txt"))
            && !exists(&a("subdir"))
            && !exists(&b("renamed.txt"))
    );
    println!("checked: rename within a allowed (two allow events, second flagged), into b denied (second path), out of b denied (first path), directory out of b denied, within b denied");
}

#[test]
fn rm_rf_of_a_read_only_tree_leaves_it_intact() {
    let Some(mut t) = Setup::new("rm_rf_of_a_read_only_tree_leaves_it_intact", "enforce") else {
        return;
    };
    let (a, b) = t.dirs();
    let files = [
        "tree/x.txt",
        "tree/sub/y.txt",
        "tree/sub/deeper/z.txt",
        "tree/.hidden",
    ];
    for f in files {
        t.dir.file(&format!("a/{f}"), "a");
        t.dir.file(&format!("b/{f}"), "b");
    }
    // An empty directory: rm tries rmdir on it (it skips directories it could not empty).
    std::fs::create_dir_all(a("tree/sub/empty")).unwrap();
    std::fs::create_dir_all(b("tree/sub/empty")).unwrap();
    let bb = busybox();
    let ops = vec![
        format!("exec:{bb},rm,-rf,{}", a("tree")),
        format!("exec:{bb},rm,-rf,{}", b("tree")),
    ];
    let (pid, r) = t.run(&ops);
    assert_ok(&r[0]);
    assert!(!exists(&a("tree")), "rm -rf removed the writable tree");
    assert_ne!(
        r[1].errno, 0,
        "rm -rf of the protected tree must report failure: {:?}",
        r[1]
    );
    for f in files {
        assert_eq!(
            std::fs::read_to_string(b(f)).unwrap_or_else(|e| panic!("b/{f} gone: {e}")),
            "b",
            "b/{f} intact"
        );
    }
    assert!(
        Path::new(&b("tree/sub/empty")).is_dir(),
        "b/tree/sub/empty intact"
    );
    // rm runs as a child of the agent: it is the agent too.
    let deny = t.deny_rule();
    let e = events::wait_for(&mut t.backend, "rm's denied unlink in b", |e| {
        e.header.op == OP_UNLINK
            && e.header.verdict == VERDICT_DENY
            && events::target(e) == b("tree/sub/deeper/z.txt")
    });
    assert_eq!(e.header.rule, deny);
    assert_ne!(e.header.tgid, pid, "the unlink came from the rm child");
    events::wait_for(&mut t.backend, "rm's denied rmdir in b", |e| {
        e.header.op == OP_RMDIR
            && e.header.verdict == VERDICT_DENY
            && events::target(e) == b("tree/sub/empty")
    });
    println!("checked: busybox rm -rf removes a writable tree, fails on the protected tree leaving every file, deny events for unlink and rmdir");
}

/// Mounts a tmpfs at `dir` (unmounted on drop).
struct Tmpfs(String);

impl Tmpfs {
    fn mount(dir: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mountpoint");
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {dir}: {e}"));
        Tmpfs(dir.into())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn paths_across_mounts() {
    let Some(mut t) = Setup::new("paths_across_mounts", "enforce") else {
        return;
    };
    // a/mnt and a/mnt/inner, b/mnt: the walk must cross each mount (and /tmp's) to the root.
    let (a, b) = t.dirs();
    let outer = Tmpfs::mount(&a("mnt"));
    let inner = Tmpfs::mount(&a("mnt/inner"));
    let prot = Tmpfs::mount(&b("mnt"));
    std::fs::write(a("mnt/inner/f.txt"), "x").unwrap();
    std::fs::write(b("mnt/f.txt"), "x").unwrap();
    let ops = vec![
        format!("mkdir:{}", a("mnt/inner/d")),
        format!("rename:{},{}", a("mnt/inner/f.txt"), a("mnt/inner/g.txt")),
        format!("chmod:{}", a("mnt/inner")),
        format!("unlink:{}", b("mnt/f.txt")),
        format!("chmod:{}", b("mnt")),
        format!("mkdir:{}", b("mnt/d")),
    ];
    let (pid, r) = t.run(&ops);
    let (allow, deny) = (t.write_rule(), t.deny_rule());
    assert_ok(&r[0]);
    t.expect(
        pid,
        OP_MKDIR,
        &a("mnt/inner/d"),
        VERDICT_ALLOW,
        false,
        allow,
    );
    assert_ok(&r[1]);
    t.expect(
        pid,
        OP_RENAME,
        &a("mnt/inner/f.txt"),
        VERDICT_ALLOW,
        false,
        allow,
    );
    t.expect(
        pid,
        OP_RENAME,
        &a("mnt/inner/g.txt"),
        VERDICT_ALLOW,
        true,
        allow,
    );
    // The root of a mount: its path is its mountpoint's.
    assert_ok(&r[2]);
    t.expect(pid, OP_CHMOD, &a("mnt/inner"), VERDICT_ALLOW, false, allow);
    assert_eperm(&r[3]);
    t.expect(pid, OP_UNLINK, &b("mnt/f.txt"), VERDICT_DENY, false, deny);
    assert_eperm(&r[4]);
    t.expect(pid, OP_CHMOD, &b("mnt"), VERDICT_DENY, false, deny);
    assert_eperm(&r[5]);
    t.expect(pid, OP_MKDIR, &b("mnt/d"), VERDICT_DENY, false, deny);
    assert!(exists(&b("mnt/f.txt")));
    drop((prot, inner, outer));
    println!("checked: ops under nested tmpfs mounts carry the full path (mount walk), mount roots named by their mountpoint, protected mount denied");
}

#[test]
fn audit_mode_logs_but_never_blocks() {
    let Some(mut t) = Setup::new("audit_mode_logs_but_never_blocks", "audit") else {
        return;
    };
    let (_, b) = t.dirs();
    std::fs::write(b("unlink.txt"), "x").unwrap();
    std::fs::write(b("ren.txt"), "x").unwrap();
    let cases = [
        (
            format!("unlink:{}", b("unlink.txt")),
            OP_UNLINK,
            b("unlink.txt"),
        ),
        (format!("mkdir:{}", b("d")), OP_MKDIR, b("d")),
        (
            format!("rename:{},{}", b("ren.txt"), b("ren2.txt")),
            OP_RENAME,
            b("ren.txt"),
        ),
        (format!("rmdir:{}", b("d")), OP_RMDIR, b("d")),
    ];
    let ops: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let (pid, r) = t.run(&ops);
    let deny = t.deny_rule();
    for ((_, op, target), r) in cases.iter().zip(&r) {
        assert_ok(r);
        t.expect(pid, *op, target, VERDICT_AUDIT_DENY, false, deny);
    }
    // In audit mode both names of a rename are decided and logged.
    t.expect(
        pid,
        OP_RENAME,
        &b("ren2.txt"),
        VERDICT_AUDIT_DENY,
        true,
        deny,
    );
    assert!(!exists(&b("unlink.txt")) && exists(&b("ren2.txt")));
    println!("checked: audit mode: unlink, mkdir, rename, rmdir in b succeed, AUDIT_DENY events with the deny rule (both rename names)");
}

#[test]
fn ftruncate_of_a_descriptor_opened_before_the_rule() {
    let Some(mut t) = Setup::new(
        "ftruncate_of_a_descriptor_opened_before_the_rule",
        "enforce",
    ) else {
        return;
    };
    let root = t.dir.path().display().to_string();
    let open = compile(&policy(&root, "enforce", false));
    t.backend
        .apply(&open, 1)
        .expect("apply the policy without protection");
    let file = t.dirs().1("held.txt");
    std::fs::write(&file, "keep").unwrap();
    let ops = vec![format!("hold:{file}"), format!("ftruncate:{file}")];
    let mut agent = Agent::spawn(&ops, true);
    t.backend
        .register(agent.pid, t.agent_id, 12)
        .expect("register");
    agent.start();
    assert_ok(&agent.step());
    // Now b becomes read-only; the descriptor was opened for writing before.
    t.backend
        .apply(&t.compiled, 2)
        .expect("apply the protecting policy");
    let r = agent.step();
    assert_eperm(&r);
    let pid = agent.pid;
    agent.finish();
    let e = t.expect(pid, OP_TRUNCATE, &file, VERDICT_DENY, false, t.deny_rule());
    assert_eq!(e.header.policy_version, 2);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    println!("checked: ftruncate on a descriptor opened for writing before the rule: EPERM, truncate deny event (file_truncate on 6.2+, path_truncate on 6.1)");
}
