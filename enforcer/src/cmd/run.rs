//! `enforcer run --agent NAME -- CMD...`: register this process with the daemon as an agent
//! process, then exec CMD, so CMD and all its descendants are the agent. Single-threaded on
//! purpose (no async runtime): nothing else runs in this process when it execs.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};

use crate::api::client::{socket_path, ApiClient};
use crate::api::{ApiError, Request, Response};

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
    let request = Request::Register {
        agent: args.agent.clone(),
        pid: std::process::id(),
    };
    let session = match client.call(&request) {
        Ok(Response::Registered { session, .. }) => session,
        Ok(other) => bail!("the daemon answered the registration with {other:?}"),
        Err(ApiError::Refused(message)) => bail!("cannot start agent {:?}: {message}", args.agent),
        Err(e) => return Err(e).context(format!("registering agent {:?}", args.agent)),
    };
    drop(client);
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
