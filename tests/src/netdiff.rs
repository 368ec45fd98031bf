//! The network differential test, shared by the LSM and fallback backends: random loopback
//! destinations (127.0.0.0/8, ::1 and IPv4-mapped forms), ports and protocols; the kernel's
//! verdict (EPERM or not) and the rule id in its event must equal the reference evaluator's.
//! Only loopback addresses are used: nothing leaves the machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enforcer::{
    kernel::Backend,
    policy::eval::{self, Request, Verdict},
};
use enforcer_common::*;

use crate::{compile, events, fixtures::Rng, Agent, EPERM};

const CASES: usize = 600;

/// Run the cases against `backend` (network is refused with EPERM on both backends).
pub fn run(backend: &mut dyn Backend) {
    let compiled = compile(
        r#"
[agent]
name = "netdiff-agent"

[net]
connect = ["127.0.0.0/8:1000-20000/tcp", "127.2.3.0/24/udp", "127.0.0.1:30000-30100", "[::1]:8000-9000/tcp"]
deny = ["127.1.0.0/16", "127.2.3.4:5000", "127.0.0.0/8:1500/tcp"]
"#,
    );
    let agent_id = compiled.agent_by_name("netdiff-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next();
    let mut cases = Vec::new();
    for _ in 0..CASES {
        let r = next();
        let v4 = Ipv4Addr::new(127, [0, 1, 2, 3][(r % 4) as usize], [0, 3, 7][(r >> 8) as usize % 3], [1, 4, 9][(r >> 16) as usize % 3]);
        let addr: IpAddr = match (r >> 24) % 4 {
            0 => IpAddr::V6(Ipv6Addr::LOCALHOST),
            1 => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => IpAddr::V4(v4),
        };
        let port = [999u16, 1000, 1500, 5000, 8500, 20000, 20001, 30050][(r >> 32) as usize % 8];
        let udp = (r >> 40) % 3 == 0;
        cases.push((addr, port, udp));
    }
    let ops: Vec<String> = cases
        .iter()
        .map(|(a, p, udp)| {
            let sa = std::net::SocketAddr::new(*a, *p);
            format!("{}:{sa}", if *udp { "udp" } else { "connect" })
        })
        .collect();
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 77).expect("register");
    let pid = agent.pid;
    let results = agent.go(ops.len());
    let seen = events::drain_all(backend);
    let mut mismatches = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for ((addr, port, udp), res) in cases.iter().zip(&results) {
        let oracle = eval::evaluate(&compiled, agent_id, &Request::Connect { addr: *addr, port: *port, udp: *udp });
        let kernel_denied = res.errno == EPERM;
        if kernel_denied { denied += 1 } else { allowed += 1 }
        if kernel_denied != (oracle.verdict != Verdict::Allow) {
            mismatches.push(format!("{} {addr}:{port}: kernel errno {} vs oracle {:?} rule {}", if *udp { "udp" } else { "tcp" }, res.errno, oracle.verdict, oracle.rule));
            continue;
        }
        // Connects are always logged; datagram sends only when denied.
        let op = if *udp { OP_SENDMSG } else { OP_CONNECT };
        if *udp && !kernel_denied {
            continue;
        }
        let want_addr = match addr {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let found = seen.iter().any(|e| {
            e.header.tgid == pid && e.header.op == op && e.header.net_port == *port && e.header.net_addr == want_addr && e.header.rule == oracle.rule
        });
        if !found {
            mismatches.push(format!("{addr}:{port} udp={udp}: no kernel event with the oracle's rule {}", oracle.rule));
        }
    }
    println!("{} cases: {allowed} allowed, {denied} denied, {} mismatches", cases.len(), mismatches.len());
    assert!(mismatches.is_empty(), "kernel and reference evaluator disagree:\n{}", mismatches.iter().take(20).cloned().collect::<Vec<_>>().join("\n"));
    assert!(allowed > CASES / 10 && denied > CASES / 10, "the mix must exercise both verdicts");
}
