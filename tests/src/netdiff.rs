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
    // Windowed allows (the kernel's CONDS check): one open now, one closed now, one open but
    // under a deny. Windows are an hour or more away from now, so the run cannot cross an edge.
    let (open, closed) = (utc_window(-60, 60), utc_window(120, 180));
    let compiled = compile(&format!(
        r#"
[agent]
name = "netdiff-agent"

[net]
connect = ["127.0.0.0/8:1000-20000/tcp", "127.2.3.0/24/udp", "127.0.0.1:30000-30100", "[::1]:8000-9000/tcp",
  {{ to = "127.3.0.0/16:1000-20000/tcp", when = {{ hours = "{open}", tz = "UTC" }} }},
  {{ to = "127.0.7.0/24:20001", when = {{ hours = "{closed}", tz = "UTC" }} }},
  {{ to = "127.1.0.0/16:8500", when = {{ hours = "{open}", tz = "UTC" }} }}]
deny = ["127.1.0.0/16", "127.2.3.4:5000", "127.0.0.0/8:1500/tcp"]
"#
    ));
    assert_eq!(compiled.conditions.len(), 2, "two distinct windows");
    let agent_id = compiled.agent_by_name("netdiff-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    let mut cases = Vec::new();
    for _ in 0..CASES {
        let r = next();
        let v4 = Ipv4Addr::new(
            127,
            [0, 1, 2, 3][(r % 4) as usize],
            [0, 3, 7][(r >> 8) as usize % 3],
            [1, 4, 9][(r >> 16) as usize % 3],
        );
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
    let open_rule = crate::fixtures::rule_id(&compiled, "127.3.0.0/16:1000-20000/tcp");
    let (mut by_open_window, mut in_closed_window) = (0, 0);
    for ((addr, port, udp), res) in cases.iter().zip(&results) {
        let oracle = eval::evaluate(
            &compiled,
            agent_id,
            &Request::Connect {
                addr: *addr,
                port: *port,
                udp: *udp,
            },
        );
        let kernel_denied = res.errno == EPERM;
        if kernel_denied {
            denied += 1
        } else {
            allowed += 1
        }
        if !kernel_denied && oracle.rule == open_rule {
            by_open_window += 1;
        }
        if matches!(addr, IpAddr::V4(a) if a.octets()[..3] == [127, 0, 7]) && *port == 20001 {
            in_closed_window += 1;
        }
        if kernel_denied != (oracle.verdict != Verdict::Allow) {
            mismatches.push(format!(
                "{} {addr}:{port}: kernel errno {} vs oracle {:?} rule {}",
                if *udp { "udp" } else { "tcp" },
                res.errno,
                oracle.verdict,
                oracle.rule
            ));
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
            e.header.tgid == pid
                && e.header.op == op
                && e.header.net_port == *port
                && e.header.net_addr == want_addr
                && e.header.rule == oracle.rule
        });
        if !found {
            mismatches.push(format!(
                "{addr}:{port} udp={udp}: no kernel event with the oracle's rule {}",
                oracle.rule
            ));
        }
    }
    println!(
        "{} cases: {allowed} allowed, {denied} denied, {} mismatches",
        cases.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "kernel and reference evaluator disagree:\n{}",
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        allowed > CASES / 10 && denied > CASES / 10,
        "the mix must exercise both verdicts"
    );
    assert!(
        by_open_window > 0 && in_closed_window > 0,
        "the mix must exercise open ({by_open_window}) and closed ({in_closed_window}) windows"
    );
}

/// `HH:MM-HH:MM` in UTC from `from_min` to `to_min` minutes after now.
fn utc_window(from_min: i64, to_min: i64) -> String {
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        / 60;
    let hhmm = |m: i64| {
        let m = m.rem_euclid(24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!("{}-{}", hhmm(now_min + from_min), hhmm(now_min + to_min))
}
