//! One daemon per state directory and per audit log. Two daemons on the same state would
//! number policy versions from the same file and overwrite each other's grants; two on the same
//! log would interleave records and break its hash chain. The daemon takes an exclusive
//! `flock(2)` on `state_dir/daemon.lock` and on `<audit.path>.lock` (not on the log itself:
//! rotation renames the log, and the lock would leave with it), and writes its pid into both.
//!
//! The locks are advisory and belong to the open files: the kernel releases them when the
//! daemon exits, however it exits, so a stale lock file never blocks a start. The files stay
//! (removing one while another daemon opens it would let two daemons lock two files).

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use super::config::DaemonConfig;

/// The file in `state_dir`.
pub const STATE_LOCK: &str = "daemon.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} {} is in use by another enforcer daemon ({}, lock {}): one daemon per {what}; \
         stop that one first, or give this one its own {flag}",
        target.display(), holder_text(*holder), lock.display()
    )]
    Held {
        what: &'static str,
        flag: &'static str,
        target: PathBuf,
        lock: PathBuf,
        holder: Option<u32>,
    },
    #[error("locking {}: {cause}", lock.display())]
    Io {
        lock: PathBuf,
        cause: std::io::Error,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("pid {pid}"),
        // It locked the file but has not written its pid yet (or is not an enforcer).
        None => "pid not recorded yet".into(),
    }
}

/// Held for the daemon's life: dropping it (or exiting) releases both locks.
#[derive(Debug)]
pub struct DaemonLocks {
    _state: File,
    _audit: File,
}

/// Lock the state directory and the audit log of `config`, creating the state directory and
/// the log's directory if needed (the daemon creates them anyway).
pub fn acquire(config: &DaemonConfig) -> Result<DaemonLocks, LockError> {
    let state = lock(
        &config.state_dir.join(STATE_LOCK),
        "state directory",
        "--state-dir",
        &config.state_dir,
    )?;
    let audit = lock(
        &audit_lock_path(&config.audit.path),
        "audit log",
        "--audit-log",
        &config.audit.path,
    )?;
    Ok(DaemonLocks {
        _state: state,
        _audit: audit,
    })
}

/// `<audit.path>.lock`, beside the log (rotated files are `<audit.path>.<N>`: never this).
pub fn audit_lock_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn lock(
    lock: &Path,
    what: &'static str,
    flag: &'static str,
    target: &Path,
) -> Result<File, LockError> {
    let io = |cause| LockError::Io {
        lock: lock.to_path_buf(),
        cause,
    };
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held {
                what,
                flag,
                target: target.to_path_buf(),
                lock: lock.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(cause)) => return Err(io(cause)),
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush())
        .map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, state: &str, log: &str) -> DaemonConfig {
        let mut config = DaemonConfig {
            state_dir: dir.join(state),
            ..DaemonConfig::default()
        };
        config.audit.path = dir.join(log);
        config
    }

    #[test]
    fn a_second_daemon_on_the_same_state_or_log_is_refused_naming_the_holder() {
        let dir = crate::audit::writer::tests::tempdir();
        let first = acquire(&config(&dir, "state", "log/audit.jsonl")).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(dir.join("state").join(STATE_LOCK)).unwrap(),
            format!("{pid}\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("log/audit.jsonl.lock")).unwrap(),
            format!("{pid}\n")
        );
        assert!(
            !dir.join("log/audit.jsonl").exists(),
            "the log itself is the writer's"
        );

        // flock(2) locks belong to open files: a second open in this process conflicts like
        // another process would.
        let err = acquire(&config(&dir, "state", "other.jsonl")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "state directory {} is in use by another enforcer daemon (pid {pid}, lock {}):",
                dir.join("state").display(),
                dir.join("state/daemon.lock").display()
            )),
            "{text}"
        );
        assert!(text.contains("--state-dir"), "{text}");
        assert!(
            !text.contains("another enforcer build") && !text.contains("--uninstall"),
            "{text}"
        );
        assert!(
            !dir.join("other.jsonl.lock").exists(),
            "the state is checked first"
        );

        let err = acquire(&config(&dir, "state2", "log/audit.jsonl")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "audit log {} is in use by another enforcer daemon (pid {pid}, ",
                dir.join("log/audit.jsonl").display()
            )),
            "{text}"
        );
        assert!(text.contains("--audit-log"), "{text}");

        // Released with the holder; the next daemon takes over the same files.
        drop(first);
        let _again = acquire(&config(&dir, "state", "log/audit.jsonl")).unwrap();
    }

    #[test]
    fn a_lock_file_without_a_pid_is_still_a_held_lock() {
        let dir = crate::audit::writer::tests::tempdir();
        let path = dir.join("state").join(STATE_LOCK);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let other = File::create(&path).unwrap();
        other.try_lock().unwrap();
        let err = acquire(&config(&dir, "state", "audit.jsonl")).unwrap_err();
        assert!(
            err.to_string().contains("(pid not recorded yet, lock "),
            "{err}"
        );
        assert!(matches!(err, LockError::Held { holder: None, .. }));
    }
}
