//! Adversarial case 17: network routes past the connect rules. A packet, raw, vsock, SCTP,
//! netlink (other than route) or ICMP "ping" socket carries data no connect rule judges, and a
//! listening socket serves whoever connects in. Each kind is denied unless the agent's
//! `net.sockets` names it, and a listen unless `net.listen` allows the bound address (an unbound
//! socket's listen is judged as port 0: the kernel would pick any port). Pings are judged by
//! `/icmp` connect rules, never by UDP ones.
//! BPF LSM: EPERM with one event naming the agent, `socket`/`listen`, `default-deny` and the
//! kind or address. Fallback: seen at syscall entry: kill mode kills the caller. Both: the
//! kinds every program uses (TCP, UDP, unix, netlink-route) and allowed listens work, an
//! agent whose policy names the kinds makes them, and a non-agent is not affected.

use std::os::unix::process::ExitStatusExt as _;

use enforcer::kernel::{Backend, RawEvent};
use enforcer_common::*;
use enforcer_tests::{adversarial, compile_files, events, fallback, lsm_or_na, Agent, EPERM};

struct Setup {
    compiled: enforcer::policy::compile::CompiledPolicy,
    /// No `net.sockets`, kill mode; every kind named (and pings to loopback), kill mode.
    denied: u32,
    allowed: u32,
}

fn setup() -> Setup {
    let compiled = compile_files(&[
        (
            "denied.toml",
            r#"
[agent]
name = "adv-sock"
on_violation = "kill"
[net]
connect = ["127.0.0.1:1-65535"]
listen = ["127.0.0.1:8000-8099/tcp"]
"#,
        ),
        (
            "allowed.toml",
            r#"
[agent]
name = "adv-sock-ok"
on_violation = "kill"
[net]
sockets = ["packet", "raw", "netlink", "icmp", "other"]
connect = ["127.0.0.1/icmp"]
listen = ["*:0-65535"]
"#,
        ),
    ]);
    let id = |n: &str| compiled.agent_by_name(n).expect("agent").id;
    Setup {
        denied: id("adv-sock"),
        allowed: id("adv-sock-ok"),
        compiled,
    }
}

/// (case, operation, event op). AF_PACKET=17 (ETH_P_ALL=768), AF_INET=2, AF_INET6=10,
/// AF_VSOCK=40, AF_NETLINK=16 (NETLINK_AUDIT=9), AF_ALG=38; SOCK_STREAM=1, DGRAM=2, RAW=3,
/// SEQPACKET=5; IPPROTO_ICMP=1, ICMPV6=58, SCTP=132.
const DENIED: &[(&str, &str, u32)] = &[
    ("packet", "socket:17,3,768", OP_SOCKET),
    ("raw-icmp", "socket:2,3,1", OP_SOCKET),
    ("raw6", "socket:10,3,58", OP_SOCKET),
    ("ping-socket", "socket:2,2,1", OP_SOCKET),
    ("vsock", "socket:40,1,0", OP_SOCKET),
    ("netlink-audit", "socket:16,3,9", OP_SOCKET),
    ("sctp", "socket:2,1,132", OP_SOCKET),
    ("alg", "socket:38,5,0", OP_SOCKET),
    ("listen-port", "listen:127.0.0.1:18080", OP_LISTEN),
    ("listen-any-address", "listen:0.0.0.0:8001", OP_LISTEN),
    ("listen-v6", "listen:[::1]:8002", OP_LISTEN),
    ("listen-unbound", "listen-unbound:-", OP_LISTEN),
];

/// What an agent without `net.sockets` may still do.
const ALLOWED: &[&str] = &[
    "socket:16,3,0",
    "socket:2,1,0",
    "socket:2,2,0",
    "socket:10,2,17",
    "socket:1,1,0",
    "listen:127.0.0.1:8003",
];

/// What `net.sockets` opens (AF_ALG is `other`; a kernel without the family answers
/// EAFNOSUPPORT, past the hooks).
const NAMED: &[&str] = &[
    "socket:17,3,768",
    "socket:2,3,1",
    "socket:16,3,9",
    "socket:38,5,0",
    "listen-unbound:-",
];

/// Ping sockets need the caller's group in ping_group_range (Debian's default "1 0" is no
/// one): opened for the test, restored after.
struct PingRange(String);

impl PingRange {
    const PATH: &str = "/proc/sys/net/ipv4/ping_group_range";
    fn open() -> PingRange {
        let old = std::fs::read_to_string(Self::PATH).expect("ping_group_range");
        std::fs::write(Self::PATH, "0 2147483647").expect("open ping_group_range");
        PingRange(old)
    }
}

impl Drop for PingRange {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, self.0.trim());
    }
}

fn summary(evs: &[RawEvent]) -> Vec<(u32, u32, u32, u16, u16, u32)> {
    evs.iter()
        .map(|e| {
            let h = &e.header;
            (
                h.op,
                h.verdict,
                h.rule,
                h.net_family,
                h.net_port,
                h.net_proto,
            )
        })
        .collect()
}

#[test]
fn lsm_sockets() {
    let Some(mut backend) = lsm_or_na("adversarial_sockets::lsm_sockets") else {
        return;
    };
    let _ping = PingRange::open();
    let s = setup();
    backend.apply(&s.compiled, 1).expect("apply");
    let mut agent = Agent::spawn(&[], true);
    backend
        .register(agent.pid, s.denied, 1701)
        .expect("register");
    agent.start();
    let pid = agent.pid;
    let mut seen = 0;
    for (case, op, ev_op) in DENIED {
        let r = agent.op(op);
        let evs = events::since(&mut backend, &mut seen, pid);
        assert_eq!(r.errno, EPERM, "{case}: {r:?}; events {:?}", summary(&evs));
        let matching: Vec<&RawEvent> = evs.iter().filter(|e| e.header.op == *ev_op).collect();
        assert_eq!(matching.len(), 1, "{case}: one event: {:?}", summary(&evs));
        let h = &matching[0].header;
        assert_eq!(
            (h.verdict, h.rule, h.chain[0]),
            (VERDICT_DENY, RULE_DEFAULT_DENY, s.denied),
            "{case}: verdict, rule, agent"
        );
        adversarial::pass(&format!("17-sockets/{case}"), "lsm");
    }
    // The listen event names the bound address and port.
    for op in ALLOWED {
        let r = agent.op(op);
        assert_eq!(r.errno, 0, "allowed without net.sockets: {op}: {r:?}");
    }
    // A ping socket is judged as ICMP, not UDP: this agent has no /icmp rule (its connect rule
    // to 127.0.0.1 on every port is TCP and UDP).
    agent.finish();
    let mut ok = Agent::spawn(&[], true);
    backend.register(ok.pid, s.allowed, 1702).expect("register");
    ok.start();
    for op in NAMED {
        let r = ok.op(op);
        assert!(
            r.errno == 0 || r.errno == libc::EAFNOSUPPORT,
            "net.sockets allows {op}: {r:?}"
        );
    }
    let r = ok.op("ping:127.0.0.1");
    assert_eq!(r.errno, 0, "an /icmp rule allows the ping: {r:?}");
    let r = ok.op("ping:127.0.0.2");
    assert_eq!(r.errno, EPERM, "no /icmp rule for 127.0.0.2: {r:?}");
    let opid = ok.pid;
    ok.finish();
    let evs: Vec<RawEvent> = events::drain_all(&mut backend)
        .into_iter()
        .filter(|e| e.header.tgid == opid && e.header.verdict == VERDICT_DENY)
        .collect();
    assert!(
        evs.len() == 1 && evs[0].header.op == OP_SENDMSG && evs[0].header.net_proto == PROTO_ICMP,
        "only the ping to 127.0.0.2 is denied, as ICMP: {:?}",
        summary(&evs)
    );
    adversarial::pass("17-sockets/ping-judged-as-icmp", "lsm");
    non_agent(&mut backend);
    events::assert_nothing_lost(&backend);
    println!("checked: packet, raw, raw6, ping, vsock, netlink-audit, sctp, alg sockets and listens on an unallowed port, address, IPv6 and unbound: EPERM + one deny event each; TCP/UDP/unix/netlink-route and an allowed listen work; net.sockets allows the kinds; pings judged by /icmp rules; non-agents unaffected");
}

/// A non-agent makes every kind and listens anywhere, with no event.
fn non_agent(backend: &mut dyn Backend) {
    let mut other = Agent::spawn(&[], true);
    other.start();
    for op in ["socket:17,3,768", "socket:2,3,1", "listen:127.0.0.1:18081"] {
        let r = other.op(op);
        assert_eq!(r.errno, 0, "non-agent {op}: {r:?}");
    }
    let opid = other.pid;
    other.finish();
    assert!(
        !events::drain_all(backend)
            .iter()
            .any(|e| e.header.tgid == opid),
        "no event for a non-agent"
    );
}

#[test]
fn fallback_sockets() {
    let mut backend = fallback("adversarial_sockets::fallback_sockets");
    let _ping = PingRange::open();
    let s = setup();
    backend.apply(&s.compiled, 1).expect("apply");
    let mut session = 1710;
    for (case, op, ev_op) in DENIED {
        let agent = Agent::spawn(&[op.to_string()], false);
        session += 1;
        backend
            .register(agent.pid, s.denied, session)
            .expect("register");
        let pid = agent.pid;
        let (results, status) = agent.go_until_exit();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{case}: the agent must be killed: {results:?}"
        );
        let e = events::wait_for(&mut backend, case, |e| {
            e.header.tgid == pid && e.header.op == *ev_op
        });
        assert_eq!(
            (e.header.verdict, e.header.rule, e.header.chain[0]),
            (VERDICT_KILL, RULE_DEFAULT_DENY, s.denied),
            "{case}: verdict, rule, agent"
        );
        adversarial::pass(&format!("17-sockets/{case}"), "fallback");
    }
    let agent = Agent::spawn(
        &ALLOWED.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        false,
    );
    backend
        .register(agent.pid, s.denied, 1730)
        .expect("register");
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success() && results.iter().all(|r| r.errno == 0),
        "allowed without net.sockets: {results:?}"
    );
    let mut named: Vec<String> = NAMED.iter().map(|o| o.to_string()).collect();
    named.push("ping:127.0.0.1".into());
    let agent = Agent::spawn(&named, false);
    backend
        .register(agent.pid, s.allowed, 1731)
        .expect("register");
    let (results, status) = agent.go_until_exit();
    assert!(
        status.success()
            && results
                .iter()
                .all(|r| r.errno == 0 || r.errno == libc::EAFNOSUPPORT),
        "net.sockets allows them, /icmp allows the ping: {results:?}"
    );
    // A ping to an address no /icmp rule names.
    let agent = Agent::spawn(&["ping:127.0.0.2".to_string()], false);
    backend
        .register(agent.pid, s.allowed, 1732)
        .expect("register");
    let pid = agent.pid;
    let (results, _) = agent.go_until_exit();
    if results.first().is_some_and(|r| r.errno == EPERM) {
        let e = events::wait_for(&mut backend, "ping", |e| {
            e.header.tgid == pid && e.header.op == OP_SENDMSG
        });
        assert_eq!(e.header.net_proto, PROTO_ICMP, "judged as ICMP");
        adversarial::pass("17-sockets/ping-judged-as-icmp", "fallback");
    } else {
        adversarial::limitation(
            "17-sockets/ping-judged-as-icmp",
            "fallback",
            "this kernel runs no cgroup sendmsg4 program for ping sockets: an agent whose net.sockets names icmp pings any address (docs/fallback.md)",
        );
    }
    non_agent(&mut backend);
    events::assert_nothing_lost(&backend);
    println!("checked: packet, raw, raw6, ping, vsock, netlink-audit, sctp, alg sockets and listens on an unallowed port, address, IPv6 and unbound: kill mode kills at entry with one kill event each; TCP/UDP/unix/netlink-route and an allowed listen work; net.sockets allows the kinds; non-agents unaffected");
}
