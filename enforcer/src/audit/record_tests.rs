use std::{path::PathBuf, sync::Arc};

use enforcer_common::EventHeader;

use super::*;
use crate::{
    audit::history::PolicyNames,
    policy::compile::{
        AgentInfo, CompiledPolicy, Mode, OnViolation, RuleInfo, RuleKind, SourceLoc,
    },
};

pub(crate) fn test_policy(agents: &[&str], rules: &[(u32, &str, &str)]) -> CompiledPolicy {
    CompiledPolicy {
        agents: agents
            .iter()
            .enumerate()
            .map(|(i, name)| AgentInfo {
                id: i as u32 + 1,
                name: (*name).to_owned(),
                description: String::new(),
                mode: Mode::Enforce,
                on_violation: OnViolation::Audit,
                config: Default::default(),
                source: PathBuf::from(format!("{name}.toml")),
            })
            .collect(),
        rules: rules
            .iter()
            .enumerate()
            .map(|(i, (agent, text_id, pattern))| RuleInfo {
                id: i as u32 + 1,
                text_id: (*text_id).to_owned(),
                agent: *agent,
                kind: RuleKind::FileRead,
                pattern: (*pattern).to_owned(),
                source: SourceLoc {
                    file: PathBuf::from("p.toml"),
                    line: 1,
                    col: 1,
                },
            })
            .collect(),
        ..CompiledPolicy::default()
    }
}

fn history() -> PolicyHistory {
    let mut h = PolicyHistory::new(4);
    h.push(
        7,
        Arc::new(PolicyNames::of(&test_policy(
            &["coder", "helper"],
            &[
                (1, "coder.toml:10", "/work/**"),
                (2, "helper.toml:3", "api.example.com:443"),
            ],
        ))),
    );
    h
}

fn header(op: u32, verdict: u32) -> EventHeader {
    let mut h = EventHeader {
        ts_boot_ns: 1_000,
        session: 0xabc,
        depth: 1,
        policy_version: 7,
        pid: 101,
        tgid: 100,
        ppid: 1,
        uid: 1000,
        op,
        verdict,
        rule: 1,
        ..EventHeader::default()
    };
    h.chain[0] = 1;
    h.rule_agent = 1;
    h.comm[..3].copy_from_slice(b"cat");
    h
}

fn map(header: EventHeader, target: &[u8]) -> EventRecord {
    let policies = history();
    let exe = |pid: u32| (pid == 100).then(|| Arc::from("/usr/bin/cat"));
    let ctx = EventContext {
        host: "box",
        clock: BootClock::with_offset(1_000_000_000),
        policies: &policies,
        exe_of: &exe,
    };
    event_record(
        &RawEvent {
            header,
            target: target.to_vec(),
            ring_pos: 4096,
        },
        &ctx,
    )
}

#[test]
fn file_event_maps_every_field() {
    let mut h = header(OP_OPEN, VERDICT_ALLOW);
    h.access = ACCESS_READ;
    h.open_flags = 0o100;
    let r = map(h, b"/work/a.txt");
    assert_eq!(r.time, "1970-01-01T00:00:01.000001000Z");
    assert_eq!(r.host, "box");
    assert_eq!(r.agent.as_deref(), Some("coder"));
    assert!(r.chain.is_empty(), "a depth-1 agent has no chain field");
    assert_eq!(r.rule_agent, None);
    assert_eq!(r.session, "0000000000000abc");
    assert_eq!((r.pid, r.tid, r.ppid, r.uid), (100, 101, 1, 1000));
    assert_eq!(r.comm, "cat");
    assert_eq!(r.exe.as_deref(), Some("/usr/bin/cat"));
    assert_eq!(r.op, "open");
    assert_eq!(r.path.as_deref(), Some("/work/a.txt"));
    assert_eq!(r.access, vec!["read"]);
    assert_eq!(r.open_flags, Some(0o100));
    assert_eq!(r.verdict, "allow");
    assert_eq!(r.rule, "coder.toml:10");
    assert_eq!(r.rule_pattern.as_deref(), Some("/work/**"));
    assert_eq!(r.policy_version, 7);
    assert!(r.flags.is_empty(), "{:?}", r.flags);
}

#[test]
fn every_op_and_verdict_gets_its_schema_name() {
    let expected_ops = [
        "open", "exec", "connect", "sendmsg", "unlink", "rename", "mkdir", "rmdir", "link",
        "symlink", "truncate", "chmod", "chown", "mknod", "join",
    ];
    for (i, name) in expected_ops.iter().enumerate() {
        assert_eq!(map(header(i as u32 + 1, VERDICT_DENY), b"/x").op, *name);
    }
    for (verdict, name) in [
        (VERDICT_ALLOW, "allow"),
        (VERDICT_DENY, "deny"),
        (VERDICT_AUDIT_DENY, "audit-deny"),
        (VERDICT_KILL, "kill"),
    ] {
        assert_eq!(map(header(OP_EXEC, verdict), b"/bin/sh").verdict, name);
    }
}

#[test]
fn every_kernel_flag_is_named() {
    let mut h = header(OP_RENAME, VERDICT_DENY);
    h.flags = EVENT_FLAG_PATH_TRUNCATED
        | EVENT_FLAG_PATH_UNRESOLVED
        | EVENT_FLAG_ADDR_UNREADABLE
        | EVENT_FLAG_RELATIVE_PATH
        | EVENT_FLAG_PROC_TABLE_FULL
        | EVENT_FLAG_SECOND_PATH
        | EVENT_FLAG_TARGET_CUT
        | EVENT_FLAG_SCRIPT;
    let r = map(h, b"/x");
    assert_eq!(
        r.flags,
        vec![
            "path-truncated",
            "path-unresolved",
            "addr-unreadable",
            "relative-path",
            "proc-table-full",
            "second-path",
            "target-cut",
            "script"
        ]
    );
}

#[test]
fn ipv4_connect_shows_dotted_address_port_and_proto() {
    let mut h = header(OP_CONNECT, VERDICT_ALLOW);
    h.rule = 2;
    h.chain[0] = 2;
    h.rule_agent = 2;
    h.net_family = AF_INET;
    h.net_port = 443;
    h.net_proto = PROTO_TCP;
    h.net_addr = Ipv4Addr::new(93, 184, 216, 34).to_ipv6_mapped().octets();
    let r = map(h, b"");
    assert_eq!(r.agent.as_deref(), Some("helper"));
    assert_eq!(r.addr.as_deref(), Some("93.184.216.34"));
    assert_eq!(r.port, Some(443));
    assert_eq!(r.proto.as_deref(), Some("tcp"));
    assert_eq!(r.path, None);
    assert_eq!(
        r.rule_pattern.as_deref(),
        Some("api.example.com:443"),
        "the host name that allowed it"
    );
}

#[test]
fn ipv6_and_mapped_ipv6_keep_their_family() {
    let mut h = header(OP_SENDMSG, VERDICT_DENY);
    h.net_family = AF_INET6;
    h.net_proto = PROTO_UDP;
    h.net_port = 53;
    h.net_addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
    let r = map(h, b"");
    assert_eq!(
        (r.addr.as_deref(), r.proto.as_deref(), r.op.as_str()),
        (Some("2001:db8::1"), Some("udp"), "sendmsg")
    );
    h.net_addr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets();
    assert_eq!(map(h, b"").addr.as_deref(), Some("::ffff:10.0.0.1"));
}

#[test]
fn bpf_signal_and_ptrace_events_carry_their_detail_in_open_flags() {
    for (op, name, detail) in [
        (OP_BPF, "bpf", 11),
        (OP_SIGNAL, "signal", 9),
        (OP_PTRACE, "ptrace", 0x12),
    ] {
        let mut h = header(op, VERDICT_DENY);
        h.open_flags = detail;
        let r = map(h, b"");
        assert_eq!(
            (r.op.as_str(), r.open_flags, r.path),
            (name, Some(detail), None)
        );
    }
}

#[test]
fn unix_socket_connect_uses_unix_path() {
    let mut h = header(OP_CONNECT, VERDICT_DENY);
    h.net_family = AF_UNIX;
    let r = map(h, b"@abstract");
    assert_eq!(r.unix_path.as_deref(), Some("@abstract"));
    assert_eq!((r.path, r.addr), (None, None));
}

#[test]
fn non_utf8_targets_are_escaped_reversibly_and_flagged() {
    let r = map(header(OP_OPEN, VERDICT_DENY), b"/a\\b/\xff\xfe");
    assert_eq!(r.path.as_deref(), Some("/a\\\\b/\\xff\\xfe"));
    assert_eq!(r.flags, vec![names::FLAG_TARGET_ESCAPED]);
    assert_eq!(
        target_bytes(r.path.as_deref().unwrap(), true).as_deref(),
        Some(&b"/a\\b/\xff\xfe"[..])
    );
    let odd: &[u8] = b"/t/new\nline \"quote\" back\\slash \x01 \xc3\xa9 \xc3";
    let r = map(header(OP_OPEN, VERDICT_DENY), odd);
    let line = serde_json::to_string(&r).unwrap();
    assert!(!line.contains('\n'), "one record per line: {line}");
    let back: EventRecord = serde_json::from_str(&line).unwrap();
    let escaped = back.flags.iter().any(|f| f == names::FLAG_TARGET_ESCAPED);
    assert_eq!(
        target_bytes(back.path.as_deref().unwrap(), escaped).as_deref(),
        Some(odd),
        "{line}"
    );
    assert_eq!(
        target_bytes("/ok\\q", true),
        None,
        "a lone backslash is no escape"
    );
}

#[test]
fn default_deny_and_unknown_versions_and_rules() {
    let mut h = header(OP_OPEN, VERDICT_DENY);
    h.rule = 0;
    assert_eq!(map(h, b"/etc/shadow").rule, "default-deny");
    h.rule = 99;
    assert_eq!(
        map(h, b"/etc/shadow").rule,
        "#99",
        "a rule id outside the table stays numeric"
    );
    h.policy_version = 3;
    h.rule = 1;
    let r = map(h, b"/etc/shadow");
    assert_eq!((r.rule.as_str(), r.agent.as_deref()), ("#1", Some("#1")));
    assert!(
        r.flags.contains(&names::FLAG_POLICY_UNKNOWN.to_owned()),
        "{:?}",
        r.flags
    );
}

#[test]
fn sub_agent_chain_and_deciding_agent() {
    let mut h = header(OP_OPEN, VERDICT_DENY);
    h.chain = [1, 2, 0, 0];
    h.depth = 2;
    h.rule_agent = 1;
    let r = map(h, b"/work/src/x");
    assert_eq!(r.agent.as_deref(), Some("helper"));
    assert_eq!(r.chain, vec!["coder", "helper"]);
    assert_eq!(r.rule_agent.as_deref(), Some("coder"));
}

#[test]
fn records_round_trip_through_json_with_a_type_tag() {
    let rec = Record::Event(map(header(OP_EXEC, VERDICT_KILL), b"/usr/bin/curl"));
    let line = serde_json::to_string(&rec).unwrap();
    assert!(line.starts_with(r#"{"type":"event""#), "{line}");
    assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), rec);
    let lost = Record::Lost(LostRecord {
        count: 3,
        agent: Some("coder".into()),
        source: "kernel".into(),
        ..Default::default()
    });
    let line = serde_json::to_string(&lost).unwrap();
    assert!(
        line.contains(r#""type":"lost""#) && line.contains(r#""count":3"#),
        "{line}"
    );
    assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), lost);
}

#[test]
fn process_and_mount_events_name_their_target_and_detail() {
    let mut h = header(OP_PTRACE, VERDICT_DENY);
    h.open_flags = 0x12;
    let r = map(h, b"4242 (bash)");
    assert_eq!(
        (r.process.as_deref(), r.path.as_deref(), r.open_flags),
        (Some("4242 (bash)"), None, Some(0x12)),
        "the target process, not a path"
    );
    for (op, name, target) in [
        (OP_TTY_INJECT, "tty-inject", &b"/dev/pts/3"[..]),
        (OP_MOUNT, "mount", b"/work/mnt"),
        (OP_CHROOT, "chroot", b"/work/root"),
        (OP_NAMESPACE, "namespace", b""),
    ] {
        let mut h = header(op, VERDICT_DENY);
        h.open_flags = 0x5412;
        let r = map(h, target);
        assert_eq!(r.op, name);
        assert_eq!(r.process, None);
        assert_eq!(
            r.path.as_deref().unwrap_or(""),
            String::from_utf8_lossy(target)
        );
        assert_eq!(
            r.open_flags,
            (op != OP_CHROOT).then_some(0x5412),
            "{name}: the ioctl, mount or clone flags"
        );
    }
}
