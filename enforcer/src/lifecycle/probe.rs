//! Compiling policy text in memory next to the permission sets of a directory: how `learn`
//! asks the real loader, compiler and evaluator what a set covers and whether the policy it
//! wrote holds, instead of re-implementing matching.

use std::path::Path;

use crate::policy::{self, CompiledPolicy, Diagnostics, PolicySet, ResolvedHosts};

/// One permission set file, as the loader will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSource {
    /// In-memory file name, `sets/<file>`: includes inside sets (`"libc.toml"`) resolve against
    /// it exactly as on disk.
    pub file: String,
    /// `[set] name`, what a learned policy includes.
    pub name: String,
    pub text: String,
}

impl SetSource {
    /// `None` when `text` is not a permission set (no `[set] name`).
    pub fn new(file_name: &str, text: String) -> Option<SetSource> {
        let table: toml::Table = toml::from_str(&text).ok()?;
        let name = table.get("set")?.get("name")?.as_str()?.to_owned();
        Some(SetSource {
            file: format!("sets/{file_name}"),
            name,
            text,
        })
    }
}

/// The permission sets among the `*.toml` files of `dir` (not recursive), in name order.
/// Files that are not sets (agent policies) are left out.
pub fn read_sets(dir: &Path) -> std::io::Result<Vec<SetSource>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    let mut sets = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(dir.join(&name))?;
        sets.extend(SetSource::new(&name, text));
    }
    Ok(sets)
}

/// Load and compile the agent policy `text` (named `file`) with `sets`, as `enforcer check`
/// would with the file next to a `sets/` directory.
pub fn compile_with_sets(
    file: &str,
    text: &str,
    sets: &[SetSource],
    hosts: &ResolvedHosts,
) -> Result<(PolicySet, CompiledPolicy), Diagnostics> {
    let mut files: Vec<(&str, &str)> = vec![(file, text)];
    files.extend(sets.iter().map(|s| (s.file.as_str(), s.text.as_str())));
    let set = policy::load_sources(&files)?;
    let compiled = policy::compile(&set, hosts)?;
    Ok((set, compiled))
}
