//! What both backends share: the object loaded with this kernel's offsets and map sizes, the
//! install-or-adopt flow of its pins, the event ring, the process tables and the loss counters.
//! A backend ([`Driver`]) adds only what it attaches, what it can refuse and its status lines;
//! [`Backend`] is implemented once, here, for every driver.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{links::FdLink, TracePoint},
    Ebpf, EbpfLoader,
};
use enforcer_common::*;

use super::{
    object, offsets,
    pin::{self, Adoption, Found, Layout, PinDir},
    ring::EventRing,
    Backend, BackendStatus, KernelError, LoadOptions, RawEvent,
};
use crate::policy::compile::CompiledPolicy;

/// A loaded and attached object with its ring buffer taken: the state every backend holds.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub events: Events,
    /// The applied policy (status, map fill), shared with the daemon.
    pub policy: Option<std::sync::Arc<CompiledPolicy>>,
    /// Kernel state pinned in bpffs (the daemon). Probes and tests load unpinned: their
    /// programs detach when they drop the backend.
    pub pinned: bool,
    pub adoption: Option<Adoption>,
}

impl Loaded {
    /// Take the ring buffer of an object whose programs are attached and proven to run.
    pub fn new(
        mut ebpf: Ebpf,
        pinned: bool,
        mut adoption: Option<Adoption>,
    ) -> Result<Self, KernelError> {
        let events = Events::take(&mut ebpf)?;
        if let Some(adoption) = &mut adoption {
            adoption.ring_released_pos = events.ring.released_pos();
        }
        Ok(Loaded {
            ebpf,
            events,
            policy: None,
            pinned,
            adoption,
        })
    }

    /// The ring buffer's fd, for async readiness (epoll) in the daemon.
    pub fn events_fd(&self) -> i32 {
        self.events.map.fd().as_fd().as_raw_fd()
    }
}

/// One backend: how it attaches its programs and what it says about them.
pub trait Driver: Send {
    fn loaded(&self) -> &Loaded;
    fn loaded_mut(&mut self) -> &mut Loaded;
    /// Features and per-rule lines for this kernel (see [`BackendStatus`]).
    fn status(&self) -> BackendStatus;
    /// See [`Backend::uses_envelope`].
    fn uses_envelope(&self) -> bool {
        false
    }
    /// See [`Backend::uses_syscall_guard`].
    fn uses_syscall_guard(&self) -> bool {
        false
    }
}

impl<D: Driver> Backend for D {
    fn apply_shared(
        &mut self,
        policy: std::sync::Arc<CompiledPolicy>,
        version: u32,
    ) -> Result<(), KernelError> {
        let loaded = self.loaded_mut();
        super::policy_maps::apply(&mut loaded.ebpf, &policy, version)?;
        loaded.policy = Some(policy);
        Ok(())
    }

    fn register_chain(&mut self, pid: u32, chain: &[u32], session: u64) -> Result<(), KernelError> {
        register_chain_in(&mut self.loaded_mut().ebpf, pid, chain, session)
    }

    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError> {
        proc_state_in(&self.loaded().ebpf, tid)
    }

    fn doomed(&self, tid: u32) -> Result<bool, KernelError> {
        doomed_in(&self.loaded().ebpf, tid)
    }

    fn read_events(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        self.loaded_mut().events.read(max, out)
    }

    fn release_events(&mut self) -> Result<(), KernelError> {
        self.loaded_mut().events.ring.release();
        Ok(())
    }

    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        read_losses(&self.loaded().ebpf)
    }

    fn failures(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        read_failures(&self.loaded().ebpf)
    }

    fn status(&self) -> BackendStatus {
        Driver::status(self)
    }

    fn map_fill(&self) -> Result<Vec<super::fill::MapFill>, KernelError> {
        let loaded = self.loaded();
        super::fill::map_fill(&loaded.ebpf, loaded.policy.as_deref())
    }

    fn adopted(&self) -> Option<Adoption> {
        self.loaded().adoption.clone()
    }

    fn uses_envelope(&self) -> bool {
        Driver::uses_envelope(self)
    }

    fn uses_syscall_guard(&self) -> bool {
        Driver::uses_syscall_guard(self)
    }

    fn heartbeat(&mut self, running: bool) -> Result<(), KernelError> {
        let loaded = self.loaded_mut();
        if loaded.pinned {
            pin::heartbeat(&mut loaded.ebpf, running)?;
        }
        Ok(())
    }
}

/// How a driver attaches its programs: the ones `want` selects (all of them on a fresh install,
/// on adoption those whose pinned link vanished), pinning each link in `pins` when given.
/// `A` is whatever the driver learns while attaching (the fallback's per-group outcomes).
pub type AttachFn<'a, A> =
    &'a dyn Fn(&mut Ebpf, Option<&PinDir>, &dyn Fn(&str) -> bool) -> Result<A, KernelError>;

/// Load and attach a backend. With `opts.pin_dir`: adopt the state a previous daemon of the same
/// `layout` pinned there (nothing is detached or cleared, so there is no instant without
/// enforcement), or install and pin a fresh one, removing it again if the install fails. Without:
/// load unpinned (probes, tests). `running` proves the programs run and builds the driver.
pub fn install<D: Driver, A>(
    opts: &LoadOptions,
    layout: &str,
    programs: &[&str],
    attach: AttachFn<'_, A>,
    running: &dyn Fn(Ebpf, A, bool, Option<Adoption>) -> Result<D, KernelError>,
) -> Result<D, KernelError> {
    let Some(dir) = &opts.pin_dir else {
        let mut ebpf = load_object(opts, None)?;
        let attached = attach(&mut ebpf, None, &|_| true)?;
        return running(ebpf, attached, false, None);
    };
    let pins = PinDir::new(dir);
    let layout = Layout::of(layout);
    // Before aya opens any pinned map: it would reuse maps of another layout blindly.
    let found = pins.inspect(layout, programs)?;
    pins.create()?;
    match found {
        Found::Adoptable(mut adoption) => {
            let mut ebpf = load_object(opts, Some(&pins))?;
            // Only programs whose link pin vanished are attached again; the others run on.
            let missing = adoption.relinked.clone();
            let attached = attach(&mut ebpf, Some(&pins), &|p| missing.iter().any(|m| m == p))?;
            adoption.read_state(&ebpf);
            let mut driver = running(ebpf, attached, true, Some(adoption))?;
            pins.mark_running(&mut driver.loaded_mut().ebpf, layout, true)?;
            Ok(driver)
        }
        Found::Nothing => {
            let installed = load_object(opts, Some(&pins)).and_then(|mut ebpf| {
                let attached = attach(&mut ebpf, Some(&pins), &|_| true)?;
                let mut driver = running(ebpf, attached, true, None)?;
                pins.mark_running(&mut driver.loaded_mut().ebpf, layout, false)?;
                Ok(driver)
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

/// (program name, category, tracepoint): identity across fork/exec/exit, on every backend.
pub const IDENTITY_TRACEPOINTS: &[(&str, &str, &str)] = &[
    (PROG_SCHED_PROCESS_FORK, "sched", "sched_process_fork"),
    (PROG_SCHED_PROCESS_EXEC, "sched", "sched_process_exec"),
    (PROG_SCHED_PROCESS_EXIT, "sched", "sched_process_exit"),
];

/// Load the object with this kernel's offsets and map sizes. With `pins`, maps are pinned there,
/// or the ones already pinned are reused (check the layout first: see [`PinDir::inspect`]).
pub fn load_object(opts: &LoadOptions, pins: Option<&PinDir>) -> Result<Ebpf, KernelError> {
    load_object_bytes(object::EBPF_OBJECT, opts, pins)
}

/// [`load_object`] of another build of the object (the tests' one with the verifier probes).
pub fn load_object_bytes(
    bytes: &[u8],
    opts: &LoadOptions,
    pins: Option<&PinDir>,
) -> Result<Ebpf, KernelError> {
    if bytes.is_empty() {
        return Err(KernelError::Load(
            "built with AYA_BUILD_SKIP=1: the eBPF object is empty".into(),
        ));
    }
    let offsets = offsets::read()?;
    let mut loader = EbpfLoader::new();
    for (name, value) in &offsets {
        loader.override_global(name, value, true);
    }
    loader.map_max_entries(MAP_PROCS, opts.max_procs);
    if let Some(pins) = pins {
        pins.pin_maps(&mut loader);
    }
    let ebpf = loader
        .load(bytes)
        .map_err(|e| KernelError::Load(format!("{e:#}")))?;
    if pins.is_some() {
        PinDir::check_all_pinned(&ebpf)?;
    }
    Ok(ebpf)
}

pub(super) fn attach_error(prog: &str, e: impl std::fmt::Display) -> KernelError {
    let reason = format!("{e:#}");
    // aya ends a refused load with "Verifier output:" and the log, which is empty when the
    // kernel refused before verifying (EPERM for BPF LSM here): don't print a dangling label.
    let reason = match reason.trim_end().strip_suffix("Verifier output:") {
        Some(head) => head.trim_end().trim_end_matches('.').to_string(),
        None => reason,
    };
    KernelError::Attach {
        program: prog.into(),
        reason,
    }
}

/// Hand a fresh attachment to the pin directory (it then outlives the daemon); without one the
/// link stays owned by the program and detaches when `ebpf` drops.
pub(super) fn keep(
    ebpf: &mut Ebpf,
    pins: Option<&PinDir>,
    prog: &str,
    link: Option<FdLink>,
) -> Result<(), KernelError> {
    if let (Some(pins), Some(link)) = (pins, link) {
        pins.pin_program(ebpf, prog)?;
        pins.pin_link(prog, link)?;
    }
    Ok(())
}

/// Load and attach the identity tracepoints `want` selects (all of them, or on adoption the
/// ones whose pinned link is missing).
pub fn attach_identity(
    ebpf: &mut Ebpf,
    pins: Option<&PinDir>,
    want: &dyn Fn(&str) -> bool,
) -> Result<(), KernelError> {
    for (prog, category, name) in IDENTITY_TRACEPOINTS.iter().filter(|(p, _, _)| want(p)) {
        let p: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| KernelError::Load(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
        p.load().map_err(|e| attach_error(prog, e))?;
        let id = p
            .attach(category, name)
            .map_err(|e| attach_error(prog, e))?;
        let link = match pins {
            Some(_) => {
                let link = p.take_link(id).map_err(|e| attach_error(prog, e))?;
                // Only BPF perf links (kernel 5.15+) can be pinned; an ioctl attachment cannot.
                Some(FdLink::try_from(link).map_err(|e| {
                    attach_error(prog, format!("not pinnable (no BPF perf links?): {e}"))
                })?)
            }
            None => None,
        };
        keep(ebpf, pins, prog, link)?;
    }
    Ok(())
}

/// Thread ids of process `pid` (from /proc).
pub fn threads_of(pid: u32) -> Result<Vec<u32>, KernelError> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| KernelError::Process {
        pid,
        reason: format!("{dir}: {e}"),
    })?;
    let mut tids = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| KernelError::Process {
            pid,
            reason: e.to_string(),
        })?;
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
pub fn register_chain_in(
    ebpf: &mut Ebpf,
    pid: u32,
    chain: &[u32],
    session: u64,
) -> Result<(), KernelError> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(KernelError::Process {
            pid,
            reason: format!("a chain has 1 to {MAX_CHAIN} agents, not {}", chain.len()),
        });
    }
    let mut procs: HashMap<&mut MapData, u32, ProcState> = HashMap::try_from(
        ebpf.map_mut(MAP_PROCS)
            .ok_or_else(|| KernelError::Load("PROCS missing".into()))?,
    )
    .map_err(|e| KernelError::Map {
        map: MAP_PROCS.into(),
        reason: e.to_string(),
    })?;
    let tids = threads_of(pid)?;
    let parent = &chain[..chain.len() - 1];
    let mut joined_by = JOIN_LAUNCHER;
    for tid in &tids {
        match procs.get(tid, 0) {
            Ok(old)
                if old.depth as usize <= MAX_CHAIN
                    && &old.chain[..old.depth as usize] == parent =>
            {
                joined_by = old.joined_by;
            }
            Ok(_) => {
                return Err(KernelError::Process {
                    pid,
                    reason: format!(
                        "thread {tid} is already an agent process (membership is permanent)"
                    ),
                })
            }
            Err(_) if parent.is_empty() => {}
            Err(_) => {
                return Err(KernelError::Process {
                    pid,
                    reason: format!("thread {tid} is not a member of the delegating chain"),
                })
            }
        }
    }
    let session_start_ns = crate::audit::clock::boot_now_ns();
    let mut state = ProcState {
        session,
        session_start_ns,
        chain: [0; MAX_CHAIN],
        depth: chain.len() as u32,
        joined_by,
    };
    state.chain[..chain.len()].copy_from_slice(chain);
    for tid in tids {
        procs
            .insert(tid, state, 0)
            .map_err(|e| KernelError::Process {
                pid,
                reason: format!("cannot record thread {tid} (process table full?): {e}"),
            })?;
    }
    Ok(())
}

/// The agent state of thread `tid` in `PROCS`, if it is an agent.
pub fn proc_state_in(ebpf: &Ebpf, tid: u32) -> Result<Option<ProcState>, KernelError> {
    let procs: HashMap<&MapData, u32, ProcState> = HashMap::try_from(
        ebpf.map(MAP_PROCS)
            .ok_or_else(|| KernelError::Load("PROCS missing".into()))?,
    )
    .map_err(|e| KernelError::Map {
        map: MAP_PROCS.into(),
        reason: e.to_string(),
    })?;
    // Only "no such key" means "not an agent": any other error is an error (the API's role
    // check fails closed on it).
    match procs.get(&tid, 0) {
        Ok(state) => Ok(Some(state)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(KernelError::Map {
            map: MAP_PROCS.into(),
            reason: format!("looking up thread {tid}: {e}"),
        }),
    }
}

/// Whether thread `tid` is in `DOOMED`: a child of an agent that `PROCS` had no room for,
/// denied everything until it exits.
pub fn doomed_in(ebpf: &Ebpf, tid: u32) -> Result<bool, KernelError> {
    let map_error = |reason: String| KernelError::Map {
        map: MAP_DOOMED.into(),
        reason,
    };
    let doomed: HashMap<&MapData, u32, u32> = HashMap::try_from(
        ebpf.map(MAP_DOOMED)
            .ok_or_else(|| KernelError::Load("DOOMED missing".into()))?,
    )
    .map_err(|e| map_error(e.to_string()))?;
    match doomed.get(&tid, 0) {
        Ok(_) => Ok(true),
        Err(aya::maps::MapError::KeyNotFound) => Ok(false),
        Err(e) => Err(map_error(format!("looking up thread {tid}: {e}"))),
    }
}

/// The `EVENTS` ring buffer, read at least once (see ring.rs), shared by both backends.
pub struct Events {
    /// Keeps the map's fd (for epoll and bpftool); the ring has its own mappings.
    pub map: MapData,
    pub ring: EventRing,
}

impl Events {
    pub fn take(ebpf: &mut Ebpf) -> Result<Events, KernelError> {
        let map_error = |reason: String| KernelError::Map {
            map: MAP_EVENTS.into(),
            reason,
        };
        let map = match ebpf.take_map(MAP_EVENTS) {
            Some(Map::RingBuf(map)) => map,
            Some(_) => return Err(map_error("not a ring buffer".into())),
            None => return Err(KernelError::Load("EVENTS map missing".into())),
        };
        let size = map
            .info()
            .map_err(|e| map_error(e.to_string()))?
            .max_entries();
        let ring = EventRing::new(map.fd().as_fd(), size)?;
        Ok(Events { map, ring })
    }

    /// Decode up to `max` records into `out`, unreleased. A record too short for its header
    /// (never written by our programs) is skipped.
    pub fn read(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        self.ring.read(max, &mut |ring_pos, bytes| {
            if let Some((header, target)) = EventHeader::parse(bytes) {
                out.push(RawEvent {
                    header,
                    target: target.to_vec(),
                    ring_pos,
                });
            }
        })?;
        Ok(())
    }
}

/// `FAILS`, summed over CPUs: one entry per named failure point (`FAIL_NAMES` order).
pub fn read_failures(ebpf: &Ebpf) -> Result<Vec<(u32, u64)>, KernelError> {
    let map_error = |reason: String| KernelError::Map {
        map: MAP_FAILS.into(),
        reason,
    };
    let fails: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        ebpf.map(MAP_FAILS)
            .ok_or_else(|| KernelError::Load("FAILS missing".into()))?,
    )
    .map_err(|e| map_error(e.to_string()))?;
    FAIL_NAMES
        .iter()
        .map(|&(point, _)| {
            let per_cpu = fails.get(&point, 0).map_err(|e| map_error(e.to_string()))?;
            Ok((point, per_cpu.iter().sum()))
        })
        .collect()
}

pub fn read_losses(ebpf: &Ebpf) -> Result<Vec<(u32, u64)>, KernelError> {
    let losses: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        ebpf.map(MAP_LOSSES)
            .ok_or_else(|| KernelError::Load("LOSSES missing".into()))?,
    )
    .map_err(|e| KernelError::Map {
        map: MAP_LOSSES.into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for agent in 0..MAX_AGENTS {
        let per_cpu = losses.get(&agent, 0).map_err(|e| KernelError::Map {
            map: MAP_LOSSES.into(),
            reason: e.to_string(),
        })?;
        let total: u64 = per_cpu.iter().sum();
        if total > 0 {
            out.push((agent, total));
        }
    }
    Ok(out)
}
