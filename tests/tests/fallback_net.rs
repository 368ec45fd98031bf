//! Fallback network enforcement (cgroup connect4/6, sendmsg4/6 at the cgroup2 root): IPv4, IPv6,
//! IPv4-mapped IPv6, ports, UDP sendto without connect. EPERM to the caller, the decoded event,
//! and the reference evaluator's verdict and rule. Runs on every kernel, the host included.

use std::net::{IpAddr, TcpListener, UdpSocket};

use enforcer::{
    kernel::Backend,
    policy::eval::{self, Request},
};
use enforcer_common::*;
use enforcer_tests::{compile, events, fallback, fixtures::rule_id, Agent, EPERM};

#[test]
fn connect_sendto_v4_v6() {
    let mut backend = fallback("fallback_net::connect_sendto_v4_v6");
    let allowed = TcpListener::bind("127.0.0.1:0").expect("listen");
    let denied = TcpListener::bind("127.0.0.1:0").expect("listen");
    let v6 = TcpListener::bind("[::1]:0").ok();
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (pa, pd, pu) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let compiled = compile(&format!(
        r#"
[agent]
name = "net-agent"

[net]
connect = ["127.0.0.1:{pa}/tcp", "127.0.0.0/8:{pu}/udp", "[::1]:{pa}/tcp"]
deny = ["127.0.0.2/32"]
"#
    ));
    let agent_id = compiled.agent_by_name("net-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let ops = vec![
        format!("connect:127.0.0.1:{pa}"),
        format!("connect:127.0.0.1:{pd}"),
        format!("connect:[::ffff:127.0.0.1]:{pa}"),
        format!("connect:[::ffff:127.0.0.1]:{pd}"),
        format!("connect:127.0.0.2:{pa}"),
        format!("udp:127.0.0.1:{pu}"),
        format!("udp:127.0.0.1:{pd}"),
        format!("udp:[::1]:{pd}"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 5).expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    let expect = [0, EPERM, 0, EPERM, EPERM, 0, EPERM, EPERM];
    for (res, want) in r.iter().zip(expect) {
        assert_eq!(res.errno, want, "{} {}: {res:?}", res.op, res.arg);
    }
    let e = events::wait_for(&mut backend, "denied tcp connect", |e| {
        e.header.tgid == pid
            && e.header.op == OP_CONNECT
            && e.header.net_port == pd
            && e.header.net_family == AF_INET
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);
    assert_eq!(&e.header.net_addr[12..], &[127, 0, 0, 1]);
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::Connect {
            addr: IpAddr::from([127, 0, 0, 1]),
            port: pd,
            udp: false,
        },
    );
    assert_eq!(oracle.rule, e.header.rule, "kernel == reference evaluator");
    let e = events::wait_for(&mut backend, "explicit deny of 127.0.0.2", |e| {
        e.header.tgid == pid && e.header.net_addr[12..] == [127, 0, 0, 2]
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);
    assert_eq!(
        e.header.rule,
        rule_id(&compiled, "127.0.0.2/32"),
        "explicit deny names its rule"
    );
    let e = events::wait_for(&mut backend, "allowed tcp connect", |e| {
        e.header.tgid == pid
            && e.header.op == OP_CONNECT
            && e.header.net_port == pa
            && e.header.verdict == VERDICT_ALLOW
    });
    assert_eq!(
        e.header.rule,
        rule_id(&compiled, &format!("127.0.0.1:{pa}/tcp"))
    );
    let e = events::wait_for(
        &mut backend,
        "v4-mapped v6 connect allowed by the v4 rule",
        |e| e.header.tgid == pid && e.header.net_family == AF_INET6 && e.header.net_port == pa,
    );
    assert_eq!(e.header.verdict, VERDICT_ALLOW);
    assert_eq!(
        e.header.rule,
        rule_id(&compiled, &format!("127.0.0.1:{pa}/tcp"))
    );
    let e = events::wait_for(&mut backend, "denied udp sendto", |e| {
        e.header.tgid == pid
            && e.header.op == OP_SENDMSG
            && e.header.net_port == pd
            && e.header.net_family == AF_INET
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);
    assert_eq!(e.header.net_proto, PROTO_UDP);
    let e = events::wait_for(&mut backend, "denied udp6 sendto", |e| {
        e.header.tgid == pid && e.header.op == OP_SENDMSG && e.header.net_family == AF_INET6
    });
    assert_eq!(e.header.net_addr, std::net::Ipv6Addr::LOCALHOST.octets());
    // A process that is not an agent is never affected.
    let other = Agent::spawn(
        &[
            format!("connect:127.0.0.1:{pd}"),
            format!("udp:127.0.0.1:{pd}"),
        ],
        false,
    );
    let r = other.go(2);
    assert!(
        r.iter().all(|x| x.errno == 0),
        "non-agent must be unaffected: {r:?}"
    );
    drop((allowed, denied, v6, udp));
    println!("checked: tcp v4 allow/deny/explicit deny, v4-mapped v6 meets v4 rules, udp v4/v6 sendto deny; events + oracle; non-agent unaffected");
}
