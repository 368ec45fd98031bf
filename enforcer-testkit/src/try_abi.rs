//! try-ops operations that leave the 64-bit syscall ABI or share the descriptor table with a
//! new process (tests/tests/adversarial_abi.rs):
//!
//! - `compat-open:PATH` / `compat-unlink:PATH`: open(2) for reading / unlink(2) through the
//!   32-bit entry (`int $0x80`) of this 64-bit process; the path is copied below 4 GiB
//!   (compat calls take 32-bit pointers).
//! - `x32:-`: getpid through the x32 ABI (the syscall number with bit 30 set); ENOSYS where the
//!   kernel has no x32 (Debian's default).
//! - `clone-files:-`: clone(CLONE_FILES | SIGCHLD): a child process sharing the descriptor
//!   table; it exits at once and is reaped.
//! - `clone3:-`: clone3 with the flags of fork; the child exits at once and is reaped.
//! - `spawn:-`: a thread and a child process the usual way (std), both must work.
//! - `guard:-`: install the launcher's seccomp filter on this process (as `enforcer run` does
//!   on the fallback backend).

use std::io::{Error, Result};

fn ret(r: libc::c_long) -> Result<libc::c_long> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `path` NUL-terminated in a fresh page below 4 GiB (unmapped by the caller).
#[cfg(target_arch = "x86_64")]
fn low_copy(path: &str) -> Result<*mut u8> {
    // SAFETY: a fresh anonymous private mapping; MAP_32BIT places it in the low 2 GiB.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(Error::last_os_error());
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 4096 || bytes.contains(&0) {
        unsafe { libc::munmap(mem, 4096) };
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: the mapping holds 4096 bytes; the copy and its NUL fit.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), mem as *mut u8, bytes.len());
        *(mem as *mut u8).add(bytes.len()) = 0;
    }
    Ok(mem as *mut u8)
}

/// One 32-bit system call with up to three arguments; the kernel's return value (a negative
/// errno on failure).
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32, a: u32, b: u32, c: u32) -> i32 {
    let out: i32;
    // SAFETY: `int 0x80` enters the kernel's compat entry; it returns in eax and may clobber
    // r8-r11 (older kernels zero them). The first argument goes in ebx, which LLVM reserves:
    // swapped in and out around the call.
    unsafe {
        std::arch::asm!(
            "xchg {a:r}, rbx",
            "int 0x80",
            "xchg {a:r}, rbx",
            a = inout(reg) a as u64 => _,
            inlateout("eax") nr as i32 => out,
            in("ecx") b,
            in("edx") c,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        );
    }
    out
}

#[cfg(target_arch = "x86_64")]
fn compat_path_call(path: &str, call: impl FnOnce(u32) -> i32) -> Result<i32> {
    let mem = low_copy(path)?;
    let r = call(mem as usize as u32);
    unsafe { libc::munmap(mem as *mut libc::c_void, 4096) };
    if r < 0 {
        Err(Error::from_raw_os_error(-r))
    } else {
        Ok(r)
    }
}

#[cfg(target_arch = "x86_64")]
pub fn compat_open(path: &str) -> Result<()> {
    // i386: open = 5, close = 6.
    let fd = compat_path_call(path, |p| int80(5, p, libc::O_RDONLY as u32, 0))?;
    int80(6, fd as u32, 0, 0);
    Ok(())
}

#[cfg(target_arch = "x86_64")]
pub fn compat_unlink(path: &str) -> Result<()> {
    // i386: unlink = 10.
    compat_path_call(path, |p| int80(10, p, 0, 0)).map(drop)
}

#[cfg(target_arch = "x86_64")]
pub fn x32_getpid() -> Result<()> {
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    // SAFETY: getpid has no arguments.
    ret(unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) }).map(drop)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn compat_open(_: &str) -> Result<()> {
    Err(Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn compat_unlink(_: &str) -> Result<()> {
    Err(Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn x32_getpid() -> Result<()> {
    Err(Error::from_raw_os_error(libc::ENOSYS))
}

/// Reap child `pid`; an error unless it exited with status 0.
fn reap(pid: libc::pid_t) -> Result<()> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    ret(unsafe { libc::waitpid(pid, &mut status, 0) } as libc::c_long)?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(Error::other(format!(
            "child ended with wait status {status:#x}"
        )))
    }
}

/// A raw clone without a new stack (like fork: the child runs on a copy of ours, or on ours
/// for CLONE_VM, which is not asked for here); the child exits at once.
pub fn clone_files() -> Result<()> {
    // SAFETY: with a null stack and no CLONE_VM the child gets a copy of this address space,
    // and calls only _exit.
    let pid = ret(unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_FILES | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    })?;
    if pid == 0 {
        unsafe { libc::_exit(0) };
    }
    reap(pid as libc::pid_t)
}

pub fn clone3() -> Result<()> {
    // struct clone_args { flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls } (the first version, 64 bytes).
    let mut args = [0u64; 8];
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: fork semantics (no CLONE_VM); the child calls only _exit.
    let pid =
        ret(unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), size_of_val(&args)) })?;
    if pid == 0 {
        unsafe { libc::_exit(0) };
    }
    reap(pid as libc::pid_t)
}

/// A thread and a child process, the way programs make them (the C library's clone3, then
/// clone where clone3 fails with ENOSYS).
pub fn spawn() -> Result<()> {
    std::thread::spawn(std::process::id)
        .join()
        .map_err(|_| Error::other("thread panicked"))?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--version")
        .stdout(std::io::stderr())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::other(format!("child: {status}")))
    }
}

pub fn guard() -> Result<()> {
    enforcer::kernel::seccomp::apply().map_err(Error::other)
}
