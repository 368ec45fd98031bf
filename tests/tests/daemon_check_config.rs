//! `enforcer daemon --check-config` (docs/daemon.md, "Checking a configuration"): a usable
//! configuration passes (exit 0) and nothing is created, not even the pin or state directory;
//! each kind of problem is named and exits 78, the status the systemd unit does not restart on.
//! User space only: the host column runs it.

use std::{path::Path, process::Command};

use enforcer_tests::{agent::enforcer_bin, TempDir};

fn check(config: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(enforcer_bin())
        .args(["daemon", "--config"])
        .arg(config)
        .arg("--check-config")
        .args(extra)
        .output()
        .expect("run enforcer daemon --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_usable_configuration_passes_and_each_problem_is_named() {
    enforcer_tests::require_root();
    let dir = TempDir::new("check-config");
    let d = dir.path().display().to_string();
    dir.file(
        "policies/a.toml",
        "[agent]\nname = \"a\"\n[file]\nread = [\"/etc/hostname\"]\n",
    );
    let pin = format!("/sys/fs/bpf/enforcer-test-check-{}", std::process::id());
    let config = |audit: &str, pin: &str, extra: &str| {
        format!(
            "policy_dir = \"{d}/policies\"\npin_dir = \"{pin}\"\nstate_dir = \"{d}/state\"\n{extra}\n[audit]\npath = \"{audit}\"\n[api]\nsocket = \"{d}/run/api.sock\"\n"
        )
    };
    let good = dir.file(
        "good.toml",
        &config(&format!("{d}/log/audit.jsonl"), &pin, ""),
    );
    let before = entries(dir.path());
    let (code, text) = check(Path::new(&good), &[]);
    assert_eq!(code, 0, "a usable configuration: {text}");
    assert!(
        text.contains("usable") && text.contains("1 agent, 1 rule"),
        "{text}"
    );
    assert_eq!(entries(dir.path()), before, "nothing created: {text}");
    assert!(
        !Path::new(&pin).exists(),
        "the pin directory is not created"
    );

    // Each problem: the configuration file, the expected text.
    std::fs::create_dir_all(format!("{d}/adir")).expect("dir");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "audit log is a directory",
            config(&format!("{d}/adir"), &pin, ""),
            "not a regular file",
        ),
        (
            "pins outside bpffs",
            config(&format!("{d}/log/audit.jsonl"), &format!("{d}/pins"), ""),
            "not on bpffs",
        ),
        (
            "unknown group",
            config(&format!("{d}/log/audit.jsonl"), &pin, "")
                .replace("[api]\n", "[api]\ngroup = \"no-such-group-enforcer\"\n"),
            "no such group",
        ),
        (
            "unknown log level",
            config(
                &format!("{d}/log/audit.jsonl"),
                &pin,
                "log_level = \"verbose\"",
            ),
            "\"verbose\" is not a level",
        ),
    ];
    for (case, text, want) in cases {
        let file = dir.file("bad.toml", &text);
        let (code, out) = check(Path::new(&file), &[]);
        assert_eq!(code, 78, "{case}: exit 78: {out}");
        assert!(out.contains(want), "{case}: {want:?} in {out}");
        println!(
            "{case}: {}",
            out.lines().find(|l| l.contains(want)).unwrap_or("")
        );
    }
    dir.file(
        "policies/b.toml",
        "[agent]\nname = \"b\"\n[file]\nread = [\"relative\"]\n",
    );
    let (code, out) = check(Path::new(&good), &[]);
    assert_eq!(code, 78, "an invalid policy: {out}");
    assert!(
        out.contains("PROBLEM  policy_dir") && out.contains("b.toml"),
        "{out}"
    );
    println!("checked: usable config exits 0 and creates nothing; audit log, bpffs, group, log level and policy problems are named and exit 78");
}
