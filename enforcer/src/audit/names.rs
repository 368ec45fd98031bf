//! Stable names for the numeric fields of kernel events. These strings are part of the audit log
//! schema (docs/events.md): never rename one, only add.

use enforcer_common::abi::*;

pub const OPS: &[(u32, &str)] = &[
    (OP_OPEN, "open"),
    (OP_EXEC, "exec"),
    (OP_CONNECT, "connect"),
    (OP_SENDMSG, "sendmsg"),
    (OP_UNLINK, "unlink"),
    (OP_RENAME, "rename"),
    (OP_MKDIR, "mkdir"),
    (OP_RMDIR, "rmdir"),
    (OP_LINK, "link"),
    (OP_SYMLINK, "symlink"),
    (OP_TRUNCATE, "truncate"),
    (OP_CHMOD, "chmod"),
    (OP_CHOWN, "chown"),
    (OP_MKNOD, "mknod"),
    (OP_JOIN, "join"),
    (OP_BPF, "bpf"),
    (OP_SIGNAL, "signal"),
    (OP_PTRACE, "ptrace"),
    (OP_IO_URING, "io_uring"),
    (OP_TTY_INJECT, "tty-inject"),
    (OP_MOUNT, "mount"),
    (OP_CHROOT, "chroot"),
    (OP_NAMESPACE, "namespace"),
    (OP_COMPAT_SYSCALL, "compat-syscall"),
    (OP_SHARE_FILES, "share-files"),
    (OP_SOCKET, "socket"),
    (OP_LISTEN, "listen"),
];

pub const VERDICTS: &[(u32, &str)] = &[
    (VERDICT_ALLOW, "allow"),
    (VERDICT_DENY, "deny"),
    (VERDICT_AUDIT_DENY, "audit-deny"),
    (VERDICT_KILL, "kill"),
];

pub const FLAGS: &[(u32, &str)] = &[
    (EVENT_FLAG_PATH_TRUNCATED, "path-truncated"),
    (EVENT_FLAG_PATH_UNRESOLVED, "path-unresolved"),
    (EVENT_FLAG_ADDR_UNREADABLE, "addr-unreadable"),
    (EVENT_FLAG_RELATIVE_PATH, "relative-path"),
    (EVENT_FLAG_PROC_TABLE_FULL, "proc-table-full"),
    (EVENT_FLAG_SECOND_PATH, "second-path"),
    (EVENT_FLAG_TARGET_CUT, "target-cut"),
    (EVENT_FLAG_SCRIPT, "script"),
    (EVENT_FLAG_DELEGATION_REFUSED, "delegation-refused"),
    (EVENT_FLAG_DELETED, "deleted"),
    (EVENT_FLAG_LANDLOCK, "landlock"),
    (EVENT_FLAG_INTERNAL_FAILURE, "internal-failure"),
    (EVENT_FLAG_PATHLESS, "pathless"),
];

pub const ACCESS: &[(u32, &str)] = &[
    (ACCESS_READ, "read"),
    (ACCESS_WRITE, "write"),
    (ACCESS_EXEC, "exec"),
    (ACCESS_CONNECT, "connect"),
];

/// Flag added by user space (not a kernel bit): non-UTF-8 bytes in the target were escaped.
pub const FLAG_TARGET_ESCAPED: &str = "target-escaped";
/// Flag added by user space: the event's policy version is no longer known, rule ids unresolved.
pub const FLAG_POLICY_UNKNOWN: &str = "policy-version-unknown";

pub(crate) fn lookup(table: &[(u32, &'static str)], value: u32) -> Option<&'static str> {
    table.iter().find(|(v, _)| *v == value).map(|(_, n)| *n)
}

/// Name of an `OP_*` value; unknown values (a newer kernel object) become `op-<n>`.
pub fn op_name(op: u32) -> String {
    lookup(OPS, op).map_or_else(|| format!("op-{op}"), str::to_owned)
}

/// Name of a `VERDICT_*` value; unknown values become `verdict-<n>`.
pub fn verdict_name(verdict: u32) -> String {
    lookup(VERDICTS, verdict).map_or_else(|| format!("verdict-{verdict}"), str::to_owned)
}

/// Names of the bits set in `bits`; bits without a name become `bit-<n>`.
fn bit_names(table: &[(u32, &'static str)], bits: u32) -> Vec<String> {
    (0..32)
        .map(|i| 1u32 << i)
        .filter(|bit| bits & bit != 0)
        .map(|bit| {
            lookup(table, bit)
                .map_or_else(|| format!("bit-{}", bit.trailing_zeros()), str::to_owned)
        })
        .collect()
}

pub fn flag_names(flags: u32) -> Vec<String> {
    bit_names(FLAGS, flags)
}

pub fn access_names(access: u32) -> Vec<String> {
    bit_names(ACCESS, access)
}

/// `PROTO_*` of a network event.
pub fn proto_name(proto: u32) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        // A listen is judged with its own protocol bit; the socket is TCP.
        PROTO_LISTEN => "tcp",
        _ => "other",
    }
}

/// The `net.sockets` kind a socket of this family, type and protocol needs (`socket_permission`),
/// or `tcp-udp-unix` for the kinds that need none.
pub fn socket_kind(family: u16, stype: u32, protocol: u32) -> &'static str {
    let need = socket_permission(family, stype, protocol);
    SOCKET_KINDS
        .iter()
        .find(|(_, bit)| *bit == need)
        .map_or("tcp-udp-unix", |(name, _)| name)
}

/// Is `name` an op name of the schema? (For `enforcer events --op`.)
pub fn is_op_name(name: &str) -> bool {
    OPS.iter().any(|(_, n)| *n == name)
}

pub fn is_verdict_name(name: &str) -> bool {
    VERDICTS.iter().any(|(_, n)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_unique_values_and_names() {
        for table in [OPS, VERDICTS, FLAGS, ACCESS] {
            for (i, (v, n)) in table.iter().enumerate() {
                for (v2, n2) in &table[i + 1..] {
                    assert_ne!(v, v2, "value {v} named twice ({n}, {n2})");
                    assert_ne!(n, n2, "name {n} used twice");
                }
            }
        }
    }

    #[test]
    fn every_op_from_the_abi_has_a_name() {
        for op in OP_OPEN..=OP_SHARE_FILES {
            assert!(!op_name(op).starts_with("op-"), "OP value {op} has no name");
        }
        assert_eq!(op_name(999), "op-999");
    }

    #[test]
    fn every_flag_bit_the_abi_defines_has_a_name() {
        let all = EVENT_FLAG_PATH_TRUNCATED
            | EVENT_FLAG_PATH_UNRESOLVED
            | EVENT_FLAG_ADDR_UNREADABLE
            | EVENT_FLAG_RELATIVE_PATH
            | EVENT_FLAG_PROC_TABLE_FULL
            | EVENT_FLAG_SECOND_PATH
            | EVENT_FLAG_TARGET_CUT
            | EVENT_FLAG_SCRIPT
            | EVENT_FLAG_DELEGATION_REFUSED
            | EVENT_FLAG_DELETED
            | EVENT_FLAG_LANDLOCK
            | EVENT_FLAG_INTERNAL_FAILURE;
        let names = flag_names(all);
        assert_eq!(names.len(), 12, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with("bit-")), "{names:?}");
        assert_eq!(flag_names(1 << 30), vec!["bit-30".to_string()]);
    }

    #[test]
    fn access_bits_are_named_in_bit_order() {
        assert_eq!(
            access_names(ACCESS_READ | ACCESS_WRITE),
            vec!["read", "write"]
        );
        assert_eq!(access_names(0), Vec::<String>::new());
    }
}
