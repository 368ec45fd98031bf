use std::collections::BTreeMap;

use crate::lifecycle::collapse::{collapse, generalize, CollapseOptions};

fn patterns(paths: &[&str], opts: CollapseOptions) -> (Vec<String>, Vec<String>) {
    let map: BTreeMap<String, u64> = paths.iter().map(|p| (p.to_string(), 1)).collect();
    let (grants, unplaced) = collapse(&map, opts);
    (grants.into_iter().map(|g| g.pattern).collect(), unplaced)
}

#[test]
fn many_files_of_one_project_become_its_subtree() {
    let (p, _) = patterns(
        &[
            "/home/dev/project/src/main.rs",
            "/home/dev/project/src/lib.rs",
            "/home/dev/project/Cargo.toml",
            "/etc/hostname",
        ],
        CollapseOptions::default(),
    );
    assert_eq!(p, vec!["/etc/hostname", "/home/dev/project/**"]);
}

#[test]
fn never_into_shared_roots_whatever_the_depth() {
    let opts = CollapseOptions {
        min_depth: 0,
        min_paths: 2,
    };
    let (p, _) = patterns(
        &[
            "/etc/a",
            "/etc/b",
            "/etc/c",
            "/home/dev/x",
            "/home/dev/y",
            "/usr/bin/git",
            "/usr/bin/make",
        ],
        opts,
    );
    assert_eq!(
        p,
        vec![
            "/etc/a",
            "/etc/b",
            "/etc/c",
            "/home/dev/x",
            "/home/dev/y",
            "/usr/bin/git",
            "/usr/bin/make"
        ]
    );
}

#[test]
fn not_above_the_minimum_depth() {
    let files = ["/work/a/x", "/work/b/y", "/work/c/z"];
    let (p, _) = patterns(
        &files,
        CollapseOptions {
            min_depth: 2,
            min_paths: 3,
        },
    );
    assert_eq!(p, files.to_vec());
    let (p, _) = patterns(
        &files,
        CollapseOptions {
            min_depth: 1,
            min_paths: 3,
        },
    );
    assert_eq!(p, vec!["/work/**"]);
}

#[test]
fn pids_are_generalized_and_odd_names_fall_back_to_a_subtree() {
    assert_eq!(generalize("/proc/4711/status"), "/proc/*/status");
    assert_eq!(generalize("/proc/self/status"), "/proc/self/status");
    assert_eq!(generalize("/proc/4711"), "/proc/*");
    let (p, unplaced) = patterns(
        &["/work/project/a[1].txt", "/tmp/b{2}", "/proc/*/status"],
        CollapseOptions::default(),
    );
    assert_eq!(p, vec!["/proc/*/status", "/work/project/**"]);
    assert_eq!(unplaced, vec!["/tmp/b{2}"]);
}
