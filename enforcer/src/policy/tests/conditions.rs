//! Conditional allows (`when.hours`) on network, file and exec rules: the evaluator at chosen
//! instants, the compiled values and condition table the kernel's maps are filled from.

use std::net::IpAddr;

use enforcer_common::*;
use jiff::Timestamp;

use super::*;
use crate::policy::{eval::evaluate_at, when::Condition};

fn at(p: &CompiledPolicy, addr: &str, port: u16, now: &str) -> (Verdict, String) {
    let r = Request::Connect {
        addr: addr.parse::<IpAddr>().unwrap(),
        port,
        udp: false,
    };
    let d = evaluate_at(p, 1, &r, now.parse::<Timestamp>().unwrap());
    (
        d.verdict,
        p.rule(d.rule).map_or(String::new(), |r| r.text_id.clone()),
    )
}

const BODY: &str = "[net]\nconnect = [\n\
  { to = \"10.0.0.0/8:443\", id = \"office\", when = { hours = \"09:00-18:00\", tz = \"Europe/Paris\" } },\n\
  { to = \"10.1.0.0/16:443\", id = \"night\", when.hours = \"16:00-20:00\", when.tz = \"UTC\" },\n\
  { to = \"10.2.0.0/16:443\", id = \"always\" },\n\
]\ndeny = [\"10.2.3.4\"]\n";

#[test]
fn conditional_allows_count_only_inside_their_windows() {
    let p = compiled(&[("a.toml", &agent(BODY))]);
    assert_eq!(p.conditions.len(), 2);
    // Paris is UTC+1 in January: 09:00-18:00 local = 08:00-17:00 UTC, end excluded.
    assert_eq!(
        at(&p, "10.9.9.9", 443, "2026-01-15T07:59:59Z"),
        (Verdict::Deny, "".into())
    );
    assert_eq!(
        at(&p, "10.9.9.9", 443, "2026-01-15T08:00:00Z"),
        (Verdict::Allow, "office".into())
    );
    assert_eq!(
        at(&p, "10.9.9.9", 443, "2026-01-15T17:00:00Z"),
        (Verdict::Deny, "".into())
    );
    // Summer (UTC+2): the same local hours are 07:00-16:00 UTC.
    assert_eq!(
        at(&p, "10.9.9.9", 443, "2026-07-15T07:30:00Z"),
        (Verdict::Allow, "office".into())
    );
    assert_eq!(
        at(&p, "10.9.9.9", 443, "2026-07-15T16:30:00Z"),
        (Verdict::Deny, "".into())
    );
    // Overlapping conditional allows: the union of their windows; the most specific CIDR's open one is named (both are open at 16:30Z).
    assert_eq!(
        at(&p, "10.1.1.1", 443, "2026-01-15T16:30:00Z"),
        (Verdict::Allow, "night".into())
    );
    assert_eq!(
        at(&p, "10.1.1.1", 443, "2026-01-15T10:00:00Z"),
        (Verdict::Allow, "office".into())
    );
    assert_eq!(
        at(&p, "10.1.1.1", 443, "2026-01-15T19:59:59Z"),
        (Verdict::Allow, "night".into())
    );
    assert_eq!(
        at(&p, "10.1.1.1", 443, "2026-01-15T20:00:00Z"),
        (Verdict::Deny, "".into())
    );
    // An unconditional allow stays; a deny beats an open conditional allow.
    assert_eq!(
        at(&p, "10.2.9.9", 443, "2026-01-15T03:00:00Z"),
        (Verdict::Allow, "always".into())
    );
    assert_eq!(
        at(&p, "10.2.3.4", 443, "2026-01-15T10:00:00Z"),
        (Verdict::Deny, "a.toml:9".into())
    );
    // Other ports were never allowed.
    assert_eq!(
        at(&p, "10.9.9.9", 80, "2026-01-15T10:00:00Z"),
        (Verdict::Deny, "".into())
    );
}

#[test]
fn equal_windows_share_one_kernel_condition() {
    let body = "[net]\nconnect = [\n\
      { to = \"10.0.0.1:443\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } },\n\
      { to = \"10.0.0.2:443\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } },\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    assert_eq!(
        p.conditions,
        vec![Condition::hours("09:00-18:00", "UTC").unwrap()]
    );
    let conds: Vec<u32> = p
        .net_entries
        .iter()
        .flat_map(|e| {
            e.value.rules[..e.value.count as usize]
                .iter()
                .map(|r| r.cond)
        })
        .collect();
    assert_eq!(conds, vec![1, 1]);
}

fn path_at(p: &CompiledPolicy, r: &Request, now: &str) -> (Verdict, String) {
    let d = evaluate_at(p, 1, r, now.parse::<Timestamp>().unwrap());
    (
        d.verdict,
        p.rule(d.rule).map_or(String::new(), |r| r.text_id.clone()),
    )
}

const PATH_BODY: &str = "[file]\nread = [\n\
  { path = \"/srv/**\", id = \"day\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } },\n\
  { path = \"/srv/late/**\", id = \"late\", when = { hours = \"16:00-20:00\", tz = \"UTC\" } },\n\
  { path = \"**/*.txt\", id = \"txt\" },\n\
  { path = \"/opt/**\", id = \"opt\" },\n\
  { path = \"/opt/x/**\", id = \"optx\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } },\n\
]\nwrite = [{ path = \"/srv/out/**\", id = \"w\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } }]\n\
deny_read = [\"/srv/late/secret\"]\n\
[exec]\nallow = [{ path = \"/usr/bin/tool\", id = \"tool\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } }]\n";

#[test]
fn conditional_path_allows_count_only_inside_their_windows_and_fall_through_when_closed() {
    let p = compiled(&[("a.toml", &agent(PATH_BODY))]);
    let r = |path: &str| open_read(path);
    assert_eq!(
        path_at(&p, &r("/srv/a"), "2026-01-15T10:00:00Z"),
        (Verdict::Allow, "day".into())
    );
    assert_eq!(
        path_at(&p, &r("/srv/a"), "2026-01-15T18:00:00Z"),
        (Verdict::Deny, "".into()),
        "window end excluded"
    );
    // Nested windows: the most specific open one is named; closed, the next one decides.
    assert_eq!(
        path_at(&p, &r("/srv/late/a"), "2026-01-15T10:00:00Z"),
        (Verdict::Allow, "day".into())
    );
    assert_eq!(
        path_at(&p, &r("/srv/late/a"), "2026-01-15T17:00:00Z"),
        (Verdict::Allow, "late".into())
    );
    assert_eq!(
        path_at(&p, &r("/srv/late/a"), "2026-01-15T19:00:00Z"),
        (Verdict::Allow, "late".into())
    );
    assert_eq!(
        path_at(&p, &r("/srv/late/a"), "2026-01-15T21:00:00Z"),
        (Verdict::Deny, "".into())
    );
    // A closed window is absent, not a deny: another candidate (a basename rule) still allows.
    assert_eq!(
        path_at(&p, &r("/srv/late/a.txt"), "2026-01-15T21:00:00Z"),
        (Verdict::Allow, "txt".into())
    );
    assert_eq!(
        path_at(&p, &r("/srv/late/a.txt"), "2026-01-15T17:00:00Z"),
        (Verdict::Allow, "late".into())
    );
    // An unconditional allow under a closed conditional one stays.
    assert_eq!(
        path_at(&p, &r("/opt/x/f"), "2026-01-15T10:00:00Z"),
        (Verdict::Allow, "optx".into())
    );
    assert_eq!(
        path_at(&p, &r("/opt/x/f"), "2026-01-15T03:00:00Z"),
        (Verdict::Allow, "opt".into())
    );
    // An explicit deny beats an open window.
    assert_eq!(
        path_at(&p, &r("/srv/late/secret"), "2026-01-15T17:00:00Z"),
        (Verdict::Deny, "a.toml:12".into())
    );
    // Writes and execs likewise.
    assert_eq!(
        path_at(&p, &open_write("/srv/out/f"), "2026-01-15T10:00:00Z"),
        (Verdict::Allow, "w".into())
    );
    assert_eq!(
        path_at(&p, &open_write("/srv/out/f"), "2026-01-15T20:00:00Z"),
        (Verdict::Deny, "".into())
    );
    assert_eq!(
        path_at(&p, &exec("/usr/bin/tool"), "2026-01-15T10:00:00Z"),
        (Verdict::Allow, "tool".into())
    );
    assert_eq!(
        path_at(&p, &exec("/usr/bin/tool"), "2026-01-15T20:00:00Z"),
        (Verdict::Deny, "".into())
    );
}

#[test]
fn conditional_path_values_carry_the_condition_and_the_fallback_allow() {
    let p = compiled(&[("a.toml", &agent(PATH_BODY))]);
    let id = |t: &str| p.rules.iter().find(|r| r.text_id == t).unwrap().id;
    let entry = |bytes: &[u8]| {
        p.path_entries
            .iter()
            .find(|e| e.bytes == bytes)
            .unwrap()
            .value
    };
    let (day, late, opt, optx) = (id("day"), id("late"), id("opt"), id("optx"));
    let v = entry(b"/srv/late/");
    assert_eq!(
        (
            v.allow_rule[ACCESS_INDEX_READ],
            v.allow_cond[ACCESS_INDEX_READ] != 0,
            v.next_rule[ACCESS_INDEX_READ],
            v.next_cond[ACCESS_INDEX_READ] != 0
        ),
        (late, true, day, true)
    );
    let v = entry(b"/opt/x/");
    assert_eq!(
        (
            v.allow_rule[ACCESS_INDEX_READ],
            v.next_rule[ACCESS_INDEX_READ],
            v.next_cond[ACCESS_INDEX_READ]
        ),
        (optx, opt, 0)
    );
    // Unconditional allows keep the value they always had: no condition, no fallback.
    let v = entry(b"/opt/");
    assert_eq!(
        (v.allow_rule[ACCESS_INDEX_READ], v.allow_cond, v.next_rule),
        (opt, [0; ACCESS_KINDS], [0; ACCESS_KINDS])
    );
    // Denies never carry a condition: only allows have one.
    let v = entry(b"/srv/late/secret\0");
    assert_eq!(v.deny & ACCESS_READ, ACCESS_READ);
}

#[test]
fn a_third_nested_conditional_allow_is_a_compile_error() {
    let body = "[file]\nread = [\n\
      { path = \"/q/**\", when = { hours = \"01:00-02:00\", tz = \"UTC\" } },\n\
      { path = \"/q/r/**\", when = { hours = \"03:00-04:00\", tz = \"UTC\" } },\n\
      { path = \"/q/r/s/**\", when = { hours = \"05:00-06:00\", tz = \"UTC\" } },\n]\n";
    let e = errors(&[("a.toml", &agent(body))]);
    assert!(
        e.iter()
            .any(|m| m.contains("more than two conditional allows (time windows, grants) of read")),
        "expected the nesting error, got {e:#?}"
    );
}
