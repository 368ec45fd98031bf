//! Exact compiler output for small policies (docs/kernel-maps.md, entry by entry).

use std::net::IpAddr;

use enforcer_common::*;

use super::*;
use crate::policy::{
    compile::{NameEntry, PathEntry},
    net::mapped,
};

/// A `PathRule` from (kind index, rule) lists.
fn value(allow: &[(usize, u32)], deny: &[(usize, u32)]) -> PathRule {
    let mut v = PathRule::default();
    for &(k, r) in allow {
        v.allow |= 1 << k;
        v.allow_rule[k] = r;
    }
    for &(k, r) in deny {
        v.deny |= 1 << k;
        v.deny_rule[k] = r;
    }
    v
}

const R: usize = ACCESS_INDEX_READ;
const W: usize = ACCESS_INDEX_WRITE;
const X: usize = ACCESS_INDEX_EXEC;

#[test]
fn path_entries_are_merged_along_their_prefixes() {
    // rule 1: read /a/**, rule 2: deny /a/b, rule 3: write /a/b/c/**, rule 4: read /a/b/c/**
    let body = "[file]\nread = [\"/a/**\"]\ndeny = [\"/a/b\"]\nwrite = [\"/a/b/c/**\"]\n\
                [exec]\nallow = [\"/a/b/c/**\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let entries: Vec<(&[u8], PathRule)> = p
        .path_entries
        .iter()
        .map(|e| (e.bytes.as_slice(), e.value))
        .collect();
    assert_eq!(
        entries,
        vec![
            (&b"/a\0"[..], value(&[(R, 1)], &[])),
            (&b"/a/"[..], value(&[(R, 1)], &[])),
            (&b"/a/b\0"[..], value(&[(R, 1)], &[(R, 2), (W, 2), (X, 2)])),
            (&b"/a/b/c\0"[..], value(&[(R, 1), (W, 3), (X, 4)], &[])),
            (&b"/a/b/c/"[..], value(&[(R, 1), (W, 3), (X, 4)], &[])),
        ],
        "sorted by bytes; `/a/b\\0` is not a prefix of `/a/b/c/`, so the deny stays on the file itself"
    );
    assert!(p.path_entries.iter().all(|e: &PathEntry| e.agent == 1));
}

#[test]
fn longest_entry_wins_and_ties_take_the_lowest_rule_id() {
    let body = "[file]\nread = [\n  \"/a/**\",\n  \"/a/b/**\",\n  \"/a/b/**\",\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let e = p
        .path_entries
        .iter()
        .find(|e| e.bytes == b"/a/b/")
        .expect("entry /a/b/");
    assert_eq!(
        e.value,
        value(&[(R, 2)], &[]),
        "rule 2 (longest entry, lowest id of the two on it)"
    );
}

#[test]
fn root_subtree_and_wildcard_entries() {
    let p = compiled(&[(
        "a.toml",
        &agent("[file]\nread = [\"/**\"]\ndeny = [\"/home/*/.ssh/**\"]\n"),
    )]);
    let bytes: Vec<&[u8]> = p.path_entries.iter().map(|e| e.bytes.as_slice()).collect();
    assert_eq!(
        bytes,
        vec![&b"/"[..], &b"/home/*/.ssh\0"[..], &b"/home/*/.ssh/"[..]]
    );
    let wild = &p.path_entries[1].value;
    assert_eq!(
        *wild,
        value(&[(R, 1)], &[(R, 2), (W, 2), (X, 2)]),
        "the wildcard entry merges `/` too"
    );
    assert_eq!(p.agents[0].config.wildcard_depths, 0b10);
}

#[test]
fn name_entries_hold_only_their_own_rules() {
    let body = "[file]\nread = [\"/**\", \"**/Makefile\"]\ndeny = [\"**/.env\", \"**/*.pem\"]\ndeny_write = [\"**/.env\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let names: Vec<(u32, &[u8], PathRule)> = p
        .name_entries
        .iter()
        .map(|e: &NameEntry| (e.kind, e.name.as_slice(), e.value))
        .collect();
    assert_eq!(
        names,
        vec![
            (
                NAME_EXACT,
                &b".env"[..],
                value(&[], &[(R, 3), (W, 3), (X, 3)])
            ),
            (NAME_EXACT, &b"Makefile"[..], value(&[(R, 2)], &[])),
            (
                NAME_SUFFIX,
                &b".pem"[..],
                value(&[], &[(R, 4), (W, 4), (X, 4)])
            ),
        ]
    );
}

#[test]
fn net_entries_list_containing_cidrs_most_specific_first() {
    let body = "[net]\nconnect = [\"10.0.0.0/8:443/tcp\", \"10.1.0.0/16:80-90\"]\ndeny = [\"10.1.0.0/16:22/udp\", \"::1\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let rule = |port_lo, port_hi, proto, action, rule| NetPortRule {
        port_lo,
        port_hi,
        proto,
        action,
        rule,
        cond: 0,
    };
    let got: Vec<([u8; 16], u32, Vec<NetPortRule>)> = p
        .net_entries
        .iter()
        .map(|e| {
            (
                e.addr,
                e.prefix_bits,
                e.value.rules[..e.value.count as usize].to_vec(),
            )
        })
        .collect();
    let v4 = |s: &str| mapped(s.parse::<IpAddr>().unwrap());
    assert_eq!(
        got,
        vec![
            (
                v4("::1"),
                128,
                vec![rule(
                    0,
                    65535,
                    PROTO_ANY | PROTO_ICMP | PROTO_LISTEN,
                    ACTION_DENY,
                    4
                )]
            ),
            (
                v4("10.0.0.0"),
                104,
                vec![rule(443, 443, PROTO_TCP, ACTION_ALLOW, 1)]
            ),
            (
                v4("10.1.0.0"),
                112,
                vec![
                    rule(80, 90, PROTO_ANY, ACTION_ALLOW, 2),
                    rule(22, 22, PROTO_UDP, ACTION_DENY, 3),
                    rule(443, 443, PROTO_TCP, ACTION_ALLOW, 1),
                ]
            ),
        ]
    );
}

#[test]
fn resolved_hosts_become_128_bit_entries() {
    let mut hosts = ResolvedHosts::new();
    hosts.insert("db.internal", "10.0.0.5".parse().unwrap());
    hosts.insert("db.internal", "fd00::5".parse().unwrap());
    let p = compiled_with(
        &[(
            "a.toml",
            &agent("[net]\nconnect = [\"DB.internal:5432\"]\n"),
        )],
        &hosts,
    );
    let got: Vec<([u8; 16], u32, u32)> = p
        .net_entries
        .iter()
        .map(|e| (e.addr, e.prefix_bits, e.value.rules[0].rule))
        .collect();
    let ip = |s: &str| mapped(s.parse::<IpAddr>().unwrap());
    assert_eq!(got, vec![(ip("10.0.0.5"), 128, 1), (ip("fd00::5"), 128, 1)]);
}

#[test]
fn rule_table_records_ids_kinds_patterns_and_sources() {
    let p = compiled(&[(
        "a.toml",
        &agent("[file]\nread = [{ path = \"/x\", id = \"x-read\" }]\n"),
    )]);
    let r = p.rule(1).expect("rule 1");
    assert_eq!(
        (r.id, r.text_id.as_str(), r.agent, r.pattern.as_str()),
        (1, "x-read", 1, "/x")
    );
    assert_eq!(
        (r.source.file.to_str(), r.source.line, r.source.col),
        (Some("a.toml"), 4, 18)
    );
    assert!(p.rule(0).is_none() && p.rule(2).is_none());
}
