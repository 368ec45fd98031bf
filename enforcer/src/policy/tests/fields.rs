//! Every field of the language reaches the compiled policy.

use std::net::IpAddr;

use enforcer_common::*;

use super::*;
use crate::policy::compile::{Mode, OnViolation, RuleKind};

#[test]
fn agent_header_fields_and_defaults() {
    let p = compiled(&[("a.toml", "[agent]\nname = \"a\"\n")]);
    let a = &p.agents[0];
    assert_eq!(
        (a.id, a.name.as_str(), a.description.as_str()),
        (1, "a", "")
    );
    assert_eq!(
        (a.mode, a.on_violation),
        (Mode::Enforce, OnViolation::Audit),
        "defaults"
    );
    assert_eq!(
        a.config.flags, AGENT_PRESENT,
        "no audit, kill or log flags by default"
    );
    assert_eq!(a.source, std::path::PathBuf::from("a.toml"));

    let text = "[agent]\nname = \"b\"\ndescription = \"does b\"\nmode = \"audit\"\non_violation = \"kill\"\nlog.file_allow = true\n";
    let p = compiled(&[("b.toml", text)]);
    let b = &p.agents[0];
    assert_eq!(b.description, "does b");
    assert_eq!((b.mode, b.on_violation), (Mode::Audit, OnViolation::Kill));
    assert_eq!(
        b.config.flags,
        AGENT_PRESENT | AGENT_AUDIT | AGENT_KILL | AGENT_LOG_FILE_ALLOW
    );
}

#[test]
fn agents_get_dense_ids_in_name_order() {
    let p = compiled(&[
        ("z.toml", "[agent]\nname = \"zed\"\n"),
        ("y.toml", "[agent]\nname = \"alpha\"\n"),
    ]);
    let names: Vec<(u32, &str)> = p.agents.iter().map(|a| (a.id, a.name.as_str())).collect();
    assert_eq!(names, vec![(1, "alpha"), (2, "zed")]);
}

#[test]
fn delegate_sets_the_sub_agent_bit() {
    let p = compiled(&[
        ("a.toml", "[agent]\nname = \"a\"\ndelegate = [\"b\"]\n"),
        ("b.toml", "[agent]\nname = \"b\"\n"),
    ]);
    assert_eq!(
        p.agents[0].config.delegate_lo,
        1 << 2,
        "agent a may delegate to agent id 2 (b)"
    );
    assert_eq!(p.agents[1].config.delegate_lo, 0);
}

#[test]
fn match_exe_selects_the_agent_and_allows_its_exec() {
    let p = compiled(&[(
        "a.toml",
        &agent("match.exe = [\"/opt/a/bin/agent\", \"/opt/a/tools/**\"]\n"),
    )]);
    let exe: Vec<(&[u8], u32, u32)> = p
        .exe_matches
        .iter()
        .map(|e| (e.bytes.as_slice(), e.value.agent, e.value.rule))
        .collect();
    assert_eq!(
        exe,
        vec![
            (&b"/opt/a/bin/agent\0"[..], 1, 1),
            (&b"/opt/a/tools\0"[..], 1, 2),
            (&b"/opt/a/tools/"[..], 1, 2)
        ]
    );
    assert_eq!(p.rules[0].kind, RuleKind::MatchExe);
    assert_eq!(
        decide(&p, &exec("/opt/a/bin/agent")),
        (Verdict::Allow, "a.toml:3:14".into())
    );
    assert_eq!(
        decide(&p, &exec("/opt/a/tools/x/y")),
        (Verdict::Allow, "a.toml:3:34".into())
    );
    assert_eq!(
        decide(&p, &open_read("/opt/a/bin/agent")),
        (Verdict::Deny, "".into()),
        "match.exe grants exec only"
    );
}

#[test]
fn match_cgroup_is_normalized_and_listed() {
    let p = compiled(&[("a.toml", &agent("match.cgroup = [\"/agents/a/\"]\n"))]);
    assert_eq!(p.cgroup_matches.len(), 1);
    assert_eq!(
        p.cgroup_matches[0].path,
        std::path::PathBuf::from("/agents/a")
    );
    assert_eq!(
        (
            p.cgroup_matches[0].value.agent,
            p.cgroup_matches[0].value.rule
        ),
        (1, 1)
    );
    assert_eq!(p.rules[0].kind, RuleKind::MatchCgroup);
}

#[test]
fn file_fields_grant_and_deny_their_access_kinds() {
    let body = "[file]\nread = [\"/r\"]\nwrite = [\"/w\"]\ndeny = [\"/d\"]\ndeny_read = [\"/dr\"]\ndeny_write = [\"/dw\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let value = |path: &[u8]| {
        p.path_entries
            .iter()
            .find(|e| e.bytes == path)
            .map(|e| (e.value.allow, e.value.deny))
    };
    assert_eq!(value(b"/r\0"), Some((ACCESS_READ, 0)));
    assert_eq!(value(b"/w\0"), Some((ACCESS_WRITE, 0)));
    assert_eq!(
        value(b"/d\0"),
        Some((0, ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC))
    );
    assert_eq!(value(b"/dr\0"), Some((0, ACCESS_READ)));
    assert_eq!(value(b"/dw\0"), Some((0, ACCESS_WRITE)));
    let kinds: Vec<RuleKind> = p.rules.iter().map(|r| r.kind).collect();
    use RuleKind::*;
    assert_eq!(
        kinds,
        vec![FileRead, FileWrite, FileDeny, FileDenyRead, FileDenyWrite]
    );
}

#[test]
fn exec_fields() {
    let p = compiled(&[(
        "a.toml",
        &agent("[exec]\nallow = [\"/usr/bin/**\"]\ndeny = [\"/usr/bin/curl\"]\n"),
    )]);
    assert_eq!(
        decide(&p, &exec("/usr/bin/git")),
        (Verdict::Allow, "a.toml:4".into())
    );
    assert_eq!(
        decide(&p, &exec("/usr/bin/curl")),
        (Verdict::Deny, "a.toml:5".into())
    );
    assert_eq!(
        decide(&p, &open_read("/usr/bin/git")),
        (Verdict::Deny, "".into()),
        "exec.allow grants exec only"
    );
}

#[test]
fn net_fields_ip_host_and_unix() {
    let body = "[net]\nconnect = [\"10.0.0.0/8:443/tcp\", \"api.example.com:443\", \"unix:/run/x.sock\", \"unix:@bus\"]\n\
                deny = [\"10.9.0.0/16\"]\n";
    let mut hosts = ResolvedHosts::new();
    hosts.insert("api.example.com", "192.0.2.7".parse().unwrap());
    let p = compiled_with(&[("a.toml", &agent(body))], &hosts);
    let connect = |addr: &str, port, udp| Request::Connect {
        addr: addr.parse::<IpAddr>().unwrap(),
        port,
        udp,
    };
    assert_eq!(
        decide(&p, &connect("10.1.2.3", 443, false)),
        (Verdict::Allow, "a.toml:4:12".into())
    );
    assert_eq!(
        decide(&p, &connect("10.1.2.3", 443, true)),
        (Verdict::Deny, "".into()),
        "tcp only"
    );
    assert_eq!(
        decide(&p, &connect("10.9.2.3", 443, false)),
        (Verdict::Deny, "a.toml:5".into())
    );
    assert_eq!(
        decide(&p, &connect("192.0.2.7", 443, true)),
        (Verdict::Allow, "a.toml:4:34".into())
    );
    assert_eq!(
        decide(&p, &connect("::ffff:192.0.2.7", 443, false)).0,
        Verdict::Allow,
        "IPv4-mapped IPv6"
    );
    assert_eq!(
        decide(
            &p,
            &Request::ConnectUnix {
                path: "/run/x.sock".into()
            }
        ),
        (Verdict::Allow, "a.toml:4:57".into())
    );
    assert_eq!(
        decide(
            &p,
            &Request::ConnectUnix {
                path: "@bus".into()
            }
        ),
        (Verdict::Allow, "a.toml:4:77".into())
    );
    assert_eq!(
        decide(
            &p,
            &Request::ConnectUnix {
                path: "@other".into()
            }
        ),
        (Verdict::Deny, "".into())
    );
    assert_eq!(
        decide(&p, &open_read("/run/x.sock")).0,
        Verdict::Deny,
        "a unix rule grants connect only"
    );
    let h = p.host_rules();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].agent, h[0].rule, h[0].host.as_str()),
        (1, 2, "api.example.com")
    );
    assert_eq!(h[0].addrs, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
}

#[test]
fn unresolved_hosts_compile_to_nothing_and_are_reported() {
    let p = compiled(&[(
        "a.toml",
        &agent("[net]\nconnect = [\"api.example.com:443\"]\n"),
    )]);
    assert!(
        p.net_entries.is_empty(),
        "no addresses, no entries: {:?}",
        p.net_entries
    );
    let unresolved: Vec<&str> = p.unresolved_hosts().map(|h| h.host.as_str()).collect();
    assert_eq!(unresolved, vec!["api.example.com"]);
}

#[test]
fn rule_ids_implicit_per_line_with_column_when_shared_and_explicit() {
    let body = "[file]\nread = [\n  \"/one\",\n  \"/two\", \"/three\",\n  { path = \"/four\", id = \"four\" },\n]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let ids: Vec<&str> = p.rules.iter().map(|r| r.text_id.as_str()).collect();
    assert_eq!(ids, vec!["a.toml:5", "a.toml:6:3", "a.toml:6:11", "four"]);
    let four = &p.rules[3];
    assert_eq!(
        (four.pattern.as_str(), four.source.line, four.source.col),
        ("/four", 7, 12)
    );
}

#[test]
fn includes_by_path_and_by_name_once_each_after_own_rules() {
    let files = [
        ("a.toml", "include = [\"sets/x.toml\", \"y\"]\n[agent]\nname = \"a\"\n[file]\nread = [\"/own\"]\n"),
        ("sets/x.toml", "include = [\"y.toml\"]\n[set]\nname = \"x\"\n[file]\nread = [\"/x\"]\n"),
        ("sets/y.toml", "[set]\nname = \"y\"\ndescription = \"why\"\n[file]\nread = [\"/y\"]\n"),
    ];
    let set = load(&files);
    let a = set.agent("a").expect("agent a");
    let rules: Vec<(&str, &str)> = a
        .rules
        .iter()
        .map(|r| (r.pattern.as_str(), r.text_id.as_str()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("/own", "a.toml:5"),
            ("/x", "sets/x.toml:5"),
            ("/y", "sets/y.toml:5")
        ],
        "y is included once"
    );
    let sets: Vec<(&str, &str)> = set
        .sets
        .iter()
        .map(|s| (s.name.as_str(), s.description.as_str()))
        .collect();
    assert_eq!(sets, vec![("x", ""), ("y", "why")]);
}

#[test]
fn directories_load_agents_and_sets_with_relative_rule_ids() {
    let dir = std::env::temp_dir().join(format!("enforcer-policy-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sets")).unwrap();
    std::fs::write(
        dir.join("a.toml"),
        "include = [\"tls\"]\n[agent]\nname = \"a\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sets/tls.toml"),
        "[set]\nname = \"tls\"\n[file]\nread = [\"/etc/ssl/**\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a policy").unwrap();
    let set =
        crate::policy::load_paths(std::slice::from_ref(&dir)).unwrap_or_else(|d| panic!("{d}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(set.agents.len(), 1);
    assert_eq!(
        set.agents[0].rules[0].text_id, "sets/tls.toml:4",
        "ids are relative to the directory argument"
    );
    assert_eq!(
        set.sets[0].file,
        dir.join("sets/tls.toml"),
        "messages use the real path"
    );
}

#[test]
fn the_example_policies_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let set = crate::policy::load_paths(&[root])
        .unwrap_or_else(|d| panic!("policies/ must pass check:\n{d}"));
    let names: Vec<&str> = set.agents.iter().map(|a| a.name.as_str()).collect();
    for expected in ["coding-agent", "data-runner", "locked-down"] {
        assert!(
            names.contains(&expected),
            "policies/ should define {expected}, has {names:?}"
        );
    }
    let p = compile(&set, &ResolvedHosts::new()).unwrap_or_else(|d| panic!("{d}"));
    let id = |n: &str| p.agent_by_name(n).unwrap().id;
    let ssh = open_read("/home/dev/.ssh/id_ed25519");
    assert_eq!(
        evaluate(&p, id("coding-agent"), &ssh).verdict,
        Verdict::Deny
    );
    assert_eq!(
        p.rule(evaluate(&p, id("coding-agent"), &ssh).rule)
            .unwrap()
            .text_id,
        "ssh-keys"
    );
    assert_eq!(
        evaluate(
            &p,
            id("coding-agent"),
            &open_write("/work/project/src/lib.rs")
        )
        .verdict,
        Verdict::Allow
    );
    assert_eq!(
        evaluate(&p, id("coding-agent"), &open_read("/work/project/.env")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        evaluate(&p, id("coding-agent"), &exec("/usr/bin/git")).verdict,
        Verdict::Allow
    );
    assert_eq!(
        evaluate(&p, id("data-runner"), &exec("/usr/bin/dash")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        evaluate(&p, id("data-runner"), &open_write("/srv/data/x.csv")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        evaluate(&p, id("data-runner"), &open_read("/srv/data/x.csv")).verdict,
        Verdict::Allow
    );
    assert_eq!(
        evaluate(&p, id("locked-down"), &open_read("/etc/passwd")).verdict,
        Verdict::Deny
    );
}

#[test]
fn process_section_sets_the_allow_bits_and_defaults_to_none() {
    let none = compiled(&[("a.toml", &agent(""))]);
    assert_eq!(
        none.agents[0].config.flags & AGENT_ALLOW_MASK,
        0,
        "mount, chroot and user namespaces are denied by default"
    );
    let all = compiled(&[(
        "a.toml",
        &agent("[process]\nmount = true\nchroot = true\nuserns = true\n"),
    )]);
    assert_eq!(
        all.agents[0].config.flags & AGENT_ALLOW_MASK,
        AGENT_ALLOW_MOUNT | AGENT_ALLOW_CHROOT | AGENT_ALLOW_USERNS
    );
    let one = compiled(&[("a.toml", &agent("[process]\nchroot = true\n"))]);
    assert_eq!(
        one.agents[0].config.flags & AGENT_ALLOW_MASK,
        AGENT_ALLOW_CHROOT
    );
}

#[test]
fn process_section_is_checked() {
    let e = errors(&[("a.toml", &agent("[process]\nmounts = true\n"))]);
    assert!(
        e.iter().any(|m| m.contains("unknown field `mounts`")),
        "a misspelled permission is an error: {e:?}"
    );
    let e = errors(&[("a.toml", &agent("[process]\nmount = \"yes\"\n"))]);
    assert!(!e.is_empty(), "a permission is a boolean: {e:?}");
    let e = errors(&[("s.toml", "[set]\nname = \"s\"\n[process]\nmount = true\n")]);
    assert!(
        e.iter()
            .any(|m| m.contains("[process] belongs in an agent policy")),
        "a permission set cannot widen its includers' mounts: {e:?}"
    );
}

#[test]
fn net_sockets_sets_the_socket_bits_and_defaults_to_none() {
    let none = compiled(&[("a.toml", &agent(""))]);
    assert_eq!(
        none.agents[0].config.flags & AGENT_ALLOW_MASK,
        0,
        "no socket kind beyond TCP/UDP/unix/netlink-route by default"
    );
    let some = compiled(&[(
        "a.toml",
        &agent("[net]\nsockets = [\"icmp\", \"packet\", \"other\"]\n"),
    )]);
    assert_eq!(
        some.agents[0].config.flags & AGENT_ALLOW_MASK,
        AGENT_ALLOW_SOCK_ICMP | AGENT_ALLOW_SOCK_PACKET | AGENT_ALLOW_SOCK_OTHER
    );
    let e = errors(&[("a.toml", &agent("[net]\nsockets = [\"tcp\"]\n"))]);
    assert!(
        e.iter()
            .any(|m| m.contains("unknown socket kind `tcp`") && m.contains("need no entry")),
        "an unknown kind is an error that says what exists: {e:?}"
    );
    let e = errors(&[(
        "s.toml",
        "[set]\nname = \"s\"\n[net]\nsockets = [\"raw\"]\n",
    )]);
    assert!(
        e.iter()
            .any(|m| m.contains("net.sockets belongs in an agent policy")),
        "a permission set cannot widen its includers' sockets: {e:?}"
    );
}

#[test]
fn socket_kinds_are_classified_once_for_both_sides() {
    // (family, type, protocol) -> the bit it needs; 0 = every program may.
    for (family, stype, protocol, need) in [
        (AF_UNIX, 1, 0, 0),
        (AF_INET, 1, 0, 0),
        (AF_INET6, 1 | 0o2000000, 6, 0), // SOCK_CLOEXEC ignored
        (AF_INET, 1, IPPROTO_MPTCP, 0),
        (AF_INET, 2, 0, 0),
        (AF_INET6, 2, 17, 0),
        (AF_NETLINK, 3, 0, 0),
        (AF_NETLINK, 3, 9, AGENT_ALLOW_SOCK_NETLINK),
        (AF_INET, 2, IPPROTO_ICMP, AGENT_ALLOW_SOCK_ICMP),
        (AF_INET6, 2, IPPROTO_ICMPV6, AGENT_ALLOW_SOCK_ICMP),
        (AF_INET, 3, 1, AGENT_ALLOW_SOCK_RAW),
        (AF_INET, 1, IPPROTO_SCTP, AGENT_ALLOW_SOCK_SCTP),
        (AF_INET6, 5, IPPROTO_SCTP, AGENT_ALLOW_SOCK_SCTP),
        (AF_INET, 2, 136, AGENT_ALLOW_SOCK_OTHER), // udplite
        (AF_PACKET, 3, 768, AGENT_ALLOW_SOCK_PACKET),
        (AF_VSOCK, 1, 0, AGENT_ALLOW_SOCK_VSOCK),
        (38, 5, 0, AGENT_ALLOW_SOCK_OTHER), // AF_ALG
        (31, 1, 3, AGENT_ALLOW_SOCK_OTHER), // bluetooth
    ] {
        assert_eq!(
            socket_permission(family, stype, protocol),
            need,
            "family {family} type {stype} protocol {protocol}"
        );
    }
}

#[test]
fn listen_rules_carry_only_the_listen_protocol_and_denies_cover_everything() {
    use crate::policy::net::mapped;
    let body = "[net]\nlisten = [\"127.0.0.1:8000-8099\"]\nconnect = [\"127.0.0.1:8000/tcp\", \"10.0.0.0/8/icmp\"]\ndeny = [\"192.0.2.1\", \"192.0.2.2/tcp\"]\n";
    let p = compiled(&[("a.toml", &agent(body))]);
    let protos = |addr: &str| -> Vec<(u32, u32)> {
        let want = mapped(addr.parse().unwrap());
        p.net_entries
            .iter()
            .filter(|e| e.addr == want && e.prefix_bits == 128)
            .flat_map(|e| e.value.rules[..e.value.count as usize].to_vec())
            .map(|r| (r.proto, r.action))
            .collect()
    };
    let loopback = protos("127.0.0.1");
    assert!(
        loopback.contains(&(PROTO_LISTEN, ACTION_ALLOW)),
        "{loopback:?}"
    );
    assert!(
        loopback.contains(&(PROTO_TCP, ACTION_ALLOW)),
        "{loopback:?}"
    );
    assert_eq!(
        protos("192.0.2.1"),
        vec![(PROTO_ANY | PROTO_ICMP | PROTO_LISTEN, ACTION_DENY)],
        "a deny without a protocol denies every use"
    );
    assert_eq!(
        protos("192.0.2.2"),
        vec![(PROTO_TCP | PROTO_LISTEN, ACTION_DENY)],
        "a /tcp deny covers listening"
    );
    for (bad, says) in [
        (
            "[net]\nlisten = [\"127.0.0.1:53/udp\"]\n",
            "net.listen rules are for TCP",
        ),
        (
            "[net]\nlisten = [\"unix:/run/x.sock\"]\n",
            "listening on a unix socket",
        ),
        (
            "[net]\nconnect = [\"10.0.0.1:7/icmp\"]\n",
            "ICMP has no ports",
        ),
        (
            "[net]\nconnect = [\"10.0.0.1:7/sctp\"]\n",
            "expected `/tcp`, `/udp` or `/icmp`",
        ),
    ] {
        let e = errors(&[("a.toml", &agent(bad))]);
        assert!(e.iter().any(|m| m.contains(says)), "{bad}: {e:?}");
    }
}
