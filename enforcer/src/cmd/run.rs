//! `enforcer run --agent NAME -- CMD...`: register this process with the daemon as an agent
//! process, apply what the daemon asks for (the Landlock envelope, the seccomp filter: both on
//! the fallback backend), then exec CMD, so CMD and all its descendants are the agent. Single-threaded on
//! purpose (no async runtime): nothing else runs in this process when it execs.
//!
//! When stdin is not a terminal the agent leaves the caller's session first (`setsid`), so it
//! has no controlling terminal: a terminal descriptor it inherited (stderr) cannot be made to
//! push keystrokes into the caller's shell, and /dev/tty does not reach it. An interactive
//! caller (stdin a terminal) keeps its session, so job control (Ctrl-C, Ctrl-Z) works; the
//! kernel hooks refuse TIOCSTI/TIOCLINUX to agents on any terminal (docs/policy.md,
//! "Processes, mounts and namespaces").

use std::{
    ffi::OsString,
    io::IsTerminal as _,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _};

use crate::api::{
    client::{socket_path, ApiClient},
    ApiError, Request, Response,
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The agent (policy `[agent] name`) CMD runs as.
    #[arg(long, value_name = "NAME")]
    pub agent: String,
    /// The daemon's API socket [default: $ENFORCER_SOCKET or /run/enforcer/api.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let socket = socket_path(args.socket);
    let mut client = ApiClient::connect(&socket)?;
    // A fake daemon would answer "registered" and CMD would run unconfined.
    client
        .verify_daemon()
        .with_context(|| format!("refusing to run agent {:?}", args.agent))?;
    let request = Request::Register {
        agent: args.agent.clone(),
        pid: std::process::id(),
    };
    let (session, envelope, syscall_guard) = match client.call(&request) {
        Ok(Response::Registered {
            session,
            envelope,
            syscall_guard,
            ..
        }) => (session, envelope, syscall_guard),
        Ok(other) => bail!("the daemon answered the registration with {other:?}"),
        Err(ApiError::Refused(message)) => bail!("cannot start agent {:?}: {message}", args.agent),
        Err(e) => return Err(e).context(format!("registering agent {:?}", args.agent)),
    };
    drop(client);
    if !std::io::stdin().is_terminal() {
        leave_session().context("detaching the agent from the caller's terminal session")?;
    }
    // The Landlock envelope (docs/landlock.md): after registering (the daemon's socket is not
    // inside it), before exec (CMD must be inside the exec envelope). A ruleset that cannot be
    // built as sent is an error: the agent does not start with less confinement than said.
    if let Some(envelope) = &envelope {
        let applied = crate::kernel::landlock::apply(envelope).with_context(|| {
            format!(
                "applying the Landlock envelope of agent {:?}; the agent was not started",
                args.agent
            )
        })?;
        if std::env::var_os("ENFORCER_LANDLOCK_VERBOSE").is_some() || !applied.enforced {
            for line in &applied.lines {
                eprintln!("enforcer run: {line}");
            }
        }
    }
    // The seccomp filter (docs/fallback.md, "Calls the tracepoints cannot judge"): last, so
    // nothing above runs under it; it holds across the exec and every fork.
    if syscall_guard {
        crate::kernel::seccomp::apply().with_context(|| {
            format!(
                "installing the seccomp filter of agent {:?}; the agent was not started",
                args.agent
            )
        })?;
    }
    // exec only returns on failure; on success CMD's exit status is this process's. The agent
    // name and session are informational for CMD (tools, logs); the kernel does not trust them.
    let error = Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("ENFORCER_AGENT", &args.agent)
        .env("ENFORCER_SESSION", &session)
        .exec();
    eprintln!(
        "enforcer run: cannot execute {}: {error}",
        args.command[0].to_string_lossy()
    );
    // The shell's conventions: 127 not found, 126 found but not executable.
    Ok(ExitCode::from(
        if error.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}

/// Leave the caller's session: a new session without a controlling terminal. A process group
/// leader cannot start a session (EPERM): it only gives up its controlling terminal
/// (TIOCNOTTY on it; without one there is nothing to give up).
fn leave_session() -> std::io::Result<()> {
    if unsafe { libc::setsid() } >= 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(e);
    }
    let fd = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Ok(()); // no controlling terminal
    }
    let r = unsafe { libc::ioctl(fd, libc::TIOCNOTTY) };
    let e = std::io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(e);
    }
    Ok(())
}
