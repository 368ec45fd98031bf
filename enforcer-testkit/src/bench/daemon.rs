//! A real `enforcer daemon` for the benchmarks that need one (RSS, event pipeline): its own
//! temporary policy, state, pin and socket paths; stopped and uninstalled on drop.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

pub struct BenchDaemon {
    child: Child,
    pub pid: u32,
    pub dir: PathBuf,
    pub audit_log: PathBuf,
    pub socket: PathBuf,
    pin_dir: PathBuf,
}

impl BenchDaemon {
    pub fn start(name: &str, policies: &[(&str, &str)]) -> anyhow::Result<BenchDaemon> {
        let tag = format!("enforcer-bench-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        let policy_dir = dir.join("policies");
        std::fs::create_dir_all(&policy_dir)?;
        for (file, text) in policies {
            std::fs::write(policy_dir.join(file), text)?;
        }
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{tag}"));
        let enforcer = crate::enforcer_bin()?;
        let mut cmd = Command::new(&enforcer);
        cmd.arg("daemon")
            .args([
                "--config",
                "/dev/null",
                "--log-level",
                "warn",
                "--backend",
                "auto",
            ])
            .arg("--policy-dir")
            .arg(&policy_dir)
            .arg("--pin-dir")
            .arg(&pin_dir)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--audit-log")
            .arg(dir.join("audit.jsonl"))
            // No rotation: the pipeline benchmark reads this one file back (a rotated-away part
            // would look like lost events).
            .args(["--audit-rotate-bytes", "1000000000000"])
            .arg("--socket")
            .arg(dir.join("api.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("daemon.log"))?);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} daemon", enforcer.display()))?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let daemon = BenchDaemon {
            pid: child.id(),
            child,
            audit_log: dir.join("audit.jsonl"),
            socket: dir.join("api.sock"),
            dir,
            pin_dir,
        };
        let start = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("enforcer daemon ready") => return Ok(daemon),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "the daemon exited before it was ready: {}",
                        daemon.log_tail()
                    )
                }
                Err(mpsc::RecvTimeoutError::Timeout)
                    if start.elapsed() > Duration::from_secs(120) =>
                {
                    bail!(
                        "the daemon was not ready after 120 s: {}",
                        daemon.log_tail()
                    )
                }
                Err(_) => {}
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }

    /// Resident set size (VmRSS) in kB.
    pub fn rss_kb(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// User + system CPU time consumed so far, in clock ticks converted to seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed /proc/PID/stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks / hz)
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Pinned hooks outlive the daemon by design: remove them, or every later figure of this
        // run would be measured with this daemon's programs still attached.
        if let Ok(enforcer) = crate::enforcer_bin() {
            let _ = Command::new(enforcer)
                .args([
                    "daemon",
                    "--config",
                    "/dev/null",
                    "--uninstall",
                    "--pin-dir",
                ])
                .arg(&self.pin_dir)
                .stdout(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
