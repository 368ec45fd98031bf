//! End to end on the fallback backend (every kernel): learn a policy from a scripted agent run in
//! audit mode, enforce the learned policy, and see the same run pass while a new forbidden action
//! is refused (a connect to an unlearned port: EPERM in the kernel) or stopped (an open of an
//! unlearned file: SIGKILL, `on_violation = "kill"`).

use std::{net::TcpListener, path::Path, process::Command};

use enforcer_tests::{agent::enforcer_bin, daemon::*, Agent, TempDir, EPERM};
use serde_json::Value;

const AGENT: &str = "learn-agent";

fn copy_sets(to: &Path) {
    // In the test VMs the repository's policies are at $ENFORCER_POLICIES (as for daemon_demo).
    let sets = std::env::var_os("ENFORCER_POLICIES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"))
        .join("sets");
    std::fs::create_dir_all(to).expect("create sets dir");
    for entry in std::fs::read_dir(&sets)
        .expect("read policies/sets")
        .flatten()
    {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy set");
    }
}

/// Events of the agent's session `session` (as `enforcer run` registered it).
fn session_events<'a>(records: &'a [Value], session: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "event" && r["session"] == session)
        .collect()
}

fn last_session(records: &[Value]) -> String {
    records
        .iter()
        .rev()
        .find(|r| r["event"] == "register" && r["agent"] == AGENT)
        .and_then(|r| r["session"].as_str())
        .expect("register record")
        .to_owned()
}

#[test]
fn a_learned_policy_passes_the_same_run_and_denies_a_new_action() {
    enforcer_tests::require_root();
    let work = TempDir::new("daemon_learn-work");
    let files: Vec<String> = ["a.txt", "b.txt", "c.txt"]
        .iter()
        .map(|f| work.file(&format!("project/{f}"), "x"))
        .collect();
    let secret = work.file("other/secret.txt", "s");
    let learned_port = TcpListener::bind("127.0.0.1:0").expect("listen");
    let other_port = TcpListener::bind("127.0.0.1:0").expect("listen");
    let (pl, po) = (
        learned_port.local_addr().unwrap().port(),
        other_port.local_addr().unwrap().port(),
    );
    let mut ops: Vec<String> = files.iter().map(|f| format!("open:{f}")).collect();
    ops.push(format!("connect:127.0.0.1:{pl}"));

    let mut setup = DaemonSetup::new("daemon_learn");
    setup.backend = "fallback";
    copy_sets(&setup.policy_dir.join("sets"));
    let policy_file = setup.policy_dir.join("agent.toml");
    std::fs::write(
        &policy_file,
        format!("[agent]\nname = \"{AGENT}\"\nmode = \"audit\"\nlog.file_allow = true\n"),
    )
    .expect("write policy");
    let mut daemon = setup.start();

    // 1. Record: audit mode blocks nothing and logs every operation.
    let r = Agent::spawn_registered(&setup.socket, AGENT, &ops, false).go(ops.len());
    assert!(
        r.iter().all(|x| x.errno == 0),
        "audit mode must block nothing: {r:?}"
    );
    let records = setup.wait_records("the recorded connect", 10, |recs| {
        recs.iter().any(|e| e["op"] == "connect" && e["port"] == pl)
    });
    let recorded = last_session(&records);
    assert!(
        session_events(&records, &recorded)
            .iter()
            .any(|e| e["verdict"] == "audit-deny"),
        "the run must have been recorded as would-be-denied"
    );

    // 2. Learn, then enforce the learned policy (killing on file violations, which the fallback
    // observes after the fact).
    let out = Command::new(enforcer_bin())
        .args(["learn", "--agent", AGENT, "--log"])
        .arg(&setup.audit_log)
        .arg("--sets")
        .arg(setup.policy_dir.join("sets"))
        .output()
        .expect("run enforcer learn");
    let learned = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "learn failed: {}{learned}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        learned.contains(&format!("127.0.0.1:{pl}/tcp")),
        "the connect must be learned:\n{learned}"
    );
    assert!(learned.contains("mode = \"enforce\""), "{learned}");
    let enforced = learned.replacen(
        "mode = \"enforce\"",
        "mode = \"enforce\"\non_violation = \"kill\"",
        1,
    );
    let version = setup.status().policy_version;
    std::fs::write(&policy_file, &enforced).expect("write the learned policy");
    daemon.hup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while setup.status().policy_version == version {
        assert!(
            std::time::Instant::now() < deadline,
            "the learned policy was not applied; last reload error: {:?}",
            setup.status().last_reload_error
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // 3. The same run passes: nothing refused, nothing killed, no denial logged.
    let (r, status) = Agent::spawn_registered(&setup.socket, AGENT, &ops, false).go_until_exit();
    assert_eq!(
        r.len(),
        ops.len(),
        "the same run must not be killed ({status:?}): {r:?}\nlearned policy:\n{enforced}"
    );
    assert!(
        r.iter().all(|x| x.errno == 0),
        "the same run must pass: {r:?}"
    );
    let records = setup.wait_records("the enforced run's connect", 10, |recs| {
        let s = last_session(recs);
        session_events(recs, &s)
            .iter()
            .any(|e| e["op"] == "connect")
    });
    let run = last_session(&records);
    assert_ne!(run, recorded);
    let denied: Vec<_> = session_events(&records, &run)
        .into_iter()
        .filter(|e| e["verdict"] != "allow")
        .collect();
    assert!(denied.is_empty(), "the same run under the learned policy must have no denials: {denied:#?}\nlearned policy:\n{enforced}");

    // 4. New actions are refused: a connect the run never made, then an open of a file it never read.
    let new_ops = vec![format!("connect:127.0.0.1:{po}"), format!("open:{secret}")];
    let (r, status) =
        Agent::spawn_registered(&setup.socket, AGENT, &new_ops, false).go_until_exit();
    assert_eq!(
        r.first().map(|x| x.errno),
        Some(EPERM),
        "an unlearned connect must be refused in the kernel: {r:?}"
    );
    // The agent was started by `enforcer run`: its Landlock envelope (the learned policy's
    // trees, docs/landlock.md) refuses the open before it happens, so nothing is there to kill.
    assert!(
        status.success() && r.get(1).map(|x| x.errno) == Some(libc::EACCES),
        "an unlearned open must be refused by the envelope (EACCES): {status:?}, {r:?}"
    );
    let records = setup.wait_records("the refusal's event", 10, |recs| {
        recs.iter().any(|e| {
            e["verdict"] == "deny"
                && e["path"] == secret.as_str()
                && e["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "landlock"))
        })
    });
    assert!(
        records
            .iter()
            .any(|e| e["verdict"] == "deny" && e["port"] == po),
        "the refused connect is logged"
    );
    daemon.stop();
    drop((learned_port, other_port));
    println!("checked: audit run recorded; learned policy compiles and applies; the same run passes with no denial; unlearned connect EPERM, unlearned open refused by the envelope (EACCES, deny flagged landlock)");
}
