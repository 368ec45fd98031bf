//! The benchmark's results as Markdown: one section per run (backend + kernel), each table row
//! marked met/missed against the targets. `cargo xtask bench` pastes these sections
//! into docs/benchmarks.md.

use std::fmt::Write as _;

use super::{
    cost::CostReport, micro::MicroRow, peers::PeerReport, pipeline::PipelineReport, stats::Spread,
};

/// `cargo xtask bench` finds the sections between these lines in mixed console output.
pub const BEGIN: &str = "@@ENFORCER-BENCH-BEGIN@@";
pub const END: &str = "@@ENFORCER-BENCH-END@@";

fn ns(s: &Spread) -> String {
    let f = |v: f64| {
        if v >= 100_000.0 {
            format!("{:.0}", v / 1000.0) + "k"
        } else {
            format!("{v:.0}")
        }
    };
    format!("{} ({}-{})", f(s.median), f(s.p10), f(s.p90))
}

pub fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target {
        "met"
    } else {
        "**missed**"
    }
}

pub fn micro_table(rows: &[MicroRow]) -> String {
    let mut s = String::new();
    s.push_str("| operation | rules | process | baseline ns, median (p10-p90) | with enforcer ns, median (p10-p90) | ratio, median of rounds (min-max) | result with enforcer | target |\n");
    s.push_str("| --- | ---: | --- | ---: | ---: | ---: | --- | --- |\n");
    for r in rows {
        let target = match r.target {
            Some(t) => format!("<= {t:.2}x: {}", verdict(r.ratio.median, t)),
            None => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3}x ({:.3}-{:.3}) | {} | {} |",
            r.op,
            r.rules,
            r.variant,
            ns(&r.baseline),
            ns(&r.loaded),
            r.ratio.median,
            r.ratio.min,
            r.ratio.max,
            r.outcome,
            target
        );
    }
    s
}

pub struct Section<'a> {
    pub title: String,
    pub notes: Vec<String>,
    pub micro: Option<&'a [MicroRow]>,
    pub cost: Option<&'a CostReport>,
    pub pipeline: Option<&'a PipelineReport>,
    pub peers: Option<&'a PeerReport>,
}

pub fn render(section: &Section<'_>) -> String {
    let mut s = format!("### {}\n\n", section.title);
    for n in &section.notes {
        let _ = writeln!(s, "> {n}\n");
    }
    if let Some(rows) = section.micro {
        s.push_str(&micro_table(rows));
        s.push('\n');
    }
    if let Some(cost) = section.cost {
        s.push_str(&cost.table());
        s.push('\n');
    }
    if let Some(p) = section.pipeline {
        s.push_str(&p.table());
        s.push('\n');
    }
    if let Some(p) = section.peers {
        s.push_str(&p.table());
        s.push('\n');
    }
    s
}
