//! `enforcer grant`: a temporary allow for one agent that expires by itself (the kernel checks
//! the expiry, so it ends even with the daemon stopped); `--list` and `--revoke ID`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use crate::{
    api::{
        client::{socket_path, ApiClient},
        Request, Response,
    },
    policy::grant::Grant,
};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["rule", "list", "revoke"])))]
pub struct GrantArgs {
    /// The allow, as `<field> <pattern>`: `net.connect 10.0.0.5:443`, `net.connect api.example.com:443`,
    /// `file.read /data/x/**`, `file.write /tmp/out/**`, `exec /usr/bin/x` (`exec.allow`)
    #[arg(value_name = "RULE", requires_all = ["agent", "duration"])]
    pub rule: Option<String>,
    /// The agent that gets the grant
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// How long it lasts (`90s`, `10m`, `2h`; at most 7 days)
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Why (kept in the audit log)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// List the live grants
    #[arg(long)]
    pub list: bool,
    /// End grant ID now
    #[arg(long, value_name = "ID")]
    pub revoke: Option<u32>,
    /// Print the daemon's answer as JSON
    #[arg(long)]
    pub json: bool,
    /// The daemon's API socket [default: $ENFORCER_SOCKET or /run/enforcer/api.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

pub fn run(args: GrantArgs) -> anyhow::Result<ExitCode> {
    let request = if args.list {
        Request::Grants {}
    } else if let Some(id) = args.revoke {
        Request::Revoke { id }
    } else {
        let duration = args.duration.expect("clap requires --for with a rule");
        Request::Grant {
            agent: args
                .agent
                .clone()
                .expect("clap requires --agent with a rule"),
            rule: args.rule.clone().expect("the action group"),
            seconds: duration
                .as_secs()
                .max(u64::from(duration.subsec_nanos() > 0)),
            reason: args.reason.clone(),
        }
    };
    let mut client = ApiClient::connect(&socket_path(args.socket.clone()))?;
    let response = client.call(&request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(ExitCode::SUCCESS);
    }
    match response {
        Response::Granted {
            grant,
            policy_version,
        } => {
            println!("granted {} (policy version {policy_version})", line(&grant));
        }
        Response::Revoked {
            grant,
            policy_version,
        } => {
            println!("revoked {} (policy version {policy_version})", line(&grant));
        }
        Response::Grants { grants } if grants.is_empty() => println!("no live grants"),
        Response::Grants { grants } => {
            for g in &grants {
                println!("{}", line(g));
            }
        }
        other => anyhow::bail!("the daemon answered with {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn line(g: &Grant) -> String {
    format!(
        "{}: agent {} {} until {}{}",
        g.id,
        g.agent,
        g.rule,
        g.expires,
        g.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    )
}
