//! The launcher's seccomp filter for agents on the fallback backend (docs/fallback.md,
//! "Calls the tracepoints cannot judge").
//!
//! The fallback judges system calls at their 64-bit tracepoints. Two kinds of call get past
//! that, and a seccomp filter installed by `enforcer run` before exec stops both before they
//! run, for the agent's whole process tree (a filter is inherited and cannot be removed):
//!
//! - **other syscall ABIs**: a 64-bit process can make 32-bit system calls (`int $0x80`) and,
//!   where the kernel has it, x32 calls; neither fires the `sys_enter_*`/`sys_exit_*`
//!   tracepoints. Any call whose `arch` is not this build's, or whose number has the x32 bit,
//!   kills the process.
//! - **a descriptor table shared with another process**: kill mode kills the thread group that
//!   opened a denied file, but a process made by `clone(CLONE_FILES)` without `CLONE_THREAD`
//!   shares the table and would survive to read it. Such a clone kills the process. `clone3`
//!   passes its flags in memory a filter cannot read: it fails with ENOSYS, and the C library
//!   falls back to `clone` (glibc and musl do; container runtimes' default profiles do the
//!   same).
//!
//! Kills carry `SECCOMP_DATA_TAG | reason` as the filter's data; the fallback's
//! `fb_seccomp_kill` program turns the SIGSYS into an event (ops `compat-syscall`,
//! `share-files`). Classic BPF is written out below: the filter is eleven instructions, and
//! the crates that build filters from rule lists cannot attach data to their architecture
//! check.

use enforcer_common::{SECCOMP_DATA_TAG, SECCOMP_REASON_COMPAT, SECCOMP_REASON_SHARE_FILES};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(std::io::Error),
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): {0}")]
    Install(std::io::Error),
}

// Classic BPF opcodes (include/uapi/linux/bpf_common.h), which the libc crate does not carry
// for Linux.
const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

/// `AUDIT_ARCH_*` of this build (include/uapi/linux/audit.h): the only ABI an agent may use.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the launcher's seccomp filter knows the AUDIT_ARCH of x86_64 and aarch64 only");

/// x32 system calls are 64-bit calls with this bit in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of args[0] (both supported targets are little-endian): clone's flags.
const DATA_ARG0_LOW: u32 = 16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn kill(reason: u32) -> libc::sock_filter {
    stmt(
        BPF_RET | BPF_K,
        libc::SECCOMP_RET_KILL_PROCESS | SECCOMP_DATA_TAG | reason,
    )
}

/// The filter. Jumps count instructions after the jump itself.
pub fn program() -> Vec<libc::sock_filter> {
    vec![
        // 0-2: another ABI (int 0x80 from a 64-bit process reports AUDIT_ARCH_I386).
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
        kill(SECCOMP_REASON_COMPAT),
        // 3-5: x32.
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        kill(SECCOMP_REASON_COMPAT),
        // 6-7: clone3's flags are out of reach: ENOSYS, the C library retries with clone.
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(
            BPF_RET | BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        // 8-9: anything but clone is the eBPF programs' to judge.
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone as u32, 1, 0),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
        // 10-14: clone sharing the descriptor table, not a thread.
        stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARG0_LOW),
        jump(BPF_JMP | BPF_JSET | BPF_K, libc::CLONE_THREAD as u32, 2, 0),
        jump(BPF_JMP | BPF_JSET | BPF_K, libc::CLONE_FILES as u32, 0, 1),
        kill(SECCOMP_REASON_SHARE_FILES),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Install the filter on the calling (single-threaded) process; it holds for everything it
/// execs and forks. Sets no_new_privs first, as an unprivileged filter requires (the Landlock
/// envelope has set it already where there is one).
pub fn apply() -> Result<(), SeccompError> {
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SeccompError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    let mut filter = program();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, which lives until the call returns; the kernel copies
    // the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(SeccompError::Install(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the filter over one `seccomp_data` as the kernel does (the instructions it uses).
    fn verdict(nr: u32, arch: u32, arg0: u64) -> u32 {
        let prog = program();
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let next = |cond: bool| pc + 1 + if cond { i.jt } else { i.jf } as usize;
            pc = match i.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    let k = i.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc + 1
                }
                c if c == BPF_JMP | BPF_JEQ | BPF_K => next(a == i.k),
                c if c == BPF_JMP | BPF_JGE | BPF_K => next(a >= i.k),
                c if c == BPF_JMP | BPF_JSET | BPF_K => next(a & i.k != 0),
                c if c == BPF_RET | BPF_K => return i.k,
                other => panic!("instruction {other:#x} at {pc} not modelled"),
            };
            assert!(pc < prog.len(), "the filter runs off its end");
        }
    }

    const KILL_COMPAT: u32 =
        libc::SECCOMP_RET_KILL_PROCESS | SECCOMP_DATA_TAG | SECCOMP_REASON_COMPAT;
    const KILL_SHARE: u32 =
        libc::SECCOMP_RET_KILL_PROCESS | SECCOMP_DATA_TAG | SECCOMP_REASON_SHARE_FILES;

    #[test]
    fn other_abis_are_killed_with_their_reason() {
        const AUDIT_ARCH_I386: u32 = 0x4000_0003;
        assert_eq!(verdict(5, AUDIT_ARCH_I386, 0), KILL_COMPAT);
        assert_eq!(verdict(X32_SYSCALL_BIT | 2, NATIVE_ARCH, 0), KILL_COMPAT);
        assert_eq!(
            verdict(libc::SYS_openat as u32, NATIVE_ARCH, 0),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn clone_sharing_descriptors_without_a_thread_is_killed() {
        let clone = libc::SYS_clone as u32;
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM) as u64;
        assert_eq!(verdict(clone, NATIVE_ARCH, thread), libc::SECCOMP_RET_ALLOW);
        let vfork = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
        assert_eq!(verdict(clone, NATIVE_ARCH, vfork), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            verdict(clone, NATIVE_ARCH, libc::SIGCHLD as u64),
            libc::SECCOMP_RET_ALLOW
        );
        let shared = (libc::CLONE_FILES | libc::SIGCHLD) as u64;
        assert_eq!(verdict(clone, NATIVE_ARCH, shared), KILL_SHARE);
        let shared_vm = (libc::CLONE_FILES | libc::CLONE_VM | libc::SIGCHLD) as u64;
        assert_eq!(verdict(clone, NATIVE_ARCH, shared_vm), KILL_SHARE);
        // High bits of the 64-bit argument are ignored by the kernel's clone as well.
        assert_eq!(
            verdict(clone, NATIVE_ARCH, (1u64 << 40) | libc::CLONE_FILES as u64),
            KILL_SHARE
        );
    }

    #[test]
    fn clone3_fails_with_enosys() {
        assert_eq!(
            verdict(libc::SYS_clone3 as u32, NATIVE_ARCH, 0),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }
}
