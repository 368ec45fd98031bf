//! Peers, side by side: the enforcer, auditd and AppArmor measured on the same operations of
//! the same two worker processes, in the same rounds, against the same baseline. Each round runs
//! every phase once (the order reverses every other round, so drift hits all phases alike):
//!
//! - baseline: no enforcer program, no audit rule, no AppArmor profile;
//! - enforcer: the benchmark's 10-rule policy with its default logging (denials, execs,
//!   connects), every event written to a JSON-lines audit log as the daemon does;
//! - enforcer, every decision logged: the same with `log.file_allow`, so allowed opens are
//!   logged too: the same audit coverage as the auditd rule;
//! - auditd: auditd running with one rule logging the measured worker's open/exec/connect/send
//!   syscalls ([`super::auditd`]);
//! - AppArmor: the measured worker confined by a profile with the policy's file and exec rules
//!   ([`super::apparmor`]).
//!
//! The measured worker is at once the enforcer's agent (programs attached only in its phases),
//! the audited process (rule loaded only in auditd's) and AppArmor-confined (only in AppArmor's).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
};

use anyhow::{bail, Context as _};

use super::{
    apparmor::{self, AppArmor},
    auditd::{self, AuditTools},
    fixture::{depth, Fixture},
    hooks::{BenchBackend, Hooks},
    micro::MicroPlan,
    report::verdict,
    stats::{median, Ratio},
    worker::{Op, Worker},
};

/// The policy size of the side-by-side run: the benchmark's own rules plus a few generated ones.
pub const RULES: usize = 10;

/// Where the peers' programs are (unpacked Debian packages); a missing one is reported as not
/// measured, with the reason.
#[derive(Clone, Debug, Default)]
pub struct PeerTools {
    pub audit_root: Option<PathBuf>,
    pub apparmor_parser: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    Baseline,
    Enforcer,
    EnforcerLogAll,
    Auditd,
    AppArmor,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Enforcer => "enforcer",
            Phase::EnforcerLogAll => "enforcer, every decision logged",
            Phase::Auditd => "auditd (rule for the measured process)",
            Phase::AppArmor => "AppArmor (profile with the same file rules)",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PeerCell {
    pub ratio: Ratio,
    /// "ok" or e.g. "EACCES x2000/2000".
    pub outcome: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    pub op: String,
    /// The measured process (agent / audited / confined) or the other one.
    pub measured: bool,
    /// Open or exec: decided by file rules, which AppArmor expresses alike.
    pub file_rule: bool,
    /// The enforcer logs this operation when every decision is logged (auditd's coverage).
    pub logged: bool,
    /// One per phase after the baseline, in [`PeerReport::phases`] order.
    pub cells: Vec<PeerCell>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerReport {
    /// The phases measured after the baseline.
    pub phases: Vec<Phase>,
    pub rows: Vec<PeerRow>,
    /// (peer, why it was not measured).
    pub missing: Vec<(String, String)>,
    /// What each logging phase wrote, to show the coverage is the same.
    pub coverage: Vec<String>,
    /// The AppArmor profile that was measured.
    pub profile: Option<String>,
    /// The side-by-side run failed as a whole.
    pub error: Option<String>,
}

struct Case {
    label: String,
    op: Op,
    batch: usize,
    file_rule: bool,
    /// The enforcer logs this operation's decision (by default / with `log.file_allow`). It
    /// never logs an allowed send (emit.rs `should_log`), which auditd's rule does log.
    logged: (bool, bool),
}

fn cases(f: &Fixture, plan: MicroPlan) -> Vec<Case> {
    let open = |what: &str, path: &String| Case {
        label: format!("open+close {what}, {} components", depth(path)),
        op: Op::Open(path.clone()),
        batch: plan.batch,
        file_rule: true,
        logged: (what == "denied", true),
    };
    vec![
        open("allowed", &f.allow1),
        open("denied", &f.deny1),
        open("allowed", &f.allow16),
        open("denied", &f.deny16),
        Case {
            label: "exec busybox true (spawn+wait)".into(),
            op: Op::Exec(f.busybox.clone()),
            batch: (plan.batch / 20).max(3),
            file_rule: true,
            logged: (true, true),
        },
        Case {
            label: "TCP connect 127.0.0.1 (+close)".into(),
            op: Op::Tcp(f.tcp_port),
            batch: (plan.batch / 4).max(5),
            file_rule: false,
            logged: (true, true),
        },
        Case {
            label: "UDP sendto 127.0.0.1".into(),
            op: Op::Udp(f.udp_port),
            batch: plan.batch,
            file_rule: false,
            logged: (false, false),
        },
    ]
}

/// Samples of one (phase, case, worker).
#[derive(Clone, Default)]
struct Cell {
    /// Per-round medians.
    rounds: Vec<f64>,
    errno: i32,
    failures: usize,
    ops: usize,
}

fn outcome(cell: &Cell) -> String {
    let name = match cell.errno {
        libc::EPERM => "EPERM".to_string(),
        libc::EACCES => "EACCES".to_string(),
        e if e < 0 => format!("killed by signal {}", -e),
        e => format!("errno {e}"),
    };
    if cell.failures == 0 {
        "ok".into()
    } else {
        format!("{name} x{}/{}", cell.failures, cell.ops)
    }
}

/// The peers set up for the run.
struct Peers<'a> {
    hooks: Hooks,
    quiet: enforcer::policy::CompiledPolicy,
    all: enforcer::policy::CompiledPolicy,
    audit: Option<&'a AuditTools>,
    apparmor: Option<&'a AppArmor>,
}

/// What is switched on for one phase, switched off again by [`Peers::leave`].
enum Active<'a> {
    Nothing,
    Audit(auditd::Running<'a>),
}

impl<'a> Peers<'a> {
    fn enter(&mut self, phase: Phase, measured: &mut Worker) -> anyhow::Result<Active<'a>> {
        match phase {
            Phase::Baseline => {}
            Phase::Enforcer | Phase::EnforcerLogAll => {
                self.hooks.apply(if phase == Phase::Enforcer {
                    &self.quiet
                } else {
                    &self.all
                })?;
                self.hooks.attach()?;
            }
            Phase::Auditd => return Ok(Active::Audit(self.audit.context("no auditd")?.start()?)),
            Phase::AppArmor => {
                let aa = self.apparmor.context("no AppArmor")?;
                aa.load()?;
                measured.change_profile(apparmor::PROFILE)?;
                let label = measured.apparmor_label()?;
                if label != format!("{} (enforce)", apparmor::PROFILE) {
                    bail!("the measured worker's AppArmor label is `{label}`, not the benchmark profile in enforce mode");
                }
            }
        }
        Ok(Active::Nothing)
    }

    fn leave(&mut self, phase: Phase, active: Active<'a>, measured: &Worker) -> anyhow::Result<()> {
        match (phase, active) {
            (Phase::Enforcer | Phase::EnforcerLogAll, _) => self.hooks.detach()?,
            (Phase::Auditd, Active::Audit(running)) => running.stop()?,
            (Phase::AppArmor, _) => {
                self.apparmor.context("no AppArmor")?.remove()?;
                let label = measured.apparmor_label()?;
                if label != "unconfined" {
                    bail!("the measured worker is still `{label}` after the profile was removed");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

pub fn run(
    backend: BenchBackend,
    tools: &PeerTools,
    plan: MicroPlan,
    log: &mut dyn FnMut(&str),
) -> PeerReport {
    let dir = std::env::temp_dir().join(format!("enforcer-bench-peers-{}", std::process::id()));
    let report = measure(backend, tools, plan, &dir, log).unwrap_or_else(|e| PeerReport {
        error: Some(format!("{e:#}")),
        ..PeerReport::default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    report
}

fn measure(
    backend: BenchBackend,
    tools: &PeerTools,
    plan: MicroPlan,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<PeerReport> {
    std::fs::create_dir_all(dir)?;
    let fixture = Fixture::create()?;
    let quiet = fixture.policy_logging(RULES, false)?;
    let all = fixture.policy_logging(RULES, true)?;
    let agent = quiet
        .agent_by_name("bench")
        .map(|a| a.id)
        .context("the benchmark policy has no agent `bench`")?;
    let mut report = PeerReport::default();

    let audit = match &tools.audit_root {
        None => {
            report.missing.push(("auditd".into(), "no --audit-root given (cargo xtask bench unpacks Debian's auditd package and passes it)".into()));
            None
        }
        Some(root) => {
            match AuditTools::new(root, &dir.join("auditd")).and_then(|t| t.prime().map(|()| t)) {
                Ok(t) => Some(t),
                Err(e) => {
                    report.missing.push(("auditd".into(), format!("{e:#}")));
                    None
                }
            }
        }
    };
    let profile = apparmor::profile(&quiet, agent);
    let apparmor = match (&tools.apparmor_parser, &profile) {
        (None, _) => {
            report.missing.push(("AppArmor".into(), "no --apparmor-parser given (cargo xtask bench measures AppArmor in the VM kernel booted with it)".into()));
            None
        }
        (Some(_), Err(e)) => {
            report.missing.push(("AppArmor".into(), format!("{e:#}")));
            None
        }
        (Some(parser), Ok(text)) => match AppArmor::new(parser, dir, text) {
            Ok(a) => Some(a),
            Err(e) => {
                report.missing.push(("AppArmor".into(), format!("{e:#}")));
                None
            }
        },
    };

    let log_file = dir.join("enforcer-audit.jsonl");
    let mut peers = Peers {
        hooks: Hooks::load_logging(backend, &log_file)?,
        quiet,
        all,
        audit: None,
        apparmor: None,
    };
    peers.hooks.detach()?;
    // Started after auditing was primed, so both carry an audit context in every phase.
    let mut measured = Worker::spawn()?;
    let mut other = Worker::spawn()?;
    peers.hooks.register(measured.pid, agent)?;
    let mut phases = vec![Phase::Baseline, Phase::Enforcer, Phase::EnforcerLogAll];

    // Each peer runs its phase once before the rounds: one that cannot is reported, not fatal.
    if let Some(t) = &audit {
        let tried = measured
            .set_loginuid(auditd::AUID)
            .and_then(|()| t.start()?.stop());
        match tried {
            Ok(()) => {
                peers.audit = Some(t);
                phases.push(Phase::Auditd);
            }
            Err(e) => report.missing.push(("auditd".into(), format!("{e:#}"))),
        }
    }
    if let Some(a) = &apparmor {
        peers.apparmor = Some(a);
        let tried = peers
            .enter(Phase::AppArmor, &mut measured)
            .and_then(|active| peers.leave(Phase::AppArmor, active, &measured));
        match tried {
            Ok(()) => {
                phases.push(Phase::AppArmor);
                report.profile = profile.ok();
            }
            Err(e) => {
                let _ = a.remove();
                peers.apparmor = None;
                report.missing.push(("AppArmor".into(), format!("{e:#}")));
            }
        }
    }
    let audit_lost_before = peers
        .audit
        .map(|t| t.status().map(|s| s.lost))
        .transpose()?;
    let audit_records_before = peers.audit.map(AuditTools::records).unwrap_or(0);

    let cases = cases(&fixture, plan);
    // [phase][case][worker 0 = measured, 1 = other]
    let mut cells = vec![vec![[Cell::default(), Cell::default()]; cases.len()]; phases.len()];
    for round in 0..plan.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..phases.len()).collect()
        } else {
            (0..phases.len()).rev().collect()
        };
        for p in order {
            let active = peers
                .enter(phases[p], &mut measured)
                .with_context(|| format!("entering the {} phase", phases[p].label()))?;
            for (c, case) in cases.iter().enumerate() {
                let workers: [(usize, &mut Worker); 2] = if (round + c) % 2 == 0 {
                    [(0, &mut measured), (1, &mut other)]
                } else {
                    [(1, &mut other), (0, &mut measured)]
                };
                for (w, worker) in workers {
                    let batch = worker.run(&case.op, case.batch)?;
                    let cell = &mut cells[p][c][w];
                    if batch.errno != 0 && cell.errno == 0 {
                        cell.errno = batch.errno;
                    }
                    cell.failures += batch.failures;
                    cell.ops += batch.ns.len();
                    cell.rounds.push(median(&batch.ns));
                }
            }
            peers
                .leave(phases[p], active, &measured)
                .with_context(|| format!("leaving the {} phase", phases[p].label()))?;
        }
        log(&format!(
            "peers: round {}/{} done ({})",
            round + 1,
            plan.rounds,
            phases
                .iter()
                .map(|p| p.label())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    drop((measured, other));

    let ops_per_phase: usize = cases.iter().map(|c| c.batch).sum::<usize>() * plan.rounds;
    let logged = |all: bool| {
        cases
            .iter()
            .filter(|c| if all { c.logged.1 } else { c.logged.0 })
            .map(|c| c.batch)
            .sum::<usize>()
            * plan.rounds
    };
    // The drain empties the ring once more before it stops: every event is counted by now.
    peers.hooks.stop_drain()?;
    report.coverage.push(format!(
        "enforcer: {} audit records written to its JSON-lines log and {} lost (counted in the kernel), for {} logged decisions expected: {} in the \"every decision logged\" phases (all {ops_per_phase} operations of the measured process but its allowed UDP sends) and {} in the default-logging phases (nor its allowed opens)",
        super::hooks::WRITTEN.load(Ordering::Relaxed),
        peers.hooks.losses(),
        logged(true) + logged(false),
        logged(true),
        logged(false),
    ));
    if let (Some(t), Some(before)) = (peers.audit, audit_lost_before) {
        let lost = t.status()?.lost.saturating_sub(before);
        report.coverage.push(format!(
            "auditd: {} SYSCALL records for the measured process in its log, {lost} lost (the kernel's `lost` counter), for {ops_per_phase} operations in its phases (one audited syscall each)",
            t.records() - audit_records_before
        ));
    }

    report.phases = phases[1..].to_vec();
    for (c, case) in cases.iter().enumerate() {
        for (w, base) in cells[0][c].iter().enumerate() {
            let row_cells = (1..phases.len())
                .map(|p| {
                    let cell = &cells[p][c][w];
                    let pairs: Vec<(f64, f64)> = cell
                        .rounds
                        .iter()
                        .copied()
                        .zip(base.rounds.iter().copied())
                        .collect();
                    PeerCell {
                        ratio: Ratio::of(&pairs),
                        outcome: outcome(cell),
                    }
                })
                .collect();
            report.rows.push(PeerRow {
                op: case.label.clone(),
                measured: w == 0,
                file_rule: case.file_rule,
                logged: case.logged.1,
                cells: row_cells,
            });
        }
    }
    Ok(report)
}

impl PeerReport {
    fn cell<'r>(&self, row: &'r PeerRow, phase: Phase) -> Option<&'r PeerCell> {
        self.phases
            .iter()
            .position(|p| *p == phase)
            .and_then(|i| row.cells.get(i))
    }

    pub fn table(&self) -> String {
        let mut s = String::from("#### Peers, side by side\n\n");
        if let Some(e) = &self.error {
            let _ = writeln!(s, "Peers: **not measured**: {}\n", e.replace('\n', " "));
            return s;
        }
        let audit = self.phases.contains(&Phase::Auditd);
        let aa = self.phases.contains(&Phase::AppArmor);
        s.push_str("| operation | process |");
        for p in &self.phases {
            let _ = write!(s, " {} |", p.label());
        }
        if audit {
            s.push_str(" our overhead / auditd's, same audit coverage (target <= 0.33) |");
        }
        if aa {
            s.push_str(" enforcer vs AppArmor, same file rules (target: no worse) |");
        }
        s.push_str("\n| --- | --- |");
        for _ in &self.phases {
            s.push_str(" ---: |");
        }
        s.push_str(if audit { " --- |" } else { "" });
        s.push_str(if aa { " --- |" } else { "" });
        s.push('\n');
        let (mut audit_met, mut audit_rows, mut aa_met, mut aa_rows) = (0, 0, 0, 0);
        for row in &self.rows {
            let _ = write!(
                s,
                "| {} | {} |",
                row.op,
                if row.measured {
                    "measured (agent / audited / confined)"
                } else {
                    "other process"
                }
            );
            for c in &row.cells {
                let r = &c.ratio;
                let _ = write!(
                    s,
                    " {:.3}x ({:.3}-{:.3}){} |",
                    r.median,
                    r.min,
                    r.max,
                    if c.outcome == "ok" {
                        String::new()
                    } else {
                        format!(", {}", c.outcome)
                    }
                );
            }
            if audit {
                let verdict_text = match (
                    row.measured,
                    self.cell(row, Phase::EnforcerLogAll),
                    self.cell(row, Phase::Auditd),
                ) {
                    (true, Some(ours), Some(theirs)) if row.logged && theirs.ratio.median > 1.0 => {
                        let share =
                            (ours.ratio.median - 1.0).max(0.0) / (theirs.ratio.median - 1.0);
                        audit_rows += 1;
                        let v = verdict(share, 1.0 / 3.0);
                        if v == "met" {
                            audit_met += 1;
                        }
                        format!("{share:.2}: {v}")
                    }
                    (true, Some(_), Some(_)) if !row.logged => {
                        "- (the enforcer does not log allowed sends: not the same coverage)".into()
                    }
                    (true, Some(_), Some(_)) => "auditd shows no overhead: not comparable".into(),
                    _ => "-".into(),
                };
                let _ = write!(s, " {verdict_text} |");
            }
            if aa {
                let verdict_text = match (
                    row.measured,
                    row.file_rule,
                    self.cell(row, Phase::Enforcer),
                    self.cell(row, Phase::AppArmor),
                ) {
                    (true, true, Some(ours), Some(theirs)) => {
                        aa_rows += 1;
                        let v = verdict(ours.ratio.median, theirs.ratio.median);
                        if v == "met" {
                            aa_met += 1;
                        }
                        format!(
                            "{:.3}x vs {:.3}x: {v}",
                            ours.ratio.median, theirs.ratio.median
                        )
                    }
                    (true, false, _, _) => "- (AppArmor cannot match addresses)".into(),
                    _ => "-".into(),
                };
                let _ = write!(s, " {verdict_text} |");
            }
            s.push('\n');
        }
        s.push('\n');
        if audit {
            let _ = writeln!(s, "Target \"at most a third of auditd's overhead for the same audit coverage\": {} ({audit_met} of {audit_rows} comparable operations).\n", if audit_met == audit_rows && audit_rows > 0 { "met" } else { "**missed**" });
        }
        if aa {
            let _ = writeln!(s, "Target \"no worse than AppArmor for the same file rules\": {} ({aa_met} of {aa_rows} open/exec operations).\n", if aa_met == aa_rows && aa_rows > 0 { "met" } else { "**missed**" });
        }
        for line in &self.coverage {
            let _ = writeln!(s, "- Coverage: {line}.");
        }
        for (peer, why) in &self.missing {
            let _ = writeln!(
                s,
                "- {peer}: **not measured** here: {}.",
                why.trim_end_matches('.').replace('\n', " ")
            );
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(s, "\nThe AppArmor profile measured (generated from the agent's compiled rules):\n\n```\n{}```", p);
        }
        s
    }
}
