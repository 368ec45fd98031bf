//! Policy compile + load and reload time for 100,000 rules, and the daemon's resident memory
//! idle and holding 100,000 rules.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use enforcer::{
    kernel::{loaded, policy_maps, LoadOptions},
    policy::{compile, load_sources, ResolvedHosts},
};

use super::{daemon::BenchDaemon, report::verdict, stats::Spread};
use crate::synthetic::synthetic_policy;

pub const RULES: usize = 100_000;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CostReport {
    pub rules: usize,
    /// Parse + validate + compile, ms.
    pub compile_ms: Spread,
    /// Writing the compiled policy into fresh maps, ms.
    pub load_ms: Spread,
    /// Compile + load, ms (per repetition, then summarised).
    pub total_ms: Spread,
    /// Compile + write the other slot + flip + clear the old slot, ms.
    pub reload_ms: Spread,
    pub rss_idle_kb: Option<u64>,
    pub rss_rules_kb: Option<u64>,
    pub rss_error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn run(quick: bool, log: &mut dyn FnMut(&str)) -> anyhow::Result<CostReport> {
    let reps = if quick { 1 } else { 5 };
    let rules = if quick { 1_000 } else { RULES };
    let text = synthetic_policy(rules);
    let (mut compile_ms, mut load_ms, mut total_ms, mut reload_ms) =
        (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        // A fresh object each time: the first load writes into empty maps, as at daemon start.
        let mut ebpf = loaded::load_object(&LoadOptions::default(), None)?;
        let start = Instant::now();
        let set = load_sources(&[("bench.toml", &text)]).map_err(|d| anyhow::anyhow!("{d}"))?;
        let policy = compile(&set, &ResolvedHosts::new()).map_err(|d| anyhow::anyhow!("{d}"))?;
        let compiled = start.elapsed();
        policy_maps::apply(&mut ebpf, &policy, 1)?;
        let total = start.elapsed();
        let start = Instant::now();
        let set = load_sources(&[("bench.toml", &text)]).map_err(|d| anyhow::anyhow!("{d}"))?;
        let policy = compile(&set, &ResolvedHosts::new()).map_err(|d| anyhow::anyhow!("{d}"))?;
        policy_maps::apply(&mut ebpf, &policy, 2)?;
        let reload = start.elapsed();
        compile_ms.push(ms(compiled));
        load_ms.push(ms(total - compiled));
        total_ms.push(ms(total));
        reload_ms.push(ms(reload));
        log(&format!(
            "cost: {rules} rules rep {}: compile {:.0} ms, load {:.0} ms, reload {:.0} ms",
            rep + 1,
            ms(compiled),
            ms(total - compiled),
            ms(reload)
        ));
    }
    let (rss_idle_kb, rss_rules_kb, rss_error) = match rss(&text, log) {
        Ok((idle, full)) => (Some(idle), Some(full), None),
        Err(e) => (None, None, Some(format!("{e:#}"))),
    };
    Ok(CostReport {
        rules,
        compile_ms: Spread::of(&compile_ms),
        load_ms: Spread::of(&load_ms),
        total_ms: Spread::of(&total_ms),
        reload_ms: Spread::of(&reload_ms),
        rss_idle_kb,
        rss_rules_kb,
        rss_error,
    })
}

/// VmRSS of a daemon with a one-rule policy, then of one with `text` (settled for a second).
fn rss(text: &str, log: &mut dyn FnMut(&str)) -> anyhow::Result<(u64, u64)> {
    let idle = {
        let d = BenchDaemon::start(
            "rss-idle",
            &[(
                "idle.toml",
                "[agent]\nname = \"idle\"\n\n[file]\nread = [\"/srv/idle\"]\n",
            )],
        )?;
        std::thread::sleep(Duration::from_secs(1));
        d.rss_kb()?
    };
    let full = {
        let d = BenchDaemon::start("rss-rules", &[("bench.toml", text)])?;
        std::thread::sleep(Duration::from_secs(1));
        d.rss_kb()?
    };
    log(&format!(
        "cost: daemon RSS idle {idle} kB, with the policy {full} kB"
    ));
    Ok((idle, full))
}

impl CostReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let row = |s: &mut String, what: &str, v: &Spread, target: &str| {
            let _ = writeln!(
                s,
                "| {what} | {:.0} ({:.0}-{:.0}) ms, {} runs | {target} |",
                v.median, v.p10, v.p90, v.n
            );
        };
        s.push_str("| policy cost | median (p10-p90) | target |\n| --- | ---: | --- |\n");
        let n = self.rules;
        row(
            &mut s,
            &format!("compile {n} rules (parse, validate, compile)"),
            &self.compile_ms,
            "-",
        );
        row(
            &mut s,
            &format!("load {n} rules into fresh maps"),
            &self.load_ms,
            "-",
        );
        row(
            &mut s,
            &format!("compile + load {n} rules"),
            &self.total_ms,
            &format!("< 1000 ms: {}", verdict(self.total_ms.median, 999.999)),
        );
        row(
            &mut s,
            &format!("reload {n} rules (compile, fill other slot, flip, clear old slot)"),
            &self.reload_ms,
            "-",
        );
        match (self.rss_idle_kb, self.rss_rules_kb, &self.rss_error) {
            (Some(idle), Some(full), _) => {
                let _ = writeln!(
                    s,
                    "| daemon RSS, idle (one 1-rule agent) | {:.1} MB | - |",
                    idle as f64 / 1024.0
                );
                let _ = writeln!(
                    s,
                    "| daemon RSS, {n} rules loaded | {:.1} MB | < 64 MB: {} |",
                    full as f64 / 1024.0,
                    verdict(full as f64, 64.0 * 1024.0)
                );
            }
            (_, _, Some(e)) => {
                let _ = writeln!(
                    s,
                    "| daemon RSS | not measured: {} | < 64 MB: **not measured** |",
                    e.replace('|', "/").replace('\n', " ")
                );
            }
            _ => {}
        }
        s
    }
}
