//! The auditd peer: Debian's auditd logging the same syscalls of the same process. The audited
//! worker gets a login uid (inherited by its children, like agent membership) and one rule
//! selects it by `auid`: the audit equivalent of "log this agent's opens, execs, connects and
//! sends".
//!
//! The binaries come from Debian's `auditd` package, unpacked (never installed) at
//! `--audit-root`. auditd runs only during its phase: it is started (no fork, its own config and
//! log), given Debian's shipped rule-file settings and the rule, and stopped again, with every
//! rule deleted and auditing disabled, so no other phase pays for it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

/// A login uid nobody logs in with.
pub const AUID: u32 = 4_242_424;

/// The syscalls the benchmark's operations make that the enforcer decides on.
const SYSCALLS: &str = "open,openat,openat2,execve,connect,sendto,sendmsg";

/// auditctl and auditd from the unpacked package.
pub struct AuditTools {
    root: PathBuf,
    /// auditd's config and log.
    dir: PathBuf,
}

/// What `auditctl -s` reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditStatus {
    pub enabled: u32,
    pub pid: u32,
    /// Records the kernel dropped (backlog full or rate limit), since boot.
    pub lost: u64,
}

/// auditd running with the rule loaded; [`Running::stop`] undoes both.
pub struct Running<'a> {
    tools: &'a AuditTools,
    daemon: Option<Child>,
}

fn lib_path(root: &Path) -> String {
    format!(
        "{}:{}",
        root.join("lib/x86_64-linux-gnu").display(),
        root.join("usr/lib/x86_64-linux-gnu").display()
    )
}

impl AuditTools {
    pub fn new(root: &Path, dir: &Path) -> anyhow::Result<AuditTools> {
        for tool in ["sbin/auditd", "sbin/auditctl"] {
            if !root.join(tool).is_file() {
                bail!(
                    "{} missing (Debian's auditd package unpacked there?)",
                    root.join(tool).display()
                );
            }
        }
        std::fs::create_dir_all(dir.join("plugins.d"))?;
        // Debian's shipped auditd.conf, except the log location, no plugins and no network.
        let conf = format!(
            "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 1024\nnum_logs = 2\npriority_boost = 4\nmax_log_file_action = ROTATE\nspace_left = 75\nspace_left_action = IGNORE\nadmin_space_left = 50\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\nuse_libwrap = no\nq_depth = 2000\noverflow_action = IGNORE\nplugin_dir = {}\n",
            dir.join("audit.log").display(),
            dir.join("plugins.d").display()
        );
        std::fs::write(dir.join("auditd.conf"), conf)?;
        Ok(AuditTools {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    pub fn auditctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.root.join("sbin/auditctl"))
            .args(args)
            .env("LD_LIBRARY_PATH", lib_path(&self.root))
            .output()
            .context("running auditctl")?;
        if !out.status.success() {
            bail!(
                "auditctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn status(&self) -> anyhow::Result<AuditStatus> {
        let text = self.auditctl(&["-s"])?;
        let field = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        };
        Ok(AuditStatus {
            enabled: field("enabled").unwrap_or(0) as u32,
            pid: field("pid").unwrap_or(0) as u32,
            lost: field("lost").unwrap_or(0),
        })
    }

    /// The kernel gives a process an audit context at fork only once auditing has ever been
    /// enabled; without one, none of its syscalls is ever audited. Enable and disable once
    /// before the measured processes start (on a system with auditd installed this happened at
    /// boot). Every process forked afterwards takes the audit syscall path, in every phase.
    pub fn prime(&self) -> anyhow::Result<()> {
        self.auditctl(&["-e", "1"])?;
        self.auditctl(&["-e", "0"])?;
        Ok(())
    }

    /// Start auditd and load the rule for [`AUID`].
    pub fn start(&self) -> anyhow::Result<Running<'_>> {
        // The kernel talks to one audit daemon only: with another one registered (a system
        // auditd, or one a killed run left behind), every record goes to that one's log and this
        // phase would wait for records that never come.
        let before = self.status()?;
        if before.pid != 0 {
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", before.pid))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_else(|e| format!("unreadable: {e}"));
            bail!("another audit daemon is registered with the kernel (pid {}, `{cmdline}`): the kernel sends every record to it, not to the benchmark's auditd; stop it and run again", before.pid);
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("auditd.stderr"))?;
        // -n: no fork. Not -f: in the foreground auditd writes events to stderr, not its log.
        let daemon = Command::new(self.root.join("sbin/auditd"))
            .args(["-n", "-c"])
            .arg(&self.dir)
            .env("LD_LIBRARY_PATH", lib_path(&self.root))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting auditd")?;
        let mut running = Running {
            tools: self,
            daemon: Some(daemon),
        };
        // auditd registers its pid with the kernel once it is up.
        let mut status = AuditStatus::default();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            status = self.status()?;
            if status.pid != 0 {
                break;
            }
            if let Some(exit) = running
                .daemon
                .as_mut()
                .and_then(|d| d.try_wait().ok().flatten())
            {
                bail!(
                    "auditd exited ({exit}): {}",
                    std::fs::read_to_string(self.dir.join("auditd.stderr"))
                        .unwrap_or_default()
                        .trim()
                );
            }
        }
        if status.pid == 0 {
            bail!(
                "auditd did not register with the kernel in 10 s; its stderr: {}",
                std::fs::read_to_string(self.dir.join("auditd.stderr"))
                    .unwrap_or_default()
                    .trim()
            );
        }
        let ours = running.daemon.as_ref().map_or(0, Child::id);
        if status.pid != ours {
            bail!("the kernel's audit daemon is pid {}, not the benchmark's auditd (pid {ours}): another one registered meanwhile", status.pid);
        }
        // What Debian's /etc/audit/rules.d/audit.rules sets before any rule.
        self.auditctl(&["-D"])?;
        self.auditctl(&["-b", "8192"])?;
        self.auditctl(&["--backlog_wait_time", "60000"])?;
        self.auditctl(&["-f", "1"])?;
        self.auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            SYSCALLS,
            "-F",
            &format!("auid={AUID}"),
        ])?;
        self.auditctl(&["-e", "1"])?;
        Ok(running)
    }

    /// SYSCALL records for the audited process in auditd's log (every start appends to it).
    pub fn records(&self) -> usize {
        let needle = format!(" auid={AUID} ");
        std::fs::read_to_string(self.dir.join("audit.log"))
            .map(|t| {
                t.lines()
                    .filter(|l| l.starts_with("type=SYSCALL ") && l.contains(&needle))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Running<'_> {
    /// Delete the rule, wait until auditd wrote every record the kernel queued (records still
    /// queued when it exits would go to the kernel log instead), disable auditing, stop auditd.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(mut daemon) = self.daemon.take() else {
            return Ok(());
        };
        let rules = self.tools.auditctl(&["-D"]);
        // A user message travels the kernel's queue behind every record: once it is in the
        // log, so is everything before it.
        let marker = format!(
            "enforcer-bench-sync-{}-{}",
            std::process::id(),
            SYNC.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let synced = self.tools.auditctl(&["-m", &marker]).and_then(|_| {
            // Generous: with the backlog full (8192 records) auditd writes them all first, and
            // on a loaded machine that takes a while.
            for _ in 0..2400 {
                if std::fs::read_to_string(self.tools.dir.join("audit.log")).is_ok_and(|t| t.contains(&marker)) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let now = self.tools.status().map(|s| format!("kernel audit status: enabled {}, daemon pid {}, lost {}", s.enabled, s.pid, s.lost)).unwrap_or_else(|e| format!("{e:#}"));
            bail!(
                "auditd (pid {}) had not written the records queued for it after 120 s ({now}; its stderr: `{}`)",
                daemon.id(),
                std::fs::read_to_string(self.tools.dir.join("auditd.stderr")).unwrap_or_default().trim()
            )
        });
        let disabled = self.tools.auditctl(&["-e", "0"]);
        unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        daemon.wait()?;
        rules?;
        synced?;
        disabled?;
        Ok(())
    }
}

static SYNC: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
