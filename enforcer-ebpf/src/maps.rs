//! Every BPF map. Sizes here are defaults; user space may resize before load.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use enforcer_common::{
    AgentConfig, CgroupKey, CondWindow, CgroupMatch, Config, ExeMatch, NameKey, NetData, NetRule, PathData,
    PathRule, ProcState, SyscallShape, MAX_AGENTS, MAX_CONDS, STAT_COUNT,
};

use crate::scratch::Scratch;

#[map(name = "CONFIG")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// `AGENTS[slot * MAX_AGENTS + agent]`.
#[map(name = "AGENTS")]
pub static AGENTS: Array<AgentConfig> = Array::with_max_entries(2 * MAX_AGENTS, 0);

/// Agent processes by thread id.
#[map(name = "PROCS")]
pub static PROCS: HashMap<u32, ProcState> = HashMap::with_max_entries(65536, 0);

/// Children of agents that could not be recorded because `PROCS` was full: denied everything
/// (and killed where the backend kills) until they exit.
#[map(name = "DOOMED")]
pub static DOOMED: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// Non-zero once anything was put in `DOOMED` (keeps the lookup off the non-agent fast path).
#[map(name = "DOOMED_ANY")]
pub static DOOMED_ANY: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "PATH_RULES")]
pub static PATH_RULES: LpmTrie<PathData, PathRule> = LpmTrie::with_max_entries(262144, 0);

#[map(name = "NAME_RULES")]
pub static NAME_RULES: HashMap<NameKey, PathRule> = HashMap::with_max_entries(16384, 0);

#[map(name = "NET_RULES")]
pub static NET_RULES: LpmTrie<NetData, NetRule> = LpmTrie::with_max_entries(65536, 0);

/// `CONDS[slot * MAX_CONDS + cond]`: windows of conditional net rules.
#[map(name = "CONDS")]
pub static CONDS: Array<CondWindow> = Array::with_max_entries(2 * MAX_CONDS, 0);

#[map(name = "EXE_MATCH")]
pub static EXE_MATCH: LpmTrie<PathData, ExeMatch> = LpmTrie::with_max_entries(4096, 0);

#[map(name = "CGROUP_MATCH")]
pub static CGROUP_MATCH: HashMap<CgroupKey, CgroupMatch> = HashMap::with_max_entries(4096, 0);

/// The fallback's syscall shapes by syscall number (see `hooks/observe_syscalls.rs`).
#[map(name = "FB_SYSCALLS")]
pub static FB_SYSCALLS: HashMap<u32, SyscallShape> = HashMap::with_max_entries(64, 0);

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Ring-buffer output failures per agent id, per CPU.
#[map(name = "LOSSES")]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_AGENTS, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Big per-CPU buffers: the eBPF stack is only 512 bytes.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Pinned-state metadata, written and read only by user space (layout id of the build that
/// installed the pins, daemon heartbeat): a map, because bpffs holds no regular files.
#[map(name = "PIN_META")]
pub static PIN_META: Array<u64> = Array::with_max_entries(enforcer_common::PIN_META_ENTRIES, 0);

#[inline(always)]
pub fn count(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        unsafe { *p += 1 };
    }
}
