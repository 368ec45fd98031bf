//! The TOML schema as written, with spans, before validation. `deny_unknown_fields` everywhere:
//! a misspelled field is an error, never ignored.

use std::{fmt, ops::Range};

use serde::{
    de::{self, MapAccess, Visitor},
    Deserialize, Deserializer,
};
use toml::Spanned;

use super::compile::{Mode, OnViolation};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub include: Option<Vec<Spanned<String>>>,
    pub agent: Option<Spanned<RawAgent>>,
    pub set: Option<Spanned<RawSet>>,
    pub file: Option<RawFileRules>,
    pub exec: Option<RawExecRules>,
    pub net: Option<RawNetRules>,
    pub process: Option<Spanned<RawProcess>>,
}

/// `[process]`: what an agent may do to its own view of the file system (docs/policy.md,
/// "Processes, mounts and namespaces"). Everything false unless written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    #[serde(default)]
    pub mount: bool,
    #[serde(default)]
    pub chroot: bool,
    #[serde(default)]
    pub userns: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub mode: Option<Mode>,
    pub on_violation: Option<OnViolation>,
    pub delegate: Option<Vec<Spanned<String>>>,
    #[serde(rename = "match")]
    pub match_: Option<RawMatch>,
    pub log: Option<RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub exe: Option<Vec<Spanned<PathRuleSpec>>>,
    pub cgroup: Option<Vec<Spanned<PathRuleSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub file_allow: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileRules {
    pub read: Option<Vec<Spanned<PathRuleSpec>>>,
    pub write: Option<Vec<Spanned<PathRuleSpec>>>,
    pub deny: Option<Vec<Spanned<PathRuleSpec>>>,
    pub deny_read: Option<Vec<Spanned<PathRuleSpec>>>,
    pub deny_write: Option<Vec<Spanned<PathRuleSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecRules {
    pub allow: Option<Vec<Spanned<PathRuleSpec>>>,
    pub deny: Option<Vec<Spanned<PathRuleSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetRules {
    pub connect: Option<Vec<Spanned<NetRuleSpec>>>,
    pub deny: Option<Vec<Spanned<NetRuleSpec>>>,
    pub listen: Option<Vec<Spanned<NetRuleSpec>>>,
    /// Socket kinds beyond TCP, UDP, unix and netlink-route (`SOCKET_KINDS`).
    pub sockets: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A rule as written: a plain pattern string, or a table carrying the pattern and an id.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub pattern: String,
    /// Span of the pattern string itself when written as a table (else the outer span is it).
    pub pattern_span: Option<Range<usize>>,
    pub id: Option<Spanned<String>>,
    /// `when = { hours = "09:00-18:00", tz = "Europe/Paris" }` (or dotted `when.hours = ...`).
    pub when: Option<RawWhen>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    pub hours: Spanned<String>,
    pub tz: Option<Spanned<String>>,
}

/// File, exec and match rules: `"/pattern"` or `{ path = "/pattern", id = "..." }`.
#[derive(Debug, Clone)]
pub struct PathRuleSpec(pub RuleSpec);

/// Net rules: `"host:443"` or `{ to = "host:443", id = "..." }`.
#[derive(Debug, Clone)]
pub struct NetRuleSpec(pub RuleSpec);

impl<'de> Deserialize<'de> for PathRuleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RuleVisitor { key: "path" })
            .map(PathRuleSpec)
    }
}

impl<'de> Deserialize<'de> for NetRuleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RuleVisitor { key: "to" })
            .map(NetRuleSpec)
    }
}

struct RuleVisitor {
    /// The table key holding the pattern.
    key: &'static str,
}

impl<'de> Visitor<'de> for RuleVisitor {
    type Value = RuleSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a pattern string or a table {{ {} = \"...\", id = \"...\" }}",
            self.key
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RuleSpec, E> {
        Ok(RuleSpec {
            pattern: v.to_string(),
            pattern_span: None,
            id: None,
            when: None,
        })
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RuleSpec, M::Error> {
        let fields: &'static [&'static str] = if self.key == "path" {
            &["path", "id", "when"]
        } else {
            &["to", "id", "when"]
        };
        let mut pattern: Option<Spanned<String>> = None;
        let mut id: Option<Spanned<String>> = None;
        let mut when: Option<RawWhen> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.key {
                pattern = Some(map.next_value()?);
            } else if key == "id" {
                id = Some(map.next_value()?);
            } else if key == "when" {
                when = Some(map.next_value()?);
            } else {
                return Err(de::Error::unknown_field(&key, fields));
            }
        }
        let pattern = pattern.ok_or_else(|| de::Error::missing_field(self.key))?;
        let span = pattern.span();
        Ok(RuleSpec {
            pattern: pattern.into_inner(),
            pattern_span: Some(span),
            id,
            when,
        })
    }
}
