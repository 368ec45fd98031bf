//! `enforcer daemon --check-config`: everything the daemon needs before it touches the kernel,
//! checked without changing anything (docs/daemon.md, "Checking a configuration"): the
//! configuration (already parsed and validated by the caller), the policies (loaded and
//! compiled), and each path the daemon writes or serves.
//!
//! Nothing is created or left behind: a directory that does not exist yet is judged by the
//! nearest existing ancestor the daemon would create it in; a writable directory is proven by
//! creating and removing one temporary file in it.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::config::DaemonConfig;
use crate::policy::{self, ResolvedHosts};

/// `statfs(2)` `f_type` of bpffs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// One checked item and its outcome (the error says what is wrong).
#[derive(Debug)]
pub struct Check {
    pub what: String,
    pub outcome: Result<String, String>,
}

/// Every check, in the order the daemon would meet them.
pub fn check(config: &DaemonConfig) -> Vec<Check> {
    let mut out = vec![policies(&config.policy_dir)];
    out.push(Check {
        what: format!("audit.path {}", config.audit.path.display()),
        outcome: audit_file(&config.audit.path),
    });
    out.push(Check {
        what: format!("state_dir {}", config.state_dir.display()),
        outcome: writable_dir(&config.state_dir),
    });
    out.push(Check {
        what: format!("pin_dir {}", config.pin_dir.display()),
        outcome: on_bpffs(&config.pin_dir),
    });
    let socket_dir = config
        .api
        .socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    out.push(Check {
        what: format!("api.socket {}", config.api.socket.display()),
        outcome: writable_dir(&socket_dir).map(|how| format!("its directory: {how}")),
    });
    for (field, group) in [
        ("api.group", &config.api.group),
        ("api.auditor_group", &config.api.auditor_group),
        ("api.admin_group", &config.api.admin_group),
    ] {
        if let Some(name) = group {
            out.push(Check {
                what: format!("{field} {name}"),
                outcome: match nix::unistd::Group::from_name(name) {
                    Ok(Some(g)) => Ok(format!("gid {}", g.gid)),
                    Ok(None) => Err("no such group".into()),
                    Err(e) => Err(format!("looking it up: {e}")),
                },
            });
        }
    }
    out
}

fn policies(dir: &Path) -> Check {
    let what = format!("policy_dir {}", dir.display());
    let outcome = policy::load_paths(&[dir.to_path_buf()])
        .and_then(|set| {
            // Host names are the daemon's to resolve at load: unresolved here is not an error.
            let compiled = policy::compile(&set, &ResolvedHosts::default())?;
            Ok(format!(
                "{} agent{}, {} rule{}",
                compiled.agents.len(),
                if compiled.agents.len() == 1 { "" } else { "s" },
                compiled.rules.len(),
                if compiled.rules.len() == 1 { "" } else { "s" },
            ))
        })
        .map_err(|diags| diags.to_string().trim_end().to_string());
    Check { what, outcome }
}

/// The audit log: an existing file must be a regular file this process can append to; else
/// its directory must be one it can create files in.
fn audit_file(path: &Path) -> Result<String, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err("exists and is not a regular file".into()),
        Ok(_) => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| "exists, appendable".to_string())
            .map_err(|e| format!("cannot be opened for appending: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            writable_dir(dir).map(|how| format!("will be created; its directory: {how}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `dir` is a directory files can be created in, or the nearest existing ancestor is (the
/// daemon creates the rest).
fn writable_dir(dir: &Path) -> Result<String, String> {
    let (existing, missing) = nearest_existing(dir)?;
    let meta = std::fs::metadata(&existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".enforcer-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(format!(
                "cannot create files in {}: {e}",
                existing.display()
            ))
        }
    }
    Ok(if missing {
        format!("will be created in {}", existing.display())
    } else {
        format!("writable (mode {:o})", meta.mode() & 0o7777)
    })
}

/// The pin directory lives on bpffs (pins are bpffs files): it, or the nearest existing
/// ancestor the daemon would create it in.
fn on_bpffs(dir: &Path) -> Result<String, String> {
    let (existing, missing) = nearest_existing(dir)?;
    let fs = nix::sys::statfs::statfs(&existing)
        .map_err(|e| format!("statfs {}: {e}", existing.display()))?;
    if fs.filesystem_type().0 as i64 != BPF_FS_MAGIC {
        return Err(format!(
            "{} is not on bpffs (mount -t bpf bpf /sys/fs/bpf)",
            existing.display()
        ));
    }
    Ok(if missing {
        format!("will be created in {} (bpffs)", existing.display())
    } else {
        "on bpffs".into()
    })
}

/// `dir` or its nearest existing ancestor, and whether that is an ancestor.
fn nearest_existing(dir: &Path) -> Result<(PathBuf, bool), String> {
    let mut at = dir.to_path_buf();
    loop {
        match std::fs::symlink_metadata(&at) {
            Ok(_) => return Ok((at.clone(), at != dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(parent) => at = parent.to_path_buf(),
                None => return Err(format!("no existing ancestor of {}", dir.display())),
            },
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("enforcer-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn paths_are_judged_without_leaving_anything_behind() {
        let d = temp("paths");
        assert!(writable_dir(&d).unwrap().starts_with("writable"));
        assert!(writable_dir(&d.join("a/b"))
            .unwrap()
            .starts_with("will be created in"));
        assert!(!d.join("a").exists(), "nothing is created");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            0,
            "no probe file left"
        );
        std::fs::write(d.join("file"), "x").unwrap();
        assert!(writable_dir(&d.join("file"))
            .unwrap_err()
            .contains("not a directory"));
        assert!(audit_file(&d.join("file")).unwrap().contains("appendable"));
        std::fs::create_dir(d.join("dir")).unwrap();
        assert!(audit_file(&d.join("dir"))
            .unwrap_err()
            .contains("not a regular file"));
        assert!(audit_file(&d.join("new.jsonl"))
            .unwrap()
            .starts_with("will be created"));
        assert!(on_bpffs(&d).unwrap_err().contains("not on bpffs"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn invalid_policies_are_reported_with_their_diagnostics() {
        let d = temp("policies");
        std::fs::write(
            d.join("a.toml"),
            "[agent]\nname = \"a\"\n[file]\nread = [\"rel\"]\n",
        )
        .unwrap();
        let c = policies(&d);
        let err = c.outcome.unwrap_err();
        assert!(err.contains("a.toml"), "{err}");
        std::fs::write(
            d.join("a.toml"),
            "[agent]\nname = \"a\"\n[file]\nread = [\"/x\"]\n",
        )
        .unwrap();
        assert_eq!(policies(&d).outcome.unwrap(), "1 agent, 1 rule");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
