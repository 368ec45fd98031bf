//! The AppArmor peer: a profile with the benchmark agent's own file and exec rules, compiled
//! and loaded by Debian's `apparmor_parser` on the running kernel, and the measured worker moved
//! into it (aa_change_profile) for AppArmor's phase. Removing the profile makes the worker
//! unconfined again (the kernel redirects a removed profile's tasks to `unconfined`), so every
//! other phase runs without it.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use enforcer::policy::{compile::RuleKind, CompiledPolicy};

/// The profile's name; it has no attachment, so only aa_change_profile puts a task in it.
pub const PROFILE: &str = "enforcer-bench";

pub struct AppArmor {
    parser: PathBuf,
    profile: PathBuf,
}

/// Whether `pattern` means the same to AppArmor: plain characters, `*` within a component and
/// `**` across components. `**/NAME` rules (anywhere below `/`) have no exact AppArmor form.
fn same_glob(pattern: &str) -> bool {
    pattern.starts_with('/')
        && !pattern.contains("**/")
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+*".contains(c))
}

/// The AppArmor profile equivalent to `agent`'s rules in `policy`. Errors name a rule AppArmor
/// cannot express alike, rather than measuring a profile that decides differently.
pub fn profile(policy: &CompiledPolicy, agent: u32) -> anyhow::Result<String> {
    let mut body = String::new();
    let mut network = std::collections::BTreeSet::new();
    for rule in policy.rules.iter().filter(|r| r.agent == agent) {
        let path = |access: &str, prefix: &str| -> anyhow::Result<String> {
            if !same_glob(&rule.pattern) {
                bail!(
                    "rule {} ({}) has no AppArmor equivalent",
                    rule.text_id,
                    rule.pattern
                );
            }
            Ok(format!("  {prefix}\"{}\" {access},\n", rule.pattern))
        };
        let line = match rule.kind {
            RuleKind::FileRead => path("r", "")?,
            RuleKind::FileWrite => path("w", "")?,
            // Explicit AppArmor denies are silent unless marked `audit`; the enforcer logs them.
            RuleKind::FileDeny => path("rwx", "audit deny ")?,
            RuleKind::FileDenyRead => path("r", "audit deny ")?,
            RuleKind::FileDenyWrite => path("w", "audit deny ")?,
            // Inherit: the started program runs under the same rules, as the agent's child does.
            RuleKind::ExecAllow => path("ix", "")?,
            RuleKind::ExecDeny => path("x", "audit deny ")?,
            // AppArmor 3.0 mediates sockets by family and type, not by address: the nearest
            // equivalent allows the family and type of each allowed destination.
            RuleKind::NetConnect => {
                let family =
                    if rule.pattern.starts_with('[') || rule.pattern.matches(':').count() > 1 {
                        "inet6"
                    } else {
                        "inet"
                    };
                let kind = if rule.pattern.ends_with("/udp") {
                    "dgram"
                } else {
                    "stream"
                };
                network.insert(format!("  network {family} {kind},\n"));
                continue;
            }
            RuleKind::NetDeny
            | RuleKind::NetListen
            | RuleKind::MatchExe
            | RuleKind::MatchCgroup => {
                bail!(
                    "rule {} ({:?}) has no AppArmor equivalent in this benchmark",
                    rule.text_id,
                    rule.kind
                )
            }
        };
        body.push_str(&line);
    }
    let mut text = format!("# Written by `enforcer-testkit bench`: agent #{agent}'s rules as an AppArmor profile.\nprofile {PROFILE} {{\n");
    text.push_str(&body);
    for n in network {
        text.push_str(&n);
    }
    let _ = writeln!(text, "}}");
    Ok(text)
}

impl AppArmor {
    /// Checks that AppArmor is active on this kernel and writes the profile to `dir`.
    pub fn new(parser: &Path, dir: &Path, profile_text: &str) -> anyhow::Result<AppArmor> {
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm")
            .context("reading /sys/kernel/security/lsm")?;
        if !lsm.trim().split(',').any(|l| l == "apparmor") {
            bail!(
                "AppArmor is not active on this kernel (/sys/kernel/security/lsm is `{}`)",
                lsm.trim()
            );
        }
        if !parser.is_file() {
            bail!(
                "{} missing (Debian's apparmor package unpacked there?)",
                parser.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let profile = dir.join("enforcer-bench.apparmor");
        std::fs::write(&profile, profile_text)?;
        Ok(AppArmor {
            parser: parser.to_path_buf(),
            profile,
        })
    }

    fn parser(&self, action: &str) -> anyhow::Result<()> {
        // --skip-cache: compile for this kernel's features now, read and write no cache.
        let out = Command::new(&self.parser)
            .args([action, "--skip-cache"])
            .arg(&self.profile)
            .output()
            .context("running apparmor_parser")?;
        if !out.status.success() {
            bail!(
                "apparmor_parser {action} {}: {}",
                self.profile.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Compile and load (or replace) the profile.
    pub fn load(&self) -> anyhow::Result<()> {
        self.parser("--replace")
    }

    /// Remove the profile: its tasks become unconfined.
    pub fn remove(&self) -> anyhow::Result<()> {
        self.parser("--remove")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_that_mean_the_same_pass_and_name_rules_do_not() {
        assert!(same_glob("/srv/d1/sub1/**"));
        assert!(same_glob("/home/*/d2/f2"));
        assert!(!same_glob("**/secret1"));
        assert!(!same_glob("/a/**/b"));
        assert!(!same_glob("/a/{b,c}"));
    }

    fn compiled(text: &str) -> CompiledPolicy {
        let set = enforcer::policy::load_sources(&[("t.toml", text)]).expect("valid policy");
        enforcer::policy::compile(&set, &enforcer::policy::ResolvedHosts::new()).expect("compiles")
    }

    #[test]
    fn profile_carries_the_agents_file_exec_and_socket_rules() {
        let policy = compiled("[agent]\nname = \"a\"\n\n[file]\nread = [\"/srv/x\", \"/home/*/y/**\"]\n\n[exec]\nallow = [\"/bin/busybox\"]\n\n[net]\nconnect = [\"127.0.0.1:80/tcp\", \"127.0.0.1:53/udp\"]\n");
        let text = profile(&policy, 1).expect("expressible");
        for line in [
            "profile enforcer-bench {",
            "  \"/srv/x\" r,",
            "  \"/home/*/y/**\" r,",
            "  \"/bin/busybox\" ix,",
            "  network inet stream,",
            "  network inet dgram,",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn a_rule_apparmor_cannot_express_alike_is_refused() {
        let policy = compiled(
            "[agent]\nname = \"a\"\n\n[file]\nread = [\"/srv/x\"]\ndeny = [\"**/secret\"]\n",
        );
        let err = profile(&policy, 1).expect_err("`**/NAME` has no AppArmor form");
        assert!(err.to_string().contains("**/secret"), "{err}");
    }
}
