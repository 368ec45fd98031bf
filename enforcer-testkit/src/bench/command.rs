//! `enforcer-testkit bench` and `bench-worker`: the measurement side of
//! `cargo xtask bench` (see docs/benchmarks.md). Needs root, like the daemon.

use std::process::ExitCode;

use crate::bench::{self, hooks::BenchBackend, micro::MicroPlan, report};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which kernel programs to measure.
    #[arg(long, value_enum)]
    pub backend: BenchBackend,
    /// A few iterations only: proves the benchmark works, its figures mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Skip the per-operation benchmark.
    #[arg(long)]
    pub no_micro: bool,
    /// Also measure policy compile/load/reload time and daemon RSS.
    #[arg(long)]
    pub cost: bool,
    /// Also measure the event pipeline (kernel -> audit log) with this daemon binary's daemon.
    #[arg(long)]
    pub pipeline: bool,
    /// Also compare, side by side, with auditd logging the same syscalls (--audit-root) and
    /// AppArmor enforcing the same file rules (--apparmor-parser); a peer without its tools is
    /// reported as not measured, with the reason.
    #[arg(long)]
    pub peers: bool,
    /// Where Debian's auditd, libauparse0 and libwrap0 packages are unpacked (dpkg-deb -x).
    #[arg(long, value_name = "DIR")]
    pub audit_root: Option<std::path::PathBuf>,
    /// Debian's apparmor_parser (the kernel must run AppArmor: `apparmor` in `lsm=`).
    #[arg(long, value_name = "FILE")]
    pub apparmor_parser: Option<std::path::PathBuf>,
    /// Policy sizes (rules) for the open benchmark; the first also runs exec/connect/sendto.
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 1_000, 10_000, 100_000])]
    pub sizes: Vec<usize>,
    /// Notes printed under the section title (where this runs: host, QEMU TCG...).
    #[arg(long)]
    pub note: Vec<String>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    // --quick: one round of the smallest policy; proves every part runs, measures nothing.
    let plan = if args.quick {
        MicroPlan {
            rounds: 1,
            batch: 20,
        }
    } else {
        MicroPlan {
            rounds: 5,
            batch: 400,
        }
    };
    let sizes = if args.quick {
        &args.sizes[..1]
    } else {
        &args.sizes[..]
    };
    let started = std::time::Instant::now();
    let mut log = |m: &str| eprintln!("bench [{:>5.1} s]: {m}", started.elapsed().as_secs_f64());
    let micro = if args.no_micro {
        None
    } else {
        Some(bench::micro::run(args.backend, sizes, plan, &mut log)?)
    };
    let cost = if args.cost {
        Some(bench::cost::run(args.quick, &mut log)?)
    } else {
        None
    };
    let pipeline = if args.pipeline {
        Some(bench::pipeline::run(args.quick, &mut log)?)
    } else {
        None
    };
    let tools = bench::peers::PeerTools {
        audit_root: args.audit_root.clone(),
        apparmor_parser: args.apparmor_parser.clone(),
    };
    // Twice the rounds: the peers' phases share each round, so this costs no more per phase,
    // and the exec and connect medians need them on a busy machine.
    let peer_plan = MicroPlan {
        rounds: plan.rounds * 2,
        ..plan
    };
    let peers = if args.peers {
        Some(bench::peers::run(args.backend, &tools, peer_plan, &mut log))
    } else {
        None
    };
    let title = format!(
        "{} backend, kernel {}",
        args.backend.label(),
        enforcer::kernel::kernel_release()
    );
    let text = report::render(&report::Section {
        title,
        notes: args.note.clone(),
        micro: micro.as_deref(),
        cost: cost.as_ref(),
        pipeline: pipeline.as_ref(),
        peers: peers.as_ref(),
    });
    println!("{}\n{text}{}", report::BEGIN, report::END);
    Ok(ExitCode::SUCCESS)
}

pub fn run_worker() -> anyhow::Result<ExitCode> {
    bench::worker::serve()?;
    Ok(ExitCode::SUCCESS)
}
