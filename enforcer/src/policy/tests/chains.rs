//! Sub-agent chains: the intersection of every member's rules, the first denier named, modes
//! combined so that an enforcing member enforces.

use enforcer_common::*;

use super::*;
use crate::policy::eval::trace_chain;

/// The example: P writes in /work/**, C in /work/docs/** and /tmp/**.
fn p_and_c(c_mode: &str) -> CompiledPolicy {
    compiled(&[
        ("p.toml", "[agent]\nname = \"p\"\ndelegate = [\"c\"]\n\n[file]\nwrite = [\"/work/**\"]\n"),
        (
            "c.toml",
            &format!("[agent]\nname = \"c\"\nmode = \"{c_mode}\"\n\n[file]\nwrite = [\"/work/docs/**\", \"/tmp/**\"]\n"),
        ),
    ])
}

fn ids(p: &CompiledPolicy) -> (u32, u32) {
    (
        p.agent_by_name("p").unwrap().id,
        p.agent_by_name("c").unwrap().id,
    )
}

fn rule_of(p: &CompiledPolicy, id: u32) -> String {
    if id == RULE_DEFAULT_DENY {
        return "default".into();
    }
    p.rule(id).map(|r| r.text_id.clone()).unwrap_or_default()
}

#[test]
fn a_chain_gets_the_intersection_and_names_the_denier() {
    let p = p_and_c("enforce");
    let (pid, cid) = ids(&p);
    let chain = [pid, cid];
    let t = trace_chain(&p, &chain, &open_write("/work/docs/a.md"));
    assert_eq!(t.trace.decision.verdict, Verdict::Allow);
    assert_eq!(
        (t.rule_agent, rule_of(&p, t.trace.decision.rule)),
        (cid, "c.toml:6:10".into()),
        "the innermost allow is reported"
    );

    let t = trace_chain(&p, &chain, &open_write("/work/src/main.rs"));
    assert_eq!(
        t.trace.decision.verdict,
        Verdict::Deny,
        "C does not allow /work/src"
    );
    assert_eq!(
        (t.rule_agent, t.trace.decision.rule),
        (cid, RULE_DEFAULT_DENY),
        "C's default deny decided"
    );

    let t = trace_chain(&p, &chain, &open_write("/tmp/x"));
    assert_eq!(
        t.trace.decision.verdict,
        Verdict::Deny,
        "P does not allow /tmp, C's allow cannot widen it"
    );
    assert_eq!(
        (t.rule_agent, t.trace.decision.rule),
        (pid, RULE_DEFAULT_DENY),
        "P, the outermost, decided"
    );

    // A chain of one is the agent itself.
    let one = trace_chain(&p, &[pid], &open_write("/tmp/x"));
    assert_eq!(
        one.trace,
        crate::policy::eval::trace(&p, pid, &open_write("/tmp/x"))
    );
}

#[test]
fn an_enforcing_member_enforces_and_audit_needs_every_member() {
    let p = p_and_c("audit");
    let (pid, cid) = ids(&p);
    let t = trace_chain(&p, &[pid, cid], &open_write("/work/src/x"));
    assert_eq!(
        (t.trace.decision.verdict, t.rule_agent),
        (Verdict::Deny, cid),
        "C audits but P enforces: denied"
    );
    let all_audit = compiled(&[
        (
            "p.toml",
            "[agent]\nname = \"p\"\nmode = \"audit\"\ndelegate = [\"c\"]\n",
        ),
        ("c.toml", "[agent]\nname = \"c\"\nmode = \"audit\"\n"),
    ]);
    let (pid, cid) = ids(&all_audit);
    let t = trace_chain(&all_audit, &[pid, cid], &open_write("/x"));
    assert_eq!(t.trace.decision.verdict, Verdict::AuditDeny);
}

#[test]
fn a_member_missing_from_the_policy_denies_everything() {
    let p = p_and_c("enforce");
    let (pid, _) = ids(&p);
    let t = trace_chain(&p, &[pid, 77], &open_write("/work/docs/a"));
    assert_eq!(
        (
            t.trace.decision.verdict,
            t.rule_agent,
            t.trace.decision.rule
        ),
        (Verdict::Deny, 77, RULE_DEFAULT_DENY)
    );
}
