//! A real process to confine: `enforcer-testkit try-ops`, started, registered, then told to act.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// The enforcer binary: ENFORCER_BIN (set by `cargo xtask test`), else the workspace build.
pub fn enforcer_bin() -> PathBuf {
    built_bin("ENFORCER_BIN", "enforcer")
}

/// The test tooling binary (`try-ops`, `bench`, `bench-worker`): ENFORCER_TESTKIT (set by
/// `cargo xtask test`), else the workspace build.
pub fn testkit_bin() -> PathBuf {
    built_bin("ENFORCER_TESTKIT", "enforcer-testkit")
}

fn built_bin(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debug")
        .join(name);
    assert!(
        p.exists(),
        "no {name} binary: set {var} or build it with `cargo build -p {name}` ({})",
        p.display()
    );
    p
}

/// Start `cmd` as `uid` with primary group `gid` and exactly the supplementary `groups` (no
/// user database needed: the VMs have none).
pub fn as_user(cmd: &mut Command, uid: u32, gid: u32, groups: &[u32]) {
    use std::os::unix::process::CommandExt as _;
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for ret in [
                libc::setgroups(groups.len(), groups.as_ptr()),
                libc::setgid(gid),
                libc::setuid(uid),
            ] {
                if ret != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    pub op: String,
    pub arg: String,
    pub errno: i32,
    pub result: String,
}

pub struct Agent {
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    /// Start `enforcer-testkit try-ops --wait-stdin [--step] OPS...`; returns once it is ready.
    pub fn spawn(ops: &[String], step: bool) -> Agent {
        Agent::spawn_cmd(Command::new(testkit_bin()), ops, step)
    }

    /// Like [`Agent::spawn`], but under `enforcer run --agent AGENT` against a running daemon:
    /// the launcher registers itself and execs try-ops in the same process.
    pub fn spawn_registered(
        socket: &std::path::Path,
        agent: &str,
        ops: &[String],
        step: bool,
    ) -> Agent {
        let mut cmd = Command::new(enforcer_bin());
        cmd.arg("run")
            .arg("--socket")
            .arg(socket)
            .args(["--agent", agent, "--"])
            .arg(testkit_bin());
        Agent::spawn_cmd(cmd, ops, step)
    }

    /// [`Agent::spawn_registered`] with `enforcer run` started as another user: `uid`, primary
    /// group `gid`, supplementary `groups` ([`as_user`]).
    pub fn spawn_registered_as(
        socket: &std::path::Path,
        agent: &str,
        step: bool,
        (uid, gid, groups): (u32, u32, &[u32]),
    ) -> Agent {
        let mut cmd = Command::new(enforcer_bin());
        cmd.arg("run")
            .arg("--socket")
            .arg(socket)
            .args(["--agent", agent, "--"])
            .arg(testkit_bin());
        as_user(&mut cmd, uid, gid, groups);
        Agent::spawn_cmd(cmd, &[], step)
    }

    /// Like [`Agent::spawn`], but the process gets exactly `pid` (a pid a dead process had):
    /// `/proc/sys/kernel/ns_last_pid` is set to `pid - 1` before each try (another fork on the
    /// system may take it first: retried). None if `pid` could not be had in 50 tries.
    pub fn spawn_with_pid(pid: u32, ops: &[String], step: bool) -> Option<Agent> {
        for _ in 0..50 {
            std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1))
                .expect("write /proc/sys/kernel/ns_last_pid (root, CONFIG_CHECKPOINT_RESTORE)");
            let agent = Agent::spawn(ops, step);
            if agent.pid == pid {
                return Some(agent);
            }
            agent.kill();
        }
        None
    }

    /// [`Agent::spawn`] from a prepared `enforcer` command (another user: [`as_user`]).
    pub fn spawn_command(cmd: Command, step: bool) -> Agent {
        Agent::spawn_cmd(cmd, &[], step)
    }

    /// SIGKILL and reap (a process the test does not want to run).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn_cmd(mut cmd: Command, ops: &[String], step: bool) -> Agent {
        cmd.arg("try-ops").arg("--wait-stdin");
        if step {
            cmd.arg("--step");
        }
        cmd.arg("--")
            .args(ops)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read ready line");
        let pid: u32 = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("try-ops did not say ready: {line:?}"));
        assert_eq!(pid, child.id(), "try-ops pid");
        Agent {
            pid,
            child,
            stdin,
            stdout,
        }
    }

    fn send_line(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(b"\n")
            .and_then(|_| stdin.flush())
            .expect("signal try-ops");
    }

    fn read_result(&mut self) -> OpResult {
        self.read_result_or_exit()
            .expect("try-ops exited before reporting a result")
    }

    /// The next result, or None if try-ops closed its output (it exited or was killed).
    fn read_result_or_exit(&mut self) -> Option<OpResult> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).expect("read result") == 0 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad try-ops output {line:?}: {e}"));
        Some(OpResult {
            op: v["op"].as_str().unwrap_or_default().into(),
            arg: v["arg"].as_str().unwrap_or_default().into(),
            errno: v["errno"].as_i64().unwrap_or(-1) as i32,
            result: v["result"].as_str().unwrap_or_default().into(),
        })
    }

    /// Start the operations (non-step mode) and collect every result.
    pub fn go(mut self, n: usize) -> Vec<OpResult> {
        self.send_line();
        let out = (0..n).map(|_| self.read_result()).collect();
        self.finish();
        out
    }

    /// Step mode: release the start gate (call once), then `step()` per operation.
    pub fn start(&mut self) {
        self.send_line();
    }

    pub fn step(&mut self) -> OpResult {
        self.send_line();
        self.read_result()
    }

    /// Step mode: perform `op` (`OP:ARG`, as on the command line) now.
    pub fn op(&mut self, op: &str) -> OpResult {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{op}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .expect("signal try-ops");
        self.read_result()
    }

    /// Start the operations (non-step mode) and collect results until try-ops exits, however
    /// it exits (kill-mode tests: the agent itself is SIGKILLed); returns them and its status.
    pub fn go_until_exit(mut self) -> (Vec<OpResult>, std::process::ExitStatus) {
        self.send_line();
        drop(self.stdin.take());
        let mut out = Vec::new();
        while let Some(r) = self.read_result_or_exit() {
            out.push(r);
        }
        (out, self.child.wait().expect("wait try-ops"))
    }

    /// Step mode: perform `op` now; None if try-ops exited instead of answering (killed).
    pub fn op_or_exit(&mut self, op: &str) -> Option<OpResult> {
        let stdin = self.stdin.as_mut().expect("stdin open");
        // A dead try-ops may already have closed the pipe: that is an answer too.
        if stdin
            .write_all(format!("{op}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return None;
        }
        self.read_result_or_exit()
    }

    /// Close stdin and return try-ops' exit status, whatever it is.
    pub fn wait(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait try-ops")
    }

    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait try-ops");
        assert!(status.success(), "try-ops exited with {status}");
    }
}
