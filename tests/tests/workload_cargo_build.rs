//! A real build as an agent: `cargo build` of a small crate with three crates.io dependencies
//! (one with a build script), jobserver in use (rustc reopens its pipe through
//! `/proc/self/fd/N`), under a coding-agent policy (read everything, write the project, the
//! cargo home and /tmp, exec the toolchain, deny `~/.ssh` and `*.pem`). In kill mode and in
//! audit mode the build completes with no denial the policy did not intend, and a forbidden
//! extra action of the same agent (reading a `.pem` key in the project) is still denied. Host only: the VM images carry no Rust
//! toolchain (the mechanism, pathless objects, is proven on BPF LSM by `pathless_objects`).

use std::{os::unix::process::ExitStatusExt as _, path::PathBuf};

use enforcer::kernel::Backend as _;
use enforcer_common::*;
use enforcer_tests::{compile_files, events, fallback, Agent, TempDir};

const MANIFEST: &str = r#"[package]
name = "workload"
version = "0.1.0"
edition = "2021"

[dependencies]
itoa = "=1.0.19"
memchr = "=2.8.3"
libc = "=0.2.191"
"#;

const MAIN: &str = r#"fn main() {
    let mut b = itoa::Buffer::new();
    let n = b.format(unsafe { libc::getpid() });
    println!("{} {:?}", n, memchr::memchr(b'1', n.as_bytes()));
}
"#;

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

/// The cargo on PATH (the rustup proxy), and the directories its toolchain runs from.
fn cargo() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("cargo"))
                .find(|c| c.is_file())
        })
        .expect("cargo on PATH")
}

fn policy(name: &str, on_violation: &str, mode: &str, project: &str) -> String {
    let home = home().display().to_string();
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    format!(
        r#"
[agent]
name = "{name}"
mode = "{mode}"
on_violation = "{on_violation}"
[file]
read = ["/**"]
write = ["{project}/**", "{cargo_home}/**", "/tmp/**", "/dev/null"]
deny = ["{home}/.ssh/**", "**/*.pem"]
[exec]
allow = ["/usr/bin/**", "/usr/libexec/**", "/usr/lib/**", "{cargo_home}/**", "{rustup_home}/**", "{project}/target/**"]
"#
    )
}

fn build(test: &str, mode: &str, on_violation: &str) {
    let mut backend = fallback(test);
    let dir = TempDir::new(&format!("wl-{mode}"));
    let project = dir.path().display().to_string();
    dir.file("Cargo.toml", MANIFEST);
    dir.file("src/main.rs", MAIN);
    let name = format!("wl-{mode}");
    let compiled = compile_files(&[(
        "wl.toml",
        &policy(
            &name,
            on_violation,
            if mode == "audit" { "audit" } else { "enforce" },
            &project,
        ),
    )]);
    let id = compiled.agent_by_name(&name).expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    // A key file in the project: denied by `**/*.pem` whatever the write allow says.
    dir.file("deploy.pem", "not a real key\n");
    let secret = format!("{project}/deploy.pem");
    let build = format!(
        "exec:{},build,--offline,-j2,--manifest-path,{project}/Cargo.toml,--target-dir,{project}/target",
        cargo().display()
    );
    let run = format!("exec:{project}/target/debug/workload");
    let agent = Agent::spawn(&[build, run, format!("open:{secret}")], false);
    backend.register(agent.pid, id, 1900).expect("register");
    let pid = agent.pid;
    let (results, status) = agent.go_until_exit();
    let all = events::drain_all(&mut backend);
    let mine: Vec<_> = all
        .iter()
        .filter(|e| e.header.chain[0] == id && e.header.depth > 0)
        .collect();
    let opens = mine.iter().filter(|e| e.header.op == OP_OPEN).count();
    let execs = mine.iter().filter(|e| e.header.op == OP_EXEC).count();
    let unintended: Vec<String> = mine
        .iter()
        .filter(|e| e.header.verdict != VERDICT_ALLOW && e.header.op != OP_JOIN)
        .filter(|e| !events::target(e).ends_with("deploy.pem"))
        .map(|e| format!("{} {} {}", e.header.verdict, e.header.op, events::target(e)))
        .collect();
    assert!(
        results.len() >= 2 && results[0].errno == 0 && results[1].errno == 0,
        "{mode}: the build and its program complete: {results:?} (status {status:?}); unintended denials: {unintended:?}"
    );
    assert!(
        unintended.is_empty(),
        "{mode}: denials the policy did not intend: {unintended:?}"
    );
    // The forbidden extra action: reading a key.
    let forbidden = mine
        .iter()
        .find(|e| events::target(e).ends_with("deploy.pem"))
        .unwrap_or_else(|| panic!("{mode}: the key read is logged: {results:?}"));
    if on_violation == "kill" {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{mode}: the key read kills"
        );
        assert_eq!(forbidden.header.verdict, VERDICT_KILL);
    } else {
        assert_eq!(forbidden.header.verdict, VERDICT_AUDIT_DENY);
    }
    events::assert_nothing_lost(&backend);
    println!(
        "checked ({mode}): cargo build of a crate with 3 dependencies (one build script, jobserver) completes as agent {pid}: {opens} opens and {execs} execs logged, 0 unintended denials; the *.pem read is {}",
        if on_violation == "kill" { "killed" } else { "logged as audit-deny" }
    );
}

#[test]
fn fallback_kill_mode() {
    // Opens allowed are not logged without log.file_allow: the counts are what was logged.
    build("workload_cargo_build::fallback_kill_mode", "kill", "kill");
}

#[test]
fn fallback_audit_mode() {
    build(
        "workload_cargo_build::fallback_audit_mode",
        "audit",
        "audit",
    );
}
