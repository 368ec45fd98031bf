//! Keys and values of the BPF maps. Map names are the constants `MAP_*`.

use crate::abi::*;

pub const MAP_CONFIG: &str = "CONFIG";
pub const MAP_AGENTS: &str = "AGENTS";
pub const MAP_PROCS: &str = "PROCS";
pub const MAP_PATH_RULES: &str = "PATH_RULES";
pub const MAP_NAME_RULES: &str = "NAME_RULES";
pub const MAP_NET_RULES: &str = "NET_RULES";
pub const MAP_EXE_MATCH: &str = "EXE_MATCH";
pub const MAP_CGROUP_MATCH: &str = "CGROUP_MATCH";
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_LOSSES: &str = "LOSSES";
pub const MAP_STATS: &str = "STATS";
/// Internal failures inside the programs, per CPU, `FAILS[FAIL_*]` (each one denied: fail closed).
pub const MAP_FAILS: &str = "FAILS";
pub const MAP_FB_SYSCALLS: &str = "FB_SYSCALLS";
pub const MAP_FB_STASH: &str = "FB_STASH";
pub const MAP_DOOMED: &str = "DOOMED";
pub const MAP_DOOMED_ANY: &str = "DOOMED_ANY";
pub const MAP_SCRATCH: &str = "SCRATCH";
/// Written only by user space: which build installed the pinned kernel state, which daemon runs
/// on it and when a daemon last ran. Indices `META_*` in `enforcer/src/kernel/pin.rs`; the
/// programs read only [`PIN_META_PID`] (no agent may signal or ptrace the daemon).
pub const MAP_PIN_META: &str = "PIN_META";
/// `PIN_META` index of the running daemon's pid (0: none runs).
pub const PIN_META_PID: u32 = 2;
/// Time windows of conditional rules (`when.hours`, grants), `CONDS[slot * MAX_CONDS + cond]`.
pub const MAP_CONDS: &str = "CONDS";
/// Conditions per slot, id 0 included (0 = unconditional, never a window).
pub const MAX_CONDS: u32 = 256;
/// `CONDS[slot * MAX_CONDS + COND_COUNT]` is no window: its `start_ns` is the number of
/// conditions of the slot (ids `1..=n`), so the path matcher judges only those.
pub const COND_COUNT: u32 = 0;
/// Entries of `PIN_META`.
pub const PIN_META_ENTRIES: u32 = 8;

/// Rule slots of the maps written per policy version: a reload fills the inactive slot while the
/// active one is still in place (docs/kernel-maps.md, "Ids"), so a policy may use half of each.
pub const RULE_SLOTS: u32 = 2;

// `max_entries` of every map: the one definition `enforcer-ebpf/src/maps.rs` builds the maps with
// and user space checks policies and fill levels against (`enforcer::policy::limits`).
pub const CONFIG_ENTRIES: u32 = 1;
pub const AGENTS_ENTRIES: u32 = RULE_SLOTS * MAX_AGENTS;
/// The default only: the daemon resizes it before load (`max_agent_processes`).
pub const PROCS_ENTRIES: u32 = 65_536;
pub const DOOMED_ENTRIES: u32 = 4_096;
pub const DOOMED_ANY_ENTRIES: u32 = 1;
pub const PATH_RULES_ENTRIES: u32 = 262_144;
pub const NAME_RULES_ENTRIES: u32 = 16_384;
pub const NET_RULES_ENTRIES: u32 = 65_536;
pub const CONDS_ENTRIES: u32 = RULE_SLOTS * MAX_CONDS;
pub const EXE_MATCH_ENTRIES: u32 = 4_096;
pub const CGROUP_MATCH_ENTRIES: u32 = 4_096;
pub const FB_SYSCALLS_ENTRIES: u32 = 64;
/// Agent threads whose last watched syscall is remembered at once (LRU: ended threads age out).
pub const FB_STASH_ENTRIES: u32 = 16_384;
/// The ring buffer's size in bytes (its `max_entries`).
pub const EVENTS_BYTES: u32 = 8 * 1024 * 1024;
pub const LOSSES_ENTRIES: u32 = MAX_AGENTS;
pub const STATS_ENTRIES: u32 = STAT_COUNT;
pub const FAILS_ENTRIES: u32 = FAIL_COUNT;
pub const SCRATCH_ENTRIES: u32 = 1;

// The kernel's map types (`enum bpf_map_type`) the object uses.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
pub const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// One map of the object as user space expects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    pub max_entries: u32,
}

const fn spec(name: &'static str, map_type: u32, max_entries: u32) -> MapSpec {
    MapSpec {
        name,
        map_type,
        max_entries,
    }
}

/// Every map of the object (global data aside), with its type and `max_entries`: a unit test in
/// `enforcer` (`kernel::object`) parses the built object and holds it to this table.
pub const MAPS: &[MapSpec] = &[
    spec(MAP_CONFIG, BPF_MAP_TYPE_ARRAY, CONFIG_ENTRIES),
    spec(MAP_AGENTS, BPF_MAP_TYPE_ARRAY, AGENTS_ENTRIES),
    spec(MAP_PROCS, BPF_MAP_TYPE_HASH, PROCS_ENTRIES),
    spec(MAP_DOOMED, BPF_MAP_TYPE_HASH, DOOMED_ENTRIES),
    spec(MAP_DOOMED_ANY, BPF_MAP_TYPE_ARRAY, DOOMED_ANY_ENTRIES),
    spec(MAP_PATH_RULES, BPF_MAP_TYPE_LPM_TRIE, PATH_RULES_ENTRIES),
    spec(MAP_NAME_RULES, BPF_MAP_TYPE_HASH, NAME_RULES_ENTRIES),
    spec(MAP_NET_RULES, BPF_MAP_TYPE_LPM_TRIE, NET_RULES_ENTRIES),
    spec(MAP_CONDS, BPF_MAP_TYPE_ARRAY, CONDS_ENTRIES),
    spec(MAP_EXE_MATCH, BPF_MAP_TYPE_LPM_TRIE, EXE_MATCH_ENTRIES),
    spec(MAP_CGROUP_MATCH, BPF_MAP_TYPE_HASH, CGROUP_MATCH_ENTRIES),
    spec(MAP_FB_SYSCALLS, BPF_MAP_TYPE_HASH, FB_SYSCALLS_ENTRIES),
    spec(MAP_FB_STASH, BPF_MAP_TYPE_LRU_HASH, FB_STASH_ENTRIES),
    spec(MAP_EVENTS, BPF_MAP_TYPE_RINGBUF, EVENTS_BYTES),
    spec(MAP_LOSSES, BPF_MAP_TYPE_PERCPU_ARRAY, LOSSES_ENTRIES),
    spec(MAP_STATS, BPF_MAP_TYPE_PERCPU_ARRAY, STATS_ENTRIES),
    spec(MAP_FAILS, BPF_MAP_TYPE_PERCPU_ARRAY, FAILS_ENTRIES),
    spec(MAP_SCRATCH, BPF_MAP_TYPE_PERCPU_ARRAY, SCRATCH_ENTRIES),
    spec(MAP_PIN_META, BPF_MAP_TYPE_ARRAY, PIN_META_ENTRIES),
];

/// Every map of the object except global data (`.rodata`, `.bss`): the ones pinned in bpffs so
/// enforcement and its state outlive the daemon. The loader refuses an object with a map that
/// is missing here (an unpinned map would silently start empty after every restart).
pub const PINNED_MAPS: &[&str] = &[
    MAP_CONFIG,
    MAP_AGENTS,
    MAP_PROCS,
    MAP_DOOMED,
    MAP_DOOMED_ANY,
    MAP_PATH_RULES,
    MAP_NAME_RULES,
    MAP_NET_RULES,
    MAP_EXE_MATCH,
    MAP_CGROUP_MATCH,
    MAP_EVENTS,
    MAP_LOSSES,
    MAP_STATS,
    MAP_FAILS,
    MAP_SCRATCH,
    MAP_PIN_META,
    MAP_FB_SYSCALLS,
    MAP_FB_STASH,
    MAP_CONDS,
];

/// Global configuration, `CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Which rule slot (0/1) hooks read. Flipped by user space after filling the other slot.
    pub active_slot: u32,
    /// Policy version of the active slot, stamped on events.
    pub policy_version: u32,
    /// `CONFIG_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Per-agent settings, `AGENTS[slot * MAX_AGENTS + agent]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentConfig {
    /// `AGENT_*` bits.
    pub flags: u32,
    /// Bit d-1 set: some path rule of this agent has a `*` component at depth d.
    pub wildcard_depths: u32,
    /// The same depths as a list, ascending, 0 = unused (filled by the loader from
    /// `wildcard_depths`): the kernel loops over data instead of testing 16 bits.
    pub wildcard_list: [u8; 4],
    /// Deepest wildcard depth + 1: how many '/' the kernel must locate (0 = no wildcards).
    pub wildcard_need: u32,
    /// Agents this agent may delegate to (bit i = agent id i, ids < 64), for sub-agents.
    pub delegate_lo: u64,
}

/// What the kernel knows about an agent process, `PROCS[tid]`. Keyed by thread id, so every
/// thread has its own entry: inserted by the fork tracepoint, removed by the exit tracepoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcState {
    /// Shared by every process of one `enforcer run` (or one exe-matched start).
    pub session: u64,
    /// When the session started (`bpf_ktime_get_boot_ns` / CLOCK_BOOTTIME).
    pub session_start_ns: u64,
    /// Delegation chain, outermost first; `chain[depth-1]` is the innermost agent.
    pub chain: [u32; MAX_CHAIN],
    /// Number of valid entries in `chain` (1 for a plain agent).
    pub depth: u32,
    /// `JOIN_*`: how the chain's first agent was joined.
    pub joined_by: u32,
}

impl AgentConfig {
    /// Fill `wildcard_list` and `wildcard_need` from `wildcard_depths`.
    pub fn with_wildcard_list(mut self) -> Self {
        let mut list = [0u8; 4];
        let mut n = 0;
        for d in 1..=MAX_WILDCARD_DEPTH {
            if self.wildcard_depths & (1 << (d - 1)) != 0 && n < list.len() {
                list[n] = d as u8;
                n += 1;
                self.wildcard_need = d + 1;
            }
        }
        self.wildcard_list = list;
        self
    }
}

impl ProcState {
    /// The agent whose rules decide (innermost of the chain).
    #[inline(always)]
    pub fn agent(&self) -> u32 {
        // Constant indices only: an eBPF program must have no panic path, and a variable stack
        // offset loses its bounds in the verifier.
        match self.depth {
            1 => self.chain[0],
            2 => self.chain[1],
            3 => self.chain[2],
            4 => self.chain[3],
            _ => NO_AGENT,
        }
    }
}

/// Data of the LPM key (`Key<PathData>`) for `PATH_RULES` and `EXE_MATCH`: ruleset
/// (big-endian, so the trie compares it first) then path bytes. The key's prefix length counts
/// bits over both; every stored entry covers at least the 32 ruleset bits.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathData {
    pub ruleset_be: [u8; 4],
    pub path: [u8; PATH_KEY_BYTES],
}

impl PathData {
    pub const fn zeroed() -> Self {
        PathData {
            ruleset_be: [0; 4],
            path: [0; PATH_KEY_BYTES],
        }
    }
}

/// Value of `PATH_RULES` (and `NAME_RULES`): everything the rules that contain this prefix say,
/// merged by the compiler. Per access kind (`ACCESS_INDEX_*`): the most specific allow and deny
/// rule ids (0 = none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathRule {
    /// `ACCESS_*` bits some rule allows.
    pub allow: u32,
    /// `ACCESS_*` bits some rule denies.
    pub deny: u32,
    pub allow_rule: [u32; ACCESS_KINDS],
    pub deny_rule: [u32; ACCESS_KINDS],
    /// Condition of `allow_rule[k]` (0: always applies; else a `CONDS` index, see `NetPortRule`).
    /// A conditional allow whose window is closed counts as absent: `next_rule[k]` is used.
    pub allow_cond: [u32; ACCESS_KINDS],
    /// The allow that applies when `allow_rule[k]`'s condition is closed: the next most specific
    /// allow of kind `k` on this entry (0 = none, then the entry allows nothing of that kind)
    /// and its condition. Denies never carry a condition.
    pub next_rule: [u32; ACCESS_KINDS],
    pub next_cond: [u32; ACCESS_KINDS],
}

/// Hash key for `NAME_RULES`: an exact basename (`**/.env`) or a suffix starting with a dot
/// (`**/*.pem` is stored as `.pem` with `kind = NAME_SUFFIX`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameKey {
    pub ruleset: u32,
    /// `NAME_EXACT` or `NAME_SUFFIX`.
    pub kind: u32,
    pub name: [u8; NAME_KEY_BYTES],
}
pub const NAME_EXACT: u32 = 1;
pub const NAME_SUFFIX: u32 = 2;

/// Data of the LPM key (`Key<NetData>`) for `NET_RULES`: ruleset (big-endian) then a 16-byte
/// IPv6 address (IPv4 as `::ffff:a.b.c.d`, so IPv4-mapped IPv6 destinations meet IPv4 rules).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetData {
    pub ruleset_be: [u8; 4],
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPortRule {
    pub port_lo: u16,
    pub port_hi: u16,
    /// `PROTO_*` bits.
    pub proto: u32,
    /// `ACTION_ALLOW` / `ACTION_DENY`.
    pub action: u32,
    pub rule: u32,
    /// 0: always applies. Otherwise an index into this slot's `CONDS`: the rule applies only
    /// while `CLOCK_BOOTTIME` is inside that window (conditional allows only; fail closed).
    pub cond: u32,
}

/// Value of `CONDS`: the current or next window of one condition, `[start_ns, end_ns)` in
/// `CLOCK_BOOTTIME` (`bpf_ktime_get_boot_ns`). User space writes only the window that is open
/// or comes next, so with no daemon to write the following one every conditional allow lapses
/// by itself. `{0, 0}` never applies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CondWindow {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl CondWindow {
    #[inline(always)]
    pub fn contains(&self, now_ns: u64) -> bool {
        self.start_ns <= now_ns && now_ns < self.end_ns
    }
}

/// Value of `NET_RULES`: the port rules of every CIDR that contains this prefix, most specific
/// CIDR first, file order within one CIDR.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRule {
    pub count: u32,
    pub _pad: u32,
    pub rules: [NetPortRule; NET_RULES_PER_PREFIX],
}

impl Default for NetRule {
    fn default() -> Self {
        NetRule {
            count: 0,
            _pad: 0,
            rules: [NetPortRule::default(); NET_RULES_PER_PREFIX],
        }
    }
}

/// Value of `EXE_MATCH` (key: `Key<PathData>` with `ruleset(slot, 0)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeMatch {
    pub agent: u32,
    pub rule: u32,
}

/// Key of `CGROUP_MATCH`: a cgroup v2 id (as `bpf_get_current_cgroup_id` returns it) per slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupKey {
    pub cgroup_id: u64,
    pub slot: u32,
    pub _pad: u32,
}

/// Value of `CGROUP_MATCH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupMatch {
    pub agent: u32,
    pub rule: u32,
}

/// How the fallback's syscall tracepoint finds what a syscall changes, `FB_SYSCALLS[nr]`
/// (filled by user space from its own syscall numbers: they are the running kernel's ABI).
/// Argument indexes are into the tracepoint's `args[]`; `NO_ARG` = absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallShape {
    /// `OP_*` of the event.
    pub op: u32,
    /// `SHAPE_*`: what the arguments are.
    pub kind: u32,
    /// Directory fd argument of the (first) path; `NO_ARG`: relative to the cwd.
    pub dfd_arg: u32,
    /// The (first) path argument, or the fd argument for `SHAPE_FD`, or the sockaddr /
    /// msghdr argument for `SHAPE_SOCKADDR` / `SHAPE_MSGHDR`.
    pub path_arg: u32,
    /// Second path (rename destination, link name): its dirfd and path; `NO_ARG` = none.
    pub dfd2_arg: u32,
    pub path2_arg: u32,
    /// Flags argument whose `AT_REMOVEDIR` bit turns `unlinkat` into a rmdir; or the sockaddr
    /// length argument for `SHAPE_SOCKADDR`.
    pub aux_arg: u32,
    /// Decide only the second path (symlink: the first argument is the link's target text).
    pub second_only: u32,
    /// `SHAPE_PROCESS`: what the call is (`PROC_*`).
    pub proc_kind: u32,
    /// `SHAPE_PROCESS`, `PROC_PERMISSION`: the `AGENT_ALLOW_*` bit that allows the call, and the
    /// bits of argument `aux_arg` (of the u64 it points to for clone3) that make it one to decide
    /// (0: every call is decided).
    pub allow: u32,
    pub mask: u32,
}

pub const NO_ARG: u32 = 0xff;
/// Paths given as (dirfd, string).
pub const SHAPE_PATHS: u32 = 1;
/// An open file descriptor (ftruncate, fchmod, fchown).
pub const SHAPE_FD: u32 = 2;
/// A user sockaddr + its length (connect, sendto): only unix sockets are decided here.
pub const SHAPE_SOCKADDR: u32 = 3;
/// A user msghdr (sendmsg): its msg_name, for unix datagram sockets.
pub const SHAPE_MSGHDR: u32 = 4;
/// The call itself is what is decided (bpf): argument `path_arg` is logged as `open_flags`.
pub const SHAPE_CALL: u32 = 5;
/// An open (dfd, path) whose flags are argument `aux_arg` (`NO_ARG`: creat's
/// `O_WRONLY|O_CREAT|O_TRUNC`). Only the refused-syscall observer reads these (docs/landlock.md).
pub const SHAPE_OPEN: u32 = 6;
/// openat2: argument `aux_arg` points to a `struct open_how` whose first u64 is the flags.
pub const SHAPE_OPEN_HOW: u32 = 7;
/// An exec (dfd, path).
pub const SHAPE_EXEC: u32 = 8;
/// A user `struct mmsghdr` array (sendmmsg) of `aux_arg` entries: each message's msg_name, for
/// unix datagram sockets.
pub const SHAPE_MMSGHDR: u32 = 10;

/// A watched syscall's number and arguments as its `sys_enter` saw them (`FB_STASH[tid]`), for
/// its `sys_exit` when the kernel refused it (Landlock's EACCES/EXDEV).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallStash {
    pub nr: u64,
    pub args: [u64; 6],
}

/// A call that reaches into other processes, terminals, mounts or namespaces
/// (hooks/observe_process.rs); `proc_kind` says which.
pub const SHAPE_PROCESS: u32 = 9;
/// ptrace(request, pid, ...): PTRACE_ATTACH/SEIZE judged on the target pid, PTRACE_TRACEME on
/// the parent (the tracer); other requests need an attach first.
pub const PROC_PTRACE: u32 = 1;
/// A call on the process whose pid is argument `path_arg` (process_vm_readv/writev).
pub const PROC_PID: u32 = 2;
/// ioctl(fd, cmd, ...): TIOCSTI and TIOCLINUX are denied.
pub const PROC_IOCTL: u32 = 3;
/// Allowed only with the agent's `AGENT_ALLOW_*` bit `allow` (mount, chroot, namespaces).
pub const PROC_PERMISSION: u32 = 4;
/// `PROC_PERMISSION` where the flags are the first u64 of the struct argument `aux_arg`
/// points to (clone3's `struct clone_args`).
pub const PROC_PERMISSION_CLONE3: u32 = 5;
/// socket(family, type, protocol): judged by `socket_permission` and the agent's `net.sockets`.
pub const PROC_SOCKET: u32 = 6;
/// listen(fd, backlog): the socket's bound address judged by `net.listen`.
pub const PROC_LISTEN: u32 = 7;

/// Per-CPU counters, `STATS[STAT_*]`.
pub const STAT_LOOKUPS: u32 = 0;
pub const STAT_DENIED: u32 = 1;
pub const STAT_EVENTS: u32 = 2;
pub const STAT_PROC_TABLE_FULL: u32 = 3;
pub const STAT_PATH_UNRESOLVED: u32 = 4;
pub const STAT_COUNT: u32 = 8;

// Internal failure points of the programs, `FAILS[FAIL_*]` (docs/kernel-maps.md, "Failure
// points"). Each one makes the decision undecidable, which denies an agent; the counters say how
// often, the event carries `EVENT_FLAG_INTERNAL_FAILURE`. Names in [`FAIL_NAMES`].
/// A bounded copy of the path (wildcard variant, basename tail) failed: path_match.rs.
pub const FAIL_PATH_COPY: u32 = 0;
/// A basename or suffix could not be copied into its lookup key: path_match.rs.
pub const FAIL_NAME_READ: u32 = 1;
/// A `bpf_loop` did not run (the helper returned an error): path, unix-name and dot scans.
pub const FAIL_LOOP: u32 = 2;
/// A network destination (msghdr name or length, socket type) could not be read: hooks/net.rs.
pub const FAIL_NET_DEST: u32 = 3;
/// An opened file's mode or flags could not be read: file_open, the fallback's open exit.
pub const FAIL_OPEN_MODE: u32 = 4;
/// The pid of a signal's target could not be read: hooks/daemon_guard.rs.
pub const FAIL_TARGET_PID: u32 = 5;
/// The fallback could not read a syscall's sockaddr or msghdr from user memory.
pub const FAIL_USER_SOCKADDR: u32 = 6;
/// An event was larger than the record (never built by the programs): counted, not sent.
pub const FAIL_EVENT_SIZE: u32 = 7;
/// The first bytes of an executed file (`#!`) could not be read: hooks/exec.rs.
pub const FAIL_EXEC_HEAD: u32 = 8;
/// Entries of `FAILS`: room for more points without a layout change of the counters' readers.
pub const FAIL_COUNT: u32 = 16;
/// The stable name of every failure point (status, metrics, docs).
pub const FAIL_NAMES: &[(u32, &str)] = &[
    (FAIL_PATH_COPY, "path-copy"),
    (FAIL_NAME_READ, "name-read"),
    (FAIL_LOOP, "bpf-loop"),
    (FAIL_NET_DEST, "net-destination"),
    (FAIL_OPEN_MODE, "open-mode"),
    (FAIL_TARGET_PID, "target-pid"),
    (FAIL_USER_SOCKADDR, "user-sockaddr"),
    (FAIL_EVENT_SIZE, "event-size"),
    (FAIL_EXEC_HEAD, "exec-head"),
];
// Every point fits the map and is named once: checked at build time.
const _: () = {
    let mut i = 0;
    while i < FAIL_NAMES.len() {
        assert!(
            FAIL_NAMES[i].0 < FAIL_COUNT,
            "a FAIL_* index is outside FAILS"
        );
        let mut j = 0;
        while j < i {
            assert!(
                FAIL_NAMES[i].0 != FAIL_NAMES[j].0,
                "a FAIL_* index is named twice"
            );
            j += 1;
        }
        i += 1;
    }
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), padding-free, and valid for any bit pattern.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for AgentConfig {}
    unsafe impl aya::Pod for ProcState {}
    unsafe impl aya::Pod for PathData {}
    unsafe impl aya::Pod for PathRule {}
    unsafe impl aya::Pod for NameKey {}
    unsafe impl aya::Pod for NetData {}
    unsafe impl aya::Pod for CgroupKey {}
    unsafe impl aya::Pod for NetPortRule {}
    unsafe impl aya::Pod for NetRule {}
    unsafe impl aya::Pod for CondWindow {}
    unsafe impl aya::Pod for ExeMatch {}
    unsafe impl aya::Pod for CgroupMatch {}
    unsafe impl aya::Pod for SyscallShape {}
    unsafe impl aya::Pod for SyscallStash {}
}

// The layout both sides compile against: a changed size is a changed kernel/user contract.
const _: () = assert!(size_of::<Config>() == 16);
const _: () = assert!(size_of::<AgentConfig>() == 24);
const _: () = assert!(size_of::<ProcState>() == 40);
const _: () = assert!(size_of::<PathData>() == 256);
const _: () = assert!(size_of::<PathRule>() == 88);
const _: () = assert!(size_of::<NameKey>() == 68);
const _: () = assert!(size_of::<NetData>() == 20);
const _: () = assert!(size_of::<NetPortRule>() == 20);
const _: () = assert!(size_of::<CondWindow>() == 16);
const _: () = assert!(size_of::<NetRule>() == 328);
const _: () = assert!(size_of::<ExeMatch>() == 8);
const _: () = assert!(size_of::<CgroupKey>() == 16);
const _: () = assert!(size_of::<CgroupMatch>() == 8);
const _: () = assert!(size_of::<SyscallShape>() == 44);
