//! Every BPF map. Names and sizes are enforcer-common's (`MAP_*`, `*_ENTRIES`, checked against
//! the built object by `enforcer`'s `kernel::object` unit test); user space may resize `PROCS`
//! before load.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use enforcer_common::*;

use crate::scratch::Scratch;

#[map(name = "CONFIG")]
pub static CONFIG: Array<Config> = Array::with_max_entries(CONFIG_ENTRIES, 0);

/// `AGENTS[slot * MAX_AGENTS + agent]`.
#[map(name = "AGENTS")]
pub static AGENTS: Array<AgentConfig> = Array::with_max_entries(AGENTS_ENTRIES, 0);

/// Agent processes by thread id.
#[map(name = "PROCS")]
pub static PROCS: HashMap<u32, ProcState> = HashMap::with_max_entries(PROCS_ENTRIES, 0);

/// Children of agents that could not be recorded because `PROCS` was full: denied everything
/// (and killed where the backend kills) until they exit.
#[map(name = "DOOMED")]
pub static DOOMED: HashMap<u32, u32> = HashMap::with_max_entries(DOOMED_ENTRIES, 0);

/// Non-zero once anything was put in `DOOMED` (keeps the lookup off the non-agent fast path).
#[map(name = "DOOMED_ANY")]
pub static DOOMED_ANY: Array<u32> = Array::with_max_entries(DOOMED_ANY_ENTRIES, 0);

#[map(name = "PATH_RULES")]
pub static PATH_RULES: LpmTrie<PathData, PathRule> =
    LpmTrie::with_max_entries(PATH_RULES_ENTRIES, 0);

#[map(name = "NAME_RULES")]
pub static NAME_RULES: HashMap<NameKey, PathRule> =
    HashMap::with_max_entries(NAME_RULES_ENTRIES, 0);

#[map(name = "NET_RULES")]
pub static NET_RULES: LpmTrie<NetData, NetRule> = LpmTrie::with_max_entries(NET_RULES_ENTRIES, 0);

/// `CONDS[slot * MAX_CONDS + cond]`: windows of conditional net rules.
#[map(name = "CONDS")]
pub static CONDS: Array<CondWindow> = Array::with_max_entries(CONDS_ENTRIES, 0);

#[map(name = "EXE_MATCH")]
pub static EXE_MATCH: LpmTrie<PathData, ExeMatch> = LpmTrie::with_max_entries(EXE_MATCH_ENTRIES, 0);

#[map(name = "CGROUP_MATCH")]
pub static CGROUP_MATCH: HashMap<CgroupKey, CgroupMatch> =
    HashMap::with_max_entries(CGROUP_MATCH_ENTRIES, 0);

/// The fallback's syscall shapes by syscall number (see `hooks/observe_syscalls.rs`).
#[map(name = "FB_SYSCALLS")]
pub static FB_SYSCALLS: HashMap<u32, SyscallShape> =
    HashMap::with_max_entries(FB_SYSCALLS_ENTRIES, 0);

/// What each agent thread's last watched syscall was called with (`hooks/refused.rs`): LRU,
/// so threads that ended need no cleanup.
#[map(name = "FB_STASH")]
pub static FB_STASH: LruHashMap<u32, SyscallStash> =
    LruHashMap::with_max_entries(FB_STASH_ENTRIES, 0);

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Ring-buffer output failures per agent id, per CPU.
#[map(name = "LOSSES")]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSSES_ENTRIES, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);

/// Internal failures by point (`FAIL_*`), per CPU: see `decide::fail`.
#[map(name = "FAILS")]
pub static FAILS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FAILS_ENTRIES, 0);

/// Big per-CPU buffers: the eBPF stack is only 512 bytes.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(SCRATCH_ENTRIES, 0);

/// Pinned-state metadata, written and read only by user space (layout id of the build that
/// installed the pins, daemon heartbeat): a map, because bpffs holds no regular files.
#[map(name = "PIN_META")]
pub static PIN_META: Array<u64> = Array::with_max_entries(PIN_META_ENTRIES, 0);

#[inline(always)]
pub fn count(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn count_fail(point: u32) {
    if let Some(p) = FAILS.get_ptr_mut(point) {
        unsafe { *p += 1 };
    }
}
