//! `enforcer run` against a stand-in daemon on a temporary socket (user space only): it must
//! register its own pid, exec the command in the same process, pass the exit status through,
//! and fail clearly (without running the command) when registration is impossible.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread::JoinHandle,
};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("enforcer-launcher-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Accept one connection, read one request, answer `reply`; return (request, peer pid).
fn fake_daemon(socket: &Path, reply: &'static str) -> JoinHandle<(serde_json::Value, i32)> {
    let listener = UnixListener::bind(socket).expect("bind fake daemon socket");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the launcher connects");
        let creds =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (&stream).write_all(reply.as_bytes()).unwrap();
        (
            serde_json::from_str(&line).expect("the request is JSON"),
            creds.pid(),
        )
    })
}

fn launcher(socket: &Path, agent: &str, command: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(["run", "--socket"])
        .arg(socket)
        .args(["--agent", agent, "--"])
        .args(command)
        .output()
        .expect("running enforcer run")
}

#[test]
fn registers_itself_then_execs_and_passes_the_exit_status() {
    let dir = tempdir("ok");
    let socket = dir.join("api.sock");
    let daemon = fake_daemon(&socket, "{\"result\":\"registered\",\"agent\":\"coder\",\"session\":\"00000000000000ab\",\"policy_version\":1}\n");
    let out = launcher(
        &socket,
        "coder",
        &[
            "sh",
            "-c",
            "echo $$; echo $ENFORCER_AGENT $ENFORCER_SESSION; exit 7",
        ],
    );
    let (request, peer_pid) = daemon.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let shell_pid: i64 = lines
        .next()
        .unwrap_or_default()
        .parse()
        .expect("the command printed its pid");
    assert_eq!(
        lines.next(),
        Some("coder 00000000000000ab"),
        "agent and session are passed to the command"
    );
    assert_eq!(request["request"], "register");
    assert_eq!(request["agent"], "coder");
    assert_eq!(
        request["pid"].as_i64(),
        Some(shell_pid),
        "the registered pid must be the pid CMD runs as (exec, not fork)"
    );
    assert_eq!(
        peer_pid as i64, shell_pid,
        "the registered pid must be the caller's own"
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit status passes through; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refused_registration_is_reported_and_nothing_runs() {
    let dir = tempdir("refused");
    let socket = dir.join("api.sock");
    let marker = dir.join("ran");
    let daemon = fake_daemon(&socket, "{\"result\":\"error\",\"message\":\"no agent named \\\"ghost\\\" in policy version 1 (agents: coder)\"}\n");
    let out = launcher(&socket, "ghost", &["touch", marker.to_str().unwrap()]);
    daemon.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot start agent \"ghost\": no agent named"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !marker.exists(),
        "the command must not run when registration fails"
    );
}

#[test]
fn missing_daemon_is_reported_and_nothing_runs() {
    let dir = tempdir("missing");
    let marker = dir.join("ran");
    let out = launcher(
        &dir.join("absent.sock"),
        "coder",
        &["touch", marker.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the enforcer daemon is not running"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !marker.exists(),
        "the command must not run without a daemon"
    );
}

#[test]
fn a_command_that_does_not_exist_exits_127() {
    let dir = tempdir("noexec");
    let socket = dir.join("api.sock");
    let daemon = fake_daemon(
        &socket,
        "{\"result\":\"registered\",\"agent\":\"coder\",\"session\":\"01\",\"policy_version\":1}\n",
    );
    let out = launcher(&socket, "coder", &["/nonexistent/tool"]);
    daemon.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot execute /nonexistent/tool"));
}
