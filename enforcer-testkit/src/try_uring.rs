//! The io_uring operations of `enforcer-testkit try-ops` (adversarial case 5): an open and a TCP connect
//! submitted to a ring instead of made as system calls. They reach the kernel's file_open and
//! socket_connect paths without the openat/connect syscalls: inline in the submitting thread,
//! with `IOSQE_ASYNC` in an io-wq worker thread, or issued by the ring's SQPOLL thread (both
//! kernel-created threads of this process that no fork tracepoint saw).

use std::{ffi::CString, net::SocketAddr};

use io_uring::{opcode, squeue, types, IoUring};

/// Which thread performs the operation.
#[derive(Clone, Copy)]
pub enum Via {
    /// The submitting thread (io_uring_enter), unless it would block.
    Inline,
    /// An io-wq worker (`IOSQE_ASYNC`).
    Worker,
    /// The ring's SQPOLL kernel thread (`IORING_SETUP_SQPOLL`), which issues the submission.
    SqPoll,
}

/// Submit one entry and return its completion's result: the kernel answers an io_uring
/// operation in the CQE, as `-errno` or the syscall's return value.
fn submit_one(entry: squeue::Entry, via: Via) -> std::io::Result<i32> {
    let mut ring = match via {
        Via::SqPoll => IoUring::builder().setup_sqpoll(1000).build(2)?,
        _ => IoUring::new(2)?,
    };
    let entry = if matches!(via, Via::Worker) {
        entry.flags(squeue::Flags::ASYNC)
    } else {
        entry
    };
    // SAFETY: the buffers `entry` points to are the caller's and outlive this call, which waits
    // for the completion.
    unsafe { ring.submission().push(&entry) }
        .map_err(|_| std::io::Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| std::io::Error::other("no completion"))?;
    let res = cqe.result();
    if res < 0 {
        Err(std::io::Error::from_raw_os_error(-res))
    } else {
        Ok(res)
    }
}

/// `IORING_OP_OPENAT` of `path` for reading; the descriptor is closed again.
pub fn open(path: &str, via: Via) -> std::io::Result<()> {
    let c = CString::new(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let entry = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build();
    let fd = submit_one(entry, via)?;
    unsafe { libc::close(fd) };
    Ok(())
}

/// `IORING_OP_CONNECT` of a new TCP socket to `addr`.
pub fn connect(addr: &SocketAddr, via: Via) -> std::io::Result<()> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (ss, len) = crate::try_ops::raw_sockaddr(addr);
    let entry =
        opcode::Connect::new(types::Fd(fd), &ss as *const _ as *const libc::sockaddr, len).build();
    let r = submit_one(entry, via);
    unsafe { libc::close(fd) };
    r.map(drop)
}
