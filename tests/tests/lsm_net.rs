//! BPF LSM `socket_connect` / `socket_sendmsg`: IPv4, IPv6, IPv4-mapped IPv6, UDP sendto without
//! connect, unix socket paths and abstract names; EPERM to the caller, the decoded event, and the
//! reference evaluator's verdict and rule.

use std::net::{IpAddr, TcpListener, UdpSocket};

use enforcer::{
    kernel::Backend,
    policy::eval::{self, Request},
};
use enforcer_common::*;
use enforcer_tests::{compile, events, fixtures::rule_id, lsm_or_na, Agent, TempDir, EPERM};

#[test]
fn connect_sendto_unix() {
    let Some(mut backend) = lsm_or_na("lsm_net::connect_sendto_unix") else {
        return;
    };
    let allowed = TcpListener::bind("127.0.0.1:0").expect("listen");
    let denied = TcpListener::bind("127.0.0.1:0").expect("listen");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (pa, pd, pu) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let dir = TempDir::new("net");
    let sock_ok = dir.join("ok.sock");
    let sock_no = dir.join("no.sock");
    let _l1 = std::os::unix::net::UnixListener::bind(&sock_ok).expect("unix listen");
    let _l2 = std::os::unix::net::UnixListener::bind(&sock_no).expect("unix listen");
    let abstract_name = format!("enforcer-test-{}", std::process::id());
    let _l3 = {
        use std::os::linux::net::SocketAddrExt as _;
        let a =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&a).expect("abstract listen")
    };
    let compiled = compile(&format!(
        r#"
[agent]
name = "net-agent"

[net]
connect = ["127.0.0.1:{pa}/tcp", "127.0.0.0/8:{pu}/udp", "unix:{sock_ok}"]
deny = ["unix:@{abstract_name}"]
"#
    ));
    let agent_id = compiled.agent_by_name("net-agent").expect("agent").id;
    backend.apply(&compiled, 1).expect("apply");
    let ops = vec![
        format!("connect:127.0.0.1:{pa}"),
        format!("connect:127.0.0.1:{pd}"),
        format!("connect:[::ffff:127.0.0.1]:{pa}"),
        format!("connect:[::1]:{pa}"),
        format!("udp:127.0.0.1:{pu}"),
        format!("udp:127.0.0.1:{pd}"),
        format!("unix:{sock_ok}"),
        format!("unix:{sock_no}"),
        format!("unix:@{abstract_name}"),
    ];
    let agent = Agent::spawn(&ops, false);
    backend.register(agent.pid, agent_id, 5).expect("register");
    let pid = agent.pid;
    let r = agent.go(ops.len());
    let expect = [0, EPERM, 0, EPERM, 0, EPERM, 0, EPERM, EPERM];
    for (res, want) in r.iter().zip(expect) {
        assert_eq!(res.errno, want, "{} {}: {res:?}", res.op, res.arg);
    }
    // Events: the denied IPv4 connect, with address and port decoded.
    let e = events::wait_for(&mut backend, "denied tcp connect", |e| {
        e.header.tgid == pid && e.header.op == OP_CONNECT && e.header.net_port == pd
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);
    assert_eq!(e.header.net_family, AF_INET);
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
    // The allowed connect is logged too, naming its rule.
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
    // UDP sendto without connect is decided at sendmsg.
    let e = events::wait_for(&mut backend, "denied sendto", |e| {
        e.header.tgid == pid && e.header.op == OP_SENDMSG && e.header.net_port == pd
    });
    assert_eq!(e.header.verdict, VERDICT_DENY);
    assert_eq!(e.header.net_proto, PROTO_UDP);
    // Unix: path default deny, abstract explicit deny.
    let e = events::wait_for(&mut backend, "denied unix path", |e| {
        e.header.tgid == pid && events::target(e) == sock_no
    });
    assert_eq!(e.header.rule, RULE_DEFAULT_DENY);
    let e = events::wait_for(&mut backend, "denied abstract socket", |e| {
        e.header.tgid == pid && events::target(e) == format!("@{abstract_name}")
    });
    assert_eq!(
        e.header.rule,
        rule_id(&compiled, &format!("unix:@{abstract_name}"))
    );
    let oracle = eval::evaluate(
        &compiled,
        agent_id,
        &Request::ConnectUnix {
            path: format!("@{abstract_name}"),
        },
    );
    assert_eq!(oracle.rule, e.header.rule, "kernel == reference evaluator");
    println!("checked: tcp v4 allow/deny, v4-mapped v6 meets v4 rule, v6 default deny, udp sendto allow/deny, unix path allow/deny, abstract deny; events + oracle");
}
