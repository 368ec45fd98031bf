//! Sub-agent chains in the kernel, shared by both backends: the example (P writes in
//! work/**, C in work/docs/** and tmp/**), judged by the kernel and by the reference evaluator
//! (`trace_chain`), with every event naming the chain, the session and the member that decided.
//!
//! - A launcher-style chain P>C (registered as the daemon does after checking `delegate`).
//! - Exec delegation: P execs C's `match.exe` binary and becomes P>C with a new session; C execs
//!   E's binary, which C does not delegate to: it stays P>C (flag `delegation-refused`).
//! - C starting P (C delegates to P) gets P>C>P: no wider than C.
//! - At the depth limit (4) an exec delegation is refused and the chain does not change.
//! - fork + setsid: the grandchild keeps the chain and the session.
//! - C is in audit mode, P enforces: the chain enforces (a sub-agent's audit mode cannot loosen
//!   its parent).
//!
//! `blocks_files`: the BPF LSM backend refuses file operations; the fallback only observes them
//! (`on_violation = "audit"`: an `audit-deny` event, the write happens). Connects are refused by
//! both.

use std::net::TcpListener;

use enforcer::{
    kernel::{Backend, RawEvent},
    policy::eval::{trace_chain, Request, Verdict},
};
use enforcer_common::*;

use crate::{compile_files, events, Agent, TempDir, EPERM};

struct World {
    dir: TempDir,
    d: String,
    policy: enforcer::policy::CompiledPolicy,
    p: u32,
    c: u32,
    _listeners: [TcpListener; 2],
    pa: u16,
    pb: u16,
}

fn world() -> World {
    let dir = TempDir::new("chains");
    let d = dir.path().display().to_string();
    for f in ["work/docs/a", "work/src/b", "tmp/x"] {
        dir.file(f, "x");
    }
    for sub in ["bin", "p", "c", "e"] {
        dir.busybox(&format!("{sub}/busybox"));
    }
    let listeners = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let (pa, pb) = (
        listeners[0].local_addr().unwrap().port(),
        listeners[1].local_addr().unwrap().port(),
    );
    let p = format!(
        "[agent]\nname = \"p\"\ndelegate = [\"c\"]\nmatch.exe = [\"{d}/p/busybox\"]\n\n[file]\nread = [\"{d}/**\"]\nwrite = [\"{d}/work/**\"]\n\n[exec]\nallow = [\"{d}/**\"]\n\n[net]\nconnect = [\"127.0.0.1:{pa}\", \"127.0.0.1:{pb}\"]\n"
    );
    let c = format!(
        "[agent]\nname = \"c\"\nmode = \"audit\"\ndelegate = [\"p\"]\nmatch.exe = [\"{d}/c/busybox\"]\n\n[file]\nread = [\"{d}/bin/**\", \"{d}/p/**\", \"{d}/c/**\", \"{d}/e/**\", \"{d}/work/docs/**\", \"{d}/tmp/**\"]\nwrite = [\"{d}/work/docs/**\", \"{d}/tmp/**\"]\n\n[exec]\nallow = [\"{d}/**\"]\n\n[net]\nconnect = [\"127.0.0.1:{pa}\"]\n"
    );
    let e = format!("[agent]\nname = \"e\"\nmatch.exe = [\"{d}/e/busybox\"]\n\n[file]\nread = [\"/**\"]\nwrite = [\"/**\"]\n\n[exec]\nallow = [\"/**\"]\n");
    let policy = compile_files(&[("p.toml", &p), ("c.toml", &c), ("e.toml", &e)]);
    let id = |n: &str| policy.agent_by_name(n).expect("agent").id;
    let (p, c) = (id("p"), id("c"));
    World {
        dir,
        d,
        policy,
        p,
        c,
        _listeners: listeners,
        pa,
        pb,
    }
}

fn chain_of(e: &RawEvent) -> Vec<u32> {
    e.header.chain[..(e.header.depth as usize).min(MAX_CHAIN)].to_vec()
}

/// The kernel's answer to one operation of a process of `chain` must be the evaluator's: the
/// errno, the event's verdict, rule and deciding member.
#[allow(clippy::too_many_arguments)]
fn check(
    backend: &mut dyn Backend,
    w: &World,
    chain: &[u32],
    session: Option<u64>,
    pid: u32,
    request: &Request,
    errno: i32,
    blocks_files: bool,
) {
    let want = trace_chain(&w.policy, chain, request);
    let (op, target, blocks) = match request {
        Request::Open { path, .. } => (OP_OPEN, path.clone(), blocks_files),
        Request::Connect { .. } => (OP_CONNECT, String::new(), true),
        other => panic!("not used here: {other:?}"),
    };
    let denied = want.trace.decision.verdict != Verdict::Allow;
    assert_eq!(
        errno == EPERM,
        denied && blocks,
        "{request:?} in chain {chain:?}: errno {errno}, evaluator says {want:?}"
    );
    if !denied && op == OP_OPEN {
        return; // file allows are not logged by default
    }
    let verdict = match (denied, blocks) {
        (false, _) => VERDICT_ALLOW,
        (true, true) => VERDICT_DENY,
        (true, false) => VERDICT_AUDIT_DENY,
    };
    let port = if let Request::Connect { port, .. } = request {
        *port
    } else {
        0
    };
    let e = events::wait_for(backend, &format!("{request:?} by chain {chain:?}"), |e| {
        e.header.tgid == pid
            && e.header.op == op
            && (op != OP_OPEN || events::target(e) == target)
            && (op != OP_CONNECT || e.header.net_port == port)
    });
    assert_eq!(
        chain_of(&e),
        chain,
        "{request:?}: the event names the chain"
    );
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.rule_agent),
        (verdict, want.trace.decision.rule, want.rule_agent),
        "{request:?} in chain {chain:?}: kernel (verdict, rule, deciding agent) vs evaluator {want:?}"
    );
    if let Some(s) = session {
        assert_eq!(e.header.session, s, "{request:?}: the session of the run");
    }
}

fn write(path: String) -> Request {
    Request::Open {
        path,
        read: false,
        write: true,
    }
}

fn read(path: String) -> Request {
    Request::Open {
        path,
        read: true,
        write: false,
    }
}

pub fn run(backend: &mut dyn Backend, blocks_files: bool) {
    let w = world();
    let d = &w.d;
    let (p, c) = (w.p, w.c);
    backend.apply(&w.policy, 1).expect("apply");

    // 1. A launcher-started chain P>C.
    let ops = vec![
        format!("write:{d}/work/docs/a"),
        format!("write:{d}/work/src/b"),
        format!("write:{d}/tmp/x"),
        format!("connect:127.0.0.1:{}", w.pa),
        format!("connect:127.0.0.1:{}", w.pb),
        format!("exec:{d}/e/busybox,true"),
        format!("exec:{d}/bin/busybox,sh,-c,{d}/bin/busybox setsid {d}/bin/busybox cat {d}/work/src/b; true"),
    ];
    let agent = Agent::spawn(&ops, false);
    delegate_down(backend, agent.pid, &[p, c], 31);
    let pid = agent.pid;
    let r = agent.go(ops.len());
    let chain = [p, c];
    let connect = |port| Request::Connect {
        addr: "127.0.0.1".parse().unwrap(),
        port,
        udp: false,
    };
    let requests = [
        write(format!("{d}/work/docs/a")),
        write(format!("{d}/work/src/b")),
        write(format!("{d}/tmp/x")),
        connect(w.pa),
        connect(w.pb),
    ];
    for (req, res) in requests.iter().zip(&r) {
        check(
            backend,
            &w,
            &chain,
            Some(31),
            pid,
            req,
            res.errno,
            blocks_files,
        );
    }
    let expect = |req: &Request| trace_chain(&w.policy, &chain, req);
    assert_eq!(
        expect(&requests[1]).rule_agent,
        c,
        "work/src: C's default deny"
    );
    assert_eq!(
        (
            expect(&requests[1]).trace.decision.verdict,
            trace_chain(&w.policy, &[c], &requests[1])
                .trace
                .decision
                .verdict
        ),
        (Verdict::Deny, Verdict::AuditDeny),
        "C alone only audits; inside enforcing P its deny is enforced"
    );
    assert_eq!(
        expect(&requests[2]).rule_agent,
        p,
        "tmp: P's default deny (C's allow cannot widen P)"
    );
    assert_eq!(
        expect(&requests[4]).rule_agent,
        c,
        "port b: C's default deny"
    );
    // C does not delegate to E: the exec runs, the process stays P>C, the event says so.
    assert_eq!(
        r[5].errno, 0,
        "exec of E's binary is allowed by P and C: {:?}",
        r[5]
    );
    let refused = events::wait_for(backend, "exec refused as a delegation", |e| {
        e.header.op == OP_EXEC
            && events::target(e) == format!("{d}/e/busybox")
            && e.header.flags & EVENT_FLAG_DELEGATION_REFUSED != 0
    });
    assert_eq!(
        (chain_of(&refused), refused.header.session),
        (chain.to_vec(), 31),
        "stays P>C in its session"
    );
    // fork + setsid: the grandchild is still P>C, same session.
    let grandchild = events::wait_for(backend, "the setsid grandchild's read", |e| {
        e.header.op == OP_OPEN
            && events::target(e) == format!("{d}/work/src/b")
            && e.header.tgid != pid
    });
    assert_eq!(
        (
            chain_of(&grandchild),
            grandchild.header.session,
            grandchild.header.rule_agent
        ),
        (chain.to_vec(), 31, c)
    );

    // 2. Exec delegation: P execs C's binary; then C (inside P) starts P, which stays narrow.
    let ops = vec![
        format!("exec:{d}/c/busybox,cat,{d}/work/src/b"),
        format!("exec:{d}/c/busybox,cat,{d}/work/docs/a"),
        format!("exec:{d}/c/busybox,sh,-c,exec {d}/p/busybox cat {d}/work/src/b"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, p, 41).expect("register P");
    let pid2 = agent.pid;
    let r = agent.go(ops.len());
    let join = events::wait_for(backend, "P>C join by exec", |e| {
        e.header.op == OP_JOIN && chain_of(e) == [p, c] && e.header.ppid == pid2
    });
    assert_ne!(
        join.header.session, 41,
        "an exe-matched start is a new session"
    );
    assert_eq!(
        r[0].errno == 0,
        !blocks_files,
        "cat of work/src inside P>C: {:?}",
        r[0]
    );
    check_child(
        backend,
        &w,
        &[p, c],
        join.header.session,
        &read(format!("{d}/work/src/b")),
        blocks_files,
    );
    assert_eq!(
        r[1].errno, 0,
        "work/docs is readable by P and C: {:?}",
        r[1]
    );
    let deeper = events::wait_for(backend, "P>C>P join", |e| {
        e.header.op == OP_JOIN && chain_of(e) == [p, c, p]
    });
    assert_eq!(
        r[2].errno == 0,
        !blocks_files,
        "P started inside C is no wider than C: {:?}",
        r[2]
    );
    check_child(
        backend,
        &w,
        &[p, c, p],
        deeper.header.session,
        &read(format!("{d}/work/src/b")),
        blocks_files,
    );

    // 3. At the depth limit an exec delegation is refused; the chain stays as it is.
    let full = [p, c, p, c];
    let ops = vec![format!("exec:{d}/p/busybox,cat,{d}/work/src/b")];
    let agent = Agent::spawn(&ops, false);
    delegate_down(backend, agent.pid, &full, 51);
    let r = agent.go(ops.len());
    let refused = events::wait_for(backend, "delegation refused at depth 4", |e| {
        e.header.op == OP_EXEC
            && events::target(e) == format!("{d}/p/busybox")
            && e.header.flags & EVENT_FLAG_DELEGATION_REFUSED != 0
    });
    assert_eq!(
        (chain_of(&refused), refused.header.session),
        (full.to_vec(), 51)
    );
    assert_eq!(
        r[0].errno == 0,
        !blocks_files,
        "work/src is C's default deny: {:?}",
        r[0]
    );
    check_child(
        backend,
        &w,
        &full,
        51,
        &read(format!("{d}/work/src/b")),
        blocks_files,
    );
    assert!(
        backend
            .register_chain(std::process::id(), &[p, c, p, c, p], 61)
            .is_err(),
        "a chain of five must be refused"
    );
    drop(w.dir);
    println!("chains: intersection, exec delegation, refusals, depth limit and sessions checked");
}

/// Register `pid` as the daemon does for `enforcer run` inside agents: the first agent, then one
/// delegation per further member (each must extend the process's current chain).
fn delegate_down(backend: &mut dyn Backend, pid: u32, chain: &[u32], session: u64) {
    for n in 1..=chain.len() {
        backend
            .register_chain(pid, &chain[..n], session)
            .unwrap_or_else(|e| panic!("register {:?}: {e}", &chain[..n]));
    }
    if chain.len() > 1 {
        let err = backend.register_chain(pid, &[chain[0], chain[0]], session);
        assert!(
            err.is_err(),
            "a chain that does not extend the process's own must be refused"
        );
    }
}

/// A read by a child process (the exec'd busybox) in `chain`: its event matches the evaluator.
fn check_child(
    backend: &mut dyn Backend,
    w: &World,
    chain: &[u32],
    session: u64,
    request: &Request,
    blocks_files: bool,
) {
    let want = trace_chain(&w.policy, chain, request);
    assert_ne!(
        want.trace.decision.verdict,
        Verdict::Allow,
        "only denied reads are logged: {want:?}"
    );
    let Request::Open { path, .. } = request else {
        unreachable!()
    };
    let e = events::wait_for(backend, &format!("{request:?} by chain {chain:?}"), |e| {
        e.header.op == OP_OPEN
            && events::target(e) == *path
            && chain_of(e) == chain
            && e.header.session == session
    });
    let verdict = if blocks_files {
        VERDICT_DENY
    } else {
        VERDICT_AUDIT_DENY
    };
    assert_eq!(
        (e.header.verdict, e.header.rule, e.header.rule_agent),
        (verdict, want.trace.decision.rule, want.rule_agent),
        "{request:?} in chain {chain:?}: kernel vs evaluator {want:?}"
    );
}
