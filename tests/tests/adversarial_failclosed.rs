//! Adversarial case 16 (docs/kernel-maps.md, "Failure points"): the failures inside the programs
//! that user space can force, and the sends and opens that only a complete syscall table sees.
//! One body for both backends.
//!
//! - lazy-sockaddr / lazy-msghdr: the destination of a unix connect (the sockaddr) or sendmsg
//!   (the msghdr) lies in a page the process never touched: the kernel's copy faults it in, a
//!   BPF read of user memory cannot. BPF LSM judges the kernel's copy (EPERM by the rule); the
//!   fallback, which reads user memory at syscall entry, cannot read it and fails closed
//!   (killed, flags addr-unreadable and internal-failure, counted at `user-sockaddr`).
//! - unmapped-sockaddr / unmapped-msghdr: the pointer is on an unmapped page. The kernel fails
//!   the call with EFAULT; the fallback cannot tell that it will and fails closed the same way.
//! - sendmmsg-unix: one sendmmsg of unix datagrams to a denied socket: EPERM on BPF LSM, killed
//!   by the rule on the fallback (sendmmsg is watched).
//! - sendmmsg-two-addresses: an allowed then a denied unix address in one sendmmsg: BPF LSM
//!   refuses the second message; the fallback judges one address per call and fails closed.
//! - open-by-handle: open_by_handle_at of a denied file (root holds CAP_DAC_READ_SEARCH): BPF
//!   LSM's file_open judges the opened file's path; the fallback denies the call as a whole.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::{kernel::Backend, policy::compile::CompiledPolicy};
use enforcer_common::*;
use enforcer_tests::{
    adversarial, compile, events, fallback, fixtures::rule_id, lsm_or_na, Agent, TempDir, EPERM,
};

struct Setup {
    _dir: TempDir,
    compiled: CompiledPolicy,
    agent: u32,
    /// Denied unix stream socket, denied unix datagram socket, allowed datagram socket.
    no: String,
    dg: String,
    ok: String,
    secret: String,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn setup(name: &str) -> Setup {
    let dir = TempDir::new(name);
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(format!("{d}/work")).unwrap();
    let (no, dg, ok) = (
        format!("{d}/no.sock"),
        format!("{d}/dg.sock"),
        format!("{d}/work/ok.sock"),
    );
    let secret = dir.file("secret.txt", "secret\n");
    let keep: Vec<Box<dyn std::any::Any>> = vec![
        Box::new(std::os::unix::net::UnixListener::bind(&no).expect("unix listen")),
        Box::new(std::os::unix::net::UnixDatagram::bind(&dg).expect("unix dgram")),
        Box::new(std::os::unix::net::UnixDatagram::bind(&ok).expect("unix dgram")),
    ];
    let compiled = compile(&format!(
        r#"
[agent]
name = "failclosed"
on_violation = "kill"

[file]
read = ["{d}/**"]
deny = ["{secret}"]

[net]
connect = ["unix:{d}/work/**"]
deny = ["unix:{no}", "unix:{dg}"]
"#
    ));
    let agent = compiled.agent_by_name("failclosed").expect("agent").id;
    Setup {
        _dir: dir,
        compiled,
        agent,
        no,
        dg,
        ok,
        secret,
        _keep: keep,
    }
}

/// What a case must end in.
enum Expect {
    /// BPF LSM: refused with this errno; an event (op, target) denied by `rule` unless None.
    Refused(i32, Option<(u32, String, u32)>),
    /// Fallback: killed; the event (op, target or None: any) with `rule` and `flags` set; the
    /// failure point counted, if any.
    Killed(u32, Option<String>, u32, u32, Option<u32>),
}

fn failures(backend: &dyn Backend, point: u32) -> u64 {
    backend
        .failures()
        .expect("failure counters")
        .iter()
        .find(|(p, _)| *p == point)
        .map_or(0, |(_, n)| *n)
}

fn cases(s: &Setup, lsm: bool) -> Vec<(&'static str, String, Expect)> {
    let r = |p: &str| rule_id(&s.compiled, p);
    let unreadable = |what: Option<String>| {
        Expect::Killed(
            OP_CONNECT,
            what,
            RULE_DEFAULT_DENY,
            EVENT_FLAG_ADDR_UNREADABLE | EVENT_FLAG_INTERNAL_FAILURE,
            Some(FAIL_USER_SOCKADDR),
        )
    };
    let unreadable_send = || {
        Expect::Killed(
            OP_SENDMSG,
            None,
            RULE_DEFAULT_DENY,
            EVENT_FLAG_ADDR_UNREADABLE | EVENT_FLAG_INTERNAL_FAILURE,
            Some(FAIL_USER_SOCKADDR),
        )
    };
    let no_rule = r(&format!("unix:{}", s.no));
    let dg_rule = r(&format!("unix:{}", s.dg));
    vec![
        (
            "lazy-sockaddr",
            format!("unix-lazy:{}", s.no),
            if lsm {
                Expect::Refused(EPERM, Some((OP_CONNECT, s.no.clone(), no_rule)))
            } else {
                unreadable(None)
            },
        ),
        (
            "lazy-msghdr",
            format!("unixdgram-lazy-msg:{}", s.dg),
            if lsm {
                Expect::Refused(EPERM, Some((OP_SENDMSG, s.dg.clone(), dg_rule)))
            } else {
                unreadable_send()
            },
        ),
        (
            "unmapped-sockaddr",
            format!("unix-badaddr:{}", s.no),
            if lsm {
                Expect::Refused(libc::EFAULT, None)
            } else {
                unreadable(None)
            },
        ),
        (
            "unmapped-msghdr",
            "unixdgram-badmsg:-".into(),
            if lsm {
                Expect::Refused(libc::EFAULT, None)
            } else {
                unreadable_send()
            },
        ),
        (
            "sendmmsg-unix",
            format!("unixmmsg:{}", s.dg),
            if lsm {
                Expect::Refused(EPERM, Some((OP_SENDMSG, s.dg.clone(), dg_rule)))
            } else {
                Expect::Killed(OP_SENDMSG, Some(s.dg.clone()), dg_rule, 0, None)
            },
        ),
        (
            "sendmmsg-two-addresses",
            format!("unixmmsg:{},{}", s.ok, s.dg),
            if lsm {
                Expect::Refused(EPERM, Some((OP_SENDMSG, s.dg.clone(), dg_rule)))
            } else {
                unreadable_send()
            },
        ),
        (
            "open-by-handle",
            format!("handle-open:{}", s.secret),
            if lsm {
                Expect::Refused(EPERM, Some((OP_OPEN, s.secret.clone(), r(&s.secret))))
            } else {
                Expect::Killed(OP_OPEN, None, RULE_DEFAULT_DENY, 0, None)
            },
        ),
    ]
}

fn run(backend: &mut dyn Backend, lsm: bool) {
    let name = if lsm { "lsm" } else { "fallback" };
    let s = setup(&format!("adv-failclosed-{name}"));
    backend.apply(&s.compiled, 1).expect("apply");
    for (i, (case, op, expect)) in cases(&s, lsm).into_iter().enumerate() {
        let counted = |b: &dyn Backend| match &expect {
            Expect::Killed(_, _, _, _, Some(point)) => failures(b, *point),
            _ => 0,
        };
        let before = counted(backend);
        let agent = Agent::spawn(std::slice::from_ref(&op), false);
        backend
            .register(agent.pid, s.agent, 160 + i as u64)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        match &expect {
            Expect::Refused(errno, event) => {
                assert!(status.success(), "{case}: {status} {results:?}");
                assert_eq!(results.len(), 1, "{case}: {results:?}");
                assert_eq!(results[0].errno, *errno, "{case}: {results:?}");
                if let Some((op, target, rule)) = event {
                    let e = events::wait_for(backend, case, |e| {
                        e.header.tgid == pid && e.header.op == *op && events::target(e) == *target
                    });
                    assert_eq!(
                        (e.header.verdict, e.header.rule, e.header.chain[0]),
                        (VERDICT_DENY, *rule, s.agent),
                        "{case}: verdict, rule, agent"
                    );
                    assert_eq!(
                        e.header.flags & EVENT_FLAG_INTERNAL_FAILURE,
                        0,
                        "{case}: the kernel's copy was judged, nothing failed"
                    );
                }
            }
            Expect::Killed(op, target, rule, flags, point) => {
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "{case}: the agent must be killed: {results:?}"
                );
                let e = events::wait_for(backend, case, |e| {
                    e.header.tgid == pid
                        && e.header.op == *op
                        && target.as_ref().is_none_or(|t| events::target(e) == *t)
                });
                assert_eq!(
                    (e.header.verdict, e.header.rule, e.header.chain[0]),
                    (VERDICT_KILL, *rule, s.agent),
                    "{case}: verdict, rule, agent"
                );
                assert_eq!(e.header.flags & flags, *flags, "{case}: flags");
                if point.is_some() {
                    let after = counted(backend);
                    assert!(
                        after > before,
                        "{case}: the failure must be counted ({before} -> {after})"
                    );
                }
            }
        }
        println!("{case}: {op}: as expected");
        adversarial::pass(&format!("16-failclosed/{case}"), name);
    }
    events::assert_nothing_lost(&*backend);
}

#[test]
fn lsm_fail_closed() {
    let Some(mut backend) = lsm_or_na("adversarial_failclosed::lsm_fail_closed") else {
        return;
    };
    run(&mut backend, true);
}

#[test]
fn fallback_fail_closed() {
    let mut backend = fallback("adversarial_failclosed::fallback_fail_closed");
    run(&mut backend, false);
}
