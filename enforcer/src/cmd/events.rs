//! `enforcer events`: read the audit log (rotated files included, oldest first), filter it, and
//! with `--follow` continue with the daemon's live stream, without gap or repeat (the stream
//! starts at a sequence number; older records come from the files).

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};

use crate::api::client::{socket_path, ApiClient};
use crate::api::{ApiError, Request, Response};
use crate::audit::clock;
use crate::audit::filter::{parse_since, Filter};
use crate::audit::reader::read_log;
use crate::audit::text::format_record;
use crate::audit::Record;
use crate::paths;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One human-readable line per record (coloured on a terminal; NO_COLOR turns that off).
    Text,
    /// The audit log's JSON lines.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Audit log [default: the running daemon's, else /var/log/enforcer/audit.jsonl]
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// After the log, print new records as the daemon writes them.
    #[arg(long, short)]
    pub follow: bool,
    /// The daemon's API socket [default: $ENFORCER_SOCKET or /run/enforcer/api.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Only this agent (repeatable); sub-agent events match every agent of their chain.
    #[arg(long, value_name = "NAME")]
    pub agent: Vec<String>,
    /// Only this verdict: allow, deny, audit-deny, kill (repeatable).
    #[arg(long)]
    pub verdict: Vec<String>,
    /// Only this operation: open, exec, connect, sendmsg, unlink, rename, ... (repeatable).
    #[arg(long)]
    pub op: Vec<String>,
    /// Only records at or after this time: RFC 3339 (2026-11-23T14:00:00Z) or a duration ago (10m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only this session (hex id, as in the log).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        agents: args.agent.clone(),
        verdicts: args.verdict.clone(),
        ops: args.op.clone(),
        since_ns: args.since.as_deref().map(|s| parse_since(s, clock::now_ns())).transpose().map_err(anyhow::Error::msg)?,
        session: args.session.clone(),
    };
    filter.validate().map_err(anyhow::Error::msg)?;
    let color = args.format == Format::Text && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = Output { format: args.format, color, stdout: std::io::stdout().lock() };

    let socket = socket_path(args.socket.clone());
    let mut daemon = match ApiClient::connect(&socket) {
        Ok(client) => Some(client),
        Err(e) if args.follow => return Err(e).context("--follow needs the running daemon"),
        Err(_) => None,
    };
    // The running daemon knows where its log is; ask when no --log was given.
    let daemon_log = match (&args.log, daemon.as_mut()) {
        (None, Some(client)) => match client.call(&Request::Status {}) {
            Ok(Response::Status(status)) => Some(PathBuf::from(&status.audit_log)),
            _ => None,
        },
        _ => None,
    };
    let log = args.log.clone().or(daemon_log).unwrap_or_else(|| PathBuf::from(paths::AUDIT_LOG));

    let mut live = None;
    if args.follow {
        let mut client = daemon.take().expect("connected above");
        match client.call(&Request::Subscribe {})? {
            Response::Subscribed { next_seq } => live = Some((client, next_seq)),
            other => bail!("the daemon answered the subscription with {other:?}"),
        }
    }
    let stream_from = live.as_ref().map(|(_, seq)| *seq);

    if !log.exists() && stream_from.is_none() {
        bail!("no audit log at {} (use --log FILE)", log.display());
    }
    let mut stopped = false;
    read_log(
        &log,
        &mut |record| {
            // Records from the stream's first seq on are printed from the stream instead.
            if stopped || stream_from.is_some_and(|seq| record.seq() >= seq) || !filter.matches(&record) {
                return;
            }
            stopped = out.print(&record).is_err();
        },
        &mut |error| eprintln!("enforcer events: skipping {error}"),
    )?;
    if stopped {
        return Ok(ExitCode::SUCCESS);
    }

    if let Some((mut client, _)) = live {
        while let Some(line) = client.next_line()? {
            let record: Record = match serde_json::from_str(&line) {
                Ok(record) => record,
                Err(e) => {
                    eprintln!("enforcer events: the daemon sent something that is not a record ({e}): {}", line.trim_end());
                    continue;
                }
            };
            if filter.matches(&record) && out.print(&record).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        return Err(ApiError::Closed).context("the daemon stopped the live stream");
    }
    Ok(ExitCode::SUCCESS)
}

struct Output<'a> {
    format: Format,
    color: bool,
    stdout: std::io::StdoutLock<'a>,
}

impl Output<'_> {
    /// Print one record; an error (reader went away: `| head`) ends the command quietly.
    fn print(&mut self, record: &Record) -> std::io::Result<()> {
        let line = match self.format {
            Format::Json => serde_json::to_string(record).expect("records always serialize"),
            Format::Text => format_record(record, self.color),
        };
        writeln!(self.stdout, "{line}")?;
        self.stdout.flush()
    }
}
