//! Deny by default, explicit deny beats allow, audit mode, multi-access opens, long paths.

use std::net::IpAddr;

use enforcer_common::*;

use super::*;

#[test]
fn nothing_matches_means_default_deny_rule_zero() {
    let p = compiled(&[("a.toml", &agent("[file]\nread = [\"/allowed/**\"]\n"))]);
    let d = evaluate(&p, 1, &open_read("/etc/passwd"));
    assert_eq!(
        (d.verdict, d.rule, d.flags),
        (Verdict::Deny, RULE_DEFAULT_DENY, 0)
    );
    assert_eq!(
        evaluate(&p, 1, &open_write("/allowed/x")).verdict,
        Verdict::Deny,
        "read does not grant write"
    );
}

#[test]
fn deny_beats_a_more_specific_allow() {
    let body = "[file]\ndeny = [\"/a/**\"]\nread = [\"/a/b/**\", \"/a/b/c\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    assert_eq!(
        decide(&p, &open_read("/a/b/c")),
        (Verdict::Deny, "a.toml:4".into())
    );
    assert_eq!(
        decide(&p, &open_read("/a")),
        (Verdict::Deny, "a.toml:4".into()),
        "the directory itself"
    );
}

#[test]
fn the_most_specific_allow_is_reported() {
    let body = "[file]\nread = [\n  \"/a/**\",\n  \"/a/b/**\",\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    assert_eq!(
        decide(&p, &open_read("/a/x")),
        (Verdict::Allow, "a.toml:5".into())
    );
    assert_eq!(
        decide(&p, &open_read("/a/b/x")),
        (Verdict::Allow, "a.toml:6".into())
    );
    assert_eq!(
        decide(&p, &open_read("/ab")),
        (Verdict::Deny, "".into()),
        "/a/** is not a string prefix match"
    );
}

#[test]
fn name_and_suffix_denies_beat_path_allows_anywhere() {
    let body = "[file]\nread = [\"/**\"]\ndeny = [\n  \"**/.env\",\n  \"**/*.pem\",\n  \"**/*.tar.gz\",\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    assert_eq!(
        decide(&p, &open_read("/srv/app/.env")),
        (Verdict::Deny, "a.toml:6".into())
    );
    assert_eq!(
        decide(&p, &open_read("/k/server.pem")),
        (Verdict::Deny, "a.toml:7".into())
    );
    assert_eq!(
        decide(&p, &open_read("/k/.pem")),
        (Verdict::Deny, "a.toml:7".into()),
        "a leading dot counts"
    );
    assert_eq!(
        decide(&p, &open_read("/k/a.b.c.d.e.f.pem")),
        (Verdict::Deny, "a.toml:7".into()),
        "rightmost dots are tried"
    );
    assert_eq!(
        decide(&p, &open_read("/k/x.1.tar.gz")),
        (Verdict::Deny, "a.toml:8".into())
    );
    assert_eq!(
        decide(&p, &open_read("/k/server.pem.txt")),
        (Verdict::Allow, "a.toml:4".into())
    );
    assert_eq!(
        decide(&p, &open_read("/k/x.env")),
        (Verdict::Allow, "a.toml:4".into()),
        "`.env` is an exact name"
    );
}

#[test]
fn wildcard_component_matches_exactly_one_component() {
    let body = "[file]\nread = [\"/home/**\"]\ndeny = [\"/home/*/.ssh/**\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    assert_eq!(p.agents[0].config.wildcard_depths, 1 << 1, "depth 2");
    assert_eq!(
        decide(&p, &open_read("/home/al/.ssh/id")),
        (Verdict::Deny, "a.toml:5".into())
    );
    assert_eq!(
        decide(&p, &open_read("/home/al/.ssh")),
        (Verdict::Deny, "a.toml:5".into())
    );
    assert_eq!(
        decide(&p, &open_read("/home/al/x/.ssh/id")),
        (Verdict::Allow, "a.toml:4".into())
    );
    assert_eq!(
        decide(&p, &open_read("/home/.ssh")),
        (Verdict::Allow, "a.toml:4".into())
    );
}

#[test]
fn audit_mode_reports_audit_deny_and_keeps_the_rule() {
    let text =
        "[agent]\nname = \"a\"\nmode = \"audit\"\n[file]\ndeny = [\"/x\"]\nread = [\"/y\"]\n";
    let p = compiled(&[("a.toml", text)]);
    assert_eq!(
        decide(&p, &open_read("/x")),
        (Verdict::AuditDeny, "a.toml:5".into())
    );
    assert_eq!(
        decide(&p, &open_read("/z")),
        (Verdict::AuditDeny, "".into())
    );
    assert_eq!(
        decide(&p, &open_read("/y")),
        (Verdict::Allow, "a.toml:6".into())
    );
}

#[test]
fn read_write_open_reports_first_denied_kind_else_the_read_rule() {
    let body = "[file]\nread = [\"/r/**\"]\nwrite = [\"/r/w/**\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let rw = |path: &str| Request::Open {
        path: path.into(),
        read: true,
        write: true,
    };
    assert_eq!(
        decide(&p, &rw("/r/x")),
        (Verdict::Deny, "".into()),
        "write is not allowed: rule 0"
    );
    assert_eq!(
        decide(&p, &rw("/r/w/x")),
        (Verdict::Allow, "a.toml:4".into()),
        "both allowed: the read rule"
    );
    let none = Request::Open {
        path: "/r/x".into(),
        read: false,
        write: false,
    };
    assert_eq!(
        decide(&p, &none),
        (Verdict::Allow, "a.toml:4".into()),
        "no mode is checked as a read"
    );
}

#[test]
fn long_paths_are_flagged_truncated_and_decided_exactly() {
    let p = compiled(&[(
        "a.toml",
        &agent("[file]\nread = [\"/long/**\"]\ndeny = [\"**/*.pem\"]\n"),
    )]);
    let long = format!("/long/{}/f", "d".repeat(300));
    let d = evaluate(&p, 1, &open_read(&long));
    assert_eq!(
        (d.verdict, d.flags),
        (Verdict::Allow, EVENT_FLAG_PATH_TRUNCATED)
    );
    let d = evaluate(&p, 1, &open_read(&format!("{long}.pem")));
    assert_eq!(
        (d.verdict, d.rule),
        (Verdict::Deny, 2),
        "basename rules see the end of long paths"
    );
    let d = evaluate(&p, 1, &open_read(&format!("/long/{}", "x/".repeat(2100))));
    assert_eq!(
        (d.verdict, d.flags),
        (Verdict::Deny, EVENT_FLAG_PATH_UNRESOLVED),
        "beyond PATH_MAX: fail closed"
    );
}

#[test]
fn non_agents_are_not_confined_and_unknown_agents_fail_closed() {
    let p = compiled(&[("a.toml", &agent(""))]);
    assert_eq!(
        evaluate(&p, NO_AGENT, &open_read("/x")).verdict,
        Verdict::Allow
    );
    assert_eq!(evaluate(&p, 9, &open_read("/x")).verdict, Verdict::Deny);
}

#[test]
fn relative_unix_paths_fail_closed() {
    let p = compiled(&[("a.toml", &agent("[net]\nconnect = [\"unix:/**\"]\n"))]);
    let d = evaluate(
        &p,
        1,
        &Request::ConnectUnix {
            path: "rel.sock".into(),
        },
    );
    assert_eq!(
        (d.verdict, d.rule, d.flags),
        (Verdict::Deny, 0, EVENT_FLAG_RELATIVE_PATH)
    );
    assert_eq!(
        evaluate(
            &p,
            1,
            &Request::ConnectUnix {
                path: "/run/a.sock".into()
            }
        )
        .verdict,
        Verdict::Allow
    );
}

#[test]
fn net_deny_beats_allow_across_cidrs_ports_and_protocols() {
    let body = "[net]\nconnect = [\n  \"10.0.0.0/8\",\n  \"10.1.2.3:8000-8999/udp\",\n  \"[2001:db8::/32]:443\",\n]\n\
                deny = [\n  \"10.1.0.0/16:22\",\n  \"*:25\",\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let c = |a: &str, port, udp| {
        decide(
            &p,
            &Request::Connect {
                addr: a.parse::<IpAddr>().unwrap(),
                port,
                udp,
            },
        )
    };
    assert_eq!(
        c("10.5.5.5", 80, false),
        (Verdict::Allow, "a.toml:5".into())
    );
    assert_eq!(
        c("10.1.2.3", 22, false),
        (Verdict::Deny, "a.toml:10".into())
    );
    assert_eq!(
        c("10.1.2.3", 8500, true),
        (Verdict::Allow, "a.toml:6".into()),
        "most specific CIDR's rule first"
    );
    assert_eq!(
        c("10.1.2.3", 25, false),
        (Verdict::Deny, "a.toml:11".into()),
        "`*` covers every address"
    );
    assert_eq!(
        c("2001:db8::1", 443, false),
        (Verdict::Allow, "a.toml:7".into())
    );
    assert_eq!(c("2001:db8::1", 80, false), (Verdict::Deny, "".into()));
    assert_eq!(c("192.0.2.1", 80, false), (Verdict::Deny, "".into()));
}

#[test]
fn an_unlinked_file_is_judged_by_the_name_it_had() {
    let body = "[file]\nread = [\"/d/**\"]\ndeny = [\"/d/secret\", \"**/*.pem\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    for (path, pattern) in [
        ("/d/secret (deleted)", "/d/secret"),
        ("/d/k.pem (deleted)", "**/*.pem"),
    ] {
        let d = evaluate(&p, 1, &open_read(path));
        assert_eq!(
            (d.verdict, d.flags),
            (Verdict::Deny, EVENT_FLAG_DELETED),
            "{path}"
        );
        assert_eq!(
            p.rule(d.rule).map(|r| r.pattern.as_str()),
            Some(pattern),
            "{path}: decided by the deny of the name it had"
        );
    }
    let d = evaluate(&p, 1, &open_read("/d/other (deleted)"));
    assert_eq!((d.verdict, d.flags), (Verdict::Allow, EVENT_FLAG_DELETED));
    assert_eq!(
        evaluate(&p, 1, &open_read(" (deleted)")).flags,
        0,
        "nothing before the suffix: not cut"
    );
}
