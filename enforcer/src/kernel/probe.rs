//! What this kernel supports, decided by trying (loading and attaching, never by reading the
//! LSM list): the facts `enforcer probe` prints and backend selection relies on.

use super::{cgroup2_mount, lsm, offsets, LoadOptions};
use crate::paths;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// `None` when usable, else why not.
    pub problem: Option<String>,
}

impl Feature {
    fn from(name: &'static str, r: Result<(), String>) -> Feature {
        Feature { name, problem: r.err() }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelReport {
    pub kernel: String,
    pub features: Vec<Feature>,
}

impl KernelReport {
    pub fn usable(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.problem.is_none())
    }
}

/// Probe the running kernel. Loading programs needs root (CAP_BPF/CAP_SYS_ADMIN).
pub fn probe() -> KernelReport {
    let mut features = vec![
        Feature::from(
            "btf",
            std::fs::metadata(paths::VMLINUX_BTF).map(drop).map_err(|e| format!("{}: {e}", paths::VMLINUX_BTF)),
        ),
        Feature::from("struct-offsets", offsets::read().map(drop).map_err(|e| e.to_string())),
        Feature::from("cgroup2", cgroup2_mount().map(drop).map_err(|e| e.to_string())),
    ];
    match lsm::load_object(&LoadOptions::default(), None) {
        Err(e) => {
            let why = e.to_string();
            features.push(Feature::from("identity-tracepoints", Err(why.clone())));
            features.push(Feature::from("bpf-lsm", Err(why)));
        }
        Ok(mut ebpf) => {
            features.push(Feature::from(
                "identity-tracepoints",
                lsm::attach_identity(&mut ebpf, None, &|_| true).map_err(|e| e.to_string()),
            ));
            // Attaching with no policy loaded affects nobody; dropping `ebpf` detaches again.
            let attached = lsm::attach_lsm(&mut ebpf, None, &|_| true).map_err(|e| e.to_string());
            let runs = attached.and_then(|()| canary(&mut ebpf));
            features.push(Feature::from("bpf-lsm", runs));
        }
    }
    KernelReport { kernel: super::kernel_release(), features }
}

/// Agent id the canary uses: no policy ever gives it rules, so everything it does is denied.
const CANARY_AGENT: u32 = enforcer_common::MAX_AGENTS - 1;

/// Attached LSM programs may still never run (a kernel booted without `bpf` in `lsm=`). Prove
/// they do: a forked child, registered as a rule-less agent, must get EPERM opening "/".
pub(crate) fn canary(ebpf: &mut aya::Ebpf) -> Result<(), String> {
    let mut go = [0i32; 2];
    // SAFETY: plain syscalls; the child only calls async-signal-safe functions (read, open,
    // _exit), so forking from a multi-threaded process is sound.
    unsafe {
        if libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(format!("canary pipe: {}", std::io::Error::last_os_error()));
        }
        let pid = libc::fork();
        if pid < 0 {
            return Err(format!("canary fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            let mut b = 0u8;
            libc::read(go[0], &mut b as *mut u8 as *mut _, 1);
            let fd = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            let denied = fd < 0 && *libc::__errno_location() == libc::EPERM;
            libc::_exit(if denied { 0 } else { 1 });
        }
        libc::close(go[0]);
        let registered = lsm::register_in(ebpf, pid as u32, CANARY_AGENT, 0).map_err(|e| format!("canary: {e}"));
        libc::write(go[1], b"g".as_ptr() as *const _, 1);
        libc::close(go[1]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        registered?;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err("LSM programs attach but do not run (is `bpf` missing from the kernel's lsm= list?)".into())
        }
    }
}
