//! Per-operation cost, side by side in one run: every round measures each operation in the
//! baseline phase (programs unloaded) and in the loaded phase (programs attached), in the confined
//! agent and in a non-agent process. Phases alternate ABBA across rounds and the two workers
//! alternate within a phase, so the machine's noise (2 shared CPUs) hits every variant alike; a
//! ratio is taken per round and only then summarised.

use std::collections::BTreeMap;

use super::{
    fixture::{depth, Fixture},
    hooks::{BenchBackend, Hooks},
    stats::{median, Ratio, Spread},
    worker::{Op, Worker},
};

#[derive(Clone, Copy, Debug)]
pub struct MicroPlan {
    pub rounds: usize,
    /// Operations per batch for opens/sends; connects and execs are scaled down from it.
    pub batch: usize,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MicroRow {
    pub op: String,
    pub rules: usize,
    /// "confined agent" or "non-agent".
    pub variant: String,
    pub baseline: Spread,
    pub loaded: Spread,
    pub ratio: Ratio,
    /// What the loaded operation returned, e.g. "ok" or "EPERM x400".
    pub outcome: String,
    /// The ratio this row must stay under, if the issue sets one.
    pub target: Option<f64>,
}

struct Case {
    label: String,
    op: Op,
    batch: usize,
}

fn cases(f: &Fixture, plan: MicroPlan, all: bool) -> Vec<Case> {
    let open = |what: &str, path: &String| Case {
        label: format!("open+close {what}, {} components", depth(path)),
        op: Op::Open(path.clone()),
        batch: plan.batch,
    };
    let mut v = vec![
        open("allowed", &f.allow1),
        open("denied", &f.deny1),
        open("allowed", &f.allow16),
        open("denied", &f.deny16),
    ];
    if all {
        v.push(Case {
            label: "exec busybox true (spawn+wait)".into(),
            op: Op::Exec(f.busybox.clone()),
            batch: (plan.batch / 20).max(3),
        });
        v.push(Case {
            label: "TCP connect 127.0.0.1 (+close)".into(),
            op: Op::Tcp(f.tcp_port),
            batch: (plan.batch / 4).max(5),
        });
        v.push(Case {
            label: "UDP sendto 127.0.0.1".into(),
            op: Op::Udp(f.udp_port),
            batch: plan.batch,
        });
    }
    v
}

/// Samples of one (case, worker, phase) per round.
#[derive(Default)]
struct Cell {
    rounds: Vec<Vec<f64>>,
    errno: i32,
    failures: usize,
    ops: usize,
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        e if e < 0 => format!("killed by signal {}", -e),
        e => format!("errno {e}"),
    }
}

/// Runs the plan for each policy size; the first size gets every operation, the others the
/// opens (where the rule count matters).
pub fn run(
    backend: BenchBackend,
    sizes: &[usize],
    plan: MicroPlan,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<MicroRow>> {
    let fixture = Fixture::create()?;
    let mut hooks = Hooks::load(backend)?;
    let mut confined = Worker::spawn()?;
    let mut other = Worker::spawn()?;
    let mut rows = Vec::new();
    let mut registered = false;
    for (i, &rules) in sizes.iter().enumerate() {
        let policy = fixture.policy(rules)?;
        hooks.apply(&policy)?;
        log(&format!("{rules} rules compiled and loaded"));
        if !registered {
            let agent = policy.agent_by_name("bench").map(|a| a.id).unwrap_or(1);
            hooks.register(confined.pid, agent)?;
            registered = true;
        }
        let cases = cases(&fixture, plan, i == 0);
        // (case, worker 0 = confined / 1 = other, loaded?)
        let mut cells: BTreeMap<(usize, usize, bool), Cell> = BTreeMap::new();
        for round in 0..plan.rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for loaded in order {
                if loaded {
                    hooks.attach()?
                } else {
                    hooks.detach()?
                }
                for (c, case) in cases.iter().enumerate() {
                    let workers: [(usize, &mut Worker); 2] = if (round + c) % 2 == 0 {
                        [(0, &mut confined), (1, &mut other)]
                    } else {
                        [(1, &mut other), (0, &mut confined)]
                    };
                    for (w, worker) in workers {
                        let batch = worker.run(&case.op, case.batch)?;
                        let cell = cells.entry((c, w, loaded)).or_default();
                        if batch.errno != 0 && cell.errno == 0 {
                            cell.errno = batch.errno;
                        }
                        cell.failures += batch.failures;
                        cell.ops += batch.ns.len();
                        cell.rounds.push(batch.ns);
                    }
                }
            }
            log(&format!(
                "{} rules: round {}/{} done",
                rules,
                round + 1,
                plan.rounds
            ));
        }
        hooks.attach()?;
        for (c, case) in cases.iter().enumerate() {
            for (w, variant) in [(0, "confined agent"), (1, "non-agent")] {
                let base = &cells[&(c, w, false)];
                let load = &cells[&(c, w, true)];
                let pairs: Vec<(f64, f64)> = load
                    .rounds
                    .iter()
                    .zip(&base.rounds)
                    .map(|(l, b)| (median(l), median(b)))
                    .collect();
                let flat = |cell: &Cell| cell.rounds.concat();
                let outcome = match (load.failures, base.failures) {
                    (0, 0) => "ok".to_string(),
                    (n, 0) => format!("{} x{n}/{}", errno_name(load.errno), load.ops),
                    (n, m) => format!(
                        "{} x{n}/{} (baseline failed too: {} x{m})",
                        errno_name(load.errno),
                        load.ops,
                        errno_name(base.errno)
                    ),
                };
                let target = match (w, &case.op) {
                    (1, _) => Some(1.02),
                    (0, Op::Open(_)) if rules >= 100_000 => Some(1.15),
                    (0, Op::Exec(_) | Op::Tcp(_) | Op::Udp(_)) => Some(1.05),
                    _ => None,
                };
                rows.push(MicroRow {
                    op: case.label.clone(),
                    rules,
                    variant: variant.into(),
                    baseline: Spread::of(&flat(base)),
                    loaded: Spread::of(&flat(load)),
                    ratio: Ratio::of(&pairs),
                    outcome,
                    target,
                });
            }
        }
    }
    drop((confined, other));
    log(&format!(
        "ring buffer: {} events drained, {} lost",
        super::hooks::DRAINED.load(std::sync::atomic::Ordering::Relaxed),
        hooks.losses()
    ));
    Ok(rows)
}
