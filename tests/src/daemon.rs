//! A real `enforcer daemon` for end-to-end tests, with everything of its own: policy directory,
//! bpffs pin directory, state directory, audit log and API socket (nothing shared with a
//! production daemon or another test).

use std::{
    io::{BufRead as _, BufReader},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use enforcer::api::{client::ApiClient, protocol::StatusReport, Request, Response};

use crate::{
    agent::{enforcer_bin, testkit_bin},
    backend::DaemonBackend,
    TempDir,
};

/// The datagrams a daemon sent to its `NOTIFY_SOCKET` up to the one with `READY=1` (sent right
/// after the ready line), joined; what came by then if it never does.
fn ready_notification(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("notify socket timeout");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        if got.lines().any(|l| l == "READY=1") {
            break;
        }
    }
    got
}

/// Loading and verifying the programs under QEMU without KVM can take minutes.
pub const READY_TIMEOUT: Duration = Duration::from_secs(420);

pub struct DaemonSetup {
    pub dir: TempDir,
    pub policy_dir: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub audit_log: PathBuf,
    pub socket: PathBuf,
    /// `--backend`: `auto` until [`DaemonSetup::start_first`] learns what the daemon chose; then
    /// that, so a restart adopts the pinned state of the same backend.
    pub backend: &'static str,
    /// Extra `enforcer daemon` flags (e.g. rotation settings).
    pub extra: Vec<String>,
    starts: usize,
}

pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    pub log: PathBuf,
    pub ready_line: String,
}

impl DaemonSetup {
    pub fn new(name: &str) -> DaemonSetup {
        let dir = TempDir::new(name);
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).expect("create policy dir");
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/enforcer-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&pin_dir);
        DaemonSetup {
            state_dir: dir.path().join("state"),
            audit_log: dir.path().join("audit.jsonl"),
            socket: dir.path().join("api.sock"),
            policy_dir,
            pin_dir,
            dir,
            backend: "auto",
            extra: Vec::new(),
            starts: 0,
        }
    }

    /// `enforcer daemon` with this setup (no config file: only these flags).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(enforcer_bin());
        cmd.arg("daemon")
            .args([
                "--config",
                "/dev/null",
                "--log-level",
                "info",
                "--backend",
                self.backend,
            ])
            .arg("--policy-dir")
            .arg(&self.policy_dir)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--audit-log")
            .arg(&self.audit_log)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.extra);
        cmd
    }

    /// Start the daemon and wait for its `ready` line (panics with its log if it never comes).
    /// Started as systemd starts it (`NOTIFY_SOCKET`), it must also send `READY=1` then.
    pub fn start(&mut self) -> Daemon {
        self.starts += 1;
        let log = self.dir.path().join(format!("daemon-{}.log", self.starts));
        let stderr = std::fs::File::create(&log).expect("create daemon log");
        let notify_path = self.dir.path().join(format!("notify-{}.sock", self.starts));
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        let t0 = Instant::now();
        let mut child = self
            .command()
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn enforcer daemon");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("enforcer daemon ready") => {
                    println!(
                        "daemon #{} ready after {:.1}s: {line}",
                        self.starts,
                        t0.elapsed().as_secs_f64()
                    );
                    let notified = ready_notification(&notify);
                    assert!(
                        notified.lines().any(|l| l == "READY=1"),
                        "no READY=1 for systemd with the ready line (got {notified:?}); its log:\n{}",
                        read(&log)
                    );
                    return Daemon {
                        pid: child.id(),
                        child: Some(child),
                        log,
                        ready_line: line,
                    };
                }
                Ok(_) => {}
                Err(_) if t0.elapsed() > READY_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "daemon not ready after {READY_TIMEOUT:?}; its log:\n{}",
                        read(&log)
                    );
                }
                Err(_) => {}
            }
            if let Some(status) = child.try_wait().expect("wait daemon") {
                panic!(
                    "daemon exited with {status} before it was ready; its log:\n{}",
                    read(&log)
                );
            }
        }
    }

    /// The first start of this setup (`--backend auto`): the daemon chooses, the choice is
    /// checked against this kernel ([`DaemonBackend::checked`]), and later starts use it.
    pub fn start_first(&mut self, test: &str) -> (Daemon, DaemonBackend) {
        assert_eq!(
            self.starts, 0,
            "start_first must be the setup's first start"
        );
        let daemon = self.start();
        let status = self.status();
        let lsm = status.features.iter().find(|f| f.name == "bpf-lsm");
        let refusal = lsm
            .filter(|f| !f.available)
            .and_then(|f| f.reason.as_deref());
        let chosen = DaemonBackend::checked(test, &status.backend, refusal);
        assert!(
            daemon
                .ready_line
                .contains(&format!("backend={} ", chosen.name())),
            "ready line and status disagree: {}",
            daemon.ready_line
        );
        self.backend = chosen.name();
        (daemon, chosen)
    }

    /// Start a daemon that must refuse to start; returns its log.
    pub fn start_fails(&mut self) -> String {
        let out = self.command().output().expect("run enforcer daemon");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "the daemon should have refused to start:\n{text}"
        );
        text
    }

    /// `enforcer daemon --uninstall` with this pin directory; its stdout.
    pub fn uninstall(&self) -> String {
        let out = self
            .command()
            .arg("--uninstall")
            .output()
            .expect("run enforcer daemon --uninstall");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "uninstall failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Every record of the audit log, rotated files first (unterminated last lines skipped).
    pub fn records(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for path in enforcer::audit::reader::log_files(&self.audit_log) {
            out.extend(records_of(&path));
        }
        out
    }

    /// Wait until `pred` holds for the audit records (panics after `secs` with `what`).
    pub fn wait_records(
        &self,
        what: &str,
        secs: u64,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let records = self.records();
            if pred(&records) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "audit log: {what} not seen within {secs}s ({} records)",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's status over the API.
    pub fn status(&self) -> StatusReport {
        let mut client = ApiClient::connect(&self.socket).expect("connect to the daemon");
        match client.call(&Request::Status {}).expect("status request") {
            Response::Status(report) => *report,
            other => panic!("unexpected status response: {other:?}"),
        }
    }
}

impl Drop for DaemonSetup {
    fn drop(&mut self) {
        // Leave no enforcement behind a failed test (a daemon still running keeps it: the
        // Daemon guard kills it first when dropped in order).
        let _ = enforcer::kernel::uninstall(&self.pin_dir);
    }
}

impl Daemon {
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the daemon");
            child.wait().expect("reap the daemon");
        }
    }

    /// SIGTERM and wait (a clean stop: `stop` record, pins stay).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            let status = child.wait().expect("reap the daemon");
            assert!(
                status.success(),
                "daemon exited with {status} on SIGTERM; its log:\n{}",
                read(&self.log)
            );
        }
    }

    /// Wait for the daemon to exit by itself (someone else killed it); its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("the daemon was started and not yet reaped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn hup(&self) {
        signal(self.pid, nix::sys::signal::Signal::SIGHUP);
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal the daemon");
}

/// The records of one log file. An unterminated last line is still being written; a line that
/// is not JSON is skipped (a daemon killed mid-write can leave one, see docs/events.md).
fn records_of(path: &Path) -> Vec<serde_json::Value> {
    let text = read(path);
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Read allows for what every dynamically linked program reads at start (policies/sets/libc).
pub const LIBC_READS: &[&str] = &[
    "/etc/ld.so.cache",
    "/usr/lib/x86_64-linux-gnu/**",
    "/usr/lib64/**",
    "/lib/x86_64-linux-gnu/**",
    "/lib64/**",
    "/dev/null",
];

/// TOML list items for `paths` (quoted).
pub fn toml_list(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The enforcer binary as the kernel sees it (symlinks resolved), for exec allows.
pub fn enforcer_exe() -> String {
    std::fs::canonicalize(enforcer_bin())
        .expect("canonical enforcer path")
        .to_string_lossy()
        .into_owned()
}

/// The canonical path of the agents' program (`enforcer-testkit`), for exec allow rules.
pub fn testkit_exe() -> String {
    std::fs::canonicalize(testkit_bin())
        .expect("canonical enforcer-testkit path")
        .to_string_lossy()
        .into_owned()
}
