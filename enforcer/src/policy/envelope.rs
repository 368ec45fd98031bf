//! The Landlock envelope of an agent (docs/landlock.md): per access class, the smallest set of
//! file hierarchies that contains every allow the agent has or can get from its compiled policy
//! (its rules, `when` windows and live grants; a window or grant counts as an allow whether it
//! is open now or not). `enforcer run` restricts the agent's process tree to it before exec, so
//! the kernel refuses anything outside with EACCES before it happens; inside it the eBPF
//! programs decide exactly as without it.
//!
//! Pure: computed by the daemon from its running policy and sent in the `registered` response,
//! applied by `crate::kernel::landlock`.

use serde::{Deserialize, Serialize};

use super::{
    compile::{CompiledPolicy, RuleKind},
    pattern::{Allowed, PathPattern},
};

/// Where one access class may reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Only beneath these absolute paths (sorted, none below another). Empty: nowhere.
    Within(Vec<String>),
    /// Not bounded by Landlock: why (the rule that cannot be bounded).
    Unbounded(String),
}

/// The envelope of one agent, as computed from one policy version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub agent: String,
    /// The policy version it was computed from.
    pub policy_version: u32,
    /// Opening files and directories for reading (also every exec target: the kernel opens
    /// the program it executes for reading).
    pub read: Reach,
    /// Every change: open for writing, create, remove, rename, link, truncate.
    pub write: Reach,
    /// Executing programs.
    pub exec: Reach,
    /// The policy allows connecting to abstract unix socket names: abstract sockets stay
    /// unscoped (scoping would refuse every abstract socket made outside the agent).
    pub abstract_unix_allowed: bool,
    /// Hierarchies above that name a single file (exact read/exec patterns): where such a file
    /// does not exist at launch the launcher adds no rule (rather than allowing its whole
    /// existing ancestor directory).
    #[serde(default)]
    pub single_files: Vec<String>,
}

impl Reach {
    /// Whether `path` (absolute, normalized) lies inside.
    pub fn contains(&self, path: &str) -> bool {
        match self {
            Reach::Within(dirs) => dirs.iter().any(|d| beneath(path, d)),
            Reach::Unbounded(_) => true,
        }
    }

    /// One line for status and logs.
    pub fn describe(&self) -> String {
        match self {
            Reach::Within(dirs) if dirs.is_empty() => "nothing".into(),
            Reach::Within(dirs) => dirs.join(", "),
            Reach::Unbounded(why) => format!("not bounded ({why})"),
        }
    }
}

/// `path` is `dir` or below it.
pub fn beneath(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// The directory holding `path` (`/` for `/x`).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The first `depth - 1` components of `path`: what precedes a `*` at `depth` (1-based).
fn prefix_before(path: &str, depth: u32) -> String {
    let kept: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .take(depth.saturating_sub(1) as usize)
        .collect();
    format!("/{}", kept.join("/"))
}

/// Access class of an allow rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Read,
    Write,
    Exec,
}

/// The hierarchy that contains everything `pattern` allows for `class`, or `None` when no
/// fixed directory does (`**/NAME`, `**/*.EXT`).
pub fn anchor(pattern: &PathPattern, class_is_write: bool) -> Option<String> {
    match pattern {
        PathPattern::Exact {
            wildcard_depth: Some(d),
            path,
        }
        | PathPattern::Subtree {
            wildcard_depth: Some(d),
            dir: path,
        } => Some(prefix_before(path, *d)),
        // Creating, removing or renaming a name is a right on the directory that holds it.
        PathPattern::Exact { path, .. } if class_is_write => Some(parent(path).to_string()),
        PathPattern::Exact { path, .. } => Some(path.clone()),
        PathPattern::Subtree { dir, .. } => Some(dir.clone()),
        PathPattern::Name(_) | PathPattern::Suffix(_) | PathPattern::Abstract(_) => None,
    }
}

#[derive(Default)]
struct Builder {
    dirs: Vec<String>,
    unbounded: Option<String>,
}

/// Exact patterns without a wildcard name one file: their anchor is that file.
fn single_file(pattern: &str) -> bool {
    matches!(
        PathPattern::parse(pattern, Allowed::All),
        Ok(PathPattern::Exact {
            wildcard_depth: None,
            ..
        })
    )
}

impl Builder {
    fn add(&mut self, anchor: Option<String>, rule: &str, pattern: &str) {
        match anchor {
            Some(dir) => self.dirs.push(dir),
            None if self.unbounded.is_none() => {
                self.unbounded = Some(format!("rule {rule} `{pattern}` has no fixed directory"))
            }
            None => {}
        }
    }

    fn finish(self) -> Reach {
        if let Some(why) = self.unbounded {
            return Reach::Unbounded(why);
        }
        Reach::Within(minimal(self.dirs))
    }
}

/// Sorted, deduplicated, and without any entry beneath another.
fn minimal(mut dirs: Vec<String>) -> Vec<String> {
    dirs.sort();
    dirs.dedup();
    let mut out: Vec<String> = Vec::with_capacity(dirs.len());
    // Sorted order puts `/a` before `/a/b` and `/a/b` before `/a.b`, so an entry's covering
    // ancestor, if any, is the last one kept that it is beneath.
    for d in dirs {
        if !out.iter().any(|o| beneath(&d, o)) {
            out.push(d);
        }
    }
    out
}

/// The envelope of agent `name` in `policy` (version `policy_version`); `None` if no such agent.
pub fn compute(policy: &CompiledPolicy, name: &str, policy_version: u32) -> Option<Envelope> {
    let agent = policy.agent_by_name(name)?;
    // An agent in audit mode only observes (learn runs it with no rules at all): refusing
    // anything before it happens would break that promise.
    if agent.mode == crate::policy::compile::Mode::Audit {
        return None;
    }
    let (mut read, mut write, mut exec) =
        (Builder::default(), Builder::default(), Builder::default());
    let mut abstract_unix_allowed = false;
    let mut files: Vec<String> = Vec::new();
    for rule in policy.rules.iter().filter(|r| r.agent == agent.id) {
        let class = match rule.kind {
            RuleKind::FileRead => Class::Read,
            RuleKind::FileWrite => Class::Write,
            RuleKind::ExecAllow | RuleKind::MatchExe => Class::Exec,
            RuleKind::NetConnect => {
                abstract_unix_allowed |= rule.pattern.starts_with("unix:@");
                continue;
            }
            // Denies are not Landlock's (it has allow rules only): inside the envelope the eBPF
            // programs decide them as before.
            _ => continue,
        };
        let anchor = match PathPattern::parse(&rule.pattern, Allowed::All) {
            Ok(p) => anchor(&p, class == Class::Write),
            // Compiled rules were parsed once already; one that does not parse again cannot be
            // bounded, and saying so is the safe side (nothing refused that the policy allows).
            Err(_) => None,
        };
        let text = rule.text_id.as_str();
        if class != Class::Write && single_file(&rule.pattern) {
            files.push(rule.pattern.clone());
        }
        match class {
            Class::Read => read.add(anchor, text, &rule.pattern),
            Class::Write => write.add(anchor, text, &rule.pattern),
            Class::Exec => {
                // The kernel opens an executed program for reading too (Landlock checks both).
                read.add(anchor.clone(), text, &rule.pattern);
                exec.add(anchor, text, &rule.pattern);
            }
        }
    }
    let (read, write, exec) = (read.finish(), write.finish(), exec.finish());
    // Only those still listed as their own hierarchy (not inside a directory of the class).
    let listed = |f: &String| {
        [&read, &exec]
            .iter()
            .any(|r| matches!(r, Reach::Within(d) if d.contains(f)))
    };
    files.retain(listed);
    files.sort();
    files.dedup();
    Some(Envelope {
        agent: name.to_string(),
        policy_version,
        read,
        write,
        exec,
        abstract_unix_allowed,
        single_files: files,
    })
}

impl Envelope {
    /// Whether `other` reaches anything this one does not (a reload or grant widened it).
    pub fn is_narrower_than(&self, other: &Envelope) -> bool {
        fn wider(old: &Reach, new: &Reach) -> bool {
            match (old, new) {
                (Reach::Unbounded(_), _) => false,
                (Reach::Within(_), Reach::Unbounded(_)) => true,
                (Reach::Within(o), Reach::Within(n)) => {
                    n.iter().any(|d| !o.iter().any(|x| beneath(d, x)))
                }
            }
        }
        wider(&self.read, &other.read)
            || wider(&self.write, &other.write)
            || wider(&self.exec, &other.exec)
            || (other.abstract_unix_allowed && !self.abstract_unix_allowed)
    }

    /// Same reach, whatever the policy version.
    pub fn same_reach(&self, other: &Envelope) -> bool {
        self.read == other.read
            && self.write == other.write
            && self.exec == other.exec
            && self.abstract_unix_allowed == other.abstract_unix_allowed
    }

    /// The reach of one class by rule kind (file/exec allows and denies).
    pub fn reach_for(&self, kind: RuleKind) -> Vec<&Reach> {
        match kind {
            RuleKind::FileRead | RuleKind::FileDenyRead => vec![&self.read],
            RuleKind::FileWrite | RuleKind::FileDenyWrite => vec![&self.write],
            RuleKind::FileDeny => vec![&self.read, &self.write, &self.exec],
            RuleKind::ExecAllow | RuleKind::ExecDeny | RuleKind::MatchExe => vec![&self.exec],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{compile, load_sources, ResolvedHosts};

    fn policy(toml: &str) -> CompiledPolicy {
        let set = load_sources(&[("a.toml", toml)])
            .unwrap_or_else(|d| panic!("policy does not load: {d:?}"));
        compile(&set, &ResolvedHosts::default()).unwrap_or_else(|d| panic!("{d:?}"))
    }

    fn env(toml: &str) -> Envelope {
        compute(&policy(toml), "a", 1).expect("agent a")
    }

    fn within(dirs: &[&str]) -> Reach {
        Reach::Within(dirs.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn prefix_of_each_pattern_form() {
        let p = |s: &str| PathPattern::parse(s, Allowed::All).expect(s);
        assert_eq!(anchor(&p("/a/b/**"), false).as_deref(), Some("/a/b"));
        assert_eq!(anchor(&p("/a/b/**"), true).as_deref(), Some("/a/b"));
        assert_eq!(anchor(&p("/a/b"), false).as_deref(), Some("/a/b"));
        // A write of one name is a right on its directory (create, unlink, rename).
        assert_eq!(anchor(&p("/a/b"), true).as_deref(), Some("/a"));
        assert_eq!(anchor(&p("/x"), true).as_deref(), Some("/"));
        assert_eq!(
            anchor(&p("/home/*/.ssh/**"), false).as_deref(),
            Some("/home")
        );
        assert_eq!(anchor(&p("/home/*"), true).as_deref(), Some("/home"));
        assert_eq!(anchor(&p("/*/x"), false).as_deref(), Some("/"));
        assert_eq!(anchor(&p("/**"), false).as_deref(), Some("/"));
        assert_eq!(anchor(&p("**/.env"), false), None);
        assert_eq!(anchor(&p("**/*.pem"), true), None);
    }

    #[test]
    fn minimal_drops_nested_and_keeps_siblings() {
        let dirs = ["/a/b", "/a", "/a.b", "/c/d", "/a/b/c", "/c/d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(minimal(dirs), vec!["/a", "/a.b", "/c/d"]);
        assert_eq!(minimal(vec!["/x".into(), "/".into()]), vec!["/"]);
        assert!(beneath("/a/b", "/a") && !beneath("/ab", "/a") && beneath("/a", "/a"));
    }

    #[test]
    fn classes_from_rules_denies_ignored() {
        let e = env(r#"
[agent]
name = "a"
match.exe = ["/opt/a/bin/a"]
[file]
read = ["/usr/lib/**", "/etc/hosts", "/data/*/pub/**"]
write = ["/tmp/**", "/work/out.txt"]
deny = ["/etc/**", "/secret/**"]
[exec]
allow = ["/usr/bin/git", "/usr/lib/git-core/**"]
deny = ["/usr/bin/curl"]
"#);
        assert_eq!(
            e.read,
            within(&[
                "/data",
                "/etc/hosts",
                "/opt/a/bin/a",
                "/usr/bin/git",
                "/usr/lib"
            ])
        );
        assert_eq!(e.write, within(&["/tmp", "/work"]));
        assert_eq!(
            e.exec,
            within(&["/opt/a/bin/a", "/usr/bin/git", "/usr/lib/git-core"])
        );
        assert!(!e.abstract_unix_allowed);
        assert!(e.write.contains("/work/other") && !e.write.contains("/workx"));
        assert_eq!(
            e.single_files,
            vec!["/etc/hosts", "/opt/a/bin/a", "/usr/bin/git"]
        );
        assert!(!e.read.contains("/secret/key"));
    }

    #[test]
    fn unbounded_rules_leave_their_class_unhandled() {
        let e = env(r#"
[agent]
name = "a"
[file]
read = ["/usr/**", "**/README.md"]
write = ["**/*.log", "/tmp/**"]
[net]
connect = ["unix:@bus"]
"#);
        assert!(
            matches!(&e.read, Reach::Unbounded(w) if w.contains("**/README.md")),
            "{e:?}"
        );
        assert!(
            matches!(&e.write, Reach::Unbounded(w) if w.contains("**/*.log")),
            "{e:?}"
        );
        assert_eq!(e.exec, within(&[]));
        assert!(e.abstract_unix_allowed);
        assert!(e.read.contains("/anything"));
    }

    #[test]
    fn windows_count_as_allows() {
        let e = env(r#"
[agent]
name = "a"
[file]
read = [{ path = "/reports/**", when = { hours = "09:00-10:00", tz = "UTC" } }]
[exec]
allow = [{ path = "/usr/local/bin/deploy", when = { hours = "10:00-16:00", tz = "UTC" } }]
"#);
        assert_eq!(e.read, within(&["/reports", "/usr/local/bin/deploy"]));
        assert_eq!(e.exec, within(&["/usr/local/bin/deploy"]));
    }

    #[test]
    fn grants_count_as_allows_and_widen() {
        let toml = r#"
[agent]
name = "a"
[file]
write = ["/tmp/**"]
"#;
        let before = env(toml);
        let mut set = load_sources(&[("a.toml", toml)]).expect("loads");
        let now = jiff::Timestamp::now();
        let grant = crate::policy::grant::Grant {
            id: 1,
            agent: "a".into(),
            rule: "file.write /srv/drop/**".into(),
            granted_at: now,
            expires: now + jiff::SignedDuration::from_secs(60),
            reason: None,
            uid: 0,
        };
        crate::policy::grant::add_to_set(&mut set, &[grant], now).expect("grant applies");
        let compiled = compile(&set, &ResolvedHosts::default()).expect("compiles");
        let after = compute(&compiled, "a", 2).expect("agent a");
        assert_eq!(after.write, within(&["/srv/drop", "/tmp"]));
        assert!(before.is_narrower_than(&after));
        assert!(!after.is_narrower_than(&before));
        assert!(!before.same_reach(&after));
    }

    #[test]
    fn delegation_each_agent_its_own_envelope() {
        let set = load_sources(&[
            (
                "p.toml",
                r#"
[agent]
name = "p"
delegate = ["c"]
[file]
write = ["/work/**"]
"#,
            ),
            (
                "c.toml",
                r#"
[agent]
name = "c"
[file]
write = ["/work/docs/**", "/tmp/**"]
"#,
            ),
        ])
        .expect("loads");
        let compiled = compile(&set, &ResolvedHosts::default()).expect("compiles");
        // A sub-agent started inside P stacks its own envelope on P's: the kernel allows only
        // the intersection (/work/docs), with no help from here.
        let p = compute(&compiled, "p", 1).expect("p");
        let c = compute(&compiled, "c", 1).expect("c");
        assert_eq!(p.write, within(&["/work"]));
        assert_eq!(c.write, within(&["/tmp", "/work/docs"]));
        assert!(compute(&compiled, "nobody", 1).is_none());
    }
}
