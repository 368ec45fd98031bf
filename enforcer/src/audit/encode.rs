//! The daemon's hot path: a kernel event straight to its JSON line. Building an [`EventRecord`]
//! first costs about twenty allocations per event (and serde then walks it); this writes the
//! same bytes into the audit writer's buffer with names borrowed from the policy tables.
//!
//! The schema stays defined by [`EventRecord`] and [`event_record`]: a test checks that both
//! produce byte-identical lines over many generated events, so a field added there and not here
//! (or in another order) fails it.
//!
//! [`event_record`]: super::record::event_record

use std::io::Write as _;

use super::{
    clock::TimeFormatter,
    names::{self, lookup},
    record::{
        agent_name, c_string, chain_ids, ip_text, logs_open_flags, rule_agent_id, rule_text,
        socket_text, target_field, target_text, EventContext, TargetField,
    },
};
use crate::kernel::RawEvent;

/// Writes event lines; keeps what is worth keeping between events of a batch.
#[derive(Default)]
pub struct EventEncoder {
    time: TimeFormatter,
}

impl EventEncoder {
    /// Append the JSON object of `raw` as record `seq` (no newline).
    pub fn encode(&mut self, out: &mut Vec<u8>, seq: u64, raw: &RawEvent, ctx: &EventContext<'_>) {
        let h = &raw.header;
        let policy = ctx.policies.get(h.policy_version).map(|p| p.as_ref());
        let chain = chain_ids(h);

        out.extend_from_slice(b"{\"type\":\"event\",\"seq\":");
        int(out, seq);
        out.extend_from_slice(b",\"time\":\"");
        self.time.write(out, ctx.clock.wall_ns(h.ts_boot_ns));
        out.extend_from_slice(b"\",\"host\":");
        string(out, ctx.host);
        if let Some(&innermost) = chain.last() {
            out.extend_from_slice(b",\"agent\":");
            string(out, &agent_name(policy, innermost));
        }
        if chain.len() > 1 {
            out.extend_from_slice(b",\"chain\":[");
            for (i, &id) in chain.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, &agent_name(policy, id));
            }
            out.push(b']');
        }
        if let Some(id) = rule_agent_id(h) {
            out.extend_from_slice(b",\"rule_agent\":");
            string(out, &agent_name(policy, id));
        }
        // session_hex: 16 hex digits, no escaping needed.
        let _ = write!(out, ",\"session\":\"{:016x}\",\"pid\":", h.session);
        int(out, h.tgid);
        out.extend_from_slice(b",\"tid\":");
        int(out, h.pid);
        out.extend_from_slice(b",\"ppid\":");
        int(out, h.ppid);
        out.extend_from_slice(b",\"uid\":");
        int(out, h.uid);
        out.extend_from_slice(b",\"comm\":");
        string(out, &c_string(&h.comm));
        if let Some(exe) = (ctx.exe_of)(h.tgid) {
            out.extend_from_slice(b",\"exe\":");
            string(out, &exe);
        }
        out.extend_from_slice(b",\"op\":");
        match lookup(names::OPS, h.op) {
            Some(name) => string(out, name),
            None => string(out, &format!("op-{}", h.op)),
        }
        let (target, escaped) = target_text(&raw.target);
        match target_field(h, &raw.target) {
            TargetField::Path => {
                out.extend_from_slice(b",\"path\":");
                string(out, &target);
            }
            TargetField::Net => {
                out.extend_from_slice(b",\"addr\":");
                string(out, &ip_text(h.net_family, &h.net_addr));
                out.extend_from_slice(b",\"port\":");
                int(out, h.net_port);
                out.extend_from_slice(b",\"proto\":");
                string(out, names::proto_name(h.net_proto));
            }
            TargetField::UnixPath => {
                out.extend_from_slice(b",\"unix_path\":");
                string(out, &target);
            }
            TargetField::Process => {
                out.extend_from_slice(b",\"process\":");
                string(out, &target);
            }
            TargetField::Socket => {
                out.extend_from_slice(b",\"socket\":");
                string(out, &socket_text(h));
            }
            TargetField::None => {}
        }
        if h.access != 0 {
            out.extend_from_slice(b",\"access\":");
            bit_names(out, names::ACCESS, h.access, &[]);
        }
        if logs_open_flags(h.op) {
            out.extend_from_slice(b",\"open_flags\":");
            int(out, h.open_flags);
        }
        out.extend_from_slice(b",\"verdict\":");
        match lookup(names::VERDICTS, h.verdict) {
            Some(name) => string(out, name),
            None => string(out, &format!("verdict-{}", h.verdict)),
        }
        let (rule, pattern) = rule_text(policy, h.rule);
        out.extend_from_slice(b",\"rule\":");
        string(out, &rule);
        if let Some(pattern) = pattern {
            out.extend_from_slice(b",\"rule_pattern\":");
            string(out, pattern);
        }
        out.extend_from_slice(b",\"policy_version\":");
        int(out, h.policy_version);
        out.extend_from_slice(b",\"ring_pos\":");
        int(out, raw.ring_pos);
        let mut extra: [&str; 2] = [""; 2];
        let mut n = 0;
        for (set, flag) in [
            (policy.is_none(), names::FLAG_POLICY_UNKNOWN),
            (escaped, names::FLAG_TARGET_ESCAPED),
        ] {
            if set {
                extra[n] = flag;
                n += 1;
            }
        }
        if h.flags != 0 || n > 0 {
            out.extend_from_slice(b",\"flags\":");
            bit_names(out, names::FLAGS, h.flags, &extra[..n]);
        }
        out.push(b'}');
    }
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string, escaped exactly as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// The names of the bits set (in bit order, `bit-N` for unnamed ones), then `extra`.
fn bit_names(out: &mut Vec<u8>, table: &[(u32, &'static str)], bits: u32, extra: &[&str]) {
    out.push(b'[');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    for i in 0..32 {
        let bit = 1u32 << i;
        if bits & bit == 0 {
            continue;
        }
        sep(out);
        match lookup(table, bit) {
            Some(name) => string(out, name),
            None => {
                let _ = write!(out, "\"bit-{i}\"");
            }
        }
    }
    for name in extra {
        sep(out);
        string(out, name);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use enforcer_common::{abi::*, EventHeader};
    use proptest::prelude::*;

    use super::*;
    use crate::audit::{
        clock::BootClock,
        history::{PolicyHistory, PolicyNames},
        record::{event_record, tests::test_policy, CANARY_AGENT},
        Record,
    };

    fn history() -> PolicyHistory {
        let mut h = PolicyHistory::new(4);
        let policy = test_policy(
            &["coder", "help\"er", "sub"],
            &[
                (1, "coder.toml:10", "/work/**"),
                (2, "helper.toml:3", "api.example.com:443"),
                (3, "sub.toml:1", "/tmp/\\x"),
            ],
        );
        h.push(7, Arc::new(PolicyNames::of(&policy)));
        h
    }

    fn serde_line(raw: &RawEvent, ctx: &EventContext<'_>, seq: u64) -> String {
        let mut record = event_record(raw, ctx);
        record.seq = seq;
        serde_json::to_string(&Record::Event(record)).unwrap()
    }

    fn fast_line(raw: &RawEvent, ctx: &EventContext<'_>, seq: u64) -> String {
        let mut out = Vec::new();
        EventEncoder::default().encode(&mut out, seq, raw, ctx);
        String::from_utf8(out).expect("UTF-8")
    }

    prop_compose! {
        fn any_event()(
            op in prop_oneof![0u32..=OP_BPF + 1, Just(999)],
            verdict in prop_oneof![0u32..=4, Just(77)],
            rule in prop_oneof![Just(RULE_DEFAULT_DENY), 0u32..6],
            flags in prop_oneof![Just(0u32), any::<u32>(), 0u32..256],
            access in prop_oneof![Just(0u32), 0u32..16, any::<u32>()],
            depth in 0u32..6,
            chain in prop::array::uniform4(prop_oneof![0u32..5, Just(CANARY_AGENT)]),
            rule_agent in prop_oneof![0u32..5, Just(NO_AGENT)],
            version in prop_oneof![Just(7u32), Just(3)],
            family in prop_oneof![Just(AF_INET), Just(AF_INET6), Just(AF_UNIX), Just(0u16)],
            addr in any::<[u8; 16]>(),
            ids in any::<(u64, u32, u32, u32, u32, u16, u32, u32, u64)>(),
            comm in prop_oneof![Just(b"cat\0".to_vec()), prop::collection::vec(any::<u8>(), 0..16)],
            target in prop_oneof![
                Just(Vec::new()),
                "[ -~]{0,40}".prop_map(String::into_bytes),
                "\\PC{0,20}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..40),
            ],
            ring_pos in any::<u64>(),
        ) -> RawEvent {
            let (session, pid, tgid, ppid, uid, port, proto, open_flags, ts) = ids;
            let mut header = EventHeader {
                ts_boot_ns: ts % (1 << 62), session, depth, rule_agent, policy_version: version, pid, tgid, ppid, uid,
                op, verdict, rule, flags, access, open_flags, net_family: family, net_port: port, net_proto: proto % 4,
                net_addr: addr, chain, ..EventHeader::default()
            };
            let n = comm.len().min(16);
            header.comm[..n].copy_from_slice(&comm[..n]);
            RawEvent { header, target, ring_pos }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn encodes_exactly_what_serde_writes_for_the_event_record(raw in any_event(), seq in any::<u64>(), exe in any::<bool>()) {
            let policies = history();
            let exe_of = |pid: u32| (exe && !pid.is_multiple_of(3)).then(|| Arc::from(format!("/usr/bin/t\"{pid}").as_str()));
            let ctx = EventContext { host: "box-1", clock: BootClock::with_offset(1_795_444_620_000_000_000), policies: &policies, exe_of: &exe_of };
            prop_assert_eq!(fast_line(&raw, &ctx, seq), serde_line(&raw, &ctx, seq));
        }
    }

    #[test]
    fn one_encoder_keeps_times_right_across_events_of_different_seconds() {
        let policies = history();
        let exe_of = |_: u32| None;
        let ctx = EventContext {
            host: "h",
            clock: BootClock::with_offset(1_795_444_620_000_000_000),
            policies: &policies,
            exe_of: &exe_of,
        };
        let mut encoder = EventEncoder::default();
        for ts in [5u64, 7, 1_000_000_005, 999_999_999, 5, 86_400_000_000_123] {
            let raw = RawEvent {
                header: EventHeader {
                    ts_boot_ns: ts,
                    ..EventHeader::default()
                },
                target: b"/x".to_vec(),
                ring_pos: ts,
            };
            let mut out = Vec::new();
            encoder.encode(&mut out, 1, &raw, &ctx);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_line(&raw, &ctx, 1),
                "ts {ts}"
            );
        }
    }
}
