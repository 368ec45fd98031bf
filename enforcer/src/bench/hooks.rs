//! The kernel side of the micro benchmark: one eBPF object whose programs are attached for the
//! "loaded" phase of a round and unloaded for the baseline phase, so that the baseline really
//! runs with no enforcer program in the kernel. The maps (policy, process table) stay across
//! phases: a policy is written once per policy size and the agent stays registered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context as _};
use aya::maps::{MapData, RingBuf};
use aya::programs::Program;
use aya::Ebpf;
use enforcer_common::MAP_EVENTS;

use crate::kernel::{fallback_attach, lsm, policy_maps, LoadOptions};
use crate::policy::CompiledPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
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
}

/// A thread emptying the ring buffer the way the daemon does (without formatting), so hooks
/// that emit events pay for a real reserve + submit, not for a full ring's failed reserve.
struct Drain {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<RingBuf<MapData>>,
}

pub static DRAINED: AtomicU64 = AtomicU64::new(0);

impl Hooks {
    pub fn load(backend: BenchBackend) -> anyhow::Result<Hooks> {
        let ebpf = lsm::load_object(&LoadOptions::default(), None)?;
        let mut hooks = Hooks { ebpf, backend, attached: false, version: 0, drain: None };
        // Attach once now, so a kernel that cannot run this backend fails before any figure.
        hooks.attach()?;
        hooks.start_drain()?;
        Ok(hooks)
    }

    fn start_drain(&mut self) -> anyhow::Result<()> {
        let map = self.ebpf.take_map(MAP_EVENTS).context("EVENTS map missing")?;
        let mut ring = RingBuf::try_from(map)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            use std::os::fd::AsRawFd as _;
            let fd = ring.as_raw_fd();
            while !flag.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                unsafe { libc::poll(&mut pfd, 1, 20) };
                let mut n = 0;
                while ring.next().is_some() {
                    n += 1;
                }
                DRAINED.fetch_add(n, Ordering::Relaxed);
            }
            ring
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
                lsm::attach_identity(&mut self.ebpf, None, &|_| true)?;
                lsm::attach_lsm(&mut self.ebpf, None, &|_| true)?;
            }
            BenchBackend::Fallback => {
                for (group, result) in fallback_attach::attach_all(&mut self.ebpf, None, &|_| true)? {
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
        policy_maps::apply(&mut self.ebpf, policy, self.version)?;
        Ok(())
    }

    pub fn register(&mut self, pid: u32, agent: u32) -> anyhow::Result<()> {
        lsm::register_in(&mut self.ebpf, pid, agent, u64::from(pid))?;
        Ok(())
    }

    /// Ring-buffer reserve failures counted in the kernel (all agents).
    pub fn losses(&self) -> u64 {
        lsm::read_losses(&self.ebpf).map(|l| l.iter().map(|(_, n)| n).sum()).unwrap_or(0)
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        if let Some(d) = self.drain.take() {
            d.stop.store(true, Ordering::Relaxed);
            let _ = d.handle.join();
        }
    }
}
