//! The canary: attached programs may still never run (LSM programs on a kernel booted without
//! `bpf` in `lsm=`; cgroup programs for a process outside the attached cgroup). Before a backend
//! claims enforcement, a forked child registered as a rule-less agent must be refused.

// No policy ever gives the canary agent rules, so everything it does is denied.
use enforcer_common::CANARY_AGENT;

use super::loaded;

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
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                        },
                        sin_zero: [0; 8],
                    };
                    let r = libc::connect(
                        fd,
                        &sa as *const _ as *const libc::sockaddr,
                        size_of_val(&sa) as u32,
                    );
                    fd >= 0 && r < 0 && *libc::__errno_location() == libc::EPERM
                }
            };
            libc::_exit(if denied { 0 } else { 1 });
        }
        libc::close(go[0]);
        let registered = loaded::register_in(ebpf, pid as u32, CANARY_AGENT, 0)
            .map_err(|e| format!("canary: {e}"));
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
