//! The BPF LSM backend: LSM hooks decide with EPERM, tracepoints keep process identity.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{links::FdLink, Lsm, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use enforcer_common::*;

use super::pin::{self, Adoption, Found, Layout, PinDir};
use super::ring::EventRing;
use super::{object, offsets, Backend, BackendStatus, KernelError, LoadOptions, RawEvent};
use crate::policy::compile::CompiledPolicy;

/// (program name in the object, LSM hook)
pub const LSM_PROGRAMS: &[(&str, &str)] = &[
    ("file_open", "file_open"),
    ("bprm_check_security", "bprm_check_security"),
    ("socket_connect", "socket_connect"),
    ("socket_sendmsg", "socket_sendmsg"),
    // Writing is more than opening for write (hooks/path_ops.rs).
    ("path_unlink", "path_unlink"),
    ("path_rmdir", "path_rmdir"),
    ("path_mkdir", "path_mkdir"),
    ("path_mknod", "path_mknod"),
    ("path_rename", "path_rename"),
    ("path_link", "path_link"),
    ("path_symlink", "path_symlink"),
    ("path_truncate", "path_truncate"),
    ("path_chmod", "path_chmod"),
    ("path_chown", "path_chown"),
    // No agent may signal or ptrace the daemon (hooks/daemon_guard.rs).
    ("task_kill", "task_kill"),
    ("ptrace_access_check", "ptrace_access_check"),
];

/// LSM programs for hooks that not every supported kernel has, attached where its BTF has the
/// hook: `file_truncate` (6.2+; 6.1's ftruncate calls path_truncate instead).
pub const OPTIONAL_LSM_PROGRAMS: &[(&str, &str)] =
    &[("file_truncate", "file_truncate"), ("bpf_call3", "bpf"), ("bpf_call4", "bpf")];

/// The `bpf` hook exists in two shapes (3 or 4 arguments): only the program built for this
/// kernel's shape can read the previous verdict.
fn shape_fits(prog: &str, hook: &str) -> Result<bool, KernelError> {
    let want = match prog {
        "bpf_call3" => 3,
        "bpf_call4" => 4,
        _ => return Ok(true),
    };
    let btf = btf_rs::Btf::from_file(crate::paths::VMLINUX_BTF)
        .map_err(|e| KernelError::Load(format!("kernel BTF {}: {e}", crate::paths::VMLINUX_BTF)))?;
    Ok(super::offsets::lsm_hook_nargs(&btf, hook)? == want)
}

/// Does this kernel have the LSM hook `hook` (its `bpf_lsm_<hook>` attach point in BTF)?
fn kernel_has_hook(hook: &str) -> Result<bool, KernelError> {
    let btf = btf_rs::Btf::from_file(crate::paths::VMLINUX_BTF)
        .map_err(|e| KernelError::Load(format!("kernel BTF {}: {e}", crate::paths::VMLINUX_BTF)))?;
    Ok(btf.resolve_types_by_name(&format!("bpf_lsm_{hook}")).is_ok_and(|t| !t.is_empty()))
}

/// (program name, category, tracepoint): identity across fork/exec/exit, on every backend.
pub const IDENTITY_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
];

pub struct LsmBackend {
    ebpf: Ebpf,
    events: Events,
    features: Vec<(String, Result<(), String>)>,
    policy: Option<std::sync::Arc<CompiledPolicy>>,
    /// Kernel state pinned in bpffs (the daemon). Probes and tests load unpinned: their
    /// programs detach when they drop the backend.
    pinned: bool,
    adoption: Option<Adoption>,
}

/// Every program this backend attaches (LSM hooks and identity tracepoints).
pub fn program_names() -> Vec<&'static str> {
    LSM_PROGRAMS.iter().map(|(p, _)| *p).chain(IDENTITY_TRACEPOINTS.iter().map(|(p, _, _)| *p)).collect()
}

/// Load the object with this kernel's offsets and map sizes. With `pins`, maps are pinned there,
/// or the ones already pinned are reused (check the layout first: see [`PinDir::inspect`]).
pub fn load_object(opts: &LoadOptions, pins: Option<&PinDir>) -> Result<Ebpf, KernelError> {
    if !object::available() {
        return Err(KernelError::Load("this enforcer was built with AYA_BUILD_SKIP=1: no eBPF object inside".into()));
    }
    let offsets = offsets::read()?;
    let mut loader = EbpfLoader::new();
    for (name, value) in &offsets {
        loader.override_global(*name, value, true);
    }
    loader.map_max_entries(MAP_PROCS, opts.max_procs);
    if let Some(pins) = pins {
        pins.pin_maps(&mut loader);
    }
    let ebpf = loader.load(object::EBPF_OBJECT).map_err(|e| KernelError::Load(format!("{e:#}")))?;
    if pins.is_some() {
        PinDir::check_all_pinned(&ebpf)?;
    }
    Ok(ebpf)
}

fn attach_error(prog: &str, e: impl std::fmt::Display) -> KernelError {
    let reason = format!("{e:#}");
    // aya ends a refused load with "Verifier output:" and the log, which is empty when the
    // kernel refused before verifying (EPERM for BPF LSM here): don't print a dangling label.
    let reason = match reason.trim_end().strip_suffix("Verifier output:") {
        Some(head) => head.trim_end().trim_end_matches('.').to_string(),
        None => reason,
    };
    KernelError::Attach { program: prog.into(), reason }
}

/// Hand a fresh attachment to the pin directory (it then outlives the daemon); without one the
/// link stays owned by the program and detaches when `ebpf` drops.
fn keep(ebpf: &mut Ebpf, pins: Option<&PinDir>, prog: &str, link: Option<FdLink>) -> Result<(), KernelError> {
    if let (Some(pins), Some(link)) = (pins, link) {
        pins.pin_program(ebpf, prog)?;
        pins.pin_link(prog, link)?;
    }
    Ok(())
}

/// Load and attach the identity tracepoints `want` selects (all of them, or on adoption the
/// ones whose pinned link is missing).
pub fn attach_identity(ebpf: &mut Ebpf, pins: Option<&PinDir>, want: &dyn Fn(&str) -> bool) -> Result<(), KernelError> {
    for (prog, category, name) in IDENTITY_TRACEPOINTS.iter().filter(|(p, _, _)| want(p)) {
        let p: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| KernelError::Load(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
        p.load().map_err(|e| attach_error(prog, e))?;
        let id = p.attach(category, name).map_err(|e| attach_error(prog, e))?;
        let link = match pins {
            Some(_) => {
                let link = p.take_link(id).map_err(|e| attach_error(prog, e))?;
                // Only BPF perf links (kernel 5.15+) can be pinned; an ioctl attachment cannot.
                Some(FdLink::try_from(link).map_err(|e| attach_error(prog, format!("not pinnable (no BPF perf links?): {e}")))?)
            }
            None => None,
        };
        keep(ebpf, pins, prog, link)?;
    }
    Ok(())
}

/// Load and attach the LSM programs `want` selects. On kernels where BPF LSM is unusable this
/// fails at the first program with the kernel's reason (e.g. EPERM before the verifier runs on
/// the host).
pub fn attach_lsm(ebpf: &mut Ebpf, pins: Option<&PinDir>, want: &dyn Fn(&str) -> bool) -> Result<(), KernelError> {
    let btf = Btf::from_sys_fs().map_err(|e| KernelError::Load(format!("kernel BTF: {e}")))?;
    let mut programs: Vec<&(&str, &str)> = LSM_PROGRAMS.iter().collect();
    for optional in OPTIONAL_LSM_PROGRAMS {
        if kernel_has_hook(optional.1)? && shape_fits(optional.0, optional.1)? {
            programs.push(optional);
        }
    }
    for (prog, hook) in programs.into_iter().filter(|(p, _)| want(p)) {
        let p: &mut Lsm = ebpf
            .program_mut(prog)
            .ok_or_else(|| KernelError::Load(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
        p.load(hook, &btf).map_err(|e| attach_error(prog, e))?;
        let id = p.attach().map_err(|e| attach_error(prog, e))?;
        let link = match pins {
            Some(_) => Some(FdLink::from(p.take_link(id).map_err(|e| attach_error(prog, e))?)),
            None => None,
        };
        keep(ebpf, pins, prog, link)?;
    }
    Ok(())
}

impl LsmBackend {
    /// With `opts.pin_dir`: adopt the state a previous daemon pinned there (nothing is detached
    /// or cleared, so there is no instant without enforcement), or install and pin a fresh one.
    /// Without: load unpinned (probes, tests).
    pub fn load(opts: &LoadOptions) -> Result<Self, KernelError> {
        let Some(dir) = &opts.pin_dir else {
            let mut ebpf = load_object(opts, None)?;
            attach_identity(&mut ebpf, None, &|_| true)?;
            attach_lsm(&mut ebpf, None, &|_| true)?;
            return Self::running(ebpf, false, None);
        };
        let pins = PinDir::new(dir);
        let layout = Layout::of("lsm");
        // Before aya opens any pinned map: it would reuse maps of another layout blindly.
        let found = pins.inspect(layout, &program_names())?;
        pins.create()?;
        match found {
            Found::Adoptable(mut adoption) => {
                let mut ebpf = load_object(opts, Some(&pins))?;
                // Only programs whose link pin vanished are attached again; the others run on.
                let missing = adoption.relinked.clone();
                let want = |p: &str| missing.iter().any(|m| m == p);
                attach_identity(&mut ebpf, Some(&pins), &want)?;
                attach_lsm(&mut ebpf, Some(&pins), &want)?;
                adoption.read_state(&ebpf);
                let mut backend = Self::running(ebpf, true, Some(adoption))?;
                pins.mark_running(&mut backend.ebpf, layout, true)?;
                Ok(backend)
            }
            Found::Nothing => {
                let installed = load_object(opts, Some(&pins)).and_then(|mut ebpf| {
                    attach_identity(&mut ebpf, Some(&pins), &|_| true)?;
                    attach_lsm(&mut ebpf, Some(&pins), &|_| true)?;
                    let mut backend = Self::running(ebpf, true, None)?;
                    pins.mark_running(&mut backend.ebpf, layout, false)?;
                    Ok(backend)
                });
                if installed.is_err() {
                    // Nothing was enforced with it yet: leave no half-installed hooks behind.
                    if let Err(cleanup) = pin::uninstall(dir) {
                        tracing::warn!("removing the incomplete install: {cleanup}");
                    }
                }
                installed
            }
        }
    }

    /// Prove the attached programs run, then take the ring buffer.
    fn running(mut ebpf: Ebpf, pinned: bool, adoption: Option<Adoption>) -> Result<Self, KernelError> {
        // Attached is not running (a kernel without `bpf` in lsm= accepts the programs and never
        // calls them): never claim enforcement a canary process has not seen.
        super::probe::canary(&mut ebpf, super::probe::CanaryOp::Open).map_err(KernelError::Unsupported)?;
        let events = Events::take(&mut ebpf)?;
        let mut adoption = adoption;
        if let Some(adoption) = &mut adoption {
            adoption.ring_released_pos = events.ring.released_pos();
        }
        let features = vec![
            ("bpf-lsm".to_string(), Ok(())),
            ("tracepoints".to_string(), Ok(())),
        ];
        Ok(LsmBackend { ebpf, events, features, policy: None, pinned, adoption })
    }

    /// The ring buffer's fd, for async readiness (epoll) in the daemon.
    pub fn events_fd(&self) -> i32 {
        self.events.map.fd().as_fd().as_raw_fd()
    }

}

/// Thread ids of process `pid` (from /proc).
pub fn threads_of(pid: u32) -> Result<Vec<u32>, KernelError> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| KernelError::Process { pid, reason: format!("{dir}: {e}") })?;
    let mut tids = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| KernelError::Process { pid, reason: e.to_string() })?;
        if let Some(tid) = ent.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

pub fn register_in(ebpf: &mut Ebpf, pid: u32, agent: u32, session: u64) -> Result<(), KernelError> {
    register_chain_in(ebpf, pid, &[agent], session)
}

/// Make every thread of `pid` a member of `chain` (outermost first). A thread that is already
/// an agent may only be extended: its chain must be `chain` minus the last agent (delegation);
/// membership is otherwise permanent.
pub fn register_chain_in(ebpf: &mut Ebpf, pid: u32, chain: &[u32], session: u64) -> Result<(), KernelError> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(KernelError::Process { pid, reason: format!("a chain has 1 to {MAX_CHAIN} agents, not {}", chain.len()) });
    }
    let mut procs: HashMap<&mut MapData, u32, ProcState> =
        HashMap::try_from(ebpf.map_mut(MAP_PROCS).ok_or_else(|| KernelError::Load("PROCS missing".into()))?)
            .map_err(|e| KernelError::Map { map: MAP_PROCS.into(), reason: e.to_string() })?;
    let tids = threads_of(pid)?;
    let parent = &chain[..chain.len() - 1];
    let mut joined_by = JOIN_LAUNCHER;
    for tid in &tids {
        match procs.get(tid, 0) {
            Ok(old) if old.depth as usize <= MAX_CHAIN && &old.chain[..old.depth as usize] == parent => {
                joined_by = old.joined_by;
            }
            Ok(_) => {
                return Err(KernelError::Process { pid, reason: format!("thread {tid} is already an agent process (membership is permanent)") })
            }
            Err(_) if parent.is_empty() => {}
            Err(_) => {
                return Err(KernelError::Process { pid, reason: format!("thread {tid} is not a member of the delegating chain") })
            }
        }
    }
    let session_start_ns = crate::audit::clock::boot_now_ns();
    let mut state = ProcState { session, session_start_ns, chain: [0; MAX_CHAIN], depth: chain.len() as u32, joined_by };
    state.chain[..chain.len()].copy_from_slice(chain);
    for tid in tids {
        procs.insert(tid, state, 0).map_err(|e| KernelError::Process {
            pid,
            reason: format!("cannot record thread {tid} (process table full?): {e}"),
        })?;
    }
    Ok(())
}

/// The agent state of thread `tid` in `PROCS`, if it is an agent.
pub fn proc_state_in(ebpf: &Ebpf, tid: u32) -> Result<Option<ProcState>, KernelError> {
    let procs: HashMap<&MapData, u32, ProcState> =
        HashMap::try_from(ebpf.map(MAP_PROCS).ok_or_else(|| KernelError::Load("PROCS missing".into()))?)
            .map_err(|e| KernelError::Map { map: MAP_PROCS.into(), reason: e.to_string() })?;
    Ok(procs.get(&tid, 0).ok())
}

/// The `EVENTS` ring buffer, read at least once (see ring.rs), shared by both backends.
pub struct Events {
    /// Keeps the map's fd (for epoll and bpftool); the ring has its own mappings.
    pub map: MapData,
    pub ring: EventRing,
}

impl Events {
    pub fn take(ebpf: &mut Ebpf) -> Result<Events, KernelError> {
        let map_error = |reason: String| KernelError::Map { map: MAP_EVENTS.into(), reason };
        let map = match ebpf.take_map(MAP_EVENTS) {
            Some(Map::RingBuf(map)) => map,
            Some(_) => return Err(map_error("not a ring buffer".into())),
            None => return Err(KernelError::Load("EVENTS map missing".into())),
        };
        let size = map.info().map_err(|e| map_error(e.to_string()))?.max_entries();
        let ring = EventRing::new(map.fd().as_fd(), size)?;
        Ok(Events { map, ring })
    }

    /// Decode up to `max` records into `out`, unreleased. A record too short for its header
    /// (never written by our programs) is skipped.
    pub fn read(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        self.ring.read(max, &mut |ring_pos, bytes| {
            if let Some((header, target)) = EventHeader::parse(bytes) {
                out.push(RawEvent { header, target: target.to_vec(), ring_pos });
            }
        })?;
        Ok(())
    }
}

pub fn read_losses(ebpf: &Ebpf) -> Result<Vec<(u32, u64)>, KernelError> {
    let losses: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map(MAP_LOSSES).ok_or_else(|| KernelError::Load("LOSSES missing".into()))?)
            .map_err(|e| KernelError::Map { map: MAP_LOSSES.into(), reason: e.to_string() })?;
    let mut out = Vec::new();
    for agent in 0..MAX_AGENTS {
        let per_cpu = losses.get(&agent, 0).map_err(|e| KernelError::Map { map: MAP_LOSSES.into(), reason: e.to_string() })?;
        let total: u64 = per_cpu.iter().sum();
        if total > 0 {
            out.push((agent, total));
        }
    }
    Ok(out)
}

impl Backend for LsmBackend {
    fn apply_shared(&mut self, policy: std::sync::Arc<CompiledPolicy>, version: u32) -> Result<(), KernelError> {
        super::policy_maps::apply(&mut self.ebpf, &policy, version)?;
        self.policy = Some(policy);
        Ok(())
    }

    fn register_chain(&mut self, pid: u32, chain: &[u32], session: u64) -> Result<(), KernelError> {
        register_chain_in(&mut self.ebpf, pid, chain, session)
    }

    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError> {
        proc_state_in(&self.ebpf, tid)
    }

    fn read_events(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        self.events.read(max, out)
    }

    fn release_events(&mut self) -> Result<(), KernelError> {
        self.events.ring.release();
        Ok(())
    }

    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        read_losses(&self.ebpf)
    }

    fn map_fill(&self) -> Result<Vec<super::fill::MapFill>, KernelError> {
        super::fill::map_fill(&self.ebpf, self.policy.as_deref())
    }

    fn adopted(&self) -> Option<Adoption> {
        self.adoption.clone()
    }

    fn heartbeat(&mut self, running: bool) -> Result<(), KernelError> {
        if self.pinned {
            pin::heartbeat(&mut self.ebpf, running)?;
        }
        Ok(())
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "lsm".into(),
            kernel: super::kernel_release(),
            features: self.features.clone(),
            rules: super::rule_status(self.policy.as_deref(), super::Enforcement::Enforced),
        }
    }
}
