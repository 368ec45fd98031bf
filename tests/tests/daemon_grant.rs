//! End to end on the fallback backend (cgroup connect hooks refuse in the kernel, on every
//! kernel of the matrix): `enforcer grant` opens a connect for a few seconds; the grant's expiry
//! is checked in the kernel, so with the daemon SIGKILLed the connect is allowed until the
//! expiry and refused after it. A restarted daemon keeps the grants that have not expired, logs
//! the one that did, and `--revoke` ends one at once. Bad grants change nothing.

use std::{
    net::TcpListener,
    process::Command,
    time::Duration,
};

use enforcer_tests::{agent::enforcer_bin, daemon::*, Agent, EPERM};
use serde_json::Value;

const AGENT: &str = "grant-agent";

/// `enforcer grant ARGS` against the test daemon: (success, stdout + stderr).
fn grant(setup: &DaemonSetup, args: &[&str]) -> (bool, String) {
    let out = Command::new(enforcer_bin()).arg("grant").arg("--socket").arg(&setup.socket).args(args).output().expect("run enforcer grant");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn daemon_events<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

#[test]
fn an_expired_grant_denies_in_the_kernel_with_the_daemon_dead() {
    enforcer_tests::require_root();
    let short = TcpListener::bind("127.0.0.1:0").expect("listen");
    let long = TcpListener::bind("127.0.0.1:0").expect("listen");
    let (ps, pl) = (short.local_addr().unwrap().port(), long.local_addr().unwrap().port());
    let mut setup = DaemonSetup::new("daemon_grant");
    setup.backend = "fallback";
    std::fs::write(
        setup.policy_dir.join("agent.toml"),
        format!("[agent]\nname = \"{AGENT}\"\non_violation = \"audit\"\n\n[net]\nconnect = [\"127.0.0.1:1\"]\ndeny = [\"127.0.0.2\"]\n"),
    )
    .expect("write policy");
    let mut daemon = setup.start();
    let version = setup.status().policy_version;

    // Refused grants: precise errors, nothing applied.
    for (args, want) in [
        (vec!["--agent", "nobody", "net.connect 127.0.0.1:80", "--for", "10s"], "no agent named \"nobody\""),
        (vec!["--agent", AGENT, "file.read /etc/passwd", "--for", "10s"], "net.connect rules only"),
        (vec!["--agent", AGENT, "net.connect 127.0.0.300:80", "--for", "10s"], "127.0.0.300"),
        (vec!["--agent", AGENT, "net.connect 127.0.0.1:80", "--for", "30d"], "a grant lasts from 1s to 7days"),
        (vec!["--agent", AGENT, "net.connect 127.0.0.1:80", "--for", "soon"], "soon"),
        (vec!["--agent", AGENT, "net.connect 127.0.0.1:80"], "--for"),
    ] {
        let (ok, out) = grant(&setup, &args);
        assert!(!ok && out.contains(want), "grant {args:?} must be refused with {want:?}, got: {out}");
    }
    assert_eq!(setup.status().policy_version, version, "refused grants must not apply anything");

    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let connect = |agent: &mut Agent, port: u16| agent.op(&format!("connect:127.0.0.1:{port}")).errno;
    assert_eq!(connect(&mut agent, ps), EPERM, "no grant yet");

    let (ok, out) = grant(&setup, &["--agent", AGENT, &format!("net.connect 127.0.0.1:{pl}"), "--for", "10m"]);
    assert!(ok, "grant: {out}");
    // A grant never beats an explicit deny.
    let (ok, out) = grant(&setup, &["--agent", AGENT, "net.connect 127.0.0.2:80", "--for", "10m"]);
    assert!(ok, "grant: {out}");
    assert_eq!(agent.op("connect:127.0.0.2:80").errno, EPERM, "deny beats a grant");
    assert_eq!(connect(&mut agent, pl), 0, "granted");
    let (ok, list) = grant(&setup, &["--list"]);
    assert!(ok && list.lines().count() == 2 && list.contains(&format!("127.0.0.1:{pl} until")), "--list: {list}");

    // The short grant: long enough for a CLI call and a SIGKILL under emulation (no KVM). Its
    // expiry is the daemon's (wall clock), read from the answer.
    let (ok, out) = grant(&setup, &["--json", "--agent", AGENT, &format!("net.connect 127.0.0.1:{ps}"), "--for", "10s", "--reason", "short test"]);
    assert!(ok, "grant: {out}");
    let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("grant --json: {e}: {out}"));
    let expires: jiff::Timestamp = answer["grant"]["expires"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no expiry in {out}"));
    assert_eq!(connect(&mut agent, ps), 0, "granted");
    daemon.kill();
    assert_eq!(connect(&mut agent, ps), 0, "daemon dead, grant not yet expired");
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(left.is_positive(), "the live-grant check ended after the grant's expiry ({left}): it proved nothing");
    std::thread::sleep(left.unsigned_abs() + Duration::from_millis(500));
    assert_eq!(connect(&mut agent, ps), EPERM, "expired grant must deny in the kernel with no daemon");
    assert_eq!(connect(&mut agent, pl), 0, "the other grant is still live");

    // A restarted daemon keeps the live grant and logs the expiry it missed.
    let mut daemon = setup.start();
    let records = setup.wait_records("grant-expired after the restart", 10, |r| !daemon_events(r, "grant-expired").is_empty());
    let expired = daemon_events(&records, "grant-expired");
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["detail"]["rule"], format!("net.connect 127.0.0.1:{ps}"));
    assert_eq!(expired[0]["agent"], AGENT);
    let given = daemon_events(&records, "grant");
    assert_eq!(given.len(), 3, "one grant record per grant: {given:?}");
    assert_eq!(given[2]["detail"]["reason"], "short test");
    assert_eq!(connect(&mut agent, pl), 0, "the live grant survives the restart");
    let (ok, list) = grant(&setup, &["--list"]);
    assert!(ok && list.lines().count() == 2 && !list.contains(&format!(":{ps} ")), "--list after restart: {list}");

    let id = list.lines().find(|l| l.contains(&format!(":{pl}"))).and_then(|l| l.split(':').next()).expect("grant id").to_owned();
    let (ok, out) = grant(&setup, &["--revoke", &id]);
    assert!(ok && out.starts_with("revoked"), "revoke: {out}");
    assert_eq!(connect(&mut agent, pl), EPERM, "revoked");
    let (ok, out) = grant(&setup, &["--revoke", &id]);
    assert!(!ok && out.contains(&format!("no grant {id}")), "second revoke: {out}");
    let records = setup.wait_records("grant-revoked", 5, |r| !daemon_events(r, "grant-revoked").is_empty());
    assert_eq!(daemon_events(&records, "grant-revoked")[0]["detail"]["id"].to_string(), id);
    daemon.stop();
    agent.finish();
    drop((short, long));
    println!("checked: refused grants change nothing; grant allows; deny beats grant; expiry denies in the kernel with the daemon SIGKILLed; restart keeps live grants and logs the missed expiry; revoke");
}
