//! Property tests: the reference evaluator (compiled entries, kernel algorithm) against the naive
//! matcher (pattern text, rule semantics) on random policies and requests. Verdicts must agree,
//! and the reported rule must really match the request with the deciding polarity.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::{
    naive::{net_matches, path_matches},
    *,
};
use crate::policy::compile::RuleKind;

const COMPONENTS: &[&str] = &["a", "b", "c", ".env", "x.pem", "k.tar.gz"];
const REQUEST_COMPONENTS: &[&str] = &[
    "a",
    "b",
    "c",
    ".env",
    "x.pem",
    "k.tar.gz",
    "y.tar.gz",
    "a.b.c.d.e.pem",
    "*",
    "z",
];
const FIELDS: &[(&str, &str)] = &[
    ("file", "read"),
    ("file", "write"),
    ("file", "deny"),
    ("file", "deny_read"),
    ("file", "deny_write"),
    ("exec", "allow"),
    ("exec", "deny"),
];

/// Access kinds a rule kind allows and denies, from the language definition (docs/policy.md),
/// as `['r', 'w', 'x']` letters.
fn semantics(kind: RuleKind) -> (&'static str, &'static str) {
    match kind {
        RuleKind::FileRead => ("r", ""),
        RuleKind::FileWrite => ("w", ""),
        RuleKind::FileDeny => ("", "rwx"),
        RuleKind::FileDenyRead => ("", "r"),
        RuleKind::FileDenyWrite => ("", "w"),
        RuleKind::ExecAllow => ("x", ""),
        RuleKind::ExecDeny => ("", "x"),
        other => panic!("not generated: {other:?}"),
    }
}

fn path_pattern() -> impl Strategy<Value = String> {
    let comps = |n| prop::collection::vec(prop::sample::select(COMPONENTS), n);
    // One optional `*` at depth 1..=4 (an agent may use at most 4 distinct depths).
    let with_wildcard = |mut c: Vec<&'static str>, star: Option<usize>| {
        if let Some(i) = star {
            if i < c.len() {
                c[i] = "*";
            }
        }
        c
    };
    prop_oneof![
        (comps(1..4), prop::option::of(0usize..4))
            .prop_map(move |(c, s)| format!("/{}", with_wildcard(c, s).join("/"))),
        (comps(0..4), prop::option::of(0usize..4)).prop_map(move |(c, s)| {
            let c = with_wildcard(c, s);
            if c.is_empty() {
                "/**".to_string()
            } else {
                format!("/{}/**", c.join("/"))
            }
        }),
        prop::sample::select(&[".env", "x.pem", "c"][..]).prop_map(|n| format!("**/{n}")),
        prop::sample::select(&[".pem", ".gz", ".tar.gz", ".env"][..])
            .prop_map(|s| format!("**/*{s}")),
    ]
}

fn request_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(REQUEST_COMPONENTS), 0..6)
        .prop_map(|c| format!("/{}", c.join("/")))
}

/// A TOML policy for agent `p` from (field index, pattern) rules, one rule per line.
fn policy_text(rules: &[(usize, String)]) -> String {
    let mut text = String::from("[agent]\nname = \"p\"\n");
    for section in ["file", "exec"] {
        text.push_str(&format!("[{section}]\n"));
        for (i, (sec, field)) in FIELDS.iter().enumerate() {
            if *sec != section {
                continue;
            }
            let items: Vec<String> = rules
                .iter()
                .filter(|(f, _)| *f == i)
                .map(|(_, p)| format!("  \"{p}\",\n"))
                .collect();
            text.push_str(&format!("{field} = [\n{}]\n", items.concat()));
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn path_decisions_match_the_naive_matcher(
        rules in prop::collection::vec((0..FIELDS.len(), path_pattern()), 0..12),
        path in request_path(),
        access in prop::sample::select(&['r', 'w', 'x'][..]),
    ) {
        let text = policy_text(&rules);
        let p = compiled(&[("p.toml", &text)]);
        let request = match access {
            'r' => open_read(&path),
            'w' => open_write(&path),
            _ => exec(&path),
        };
        let d = evaluate(&p, 1, &request);
        let path = path.as_str();

        let matching = |polarity: usize| p.rules.iter().filter(move |r| {
            let sem = semantics(r.kind);
            let kinds = if polarity == 0 { sem.0 } else { sem.1 };
            kinds.contains(access) && path_matches(&r.pattern, path)
        });
        let expected = if matching(1).next().is_some() {
            Verdict::Deny
        } else if matching(0).next().is_some() {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        prop_assert_eq!(d.verdict, expected, "{} {} under\n{}", access, path, text);
        match d.verdict {
            Verdict::Allow => prop_assert!(matching(0).any(|r| r.id == d.rule), "rule {} is not a matching allow", d.rule),
            _ if matching(1).next().is_some() => {
                prop_assert!(matching(1).any(|r| r.id == d.rule), "rule {} is not a matching deny:\n{}", d.rule, text)
            }
            _ => prop_assert_eq!(d.rule, 0, "default deny reports rule 0"),
        }
    }

    #[test]
    fn net_decisions_match_the_naive_matcher(
        rules in prop::collection::vec((any::<bool>(), 0u32..1024, prop::sample::select(&[0u32, 8, 16, 22, 24, 30, 32][..]),
            prop::sample::select(&["", ":22", ":80", ":443", ":80-443"][..]), prop::sample::select(&["", "/tcp", "/udp"][..]),
            any::<bool>()), 0..10),
        host in 0u32..1100,
        port in prop::sample::select(&[22u16, 80, 100, 443, 8080][..]),
        udp in any::<bool>(),
    ) {
        let targets: Vec<(bool, String)> = rules.iter().map(|(deny, host, bits, ports, proto, star)| {
            let addr = if *star {
                "*".to_string()
            } else {
                let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + host;
                let masked = if *bits == 0 { 0 } else { base & (u32::MAX << (32 - bits)) };
                format!("{}/{bits}", Ipv4Addr::from(masked))
            };
            (*deny, format!("{addr}{ports}{proto}"))
        }).collect();
        let list = |deny: bool| targets.iter().filter(|t| t.0 == deny).map(|t| format!("  \"{}\",\n", t.1)).collect::<String>();
        let text = format!("[agent]\nname = \"p\"\n[net]\nconnect = [\n{}]\ndeny = [\n{}]\n", list(false), list(true));
        let p = compiled(&[("p.toml", &text)]);
        let addr = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + host));
        let d = evaluate(&p, 1, &Request::Connect { addr, port, udp });

        let matching = |deny: bool| p.rules.iter().filter(move |r| {
            (r.kind == RuleKind::NetDeny) == deny && net_matches(&r.pattern, addr, port, udp)
        });
        let expected = if matching(true).next().is_some() {
            Verdict::Deny
        } else if matching(false).next().is_some() {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        prop_assert_eq!(d.verdict, expected, "{}:{} udp={} under\n{}", addr, port, udp, text);
        match d.verdict {
            Verdict::Allow => prop_assert!(matching(false).any(|r| r.id == d.rule)),
            _ if matching(true).next().is_some() => prop_assert!(matching(true).any(|r| r.id == d.rule)),
            _ => prop_assert_eq!(d.rule, 0),
        }
    }

    /// Arbitrary text never panics the loader or compiler (the fuzz target does this at scale).
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Ok(set) = load_sources(&[("f.toml", &text)]) {
            let _ = compile(&set, &ResolvedHosts::new());
        }
    }
}
