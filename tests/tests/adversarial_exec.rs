//! Adversarial case 7 (docs/testing.md, "The adversarial suite"): an agent tries to run a program its exec rules deny.
//! Exec rules are about the *file being executed*, by path: a copy outside the exec allow list,
//! an anonymous memfd (`fexecve`) and `execveat(fd, "", AT_EMPTY_PATH)` are all judged on the file
//! the kernel executes; a shebang script on its interpreter. The dynamic loader is the documented
//! gap: `ld.so BINARY` execs ld.so, and ld.so *reads* BINARY, so BINARY runs if the agent may
//! read it (asserted as the limitation); a read deny on it stops that (asserted). Scripts are
//! reads: `./script` (BPF LSM checks the script as a read; on the fallback the interpreter's open
//! of the script is what is judged) and `sh script` (an open by sh) get the same answer.

use enforcer::{
    kernel::{Backend, RawEvent},
    policy::compile::{CompiledPolicy, RuleKind},
};
use enforcer_common::*;
use enforcer_tests::{
    adversarial, compile, events, fallback, fixtures::rule_id_of, lsm_or_na, Agent, OpResult,
    TempDir, EPERM,
};

fn canonical(p: impl AsRef<std::path::Path>) -> String {
    let p = p.as_ref();
    std::fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .display()
        .to_string()
}

/// The dynamic loader of x86-64 glibc (the enforcer binary's ELF interpreter; every VM image
/// has it because it carries the enforcer's shared libraries).
const LDSO: &str = "/lib64/ld-linux-x86-64.so.2";

struct Setup {
    _dir: TempDir,
    d: String,
    compiled: CompiledPolicy,
    agent_id: u32,
    ldso: String,
    enforcer: String,
    testexe: String,
}

fn setup(name: &str, on_violation: &str) -> Setup {
    let dir = TempDir::new(name);
    let d = dir.path().display().to_string();
    for rel in ["tools/busybox", "tools/forbidden", "tools/doomed"] {
        let dst = dir.join(rel);
        std::fs::create_dir_all(std::path::Path::new(&dst).parent().unwrap()).unwrap();
        std::fs::copy(enforcer_tests::fixtures::busybox(), &dst).expect("copy busybox");
    }
    std::fs::create_dir_all(dir.join("scratch")).unwrap();
    let bad = dir.file(
        "tools/bad-interp.sh",
        &format!("#!{d}/tools/forbidden sh\ntrue\n"),
    );
    let secret = dir.file(
        "secret/script.sh",
        &format!("#!{d}/tools/busybox sh\ntrue\n"),
    );
    for s in [&bad, &secret] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let ldso = canonical(LDSO);
    let enforcer = canonical(enforcer_tests::agent::enforcer_bin());
    let testexe = canonical(std::env::current_exe().expect("current exe"));
    let compiled = compile(&format!(
        r#"
[agent]
name = "adv-exec"
on_violation = "{on_violation}"
log.file_allow = true

[file]
read = ["/**"]
write = ["{d}/scratch/**"]
deny = ["{d}/secret/**", "{testexe}"]

[exec]
allow = ["{d}/tools/**", "{ldso}"]
deny = ["{d}/tools/forbidden", "{d}/tools/doomed", "{enforcer}"]
"#
    ));
    let agent_id = compiled.agent_by_name("adv-exec").expect("agent").id;
    Setup {
        _dir: dir,
        d,
        compiled,
        agent_id,
        ldso,
        enforcer,
        testexe,
    }
}

/// Run `ops` in the agent; return their results and the events they caused (every event seen
/// since the previous call).
fn step(
    backend: &mut dyn Backend,
    agent: &mut Agent,
    ops: &[String],
    seen: &mut usize,
) -> (Vec<OpResult>, Vec<RawEvent>) {
    let results = ops.iter().map(|op| agent.op(op)).collect();
    let all = events::drain_all(backend);
    let new = all[*seen..].to_vec();
    *seen = all.len();
    (results, new)
}

fn describe(evs: &[RawEvent]) -> String {
    evs.iter()
        .map(|e| {
            format!(
                "op={} verdict={} rule={} tgid={} flags={:#x} target={:?}",
                e.header.op,
                e.header.verdict,
                e.header.rule,
                e.header.tgid,
                e.header.flags,
                events::target(e)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one event of `op` on `target` among `evs` (panics if none or several).
fn one<'a>(
    evs: &'a [RawEvent],
    case: &str,
    op: u32,
    target: impl Fn(&str) -> bool,
) -> &'a RawEvent {
    let hits: Vec<&RawEvent> = evs
        .iter()
        .filter(|e| e.header.op == op && target(&events::target(e)))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{case}: expected exactly one op={op} event on the target; events:\n{}",
        describe(evs)
    );
    hits[0]
}

fn run(backend: &mut dyn Backend, s: &Setup, lsm: bool) {
    let name = if lsm { "lsm" } else { "fallback" };
    let d = &s.d;
    let (deny_verdict, refused): (u32, fn(&OpResult) -> bool) = if lsm {
        (VERDICT_DENY, |r| r.errno == EPERM)
    } else {
        (VERDICT_KILL, |r| r.result.contains("signal: 9"))
    };
    let what = if lsm { "EPERM" } else { "SIGKILL" };
    let forbidden = format!("{d}/tools/forbidden");
    let exec_deny_forbidden = rule_id_of(&s.compiled, RuleKind::ExecDeny, &forbidden);
    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, s.agent_id, 90)
        .expect("register");
    agent.start();
    let mut seen = 0;

    // Copy the denied binary somewhere writable and run the copy.
    let copy = format!("{d}/scratch/copy");
    let (r, evs) = step(
        backend,
        &mut agent,
        &[
            format!("copy:{forbidden},{copy}"),
            format!("exec:{copy},true"),
        ],
        &mut seen,
    );
    assert_eq!(
        r[0].errno, 0,
        "copy: reading and writing are allowed: {:?}",
        r[0]
    );
    assert!(
        refused(&r[1]),
        "copy: the copy must be refused ({what}): {:?}",
        r[1]
    );
    let e = one(&evs, "copy", OP_EXEC, |t| t == copy);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (deny_verdict, RULE_DEFAULT_DENY, s.agent_id),
        "copy: not in the exec allow list"
    );
    adversarial::pass("7-exec/copy-to-tmp", name);

    // memfd_create + fexecve.
    let (r, evs) = step(
        backend,
        &mut agent,
        &[format!("memfdexec:{forbidden},true")],
        &mut seen,
    );
    assert!(
        refused(&r[0]),
        "memfd: must be refused ({what}): {:?}",
        r[0]
    );
    // BPF LSM: d_path's "/memfd:NAME (deleted)". The fallback's dentry walk cannot place a file of
    // the kernel's internal shm mount: no path, flagged unresolved, denied closed.
    let e = one(&evs, "memfd", OP_EXEC, |t| {
        t.contains("memfd:enforcer-try-ops") || (!lsm && t.is_empty())
    });
    if events::target(e).is_empty() {
        assert!(
            e.header.flags & EVENT_FLAG_PATH_UNRESOLVED != 0,
            "memfd: an empty path must be flagged unresolved"
        );
    }
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (deny_verdict, RULE_DEFAULT_DENY, s.agent_id),
        "memfd: an anonymous file is in no allow list"
    );
    println!("memfd exec judged on {:?}", events::target(e));
    adversarial::pass("7-exec/memfd-fexecve", name);

    // execveat(O_PATH fd, "", AT_EMPTY_PATH).
    let (r, evs) = step(
        backend,
        &mut agent,
        &[format!("execfd:{forbidden},true")],
        &mut seen,
    );
    assert!(
        refused(&r[0]),
        "execveat: must be refused ({what}): {:?}",
        r[0]
    );
    let e = one(&evs, "execveat", OP_EXEC, |t| t == forbidden);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (deny_verdict, exec_deny_forbidden, s.agent_id),
        "execveat: the exec deny rule"
    );
    adversarial::pass("7-exec/execveat-empty-path", name);

    // Case 12: a deleted binary, run through a descriptor opened before it was deleted. BPF LSM
    // cuts d_path's " (deleted)" (flagged), the fallback's walk names it by its name: either
    // way the exec deny of that exact path applies (not the tools/** allow).
    let doomed = format!("{d}/tools/doomed");
    let (r, _) = step(backend, &mut agent, &[format!("holdr:{doomed}")], &mut seen);
    assert_eq!(
        r[0].errno, 0,
        "deleted exec: reading the binary is allowed: {:?}",
        r[0]
    );
    std::fs::remove_file(&doomed).expect("unlink the binary");
    let (r, evs) = step(
        backend,
        &mut agent,
        &[format!("execheld:{doomed},true")],
        &mut seen,
    );
    assert!(
        refused(&r[0]),
        "deleted exec: must be refused ({what}): {:?}",
        r[0]
    );
    let e = one(&evs, "deleted exec", OP_EXEC, |t| t == doomed);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (
            deny_verdict,
            rule_id_of(&s.compiled, RuleKind::ExecDeny, &doomed),
            s.agent_id
        ),
        "deleted exec: the exact exec deny"
    );
    if lsm {
        assert_ne!(
            e.header.flags & EVENT_FLAG_DELETED,
            0,
            "deleted exec: flagged deleted"
        );
    }
    adversarial::pass("12-hostile/deleted-binary-exec", name);

    // A shebang script whose interpreter is the denied binary.
    let bad = format!("{d}/tools/bad-interp.sh");
    let (r, evs) = step(backend, &mut agent, &[format!("exec:{bad}")], &mut seen);
    assert!(
        refused(&r[0]),
        "shebang: must be refused ({what}): {:?}",
        r[0]
    );
    let e = one(&evs, "shebang", OP_EXEC, |t| t == forbidden);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (deny_verdict, exec_deny_forbidden, s.agent_id),
        "shebang: judged on the interpreter"
    );
    adversarial::pass("7-exec/shebang-denied-interpreter", name);

    // `sh script` with a read-denied script: sh's open of it is the read.
    let secret = format!("{d}/secret/script.sh");
    let secret_rule = rule_id_of(&s.compiled, RuleKind::FileDeny, &format!("{d}/secret/**"));
    let (r, evs) = step(
        backend,
        &mut agent,
        &[format!("exec:{d}/tools/busybox,sh,{secret}")],
        &mut seen,
    );
    if lsm {
        assert!(
            r[0].errno != 0 && r[0].result.contains("exit status"),
            "sh script: sh cannot open the script and fails: {:?}",
            r[0]
        );
    } else {
        assert!(
            refused(&r[0]),
            "sh script: sh is killed at its open of the script: {:?}",
            r[0]
        );
    }
    let e = one(&evs, "sh script", OP_OPEN, |t| t == secret);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (deny_verdict, secret_rule, s.agent_id),
        "sh script: the read deny rule"
    );
    adversarial::pass("7-exec/sh-script", name);

    // `./script` with the same read-denied script. BPF LSM refuses the exec (the script is
    // checked as a read, flagged SCRIPT); the fallback's exec tracepoint sees only the interpreter,
    // but the interpreter must open the script to run it, and that open is judged: killed.
    let (r, evs) = step(backend, &mut agent, &[format!("exec:{secret}")], &mut seen);
    assert!(
        refused(&r[0]),
        "./script: must be refused ({what}): {:?}",
        r[0]
    );
    let e = one(&evs, "./script", OP_OPEN, |t| t == secret);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (deny_verdict, secret_rule, s.agent_id),
        "./script: the read deny rule"
    );
    if lsm {
        assert!(
            e.header.flags & EVENT_FLAG_SCRIPT != 0,
            "flagged SCRIPT: {:#x}",
            e.header.flags
        );
    }
    adversarial::pass("7-exec/direct-script", name);

    // The dynamic loader running a binary that is exec-denied but readable.
    let (r, evs) = step(
        backend,
        &mut agent,
        &[
            format!("exec:{},--version", s.enforcer),
            format!("exec:{},{},--version", s.ldso, s.enforcer),
        ],
        &mut seen,
    );
    assert!(
        refused(&r[0]),
        "ldso: the binary itself is exec-denied ({what}): {:?}",
        r[0]
    );
    let e = one(&evs, "ldso", OP_EXEC, |t| t == s.enforcer);
    assert_eq!(
        (e.header.verdict, e.header.rule),
        (
            deny_verdict,
            rule_id_of(&s.compiled, RuleKind::ExecDeny, &s.enforcer)
        ),
        "ldso: direct exec denied by its rule"
    );
    assert_eq!(
        r[1].errno, 0,
        "ldso BINARY runs BINARY (the limitation): {:?}",
        r[1]
    );
    let e = one(&evs, "ldso", OP_EXEC, |t| t == s.ldso);
    assert_eq!(
        (e.header.verdict, e.header.rule),
        (
            VERDICT_ALLOW,
            rule_id_of(&s.compiled, RuleKind::ExecAllow, &s.ldso)
        ),
        "ldso: the exec is of ld.so"
    );
    let e = evs
        .iter()
        .find(|e| e.header.op == OP_OPEN && events::target(e) == s.enforcer)
        .unwrap_or_else(|| panic!("ldso: no read event of the binary:\n{}", describe(&evs)));
    assert_eq!(
        (e.header.verdict, e.header.access & ACCESS_READ),
        (VERDICT_ALLOW, ACCESS_READ),
        "ldso: the binary is only read"
    );
    adversarial::limitation("7-exec/ld.so-readable-binary", name, "ld.so maps a binary it opened for reading; exec rules judge execve only: deny reading it (or do not allow exec of ld.so)");

    // ... and the mitigation: the same with a binary the agent may not read.
    let (r, evs) = step(
        backend,
        &mut agent,
        &[format!("exec:{},{},--help", s.ldso, s.testexe)],
        &mut seen,
    );
    if lsm {
        assert!(
            r[0].errno != 0 && r[0].result.contains("exit status"),
            "ldso + read deny: ld.so cannot open the binary: {:?}",
            r[0]
        );
    } else {
        assert!(
            refused(&r[0]),
            "ldso + read deny: ld.so is killed at its open: {:?}",
            r[0]
        );
    }
    let e = one(&evs, "ldso+deny", OP_OPEN, |t| t == s.testexe);
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.chain[0]),
        (
            deny_verdict,
            rule_id_of(&s.compiled, RuleKind::FileDeny, &s.testexe),
            s.agent_id
        ),
        "ldso + read deny: the read deny rule"
    );
    adversarial::pass("7-exec/ld.so-read-denied-binary", name);

    agent.finish();
    events::assert_nothing_lost(&*backend);
}

#[test]
fn lsm_exec_evasion() {
    let Some(mut backend) = lsm_or_na("adversarial_exec::lsm_exec_evasion") else {
        return;
    };
    let s = setup("adv-exec-lsm", "audit");
    backend.apply(&s.compiled, 1).expect("apply");
    run(&mut backend, &s, true);
    println!("checked: copy, memfd+fexecve, execveat(AT_EMPTY_PATH), shebang with denied interpreter, sh script and ./script (read-denied) all EPERM with one event each (agent, rule); ld.so on a readable exec-denied binary runs it (limitation), on a read-denied one fails");
}

#[test]
fn fallback_exec_evasion() {
    let mut backend = fallback("adversarial_exec::fallback_exec_evasion");
    let s = setup("adv-exec-fb", "kill");
    backend.apply(&s.compiled, 1).expect("apply");
    run(&mut backend, &s, false);
    println!("checked: copy, memfd+fexecve, execveat(AT_EMPTY_PATH), shebang with denied interpreter, sh script: ./script: each killed with one kill event (agent, rule); ld.so on a readable exec-denied binary runs it (limitation), on a read-denied one is killed");
}
