//! Conditional allows (`when.hours`): the evaluator at chosen instants, and the compiled
//! condition table the kernel's `CONDS` is filled from.

use std::net::IpAddr;

use jiff::Timestamp;

use super::*;
use crate::policy::eval::evaluate_at;
use crate::policy::when::Condition;

fn at(p: &CompiledPolicy, addr: &str, port: u16, now: &str) -> (Verdict, String) {
    let r = Request::Connect { addr: addr.parse::<IpAddr>().unwrap(), port, udp: false };
    let d = evaluate_at(p, 1, &r, now.parse::<Timestamp>().unwrap());
    (d.verdict, p.rule(d.rule).map_or(String::new(), |r| r.text_id.clone()))
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
    assert_eq!(at(&p, "10.9.9.9", 443, "2026-01-15T07:59:59Z"), (Verdict::Deny, "".into()));
    assert_eq!(at(&p, "10.9.9.9", 443, "2026-01-15T08:00:00Z"), (Verdict::Allow, "office".into()));
    assert_eq!(at(&p, "10.9.9.9", 443, "2026-01-15T17:00:00Z"), (Verdict::Deny, "".into()));
    // Summer (UTC+2): the same local hours are 07:00-16:00 UTC.
    assert_eq!(at(&p, "10.9.9.9", 443, "2026-07-15T07:30:00Z"), (Verdict::Allow, "office".into()));
    assert_eq!(at(&p, "10.9.9.9", 443, "2026-07-15T16:30:00Z"), (Verdict::Deny, "".into()));
    // Overlapping conditional allows: the union of their windows; the most specific CIDR's open one is named (both are open at 16:30Z).
    assert_eq!(at(&p, "10.1.1.1", 443, "2026-01-15T16:30:00Z"), (Verdict::Allow, "night".into()));
    assert_eq!(at(&p, "10.1.1.1", 443, "2026-01-15T10:00:00Z"), (Verdict::Allow, "office".into()));
    assert_eq!(at(&p, "10.1.1.1", 443, "2026-01-15T19:59:59Z"), (Verdict::Allow, "night".into()));
    assert_eq!(at(&p, "10.1.1.1", 443, "2026-01-15T20:00:00Z"), (Verdict::Deny, "".into()));
    // An unconditional allow stays; a deny beats an open conditional allow.
    assert_eq!(at(&p, "10.2.9.9", 443, "2026-01-15T03:00:00Z"), (Verdict::Allow, "always".into()));
    assert_eq!(at(&p, "10.2.3.4", 443, "2026-01-15T10:00:00Z"), (Verdict::Deny, "a.toml:9".into()));
    // Other ports were never allowed.
    assert_eq!(at(&p, "10.9.9.9", 80, "2026-01-15T10:00:00Z"), (Verdict::Deny, "".into()));
}

#[test]
fn equal_windows_share_one_kernel_condition() {
    let body = "[net]\nconnect = [\n\
      { to = \"10.0.0.1:443\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } },\n\
      { to = \"10.0.0.2:443\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } },\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    assert_eq!(p.conditions, vec![Condition::hours("09:00-18:00", "UTC").unwrap()]);
    let conds: Vec<u32> = p.net_entries.iter().flat_map(|e| e.value.rules[..e.value.count as usize].iter().map(|r| r.cond)).collect();
    assert_eq!(conds, vec![1, 1]);
}
