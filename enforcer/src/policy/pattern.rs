//! Path patterns: what a file, exec, `match.exe` or unix-socket rule can say, and the exact
//! kernel entries each form compiles to (docs/kernel-maps.md, "Paths").
//!
//! Only forms the kernel matches exactly are accepted; anything else is an error naming the
//! supported forms, so a pattern is never silently widened or dropped.

use enforcer_common::{
    DELETED_SUFFIX, MAX_SUFFIX_TRIES, MAX_WILDCARD_DEPTH, NAME_EXACT, NAME_KEY_BYTES, NAME_SUFFIX,
    PATH_KEY_BYTES,
};

/// A validated path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// `/a/b` (optionally with one `*` component): that path only.
    Exact {
        path: String,
        wildcard_depth: Option<u32>,
    },
    /// `/a/b/**`: the directory and everything below it. `dir` is `/` for `/**`.
    Subtree {
        dir: String,
        wildcard_depth: Option<u32>,
    },
    /// `**/NAME`: any path whose last component is NAME.
    Name(String),
    /// `**/*SUFFIX` (SUFFIX starts with `.`): any path whose last component ends with SUFFIX.
    Suffix(String),
    /// `@name`: an abstract unix socket name (net rules only).
    Abstract(String),
}

/// Where a pattern's entries go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entries {
    /// `PATH_RULES` / `EXE_MATCH` LPM data (path bytes, no ruleset).
    Path(Vec<Vec<u8>>),
    /// One `NAME_RULES` key: `NAME_EXACT` or `NAME_SUFFIX` and the name bytes.
    Name(u32, Vec<u8>),
}

/// Which forms a rule list accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// file.*, exec.*, unix: net rules: every form.
    All,
    /// match.exe: exact paths and subtrees without wildcards (EXE_MATCH has no wildcard lookup).
    ExactOrSubtree,
}

const SUPPORTED: &str = "supported forms: `/exact/path`, `/dir/**`, one whole `*` component \
                         (`/home/*/.ssh/**`), `**/NAME` and `**/*.EXT`";

impl PathPattern {
    /// Parse and validate `text`. The error is a complete message for the user.
    pub fn parse(text: &str, allowed: Allowed) -> Result<PathPattern, String> {
        if text.contains('\0') {
            return Err("a pattern cannot contain a NUL byte".into());
        }
        if text
            .as_bytes()
            .windows(DELETED_SUFFIX.len())
            .any(|w| w == DELETED_SUFFIX)
        {
            // The kernel cuts it from unlinked files' paths (they are judged by the name they
            // had): a rule about a name containing it could never be matched as written.
            return Err(
                "a pattern cannot contain ` (deleted)` (the kernel's mark of unlinked files)"
                    .into(),
            );
        }
        if let Some(ch) = text
            .chars()
            .find(|c| matches!(c, '?' | '[' | ']' | '{' | '}'))
        {
            return Err(format!(
                "glob character `{ch}` is not supported; {SUPPORTED}"
            ));
        }
        let pattern = if let Some(name) = text.strip_prefix("**/") {
            parse_name(name)?
        } else if !text.starts_with('/') {
            return Err(if text.starts_with('~') {
                "`~` is not expanded: write the absolute path (e.g. `/home/*/.ssh/**`)".into()
            } else if text.is_empty() {
                "empty pattern".into()
            } else {
                format!(
                    "a path pattern must be absolute (start with `/`) or `**/NAME`; {SUPPORTED}"
                )
            });
        } else if let Some(dir) = text.strip_suffix("/**") {
            let dir = if dir.is_empty() { "/" } else { dir };
            let wildcard_depth = parse_absolute(dir)?;
            PathPattern::Subtree {
                dir: dir.to_string(),
                wildcard_depth,
            }
        } else {
            let wildcard_depth = parse_absolute(text)?;
            PathPattern::Exact {
                path: text.to_string(),
                wildcard_depth,
            }
        };
        if allowed == Allowed::ExactOrSubtree {
            let ok = match &pattern {
                PathPattern::Exact { wildcard_depth, .. }
                | PathPattern::Subtree { wildcard_depth, .. } => wildcard_depth.is_none(),
                _ => false,
            };
            if !ok {
                return Err("only exact paths and `/dir/**` subtrees (no `*`, no `**/NAME`) can be used here".into());
            }
        }
        pattern.check_fits()?;
        Ok(pattern)
    }

    /// An abstract unix socket name, written `@name`.
    pub fn parse_abstract(text: &str) -> Result<PathPattern, String> {
        let Some(name) = text.strip_prefix('@') else {
            return Err("an abstract socket name starts with `@`".into());
        };
        if name.is_empty() {
            return Err("empty abstract socket name".into());
        }
        if text.contains('\0') {
            return Err("an abstract socket name cannot contain a NUL byte".into());
        }
        if text.contains('*') {
            return Err("abstract socket names are matched exactly; `*` is not supported".into());
        }
        let pattern = PathPattern::Abstract(text.to_string());
        pattern.check_fits()?;
        Ok(pattern)
    }

    /// Depth (1-based) of the `*` component, if any.
    pub fn wildcard_depth(&self) -> Option<u32> {
        match self {
            PathPattern::Exact { wildcard_depth, .. }
            | PathPattern::Subtree { wildcard_depth, .. } => *wildcard_depth,
            _ => None,
        }
    }

    /// The kernel entries for this pattern (docs/kernel-maps.md).
    pub fn entries(&self) -> Entries {
        match self {
            PathPattern::Exact { path, .. } | PathPattern::Abstract(path) => {
                Entries::Path(vec![nul_terminated(path)])
            }
            PathPattern::Subtree { dir, .. } if dir == "/" => Entries::Path(vec![b"/".to_vec()]),
            PathPattern::Subtree { dir, .. } => {
                let mut below = dir.as_bytes().to_vec();
                below.push(b'/');
                Entries::Path(vec![below, nul_terminated(dir)])
            }
            PathPattern::Name(name) => Entries::Name(NAME_EXACT, name.as_bytes().to_vec()),
            PathPattern::Suffix(suffix) => Entries::Name(NAME_SUFFIX, suffix.as_bytes().to_vec()),
        }
    }

    fn check_fits(&self) -> Result<(), String> {
        match self.entries() {
            Entries::Path(entries) => {
                let longest = entries.iter().map(Vec::len).max().unwrap_or(0);
                if longest > PATH_KEY_BYTES {
                    return Err(format!(
                        "pattern too long: its kernel entry is {longest} bytes, at most {PATH_KEY_BYTES} fit \
                         (paths up to {} bytes)",
                        PATH_KEY_BYTES - 1
                    ));
                }
            }
            Entries::Name(_, name) => {
                if name.len() > NAME_KEY_BYTES {
                    return Err(format!(
                        "file name too long: {} bytes, `**/` rules can name at most {NAME_KEY_BYTES} bytes",
                        name.len()
                    ));
                }
            }
        }
        Ok(())
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// `**/NAME` or `**/*SUFFIX`.
fn parse_name(name: &str) -> Result<PathPattern, String> {
    if name.is_empty() || name == "*" || name == "**" {
        return Err(
            "`**/` must be followed by a file name (`**/.env`) or `*.EXT` (`**/*.pem`); \
                    use `/**` to match everything"
                .into(),
        );
    }
    if name.contains('/') || name.contains("**") {
        return Err(format!(
            "`**/` must be followed by a single file name, not a path; {SUPPORTED}"
        ));
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not file names".into());
    }
    if let Some(suffix) = name.strip_prefix('*') {
        if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
            return Err(format!("`**/*SUFFIX` needs a suffix that starts with `.` and has no other `*`; {SUPPORTED}"));
        }
        // The kernel tries at most MAX_SUFFIX_TRIES dot positions of a basename, so a suffix with
        // more dots could never be found.
        let dots = suffix.matches('.').count() as u32;
        if dots > MAX_SUFFIX_TRIES {
            return Err(format!("suffix has {dots} dots; the kernel matches suffixes with at most {MAX_SUFFIX_TRIES}"));
        }
        return Ok(PathPattern::Suffix(suffix.to_string()));
    }
    if name.contains('*') {
        return Err(format!(
            "`*` inside a file name is only supported as `**/*.EXT`; {SUPPORTED}"
        ));
    }
    Ok(PathPattern::Name(name.to_string()))
}

/// Validate a normalized absolute path that may contain one whole `*` component; returns that
/// component's depth.
fn parse_absolute(path: &str) -> Result<Option<u32>, String> {
    if path == "/" {
        return Ok(None);
    }
    if path.ends_with('/') {
        return Err("remove the trailing `/` (write `/dir` for the directory itself, `/dir/**` for everything in it)".into());
    }
    let mut wildcard = None;
    for (i, component) in path[1..].split('/').enumerate() {
        let depth = i as u32 + 1;
        match component {
            "" => return Err("empty path component (`//`): write the normalized path".into()),
            "." | ".." => {
                return Err("`.` and `..` components are not allowed: write the normalized path (the kernel sees \
                            resolved paths)"
                    .into())
            }
            "**" => return Err(format!("`**` is only supported at the end (`/dir/**`) or start (`**/NAME`); {SUPPORTED}")),
            "*" => {
                if wildcard.is_some() {
                    return Err(format!("only one `*` component per pattern is supported; {SUPPORTED}"));
                }
                if depth > MAX_WILDCARD_DEPTH {
                    return Err(format!(
                        "`*` at depth {depth}: the kernel supports `*` components at depths 1..={MAX_WILDCARD_DEPTH}"
                    ));
                }
                wildcard = Some(depth);
            }
            c if c.contains('*') => {
                return Err(format!("`*` must be a whole path component (`/home/*/.ssh`); {SUPPORTED}"))
            }
            _ => {}
        }
    }
    Ok(wildcard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s, Allowed::All).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> String {
        PathPattern::parse(s, Allowed::All).expect_err(s)
    }

    #[test]
    fn the_kernels_deleted_mark_is_refused() {
        for bad in ["/a/x (deleted)", "/a (deleted)/**", "**/k.pem (deleted)"] {
            assert!(err(bad).contains("(deleted)"), "{bad}");
        }
        assert!(PathPattern::parse("/a/(deleted)", Allowed::All).is_ok());
    }

    #[test]
    fn forms_and_entries() {
        assert_eq!(p("/a/b").entries(), Entries::Path(vec![b"/a/b\0".to_vec()]));
        assert_eq!(
            p("/a/b/**").entries(),
            Entries::Path(vec![b"/a/b/".to_vec(), b"/a/b\0".to_vec()])
        );
        assert_eq!(p("/**").entries(), Entries::Path(vec![b"/".to_vec()]));
        assert_eq!(p("/").entries(), Entries::Path(vec![b"/\0".to_vec()]));
        let wild = p("/home/*/.ssh/**");
        assert_eq!(wild.wildcard_depth(), Some(2));
        assert_eq!(
            wild.entries(),
            Entries::Path(vec![b"/home/*/.ssh/".to_vec(), b"/home/*/.ssh\0".to_vec()])
        );
        assert_eq!(
            p("**/.env").entries(),
            Entries::Name(NAME_EXACT, b".env".to_vec())
        );
        assert_eq!(
            p("**/*.pem").entries(),
            Entries::Name(NAME_SUFFIX, b".pem".to_vec())
        );
        assert_eq!(p("**/*.tar.gz"), PathPattern::Suffix(".tar.gz".into()));
        assert_eq!(
            PathPattern::parse_abstract("@dbus").unwrap().entries(),
            Entries::Path(vec![b"@dbus\0".to_vec()])
        );
    }

    #[test]
    fn rejects_unrepresentable_forms() {
        assert!(
            err("/a/**/b").contains("`**` is only supported at the end"),
            "{}",
            err("/a/**/b")
        );
        assert!(err("/a/x*").contains("`*` must be a whole path component"));
        assert!(err("**/x*").contains("`*` inside a file name"));
        assert!(err("**/*pem").contains("starts with `.`"));
        assert!(err("**/a/b").contains("single file name"));
        assert!(err("/*/*").contains("only one `*` component"));
        assert!(err("~/.ssh").contains("`~` is not expanded"));
        assert!(err("relative/path").contains("must be absolute"));
        assert!(err("/a/").contains("trailing `/`"));
        assert!(err("/a//b").contains("empty path component"));
        assert!(err("/a/../b").contains("`.` and `..` components"));
        assert!(err("/a/*.{pem,key}").contains("glob character `{`"));
        assert!(err("**/*.a.b.c.d.e").contains("at most 4"));
        let deep = format!("/{}*", "d/".repeat(16));
        assert!(err(&deep).contains("depths 1..=16"), "{}", err(&deep));
        let long = format!("/{}", "x".repeat(251));
        assert!(
            err(&long).contains("pattern too long: its kernel entry is 253 bytes"),
            "{}",
            err(&long)
        );
        assert!(PathPattern::parse(&format!("/{}", "x".repeat(250)), Allowed::All).is_ok());
        assert!(err(&format!("**/{}", "n".repeat(61))).contains("at most 60 bytes"));
        assert!(PathPattern::parse("/usr/bin/*", Allowed::ExactOrSubtree).is_err());
        assert!(PathPattern::parse("/usr/bin/**", Allowed::ExactOrSubtree).is_ok());
    }
}
