//! Synthetic policies: one agent with many rules, for `cargo xtask bench` and the
//! `policy_compile_bench` example.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use enforcer::policy::{compile, load_sources, ResolvedHosts};

/// Rules a caller needs in the synthetic policy besides the generated mix (the runtime
/// benchmark's own allowed file, program and loopback ports). They count towards `rules`.
#[derive(Clone, Debug, Default)]
pub struct ExtraRules {
    pub read: Vec<String>,
    pub exec: Vec<String>,
    pub connect: Vec<String>,
}

impl ExtraRules {
    fn len(&self) -> usize {
        self.read.len() + self.exec.len() + self.connect.len()
    }
}

/// A policy text with `rules` rules of every path form (exact, subtree, wildcard, name,
/// suffix), plus some net rules, spread over 100 directories.
pub fn synthetic_policy(rules: usize) -> String {
    synthetic_policy_with(rules, &ExtraRules::default())
}

/// [`synthetic_policy`] with `extra` rules in place of as many generated ones (agent "bench").
pub fn synthetic_policy_with(rules: usize, extra: &ExtraRules) -> String {
    let mut s = String::from("[agent]\nname = \"bench\"\n\n[file]\nread = [\n");
    let rules = rules
        .checked_sub(extra.len())
        .expect("more extra rules than rules");
    let net_rules = (rules / 1000).min(500);
    let name_rules = (rules / 100).min(1000);
    let path_rules = rules - net_rules - name_rules;
    for path in &extra.read {
        let _ = writeln!(s, "  {path:?},");
    }
    for i in 0..path_rules {
        let dir = i % 100;
        let _ = match i % 4 {
            0 => writeln!(s, "  \"/srv/d{dir}/f{i}\","),
            1 => writeln!(s, "  \"/srv/d{dir}/sub{i}/**\","),
            2 => writeln!(s, "  \"/home/*/d{dir}/f{i}\","),
            _ => writeln!(s, "  \"/opt/d{dir}/x{i}.bin\","),
        };
    }
    s.push_str("]\ndeny = [\n");
    for i in 0..name_rules {
        let _ = if i % 2 == 0 {
            writeln!(s, "  \"**/secret{i}\",")
        } else {
            writeln!(s, "  \"**/*.k{i}\",")
        };
    }
    s.push_str("]\n\n[exec]\nallow = [\n");
    for path in &extra.exec {
        let _ = writeln!(s, "  {path:?},");
    }
    s.push_str("]\n\n[net]\nconnect = [\n");
    for to in &extra.connect {
        let _ = writeln!(s, "  {to:?},");
    }
    for i in 0..net_rules {
        let _ = writeln!(s, "  \"10.{}.{}.0/24:{}/tcp\",", i / 256, i % 256, 1000 + i);
    }
    s.push_str("]\n");
    s
}

/// Parse, validate and compile a `rules`-rule policy; returns (parse+validate, compile) times.
pub fn time_compile(rules: usize) -> (Duration, Duration) {
    let text = synthetic_policy(rules);
    let start = Instant::now();
    let set = load_sources(&[("bench.toml", &text)])
        .unwrap_or_else(|d| panic!("synthetic policy invalid:\n{d}"));
    let loaded = start.elapsed();
    let start = Instant::now();
    let compiled = compile(&set, &ResolvedHosts::new())
        .unwrap_or_else(|d| panic!("synthetic policy rejected:\n{d}"));
    let compiled_in = start.elapsed();
    assert_eq!(
        compiled.rules.len(),
        rules,
        "every synthetic rule compiles to one rule"
    );
    (loaded, compiled_in)
}

#[cfg(test)]
mod tests {
    /// One policy file may hold `MAX_POLICY_FILE_BYTES`; the 100,000-rule benchmark policy must
    /// fit with room to spare.
    #[test]
    fn the_size_limit_leaves_room_for_a_100000_rule_policy() {
        let text = super::synthetic_policy(100_000);
        println!("100,000-rule synthetic policy: {} bytes", text.len());
        assert!((text.len() as u64) * 3 < enforcer::policy::MAX_POLICY_FILE_BYTES);
    }
}
