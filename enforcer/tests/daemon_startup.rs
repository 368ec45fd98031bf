//! `enforcer daemon` refuses bad configuration and invalid policies with precise errors, before
//! touching the kernel or creating its socket (user space only: these paths never reach the
//! kernel backend). A configuration error exits 78 (EX_CONFIG: the systemd unit does not
//! restart on it), an invalid policy 2. A second daemon on the same state directory or audit
//! log is refused the same way, naming the pid of the one holding it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("enforcer-startup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn daemon(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .arg("daemon")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .arg("--socket")
        .arg(dir.join("api.sock"))
        .arg("--pin-dir")
        .arg(dir.join("pins"))
        .args(extra)
        .output()
        .expect("running enforcer daemon")
}

fn assert_nothing_created(dir: &Path) {
    for name in ["api.sock", "audit.jsonl", "state", "pins"] {
        assert!(
            !dir.join(name).exists(),
            "{name} was created by a daemon that refused to start"
        );
    }
}

#[test]
fn config_syntax_errors_name_file_line_and_column() {
    let dir = tempdir("config");
    let config = dir.join("enforcer.toml");
    std::fs::write(
        &config,
        "policy_dir = \"/etc/enforcer/policies\"\n\n[audit]\nretian = 3\n",
    )
    .unwrap();
    let out = daemon(&dir, &["--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:4:1: unknown field `retian`", config.display())),
        "{stderr}"
    );
    assert_nothing_created(&dir);
}

#[test]
fn bad_flag_values_are_refused() {
    let dir = tempdir("flags");
    let out = daemon(
        &dir,
        &["--config", "/dev/null", "--audit-rotate-bytes", "100"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("command line: `audit.rotate_bytes`: 100 is below the minimum 65536"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(78));
    assert_nothing_created(&dir);
}

#[test]
fn an_invalid_policy_is_refused_with_positions_before_anything_starts() {
    let dir = tempdir("policy");
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("a.toml"),
        "[agent]\nname = \"a\"\n\n[file]\nreed = [\"/work/**\"]\n",
    )
    .unwrap();
    let out = daemon(
        &dir,
        &[
            "--config",
            "/dev/null",
            "--policy-dir",
            policies.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("policy rejected"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5:", policies.join("a.toml").display())),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no ready line may be printed"
    );
    assert_nothing_created(&dir);
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = tempdir("missing");
    let out = daemon(&dir, &["--config", dir.join("nope.toml").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.toml: No such file or directory"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(78));
}

/// Holds the lock a running daemon would hold on `lock` (an exclusive flock, its pid inside).
fn hold_lock(lock: &Path) -> std::fs::File {
    use std::io::Write as _;
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(lock).unwrap();
    file.try_lock().unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
    file
}

#[test]
fn a_second_daemon_on_the_same_state_or_audit_log_is_refused_naming_the_first() {
    let dir = tempdir("locked");
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("a.toml"), "[agent]\nname = \"a\"\n").unwrap();
    let args = [
        "--config",
        "/dev/null",
        "--policy-dir",
        policies.to_str().unwrap(),
    ];
    let pid = std::process::id();
    for (lock, what, target) in [
        (
            dir.join("state/daemon.lock"),
            "state directory",
            dir.join("state"),
        ),
        (
            dir.join("audit.jsonl.lock"),
            "audit log",
            dir.join("audit.jsonl"),
        ),
    ] {
        let held = hold_lock(&lock);
        let out = daemon(&dir, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{what} {} is in use by another enforcer daemon (pid {pid}, lock {})",
                target.display(),
                lock.display()
            )),
            "{stderr}"
        );
        assert!(
            !stderr.contains("another enforcer build") && !stderr.contains("--uninstall"),
            "{stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "no ready line"
        );
        for name in ["api.sock", "audit.jsonl", "pins"] {
            assert!(
                !dir.join(name).exists(),
                "{name} was created by a daemon refused for the {what}"
            );
        }
        drop(held);
    }
}
