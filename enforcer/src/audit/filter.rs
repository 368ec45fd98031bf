//! Record selection for `enforcer events`.

use super::{
    clock::parse_rfc3339,
    names::{is_op_name, is_verdict_name, OPS, VERDICTS},
    Record,
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these agents (the acting agent, or any agent of its chain); empty: all.
    pub agents: Vec<String>,
    pub verdicts: Vec<String>,
    pub ops: Vec<String>,
    /// Records at or after this wall-clock time (epoch ns).
    pub since_ns: Option<i128>,
    /// Session id (hex, leading zeros optional).
    pub session: Option<String>,
}

impl Filter {
    /// Check the names against the schema, so a typo is an error instead of an empty result.
    pub fn validate(&self) -> Result<(), String> {
        for op in &self.ops {
            if !is_op_name(op) {
                let known: Vec<&str> = OPS.iter().map(|(_, n)| *n).collect();
                return Err(format!("unknown op {op:?} (ops: {})", known.join(", ")));
            }
        }
        for verdict in &self.verdicts {
            if !is_verdict_name(verdict) {
                let known: Vec<&str> = VERDICTS.iter().map(|(_, n)| *n).collect();
                return Err(format!(
                    "unknown verdict {verdict:?} (verdicts: {})",
                    known.join(", ")
                ));
            }
        }
        if let Some(session) = &self.session {
            if session.is_empty()
                || session.len() > 16
                || !session.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(format!(
                    "session {session:?} is not a session id (up to 16 hex digits)"
                ));
            }
        }
        Ok(())
    }

    /// Event filters (verdict, op, session) select events only; lifecycle records are shown
    /// when none is set, loss records always (unless they name another agent): a gap in the
    /// events must stay visible whatever the selection.
    pub fn matches(&self, record: &Record) -> bool {
        if let Some(since) = self.since_ns {
            if parse_rfc3339(record.time()).is_some_and(|t| t < since) {
                return false;
            }
        }
        let agent_ok = |agent: Option<&String>, chain: &[String]| {
            self.agents.is_empty()
                || agent.is_some_and(|a| self.agents.contains(a))
                || chain.iter().any(|a| self.agents.contains(a))
        };
        match record {
            Record::Event(e) => {
                agent_ok(e.agent.as_ref(), &e.chain)
                    && (self.verdicts.is_empty() || self.verdicts.contains(&e.verdict))
                    && (self.ops.is_empty() || self.ops.contains(&e.op))
                    && self
                        .session
                        .as_ref()
                        .is_none_or(|s| same_session(s, &e.session))
            }
            Record::Lost(l) => l.agent.is_none() || agent_ok(l.agent.as_ref(), &[]),
            Record::Daemon(d) => {
                self.verdicts.is_empty()
                    && self.ops.is_empty()
                    && self
                        .session
                        .as_ref()
                        .is_none_or(|s| d.session.as_ref().is_some_and(|ds| same_session(s, ds)))
                    && (self.agents.is_empty() || agent_ok(d.agent.as_ref(), &[]))
            }
        }
    }
}

fn same_session(wanted: &str, recorded: &str) -> bool {
    u64::from_str_radix(wanted, 16).ok() == u64::from_str_radix(recorded, 16).ok()
}

/// `--since`: an RFC 3339 time, or a duration before `now_ns` (`10m`, `2h 30m`, `1day`).
pub fn parse_since(text: &str, now_ns: i128) -> Result<i128, String> {
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    humantime::parse_duration(text)
        .map(|d| now_ns - d.as_nanos() as i128)
        .map_err(|e| format!("--since {text:?}: neither an RFC 3339 time (2026-11-23T14:00:00Z) nor a duration (10m, 2h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{DaemonRecord, EventRecord, LostRecord};

    fn event(agent: &str, op: &str, verdict: &str, session: &str, time: &str) -> Record {
        Record::Event(EventRecord {
            agent: Some(agent.into()),
            op: op.into(),
            verdict: verdict.into(),
            session: session.into(),
            time: time.into(),
            ..Default::default()
        })
    }

    const T1: &str = "2026-11-23T14:00:00.000000000Z";
    const T2: &str = "2026-11-23T15:00:00.000000000Z";

    #[test]
    fn each_filter_selects_events() {
        let a = event("coder", "open", "deny", "00000000000000ab", T1);
        let b = event("helper", "connect", "allow", "00000000000000cd", T2);
        let check = |f: Filter, expect_a: bool, expect_b: bool| {
            assert_eq!(
                (f.matches(&a), f.matches(&b)),
                (expect_a, expect_b),
                "{f:?}"
            );
        };
        check(Filter::default(), true, true);
        check(
            Filter {
                agents: vec!["coder".into()],
                ..Default::default()
            },
            true,
            false,
        );
        check(
            Filter {
                verdicts: vec!["allow".into()],
                ..Default::default()
            },
            false,
            true,
        );
        check(
            Filter {
                ops: vec!["open".into(), "exec".into()],
                ..Default::default()
            },
            true,
            false,
        );
        check(
            Filter {
                session: Some("ab".into()),
                ..Default::default()
            },
            true,
            false,
        );
        check(
            Filter {
                since_ns: parse_rfc3339("2026-11-23T14:30:00Z"),
                ..Default::default()
            },
            false,
            true,
        );
    }

    #[test]
    fn chains_match_any_of_their_agents() {
        let mut rec = EventRecord {
            agent: Some("helper".into()),
            chain: vec!["coder".into(), "helper".into()],
            ..Default::default()
        };
        rec.time = T1.into();
        let f = Filter {
            agents: vec!["coder".into()],
            ..Default::default()
        };
        assert!(f.matches(&Record::Event(rec)));
    }

    #[test]
    fn losses_stay_visible_and_lifecycle_records_only_without_event_filters() {
        let lost = Record::Lost(LostRecord {
            count: 1,
            source: "kernel".into(),
            time: T1.into(),
            ..Default::default()
        });
        let start = Record::Daemon(DaemonRecord {
            event: "start".into(),
            time: T1.into(),
            ..Default::default()
        });
        let deny_only = Filter {
            verdicts: vec!["deny".into()],
            ..Default::default()
        };
        assert!(
            deny_only.matches(&lost),
            "a loss must show whatever the verdict filter"
        );
        assert!(!deny_only.matches(&start));
        assert!(Filter::default().matches(&start));
        let other_agent = Record::Lost(LostRecord {
            agent: Some("helper".into()),
            time: T1.into(),
            ..Default::default()
        });
        assert!(!Filter {
            agents: vec!["coder".into()],
            ..Default::default()
        }
        .matches(&other_agent));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let err = Filter {
            ops: vec!["opne".into()],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.contains("unknown op \"opne\"") && err.contains("open, exec"),
            "{err}"
        );
        let err = Filter {
            verdicts: vec!["denied".into()],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("audit-deny"), "{err}");
        assert!(Filter {
            session: Some("xyz".into()),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(Filter {
            verdicts: vec!["kill".into()],
            ops: vec!["sendmsg".into()],
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn since_takes_times_and_durations() {
        let now = parse_rfc3339(T2).unwrap();
        assert_eq!(parse_since("10m", now), Ok(now - 600_000_000_000));
        assert_eq!(parse_since(T1, now), Ok(parse_rfc3339(T1).unwrap()));
        assert!(parse_since("last tuesday", now)
            .unwrap_err()
            .contains("--since \"last tuesday\""));
    }
}
