//! try-ops operations that make the programs' own reads fail (tests/tests/adversarial_failclosed.rs,
//! docs/kernel-maps.md "Failure points"):
//!
//! - `unix-lazy:PATH`: connect a unix stream socket to PATH with the `sockaddr_un` in a page the
//!   process never touched (a shared mapping of a memfd): the kernel's copy faults it in and
//!   succeeds, a BPF program's read of user memory (which may not fault) fails.
//! - `unixdgram-lazy-msg:PATH`: sendmsg of a unix datagram to PATH with the `msghdr` itself in
//!   such a page.
//! - `unix-badaddr:PATH`: connect with the sockaddr pointer on an unmapped page (EFAULT).
//! - `unixdgram-badmsg:-`: sendmsg with the msghdr pointer on an unmapped page (EFAULT).
//! - `unixmmsg:PATH[,PATH2]`: one sendmmsg of unix datagrams, to PATH (two messages, one
//!   address buffer) or to PATH then PATH2 (two buffers).
//! - `handle-open:PATH`: name_to_handle_at + open_by_handle_at (needs CAP_DAC_READ_SEARCH),
//!   the mount named by the working directory (changed to PATH's directory); reads one byte.

use std::{
    io::{Error, Result},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

fn check(r: libc::c_long) -> Result<libc::c_long> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A `sockaddr_un` for `path` and its length.
fn sun(path: &str) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as _;
    let b = path.as_bytes();
    if b.len() >= a.sun_path.len() {
        return Err(Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in a.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + b.len() + 1;
    Ok((a, len as libc::socklen_t))
}

/// One page holding `bytes`, mapped from a memfd and never touched by this process: no page
/// table entry until the kernel's own access faults it in. Written with pwrite(2), not through
/// the mapping (the page lies within the file's size, so the kernel's access does not fault
/// with SIGBUS). The mapping is leaked (the process ends after the operation).
fn lazy_page(bytes: &[u8]) -> Result<*mut u8> {
    let fd = check(
        unsafe { libc::memfd_create(c"enforcer-lazy".as_ptr(), libc::MFD_CLOEXEC) } as libc::c_long,
    )? as libc::c_int;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // pwrite sizes the memfd (no ftruncate: the agent may not truncate a file it cannot name).
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), bytes.as_ptr() as *const _, bytes.len(), 0) };
    if n as usize != bytes.len() {
        return Err(Error::other("short write to the memfd"));
    }
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(Error::last_os_error());
    }
    Ok(mem as *mut u8)
}

/// The address of a page that is not mapped (mapped, then unmapped).
fn unmapped_page() -> Result<*mut u8> {
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(Error::last_os_error());
    }
    check(unsafe { libc::munmap(mem, 4096) } as libc::c_long)?;
    Ok(mem as *mut u8)
}

fn as_bytes<T>(v: &T) -> &[u8] {
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

fn socket(kind: libc::c_int) -> Result<OwnedFd> {
    let fd = check(
        unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) } as libc::c_long,
    )? as libc::c_int;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn unix_lazy(path: &str) -> Result<()> {
    let (a, len) = sun(path)?;
    let page = lazy_page(as_bytes(&a))?;
    let fd = socket(libc::SOCK_STREAM)?;
    check(
        unsafe { libc::connect(fd.as_raw_fd(), page as *const libc::sockaddr, len) }
            as libc::c_long,
    )
    .map(drop)
}

pub fn unix_badaddr(path: &str) -> Result<()> {
    let (_, len) = sun(path)?;
    let page = unmapped_page()?;
    let fd = socket(libc::SOCK_STREAM)?;
    check(
        unsafe { libc::connect(fd.as_raw_fd(), page as *const libc::sockaddr, len) }
            as libc::c_long,
    )
    .map(drop)
}

pub fn unixdgram_lazy_msg(path: &str) -> Result<()> {
    let (mut a, len) = sun(path)?;
    let mut payload = *b"enforcer";
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr() as *mut _,
        iov_len: payload.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut a as *mut _ as *mut _;
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let page = lazy_page(as_bytes(&msg))?;
    let fd = socket(libc::SOCK_DGRAM)?;
    check(unsafe { libc::sendmsg(fd.as_raw_fd(), page as *const libc::msghdr, 0) } as libc::c_long)
        .map(drop)
}

pub fn unixdgram_badmsg() -> Result<()> {
    let page = unmapped_page()?;
    let fd = socket(libc::SOCK_DGRAM)?;
    check(unsafe { libc::sendmsg(fd.as_raw_fd(), page as *const libc::msghdr, 0) } as libc::c_long)
        .map(drop)
}

/// Returns an error when the first message was refused; a later refused message makes
/// sendmmsg return fewer messages than asked, reported as EPERM.
pub fn unixmmsg(arg: &str) -> Result<()> {
    let (first, second) = match arg.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (arg, None),
    };
    let (mut a, alen) = sun(first)?;
    let (mut b, blen) = match second {
        Some(p) => sun(p)?,
        None => (a, alen),
    };
    let mut payload = *b"enforcer";
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr() as *mut _,
        iov_len: payload.len(),
    };
    let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for (m, (name, len)) in msgs.iter_mut().zip([
        (&mut a as *mut libc::sockaddr_un, alen),
        (
            if second.is_some() {
                &mut b as *mut libc::sockaddr_un
            } else {
                &mut a as *mut libc::sockaddr_un
            },
            blen,
        ),
    ]) {
        m.msg_hdr.msg_name = name as *mut _;
        m.msg_hdr.msg_namelen = len;
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = socket(libc::SOCK_DGRAM)?;
    let sent =
        check(unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) } as libc::c_long)?;
    if sent < 2 {
        return Err(Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

pub fn handle_open(path: &str) -> Result<()> {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        f: [u8; 128],
    }
    let c = std::ffi::CString::new(path).map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    let mut h = Handle {
        bytes: 128,
        kind: 0,
        f: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    check(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c.as_ptr(),
            &mut h as *mut Handle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    })?;
    // The mount is named by the working directory (AT_FDCWD): chdir to the file's directory.
    // (An O_PATH descriptor is no mount_fd: the kernel answers EBADF.)
    let dir = std::path::Path::new(path)
        .parent()
        .ok_or_else(|| Error::from_raw_os_error(libc::EINVAL))?;
    std::env::set_current_dir(dir)?;
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            libc::AT_FDCWD,
            &mut h as *mut Handle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })? as libc::c_int;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut byte = [0u8; 1];
    check(unsafe { libc::read(fd.as_raw_fd(), byte.as_mut_ptr() as *mut _, 1) } as libc::c_long)
        .map(drop)
}
