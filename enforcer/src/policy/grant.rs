//! Grants: temporary allows (`enforcer grant`). A grant is one more rule of its agent, with the
//! text id `grant:<id>` and the condition "from when it was given until it expires", so it
//! compiles, merges and is evaluated like any conditional allow, and the kernel ends it on time
//! by itself (see `when`). An explicit deny still beats a grant.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{
    compile::{RuleKind, SourceLoc},
    model::{Located, PolicySet, Rule, RuleTarget},
    net::NetTarget,
    pattern::{Allowed, PathPattern},
    when::Condition,
};

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
    /// Whether the grant still allows at `now` (it ends at `expires`, as its kernel window does).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires > now
    }

    pub fn text_id(&self) -> String {
        format!("grant:{}", self.id)
    }

    /// The grant as a rule of its agent.
    pub fn to_rule(&self) -> Result<Rule, String> {
        let (kind, pattern) = parse_rule(&self.rule)?;
        let target = match kind {
            RuleKind::NetConnect => {
                let target = NetTarget::parse(&pattern).map(RuleTarget::from)?;
                if !matches!(target, RuleTarget::Ip(_)) {
                    return Err(format!(
                        "`{pattern}`: network grants name addresses or hosts (unix socket paths are not decided with expiries in the kernel)"
                    ));
                }
                target
            }
            _ => PathPattern::parse(&pattern, Allowed::All)
                .map(RuleTarget::Path)
                .map_err(|e| format!("`{pattern}`: {e}"))?,
        };
        Ok(Rule {
            text_id: self.text_id(),
            explicit_id: true,
            kind,
            pattern,
            at: Located {
                loc: SourceLoc {
                    file: PathBuf::from(format!("<{}>", self.text_id())),
                    line: 1,
                    col: 1,
                },
                span: 0..0,
            },
            target,
            when: Some(Condition::Between {
                start: self.granted_at,
                end: self.expires,
            }),
        })
    }
}

/// `<field> <pattern>` (also `<field> = <pattern>`, the pattern optionally quoted): an allow
/// field as policies write it - `net.connect`, `file.read`, `file.write`, `exec.allow` (`exec`
/// for short) - whose expiry the kernel checks in its network and path rules.
pub fn parse_rule(text: &str) -> Result<(RuleKind, String), String> {
    let text = text.trim();
    let (field, rest) = text
        .split_once(|c: char| c.is_whitespace() || c == '=')
        .ok_or_else(|| format!("`{text}`: expected `<field> <pattern>`, e.g. `net.connect 10.0.0.5:443` or `file.read /data/x/**`"))?;
    let pattern = rest
        .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
        .trim()
        .trim_matches('"');
    let kind = match field {
        "net.connect" => RuleKind::NetConnect,
        "file.read" => RuleKind::FileRead,
        "file.write" => RuleKind::FileWrite,
        "exec.allow" | "exec" => RuleKind::ExecAllow,
        other => {
            return Err(format!(
                "`{other}`: a grant is an allow rule; expected `net.connect`, `file.read`, `file.write` or `exec.allow`"
            ))
        }
    };
    if pattern.is_empty() {
        return Err(format!("`{text}`: the pattern is missing"));
    }
    Ok((kind, pattern.to_owned()))
}

/// Add the grants that are live at `now` to their agents, after the agents' own rules (a grant
/// of an agent that is no longer in the policy is inert). Errors name the grant.
pub fn add_to_set(set: &mut PolicySet, grants: &[Grant], now: Timestamp) -> Result<(), String> {
    for g in grants.iter().filter(|g| g.is_live(now)) {
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
    use crate::policy::{
        compile,
        eval::{evaluate_at, Request, Verdict},
        load_sources, ResolvedHosts,
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn grant(id: u32, rule: &str, from: &str, to: &str) -> Grant {
        Grant {
            id,
            agent: "a".into(),
            rule: rule.into(),
            granted_at: ts(from),
            expires: ts(to),
            reason: None,
            uid: 0,
        }
    }

    #[test]
    fn rule_text_errors_are_precise() {
        assert_eq!(
            parse_rule("net.connect 10.0.0.5:443").unwrap().1,
            "10.0.0.5:443"
        );
        assert_eq!(
            parse_rule("net.connect = \"10.0.0.5:443\"").unwrap().1,
            "10.0.0.5:443"
        );
        assert_eq!(
            parse_rule("file.read /etc/x").unwrap(),
            (RuleKind::FileRead, "/etc/x".into())
        );
        assert_eq!(
            parse_rule("file.write = \"/data/**\"").unwrap(),
            (RuleKind::FileWrite, "/data/**".into())
        );
        assert_eq!(
            parse_rule("exec /usr/bin/x").unwrap(),
            (RuleKind::ExecAllow, "/usr/bin/x".into())
        );
        assert_eq!(
            parse_rule("exec.allow /usr/bin/x").unwrap().0,
            RuleKind::ExecAllow
        );
        assert!(parse_rule("file.deny /etc/x")
            .unwrap_err()
            .contains("a grant is an allow rule"));
        assert!(grant(
            1,
            "file.read data/x",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z"
        )
        .to_rule()
        .unwrap_err()
        .contains("`data/x`"));
        assert!(parse_rule("net.deny 1.2.3.4")
            .unwrap_err()
            .contains("a grant is an allow rule"));
        assert!(parse_rule("net.connect")
            .unwrap_err()
            .contains("expected `<field> <pattern>`"));
        assert!(grant(
            1,
            "net.connect unix:/run/x.sock",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z"
        )
        .to_rule()
        .unwrap_err()
        .contains("unix socket"));
        assert!(grant(
            1,
            "net.connect 10.0.0.500",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z"
        )
        .to_rule()
        .is_err());
    }

    #[test]
    fn grants_allow_until_expiry_and_never_beat_a_deny() {
        let body =
            "[agent]\nname = \"a\"\n[net]\nconnect = [\"10.0.0.1:80\"]\ndeny = [\"10.0.0.9\"]\n";
        let mut set = load_sources(&[("a.toml", body)]).unwrap();
        let grants = [
            grant(
                1,
                "net.connect 10.0.0.0/24:443",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:10:00Z",
            ),
            grant(
                2,
                "net.connect 10.0.0.0/24:443",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:20:00Z",
            ),
            grant(
                3,
                "net.connect 10.0.0.0/24:22",
                "2026-01-01T09:00:00Z",
                "2026-01-01T09:30:00Z",
            ),
        ];
        add_to_set(&mut set, &grants, ts("2026-01-01T10:05:00Z")).unwrap();
        let p = compile(&set, &ResolvedHosts::new()).unwrap();
        let c = |addr: &str, port, now: &str| {
            let r = Request::Connect {
                addr: addr.parse::<IpAddr>().unwrap(),
                port,
                udp: false,
            };
            let d = evaluate_at(&p, 1, &r, ts(now));
            (
                d.verdict,
                p.rule(d.rule).map_or(String::new(), |r| r.text_id.clone()),
            )
        };
        assert_eq!(
            c("10.0.0.5", 443, "2026-01-01T10:05:00Z"),
            (Verdict::Allow, "grant:1".into())
        );
        // Two grants on one target: the union of their lifetimes.
        assert_eq!(
            c("10.0.0.5", 443, "2026-01-01T10:15:00Z"),
            (Verdict::Allow, "grant:2".into())
        );
        assert_eq!(
            c("10.0.0.5", 443, "2026-01-01T10:20:00Z"),
            (Verdict::Deny, "".into())
        );
        assert_eq!(
            c("10.0.0.9", 443, "2026-01-01T10:05:00Z"),
            (Verdict::Deny, "a.toml:5".into()),
            "a deny beats a grant"
        );
        assert_eq!(
            c("10.0.0.1", 80, "2026-01-01T10:05:00Z"),
            (Verdict::Allow, "a.toml:4".into())
        );
        // Expired grants are not compiled at all.
        assert!(p.rules.iter().all(|r| r.text_id != "grant:3"));
    }

    #[test]
    fn file_and_exec_grants_allow_until_expiry_and_never_beat_a_deny() {
        let body = "[agent]\nname = \"a\"\n[file]\nread = [\"/data/**\"]\ndeny_read = [\"/data/x/secret\"]\n";
        let mut set = load_sources(&[("a.toml", body)]).unwrap();
        let grants = [
            grant(
                1,
                "file.read /srv/x/**",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:10:00Z",
            ),
            grant(
                2,
                "file.read /data/x/**",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:10:00Z",
            ),
            grant(
                3,
                "exec /usr/bin/tool",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:10:00Z",
            ),
            grant(
                4,
                "file.write /srv/x/out",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:10:00Z",
            ),
        ];
        add_to_set(&mut set, &grants, ts("2026-01-01T10:05:00Z")).unwrap();
        let p = compile(&set, &ResolvedHosts::new()).unwrap();
        let at = |r: Request, now: &str| {
            let d = evaluate_at(&p, 1, &r, ts(now));
            (
                d.verdict,
                p.rule(d.rule).map_or(String::new(), |r| r.text_id.clone()),
            )
        };
        let read = |path: &str| Request::Open {
            path: path.into(),
            read: true,
            write: false,
        };
        let write = |path: &str| Request::Open {
            path: path.into(),
            read: false,
            write: true,
        };
        let exec = |path: &str| Request::Exec { path: path.into() };
        assert_eq!(
            at(read("/srv/x/a"), "2026-01-01T10:05:00Z"),
            (Verdict::Allow, "grant:1".into())
        );
        assert_eq!(
            at(read("/srv/x/a"), "2026-01-01T10:10:00Z"),
            (Verdict::Deny, "".into()),
            "expired"
        );
        assert_eq!(
            at(write("/srv/x/a"), "2026-01-01T10:05:00Z"),
            (Verdict::Deny, "".into()),
            "a read grant is no write"
        );
        assert_eq!(
            at(write("/srv/x/out"), "2026-01-01T10:05:00Z"),
            (Verdict::Allow, "grant:4".into())
        );
        assert_eq!(
            at(exec("/usr/bin/tool"), "2026-01-01T10:05:00Z"),
            (Verdict::Allow, "grant:3".into())
        );
        assert_eq!(
            at(exec("/usr/bin/tool"), "2026-01-01T10:11:00Z"),
            (Verdict::Deny, "".into())
        );
        // Under a standing allow, an expired grant leaves the standing allow.
        assert_eq!(
            at(read("/data/x/a"), "2026-01-01T10:05:00Z"),
            (Verdict::Allow, "grant:2".into())
        );
        assert_eq!(
            at(read("/data/x/a"), "2026-01-01T10:30:00Z"),
            (Verdict::Allow, "a.toml:4".into())
        );
        assert_eq!(
            at(read("/data/x/secret"), "2026-01-01T10:05:00Z"),
            (Verdict::Deny, "a.toml:5".into()),
            "a deny beats a grant"
        );
    }
}
