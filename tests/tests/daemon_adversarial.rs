//! Adversarial cases (docs/testing.md, "The adversarial suite") that need the real daemon: an agent that turns on the daemon
//! confining it. Case 11: it writes the policy directory, the audit log, the state directory,
//! the bpffs pins, the API socket or the enforcer binary - the daemon gives every agent
//! implicit `enforcer:*` deny_write rules for those (docs/daemon.md, "The daemon's own state"),
//! which beat this agent's own `write` allows -, then SIGKILLs and ptraces the daemon (BPF LSM
//! refuses both: hooks/daemon_guard.rs). Case 8: from inside the agent, `enforcer run --agent
//! other` asks the daemon to make it another agent (its policy delegates to none: refused, a
//! `register-refused` record; a delegated sub-agent would only narrow its rights,
//! docs/delegation.md).
//!
//! Runs on every kernel with `--backend auto`: BPF LSM in 6.1/6.12 refuses with EPERM and
//! nothing changes; the fallback (host, 6.12-nolsm; `on_violation = "kill"`) kills the agent at
//! an operation that does no harm when it completes (opens for writing without O_TRUNC, chown to
//! the current owner), and an unlinked link pin is pinned again by the daemon, which holds every
//! link. The fallback cannot refuse kill(2) or ptrace(2): asserted as the documented
//! limitations (enforcement survives a killed daemon through its pins, and the next daemon logs
//! what happened meanwhile).

use std::{os::unix::process::ExitStatusExt as _, path::Path, time::Duration};

use enforcer_tests::{
    adversarial,
    daemon::{enforcer_exe, testkit_exe, DaemonSetup},
    kernel_label, Agent, TempDir, EPERM,
};
use serde_json::Value;

struct Ctx {
    setup: DaemonSetup,
    lsm: bool,
    /// The `adv` policy file (the agent's own rules).
    policy_file: String,
    policy_text: String,
}

fn policy(setup: &DaemonSetup, bb: &str) -> String {
    let dir = setup.dir.path().display();
    format!(
        r#"[agent]
name = "adv"
on_violation = "kill"

[file]
read = ["/**"]
# Everything the daemon keeps is below these: only its implicit rules stop the writes.
write = ["{dir}/**", "{pins}/**", "{exe}"]

[exec]
allow = ["{exe}", "{testkit}", "{bb}"]

[net]
connect = ["unix:{socket}"]
"#,
        pins = setup.pin_dir.display(),
        exe = enforcer_exe(),
        testkit = testkit_exe(),
        socket = setup.socket.display(),
    )
}

/// The events of `op` on `path` decided by `rule` for agent adv.
fn events<'a>(records: &'a [Value], op: &str, rule: &str, path: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| {
            r["type"] == "event"
                && r["agent"] == "adv"
                && r["op"] == op
                && r["rule"] == rule
                && r["path"] == path
        })
        .collect()
}

/// A tampering attempt: the try-ops operation, and the event it must cause.
struct Attempt<'a> {
    case: &'a str,
    op: String,
    event_op: &'a str,
    rule: &'a str,
    target: &'a str,
}

impl Ctx {
    fn deny_verdict(&self) -> &'static str {
        if self.lsm {
            "deny"
        } else {
            "kill"
        }
    }

    /// Refused with EPERM (LSM, `agent` runs it) or the attempting agent is killed (fallback: a
    /// fresh agent per attempt); exactly one event names the agent, the operation, the implicit
    /// rule and the target.
    fn attempt(&self, agent: Option<&mut Agent>, a: Attempt<'_>) {
        let Attempt {
            case,
            op,
            event_op,
            rule,
            target,
        } = a;
        let op = op.as_str();
        match agent {
            Some(agent) => {
                let r = agent.op(op);
                assert_eq!(r.errno, EPERM, "{case}: {op} must be refused: {r:?}");
            }
            None => {
                let agent =
                    Agent::spawn_registered(&self.setup.socket, "adv", &[op.to_string()], false);
                let (results, status) = agent.go_until_exit();
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "{case}: {op} must kill the agent: {results:?}"
                );
                assert!(
                    results.is_empty(),
                    "{case}: the agent must not see its answer: {results:?}"
                );
            }
        }
        let records =
            self.setup
                .wait_records(&format!("{case}: {event_op} event of {op}"), 10, |r| {
                    !events(r, event_op, rule, target).is_empty()
                });
        let found = events(&records, event_op, rule, target);
        assert_eq!(
            found.len(),
            1,
            "{case}: exactly one event for {op}: {found:?}"
        );
        assert_eq!(
            found[0]["verdict"],
            self.deny_verdict(),
            "{case}: {:?}",
            found[0]
        );
    }

    fn unchanged(&self, what: &str) {
        let text = std::fs::read_to_string(&self.policy_file).unwrap_or_default();
        assert_eq!(
            text, self.policy_text,
            "{what}: the policy file must be unchanged"
        );
    }
}

fn first_link_pin(pin_dir: &Path) -> String {
    let mut links: Vec<_> = std::fs::read_dir(pin_dir.join("links"))
        .expect("links/")
        .flatten()
        .map(|e| e.path())
        .collect();
    links.sort();
    links.first().expect("a pinned link").display().to_string()
}

fn mode_of(path: &str) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.mode(), m.uid(), m.gid())
}

#[test]
fn agent_against_its_own_daemon() {
    enforcer_tests::require_root();
    let kernel = kernel_label();
    let lsm = !(kernel == "host" || kernel.ends_with("-nolsm"));
    let backend = if lsm { "lsm" } else { "fallback" };
    let mut setup = DaemonSetup::new("adversarial");
    setup.backend = "auto";
    let tools = TempDir::new("adversarial-tools");
    let bb = tools.busybox("busybox");
    let policy_file = setup.policy_dir.join("adv.toml").display().to_string();
    let policy_text = policy(&setup, &bb);
    std::fs::write(&policy_file, &policy_text).expect("write policy");
    std::fs::write(
        setup.policy_dir.join("other.toml"),
        "[agent]\nname = \"other\"\non_violation = \"kill\"\n",
    )
    .expect("write policy");
    let mut daemon = setup.start();
    assert!(
        daemon.ready_line.contains(&format!("backend={backend} ")),
        "kernel {kernel}: the daemon must pick {backend}: {}",
        daemon.ready_line
    );

    // The implicit rules are in the rule table, for every agent, with what they mean here.
    let status = setup.status();
    // On the fallback, agents started by `enforcer run` also get a Landlock envelope where the
    // kernel has Landlock (docs/landlock.md): their deny rules say so.
    let landlock = status.features.iter().any(|f| {
        f.name == "landlock-envelope"
            && f.reason
                .as_deref()
                .is_none_or(|r| !r.contains("not available"))
    });
    let enforcement = match (lsm, landlock) {
        (true, _) => "enforced",
        (false, true) => "landlock+enforced-by-kill",
        (false, false) => "enforced-by-kill",
    };
    for what in [
        "policy-dir",
        "state-dir",
        "pin-dir",
        "audit-log",
        "audit-log-dir",
        "api-socket",
        "binary",
    ] {
        for agent in ["adv", "other"] {
            let rule = format!("enforcer:{what}");
            let row = status
                .rules
                .iter()
                .find(|r| r.agent == agent && r.rule == rule);
            let row = row.unwrap_or_else(|| {
                panic!("status has no {rule} rule for {agent}: {:?}", status.rules)
            });
            assert_eq!(row.enforcement, enforcement, "{row:?}");
        }
    }
    assert!(
        daemon.log_text().contains("enforcer:policy-dir"),
        "the startup rule table lists the implicit rules"
    );

    // Case 1: the daemon claims BPF LSM enforcement exactly where it runs (6.12-nolsm has no
    // `bpf` in `lsm=`; the host cannot attach LSM programs): status and startup log agree.
    assert_eq!(status.backend, backend, "kernel {kernel}: status backend");
    let bpf_lsm = status.features.iter().find(|f| f.name == "bpf-lsm");
    let bpf_lsm = bpf_lsm
        .unwrap_or_else(|| panic!("status has no bpf-lsm feature line: {:?}", status.features));
    assert_eq!(bpf_lsm.available, lsm, "kernel {kernel}: status must say bpf-lsm available exactly where LSM enforces: {bpf_lsm:?}");
    let log = daemon.log_text();
    if lsm {
        assert!(
            log.contains("feature bpf-lsm: available"),
            "kernel {kernel}: the startup log must report bpf-lsm available"
        );
    } else {
        let why = bpf_lsm.reason.as_deref().unwrap_or("");
        assert!(
            !why.trim().is_empty(),
            "kernel {kernel}: bpf-lsm unavailable needs a reason: {bpf_lsm:?}"
        );
        assert!(
            log.contains("feature bpf-lsm: unavailable")
                && !log.contains("feature bpf-lsm: available"),
            "kernel {kernel}: the startup log must report bpf-lsm unavailable"
        );
        let uring = status.features.iter().find(|f| f.name == "io-uring-ops");
        assert!(
            matches!(uring, Some(f) if !f.available),
            "kernel {kernel}: the fallback must report io-uring-ops unavailable: {:?}",
            status.features
        );
        println!("kernel {kernel}: bpf-lsm unavailable: {why}");
    }
    adversarial::pass("1-kernel/backend-claim", backend);

    let mut ctx = Ctx {
        setup,
        lsm,
        policy_file,
        policy_text,
    };
    let setup = &ctx.setup;
    let d = setup.dir.path().display().to_string();
    let audit = setup.audit_log.display().to_string();
    let state = setup.state_dir.join("state.json").display().to_string();
    let socket = setup.socket.display().to_string();
    let exe = enforcer_exe();
    let pin = first_link_pin(&setup.pin_dir);
    let audit_head = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .next()
        .expect("a first record")
        .to_string();
    let exe_mode = mode_of(&exe);

    let policy_file = ctx.policy_file.clone();
    let evil = format!("{}/evil.toml", setup.policy_dir.display());
    let rotated = format!("{audit}.1");
    let at = |case, op: String, event_op, rule, target| Attempt {
        case,
        op,
        event_op,
        rule,
        target,
    };
    if lsm {
        let mut agent = Agent::spawn_registered(&setup.socket, "adv", &[], true);
        agent.start();
        for a in [
            at(
                "11-tamper/policy-dir-write",
                format!("write:{policy_file}"),
                "open",
                "enforcer:policy-dir",
                &policy_file,
            ),
            at(
                "11-tamper/policy-dir-create",
                format!("create:{evil}"),
                "mknod",
                "enforcer:policy-dir",
                &evil,
            ),
            at(
                "11-tamper/policy-dir-unlink",
                format!("unlink:{policy_file}"),
                "unlink",
                "enforcer:policy-dir",
                &policy_file,
            ),
            at(
                "11-tamper/audit-log-write",
                format!("write:{audit}"),
                "open",
                "enforcer:audit-log",
                &audit,
            ),
            at(
                "11-tamper/audit-log-unlink",
                format!("unlink:{audit}"),
                "unlink",
                "enforcer:audit-log",
                &audit,
            ),
            at(
                "11-tamper/audit-log-rename",
                format!("rename:{audit},{d}/moved.jsonl"),
                "rename",
                "enforcer:audit-log",
                &audit,
            ),
            at(
                "11-tamper/audit-log-dir-rename",
                format!("rename:{d},{d}-moved"),
                "rename",
                "enforcer:audit-log-dir",
                &d,
            ),
            at(
                "11-tamper/state-dir",
                format!("write:{state}"),
                "open",
                "enforcer:state-dir",
                &state,
            ),
            at(
                "11-tamper/pin-chown",
                format!("chown:{pin}"),
                "chown",
                "enforcer:pin-dir",
                &pin,
            ),
            at(
                "11-tamper/pin-unlink",
                format!("unlink:{pin}"),
                "unlink",
                "enforcer:pin-dir",
                &pin,
            ),
            at(
                "11-tamper/api-socket",
                format!("unlink:{socket}"),
                "unlink",
                "enforcer:api-socket",
                &socket,
            ),
            at(
                "11-tamper/binary",
                format!("chown:{exe}"),
                "chown",
                "enforcer:binary",
                &exe,
            ),
        ] {
            let case = a.case;
            ctx.attempt(Some(&mut agent), a);
            adversarial::pass(case, backend);
        }
        assert!(
            !Path::new(&evil).exists(),
            "no file was created in the policy directory"
        );
        agent.finish();
    } else {
        // Only attempts that harm nothing when they complete: the kill comes after the syscall.
        for a in [
            at(
                "11-tamper/policy-dir-write",
                format!("write:{policy_file}"),
                "open",
                "enforcer:policy-dir",
                &policy_file,
            ),
            at(
                "11-tamper/audit-log-write",
                format!("write:{audit}"),
                "open",
                "enforcer:audit-log",
                &audit,
            ),
            at(
                "11-tamper/state-dir",
                format!("write:{state}"),
                "open",
                "enforcer:state-dir",
                &state,
            ),
            at(
                "11-tamper/pin-chown",
                format!("chown:{pin}"),
                "chown",
                "enforcer:pin-dir",
                &pin,
            ),
            at(
                "11-tamper/api-socket",
                format!("chown:{socket}"),
                "chown",
                "enforcer:api-socket",
                &socket,
            ),
            at(
                "11-tamper/binary",
                format!("chown:{exe}"),
                "chown",
                "enforcer:binary",
                &exe,
            ),
        ] {
            let case = a.case;
            ctx.attempt(None, a);
            adversarial::pass(case, backend);
        }
        // What completes before the kill, shown where it harms nothing lasting.
        ctx.attempt(
            None,
            at(
                "11-tamper/policy-dir-create",
                format!("create:{evil}"),
                "open",
                "enforcer:policy-dir",
                &evil,
            ),
        );
        assert!(
            Path::new(&evil).exists(),
            "the O_CREAT open happened before the kill (the limitation)"
        );
        setup.wait_records("the empty policy file is rejected whole", 10, |r| {
            r.iter().any(|x| x["event"] == "reload-failed")
        });
        assert_eq!(setup.status().policy_version, 1, "the running policy stays");
        std::fs::remove_file(&evil).expect("remove the empty policy file");
        adversarial::limitation("11-tamper/policy-dir-create", backend, "the O_CREAT open completes before the kill: an empty file appears in the policy directory; the reload rejects it whole and the running policy stays");
        std::fs::write(&rotated, "x\n").expect("a rotated log file");
        ctx.attempt(
            None,
            at(
                "11-tamper/audit-log-unlink",
                format!("unlink:{rotated}"),
                "unlink",
                "enforcer:audit-log-rotated",
                &rotated,
            ),
        );
        assert!(
            !Path::new(&rotated).exists(),
            "the unlink completed before the kill (the limitation)"
        );
        adversarial::limitation("11-tamper/audit-log-unlink", backend, "sys_enter_unlink* kills after the unlink completes: a kill-mode agent removes one protected file (here a rotated log) and dies; the live log is not closed by it (the daemon writes on through its descriptor)");
        std::fs::write(&rotated, "x\n").expect("a rotated log file");
        ctx.attempt(
            None,
            at(
                "11-tamper/audit-log-rename",
                format!("rename:{rotated},{d}/moved.jsonl"),
                "rename",
                "enforcer:audit-log-rotated",
                &rotated,
            ),
        );
        assert!(
            Path::new(&format!("{d}/moved.jsonl")).exists(),
            "the rename completed before the kill (the limitation)"
        );
        std::fs::remove_file(format!("{d}/moved.jsonl")).expect("clean up");
        adversarial::limitation(
            "11-tamper/audit-log-rename",
            backend,
            "sys_enter_rename* kills after the rename completes (shown on a rotated log file)",
        );
        for case in [
            "11-tamper/policy-dir-unlink",
            "11-tamper/audit-log-dir-rename",
        ] {
            adversarial::limitation(case, backend, "not attempted: like every unlink/rename on the fallback it completes before the kill (see 11-tamper/audit-log-unlink); it would take the daemon's state away");
        }
        // The unlink completes before the kill; the daemon still holds the link and pins it
        // again at its next heartbeat (500 ms).
        let agent =
            Agent::spawn_registered(&setup.socket, "adv", &[format!("unlink:{pin}")], false);
        let (results, status) = agent.go_until_exit();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "pin unlink: the agent is killed: {results:?}"
        );
        setup.wait_records("pin unlink: kill event", 10, |r| {
            events(r, "unlink", "enforcer:pin-dir", &pin)
                .iter()
                .any(|e| e["verdict"] == "kill")
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !Path::new(&pin).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not pin {pin} again:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The pin reappears before the daemon's log line about it is written.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !daemon.log_text().contains("is pinned again") {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon logs the removed pin:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        adversarial::limitation("11-tamper/pin-unlink", backend, "the sys_enter observer kills after the unlink completes; the daemon holds every link (no hook detaches while it runs) and pins it again within 500 ms");
    }
    ctx.unchanged("after the tampering attempts");
    let head = std::fs::read_to_string(&audit).expect("audit log");
    assert_eq!(
        head.lines().next(),
        Some(audit_head.as_str()),
        "the audit log was not rewritten"
    );
    for p in [&state, &socket, &pin] {
        assert!(Path::new(p).exists(), "{p} still exists");
    }
    assert_eq!(mode_of(&exe), exe_mode, "the binary is unchanged");

    // Case 8: `enforcer run --agent other` from inside the agent (no delegation): refused and
    // logged.
    let mut agent = Agent::spawn_registered(&setup.socket, "adv", &[], true);
    agent.start();
    // `enforcer run` with a pipe as stdin left the caller's session: no controlling terminal
    // to push keystrokes into.
    let r = agent.op("session:-");
    assert_eq!(r.errno, 0, "the agent leads its own session: {r:?}");
    let r = agent.op(&format!(
        "exec:{exe},run,--socket,{socket},--agent,other,--,{bb},true"
    ));
    assert!(
        r.result.contains("exit status: 2"),
        "enforcer run inside an agent must be refused (exit 2): {r:?}"
    );
    let records = setup.wait_records("register-refused record", 10, |r| {
        r.iter().any(|x| x["event"] == "register-refused")
    });
    let refused = records
        .iter()
        .find(|x| x["event"] == "register-refused")
        .unwrap();
    assert_eq!(
        refused["agent"], "adv",
        "the record names the asking agent: {refused}"
    );
    let why = refused["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("cannot start agent \"other\"") && why.contains("does not delegate"),
        "{refused}"
    );
    assert!(
        !records
            .iter()
            .any(|x| x["event"] == "register" && x["agent"] == "other"),
        "nothing registered as other"
    );
    adversarial::pass("8-identity/re-register", backend);

    // Case 11: the agent SIGKILLs the daemon, then ptraces it.
    let daemon_pid = daemon.pid;
    if lsm {
        // BPF LSM refuses both (task_kill, ptrace_access_check against the daemon's pid).
        for (case, op, event_op, detail) in [
            (
                "11-tamper/kill-daemon",
                format!("kill:{daemon_pid}"),
                "signal",
                libc::SIGKILL as u64,
            ),
            (
                "11-tamper/ptrace-daemon",
                format!("ptrace:{daemon_pid}"),
                "ptrace",
                0,
            ),
        ] {
            let r = agent.op(&op);
            assert_eq!(r.errno, EPERM, "{case}: {op} must be refused: {r:?}");
            let records = setup.wait_records(&format!("{case}: {event_op} event"), 10, |r| {
                r.iter()
                    .any(|x| x["type"] == "event" && x["op"] == event_op)
            });
            let e = records
                .iter()
                .find(|x| x["type"] == "event" && x["op"] == event_op)
                .unwrap();
            assert_eq!(
                (e["agent"].as_str(), e["verdict"].as_str()),
                (Some("adv"), Some("deny")),
                "{case}: {e}"
            );
            if detail != 0 {
                assert_eq!(
                    e["open_flags"].as_u64(),
                    Some(detail),
                    "{case}: the event names the signal: {e}"
                );
            }
            assert!(
                setup.status().policy_version > 0,
                "{case}: the daemon still runs and answers"
            );
            adversarial::pass(case, backend);
        }
        let mut bystander = std::process::Command::new(&bb)
            .args(["sleep", "60"])
            .spawn()
            .expect("spawn sleep");
        let r = agent.op(&format!("kill:{}", bystander.id()));
        assert_eq!(
            r.errno, 0,
            "signals to other processes are not the daemon's business: {r:?}"
        );
        assert_eq!(
            bystander.wait().expect("reap").signal(),
            Some(libc::SIGKILL)
        );
        agent.finish();
        daemon.stop();
    } else {
        // The fallback cannot refuse either: the agent kills the daemon; enforcement goes on
        // from the pins, and the next daemon logs what happened meanwhile.
        // Unless Landlock scopes the launcher session's signals (ABI 6+, docs/landlock.md):
        // then the kill is refused, and the test kills the daemon itself to go on.
        let landlock = ctx
            .setup
            .status()
            .features
            .into_iter()
            .find(|f| f.name == "landlock-envelope");
        let landlock_on = landlock.as_ref().is_some_and(|f| {
            f.reason
                .as_deref()
                .is_none_or(|r| !r.contains("not available"))
        });
        let signals_scoped = landlock.as_ref().is_some_and(|f| f.available);
        let r = agent.op(&format!("kill:{daemon_pid}"));
        if signals_scoped {
            assert_eq!(
                r.errno,
                libc::EPERM,
                "the Landlock signal scope refuses the agent's kill of the daemon: {r:?}"
            );
            adversarial::pass("11-tamper/kill-daemon", backend);
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(daemon_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("SIGKILL the daemon from outside the agent");
        } else {
            assert_eq!(r.errno, 0, "killing the daemon is not prevented on the fallback (the documented limitation): {r:?}");
        }
        let status = daemon.wait_exit(Duration::from_secs(10));
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the daemon died of a SIGKILL"
        );
        let r = agent.op_or_exit(&format!("write:{}", ctx.policy_file));
        assert!(r.is_none(), "still killed with no daemon: {r:?}");
        assert_eq!(agent.wait().signal(), Some(libc::SIGKILL));
        ctx.unchanged("after the daemon was killed");
        let mut daemon = ctx.setup.start();
        let setup = &ctx.setup;
        let records =
            setup.wait_records("the downtime's event after the restarted record", 30, |r| {
                let restarted = r.iter().position(|x| x["event"] == "restarted");
                restarted.is_some_and(|i| {
                    r[i..].iter().any(|x| {
                        x["type"] == "event"
                            && x["rule"] == "enforcer:policy-dir"
                            && x["verdict"] == "kill"
                    })
                })
            });
        let restarted = records.iter().find(|x| x["event"] == "restarted").unwrap();
        assert!(
            restarted["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("daemon pid {daemon_pid} ended without stopping")),
            "{restarted}"
        );
        if !signals_scoped {
            adversarial::limitation("11-tamper/kill-daemon", backend, "tracepoints cannot refuse kill(2) and this kernel's Landlock cannot scope signals (ABI < 6): an agent allowed to signal root processes (root, CAP_KILL) can SIGKILL the daemon; the pinned programs keep enforcing and the next daemon logs the downtime's events after its restarted record");
        }

        // ptrace of the (new) daemon: seen at ptrace entry (the daemon is outside every
        // agent's chain), the kill-mode agent is SIGKILLed; the attach itself may complete and
        // queue a SIGSTOP to the daemon before the tracer dies: the limitation.
        let agent = Agent::spawn_registered(
            &setup.socket,
            "adv",
            &[format!("ptrace:{}", daemon.pid)],
            false,
        );
        let (r, status) = agent.go_until_exit();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the agent must be killed at ptrace entry: {r:?}"
        );
        // A stop the attach left behind is undone (the harness is not an agent).
        unsafe { libc::kill(daemon.pid as libc::pid_t, libc::SIGCONT) };
        assert!(
            setup.status().policy_version > 0,
            "the daemon still answers after the attach"
        );
        if landlock_on {
            // Landlock refuses ptrace of any process outside the agent's domain: the attach
            // never happens, and the fallback kills the agent at ptrace entry.
            adversarial::pass("11-tamper/ptrace-daemon", backend);
        } else {
            adversarial::limitation("11-tamper/ptrace-daemon", backend, "tracepoints cannot refuse ptrace(2) and this kernel has no Landlock: the agent is SIGKILLed at ptrace entry (on_violation = \"kill\"), but the attach may complete and leave the daemon stopped by its SIGSTOP; run agents as another user than the daemon's");
        }
        daemon.stop();
    }
    drop(tools);
    println!("checked on {kernel} ({backend}): implicit enforcer:* rules beat the agent's write allows for the policy dir, audit log, state dir, pins, socket and binary; enforcer run inside an agent refused and logged; the agent's SIGKILL and ptrace of the daemon refused on BPF LSM; on the fallback (limitations) a killed daemon leaves enforcement running and the restart logs the downtime");
}
