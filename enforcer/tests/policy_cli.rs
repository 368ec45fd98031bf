//! `enforcer check`, `enforcer explain` and `enforcer --version` as a user runs them: exit
//! codes, output, JSON.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn enforcer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run enforcer {args:?}: {e}"))
}

fn policies() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .display()
        .to_string()
}

/// A scratch directory holding one file.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("enforcer-policy-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The line an operator compares across hosts: release, commit, kernel layout (the value a
/// daemon's refusal of another build's pins prints as `layout ...`).
#[test]
fn version_names_the_commit_and_the_kernel_layout() {
    for flag in ["--version", "-V"] {
        let out = enforcer(&[flag]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line = text(&out.stdout);
        let rest = line
            .trim_end()
            .strip_prefix(&format!("enforcer {} (commit ", env!("CARGO_PKG_VERSION")))
            .unwrap_or_else(|| panic!("{flag}: {line}"));
        let (commit, layout) = rest
            .split_once(", kernel layout ")
            .unwrap_or_else(|| panic!("{flag}: {line}"));
        let hash = commit.strip_suffix("+dirty").unwrap_or(commit);
        assert!(
            commit == "unknown" || (hash.len() >= 7 && hash.bytes().all(|b| b.is_ascii_hexdigit())),
            "{flag}: commit {commit:?} in {line}"
        );
        let layout = layout.strip_suffix(')').unwrap_or_else(|| panic!("{line}"));
        assert!(
            (layout.len() == 16 && layout.bytes().all(|b| b.is_ascii_hexdigit()))
                || layout.starts_with("none (built without the eBPF object"),
            "{flag}: layout {layout:?} in {line}"
        );
    }
}

#[test]
fn check_accepts_the_example_policies_and_prints_map_sizes() {
    let out = enforcer(&["check", &policies()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("coding-agent, data-runner"), "{stdout}");
    for map in [
        "PATH_RULES",
        "NAME_RULES",
        "NET_RULES",
        "EXE_MATCH",
        "CGROUP_MATCH",
    ] {
        assert!(stdout.contains(map), "missing {map} size in:\n{stdout}");
    }
}

#[test]
fn check_rejects_invalid_policies_with_positions_and_exit_1() {
    let file = scratch(
        "bad.toml",
        "[agent]\nname = \"bad\"\n[file]\nread = [\"/a/**/b\"]\n",
    );
    let out = enforcer(&["check", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let headline = format!(
        "{}:4:9: file.read: `**` is only supported at the end",
        file.display()
    );
    assert!(
        stderr.starts_with(&headline),
        "expected `{headline}` first, got:\n{stderr}"
    );
    assert!(
        stderr.contains("4 | read = [\"/a/**/b\"]\n  |         ^^^^^^^^^\n"),
        "{stderr}"
    );
    assert!(stderr.ends_with("1 error in policies\n"), "{stderr}");

    let out = enforcer(&["check", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json["valid"], false);
    assert_eq!(
        (
            json["errors"][0]["line"].as_u64(),
            json["errors"][0]["col"].as_u64()
        ),
        (Some(4), Some(9))
    );
}

#[test]
fn check_json_on_success_and_usage_errors_exit_2() {
    let out = enforcer(&["check", "--format", "json", &policies()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json["valid"], true);
    assert!(json["sizes"]["PATH_RULES"].as_u64().unwrap() > 0, "{json}");
    assert!(
        json["unresolved_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "api.anthropic.com"),
        "{json}"
    );
    assert_eq!(
        enforcer(&["check", "--format", "yaml"]).status.code(),
        Some(2)
    );
}

#[test]
fn check_kernel_reports_every_rule() {
    let out = enforcer(&["check", "--kernel", &policies()]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    // Which backend depends on the kernel running the test; the report must say which.
    assert!(
        stdout.contains("BPF LSM backend: rules are enforced")
            || stdout.contains("fallback backend (BPF LSM unusable")
            || stdout.contains("no backend: BPF LSM unusable"),
        "{stdout}"
    );
    assert!(
        ["enforced", "enforced-by-kill", "audit-only", "unsupported"]
            .iter()
            .any(|s| stdout.contains(s)),
        "per-rule lines say how each rule is enforced: {stdout}"
    );
    assert!(
        stdout.contains("coding-agent"),
        "per-rule lines name the agent: {stdout}"
    );
    assert!(!stdout.contains("not available yet"), "{stdout}");
}

#[test]
fn explain_names_the_deciding_rule_and_step() {
    let p = policies();
    let out = enforcer(&[
        "explain",
        "--agent",
        "coding-agent",
        "--policy",
        &p,
        "open",
        "/home/dev/.ssh/id_rsa",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a deny exits 1:\n{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("coding-agent: open /home/dev/.ssh/id_rsa for read: DENY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule: ssh-keys (file.deny \"/home/*/.ssh/**\""),
        "{stdout}"
    );
    assert!(stdout.contains("component 2 replaced by `*`"), "{stdout}");

    let out = enforcer(&[
        "explain",
        "--agent",
        "coding-agent",
        "--policy",
        &p,
        "open",
        "--write",
        "/work/project/a/../b.rs",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("normalized lexically to `/work/project/b.rs`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("open /work/project/b.rs for write: ALLOW\nrule: project-write"),
        "{stdout}"
    );

    let out = enforcer(&[
        "explain",
        "--agent",
        "locked-down",
        "--policy",
        &p,
        "open",
        "/etc/hostname",
    ]);
    assert!(
        text(&out.stdout).contains("why: no rule matched read: denied by default"),
        "{}",
        text(&out.stdout)
    );

    let args = [
        "explain",
        "--agent",
        "coding-agent",
        "--policy",
        &p,
        "--offline",
        "--resolve",
        "api.anthropic.com=192.0.2.9",
    ];
    let out = enforcer(&[&args[..], &["connect", "192.0.2.9:443"]].concat());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("rule: model-api"), "{stdout}");
    let out = enforcer(&[&args[..], &["connect", "192.0.2.9:443", "--udp"]].concat());
    assert_eq!(out.status.code(), Some(1), "the model API rule is tcp only");
}

#[test]
fn explain_unknown_agent_is_an_error() {
    let out = enforcer(&[
        "explain",
        "--agent",
        "nobody",
        "--policy",
        &policies(),
        "exec",
        "/bin/true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no agent named `nobody`"),
        "{}",
        text(&out.stderr)
    );
}
