//! End to end: what a responder reads cannot lie. A registered agent opens a denied file whose
//! name holds a carriage return, ANSI sequences (erase line, set window title) and a
//! right-to-left override. The JSON log keeps the exact name; `enforcer events --format text`
//! (a subprocess, as an operator runs it) shows it escaped (`\x0d`, `\x1b`, `\u{202e}`) and
//! writes none of those raw bytes, so the name cannot erase or forge a line on a terminal.
//! Runs on every kernel with the backend the daemon chooses there (BPF LSM: EPERM; fallback:
//! the open is refused by the launcher session's Landlock envelope and logged `deny`).

use enforcer_tests::{adversarial, daemon::*, Agent, DaemonBackend, EPERM};

const TEST: &str = "daemon_terminal_safety::hostile_names_are_escaped_in_text_output";
const AGENT: &str = "terminal-agent";
/// `\r` in the middle: try-ops reads its operations line by line and trims the line's end.
const HOSTILE: &str = "x\r\u{1b}[2K\u{1b}]0;pwned\u{7}FAKE LINE\u{202e}txt.exe";

#[test]
fn hostile_names_are_escaped_in_text_output() {
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("terminal");
    let root = setup.dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("denied")).unwrap();
    let target = root.join("denied").join(HOSTILE);
    // The fallback sees an open after it happened: the file must exist for the open to succeed.
    std::fs::write(&target, "x").unwrap();
    std::fs::write(
        setup.policy_dir.join("agent.toml"),
        format!(
            r#"[agent]
name = "{AGENT}"
on_violation = "audit"

[file]
read = [{libc}]

[exec]
allow = [{{ path = "{exe}", id = "agent-binary" }}]
"#,
            libc = toml_list(LIBC_READS),
            exe = testkit_exe()
        ),
    )
    .unwrap();
    let (mut daemon, backend) = setup.start_first(TEST);
    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    let r = agent.op(&format!("open:{}", target.display()));
    let expected = match backend {
        DaemonBackend::Lsm => EPERM,
        // Outside the launcher session's Landlock envelope (docs/landlock.md).
        DaemonBackend::Fallback => libc::EACCES,
    };
    assert_eq!(r.errno, expected, "{backend:?}: {r:?}");
    agent.finish();
    let name = target.to_str().unwrap();
    setup.wait_records("the denied open's event", 30, |records| {
        records
            .iter()
            .any(|r| r["type"] == "event" && r["path"] == name)
    });
    daemon.stop();

    let out = std::process::Command::new(enforcer_exe())
        .args(["events", "--format", "text", "--agent", AGENT, "--log"])
        .arg(&setup.audit_log)
        .output()
        .expect("run enforcer events");
    assert!(out.status.success(), "enforcer events: {out:?}");
    let text = String::from_utf8(out.stdout).expect("text output is UTF-8");
    for raw in ['\r', '\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(
            !text.contains(raw),
            "raw {raw:?} in the text output:\n{text:?}"
        );
    }
    let shown = format!(
        "{}/denied/x\\x0d\\x1b[2K\\x1b]0;pwned\\x07FAKE LINE\\u{{202e}}txt.exe",
        root.display()
    );
    let line = text
        .lines()
        .find(|l| l.contains(&shown))
        .unwrap_or_else(|| panic!("no line shows the escaped name {shown:?}:\n{text}"));
    // The fallback: refused by the launcher session's Landlock envelope before it happened.
    let verdict = " DENY ";
    assert!(line.contains(verdict) && line.contains(" open "), "{line}");
    // One record, one line: the name did not split it.
    assert_eq!(
        text.lines().filter(|l| l.contains("FAKE LINE")).count(),
        1,
        "{text}"
    );
    println!("{TEST}: {backend:?}: {line}");
    adversarial::pass("13-terminal/escape-sequence-name", backend.name());
}
