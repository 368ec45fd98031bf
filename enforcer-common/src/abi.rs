//! Numeric constants shared by both sides.

/// Highest agent id + 1. Agent ids are dense, assigned by the policy compiler from 1.
pub const MAX_AGENTS: u32 = 1024;
/// Agent id of the load-time canary (`enforcer::kernel::probe`): the last id, never a policy's
/// agent (policies use `1..=MAX_AGENTS - 2`; 0 is "not an agent").
pub const CANARY_AGENT: u32 = MAX_AGENTS - 1;
/// Agent id 0 means "not an agent".
pub const NO_AGENT: u32 = 0;
/// Longest delegation chain (issue: sub-agents). Index 0 is the outermost agent.
pub const MAX_CHAIN: usize = 4;

/// Bytes of path data in a path LPM key (the kernel's LPM data limit is 256; 4 go to the ruleset).
pub const PATH_KEY_BYTES: usize = 252;
/// Size of the scratch buffer `bpf_d_path` writes into (PATH_MAX).
pub const PATH_BUF_BYTES: usize = 4096;
/// Longest basename / suffix a basename rule can name (key bytes, NUL padded).
pub const NAME_KEY_BYTES: usize = 60;
/// Port-range entries one CIDR LPM value can carry (all CIDR rules that contain the prefix).
pub const NET_RULES_PER_PREFIX: usize = 16;
/// Distinct depths at which one agent may use a single-component `*` wildcard.
pub const MAX_WILDCARD_DEPTHS: u32 = 4;
/// Deepest path component a `*` may stand at (bit d-1 of `AgentConfig::wildcard_depths`).
pub const MAX_WILDCARD_DEPTH: u32 = 16;
/// Dots in a basename the kernel tries as suffix starts (`a.tar.gz` -> `.tar.gz`, `.gz`).
pub const MAX_SUFFIX_TRIES: u32 = 4;

// ---- access bits (rule values, evaluation) -------------------------------------------------
pub const ACCESS_READ: u32 = 1 << 0;
pub const ACCESS_WRITE: u32 = 1 << 1;
pub const ACCESS_EXEC: u32 = 1 << 2;
/// Connect / send to a unix socket path (path rules) .
pub const ACCESS_CONNECT: u32 = 1 << 3;
/// Index of an access bit into the per-access rule id arrays.
pub const ACCESS_INDEX_READ: usize = 0;
pub const ACCESS_INDEX_WRITE: usize = 1;
pub const ACCESS_INDEX_EXEC: usize = 2;
pub const ACCESS_INDEX_CONNECT: usize = 3;
pub const ACCESS_KINDS: usize = 4;

// ---- ruleset ids (first 4 bytes of every rule key) -----------------------------------------
/// Rules live in two slots; the active slot is in `Config::active_slot`. A reload fills the
/// inactive slot, flips `active_slot` with one store, then clears the old slot, so a hook never
/// sees a mix of old and new rules.
pub const RULESET_SLOT_SHIFT: u32 = 31;
/// `ruleset = slot << 31 | agent`. Stored big-endian in LPM keys so the trie compares it first.
#[inline(always)]
pub const fn ruleset(slot: u32, agent: u32) -> u32 {
    ((slot & 1) << RULESET_SLOT_SHIFT) | (agent & 0x7fff_ffff)
}

// ---- operations (events) -------------------------------------------------------------------
pub const OP_OPEN: u32 = 1;
pub const OP_EXEC: u32 = 2;
pub const OP_CONNECT: u32 = 3;
pub const OP_SENDMSG: u32 = 4;
pub const OP_UNLINK: u32 = 5;
pub const OP_RENAME: u32 = 6;
pub const OP_MKDIR: u32 = 7;
pub const OP_RMDIR: u32 = 8;
pub const OP_LINK: u32 = 9;
pub const OP_SYMLINK: u32 = 10;
pub const OP_TRUNCATE: u32 = 11;
pub const OP_CHMOD: u32 = 12;
pub const OP_CHOWN: u32 = 13;
pub const OP_MKNOD: u32 = 14;
/// A process became an agent (launcher, exe match or cgroup match).
pub const OP_JOIN: u32 = 15;
/// A bpf() system call by an agent: always denied (an agent with CAP_BPF could otherwise open
/// the pinned maps and edit its own rules or identity).
pub const OP_BPF: u32 = 16;
/// A signal from an agent to the daemon (`task_kill`): always denied; `open_flags` holds the
/// signal number.
pub const OP_SIGNAL: u32 = 17;
/// A ptrace attach-level access by an agent to the daemon (`ptrace_access_check`: attach, its
/// `/proc/<pid>/mem`, process_vm_readv/writev, pidfd_getfd): always denied; `open_flags` holds
/// the `PTRACE_MODE_*` bits.
pub const OP_PTRACE: u32 = 18;
/// The fallback only: an agent's `io_uring_setup`/`io_uring_enter`. Operations submitted to a ring
/// do not pass the openat/connect tracepoints the fallback judges targets at, so a ring is denied
/// as a whole (default deny: no rule allows it); the LSM hooks judge each io_uring open and
/// connect by its target instead and never emit this.
pub const OP_IO_URING: u32 = 19;
/// An agent pushing input into a terminal (`ioctl` TIOCSTI, TIOCLINUX): always denied; the
/// event's `open_flags` holds the ioctl command. Keystrokes pushed into a shell outside the agent
/// run there unconfined.
pub const OP_TTY_INJECT: u32 = 20;
/// mount, bind mount, move_mount (the mount API's `open_tree`/`fsmount` mounts are attached
/// with it), remount: denied unless the agent's `[process] mount = true`. `open_flags` holds the
/// mount flags where the hook has them.
pub const OP_MOUNT: u32 = 21;
/// chroot and pivot_root: denied unless `[process] chroot = true`.
pub const OP_CHROOT: u32 = 22;
/// A new user namespace (`userns_create`; on the fallback unshare/clone/clone3 with any
/// `CLONE_NEW*` flag, and setns): denied unless `[process] userns = true`. `open_flags` holds the
/// clone/unshare flags (or setns's nstype) where the hook has them.
pub const OP_NAMESPACE: u32 = 23;
/// The fallback only: a 32-bit (compat, `int 0x80`) or x32 system call by an agent started by
/// `enforcer run`, which the 64-bit syscall tracepoints never see. The launcher's seccomp
/// filter kills the process before the call runs (`SECCOMP_RET_KILL_PROCESS` with
/// [`SECCOMP_REASON_COMPAT`]); the `signal_generate` tracepoint turns that SIGSYS into the
/// event (verdict `kill`, rule `default-deny`).
pub const OP_COMPAT_SYSCALL: u32 = 24;
/// The fallback only: `clone` with `CLONE_FILES` but not `CLONE_THREAD` by an agent started by
/// `enforcer run` (a second process sharing the descriptor table would outlive a kill-mode kill
/// of the opener and read the denied file). Killed by the launcher's seccomp filter before the
/// call runs ([`SECCOMP_REASON_SHARE_FILES`]); `open_flags` is empty.
pub const OP_SHARE_FILES: u32 = 25;
/// socket(2) (and socketpair, io_uring's socket op on BPF LSM) of a family, type and protocol
/// the agent's `net.sockets` does not name ([`socket_permission`]). The event's net fields
/// hold the family, the type (in `net_port`) and the protocol (in `net_proto`).
pub const OP_SOCKET: u32 = 26;
/// listen(2) on an IPv4/IPv6 stream socket: the bound local address and port (0 = not bound
/// yet: the kernel picks a port, which only a rule covering port 0 allows) judged by the
/// agent's `net.listen` rules (net proto [`PROTO_LISTEN`]).
pub const OP_LISTEN: u32 = 27;

// ---- the launcher's seccomp filter (enforcer/src/kernel/seccomp.rs) -------------------------
/// `SECCOMP_RET_DATA` of the launcher filter's kill actions: this tag in the high byte, the
/// reason in the low byte. The kernel passes it as the SIGSYS's `si_errno`, which the
/// `signal_generate` tracepoint reads, so the event says why (an agent's own filter could
/// send the same value: it can only report itself).
pub const SECCOMP_DATA_TAG: u32 = 0x4500;
pub const SECCOMP_DATA_TAG_MASK: u32 = 0xff00;
pub const SECCOMP_REASON_COMPAT: u32 = 1;
pub const SECCOMP_REASON_SHARE_FILES: u32 = 2;

// ---- verdicts ------------------------------------------------------------------------------
pub const VERDICT_ALLOW: u32 = 1;
pub const VERDICT_DENY: u32 = 2;
/// Audit mode: the policy denies, the operation was allowed and logged.
pub const VERDICT_AUDIT_DENY: u32 = 3;
/// Fallback backend, kill mode: the process was sent SIGKILL.
pub const VERDICT_KILL: u32 = 4;

// ---- event flags ---------------------------------------------------------------------------
/// The path was longer than `PATH_KEY_BYTES`: prefix rules were matched on its first bytes
/// (exact for every rule the compiler accepts; see docs/kernel-maps.md).
pub const EVENT_FLAG_PATH_TRUNCATED: u32 = 1 << 0;
/// The path could not be resolved at all (longer than PATH_MAX, d_path error): fail closed.
pub const EVENT_FLAG_PATH_UNRESOLVED: u32 = 1 << 1;
/// The socket address could not be read: fail closed.
pub const EVENT_FLAG_ADDR_UNREADABLE: u32 = 1 << 2;
/// A unix socket path that is relative: cannot be matched, fail closed.
pub const EVENT_FLAG_RELATIVE_PATH: u32 = 1 << 3;
/// The process table was full: the operation that needed a new entry was denied.
pub const EVENT_FLAG_PROC_TABLE_FULL: u32 = 1 << 4;
/// The event's target is the second path of a two-path operation (rename/link destination).
pub const EVENT_FLAG_SECOND_PATH: u32 = 1 << 5;
/// The event target was cut to fit the event record.
pub const EVENT_FLAG_TARGET_CUT: u32 = 1 << 6;
/// Script exec: the target is the script (checked as a read), not the interpreter.
pub const EVENT_FLAG_SCRIPT: u32 = 1 << 7;
/// An agent process exec'd a binary of another agent's `match.exe` that its policy does not
/// delegate to (or the chain is at `MAX_CHAIN`): it stays what it was.
pub const EVENT_FLAG_DELEGATION_REFUSED: u32 = 1 << 8;
/// The file was unlinked (an open or exec through a descriptor): `d_path` ends its name with
/// [`DELETED_SUFFIX`], which was cut before the decision, so it is judged by the name it had.
pub const EVENT_FLAG_DELETED: u32 = 1 << 9;
/// The kernel refused the operation before it happened (EACCES or EXDEV from the Landlock
/// envelope, or from file permissions) and the fallback saw the failed syscall's exit: the
/// event is that refusal, decided again by the policy (docs/landlock.md).
pub const EVENT_FLAG_LANDLOCK: u32 = 1 << 10;
/// Something inside the program failed (a helper, a copy, a loop, an unreadable input): the
/// decision could not be made and denied (fail closed); `FAILS` counts where (docs/kernel-maps.md).
pub const EVENT_FLAG_INTERNAL_FAILURE: u32 = 1 << 11;
/// The opened object has no path (a pipe, socket or anonymous inode reopened through
/// `/proc/<pid>/fd`, a memfd: anything on a kernel-internal mount): no path rule names it. It is
/// allowed when the process already holds it in a descriptor ([`RULE_HELD_OBJECT`]), denied
/// otherwise (docs/policy.md, "Objects without a path").
pub const EVENT_FLAG_PATHLESS: u32 = 1 << 12;
/// What `d_path` appends to the path of an unlinked (or anonymous: memfd) file.
pub const DELETED_SUFFIX: &[u8; 10] = b" (deleted)";

// ---- how a process joined its agent (ProcState::joined_by, OP_JOIN events) -----------------
pub const JOIN_LAUNCHER: u32 = 1;
pub const JOIN_EXE: u32 = 2;
pub const JOIN_CGROUP: u32 = 3;

// ---- agent config flags --------------------------------------------------------------------
/// The slot has an agent at this id.
pub const AGENT_PRESENT: u32 = 1 << 0;
/// mode = "audit": decide and log, never block.
pub const AGENT_AUDIT: u32 = 1 << 1;
/// Fallback backend: on_violation = "kill".
pub const AGENT_KILL: u32 = 1 << 2;
/// Log allowed file opens too (exec/connect allows are always logged).
pub const AGENT_LOG_FILE_ALLOW: u32 = 1 << 3;
/// `[process] mount = true`: the agent may mount, bind mount and move mounts.
pub const AGENT_ALLOW_MOUNT: u32 = 1 << 4;
/// `[process] chroot = true`: the agent may chroot and pivot_root.
pub const AGENT_ALLOW_CHROOT: u32 = 1 << 5;
/// `[process] userns = true`: the agent may create user (and, on the fallback, other) namespaces.
pub const AGENT_ALLOW_USERNS: u32 = 1 << 6;
// `net.sockets`: socket kinds beyond TCP, UDP, unix and netlink-route ([`socket_permission`]).
/// `icmp`: IPv4/IPv6 datagram "ping" sockets (IPPROTO_ICMP/ICMPV6).
pub const AGENT_ALLOW_SOCK_ICMP: u32 = 1 << 7;
/// `raw`: IPv4/IPv6 raw sockets (SOCK_RAW, any protocol).
pub const AGENT_ALLOW_SOCK_RAW: u32 = 1 << 8;
/// `sctp`: IPv4/IPv6 SCTP sockets.
pub const AGENT_ALLOW_SOCK_SCTP: u32 = 1 << 9;
/// `packet`: AF_PACKET (link-layer frames).
pub const AGENT_ALLOW_SOCK_PACKET: u32 = 1 << 10;
/// `netlink`: every netlink protocol (NETLINK_ROUTE needs nothing: the C library uses it).
pub const AGENT_ALLOW_SOCK_NETLINK: u32 = 1 << 11;
/// `vsock`: AF_VSOCK (the hypervisor and other VMs).
pub const AGENT_ALLOW_SOCK_VSOCK: u32 = 1 << 12;
/// `other`: every other family (bluetooth, can, alg, tipc, rds, xdp, key...) and every other
/// IPv4/IPv6 type or protocol (udplite...).
pub const AGENT_ALLOW_SOCK_OTHER: u32 = 1 << 13;
/// The `AGENT_ALLOW_*` bits: a chain has one only if every member has it (chain.rs).
pub const AGENT_ALLOW_MASK: u32 = AGENT_ALLOW_MOUNT
    | AGENT_ALLOW_CHROOT
    | AGENT_ALLOW_USERNS
    | AGENT_ALLOW_SOCK_ICMP
    | AGENT_ALLOW_SOCK_RAW
    | AGENT_ALLOW_SOCK_SCTP
    | AGENT_ALLOW_SOCK_PACKET
    | AGENT_ALLOW_SOCK_NETLINK
    | AGENT_ALLOW_SOCK_VSOCK
    | AGENT_ALLOW_SOCK_OTHER;

/// `net.sockets` names and their bits, as policies write them (docs/policy.md).
pub const SOCKET_KINDS: &[(&str, u32)] = &[
    ("icmp", AGENT_ALLOW_SOCK_ICMP),
    ("raw", AGENT_ALLOW_SOCK_RAW),
    ("sctp", AGENT_ALLOW_SOCK_SCTP),
    ("packet", AGENT_ALLOW_SOCK_PACKET),
    ("netlink", AGENT_ALLOW_SOCK_NETLINK),
    ("vsock", AGENT_ALLOW_SOCK_VSOCK),
    ("other", AGENT_ALLOW_SOCK_OTHER),
];

pub const AF_NETLINK: u16 = 16;
pub const AF_PACKET: u16 = 17;
pub const AF_VSOCK: u16 = 40;
const SOCK_TYPE_MASK: u32 = 0xf;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
const SOCK_SEQPACKET: u32 = 5;
pub const IPPROTO_ICMP: u32 = 1;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
pub const IPPROTO_ICMPV6: u32 = 58;
pub const IPPROTO_SCTP: u32 = 132;
pub const IPPROTO_MPTCP: u32 = 262;

/// The `AGENT_ALLOW_SOCK_*` bit an agent needs to create a socket of `family`, `type` (flags
/// such as SOCK_CLOEXEC are ignored) and `protocol`; 0 for the kinds every program uses and
/// whose traffic the connect rules judge: unix, TCP (and MPTCP), UDP, netlink-route. One
/// definition for the kernel hooks and user space.
#[inline(always)]
pub const fn socket_permission(family: u16, stype: u32, protocol: u32) -> u32 {
    let stype = stype & SOCK_TYPE_MASK;
    match family {
        AF_UNIX => 0,
        AF_INET | AF_INET6 => match (stype, protocol) {
            (SOCK_STREAM, 0 | IPPROTO_TCP | IPPROTO_MPTCP) => 0,
            (SOCK_DGRAM, 0 | IPPROTO_UDP) => 0,
            (SOCK_DGRAM, IPPROTO_ICMP | IPPROTO_ICMPV6) => AGENT_ALLOW_SOCK_ICMP,
            (SOCK_RAW, _) => AGENT_ALLOW_SOCK_RAW,
            (SOCK_STREAM | SOCK_SEQPACKET, IPPROTO_SCTP) => AGENT_ALLOW_SOCK_SCTP,
            _ => AGENT_ALLOW_SOCK_OTHER,
        },
        AF_NETLINK => {
            if protocol == 0 {
                0
            } else {
                AGENT_ALLOW_SOCK_NETLINK
            }
        }
        AF_PACKET => AGENT_ALLOW_SOCK_PACKET,
        AF_VSOCK => AGENT_ALLOW_SOCK_VSOCK,
        _ => AGENT_ALLOW_SOCK_OTHER,
    }
}

// ---- net protocol bits ---------------------------------------------------------------------
pub const PROTO_TCP: u32 = 1 << 0;
pub const PROTO_UDP: u32 = 1 << 1;
/// A connect rule without a protocol: TCP and UDP (ICMP must be named: `/icmp`).
pub const PROTO_ANY: u32 = PROTO_TCP | PROTO_UDP;
/// ICMP "ping" sockets (a destination, no port).
pub const PROTO_ICMP: u32 = 1 << 2;
/// listen(2) on a TCP socket: only `net.listen` rules (and denies) carry it, so a connect rule
/// never allows a listen and a listen rule never allows a connect.
pub const PROTO_LISTEN: u32 = 1 << 3;

/// Rule action inside a `NetPortRule`.
pub const ACTION_ALLOW: u32 = 1;
pub const ACTION_DENY: u32 = 2;

/// Address families as the kernel numbers them.
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

// ---- global config flags -------------------------------------------------------------------
/// `CGROUP_MATCH` has entries: hooks look up unknown processes' cgroups.
pub const CONFIG_HAVE_CGROUP_MATCH: u32 = 1 << 0;
/// `EXE_MATCH` has entries: exec hooks look up non-agents' executables.
pub const CONFIG_HAVE_EXE_MATCH: u32 = 1 << 1;

/// Rule id 0: no rule matched, denied by default.
pub const RULE_DEFAULT_DENY: u32 = 0;
/// An object without a path ([`EVENT_FLAG_PATHLESS`]) reopened by a process that already holds
/// it: allowed by no policy rule (it reaches no object the process does not have; the access mode is not compared, docs/policy.md). Outside every
/// policy's rule ids (the compiler numbers rules from 1, far below).
pub const RULE_HELD_OBJECT: u32 = u32::MAX - 1;
/// How many descriptors the held-object scan looks at (the lowest ones): a process holding the
/// object only above this is refused (fail closed).
pub const HELD_SCAN_FDS: u32 = 4096;
