//! The kernel side of the micro benchmark: one eBPF object whose programs are attached for the
//! "loaded" phase of a round and unloaded for the baseline phase, so that the baseline really
//! runs with no enforcer program in the kernel. The maps (policy, process table) stay across
//! phases: a policy is written once per policy size and the agent stays registered.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use anyhow::{bail, Context as _};
use aya::{maps::RingBuf, programs::Program, Ebpf};
use enforcer::{
    audit::{
        clock::BootClock,
        history::{PolicyHistory, PolicyNames},
        record::{event_record, EventContext},
        writer::{AuditWriter, Rotation},
        Record,
    },
    daemon::procs,
    kernel::{fallback_attach, loaded, lsm, policy_maps, LoadOptions, RawEvent},
    policy::CompiledPolicy,
};
use enforcer_common::MAP_EVENTS;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BenchBackend {
    /// BPF LSM hooks (+ identity tracepoints).
    Lsm,
    /// cgroup sock_addr programs + tracepoints.
    Fallback,
}

impl BenchBackend {
    pub fn label(self) -> &'static str {
        match self {
            BenchBackend::Lsm => "lsm",
            BenchBackend::Fallback => "fallback",
        }
    }
}

pub struct Hooks {
    ebpf: Ebpf,
    backend: BenchBackend,
    attached: bool,
    version: u32,
    drain: Option<Drain>,
    /// Names of every applied policy version, for the audit records of a logging drain.
    history: Arc<Mutex<PolicyHistory>>,
}

/// A thread emptying the ring buffer, so hooks that emit events pay for a real reserve +
/// submit, not for a full ring's failed reserve. Either it only counts the events, or it does
/// the daemon's per-event work: map each onto its audit record and append it to a JSON-lines
/// log (see [`Hooks::load_logging`]).
struct Drain {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<()>>,
}

pub static DRAINED: AtomicU64 = AtomicU64::new(0);
/// Audit records a logging drain appended to its log.
pub static WRITTEN: AtomicU64 = AtomicU64::new(0);

impl Hooks {
    pub fn load(backend: BenchBackend) -> anyhow::Result<Hooks> {
        Self::load_with(backend, None)
    }

    /// [`Hooks::load`], with the drain writing every event to the audit log at `log` as the
    /// daemon does (record mapping with /proc lookups, JSON, append, fdatasync every second).
    pub fn load_logging(backend: BenchBackend, log: &Path) -> anyhow::Result<Hooks> {
        Self::load_with(backend, Some(log))
    }

    fn load_with(backend: BenchBackend, log: Option<&Path>) -> anyhow::Result<Hooks> {
        let ebpf = loaded::load_object(&LoadOptions::default(), None)?;
        let history = Arc::new(Mutex::new(PolicyHistory::new(16)));
        let mut hooks = Hooks {
            ebpf,
            backend,
            attached: false,
            version: 0,
            drain: None,
            history,
        };
        // Attach once now, so a kernel that cannot run this backend fails before any figure.
        hooks.attach()?;
        hooks.start_drain(log)?;
        Ok(hooks)
    }

    fn start_drain(&mut self, log: Option<&Path>) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .context("EVENTS map missing")?;
        let mut ring = RingBuf::try_from(map)?;
        let mut log = match log {
            Some(path) => Some(EventLog::open(path, self.history.clone())?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || -> anyhow::Result<()> {
            use std::os::fd::AsRawFd as _;
            let fd = ring.as_raw_fd();
            let mut raw = Vec::new();
            loop {
                // Read before draining: once asked to stop, drain once more, then stop.
                let stopping = flag.load(Ordering::Relaxed);
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                unsafe { libc::poll(&mut pfd, 1, if stopping { 0 } else { 20 }) };
                raw.clear();
                drain_ring(&mut ring, &mut raw);
                DRAINED.fetch_add(raw.len() as u64, Ordering::Relaxed);
                if let Some(log) = log.as_mut() {
                    log.write(&raw, stopping)?;
                }
                if stopping {
                    return Ok(());
                }
            }
        });
        self.drain = Some(Drain { stop, handle });
        Ok(())
    }

    pub fn attach(&mut self) -> anyhow::Result<()> {
        if self.attached {
            return Ok(());
        }
        match self.backend {
            BenchBackend::Lsm => {
                loaded::attach_identity(&mut self.ebpf, None, &|_| true)?;
                lsm::attach_lsm(&mut self.ebpf, None, &|_| true)?;
            }
            BenchBackend::Fallback => {
                for (group, result) in fallback_attach::attach_all(&mut self.ebpf, None, &|_| true)?
                {
                    if let Err(why) = result {
                        bail!("fallback group {} did not attach: {why}", group.feature());
                    }
                }
            }
        }
        self.attached = true;
        Ok(())
    }

    /// Unload every program (their links detach with them); maps stay.
    pub fn detach(&mut self) -> anyhow::Result<()> {
        for (name, program) in self.ebpf.programs_mut() {
            let r = match program {
                Program::Lsm(p) => p.unload(),
                Program::TracePoint(p) => p.unload(),
                Program::CgroupSockAddr(p) => p.unload(),
                _ => Ok(()),
            };
            match r {
                Ok(()) | Err(aya::programs::ProgramError::NotLoaded) => {}
                Err(e) => bail!("unloading {name}: {e}"),
            }
        }
        self.attached = false;
        Ok(())
    }

    pub fn apply(&mut self, policy: &CompiledPolicy) -> anyhow::Result<()> {
        self.version += 1;
        if let Ok(mut history) = self.history.lock() {
            history.push(self.version, Arc::new(PolicyNames::of(policy)));
        }
        policy_maps::apply(&mut self.ebpf, policy, self.version)?;
        Ok(())
    }

    pub fn register(&mut self, pid: u32, agent: u32) -> anyhow::Result<()> {
        loaded::register_in(&mut self.ebpf, pid, agent, u64::from(pid))?;
        Ok(())
    }

    /// Ring-buffer reserve failures counted in the kernel (all agents).
    pub fn losses(&self) -> u64 {
        loaded::read_losses(&self.ebpf)
            .map(|l| l.iter().map(|(_, n)| n).sum())
            .unwrap_or(0)
    }
}

/// The daemon's per-event work: each event mapped onto its audit record (with the /proc lookup
/// of the executable) and appended as a JSON line, fdatasync at most a second later.
struct EventLog {
    writer: AuditWriter,
    history: Arc<Mutex<PolicyHistory>>,
    host: String,
}

impl EventLog {
    fn open(path: &Path, history: Arc<Mutex<PolicyHistory>>) -> anyhow::Result<EventLog> {
        // As the daemon names its host.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Ok(EventLog {
            writer: AuditWriter::open(path, Rotation::default())?,
            history,
            host,
        })
    }

    fn write(&mut self, raw: &[RawEvent], last: bool) -> anyhow::Result<()> {
        if !raw.is_empty() {
            let policies = self
                .history
                .lock()
                .map_err(|_| anyhow::anyhow!("policy history poisoned"))?;
            let ctx = EventContext {
                host: &self.host,
                clock: BootClock::sample(),
                policies: &policies,
                exe_of: &|tgid| procs::exe_of(tgid).map(Arc::from),
            };
            let mut records: Vec<Record> = raw
                .iter()
                .map(|r| Record::Event(event_record(r, &ctx)))
                .collect();
            drop(policies);
            let (lines, result) = self.writer.append(&mut records);
            result?;
            WRITTEN.fetch_add(lines.len() as u64, Ordering::Relaxed);
        }
        if last {
            self.writer.sync()?
        } else {
            self.writer.sync_if_due()?
        }
        Ok(())
    }
}

impl Hooks {
    /// Stop the drain (after it emptied the ring once more); a logging drain's error, if any.
    pub fn stop_drain(&mut self) -> anyhow::Result<()> {
        match self.drain.take() {
            Some(d) => {
                d.stop.store(true, Ordering::Relaxed);
                d.handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("the ring-buffer drain panicked"))?
            }
            None => Ok(()),
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        let _ = self.stop_drain();
    }
}

/// Everything in the ring buffer now, as the daemon decodes it (positions are not needed here).
fn drain_ring(ring: &mut RingBuf<aya::maps::MapData>, out: &mut Vec<RawEvent>) {
    while let Some(item) = ring.next() {
        if let Some((header, target)) = enforcer_common::EventHeader::parse(&item) {
            out.push(RawEvent {
                header,
                target: target.to_vec(),
                ring_pos: 0,
            });
        }
    }
}
