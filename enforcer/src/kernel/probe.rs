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
            let runs = attached.and_then(|()| canary(&mut ebpf, CanaryOp::Open));
            features.push(Feature::from("bpf-lsm", runs));
        }
    }
    // The fallback's own parts, tried the same way (its load runs the connect canary).
    drop_lsm_then_probe_fallback(&mut features);
    KernelReport { kernel: super::kernel_release(), features }
}

fn drop_lsm_then_probe_fallback(features: &mut Vec<Feature>) {
    match super::fallback::FallbackBackend::load(&LoadOptions::default(), None) {
        Ok(fb) => {
            for (name, r) in fb.features() {
                if let Some(name) = ["cgroup-sock-addr", "file-exec-tracepoints", "file-change-tracepoints"].into_iter().find(|n| *n == name) {
                    features.push(Feature::from(name, r.clone()));
                }
            }
        }
        Err(e) => {
            features.push(Feature::from("cgroup-sock-addr", Err(e.to_string())));
            features.push(Feature::from("file-exec-tracepoints", Err(format!("fallback backend did not load: {e}"))));
            features.push(Feature::from("file-change-tracepoints", Err(format!("fallback backend did not load: {e}"))));
        }
    }
}

/// Agent id the canary uses: no policy ever gives it rules, so everything it does is denied.
const CANARY_AGENT: u32 = crate::audit::record::CANARY_AGENT;

/// What the canary child does; it must be refused with EPERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryOp {
    /// open("/"): proves the LSM `file_open` program runs.
    Open,
    /// A TCP connect to 127.0.0.1:9: proves the cgroup connect4 program runs for this process.
    Connect,
}

/// Attached programs may still never run (LSM programs on a kernel booted without `bpf` in
/// `lsm=`; cgroup programs for a process outside the attached cgroup). Prove they do: a forked
/// child, registered as a rule-less agent, must get EPERM for `op`.
pub(crate) fn canary(ebpf: &mut aya::Ebpf, op: CanaryOp) -> Result<(), String> {
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
            let denied = match op {
                CanaryOp::Open => {
                    let fd = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    fd < 0 && *libc::__errno_location() == libc::EPERM
                }
                CanaryOp::Connect => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    let sa = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: 9u16.to_be(),
                        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
                        sin_zero: [0; 8],
                    };
                    let r = libc::connect(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sa) as u32);
                    fd >= 0 && r < 0 && *libc::__errno_location() == libc::EPERM
                }
            };
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
            Err(match op {
                CanaryOp::Open => "LSM programs attach but do not run (is `bpf` missing from the kernel's lsm= list?)".into(),
                CanaryOp::Connect => "cgroup connect4 program attached at the cgroup2 root did not refuse a registered agent's connect".into(),
            })
        }
    }
}
