//! `enforcer events`: read the audit log (rotated files included, oldest first), filter it, and
//! with `--follow` continue with the daemon's live stream, without gap or repeat (the stream
//! starts at a sequence number; older records come from the files).

use std::{
    io::{IsTerminal as _, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{bail, Context as _};

use crate::{
    api::{
        client::{socket_path, ApiClient},
        ApiError, Request, Response,
    },
    audit::{
        clock,
        filter::{parse_since, Filter},
        reader::{read_log, rotated_files},
        text::{escape, format_record},
        verify::verify_log,
        Record,
    },
    paths,
};

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
    /// Check the hash chain of the log (PATH, else --log's) and its rotated files instead of
    /// printing: prints the first broken or missing record (file:line, seq) and exits 1, or a
    /// one-line summary and exits 0 (docs/events.md, "Hash chain").
    #[arg(long, value_name = "PATH", num_args = 0..=1, conflicts_with = "follow")]
    pub verify: Option<Option<PathBuf>>,
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        agents: args.agent.clone(),
        verdicts: args.verdict.clone(),
        ops: args.op.clone(),
        since_ns: args
            .since
            .as_deref()
            .map(|s| parse_since(s, clock::now_ns()))
            .transpose()
            .map_err(anyhow::Error::msg)?,
        session: args.session.clone(),
    };
    filter.validate().map_err(anyhow::Error::msg)?;
    let color = args.format == Format::Text
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let mut out = Output {
        format: args.format,
        color,
        stdout: std::io::stdout().lock(),
    };

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
    let log = args
        .log
        .clone()
        .or(daemon_log)
        .unwrap_or_else(|| PathBuf::from(paths::AUDIT_LOG));
    if let Some(path) = &args.verify {
        return verify(path.as_ref().unwrap_or(&log));
    }

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
    // Records before the stream's first seq come from the files, the rest from the stream.
    if !print_log(&log, &filter, &mut out, 0, stream_from.unwrap_or(u64::MAX))? {
        return Ok(ExitCode::SUCCESS);
    }
    let Some((mut client, mut next_seq)) = live else {
        return Ok(ExitCode::SUCCESS);
    };
    loop {
        match follow(&mut client, &filter, &mut out)? {
            Followed::ReaderGone => return Ok(ExitCode::SUCCESS),
            Followed::Closed { last_seq } => next_seq = last_seq.map_or(next_seq, |s| s + 1),
        }
        eprintln!("enforcer events: the daemon closed the live stream; reconnecting");
        let (new_client, stream_from) = resubscribe(&socket);
        // What the daemon wrote while this command was not subscribed is in the log.
        if !print_log(&log, &filter, &mut out, next_seq, stream_from)? {
            return Ok(ExitCode::SUCCESS);
        }
        client = new_client;
        next_seq = stream_from;
    }
}

/// Print the log's records with `from <= seq < until` that pass the filter. False when the
/// reader of our output went away.
/// `--verify`: exit 0 and a summary when the chain holds, 1 and the first failure when not.
fn verify(log: &std::path::Path) -> anyhow::Result<ExitCode> {
    if !log.exists() && rotated_files(log).is_empty() {
        bail!("no audit log at {}", log.display());
    }
    match verify_log(log)? {
        Ok(intact) => {
            println!("{}: {}", escape(&log.display().to_string()), intact);
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("BROKEN {}", escape(&broken.to_string()));
            Ok(ExitCode::from(1))
        }
    }
}

fn print_log(
    log: &std::path::Path,
    filter: &Filter,
    out: &mut Output<'_>,
    from: u64,
    until: u64,
) -> anyhow::Result<bool> {
    let mut reader_gone = false;
    if from >= until || !log.exists() {
        return Ok(true);
    }
    read_log(
        log,
        &mut |record| {
            if reader_gone || !(from..until).contains(&record.seq()) || !filter.matches(&record) {
                return;
            }
            reader_gone = out.print(&record).is_err();
        },
        &mut |error| eprintln!("enforcer events: skipping {}", escape(&error.to_string())),
    )?;
    Ok(!reader_gone)
}

enum Followed {
    ReaderGone,
    /// The daemon closed the stream (stopped or restarting); the last seq it sent.
    Closed {
        last_seq: Option<u64>,
    },
}

fn follow(
    client: &mut ApiClient,
    filter: &Filter,
    out: &mut Output<'_>,
) -> anyhow::Result<Followed> {
    let mut last_seq = None;
    loop {
        let line = match client.next_line() {
            Ok(Some(line)) => line,
            Ok(None) | Err(ApiError::Io { .. }) => return Ok(Followed::Closed { last_seq }),
            Err(e) => return Err(e.into()),
        };
        let record: Record = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(e) => {
                eprintln!(
                    "enforcer events: the daemon sent something that is not a record ({}): {}",
                    escape(&e.to_string()),
                    escape(line.trim_end())
                );
                continue;
            }
        };
        // `lost` notices of a lagging stream carry no seq of their own.
        if record.seq() != 0 {
            last_seq = Some(record.seq());
        }
        if filter.matches(&record) && out.print(&record).is_err() {
            return Ok(Followed::ReaderGone);
        }
    }
}

/// Connect and subscribe again, waiting as long as it takes (the daemon restarts).
fn resubscribe(socket: &std::path::Path) -> (ApiClient, u64) {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Ok(mut client) = ApiClient::connect(socket) else {
            continue;
        };
        if let Ok(Response::Subscribed { next_seq }) = client.call(&Request::Subscribe {}) {
            eprintln!("enforcer events: following again");
            return (client, next_seq);
        }
    }
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
