//! Applying an agent's Landlock envelope (`crate::policy::envelope`) to the calling process,
//! and finding out by trying what this kernel's Landlock can do (docs/landlock.md).
//!
//! Best effort per right: a right this kernel's Landlock lacks (truncate before ABI 3, scoping
//! before ABI 6) is left unhandled and said in the status lines; anything else that goes
//! wrong is an error and the launcher does not start the agent.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::policy::envelope::{Envelope, Reach};

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("opening {path} for a Landlock rule: {source}")]
    Open {
        path: PathBuf,
        source: landlock::PathFdError,
    },
    #[error("envelope hierarchy {0:?} is not an absolute path")]
    NotAbsolute(String),
}

/// Every ABI this build knows, newest first (the probe tries each).
const ABIS: [ABI; 10] = [
    ABI::V10,
    ABI::V9,
    ABI::V8,
    ABI::V7,
    ABI::V6,
    ABI::V5,
    ABI::V4,
    ABI::V3,
    ABI::V2,
    ABI::V1,
];

/// The newest Landlock ABI whose whole file access set this kernel accepts in a ruleset it
/// really creates; `None` when Landlock is missing or disabled.
pub fn probe_abi() -> Option<u32> {
    ABIS.iter().find_map(|&abi| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| r.create())
            .ok()
            .map(|_| abi as u32)
    })
}

/// The ABI version the kernel reports (for status lines only: what is handled is decided by
/// trying each right).
fn kernel_abi(found: u32) -> u32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION (1) with a null attribute and size 0 only
    // returns the version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if v > 0 {
        v as u32
    } else {
        found
    }
}

/// Whether this kernel handles `access` (created for real, hard requirement).
fn supports_fs(access: AccessFs) -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(access)
        .and_then(|r| r.create())
        .is_ok()
}

fn supports_scope(scope: Scope) -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(scope)
        .and_then(|r| r.create())
        .is_ok()
}

/// The rights of each class (docs/landlock.md, "Rights"). `IoctlDev` is not handled: the
/// policy language has no ioctl rule and every device an agent can open is inside its read
/// or write envelope already.
fn read_rights() -> Vec<AccessFs> {
    vec![AccessFs::ReadFile, AccessFs::ReadDir]
}

fn write_rights() -> Vec<AccessFs> {
    vec![
        AccessFs::WriteFile,
        AccessFs::RemoveDir,
        AccessFs::RemoveFile,
        AccessFs::MakeChar,
        AccessFs::MakeDir,
        AccessFs::MakeReg,
        AccessFs::MakeSock,
        AccessFs::MakeFifo,
        AccessFs::MakeBlock,
        AccessFs::MakeSym,
        AccessFs::Refer,
        AccessFs::Truncate,
    ]
}

/// Rights Landlock accepts on a rule for a non-directory.
fn file_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Execute | AccessFs::Truncate
}

/// The dynamic loaders the kernel may open for exec (with read) when it runs a dynamically
/// linked program: the eBPF programs do not count that as an exec, so neither may Landlock
/// refuse it (docs/landlock.md, "What the launcher needs").
const LOADERS: [&str; 4] = [
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-musl-x86_64.so.1",
    "/lib/ld-musl-aarch64.so.1",
];

/// What was applied: one status line per class and scope.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// Landlock restricts this process now.
    pub enforced: bool,
    pub lines: Vec<String>,
}

/// The existing path `path` or its nearest existing ancestor (a hierarchy that does not exist
/// yet is created inside that one).
fn existing(path: &str) -> Result<PathBuf, LandlockError> {
    if !path.starts_with('/') {
        return Err(LandlockError::NotAbsolute(path.into()));
    }
    let mut p = Path::new(path);
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    Ok(p.to_path_buf())
}

fn names(rights: &[AccessFs]) -> String {
    rights
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// Restrict the calling process (and everything it execs or forks later) to `env`.
pub fn apply(env: &Envelope) -> Result<Applied, LandlockError> {
    let mut applied = Applied::default();
    let Some(abi) = probe_abi().map(kernel_abi) else {
        applied.lines.push(
            "landlock: not available on this kernel (not built in or not in lsm=): no envelope, the eBPF programs decide alone".into(),
        );
        return Ok(applied);
    };
    // (class name, reach, rights of the class)
    let classes: [(&str, &Reach, Vec<AccessFs>); 3] = [
        ("read", &env.read, read_rights()),
        ("write", &env.write, write_rights()),
        ("exec", &env.exec, vec![AccessFs::Execute]),
    ];
    let mut handled: BitFlags<AccessFs> = BitFlags::empty();
    let mut per_class: Vec<(&Reach, BitFlags<AccessFs>)> = Vec::new();
    for (name, reach, rights) in &classes {
        if let Reach::Unbounded(why) = reach {
            applied.lines.push(format!(
                "landlock: {name}: not restricted by Landlock: {why}; the eBPF programs decide alone"
            ));
            continue;
        }
        let (ok, missing): (Vec<AccessFs>, Vec<AccessFs>) =
            rights.iter().partition(|r| supports_fs(**r));
        let mut class_rights = BitFlags::empty();
        for r in &ok {
            class_rights |= *r;
        }
        handled |= class_rights;
        per_class.push((reach, class_rights));
        let mut line = format!(
            "landlock: {name}: only beneath {} (ABI {abi})",
            reach.describe()
        );
        if !missing.is_empty() {
            line.push_str(&format!(
                "; not handled by this kernel's Landlock: {} (the eBPF programs decide those alone)",
                names(&missing)
            ));
        }
        applied.lines.push(line);
    }
    let mut scopes: BitFlags<Scope> = BitFlags::empty();
    if supports_scope(Scope::Signal) {
        scopes |= Scope::Signal;
        applied
            .lines
            .push("landlock: signals only to processes of this agent's domain".into());
    } else {
        applied.lines.push(format!(
            "landlock: signal scoping needs ABI 6, this kernel has {abi}"
        ));
    }
    if env.abstract_unix_allowed {
        applied.lines.push("landlock: abstract unix sockets not scoped: the policy allows abstract names (net.connect unix:@...)".into());
    } else if supports_scope(Scope::AbstractUnixSocket) {
        scopes |= Scope::AbstractUnixSocket;
        applied.lines.push(
            "landlock: abstract unix sockets only to those created inside this agent's domain"
                .into(),
        );
    } else {
        applied.lines.push(format!(
            "landlock: abstract unix socket scoping needs ABI 6, this kernel has {abi}"
        ));
    }
    if handled.is_empty() && scopes.is_empty() {
        applied
            .lines
            .push("landlock: nothing to restrict: no envelope applied".into());
        return Ok(applied);
    }
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(handled)?;
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes)?;
    }
    let mut created = ruleset.create()?;
    let mut absent: Vec<&str> = Vec::new();
    for (reach, rights) in per_class {
        let Reach::Within(dirs) = reach else { continue };
        for dir in dirs {
            if env.single_files.contains(dir) && !Path::new(dir).exists() {
                // Its directory would allow far more than the one file (say /etc for a missing
                // /etc/ld.so.preload): a file created under this name later is refused instead.
                if !absent.contains(&dir.as_str()) {
                    absent.push(dir);
                }
                continue;
            }
            created = add_rule(created, &existing(dir)?, rights)?;
        }
    }
    if !absent.is_empty() {
        applied.lines.push(format!(
            "landlock: not present at launch, refused in this session if created later: {}",
            absent.join(", ")
        ));
    }
    let loader_rights = handled & (AccessFs::ReadFile | AccessFs::Execute);
    if !loader_rights.is_empty() {
        for loader in LOADERS {
            let path = Path::new(loader);
            if path.exists() {
                created = add_rule(created, path, loader_rights)?;
            }
        }
    }
    // Root launchers (CAP_SYS_ADMIN) need no no_new_privs: setuid programs inside the agent
    // keep working as without the envelope. Others must set it (the kernel's condition).
    let status = created.no_new_privs(!has_cap_sys_admin()).restrict_self()?;
    applied.enforced = status.ruleset != RulesetStatus::NotEnforced;
    if status.no_new_privs {
        applied.lines.push(
            "landlock: no_new_privs set (launcher without CAP_SYS_ADMIN): setuid programs do not gain privileges inside the agent".into(),
        );
    }
    Ok(applied)
}

fn add_rule(
    created: landlock::RulesetCreated,
    path: &Path,
    rights: BitFlags<AccessFs>,
) -> Result<landlock::RulesetCreated, LandlockError> {
    let fd = PathFd::new(path).map_err(|source| LandlockError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let rights = if path.is_dir() {
        rights
    } else {
        rights & file_rights()
    };
    if rights.is_empty() {
        return Ok(created);
    }
    Ok(created.add_rule(PathBeneath::new(fd, rights))?)
}

/// CAP_SYS_ADMIN in this process's effective set. Asked with capget(2), not by reading
/// `/proc/self/status`: this runs inside the agent, where an open the policy does not allow is
/// denied (or, on the fallback in kill mode, kills the launcher before the agent starts).
fn has_cap_sys_admin() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false)
}

/// One feature line for status and `check --kernel`.
pub fn feature() -> (String, Result<(), String>) {
    let name = "landlock-envelope".to_string();
    match probe_abi().map(kernel_abi) {
        Some(abi) => {
            let mut missing = Vec::new();
            if abi < 2 {
                missing.push("refer (ABI 2)");
            }
            if abi < 3 {
                missing.push("truncate (ABI 3)");
            }
            if abi < 6 {
                missing.push("signal and abstract unix scoping (ABI 6)");
            }
            if missing.is_empty() {
                (name, Ok(()))
            } else {
                (
                    name,
                    Err(format!(
                        "Landlock ABI {abi}: launcher sessions get an envelope without {}",
                        missing.join(", ")
                    )),
                )
            }
        }
        None => (
            name,
            Err("Landlock is not available (not built in or not in lsm=): no envelope, the fallback decides after the fact alone".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_existing_ancestor() {
        assert_eq!(
            existing("/proc/self/no/such/dir").expect("absolute"),
            PathBuf::from("/proc/self")
        );
        assert_eq!(existing("/").expect("absolute"), PathBuf::from("/"));
        assert!(existing("relative/x").is_err());
    }

    #[test]
    fn right_names_for_status_lines() {
        assert_eq!(
            names(&[AccessFs::Truncate, AccessFs::Refer]),
            "truncate,refer"
        );
    }
}
