//! Grants: temporary allows (`enforcer grant`). A grant is one more rule of its agent, with the
//! text id `grant:<id>` and the condition "from when it was given until it expires", so it
//! compiles, merges and is evaluated like any conditional allow, and the kernel ends it on time
//! by itself (see `when`). An explicit deny still beats a grant.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::compile::{RuleKind, SourceLoc};
use super::model::{Located, PolicySet, Rule, RuleTarget};
use super::net::NetTarget;
use super::when::Condition;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: u32,
    pub agent: String,
    /// The rule as given: `<field> <pattern>`, e.g. `net.connect 10.0.0.5:443`.
    pub rule: String,
    pub granted_at: Timestamp,
    pub expires: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked (uid of the API caller).
    pub uid: u32,
}

impl Grant {
    pub fn text_id(&self) -> String {
        format!("grant:{}", self.id)
    }

    /// The grant as a rule of its agent.
    pub fn to_rule(&self) -> Result<Rule, String> {
        let (kind, pattern) = parse_rule(&self.rule)?;
        let target = NetTarget::parse(&pattern).map(RuleTarget::from)?;
        if !matches!(target, RuleTarget::Ip(_)) {
            return Err(format!(
                "`{pattern}`: grants name addresses or hosts (unix socket paths are not decided with expiries in the kernel)"
            ));
        }
        Ok(Rule {
            text_id: self.text_id(),
            explicit_id: true,
            kind,
            pattern,
            at: Located {
                loc: SourceLoc { file: PathBuf::from(format!("<{}>", self.text_id())), line: 1, col: 1 },
                span: 0..0,
            },
            target,
            when: Some(Condition::Between { start: self.granted_at, end: self.expires }),
        })
    }
}

/// `<field> <pattern>` (also `<field> = <pattern>`, the pattern optionally quoted). Only
/// `net.connect`: the kernel checks expiries in its network rules only.
pub fn parse_rule(text: &str) -> Result<(RuleKind, String), String> {
    let text = text.trim();
    let (field, rest) = text
        .split_once(|c: char| c.is_whitespace() || c == '=')
        .ok_or_else(|| format!("`{text}`: expected `<field> <pattern>`, e.g. `net.connect 10.0.0.5:443`"))?;
    let pattern = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim().trim_matches('"');
    match field {
        "net.connect" => {}
        "file.read" | "file.write" | "exec.allow" => {
            return Err(format!(
                "`{field}`: grants are supported for net.connect rules only (the kernel checks expiries in its network rules only)"
            ))
        }
        other => return Err(format!("`{other}`: a grant is an allow rule; expected `net.connect`")),
    }
    if pattern.is_empty() {
        return Err(format!("`{text}`: the pattern is missing"));
    }
    Ok((RuleKind::NetConnect, pattern.to_owned()))
}

/// Add the grants that are live at `now` to their agents, after the agents' own rules (a grant
/// of an agent that is no longer in the policy is inert). Errors name the grant.
pub fn add_to_set(set: &mut PolicySet, grants: &[Grant], now: Timestamp) -> Result<(), String> {
    for g in grants.iter().filter(|g| g.expires > now) {
        let rule = g.to_rule().map_err(|e| format!("{}: {e}", g.text_id()))?;
        if let Some(agent) = set.agents.iter_mut().find(|a| a.name == g.agent) {
            agent.rules.push(rule);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::policy::eval::{evaluate_at, Request, Verdict};
    use crate::policy::{compile, load_sources, ResolvedHosts};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn grant(id: u32, rule: &str, from: &str, to: &str) -> Grant {
        Grant { id, agent: "a".into(), rule: rule.into(), granted_at: ts(from), expires: ts(to), reason: None, uid: 0 }
    }

    #[test]
    fn rule_text_errors_are_precise() {
        assert_eq!(parse_rule("net.connect 10.0.0.5:443").unwrap().1, "10.0.0.5:443");
        assert_eq!(parse_rule("net.connect = \"10.0.0.5:443\"").unwrap().1, "10.0.0.5:443");
        assert!(parse_rule("file.read /etc/x").unwrap_err().contains("net.connect rules only"));
        assert!(parse_rule("net.deny 1.2.3.4").unwrap_err().contains("a grant is an allow rule"));
        assert!(parse_rule("net.connect").unwrap_err().contains("expected `<field> <pattern>`"));
        assert!(grant(1, "net.connect unix:/run/x.sock", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z").to_rule().unwrap_err().contains("unix socket"));
        assert!(grant(1, "net.connect 10.0.0.500", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z").to_rule().is_err());
    }

    #[test]
    fn grants_allow_until_expiry_and_never_beat_a_deny() {
        let body = "[agent]\nname = \"a\"\n[net]\nconnect = [\"10.0.0.1:80\"]\ndeny = [\"10.0.0.9\"]\n";
        let mut set = load_sources(&[("a.toml", body)]).unwrap();
        let grants = [
            grant(1, "net.connect 10.0.0.0/24:443", "2026-01-01T10:00:00Z", "2026-01-01T10:10:00Z"),
            grant(2, "net.connect 10.0.0.0/24:443", "2026-01-01T10:00:00Z", "2026-01-01T10:20:00Z"),
            grant(3, "net.connect 10.0.0.0/24:22", "2026-01-01T09:00:00Z", "2026-01-01T09:30:00Z"),
        ];
        add_to_set(&mut set, &grants, ts("2026-01-01T10:05:00Z")).unwrap();
        let p = compile(&set, &ResolvedHosts::new()).unwrap();
        let c = |addr: &str, port, now: &str| {
            let r = Request::Connect { addr: addr.parse::<IpAddr>().unwrap(), port, udp: false };
            let d = evaluate_at(&p, 1, &r, ts(now));
            (d.verdict, p.rule(d.rule).map_or(String::new(), |r| r.text_id.clone()))
        };
        assert_eq!(c("10.0.0.5", 443, "2026-01-01T10:05:00Z"), (Verdict::Allow, "grant:1".into()));
        // Two grants on one target: the union of their lifetimes.
        assert_eq!(c("10.0.0.5", 443, "2026-01-01T10:15:00Z"), (Verdict::Allow, "grant:2".into()));
        assert_eq!(c("10.0.0.5", 443, "2026-01-01T10:20:00Z"), (Verdict::Deny, "".into()));
        assert_eq!(c("10.0.0.9", 443, "2026-01-01T10:05:00Z"), (Verdict::Deny, "a.toml:5".into()), "a deny beats a grant");
        assert_eq!(c("10.0.0.1", 80, "2026-01-01T10:05:00Z"), (Verdict::Allow, "a.toml:4".into()));
        // Expired grants are not compiled at all.
        assert!(p.rules.iter().all(|r| r.text_id != "grant:3"));
    }
}
