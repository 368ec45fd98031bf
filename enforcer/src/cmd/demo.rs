//! `enforcer demo`: start a daemon with the demo policy (`policies/demo/`), run a scripted agent
//! (`enforcer-testkit try-ops`, which is not part of the product: it is found beside this
//! executable or given with `--agent-bin`) under `enforcer run` that tries allowed and forbidden
//! opens, execs and connects, then let that
//! agent start a sub-agent (`enforcer run` inside it: the chain demo-agent>demo-subagent, which
//! may only do what both allow), show the audit events live, then a summary. Exits 1 if an
//! expected allow or deny did not happen.
//!
//! Everything lives in /tmp/enforcer-demo (the policy names those paths); kernel state is pinned
//! in its own bpffs directory and removed at the end, so a production daemon is not disturbed.

use std::{
    io::{BufRead, BufReader, IsTerminal as _, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    api::{client::ApiClient, Request, Response},
    audit::{text::format_record, EventRecord, Record},
    kernel,
};

const ROOT: &str = "/tmp/enforcer-demo";
const PIN_DIR: &str = "/sys/fs/bpf/enforcer-demo";
const AGENT: &str = "demo-agent";
const SUBAGENT: &str = "demo-subagent";
const ALLOWED_PORT: u16 = 47001;
const DENIED_PORT: u16 = 47002;
/// The daemon's Prometheus endpoint during the demo (loopback only).
const METRICS_PORT: u16 = 47003;
/// QEMU without KVM is slow: loading and verifying the programs can take a while there.
/// (Under the 600 s limit of `cargo xtask vm`.)
const READY_TIMEOUT: Duration = Duration::from_secs(420);

/// The scripted agent's executable (built from the `enforcer-testkit` crate, never shipped).
const AGENT_BIN: &str = "enforcer-testkit";

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The scripted agent is `enforcer-testkit try-ops`, a test tool that is not part of the enforcer package: `cargo xtask demo` builds both, or build it with `cargo build -p enforcer-testkit`. It is looked for beside this executable unless --agent-bin names it."
)]
pub struct DemoArgs {
    /// Directory with the demo policy [default: $ENFORCER_POLICIES/demo, /policies/demo, ./policies/demo]
    #[arg(long, value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    /// The scripted agent's executable, `enforcer-testkit` [default: beside this executable]
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
}

/// `--agent-bin`, else `enforcer-testkit` beside `exe`; an error says how to get it.
fn agent_bin(given: Option<PathBuf>, exe: &Path) -> anyhow::Result<PathBuf> {
    let (path, how) = match given {
        Some(path) => (path, "--agent-bin"),
        None => (
            exe.with_file_name(AGENT_BIN),
            "beside the enforcer executable",
        ),
    };
    if !path.is_file() {
        bail!(
            "the demo's scripted agent {} ({how}) does not exist: it is the test tool \
             `{AGENT_BIN} try-ops`, not part of the enforcer package; build it with \
             `cargo build -p enforcer-testkit` (or run `cargo xtask demo`, which builds both), \
             or pass --agent-bin PATH",
            path.display()
        );
    }
    Ok(path)
}

/// One scripted operation: the `try-ops` argument, what the policy says, and how to find its
/// audit event.
struct Step {
    /// The innermost agent of the process that performs it.
    agent: &'static str,
    what: &'static str,
    op: String,
    allowed: bool,
    event_op: &'static str,
    target: String,
}

fn script() -> Vec<Step> {
    let step = |what, op: String, allowed, event_op, target: String| Step {
        agent: AGENT,
        what,
        op,
        allowed,
        event_op,
        target,
    };
    vec![
        step(
            "read a work file",
            format!("open:{ROOT}/work/notes.txt"),
            true,
            "open",
            format!("{ROOT}/work/notes.txt"),
        ),
        step(
            "create a work file",
            format!("create:{ROOT}/work/out.txt"),
            true,
            "open",
            format!("{ROOT}/work/out.txt"),
        ),
        step(
            "read a secret in the work tree",
            format!("open:{ROOT}/work/secrets/token"),
            false,
            "open",
            format!("{ROOT}/work/secrets/token"),
        ),
        step(
            "read a file outside the work tree",
            format!("open:{ROOT}/outside.txt"),
            false,
            "open",
            format!("{ROOT}/outside.txt"),
        ),
        step(
            "run an allowed tool",
            format!("exec:{ROOT}/bin/enforcer,--version"),
            true,
            "exec",
            format!("{ROOT}/bin/enforcer"),
        ),
        step(
            "run a tool not in the policy",
            format!("exec:{ROOT}/forbidden/enforcer,--version"),
            false,
            "exec",
            format!("{ROOT}/forbidden/enforcer"),
        ),
        step(
            "connect to the allowed port",
            format!("connect:127.0.0.1:{ALLOWED_PORT}"),
            true,
            "connect",
            format!("127.0.0.1:{ALLOWED_PORT}"),
        ),
        step(
            "connect to another port",
            format!("connect:127.0.0.1:{DENIED_PORT}"),
            false,
            "connect",
            format!("127.0.0.1:{DENIED_PORT}"),
        ),
    ]
}

/// What the sub-agent (started by the agent with `enforcer run`) tries: its own, narrower grant
/// works; what only its parent may do is denied, and the event names the sub-agent's rule.
fn sub_script() -> Vec<Step> {
    let step = |what, op: String, allowed, event_op, target: String| Step {
        agent: SUBAGENT,
        what,
        op,
        allowed,
        event_op,
        target,
    };
    vec![
        step(
            "sub-agent: write its docs",
            format!("write:{ROOT}/work/docs/summary.md"),
            true,
            "open",
            format!("{ROOT}/work/docs/summary.md"),
        ),
        step(
            "sub-agent: write where only the parent may",
            format!("write:{ROOT}/work/notes.txt"),
            false,
            "open",
            format!("{ROOT}/work/notes.txt"),
        ),
        step(
            "sub-agent: connect to the parent's port",
            format!("connect:127.0.0.1:{ALLOWED_PORT}"),
            false,
            "connect",
            format!("127.0.0.1:{ALLOWED_PORT}"),
        ),
    ]
}

fn default_policy_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("ENFORCER_POLICIES").map(PathBuf::from),
        Some("/policies".into()),
        Some("policies".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|base| base.join("demo"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| "policies/demo".into())
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let policy_dir = args.policy_dir.unwrap_or_else(default_policy_dir);
    let policy_dir = policy_dir
        .canonicalize()
        .with_context(|| format!("demo policy directory {}", policy_dir.display()))?;
    let exe = std::env::current_exe().context("locating the enforcer binary")?;
    let agent_bin = agent_bin(args.agent_bin, &exe)?;
    prepare_root(&exe, &agent_bin)?;
    let _listeners = [
        TcpListener::bind(("127.0.0.1", ALLOWED_PORT)),
        TcpListener::bind(("127.0.0.1", DENIED_PORT)),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .context("listening on the demo ports 47001/47002 (in use?)")?;

    println!("== starting the daemon with {}", policy_dir.display());
    let outcome = Daemon::start(&exe, &policy_dir).and_then(|mut daemon| {
        let outcome = run_agent(&exe, &daemon.socket);
        daemon.stop();
        outcome
    });
    match kernel::uninstall(Path::new(PIN_DIR)) {
        Ok(_) => println!("== removed the demo's pinned kernel state ({PIN_DIR})"),
        Err(e) => eprintln!("enforcer demo: could not remove {PIN_DIR}: {e}"),
    }
    let (results, events) = outcome?;
    let steps: Vec<Step> = script().into_iter().chain(sub_script()).collect();
    Ok(summarize(&steps, &results, &events))
}

fn prepare_root(exe: &Path, agent_bin: &Path) -> anyhow::Result<()> {
    let root = Path::new(ROOT);
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("removing the previous {ROOT}"))?;
    }
    for dir in ["work/secrets", "work/docs", "bin", "forbidden", "state"] {
        std::fs::create_dir_all(root.join(dir))
            .with_context(|| format!("creating {ROOT}/{dir}"))?;
    }
    let files = [
        ("work/notes.txt", "notes\n"),
        ("work/docs/summary.md", "# summary\n"),
        ("work/secrets/token", "s3cr3t\n"),
        ("outside.txt", "not for agents\n"),
    ];
    for (name, text) in files {
        std::fs::write(root.join(name), text).with_context(|| format!("writing {ROOT}/{name}"))?;
    }
    // The agent program (`enforcer-testkit try-ops`) and `enforcer` (its allowed tool, and the
    // launcher of the sub-agent) in the exec allow list; a copy of `enforcer` outside it is the
    // forbidden tool.
    let copies = [
        (agent_bin, "bin", AGENT_BIN),
        (exe, "bin", "enforcer"),
        (exe, "forbidden", "enforcer"),
    ];
    for (from, dir, name) in copies {
        std::fs::copy(from, root.join(dir).join(name))
            .with_context(|| format!("copying {} to {ROOT}/{dir}/{name}", from.display()))?;
    }
    Ok(())
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(exe: &Path, policy_dir: &Path) -> anyhow::Result<Self> {
        let root = Path::new(ROOT);
        let socket = root.join("api.sock");
        let log =
            std::fs::File::create(root.join("daemon.log")).context("creating the daemon log")?;
        let mut child = Command::new(exe)
            .arg("daemon")
            .arg("--config")
            .arg("/dev/null")
            .arg("--policy-dir")
            .arg(policy_dir)
            .args(["--pin-dir", PIN_DIR, "--log-level", "info"])
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{METRICS_PORT}"))
            .arg("--state-dir")
            .arg(root.join("state"))
            .arg("--audit-log")
            .arg(root.join("audit.jsonl"))
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting `enforcer daemon`")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.starts_with("enforcer daemon ready") => {
                    println!("   {line}");
                    return Ok(Daemon { child, socket });
                }
                Ok(_) => {}
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(root.join("daemon.log")).unwrap_or_default();
                    bail!("the daemon did not become ready in {READY_TIMEOUT:?}; its log ({ROOT}/daemon.log):\n{log}");
                }
                Err(_) => {}
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(root.join("daemon.log")).unwrap_or_default();
                bail!("the daemon exited with {status} before it was ready:\n{log}");
            }
        }
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

type Results = Vec<serde_json::Value>;

/// Run the scripted agent under `enforcer run`, printing the live audit stream meanwhile.
fn run_agent(exe: &Path, socket: &Path) -> anyhow::Result<(Results, Vec<EventRecord>)> {
    let mut live = ApiClient::connect(socket)?;
    let Response::Subscribed { .. } = live.call(&Request::Subscribe {})? else {
        bail!("subscription refused")
    };
    let events: Arc<Mutex<Vec<EventRecord>>> = Arc::default();
    let seen = events.clone();
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    std::thread::spawn(move || {
        while let Ok(Some(line)) = live.next_line() {
            let Ok(record) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            println!("   {}", format_record(&record, color));
            if let Record::Event(e) = record {
                seen.lock().unwrap().push(e);
            }
        }
    });

    let launcher_in_root = Path::new(ROOT).join("bin/enforcer");
    let tool = Path::new(ROOT).join("bin").join(AGENT_BIN);
    println!(
        "== running the agent: enforcer run --agent {AGENT} -- {ROOT}/bin/{AGENT_BIN} try-ops ..."
    );
    let mut agent = Command::new(exe)
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .args(["--agent", AGENT, "--"])
        .arg(&tool)
        .args(["try-ops", "--wait-stdin"])
        .args(script().iter().map(|s| s.op.clone()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running the agent")?;
    // The agent is registered and waits: show what the kernel maps hold while it runs.
    let mut stdout = BufReader::new(agent.stdout.take().expect("piped"));
    let mut ready = String::new();
    stdout
        .read_line(&mut ready)
        .context("reading the agent's ready line")?;
    if !ready.starts_with("ready ") {
        let _ = agent.kill();
        bail!("the agent did not start: {:?}", ready.trim());
    }
    let fill = match map_fill_metrics() {
        Ok(fill) => fill,
        Err(e) => {
            let _ = agent.kill();
            let _ = agent.wait();
            return Err(e);
        }
    };
    println!(
        "== kernel map fill levels, agent registered (http://127.0.0.1:{METRICS_PORT}/metrics)"
    );
    for line in &fill {
        println!("   {line}");
    }
    let mut stdin = agent.stdin.take().expect("piped");
    let _ = stdin.write_all(b"\n");
    drop(stdin);
    let mut output = String::new();
    stdout
        .read_to_string(&mut output)
        .context("reading the agent's results")?;
    let status = agent.wait().context("waiting for the agent")?;
    if !status.success() {
        bail!("the agent failed: {status}");
    }
    let mut results: Results = output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    println!(
        "== the agent starts a sub-agent: enforcer run --agent {AGENT} -- {ROOT}/bin/enforcer run --agent {SUBAGENT} -- {ROOT}/bin/{AGENT_BIN} try-ops ..."
    );
    let mut launcher = Command::new(exe);
    launcher
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .args(["--agent", AGENT, "--"]);
    launcher
        .arg(&launcher_in_root)
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .args(["--agent", SUBAGENT, "--"]);
    results.extend(run_ops(&mut launcher, &tool, &sub_script())?);
    // Let the daemon's 50 ms drain bring the last events in.
    let mut last = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = events.lock().unwrap().len();
        if now == last {
            break;
        }
        last = now;
    }
    let events = events.lock().unwrap().clone();
    Ok((results, events))
}

/// The `enforcer_map_*` lines of the daemon's metrics.
fn map_fill_metrics() -> anyhow::Result<Vec<String>> {
    let mut stream = TcpStream::connect(("127.0.0.1", METRICS_PORT)).with_context(|| {
        format!("connecting to the daemon's metrics at 127.0.0.1:{METRICS_PORT}")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the metrics")?;
    let lines: Vec<String> = response
        .lines()
        .filter(|l| l.starts_with("enforcer_map_"))
        .map(str::to_owned)
        .collect();
    if lines.is_empty() {
        bail!("the metrics have no map fill levels:\n{response}");
    }
    Ok(lines)
}

/// `launcher` (a prepared `enforcer run ... --`) runs `tool try-ops` with the steps' operations;
/// one result per step.
fn run_ops(launcher: &mut Command, tool: &Path, steps: &[Step]) -> anyhow::Result<Results> {
    let output = launcher
        .arg(tool)
        .arg("try-ops")
        .args(steps.iter().map(|s| s.op.clone()))
        .stderr(Stdio::inherit())
        .output()
        .context("running the agent")?;
    if !output.status.success() {
        bail!("the agent failed: {}", output.status);
    }
    let results: Results = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if results.len() != steps.len() {
        bail!(
            "the agent reported {} results for {} operations",
            results.len(),
            steps.len()
        );
    }
    Ok(results)
}

fn event_for<'a>(step: &Step, events: &'a [EventRecord]) -> Option<&'a EventRecord> {
    events
        .iter()
        .filter(|e| e.op == step.event_op && e.agent.as_deref() == Some(step.agent))
        .find(|e| {
            let target = match (&e.path, &e.addr, e.port) {
                (Some(path), _, _) => path.clone(),
                (_, Some(addr), Some(port)) => format!("{addr}:{port}"),
                _ => String::new(),
            };
            target == step.target
        })
}

/// Print the summary table; exit status 0 when every step did what the policy says.
fn summarize(steps: &[Step], results: &Results, events: &[EventRecord]) -> ExitCode {
    println!("\n== summary");
    println!(
        "   {:<44} {:<8} {:<24} {:<12} OK",
        "STEP", "POLICY", "RESULT", "EVENT"
    );
    let mut failures = 0;
    for (i, step) in steps.iter().enumerate() {
        let errno = results.get(i).and_then(|r| r["errno"].as_i64());
        let result = results
            .get(i)
            .and_then(|r| r["result"].as_str())
            .unwrap_or("no result")
            .to_owned();
        let event = event_for(step, events);
        let verdict = event.map_or("none", |e| e.verdict.as_str());
        let ok = step_ok(step.allowed, errno, verdict);
        if !ok {
            failures += 1;
        }
        let policy = if step.allowed { "allow" } else { "deny" };
        println!(
            "   {:<44} {:<8} {:<24} {:<12} {}",
            step.what,
            policy,
            truncate(&result, 24),
            verdict,
            if ok { "yes" } else { "NO" }
        );
    }
    if failures == 0 {
        println!("\nevery operation was allowed or denied as the policy says; full log: {ROOT}/audit.jsonl");
        ExitCode::SUCCESS
    } else {
        println!("\n{failures} operation(s) did not match the policy; full log: {ROOT}/audit.jsonl, daemon log: {ROOT}/daemon.log");
        ExitCode::from(1)
    }
}

/// Did a step do what the policy says? `errno` from the agent, `verdict` of its event ("none").
fn step_ok(allowed: bool, errno: Option<i64>, verdict: &str) -> bool {
    match (allowed, errno, verdict) {
        (true, Some(0), "allow" | "none") => true,
        // Denied in the kernel: the call failed and the event says so.
        (false, Some(e), "deny") => e != 0,
        // A backend that can only observe this kind of operation: logged, not blocked.
        (false, Some(0), "audit-deny") => true,
        _ => false,
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_passes_only_when_result_and_event_agree_with_the_policy() {
        assert!(step_ok(true, Some(0), "allow"));
        assert!(
            step_ok(true, Some(0), "none"),
            "allowed opens need not be logged"
        );
        assert!(
            !step_ok(true, Some(1), "deny"),
            "an allowed operation that was denied"
        );
        assert!(step_ok(false, Some(libc::EPERM as i64), "deny"));
        assert!(
            !step_ok(false, Some(0), "deny"),
            "a deny event while the call succeeded"
        );
        assert!(
            !step_ok(false, Some(0), "none"),
            "a forbidden operation that happened unlogged"
        );
        assert!(
            !step_ok(false, Some(libc::ENOENT as i64), "none"),
            "failing for another reason is not a deny"
        );
        assert!(step_ok(false, Some(0), "audit-deny"));
        assert!(!step_ok(false, None, "deny"), "no result from the agent");
    }

    #[test]
    fn events_are_matched_by_op_agent_and_target() {
        let steps = script();
        let connect = steps
            .iter()
            .find(|s| s.op.ends_with(&DENIED_PORT.to_string()))
            .unwrap();
        let event = EventRecord {
            agent: Some(AGENT.into()),
            op: "connect".into(),
            addr: Some("127.0.0.1".into()),
            port: Some(DENIED_PORT),
            verdict: "deny".into(),
            ..Default::default()
        };
        let other = EventRecord {
            agent: Some("someone-else".into()),
            ..event.clone()
        };
        assert_eq!(
            event_for(connect, std::slice::from_ref(&other)).map(|e| e.verdict.as_str()),
            None
        );
        assert!(event_for(connect, &[other, event]).is_some());
    }
}
