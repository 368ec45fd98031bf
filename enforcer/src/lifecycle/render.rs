//! Writing a learned policy as TOML a person can review: one rule per line, each with a comment
//! saying what was observed.

use std::fmt::Write as _;

/// A rule (or an include) and its comment (empty: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commented {
    pub value: String,
    pub comment: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyText {
    /// Comment lines at the top of the file.
    pub header: Vec<String>,
    pub includes: Vec<Commented>,
    pub agent: String,
    pub description: String,
    /// Comment lines inside `[agent]`.
    pub agent_notes: Vec<String>,
    pub read: Vec<Commented>,
    pub write: Vec<Commented>,
    pub deny: Vec<Commented>,
    /// Comment line above `deny`.
    pub deny_note: String,
    pub exec: Vec<Commented>,
    pub connect: Vec<Commented>,
    pub net_deny: Vec<Commented>,
}

pub fn render(p: &PolicyText) -> String {
    let mut out = String::new();
    for line in &p.header {
        comment_line(&mut out, "", line);
    }
    list(&mut out, "include", &p.includes);
    out.push_str("\n[agent]\n");
    let _ = writeln!(out, "name = {}", quote(&p.agent));
    let _ = writeln!(out, "description = {}", quote(&p.description));
    out.push_str("mode = \"enforce\"\n");
    for line in &p.agent_notes {
        comment_line(&mut out, "", line);
    }
    out.push_str("\n[file]\n");
    list(&mut out, "read", &p.read);
    list(&mut out, "write", &p.write);
    comment_line(&mut out, "", &p.deny_note);
    list(&mut out, "deny", &p.deny);
    if !p.exec.is_empty() {
        out.push_str("\n[exec]\n");
        list(&mut out, "allow", &p.exec);
    }
    out.push_str("\n[net]\n");
    list(&mut out, "connect", &p.connect);
    list(&mut out, "deny", &p.net_deny);
    out
}

/// `key = [ ... ]`, one entry per line with its comment; nothing for an empty list.
fn list(out: &mut String, key: &str, items: &[Commented]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{key} = [");
    let width = items
        .iter()
        .map(|i| quote(&i.value).len() + 1)
        .max()
        .unwrap_or(0);
    for item in items {
        let entry = format!("{},", quote(&item.value));
        if item.comment.is_empty() {
            let _ = writeln!(out, "  {entry}");
        } else {
            let _ = writeln!(out, "  {entry:<width$}  # {}", one_line(&item.comment));
        }
    }
    out.push_str("]\n");
}

fn comment_line(out: &mut String, indent: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}# {}", one_line(text));
}

/// Comments end at a line break: observed paths may hold any character (terminal-safe escape).
fn one_line(text: &str) -> String {
    crate::audit::text::escape(text).into_owned()
}

/// A TOML basic string.
pub fn quote(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            // Controls, bidi overrides and invisible characters: TOML's `\uXXXX` keeps the value
            // exact and the file readable on a terminal.
            c if crate::audit::text::needs_escape(c) => {
                if (c as u32) > 0xffff {
                    let _ = write!(s, "\\U{:08X}", c as u32);
                } else {
                    let _ = write!(s, "\\u{:04X}", c as u32);
                }
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
