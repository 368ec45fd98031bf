//! Adversarial cases 9 and 10 (docs/testing.md, "The adversarial suite"): network without connect(), and unix sockets.
//! 9: UDP `sendto` and `sendmmsg` to a denied address, TCP Fast Open (`sendto(MSG_FASTOPEN)` on
//! an unconnected socket: the connect happens inside sendto), an IPv4 destination written as
//! IPv4-mapped IPv6, and IPv6 literals that only look like an allowed IPv4 address (`::127.0.0.1`,
//! IPv4-compatible, is another address): all refused with EPERM on both backends (the fallback's
//! cgroup programs refuse too), one event each with the agent and the rule.
//! 10: a denied unix socket path, a denied abstract name, a relative path (cannot be judged:
//! fail closed), a `..` path and a symlink in an allowed directory that lead to the denied
//! socket. EPERM on BPF LSM; SIGKILL on the fallback in kill mode. Unix socket addresses are
//! strings the kernel resolves after the hooks: a symlink is judged by its own name (the
//! documented limitation, docs/kernel-maps.md "Path aliases").
//! 4 (at the end of each test, where the ring is otherwise quiet): every CPU floods denied
//! attempts into an unread ring buffer: all still refused, events read + lost = attempts.

use std::{
    net::{TcpListener, UdpSocket},
    os::unix::process::ExitStatusExt as _,
};

use enforcer::{
    kernel::{Backend, RawEvent},
    policy::compile::CompiledPolicy,
};
use enforcer_common::*;
use enforcer_tests::{
    adversarial, compile, events, fallback, fixtures::rule_id, lsm_or_na, Agent, TempDir, EPERM,
};

struct Setup {
    dir: TempDir,
    d: String,
    compiled: CompiledPolicy,
    agent_id: u32,
    /// Allowed TCP port (listening on 127.0.0.1), denied TCP port (listening too), UDP ports.
    pa: u16,
    pd: u16,
    abstract_name: String,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn setup(name: &str, on_violation: &str) -> Setup {
    let allowed = TcpListener::bind("127.0.0.1:0").expect("listen");
    let denied = TcpListener::bind("127.0.0.1:0").expect("listen");
    let (pa, pd) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
    );
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let dir = TempDir::new(name);
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(format!("{d}/work")).unwrap();
    let no = std::os::unix::net::UnixListener::bind(format!("{d}/no.sock")).expect("unix listen");
    std::os::unix::fs::symlink(format!("{d}/no.sock"), format!("{d}/work/alias.sock"))
        .expect("symlink");
    let abstract_name = format!("enforcer-adv-{}", std::process::id());
    let abs = {
        use std::os::linux::net::SocketAddrExt as _;
        let a =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&a).expect("abstract listen")
    };
    let compiled = compile(&format!(
        r#"
[agent]
name = "adv-net"
on_violation = "{on_violation}"

[file]
read = ["{d}/**"]

[net]
connect = ["127.0.0.1:{pa}/tcp", "unix:{d}/work/**"]
deny = ["127.0.0.1:{pd}", "unix:{d}/no.sock", "unix:@{abstract_name}"]
"#
    ));
    let agent_id = compiled.agent_by_name("adv-net").expect("agent").id;
    let keep: Vec<Box<dyn std::any::Any>> = vec![
        Box::new(allowed),
        Box::new(denied),
        Box::new(udp),
        Box::new(no),
        Box::new(abs),
    ];
    Setup {
        dir,
        d,
        compiled,
        agent_id,
        pa,
        pd,
        abstract_name,
        _keep: keep,
    }
}

/// A network case: (case, operation, the event's op (connect or sendmsg; None: either), its
/// expected address (IPv4 as IPv4-mapped) and port, the deciding rule).
type IpCase = (&'static str, String, Option<u32>, [u8; 16], u16, u32);

fn ip_cases(s: &Setup) -> Vec<IpCase> {
    let (pa, pd) = (s.pa, s.pd);
    let lo4 = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
    let compat: std::net::Ipv6Addr = "::127.0.0.1".parse().unwrap();
    let deny = rule_id(&s.compiled, &format!("127.0.0.1:{pd}"));
    vec![
        (
            "udp-sendto",
            format!("udp:127.0.0.1:{pd}"),
            Some(OP_SENDMSG),
            lo4,
            pd,
            deny,
        ),
        (
            "udp-sendmmsg",
            format!("udpmmsg:127.0.0.1:{pd}"),
            Some(OP_SENDMSG),
            lo4,
            pd,
            deny,
        ),
        (
            "tcp-fastopen",
            format!("tfo:127.0.0.1:{pd}"),
            None,
            lo4,
            pd,
            deny,
        ),
        (
            "ipv4-mapped-ipv6",
            format!("connect:[::ffff:127.0.0.1]:{pd}"),
            Some(OP_CONNECT),
            lo4,
            pd,
            deny,
        ),
        (
            "ipv4-mapped-ipv6-udp",
            format!("udp:[::ffff:127.0.0.1]:{pd}"),
            Some(OP_SENDMSG),
            lo4,
            pd,
            deny,
        ),
        (
            "ipv4-compatible-ipv6",
            format!("connect:[::127.0.0.1]:{pa}"),
            Some(OP_CONNECT),
            compat.octets(),
            pa,
            RULE_DEFAULT_DENY,
        ),
        (
            "ipv6-loopback",
            format!("tfo:[0:0:0:0:0:0:0:1]:{pa}"),
            None,
            std::net::Ipv6Addr::LOCALHOST.octets(),
            pa,
            RULE_DEFAULT_DENY,
        ),
    ]
}

/// The unix cases: (case, operations (the last one is the attempt), the event target, rule).
fn unix_cases(s: &Setup) -> Vec<(&'static str, Vec<String>, String, u32)> {
    let d = &s.d;
    let no = format!("{d}/no.sock");
    let no_rule = rule_id(&s.compiled, &format!("unix:{no}"));
    vec![
        (
            "unix-denied-path",
            vec![format!("unix:{no}")],
            no.clone(),
            no_rule,
        ),
        (
            "unix-abstract",
            vec![format!("unix:@{}", s.abstract_name)],
            format!("@{}", s.abstract_name),
            rule_id(&s.compiled, &format!("unix:@{}", s.abstract_name)),
        ),
        (
            "unix-relative",
            vec![format!("chdir:{d}"), "unix:no.sock".into()],
            "no.sock".into(),
            RULE_DEFAULT_DENY,
        ),
        (
            "unix-dotdot",
            vec![format!("unix:{d}/work/../no.sock")],
            format!("{d}/work/../no.sock"),
            RULE_DEFAULT_DENY,
        ),
    ]
}

/// Case 4: one thread per CPU (pinned) floods denied attempts while nothing reads the ring
/// buffer, so it overflows. Every attempt must still get EPERM, and the events read plus the
/// kernel's loss count for the agent must equal the attempts exactly. `kind`: `open` (LSM: the
/// fallback cannot refuse opens) or `connect` (the fallback's cgroup programs refuse).
fn flood_all_cpus(backend: &mut dyn Backend, s: &Setup, name: &str, kind: &str) {
    let outside = TempDir::new(&format!("adv-flood-{name}"));
    let path = outside.file("flood.txt", "x\n");
    let (target, op) = if kind == "open" {
        (path.clone(), OP_OPEN)
    } else {
        (format!("127.0.0.1:{}", s.pd), OP_CONNECT)
    };
    // The agent runs one thread per CPU of its affinity mask, inherited from this process.
    let mask = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    let cpus = (0..nix::sched::CpuSet::count())
        .filter(|&c| mask.is_set(c).unwrap_or(false))
        .count() as u64;
    // The 8 MiB ring holds at most ~60k of these records: 90k attempts overflow it.
    let per_cpu = 90_000 / cpus + 1;
    let attempts = per_cpu * cpus;
    let before_losses: u64 = backend
        .losses()
        .expect("losses")
        .iter()
        .filter(|(a, _)| *a == s.agent_id)
        .map(|(_, n)| n)
        .sum();
    let before = events::drain_all(backend).len();
    let agent = Agent::spawn(&[format!("flood:{per_cpu},{kind},{target}")], false);
    backend
        .register(agent.pid, s.agent_id, 130)
        .expect("register");
    let pid = agent.pid;
    let started = std::time::Instant::now();
    let (results, status) = agent.go_until_exit();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        status.success(),
        "4-flood: the flooding agent must exit normally: {status} {results:?}"
    );
    assert_eq!(results.len(), 1, "4-flood: one result: {results:?}");
    assert_eq!(
        results[0].errno, 0,
        "4-flood: every attempt on every CPU must be refused with EPERM: {results:?}"
    );
    let all = events::drain_all(backend);
    let read = all[before..]
        .iter()
        .filter(|e| {
            e.header.tgid == pid
                && e.header.op == op
                && (if op == OP_OPEN {
                    events::target(e) == path
                } else {
                    e.header.net_port == s.pd
                })
        })
        .inspect(|e| {
            assert_eq!(
                (e.header.verdict, e.header.chain[0]),
                (VERDICT_DENY, s.agent_id),
                "4-flood: every flood event is a deny of the agent"
            )
        })
        .count() as u64;
    let lost: u64 = backend
        .losses()
        .expect("losses")
        .iter()
        .filter(|(a, _)| *a == s.agent_id)
        .map(|(_, n)| n)
        .sum::<u64>()
        - before_losses;
    println!("4-flood: {attempts} {kind} attempts on {cpus} CPUs in {secs:.1} s: all EPERM; {read} events read + {lost} counted lost by the kernel");
    assert!(lost > 0, "4-flood: the ring buffer must have overflowed (else the loss count is not tested): {read} events read");
    assert_eq!(
        read + lost,
        attempts,
        "4-flood: events read + kernel-counted lost must equal the attempts exactly"
    );
    adversarial::pass("4-flood/all-cpus", name);
}

fn run_ip(backend: &mut dyn Backend, s: &Setup, name: &str) {
    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, s.agent_id, 95)
        .expect("register");
    let pid = agent.pid;
    agent.start();
    let mut seen = 0;
    for (case, op_text, op, addr, port, rule) in ip_cases(s) {
        let r = agent.op(&op_text);
        // The events of this operation only (several cases share a destination).
        let all = events::drain_all(backend);
        let evs = &all[seen..];
        seen = all.len();
        assert_eq!(
            r.errno, EPERM,
            "{case}: must be refused with EPERM on every backend: {r:?}"
        );
        let matching: Vec<&RawEvent> = evs
            .iter()
            .filter(|e| {
                e.header.tgid == pid
                    && e.header.net_port == port
                    && e.header.net_addr == addr
                    && op.is_none_or(|o| e.header.op == o)
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{case}: exactly one event for {addr:?}:{port}: {:?}",
            matching
                .iter()
                .map(|e| (e.header.op, e.header.verdict, e.header.rule))
                .collect::<Vec<_>>()
        );
        let e = matching[0];
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_DENY, rule, s.agent_id),
            "{case}: verdict, rule, agent"
        );
        println!(
            "{case}: EPERM, event op {} rule {}",
            e.header.op, e.header.rule
        );
        adversarial::pass(&format!("9-net/{case}"), name);
    }
    agent.finish();
}

#[test]
fn lsm_net_evasion() {
    let Some(mut backend) = lsm_or_na("adversarial_net::lsm_net_evasion") else {
        return;
    };
    let s = setup("adv-net-lsm", "audit");
    backend.apply(&s.compiled, 1).expect("apply");
    run_ip(&mut backend, &s, "lsm");

    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, s.agent_id, 96)
        .expect("register");
    let pid = agent.pid;
    agent.start();
    for (case, ops, target, rule) in unix_cases(&s) {
        let r = ops.iter().map(|op| agent.op(op)).last().expect("op");
        assert_eq!(r.errno, EPERM, "{case}: must be refused: {r:?}");
        let e = events::wait_for(&mut backend, case, |e| {
            e.header.tgid == pid && events::target(e) == target
        });
        assert_eq!(
            (
                e.header.verdict,
                e.header.rule,
                e.header.chain[0],
                e.header.net_family
            ),
            (VERDICT_DENY, rule, s.agent_id, AF_UNIX),
            "{case}: verdict, rule, agent, family"
        );
        if case == "unix-dotdot" {
            assert!(
                e.header.flags & EVENT_FLAG_PATH_UNRESOLVED != 0,
                "'..' cannot be judged by its text: flagged unresolved"
            );
        }
        adversarial::pass(&format!("10-unix/{case}"), "lsm");
    }
    // The symlink: judged by its own (allowed) name, connects to the denied socket.
    let alias = format!("{}/work/alias.sock", s.d);
    let r = agent.op(&format!("unix:{alias}"));
    assert_eq!(r.errno, 0, "unix-symlink: the limitation: {r:?}");
    let evs = events::drain_all(&mut backend);
    if let Some(e) = evs
        .iter()
        .find(|e| e.header.tgid == pid && events::target(e) == alias)
    {
        assert_eq!(e.header.verdict, VERDICT_ALLOW, "judged by the link's name");
    }
    adversarial::limitation("10-unix/unix-symlink", "lsm", "socket_connect sees the caller's sun_path string: a symlink in a connect-allowed directory reaches the socket it points to");
    agent.finish();
    events::assert_nothing_lost(&backend);
    flood_all_cpus(&mut backend, &s, "lsm", "open");
    drop(s.dir);
    println!("checked: UDP sendto/sendmmsg, TCP fast open, IPv4-mapped (tcp, udp), IPv4-compatible and long-form IPv6 literals: EPERM + one event (agent, rule); unix denied path, abstract, relative, '..': EPERM + event; unix symlink = documented limitation; a flood from every CPU: all EPERM, read + lost = attempts");
}

#[test]
fn fallback_net_evasion() {
    let mut backend = fallback("adversarial_net::fallback_net_evasion");
    let s = setup("adv-net-fb", "kill");
    backend.apply(&s.compiled, 1).expect("apply");
    run_ip(&mut backend, &s, "fallback");

    let mut session = 100;
    for (case, ops, target, rule) in unix_cases(&s) {
        let agent = Agent::spawn(&ops, false);
        session += 1;
        backend
            .register(agent.pid, s.agent_id, session)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{case}: the agent must be killed at the connect: {results:?}"
        );
        let e = events::wait_for(&mut backend, case, |e| {
            e.header.tgid == pid && e.header.net_family == AF_UNIX
        });
        assert_eq!(events::target(&e), target, "{case}: event target");
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_KILL, rule, s.agent_id),
            "{case}: verdict, rule, agent"
        );
        if case == "unix-dotdot" {
            assert!(
                e.header.flags & EVENT_FLAG_PATH_UNRESOLVED != 0,
                "'..' cannot be judged by its text: flagged unresolved"
            );
        }
        adversarial::pass(&format!("10-unix/{case}"), "fallback");
    }
    let alias = format!("{}/work/alias.sock", s.d);
    let agent = Agent::spawn(&[format!("unix:{alias}")], false);
    backend
        .register(agent.pid, s.agent_id, 120)
        .expect("register");
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success() && results[0].errno == 0,
        "unix-symlink: the limitation: {results:?} {status}"
    );
    adversarial::limitation("10-unix/unix-symlink", "fallback", "sys_enter_connect sees the caller's sun_path string: a symlink in a connect-allowed directory reaches the socket it points to");
    events::assert_nothing_lost(&backend);
    flood_all_cpus(&mut backend, &s, "fallback", "connect");
    drop(s.dir);
    println!("checked: UDP sendto/sendmmsg, TCP fast open, IPv4-mapped (tcp, udp), IPv4-compatible and long-form IPv6 literals: EPERM + one event (agent, rule); unix denied path, abstract, relative, '..': killed + event; unix symlink = documented limitation; a flood of connects from every CPU: all EPERM, read + lost = attempts");
}
