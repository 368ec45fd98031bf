//! `enforcer learn`: write a least-privilege policy for one agent from an audit log recorded in
//! audit mode (docs/lifecycle.md). The policy is checked before it is written: it compiles, it
//! allows every observed operation and denies the sensitive ones.
//! Exit status: 0 written, 2 error (nothing written).

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{bail, Context as _};

use crate::{
    audit::{clock, filter::parse_since, text::escape},
    lifecycle::{
        collapse::CollapseOptions,
        describe, for_each_event,
        learn::{learn, LearnOptions, Observations},
        probe::read_sets,
        LogSource,
    },
};

#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// The agent to learn (its events in the log).
    #[arg(long, value_name = "NAME")]
    pub agent: String,
    /// Audit log files, read in the order given (repeatable: name rotated files oldest first).
    #[arg(long = "log", value_name = "FILE", required = true)]
    pub log: Vec<PathBuf>,
    /// Only events at or after this time: RFC 3339 or a duration ago (10m, 2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Write the policy here [default: standard output].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Permission sets the policy may include, by name [default: /etc/enforcer/policies/sets].
    #[arg(long, value_name = "DIR")]
    pub sets: Option<PathBuf>,
    /// Never grant a whole directory with fewer components than this (`/work/project` has 2).
    #[arg(long, value_name = "N", default_value_t = CollapseOptions::default().min_depth)]
    pub min_depth: usize,
    /// Grant a whole directory (`/dir/**`) once this many distinct paths were seen below it.
    #[arg(long, value_name = "N", default_value_t = CollapseOptions::default().min_paths)]
    pub collapse_at: usize,
}

pub fn run(args: LearnArgs) -> anyhow::Result<ExitCode> {
    let since_ns = args
        .since
        .as_deref()
        .map(|s| parse_since(s, clock::now_ns()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let source = LogSource::Files(args.log.clone());
    let mut obs = Observations::new(&args.agent, since_ns);
    for_each_event(&source, &mut |e| obs.add(e), &mut |e| {
        eprintln!("enforcer learn: skipping {}", escape(&e.to_string()))
    })?;

    let sets = match &args.sets {
        Some(dir) => read_sets(dir)
            .with_context(|| format!("reading permission sets in {}", dir.display()))?,
        None => {
            let dir = PathBuf::from(crate::paths::POLICY_DIR).join("sets");
            read_sets(&dir).unwrap_or_else(|_| {
                eprintln!(
                    "enforcer learn: no permission sets at {} (use --sets DIR): none included",
                    dir.display()
                );
                Vec::new()
            })
        }
    };
    let opts = LearnOptions {
        collapse: CollapseOptions {
            min_depth: args.min_depth,
            min_paths: args.collapse_at.max(1),
        },
        sets,
        source: describe(&source),
    };
    let learned = learn(&obs, &opts)?;
    if !learned.mismatches.is_empty() {
        bail!(
            "the learned policy does not decide what was observed (a bug in `learn`; nothing written):\n  {}",
            learned.mismatches.join("\n  ")
        );
    }
    match &args.out {
        Some(path) => std::fs::write(path, &learned.text)
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(learned.text.as_bytes())?,
    }
    eprintln!(
        "enforcer learn: {} events of {}, {} distinct operations; includes: {}; {} sensitive \
         operations denied, not granted; checked: the policy compiles and decides all {} as observed",
        obs.events,
        args.agent,
        obs.seen.len(),
        if learned.includes.is_empty() { "none".to_owned() } else { learned.includes.join(", ") },
        learned.sensitive,
        learned.verified,
    );
    for item in &learned.inexpressible {
        eprintln!(
            "enforcer learn: not granted (no rule can express it): {}",
            escape(item)
        );
    }
    Ok(ExitCode::SUCCESS)
}
