//! One module per hook. Each entry is thin: it calls a `try_*` returning `Result<i32, i32>`.

pub mod bpf_call;
pub mod cgroup_net;
pub mod daemon_guard;
pub mod exec;
pub mod file_open;
pub mod mounts;
pub mod net;
pub mod observe;
pub mod observe_process;
pub mod observe_syscalls;
pub mod path_ops;
pub mod proc;
pub mod process_access;
pub mod refused;
pub mod seccomp_kill;
pub mod sockets;
/// Test-only programs: never in the shipped object (see the `verifier-probe` feature).
#[cfg(feature = "verifier-probe")]
pub mod verifier_probe;

/// LSM programs see the previous BPF LSM program's return value as their last argument: a
/// denial by someone else stands (returned as EPERM: the verifier needs a bounded constant).
#[inline(always)]
pub fn prior_denied(ctx: &aya_ebpf::programs::LsmContext, nargs: usize) -> bool {
    ctx.arg::<i32>(nargs) != 0
}
