//! The daemon's own state, which no agent may change (implicit `file.deny_write` rules, see
//! `policy::protect`): found from the configuration, as the kernel names it (symlinks resolved).

use std::path::{Path, PathBuf};

use super::config::DaemonConfig;
use crate::{audit::reader::rotated_path, policy::ProtectedPath};

/// Everything an agent could use to undo its confinement or its record: the policy directory
/// (rewrite its rules), the configuration file, the state directory, the bpffs pin directory
/// (unpinning a link detaches its hook), the audit log and its rotated files (and the directory
/// entry holding them: renaming it), the API socket (unlinking it cuts off `enforcer run`), and
/// the enforcer binary. `config_file` is the one the daemon read, if any.
pub fn protected_paths(config: &DaemonConfig, config_file: Option<&Path>) -> Vec<ProtectedPath> {
    let mut out = vec![ProtectedPath::tree(
        "policy-dir",
        &resolve(&config.policy_dir),
    )];
    if let Some(file) = config_file.filter(|f| f.metadata().is_ok_and(|m| m.is_file())) {
        out.push(ProtectedPath::file("config", &resolve(file)));
    }
    out.push(ProtectedPath::tree(
        "state-dir",
        &resolve(&config.state_dir),
    ));
    out.push(ProtectedPath::tree("pin-dir", &resolve(&config.pin_dir)));
    let audit = resolve(&config.audit.path);
    if let Some(dir) = audit.parent().filter(|d| *d != Path::new("/")) {
        out.push(ProtectedPath::file("audit-log-dir", dir));
    }
    out.push(ProtectedPath::file("audit-log", &audit));
    for n in 1..=config.audit.retain {
        out.push(ProtectedPath::file(
            "audit-log-rotated",
            &rotated_path(&audit, n),
        ));
    }
    out.push(ProtectedPath::file(
        "api-socket",
        &resolve(&config.api.socket),
    ));
    match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(exe) => out.push(ProtectedPath::file("binary", &exe)),
        Err(e) => tracing::warn!(
            "the enforcer binary's path is unknown ({e}): it is not protected from agents"
        ),
    }
    out
}

/// `path` as the kernel will name it: symlinks resolved in the part that exists (the state
/// directory or the audit log may not exist before the first start).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => resolve(parent).join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protects_the_configured_state_resolved_and_skips_what_is_no_file() {
        let dir = crate::audit::writer::tests::tempdir();
        let real = dir.join("real");
        std::fs::create_dir_all(real.join("policies")).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("link")).unwrap();
        let mut config = DaemonConfig {
            policy_dir: dir.join("link/policies"),
            state_dir: dir.join("link/state/not-yet"),
            ..DaemonConfig::default()
        };
        config.audit.path = dir.join("link/audit.jsonl");
        config.audit.retain = 2;
        let real = std::fs::canonicalize(&real).unwrap().display().to_string();
        let paths = protected_paths(&config, Some(Path::new("/dev/null")));
        let find = |what: &str| {
            paths
                .iter()
                .filter(|p| p.what == what)
                .map(|p| p.pattern.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(find("policy-dir"), [format!("{real}/policies/**")]);
        assert_eq!(
            find("state-dir"),
            [format!("{real}/state/not-yet/**")],
            "resolved where it exists"
        );
        assert_eq!(find("audit-log"), [format!("{real}/audit.jsonl")]);
        assert_eq!(
            find("audit-log-rotated"),
            [
                format!("{real}/audit.jsonl.1"),
                format!("{real}/audit.jsonl.2")
            ]
        );
        assert_eq!(find("audit-log-dir"), std::slice::from_ref(&real));
        assert!(
            find("config").is_empty(),
            "/dev/null is no configuration file to protect"
        );
        assert_eq!(find("binary").len(), 1);
        let file = dir.join("enforcer.toml");
        std::fs::write(&file, "").unwrap();
        let paths = protected_paths(&config, Some(&file));
        assert!(paths
            .iter()
            .any(|p| p.what == "config" && p.pattern.ends_with("/enforcer.toml")));
    }

    #[test]
    fn status_says_each_implicit_rule_once_however_many_files_it_covers() {
        let mut config = DaemonConfig::default();
        config.audit.retain = 1000;
        let mut set =
            crate::policy::load_sources(&[("a.toml", "[agent]\nname = \"a\"\n")]).unwrap();
        set.protect(&protected_paths(&config, None)).unwrap();
        let policy =
            crate::policy::compile(&set, &crate::policy::ResolvedHosts::default()).unwrap();
        assert!(
            policy
                .rules
                .iter()
                .filter(|r| r.text_id == "enforcer:audit-log-rotated")
                .count()
                >= 1000
        );
        for lines in [
            crate::kernel::rule_status(Some(&policy), crate::kernel::Enforcement::Enforced),
            crate::kernel::fallback::fallback_rule_status(&policy, true, true, false),
        ] {
            let rotated = lines
                .iter()
                .filter(|l| l.rule == "enforcer:audit-log-rotated")
                .count();
            assert_eq!(
                rotated, 1,
                "one status line for the rotated files' rule: {lines:?}"
            );
        }
    }
}
