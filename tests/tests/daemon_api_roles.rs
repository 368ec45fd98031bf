//! Who may ask what on the daemon's API (docs/daemon.md, "Who may ask what"), on a real daemon
//! (`--backend auto`: BPF LSM in 6.1/6.12, the fallback on the host and 6.12-nolsm). One daemon
//! for every case:
//! - an agent whose policy lets it reach the socket writes grant, revoke, reload, subscribe,
//!   status and grants requests itself: each refused with the role it lacks, each an
//!   `api-refused` record naming its agent and session, and the open its grant asked for stays
//!   denied (EPERM on BPF LSM; on the fallback EACCES from the session's Landlock envelope);
//! - a launcher (a non-root uid whose supplementary group is `api.group`) runs an agent and
//!   reads status, but is refused grant; root (not an agent) grants, and the open is allowed
//!   (on the fallback in a session launched after the grant: envelopes do not widen);
//! - a connection whose process exited and whose pid was given to a stranger cannot register
//!   that stranger (pidfd where the kernel has SO_PEERPIDFD, else the start time);
//! - registering another pid, or the caller itself after it changed uid, is refused;
//! - `enforcer run` refuses a socket served by a non-root process and does not run the command.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{
    adversarial,
    agent::{as_user, enforcer_bin, testkit_bin},
    daemon::*,
    Agent, DaemonBackend, EPERM,
};
use serde_json::Value;

const TEST: &str = "daemon_api_roles::an_agent_cannot_widen_its_own_permissions";
const AGENT: &str = "roles-agent";
/// The launcher group and user (raw ids: the VMs have no user database).
const LAUNCH_GROUP: &str = "enforcer-test-launch";
const LAUNCH_GID: u32 = 47123;
const LAUNCH_UID: u32 = 47124;

/// Adds the launcher group to /etc/group for the test (the daemon resolves `api.group` by
/// name) and puts the file back as it was.
struct GroupEntry {
    before: Option<String>,
}

impl GroupEntry {
    fn add() -> GroupEntry {
        let before = std::fs::read_to_string("/etc/group").ok();
        let mut text = before.clone().unwrap_or_default();
        if !text
            .lines()
            .any(|l| l.starts_with(&format!("{LAUNCH_GROUP}:")))
        {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{LAUNCH_GROUP}:x:{LAUNCH_GID}:\n"));
            std::fs::write("/etc/group", text).expect("write /etc/group");
        }
        GroupEntry { before }
    }
}

impl Drop for GroupEntry {
    fn drop(&mut self) {
        let _ = match &self.before {
            Some(text) => std::fs::write("/etc/group", text),
            None => std::fs::remove_file("/etc/group"),
        };
    }
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run enforcer");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn enforcer(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(enforcer_bin());
    cmd.arg(args[0])
        .arg("--socket")
        .arg(socket)
        .args(&args[1..]);
    cmd
}

fn daemon_events<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

#[test]
fn an_agent_cannot_widen_its_own_permissions() {
    enforcer_tests::require_root();
    let t0 = Instant::now();
    let _group = GroupEntry::add();
    let mut setup = DaemonSetup::new("daemon_api_roles");
    let root = setup.dir.path().to_path_buf();
    let secret = root.join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    for name in ["a", "b", "stranger"] {
        std::fs::write(secret.join(name), "x").expect("write fixture");
    }
    let socket = setup.socket.to_string_lossy().into_owned();
    std::fs::write(
        setup.policy_dir.join("agent.toml"),
        format!(
            "[agent]\nname = \"{AGENT}\"\non_violation = \"audit\"\nlog.file_allow = true\n\n[file]\nread = [{}]\n\n[exec]\nallow = [\"{}\", \"{}\"]\n\n[net]\nconnect = [\"unix:{socket}\"]\n",
            toml_list(LIBC_READS),
            enforcer_exe(),
            testkit_exe()
        ),
    )
    .expect("write policy");
    setup.extra = vec!["--socket-group".into(), LAUNCH_GROUP.into()];
    let (mut daemon, backend) = setup.start_first(TEST);
    let lsm = backend == DaemonBackend::Lsm;
    let name = backend.name();
    let version = setup.status().policy_version;

    // 1. The agent (launched by root: root and confined) asks for everything itself.
    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let records = setup.wait_records("the agent's register record", 10, |r| {
        daemon_events(r, "register")
            .iter()
            .any(|e| e["peer"]["pid"] == agent.pid)
    });
    let session = daemon_events(&records, "register")
        .iter()
        .find(|e| e["peer"]["pid"] == agent.pid)
        .and_then(|e| e["session"].as_str())
        .expect("session of the agent")
        .to_owned();
    let grant_line = format!(
        r#"{{"request":"grant","agent":"{AGENT}","rule":"file.read {}/**","seconds":600}}"#,
        secret.display()
    );
    let requests = [
        ("grant", grant_line.as_str(), "the admin role"),
        ("revoke", r#"{"request":"revoke","id":1}"#, "the admin role"),
        ("reload", r#"{"request":"reload"}"#, "the admin role"),
        (
            "subscribe",
            r#"{"request":"subscribe"}"#,
            "the auditor or admin role",
        ),
        (
            "status",
            r#"{"request":"status"}"#,
            "the launcher, auditor or admin role",
        ),
        (
            "grants",
            r#"{"request":"grants"}"#,
            "the launcher, auditor or admin role",
        ),
    ];
    for (verb, line, needs) in requests {
        let r = agent.op(&format!("api:{socket}:{line}"));
        assert_eq!(r.errno, 0, "{verb}: the exchange itself failed: {r:?}");
        let answer: Value = serde_json::from_str(&r.result)
            .unwrap_or_else(|e| panic!("{verb}: answer {:?}: {e}", r.result));
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            answer["result"] == "error"
                && message.starts_with(&format!("permission denied: {verb} needs {needs}; "))
                && message.contains(&format!("(pid {}, uid 0, gid 0)", agent.pid))
                && message.contains(&format!("is a member of agent \"{AGENT}\""))
                && message.contains(&session),
            "{verb} from the agent: {answer}"
        );
        println!("{verb} from the agent: {message}");
    }
    let records = setup.wait_records("six api-refused records", 10, |r| {
        daemon_events(r, "api-refused").len() >= requests.len()
    });
    let refused = daemon_events(&records, "api-refused");
    for ((verb, _, _), record) in requests.iter().zip(&refused) {
        assert!(
            record["verb"] == *verb
                && record["agent"] == AGENT
                && record["session"] == session.as_str()
                && record["peer"]["pid"] == agent.pid
                && record["peer"]["uid"] == 0
                && record["peer"]["roles"] == serde_json::json!(["agent-member"]),
            "api-refused for {verb}: {record}"
        );
    }
    assert_eq!(
        setup.status().policy_version,
        version,
        "refused requests must apply nothing"
    );
    // The open the refused grant asked for stays denied.
    let denied = agent.op(&format!("open:{}", secret.join("a").display()));
    assert_eq!(
        denied.errno,
        // The fallback: refused by the session's Landlock envelope (docs/landlock.md).
        if lsm { EPERM } else { libc::EACCES },
        "open after the refused grant: {denied:?}"
    );
    for (verb, _, _) in requests {
        adversarial::pass(&format!("13-api/agent-{verb}"), name);
    }

    // 2. A launcher: runs an agent and reads status, may not grant.
    let launcher = (LAUNCH_UID, LAUNCH_UID, &[LAUNCH_GID][..]);
    let as_launcher = |cmd: &mut Command| {
        as_user(cmd, launcher.0, launcher.1, launcher.2);
    };
    let mut launched = Agent::spawn_registered_as(&setup.socket, AGENT, true, launcher);
    launched.start();
    let records = setup.wait_records("the launcher's register record", 10, |r| {
        daemon_events(r, "register")
            .iter()
            .any(|e| e["peer"]["pid"] == launched.pid)
    });
    let register = daemon_events(&records, "register")
        .into_iter()
        .find(|e| e["peer"]["pid"] == launched.pid)
        .expect("register record");
    assert!(
        register["peer"]["uid"] == LAUNCH_UID
            && register["peer"]["roles"] == serde_json::json!(["launcher"]),
        "launcher registration: {register}"
    );
    let mut status = enforcer(&setup.socket, &["status"]);
    as_launcher(&mut status);
    let (ok, out) = output(&mut status);
    assert!(ok && out.contains(AGENT), "status as a launcher: {out}");
    let mut grant = enforcer(
        &setup.socket,
        &[
            "grant",
            "--agent",
            AGENT,
            &format!("file.read {}/**", secret.display()),
            "--for",
            "10m",
        ],
    );
    as_launcher(&mut grant);
    let (ok, out) = output(&mut grant);
    assert!(
        !ok && out.contains("permission denied: grant needs the admin role")
            && out.contains(&format!("uid {LAUNCH_UID}"))
            && out.contains("has the role launcher"),
        "grant as a launcher: {out}"
    );
    launched.finish();
    adversarial::pass("13-api/launcher-grant", name);

    // 3. Pid reuse: a root launcher connects, forks a child that keeps the connection, exits;
    // its pid goes to a stranger; the child asks to register "the caller".
    let orphan_dir = root.join("orphan");
    std::fs::create_dir_all(&orphan_dir).expect("mkdir");
    let mut launcher_proc = Agent::spawn(&[], true);
    launcher_proc.start();
    let reused_pid = launcher_proc.pid;
    let r = launcher_proc.op(&format!(
        "api-orphan:{socket}:{}:{{\"request\":\"register\",\"agent\":\"{AGENT}\",\"pid\":{reused_pid}}}",
        orphan_dir.display()
    ));
    assert_eq!(r.errno, 0, "api-orphan: {r:?}");
    launcher_proc.finish();
    let stranger = Agent::spawn_with_pid(reused_pid, &[], true);
    let reused = stranger.is_some();
    std::fs::write(orphan_dir.join("go"), "").expect("go");
    let answer = wait_file(&orphan_dir.join("answer"), 30);
    let answer: Value =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("orphan answer {answer:?}: {e}"));
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        answer["result"] == "error"
            && message.contains(&format!("pid {reused_pid}"))
            && (message.contains("has exited") || message.contains("pid reused")),
        "register for a reused pid (stranger got it: {reused}): {answer}"
    );
    println!("register on the connection of an exited caller (pid reused by a stranger: {reused}): {message}");
    if let Some(mut stranger) = stranger {
        stranger.start();
        // Not an agent: nothing of it in the audit log, its open is not judged.
        let r = stranger.op(&format!("open:{}", secret.join("stranger").display()));
        assert_eq!(r.errno, 0, "the stranger is not confined: {r:?}");
        stranger.finish();
        adversarial::pass("13-api/register-reused-pid", name);
    } else {
        adversarial::limitation(
            "13-api/register-reused-pid",
            name,
            "the pid could not be handed to a stranger (ns_last_pid raced): only the exited caller was refused",
        );
    }

    // 4. Another pid than the caller's, and the caller itself after it changed uid.
    let mut other = Agent::spawn(&[], true);
    other.start();
    let r = other.op(&format!(
        "api:{socket}:{{\"request\":\"register\",\"agent\":\"{AGENT}\",\"pid\":{}}}",
        daemon.pid
    ));
    assert!(
        r.result
            .contains(&format!("pid {} is not the caller", daemon.pid)),
        "register of another pid: {r:?}"
    );
    let r = other.op(&format!(
        "api-setuid:{LAUNCH_UID}:{socket}:{{\"request\":\"register\",\"agent\":\"{AGENT}\",\"pid\":{}}}",
        other.pid
    ));
    assert!(
        r.result.contains(&format!("runs as uid {LAUNCH_UID}"))
            && r.result.contains("connected as uid 0"),
        "register after setuid: {r:?}"
    );
    other.finish();
    adversarial::pass("13-api/register-other-pid", name);
    adversarial::pass("13-api/register-other-uid", name);

    // 5. A fake daemon served by a non-root process: `enforcer run` refuses, runs nothing.
    let fake_dir = root.join("fake");
    std::fs::create_dir_all(&fake_dir).expect("mkdir");
    nix::unistd::chown(
        &fake_dir,
        Some(nix::unistd::Uid::from_raw(LAUNCH_UID)),
        None,
    )
    .expect("chown");
    let fake = fake_dir.join("api.sock");
    let mut fake_server = spawn_as_launcher_try_ops(launcher);
    fake_server.start();
    let r = fake_server.op(&format!("fake-daemon:{}", fake.display()));
    assert_eq!(r.errno, 0, "fake daemon: {r:?}");
    let marker = root.join("ran-unconfined");
    for via_env in [false, true] {
        let mut run = Command::new(enforcer_bin());
        run.arg("run");
        if via_env {
            run.env("ENFORCER_SOCKET", &fake);
        } else {
            run.arg("--socket").arg(&fake);
        }
        run.args(["--agent", AGENT, "--"])
            .arg(testkit_bin())
            .args(["try-ops", "--"])
            .arg(format!("create:{}", marker.display()));
        let (ok, out) = output(&mut run);
        assert!(
            !ok && out.contains(&format!(
                "is served by a process of uid {LAUNCH_UID}, not by root"
            )),
            "enforcer run on a fake socket (env: {via_env}): {out}"
        );
        assert!(!marker.exists(), "the command ran (env: {via_env})");
    }
    fake_server.kill();
    adversarial::pass("13-api/run-fake-socket", name);

    // 6. Root (not an agent) grants; the agent's open is now allowed by the grant.
    let (ok, out) = output(&mut enforcer(
        &setup.socket,
        &[
            "grant",
            "--agent",
            AGENT,
            &format!("file.read {}/**", secret.display()),
            "--for",
            "10m",
        ],
    ));
    assert!(ok, "grant as root: {out}");
    let b = secret.join("b").to_string_lossy().into_owned();
    if !lsm {
        // The fallback: the running session's Landlock envelope does not widen
        // (docs/landlock.md); a session launched after the grant gets it.
        assert_eq!(
            agent.op(&format!("open:{b}")).errno,
            libc::EACCES,
            "the older session's envelope holds no grant"
        );
        agent.finish();
        agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
        agent.start();
    }
    assert_eq!(agent.op(&format!("open:{b}")).errno, 0, "granted open");
    let a = secret.join("a").to_string_lossy().into_owned();
    // On the fallback the older session's refusal of b is in the log too: wait for the granted
    // open's own record, the last one on b.
    let records = setup.wait_records("the verdicts on secret/a and secret/b", 15, |r| {
        r.iter()
            .any(|e| e["op"] == "open" && e["path"] == a.as_str())
            && r.iter()
                .any(|e| e["op"] == "open" && e["path"] == b.as_str() && e["verdict"] == "allow")
    });
    let verdict = |path: &str| {
        records
            .iter()
            .rev()
            .find(|e| e["op"] == "open" && e["path"] == path)
            .cloned()
            .unwrap_or_default()
    };
    let (va, vb) = (verdict(&a), verdict(&b));
    assert_eq!(
        va["verdict"],
        // The fallback: refused by the envelope, so `deny` (flagged landlock).
        "deny",
        "after the refused grant: {va}"
    );
    assert!(
        vb["verdict"] == "allow" && vb["rule"].as_str().is_some_and(|r| r.starts_with("grant:")),
        "after the admin's grant: {vb}"
    );
    let grant_record = setup
        .records()
        .into_iter()
        .find(|r| r["event"] == "grant")
        .expect("grant record");
    assert!(
        grant_record["peer"]["uid"] == 0
            && grant_record["peer"]["roles"] == serde_json::json!(["admin"]),
        "the grant record names the admin: {grant_record}"
    );
    agent.finish();
    daemon.stop();
    println!(
        "checked ({name} backend, {:.1}s): an agent's grant/revoke/reload/subscribe/status/grants refused with api-refused records and the open stays denied; a launcher runs agents and reads status but cannot grant; root grants; a reused pid, another pid and another uid cannot be registered; enforcer run refuses a socket served by uid {LAUNCH_UID}",
        t0.elapsed().as_secs_f64()
    );
}

/// try-ops as the launcher user (the fake daemon must not be root).
fn spawn_as_launcher_try_ops((uid, gid, groups): (u32, u32, &[u32])) -> Agent {
    let mut cmd = Command::new(testkit_bin());
    as_user(&mut cmd, uid, gid, groups);
    Agent::spawn_command(cmd, true)
}

fn wait_file(path: &PathBuf, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {secs}s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
