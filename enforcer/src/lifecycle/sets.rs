//! Which permission sets a learned policy includes instead of listing runtime files. What a set
//! covers is found by compiling it and asking the reference evaluator, never by comparing
//! strings.

use std::collections::BTreeSet;

use super::{
    learn::{LearnOptions, Seen},
    probe::{compile_with_sets, SetSource},
    render::quote,
    requests::HostsSeen,
};
use crate::policy::eval::{self, Verdict};

/// A set is included only when it covers at least this many distinct observed operations of its
/// own: one `/etc/passwd` read does not justify all of `libc`.
const MIN_SET_COVERAGE: usize = 2;

pub type Covered<'a> = Vec<(&'a SetSource, Vec<(&'a Seen, u64)>)>;

/// Greedy: the set covering most observations with its own rules first, then the next one on
/// what is left. A set that explicitly denies something observed is never included (the
/// policy must allow what was observed). Returns the sets with what each covers, and the
/// indexes of `normal` covered.
pub fn choose_sets<'a>(
    agent: &str,
    normal: &[(&'a Seen, u64)],
    opts: &'a LearnOptions,
    hosts: &HostsSeen,
) -> (Covered<'a>, BTreeSet<usize>) {
    struct Coverage<'a> {
        set: &'a SetSource,
        own: BTreeSet<usize>,
        all: BTreeSet<usize>,
        /// Files whose rules the set brings (itself and what it includes).
        files: BTreeSet<String>,
    }
    let mut candidates = Vec::new();
    for set in &opts.sets {
        let probe = format!(
            "include = [{}]\n[agent]\nname = {}\n",
            quote(&set.name),
            quote(agent)
        );
        let Ok((_, compiled)) =
            compile_with_sets("probe.toml", &probe, &opts.sets, &hosts.resolved())
        else {
            continue;
        };
        let Some(id) = compiled.agent_by_name(agent).map(|a| a.id) else {
            continue;
        };
        let mut c = Coverage {
            set,
            own: BTreeSet::new(),
            all: BTreeSet::new(),
            files: compiled
                .rules
                .iter()
                .map(|r| r.source.file.display().to_string())
                .collect(),
        };
        let mut conflict = false;
        for (i, (seen, _)) in normal.iter().enumerate() {
            let d = eval::evaluate(&compiled, id, &seen.request());
            let rule = compiled.rule(d.rule);
            match d.verdict {
                Verdict::Allow => {
                    c.all.insert(i);
                    if rule.is_some_and(|r| r.source.file.to_string_lossy() == set.file) {
                        c.own.insert(i);
                    }
                }
                _ if d.rule != 0 => conflict = true,
                _ => {}
            }
        }
        if !conflict && !c.own.is_empty() {
            candidates.push(c);
        }
    }
    candidates.sort_by(|a, b| {
        b.own
            .len()
            .cmp(&a.own.len())
            .then(a.set.name.cmp(&b.set.name))
    });
    let mut covered = BTreeSet::new();
    let mut chosen: Vec<(&Coverage<'_>, Vec<usize>)> = Vec::new();
    for c in &candidates {
        if c.own.difference(&covered).count() < MIN_SET_COVERAGE {
            continue;
        }
        let new: Vec<usize> = c.all.difference(&covered).copied().collect();
        covered.extend(new.iter().copied());
        chosen.push((c, new));
    }
    // A set another chosen set already includes adds nothing to the policy text.
    let includes = chosen
        .iter()
        .filter(|(c, _)| {
            !chosen
                .iter()
                .any(|(o, _)| o.set.file != c.set.file && o.files.contains(&c.set.file))
        })
        .map(|(c, items)| (c.set, items.iter().map(|&i| normal[i]).collect()))
        .collect();
    (includes, covered)
}
