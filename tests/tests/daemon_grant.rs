//! End to end on the fallback backend (cgroup connect hooks refuse in the kernel, on every
//! kernel of the matrix): `enforcer grant` opens a connect for a few seconds; the grant's expiry
//! is checked in the kernel, so with the daemon SIGKILLed the connect is allowed until the
//! expiry and refused after it. A restarted daemon keeps the grants that have not expired, logs
//! the one that did, and `--revoke` ends one at once. Bad grants change nothing. File and exec
//! grants likewise, with the backend the daemon chooses: BPF LSM refuses in the kernel (EPERM),
//! the fallback's tracepoints judge in the kernel and log (the verdicts are read from the audit
//! log the restarted daemon writes from the events of its downtime).

use std::{net::TcpListener, process::Command, time::Duration};

use enforcer_tests::{agent::enforcer_bin, daemon::*, Agent, DaemonBackend, EPERM};
use serde_json::Value;

const AGENT: &str = "grant-agent";

/// `enforcer grant ARGS` against the test daemon: (success, stdout + stderr).
fn grant(setup: &DaemonSetup, args: &[&str]) -> (bool, String) {
    let out = Command::new(enforcer_bin())
        .arg("grant")
        .arg("--socket")
        .arg(&setup.socket)
        .args(args)
        .output()
        .expect("run enforcer grant");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn daemon_events<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

#[test]
fn an_expired_grant_denies_in_the_kernel_with_the_daemon_dead() {
    enforcer_tests::require_root();
    let short = TcpListener::bind("127.0.0.1:0").expect("listen");
    let long = TcpListener::bind("127.0.0.1:0").expect("listen");
    let (ps, pl) = (
        short.local_addr().unwrap().port(),
        long.local_addr().unwrap().port(),
    );
    let mut setup = DaemonSetup::new("daemon_grant");
    setup.backend = "fallback";
    std::fs::write(
        setup.policy_dir.join("agent.toml"),
        format!(
            "[agent]\nname = \"{AGENT}\"\non_violation = \"audit\"\n\n[file]\nread = [{}]\n\n[exec]\nallow = [\"{}\"]\n\n[net]\nconnect = [\"127.0.0.1:1\"]\ndeny = [\"127.0.0.2\"]\n",
            // What try-ops (the agent, started through `enforcer run`) needs.
            toml_list(LIBC_READS),
            testkit_exe()
        ),
    )
    .expect("write policy");
    let mut daemon = setup.start();
    let version = setup.status().policy_version;

    // Refused grants: precise errors, nothing applied.
    for (args, want) in [
        (
            vec![
                "--agent",
                "nobody",
                "net.connect 127.0.0.1:80",
                "--for",
                "10s",
            ],
            "no agent named \"nobody\"",
        ),
        (
            vec!["--agent", AGENT, "file.deny /etc/passwd", "--for", "10s"],
            "a grant is an allow rule",
        ),
        (
            vec!["--agent", AGENT, "file.read etc/passwd", "--for", "10s"],
            "`etc/passwd`",
        ),
        (
            vec![
                "--agent",
                AGENT,
                "net.connect 127.0.0.300:80",
                "--for",
                "10s",
            ],
            "127.0.0.300",
        ),
        (
            vec!["--agent", AGENT, "net.connect 127.0.0.1:80", "--for", "30d"],
            "a grant lasts from 1s to 7days",
        ),
        (
            vec![
                "--agent",
                AGENT,
                "net.connect 127.0.0.1:80",
                "--for",
                "soon",
            ],
            "soon",
        ),
        (vec!["--agent", AGENT, "net.connect 127.0.0.1:80"], "--for"),
    ] {
        let (ok, out) = grant(&setup, &args);
        assert!(
            !ok && out.contains(want),
            "grant {args:?} must be refused with {want:?}, got: {out}"
        );
    }
    assert_eq!(
        setup.status().policy_version,
        version,
        "refused grants must not apply anything"
    );

    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let connect =
        |agent: &mut Agent, port: u16| agent.op(&format!("connect:127.0.0.1:{port}")).errno;
    assert_eq!(connect(&mut agent, ps), EPERM, "no grant yet");

    let (ok, out) = grant(
        &setup,
        &[
            "--agent",
            AGENT,
            &format!("net.connect 127.0.0.1:{pl}"),
            "--for",
            "10m",
        ],
    );
    assert!(ok, "grant: {out}");
    // A grant never beats an explicit deny.
    let (ok, out) = grant(
        &setup,
        &["--agent", AGENT, "net.connect 127.0.0.2:80", "--for", "10m"],
    );
    assert!(ok, "grant: {out}");
    assert_eq!(
        agent.op("connect:127.0.0.2:80").errno,
        EPERM,
        "deny beats a grant"
    );
    assert_eq!(connect(&mut agent, pl), 0, "granted");
    let (ok, list) = grant(&setup, &["--list"]);
    assert!(
        ok && list.lines().count() == 2 && list.contains(&format!("127.0.0.1:{pl} until")),
        "--list: {list}"
    );

    // The short grant: long enough for a CLI call and a SIGKILL under emulation (no KVM). Its
    // expiry is the daemon's (wall clock), read from the answer.
    let (ok, out) = grant(
        &setup,
        &[
            "--json",
            "--agent",
            AGENT,
            &format!("net.connect 127.0.0.1:{ps}"),
            "--for",
            "10s",
            "--reason",
            "short test",
        ],
    );
    assert!(ok, "grant: {out}");
    let answer: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("grant --json: {e}: {out}"));
    let expires: jiff::Timestamp = answer["grant"]["expires"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no expiry in {out}"));
    assert_eq!(connect(&mut agent, ps), 0, "granted");
    daemon.kill();
    assert_eq!(
        connect(&mut agent, ps),
        0,
        "daemon dead, grant not yet expired"
    );
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(
        left.is_positive(),
        "the live-grant check ended after the grant's expiry ({left}): it proved nothing"
    );
    std::thread::sleep(left.unsigned_abs() + Duration::from_millis(500));
    assert_eq!(
        connect(&mut agent, ps),
        EPERM,
        "expired grant must deny in the kernel with no daemon"
    );
    assert_eq!(connect(&mut agent, pl), 0, "the other grant is still live");

    // A restarted daemon keeps the live grant and logs the expiry it missed.
    let mut daemon = setup.start();
    let records = setup.wait_records("grant-expired after the restart", 10, |r| {
        !daemon_events(r, "grant-expired").is_empty()
    });
    let expired = daemon_events(&records, "grant-expired");
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        expired[0]["detail"]["rule"],
        format!("net.connect 127.0.0.1:{ps}")
    );
    assert_eq!(expired[0]["agent"], AGENT);
    let given = daemon_events(&records, "grant");
    assert_eq!(given.len(), 3, "one grant record per grant: {given:?}");
    assert_eq!(given[2]["detail"]["reason"], "short test");
    assert_eq!(
        connect(&mut agent, pl),
        0,
        "the live grant survives the restart"
    );
    let (ok, list) = grant(&setup, &["--list"]);
    assert!(
        ok && list.lines().count() == 2 && !list.contains(&format!(":{ps} ")),
        "--list after restart: {list}"
    );

    let id = list
        .lines()
        .find(|l| l.contains(&format!(":{pl}")))
        .and_then(|l| l.split(':').next())
        .expect("grant id")
        .to_owned();
    let (ok, out) = grant(&setup, &["--revoke", &id]);
    assert!(ok && out.starts_with("revoked"), "revoke: {out}");
    assert_eq!(connect(&mut agent, pl), EPERM, "revoked");
    let (ok, out) = grant(&setup, &["--revoke", &id]);
    assert!(
        !ok && out.contains(&format!("no grant {id}")),
        "second revoke: {out}"
    );
    let records = setup.wait_records("grant-revoked", 5, |r| {
        !daemon_events(r, "grant-revoked").is_empty()
    });
    assert_eq!(
        daemon_events(&records, "grant-revoked")[0]["detail"]["id"].to_string(),
        id
    );
    daemon.stop();
    agent.finish();
    drop((short, long));
    println!("checked: refused grants change nothing; grant allows; deny beats grant; expiry denies in the kernel with the daemon SIGKILLed; restart keeps live grants and logs the missed expiry; revoke");
}

/// The audit record of the one decision on `path` (`op` = `open` or `exec`).
fn decision_on<'a>(records: &'a [Value], op: &str, path: &str) -> Option<&'a Value> {
    records.iter().find(|r| r["op"] == op && r["path"] == path)
}

#[test]
fn file_and_exec_grants_end_in_the_kernel_with_the_daemon_dead() {
    const TEST: &str = "daemon_grant::file_and_exec_grants_end_in_the_kernel_with_the_daemon_dead";
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("daemon_grant_file");
    let root = setup.dir.path().to_path_buf();
    let dir = root.join("granted");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, "x").expect("write fixture");
        p.to_string_lossy().into_owned()
    };
    // One file per phase, so each decision has exactly one audit record.
    let (before, up, dead, after) = (file("before"), file("up"), file("dead"), file("after"));
    let secret = file("secret");
    // Named busybox: it picks its applet from argv[1] only when argv[0] is its own name.
    let tool = setup.dir.busybox("tool/busybox");
    std::fs::write(
        setup.policy_dir.join("agent.toml"),
        format!(
            "[agent]\nname = \"{AGENT}\"\non_violation = \"audit\"\nlog.file_allow = true\n\n[file]\nread = [{}]\ndeny_read = [\"{secret}\"]\n\n[exec]\nallow = [\"{}\"]\n",
            // What try-ops (the agent, started through `enforcer run`) needs on BPF LSM.
            toml_list(LIBC_READS),
            testkit_exe()
        ),
    )
    .expect("write policy");
    let (mut daemon, backend) = setup.start_first(TEST);
    let lsm = backend == DaemonBackend::Lsm;
    // What an op's errno says: BPF LSM refuses; the fallback only observes (audit mode).
    let refused = if lsm { EPERM } else { 0 };

    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let open = |agent: &mut Agent, path: &str| agent.op(&format!("open:{path}")).errno;
    let run = |agent: &mut Agent| agent.op(&format!("exec:{tool},true")).errno;
    // On the fallback the launcher's session lives in its Landlock envelope (docs/landlock.md):
    // nothing of `dir` is in it yet, so the open is refused with EACCES before it happens.
    let before_errno = if lsm { EPERM } else { libc::EACCES };
    assert_eq!(open(&mut agent, &before), before_errno, "no grant yet");

    // Both grants are short, yet long enough for two grants (each a policy apply), a status
    // call, two ops and a SIGKILL under emulation (a daemon start takes ~60 s there).
    let pattern = format!("{}/**", dir.display());
    let mut expiries = Vec::new();
    for rule in [format!("file.read {pattern}"), format!("exec {tool}")] {
        let (ok, out) = grant(
            &setup,
            &[
                "--json",
                "--agent",
                AGENT,
                &rule,
                "--for",
                "30s",
                "--reason",
                "file test",
            ],
        );
        assert!(ok, "grant {rule}: {out}");
        let answer: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("grant --json: {e}: {out}"));
        expiries.push(
            answer["grant"]["expires"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or_else(|| panic!("no expiry in {out}")),
        );
    }
    let expires = *expiries.iter().min().expect("two grants");
    let status = setup.status();
    let listed: Vec<&str> = status.grants.iter().map(|g| g.rule.as_str()).collect();
    assert!(
        listed.contains(&format!("file.read {pattern}").as_str())
            && listed.contains(&format!("exec {tool}").as_str()),
        "status lists the live grants: {listed:?}"
    );
    if !lsm {
        // An envelope only shrinks: the running session cannot get the grant; a session
        // launched after it can (its envelope holds the granted trees, the kernel decides the
        // grant's expiry inside them).
        assert_eq!(
            open(&mut agent, &before),
            libc::EACCES,
            "the older session's envelope does not widen"
        );
        agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
        agent.start();
    }
    assert_eq!(open(&mut agent, &up), 0, "file grant, daemon up");
    assert_eq!(
        open(&mut agent, &secret),
        refused,
        "a deny beats a file grant"
    );
    daemon.kill();
    assert_eq!(
        open(&mut agent, &dead),
        0,
        "daemon dead, file grant not yet expired"
    );
    assert_eq!(
        run(&mut agent),
        0,
        "daemon dead, exec grant not yet expired"
    );
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(
        left.is_positive(),
        "the live-grant checks ended after the grants' expiry ({left}): they proved nothing"
    );
    std::thread::sleep(
        expiries
            .iter()
            .max()
            .unwrap()
            .duration_since(jiff::Timestamp::now())
            .unsigned_abs()
            + Duration::from_millis(500),
    );
    assert_eq!(
        open(&mut agent, &after),
        refused,
        "expired file grant, daemon dead"
    );
    assert_eq!(
        run(&mut agent),
        if lsm { EPERM } else { 0 },
        "expired exec grant, daemon dead"
    );

    // The kernel's verdicts, from the events the restarted daemon logs (the fallback's only
    // evidence; on BPF LSM they must agree with the errnos above).
    let mut daemon = setup.start();
    let want = |what: &str, op: &str, path: &str, verdict: &str, rule_is_grant: bool| {
        let records = setup.wait_records(what, 30, |r| {
            decision_on(r, op, path).is_some_and(|e| e["verdict"] != Value::Null)
        });
        let e = decision_on(&records, op, path).unwrap_or_else(|| panic!("no record for {what}"));
        assert_eq!(e["verdict"], verdict, "{what}: {e}");
        let rule = e["rule"].as_str().unwrap_or_default();
        assert_eq!(
            rule.starts_with("grant:"),
            rule_is_grant,
            "{what}: rule {rule:?} in {e}"
        );
    };
    let denied = if lsm { "deny" } else { "audit-deny" };
    // The fallback's refusal by the envelope is a `deny` (nothing happened).
    want("open before the grant", "open", &before, "deny", false);
    want(
        "open under the grant, daemon up",
        "open",
        &up,
        "allow",
        true,
    );
    want(
        "open under the grant, daemon dead",
        "open",
        &dead,
        "allow",
        true,
    );
    want(
        "open after expiry, daemon dead",
        "open",
        &after,
        denied,
        false,
    );
    want("the deny under the grant", "open", &secret, denied, false);
    let records = setup.records();
    let execs: Vec<&Value> = records
        .iter()
        .filter(|r| r["op"] == "exec" && r["path"] == tool.as_str())
        .collect();
    assert_eq!(execs.len(), 2, "two execs of the tool: {execs:?}");
    assert_eq!(
        (
            execs[0]["verdict"].as_str(),
            execs[0]["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("grant:"))
        ),
        (Some("allow"), true),
        "exec under the grant: {}",
        execs[0]
    );
    assert_eq!(
        execs[1]["verdict"], denied,
        "exec after expiry: {}",
        execs[1]
    );
    daemon.stop();
    agent.finish();
    println!("checked ({} backend): file and exec grants allow, a deny beats a file grant, and both end in the kernel at their expiry with the daemon SIGKILLed", backend.name());
}
