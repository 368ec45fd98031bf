//! Turning observed paths into few, readable path rules: many paths under one directory become
//! `/dir/**`, but never a directory that is too shallow (`min_depth`) or one of the system's
//! shared roots (`/home`, `/etc`, `/usr`, ...), whose subtree would grant far more than any one
//! agent used. Every rule produced matches every path it stands for; `learn` checks that again
//! with the reference evaluator.

use std::collections::BTreeMap;

use crate::policy::pattern::{Allowed, PathPattern};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollapseOptions {
    /// A collapsed directory has at least this many components (`/work/project` has 2).
    pub min_depth: usize,
    /// A directory is collapsed once this many distinct paths were seen at or below it.
    pub min_paths: usize,
}

impl Default for CollapseOptions {
    fn default() -> Self {
        CollapseOptions {
            min_depth: 2,
            min_paths: 3,
        }
    }
}

/// Directories never granted as a whole, whatever the depth option: shared system roots, every
/// user's home (`/home/*`), per-process `/proc/*`, shared scratch space.
const NEVER_COLLAPSED: &[&str] = &[
    "/",
    "/home",
    "/home/*",
    "/root",
    "/etc",
    "/usr",
    "/usr/lib",
    "/usr/lib64",
    "/usr/share",
    "/usr/local",
    "/usr/local/lib",
    "/usr/local/share",
    "/usr/local/bin",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/tmp",
    "/opt",
    "/srv",
    "/run",
    "/dev",
    "/proc",
    "/proc/*",
    "/sys",
    "/mnt",
    "/media",
    "/boot",
];

/// One rule and what it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub pattern: String,
    /// The distinct observed paths it covers, sorted, with how often each was seen.
    pub paths: Vec<(String, u64)>,
}

impl Grant {
    pub fn count(&self) -> u64 {
        self.paths.iter().map(|(_, n)| n).sum()
    }
}

/// `/proc/<pid>/...` -> `/proc/*/...`: the pid differs on every run, so a learned rule must not
/// name it (`/proc/self` is resolved to the pid before the kernel sees the path).
pub fn generalize(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/proc/") {
        let (pid, tail) = rest.split_once('/').map_or((rest, ""), |(p, t)| (p, t));
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            return if tail.is_empty() {
                "/proc/*".to_owned()
            } else {
                format!("/proc/*/{tail}")
            };
        }
    }
    path.to_owned()
}

#[derive(Default)]
struct Node {
    /// Times this exact path was seen.
    seen: u64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn distinct(&self) -> usize {
        usize::from(self.seen > 0) + self.children.values().map(Node::distinct).sum::<usize>()
    }
    fn collect(&self, path: &str, out: &mut Vec<(String, u64)>) {
        if self.seen > 0 {
            out.push((path.to_owned(), self.seen));
        }
        for (name, child) in &self.children {
            child.collect(&join(path, name), out);
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The rules for `paths` (path -> times seen; already generalized), and the paths no rule can
/// express (a pattern character such as `[` in a name with no expressible ancestor).
pub fn collapse(paths: &BTreeMap<String, u64>, opts: CollapseOptions) -> (Vec<Grant>, Vec<String>) {
    let mut root = Node::default();
    for (path, n) in paths {
        let mut node = &mut root;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node.children.entry(part.to_owned()).or_default();
        }
        node.seen += n;
    }
    let mut grants = Vec::new();
    let mut inexpressible = Vec::new();
    walk(&root, "/", 0, opts, &mut grants, &mut inexpressible);
    // A path no exact rule can name is covered by its nearest collapsible ancestor instead.
    let mut unplaced = Vec::new();
    for (path, n) in inexpressible {
        match ancestor_subtree(&path, opts) {
            Some(pattern) => match grants.iter_mut().find(|g| g.pattern == pattern) {
                Some(g) => g.paths.push((path, n)),
                None => grants.push(Grant {
                    pattern,
                    paths: vec![(path, n)],
                }),
            },
            None => unplaced.push(path),
        }
    }
    for g in &mut grants {
        g.paths.sort();
    }
    grants.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    (grants, unplaced)
}

fn walk(
    node: &Node,
    path: &str,
    depth: usize,
    opts: CollapseOptions,
    grants: &mut Vec<Grant>,
    inexpressible: &mut Vec<(String, u64)>,
) {
    // Collapse where the paths branch (or the directory itself was opened): when they all lie
    // below one child, that child's subtree is the tighter grant.
    let branches = node.seen > 0 || node.children.len() > 1;
    if branches && collapsible(path, depth, opts) && node.distinct() >= opts.min_paths {
        let mut covered = Vec::new();
        node.collect(path, &mut covered);
        grants.push(Grant {
            pattern: format!("{path}/**"),
            paths: covered,
        });
        return;
    }
    if node.seen > 0 {
        if is_pattern(path, false) {
            grants.push(Grant {
                pattern: path.to_owned(),
                paths: vec![(path.to_owned(), node.seen)],
            });
        } else {
            inexpressible.push((path.to_owned(), node.seen));
        }
    }
    for (name, child) in &node.children {
        walk(
            child,
            &join(path, name),
            depth + 1,
            opts,
            grants,
            inexpressible,
        );
    }
}

fn collapsible(dir: &str, depth: usize, opts: CollapseOptions) -> bool {
    depth >= opts.min_depth.max(1) && !never_collapsed(dir) && is_pattern(dir, true)
}

fn never_collapsed(dir: &str) -> bool {
    NEVER_COLLAPSED.iter().any(|&n| match n.strip_suffix("/*") {
        // `/home/*`: any one component below it.
        Some(parent) => dir
            .strip_prefix(parent)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| !r.is_empty() && !r.contains('/')),
        None => dir == n,
    })
}

/// `path` (or `path/**` for a subtree) is a pattern the loader accepts and that matches exactly
/// what it says: no glob characters, and a `*` component only where `generalize` put it.
fn is_pattern(path: &str, subtree: bool) -> bool {
    let text = if subtree {
        format!("{path}/**")
    } else {
        path.to_owned()
    };
    let literal_star = path.split('/').any(|c| c.contains('*') && c != "*")
        || (path.contains("/*") && !path.starts_with("/proc/*"));
    !literal_star && PathPattern::parse(&text, Allowed::All).is_ok()
}

fn ancestor_subtree(path: &str, opts: CollapseOptions) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (1..parts.len()).rev().find_map(|depth| {
        let dir = format!("/{}", parts[..depth].join("/"));
        collapsible(&dir, depth, opts).then(|| format!("{dir}/**"))
    })
}
