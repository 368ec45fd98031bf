//! Loading: find policy files, parse each once, flatten includes, check cross-file rules
//! (duplicate agent names, unknown delegates, duplicate explicit rule ids, include cycles).
//!
//! A directory argument loads every `*.toml` below it (recursively, in name order). A file with
//! an `[agent]` table is an agent policy; a file with a `[set]` table is a permission set, only
//! used through `include`. Include entries are paths relative to the including file
//! (`"sets/tls.toml"`) or, without `/` and `.toml`, a set name (`"tls"`): a set loaded from the
//! arguments with that `[set] name`, else `sets/<name>.toml` next to the including file.
//!
//! Policy input stays inside its policy root: the directory argument (or, for a file argument,
//! the directory holding it). Every file, listed or included, must resolve (symlinks followed)
//! to a path under that root, be a regular file and hold at most [`MAX_POLICY_FILE_BYTES`]; it
//! is opened without blocking and checked with `fstat` before a byte is read, so a FIFO or a
//! device is an error, never a hang. A file outside the root is never read, so its lines cannot
//! appear in a diagnostic (docs/policy.md, "include").

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    io::Read,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Component, Path, PathBuf},
    rc::Rc,
};

use super::{
    diag::{Diagnostic, Diagnostics, SourceFile},
    model::{AgentPolicy, Located, PolicySet, Rule, SetInfo},
    validate::{parse_file, Header, ParsedFile},
};

/// The largest policy file (agent policy or permission set) the loader reads, in bytes. A
/// synthetic 100,000-rule policy of `policy::bench` is 2.4 MB; docs/policy.md ("Limits") states this.
pub const MAX_POLICY_FILE_BYTES: u64 = 16 * 1024 * 1024;

pub fn load_paths(paths: &[PathBuf]) -> Result<PolicySet, Diagnostics> {
    let mut loader = Loader::default();
    for path in paths {
        loader.discover(path);
    }
    loader.finish()
}

/// Load policies from in-memory text (tests, fuzzing): `(file name, text)` pairs; includes
/// resolve against the other entries by name.
pub fn load_sources(files: &[(&str, &str)]) -> Result<PolicySet, Diagnostics> {
    let mut loader = Loader {
        memory_only: true,
        ..Loader::default()
    };
    for (name, text) in files {
        loader
            .in_memory
            .insert(PathBuf::from(name), text.to_string());
    }
    for (name, _) in files {
        if let Err(e) = loader.parse(PathBuf::from(name), name.to_string(), true, None) {
            loader.diags.push(Diagnostic::file_error(
                Path::new(name),
                format!("cannot read: {e}"),
            ));
        }
    }
    loader.finish()
}

#[derive(Default)]
struct Loader {
    /// Parsed files by identity (canonical path); `None` when the file had errors.
    files: HashMap<PathBuf, Option<Rc<ParsedFile>>>,
    /// Identity -> the name rule ids use for it.
    id_names: HashMap<PathBuf, String>,
    /// Identity -> the canonical policy root its includes must stay under (none in memory).
    roots: HashMap<PathBuf, PathBuf>,
    /// Files named by the arguments, in order.
    listed: Vec<PathBuf>,
    in_memory: HashMap<PathBuf, String>,
    /// `load_sources`: never touch the filesystem (an include that is not in memory is missing).
    memory_only: bool,
    diags: Diagnostics,
}

impl Loader {
    fn discover(&mut self, path: &Path) {
        let is_dir = path.is_dir();
        // The root is the directory argument, or the directory holding a file argument.
        let root = if is_dir {
            path.canonicalize()
        } else {
            path.canonicalize().map(|p| match p.parent() {
                Some(parent) => parent.to_path_buf(),
                None => p,
            })
        };
        let root = match root {
            Ok(r) => r,
            Err(e) => {
                self.diags
                    .push(Diagnostic::file_error(path, format!("cannot read: {e}")));
                return;
            }
        };
        if is_dir {
            let mut found = Vec::new();
            if let Err(e) = walk_toml(path, &mut found) {
                self.diags.push(Diagnostic::file_error(
                    path,
                    format!("cannot read directory: {e}"),
                ));
            }
            found.sort();
            for file in found {
                let rel = file
                    .strip_prefix(path)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .into_owned();
                if let Err(e) = self.parse(file.clone(), rel, true, Some(&root)) {
                    self.diags
                        .push(Diagnostic::file_error(&file, format!("cannot read: {e}")));
                }
            }
        } else {
            let name = path
                .file_name()
                .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy())
                .into_owned();
            if let Err(e) = self.parse(path.to_path_buf(), name, true, Some(&root)) {
                self.diags
                    .push(Diagnostic::file_error(path, format!("cannot read: {e}")));
            }
        }
    }

    /// Parse `path` once; returns its identity, or why it cannot be read. `root`: the policy
    /// root the file must resolve under (`None` only for in-memory sources).
    fn parse(
        &mut self,
        path: PathBuf,
        id_name: String,
        listed: bool,
        root: Option<&Path>,
    ) -> Result<PathBuf, String> {
        let identity = if self.in_memory.contains_key(&path) {
            path.clone()
        } else if self.memory_only {
            return Err("No such file or directory (os error 2)".into());
        } else {
            let identity = path.canonicalize().map_err(|e| e.to_string())?;
            if let Some(root) = root {
                if !identity.starts_with(root) {
                    return Err(format!(
                        "it resolves to `{}`, outside the policy directory `{}`",
                        identity.display(),
                        root.display()
                    ));
                }
            }
            identity
        };
        if !self.files.contains_key(&identity) {
            let text = match self.in_memory.get(&identity) {
                Some(t) => t.clone(),
                None => read_policy_file(&identity)?,
            };
            let parsed = match parse_file(SourceFile::new(path, text), &id_name) {
                Ok(p) => Some(Rc::new(p)),
                Err(d) => {
                    self.diags.extend(d);
                    None
                }
            };
            self.files.insert(identity.clone(), parsed);
            self.id_names.insert(identity.clone(), id_name);
            if let Some(root) = root {
                self.roots.insert(identity.clone(), root.to_path_buf());
            }
        }
        if listed && !self.listed.contains(&identity) {
            self.listed.push(identity.clone());
        }
        Ok(identity)
    }

    fn finish(mut self) -> Result<PolicySet, Diagnostics> {
        let sets_by_name: BTreeMap<String, PathBuf> = self
            .listed
            .iter()
            .filter_map(|id| match self.files.get(id) {
                Some(Some(file)) => match &file.header {
                    Header::Set { name, .. } => Some((name.clone(), id.clone())),
                    Header::Agent(_) => None,
                },
                _ => None,
            })
            .collect();

        let mut agents = Vec::new();
        let mut first_agent_at: HashMap<String, Located> = HashMap::new();
        for identity in self.listed.clone() {
            let Some(Some(file)) = self.files.get(&identity).cloned() else {
                continue;
            };
            let mut rules = Vec::new();
            let mut visited = HashSet::new();
            self.flatten(
                &identity,
                &file,
                &sets_by_name,
                &mut vec![identity.clone()],
                &mut visited,
                &mut rules,
            );
            let Header::Agent(h) = file.header.clone() else {
                continue;
            };
            if let Some(first) = first_agent_at.get(&h.name) {
                let msg = format!(
                    "duplicate agent name `{}` (first defined at {}:{}:{})",
                    h.name,
                    first.loc.file.display(),
                    first.loc.line,
                    first.loc.col
                );
                self.diags
                    .push(file.source.error(h.name_at.span.clone(), msg));
                continue;
            }
            first_agent_at.insert(h.name.clone(), h.name_at.clone());
            agents.push(AgentPolicy {
                name: h.name,
                description: h.description,
                mode: h.mode,
                on_violation: h.on_violation,
                log_file_allow: h.log_file_allow,
                process: h.process,
                delegate: h.delegate,
                source: file.source.path.clone(),
                name_at: h.name_at,
                rules,
            });
        }
        agents.sort_by(|a, b| a.name.cmp(&b.name));

        let mut set = PolicySet::default();
        for file in self.files.values().flatten() {
            set.sources
                .insert(file.source.path.clone(), file.source.clone());
            if let Header::Set { name, description } = &file.header {
                set.sets.push(SetInfo {
                    name: name.clone(),
                    description: description.clone(),
                    file: file.source.path.clone(),
                });
            }
        }
        set.sets.sort_by(|a, b| a.file.cmp(&b.file));

        for agent in &agents {
            check_agent(&set, agent, &first_agent_at, &mut self.diags);
        }
        set.agents = agents;
        // A set included by several agents reports its include errors once.
        let mut seen = HashSet::new();
        self.diags.0.retain(|d| seen.insert(d.to_string()));
        self.diags.into_result(set)
    }

    /// Append `file`'s rules, then its includes' rules (depth first). `stack` detects cycles,
    /// `visited` includes each set once per agent.
    fn flatten(
        &mut self,
        identity: &Path,
        file: &ParsedFile,
        sets_by_name: &BTreeMap<String, PathBuf>,
        stack: &mut Vec<PathBuf>,
        visited: &mut HashSet<PathBuf>,
        rules: &mut Vec<Rule>,
    ) {
        visited.insert(identity.to_path_buf());
        rules.extend(file.rules.iter().cloned());
        let base_id = self.id_names.get(identity).cloned().unwrap_or_default();
        for (include, at) in &file.includes {
            let root = self.roots.get(identity).cloned();
            let target = match self.resolve_include(
                &file.source.path,
                &base_id,
                root.as_deref(),
                include,
                sets_by_name,
            ) {
                Ok(t) => t,
                Err(msg) => {
                    self.diags.push(file.source.error(at.span.clone(), msg));
                    continue;
                }
            };
            if stack.contains(&target) {
                let mut chain: Vec<String> =
                    stack.iter().map(|p| self.id_names[p].clone()).collect();
                chain.push(self.id_names[&target].clone());
                self.diags.push(file.source.error(
                    at.span.clone(),
                    format!("include cycle: {}", chain.join(" -> ")),
                ));
                continue;
            }
            if visited.contains(&target) {
                continue;
            }
            let Some(Some(included)) = self.files.get(&target).cloned() else {
                continue;
            };
            if let Header::Agent(_) = included.header {
                let msg = format!(
                    "`{include}` is an agent policy; only permission sets ([set]) can be included"
                );
                self.diags.push(file.source.error(at.span.clone(), msg));
                continue;
            }
            stack.push(target.clone());
            self.flatten(&target, &included, sets_by_name, stack, visited, rules);
            stack.pop();
        }
    }

    /// The identity of an included file (parsed on first use).
    fn resolve_include(
        &mut self,
        includer: &Path,
        includer_id: &str,
        root: Option<&Path>,
        include: &str,
        sets_by_name: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, String> {
        let by_name = !include.contains('/') && !include.ends_with(".toml");
        if by_name {
            if let Some(identity) = sets_by_name.get(include) {
                return Ok(identity.clone());
            }
        }
        let rel = if by_name {
            format!("sets/{include}.toml")
        } else {
            include.to_string()
        };
        if Path::new(&rel).is_absolute() {
            return Err("include paths are relative to the including file".into());
        }
        let dir = includer.parent().unwrap_or(Path::new(""));
        let id_dir = Path::new(includer_id).parent().unwrap_or(Path::new(""));
        let path = normalize(&dir.join(&rel));
        let id_name = normalize(&id_dir.join(&rel)).to_string_lossy().into_owned();
        self.parse(path.clone(), id_name, false, root).map_err(|e| {
            if by_name {
                format!(
                    "no permission set named `{include}` (looked for a loaded [set] and `{}`: {e})",
                    path.display()
                )
            } else {
                format!("cannot read included file `{}`: {e}", path.display())
            }
        })
    }
}

fn check_agent(
    set: &PolicySet,
    agent: &AgentPolicy,
    agents: &HashMap<String, Located>,
    diags: &mut Diagnostics,
) {
    for (name, at) in &agent.delegate {
        if !agents.contains_key(name) {
            diags.push(set.error_at(
                at,
                format!("unknown agent `{name}` in delegate (no loaded policy defines it)"),
            ));
        }
    }
    let mut explicit: HashMap<&str, &Located> = HashMap::new();
    for rule in &agent.rules {
        // Implicit ids (`file:line`) are unique by construction; explicit ones must be too.
        if !rule.explicit_id {
            continue;
        }
        if let Some(first) = explicit.insert(&rule.text_id, &rule.at) {
            if first != &rule.at {
                let msg = format!(
                    "rule id `{}` is already used in agent `{}` (at {}:{}:{})",
                    rule.text_id,
                    agent.name,
                    first.loc.file.display(),
                    first.loc.line,
                    first.loc.col
                );
                diags.push(set.error_at(&rule.at, msg));
            }
        }
    }
}

/// Read one policy file (`path` canonical, inside its root): opened with `O_NONBLOCK` (a FIFO
/// without a writer, or a device, cannot block the open) and `O_NOFOLLOW` (the last component
/// cannot have become a symlink since it was resolved), then `fstat`: only a regular file of at
/// most [`MAX_POLICY_FILE_BYTES`] is read, and the read itself is bounded in case it grows.
fn read_policy_file(path: &Path) -> Result<String, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "an unknown file type"
        };
        return Err(format!(
            "not a regular file ({what}); policy files must be regular files"
        ));
    }
    let too_big =
        || format!("larger than {MAX_POLICY_FILE_BYTES} bytes, the limit for one policy file");
    if meta.len() > MAX_POLICY_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    read_bounded(file, &mut bytes)?;
    if bytes.len() as u64 > MAX_POLICY_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".to_string())
}

fn read_bounded(file: File, into: &mut Vec<u8>) -> Result<(), String> {
    file.take(MAX_POLICY_FILE_BYTES + 1)
        .read_to_end(into)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn walk_toml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // file_type() does not follow symlinks: a symlinked directory cannot loop the walk.
        if entry.file_type()?.is_dir() {
            walk_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Lexical normalization (`a/./b/../c` -> `a/c`): include paths are resolved before the file is
/// opened so messages and rule ids name the file plainly.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
