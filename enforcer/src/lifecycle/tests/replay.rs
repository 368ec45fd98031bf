use super::*;
use crate::{
    lifecycle::{
        replay::{Replay, ReplayReport},
        requests::{HostsSeen, Skip},
    },
    policy::{self, ResolvedHosts},
};

const CANDIDATE: &str = r#"
[agent]
name = "coder"

[file]
read = [{ path = "/work/project/**", id = "project" }]
deny = [{ path = "/home/*/.ssh/**", id = "ssh" }]

[net]
connect = [{ to = "10.0.0.5:5432/tcp", id = "db" }, { to = "github.com:443/tcp", id = "gh" }]
"#;

fn replay_with(events: &[EventRecord], only: Option<&str>, hosts: &ResolvedHosts) -> ReplayReport {
    let set = policy::load_sources(&[("coder.toml", CANDIDATE)]).unwrap();
    let compiled = policy::compile(&set, hosts).unwrap();
    let mut replay = Replay::new(&compiled, only);
    for e in events {
        replay.add(e);
    }
    replay.finish()
}

fn log() -> Vec<EventRecord> {
    let (_, events) = through_log(
        "replay",
        &[
            // Unchanged: allowed before, allowed by `project`.
            read("coder", "/work/project/src/main.rs", "allow"),
            read("coder", "/work/project/src/main.rs", "allow"),
            read("coder", "/work/project/src/main.rs", "allow"),
            read("coder", "/work/project/Cargo.toml", "allow"),
            // Newly denied: the candidate does not grant /etc/hostname.
            read("coder", "/etc/hostname", "allow"),
            read("coder", "/etc/hostname", "allow"),
            // A write where only reads are granted: newly denied, its own group.
            open(
                "coder",
                "/work/project/src/main.rs",
                &["read", "write"],
                "allow",
                "old.toml:4",
                Some("/work/**"),
            ),
            // Unchanged deny.
            read("coder", "/home/dev/.ssh/id_rsa", "deny"),
            // Newly allowed: audit-denied before, the candidate grants the database.
            connect(
                "coder",
                "10.0.0.5",
                5432,
                "tcp",
                "audit-deny",
                "default-deny",
                None,
            ),
            // Unchanged: the host the log names gets the address it allowed.
            connect(
                "coder",
                "140.82.112.3",
                443,
                "tcp",
                "allow",
                "old.toml:9",
                Some("github.com:443"),
            ),
            // Another agent: reported, not replayed.
            read("helper", "/srv/x", "allow"),
            // Not replayable.
            join("coder"),
            EventRecord {
                flags: vec!["target-cut".into()],
                ..read("coder", "/work/project/long", "allow")
            },
        ],
    );
    events
}

#[test]
fn finds_exactly_the_changes_grouped_with_counts() {
    let events = log();
    let mut seen = HostsSeen::default();
    events.iter().for_each(|e| seen.add(e));
    let r = replay_with(&events, None, &seen.resolved());

    assert_eq!(r.events, 13);
    assert_eq!(r.replayed, 10);
    assert_eq!(r.unchanged, 6);
    assert_eq!(r.newly_denied.len(), 2, "{:#?}", r.newly_denied);
    let hostname = &r.newly_denied[0];
    assert_eq!(
        (
            hostname.agent.as_str(),
            hostname.op.as_str(),
            hostname.access.as_str(),
            hostname.target.as_str(),
            hostname.count
        ),
        ("coder", "open", "read", "/etc/hostname", 2)
    );
    assert_eq!(
        (hostname.old.verdict.as_str(), hostname.old.rule.as_str()),
        ("allow", "p.toml:3")
    );
    assert_eq!(
        (
            hostname.new.verdict.as_str(),
            hostname.new.rule.as_str(),
            hostname.new.pattern.as_deref()
        ),
        ("deny", "default-deny", None)
    );
    let rw = &r.newly_denied[1];
    assert_eq!(
        (rw.access.as_str(), rw.target.as_str(), rw.count),
        ("read+write", "/work/project/src/main.rs", 1)
    );
    assert_eq!(rw.old.pattern.as_deref(), Some("/work/**"));

    assert_eq!(r.newly_allowed.len(), 1);
    let db = &r.newly_allowed[0];
    assert_eq!(
        (
            db.op.as_str(),
            db.access.as_str(),
            db.target.as_str(),
            db.count
        ),
        ("connect", "tcp", "10.0.0.5:5432/tcp", 1)
    );
    assert_eq!(
        (
            db.old.verdict.as_str(),
            db.new.verdict.as_str(),
            db.new.rule.as_str()
        ),
        ("audit-deny", "allow", "db")
    );
    assert_eq!(db.new.pattern.as_deref(), Some("10.0.0.5:5432/tcp"));

    assert_eq!(r.unknown_agents.len(), 1);
    assert_eq!(
        (
            r.unknown_agents[0].agent.as_str(),
            r.unknown_agents[0].events
        ),
        ("helper", 1)
    );
    let skipped: Vec<(Skip, u64)> = r.skipped.iter().map(|s| (s.reason, s.events)).collect();
    assert_eq!(
        skipped,
        vec![(Skip::NotADecision, 1), (Skip::IncompleteTarget, 1)]
    );
    assert!(r.changed());
}

#[test]
fn host_rules_without_the_logs_addresses_match_nothing() {
    let r = replay_with(&log(), None, &ResolvedHosts::new());
    assert!(
        r.newly_denied
            .iter()
            .any(|c| c.target == "140.82.112.3:443/tcp" && c.new.rule == "default-deny"),
        "{:#?}",
        r.newly_denied
    );
}

#[test]
fn agent_filter_and_no_change() {
    let only_helper = replay_with(&log(), Some("helper"), &ResolvedHosts::new());
    assert_eq!((only_helper.events, only_helper.replayed), (1, 0));
    assert!(!only_helper.changed());

    let (_, same) = through_log(
        "replay-same",
        &[
            read("coder", "/work/project/a", "allow"),
            read("coder", "/etc/x", "deny"),
        ],
    );
    let r = replay_with(&same, None, &ResolvedHosts::new());
    assert_eq!((r.replayed, r.unchanged), (2, 2));
    assert!(!r.changed());
}

#[test]
fn requests_follow_the_kernels_access_kinds() {
    use crate::{lifecycle::requests::request_of, policy::eval::Request};
    let script = EventRecord {
        flags: vec!["script".into()],
        ..exec("coder", "/work/run.sh", "allow")
    };
    assert_eq!(
        request_of(&script),
        Ok(Request::Open {
            path: "/work/run.sh".into(),
            read: true,
            write: false
        })
    );
    let unlink = EventRecord {
        path: Some("/tmp/x".into()),
        ..base("coder", "unlink", "allow", "r", None)
    };
    assert_eq!(
        request_of(&unlink),
        Ok(Request::Open {
            path: "/tmp/x".into(),
            read: false,
            write: true
        })
    );
    assert_eq!(
        request_of(&connect_unix("coder", "@bus", "allow")),
        Ok(Request::ConnectUnix {
            path: "@bus".into()
        })
    );
    let unresolved = EventRecord {
        flags: vec!["path-unresolved".into()],
        ..read("coder", "/x", "deny")
    };
    assert_eq!(request_of(&unresolved), Err(Skip::FailClosed));
    assert_eq!(
        request_of(&connect("c", "10.0.0.1", 1, "other", "deny", "r", None)),
        Err(Skip::IncompleteTarget)
    );
}

#[test]
fn windowed_allows_are_decided_at_the_events_time() {
    let candidate = "[agent]\nname = \"coder\"\n[net]\nconnect = [{ to = \"10.0.0.5:443/tcp\", id = \"office\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } }]\n";
    let compiled = policy::compile(
        &policy::load_sources(&[("coder.toml", candidate)]).unwrap(),
        &ResolvedHosts::new(),
    )
    .unwrap();
    let at = |time: &str| EventRecord {
        time: time.into(),
        ..connect(
            "coder",
            "10.0.0.5",
            443,
            "tcp",
            "allow",
            "old",
            Some("10.0.0.5:443/tcp"),
        )
    };
    let mut replay = Replay::new(&compiled, None);
    replay.add(&at("2026-11-23T10:00:00.000000000Z"));
    replay.add(&at("2026-11-23T20:00:00.000000000Z"));
    let r = replay.finish();
    assert_eq!((r.replayed, r.unchanged), (2, 1), "{r:#?}");
    assert_eq!(
        r.newly_denied.len(),
        1,
        "the 20:00 connect is outside the window: {r:#?}"
    );
}
