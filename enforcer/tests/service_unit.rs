//! packaging/enforcer.service is a unit systemd accepts without a warning, and its exposure
//! score (`systemd-analyze security`) is the one docs/daemon.md states. Both work offline,
//! without systemd as PID 1; `cargo xtask bootstrap` installs systemd-analyze (package
//! `systemd`). `ExecStart` must name an executable file, so the unit is checked as a copy
//! pointing at the enforcer binary this test was built with.

use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The unit, with `/usr/bin/enforcer` replaced by the built binary, in a directory of its own.
fn unit_copy() -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(root().join("packaging/enforcer.service"))
        .expect("read packaging/enforcer.service");
    assert!(
        text.contains("ExecStart=/usr/bin/enforcer daemon"),
        "the unit starts /usr/bin/enforcer"
    );
    let dir = std::env::temp_dir().join(format!("enforcer-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let unit = dir.join("enforcer.service");
    std::fs::write(
        &unit,
        text.replace("/usr/bin/enforcer", env!("CARGO_BIN_EXE_enforcer")),
    )
    .expect("write the unit copy");
    (dir, unit)
}

fn analyze(args: &[&str], unit: &PathBuf) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; `cargo xtask bootstrap` installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_unit_verifies_cleanly_and_scores_what_the_docs_say() {
    let (dir, unit) = unit_copy();
    // Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    let (ok, out) = analyze(&["verify"], &unit);
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify packaging/enforcer.service:\n{out}"
    );

    let (ok, out) = analyze(&["security", "--offline=true", "--no-pager"], &unit);
    std::fs::remove_dir_all(&dir).ok();
    assert!(ok, "systemd-analyze security:\n{out}");
    let score = out
        .lines()
        .find_map(|l| l.split("exposure level for enforcer.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"))
        .to_owned();
    let docs = std::fs::read_to_string(root().join("docs/daemon.md")).expect("read docs/daemon.md");
    let stated = format!("`systemd-analyze security` exposure level: **{score}**");
    assert!(
        docs.contains(&stated),
        "docs/daemon.md must state the unit's score as {stated:?} (systemd-analyze says:\n{out})"
    );
}
