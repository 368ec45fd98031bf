//! `enforcer-testkit try-ops`: performs file, exec and network operations and reports what the
//! kernel answered, one JSON line per operation. It is the "agent" of the kernel tests and of
//! `enforcer demo`: a real process whose every syscall goes through the hooks.

use std::{
    ffi::CString,
    io::{BufRead as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    os::unix::{ffi::OsStrExt as _, net::UnixStream},
    path::Path,
    process::ExitCode,
    time::Duration,
};

#[derive(Debug, clap::Args)]
pub struct TryOpsArgs {
    /// Print `ready <pid>` and wait for a line on stdin before starting (lets a test register
    /// this process as an agent first).
    #[arg(long)]
    pub wait_stdin: bool,
    /// Also wait for a line on stdin before each operation (tests change the kernel's policy
    /// between the operations of one process). An empty line runs the next listed operation; a
    /// line `OP:ARG` runs that operation instead (so a test can drive one process for as long
    /// as it likes). Ends when stdin closes, or on an empty line once the list is done.
    #[arg(long)]
    pub step: bool,
    /// Operations: open:PATH write:PATH rw:PATH create:PATH thread-open:PATH (open from a new
    /// thread) exec:PATH[,ARG...] unlink:PATH
    /// mkdir:PATH rmdir:PATH rename:FROM,TO symlink:TARGET,LINK link:EXISTING,NEW truncate:PATH
    /// chmod:PATH chown:PATH (to the caller's own uid/gid) mknod:PATH (a fifo) hold:PATH (open for
    /// writing and keep the descriptor) ftruncate:PATH (on the held descriptor, else a new one)
    /// connect:ADDR:PORT (tcp) udp:ADDR:PORT (sendto) unix:PATH unix:@NAME (stream connect)
    /// unixdgram:PATH (sendto) bpf:- (a harmless bpf() call). Evasion attempts (the adversarial tests): holdr:PATH (open
    /// read-only and keep the descriptor) reopen:PATH / reopenw:PATH (open
    /// `/proc/self/fd/N` of the held descriptor of PATH for reading / writing) chdir:PATH
    /// openat:DIR,REL (openat(2) relative to an O_PATH descriptor of DIR) copy:FROM,TO
    /// memfdexec:PATH[,ARG...] (copy PATH into a memfd, fork, fexecve it) execfd:PATH[,ARG...]
    /// (fork, execveat(O_PATH fd of PATH, "", AT_EMPTY_PATH)) udpmmsg:ADDR:PORT (sendmmsg)
    /// unix-lazy:PATH / unixdgram-lazy-msg:PATH (connect / sendmsg with the sockaddr / the
    /// msghdr in a never-touched page) unix-badaddr:PATH / unixdgram-badmsg:- (the sockaddr /
    /// msghdr pointer on an unmapped page) unixmmsg:PATH[,PATH2] (one sendmmsg of two unix
    /// datagrams) handle-open:PATH (name_to_handle_at + open_by_handle_at, read a byte)
    /// tfo:ADDR:PORT (TCP sendto with MSG_FASTOPEN, no connect) kill:PID (SIGKILL) ptrace:PID
    /// (PTRACE_ATTACH, wait for the stop, PTRACE_DETACH) openx:HEX (open for reading the path
    /// whose bytes are HEX: any byte, newlines too) execheld:PATH[,ARG...] (fork,
    /// execveat(held descriptor of PATH, "", AT_EMPTY_PATH): PATH may be deleted by now)
    /// uring-open:PATH uring-connect:ADDR:PORT (the open / a tcp connect submitted to an
    /// io_uring, answered in the completion) uring-open-wq:PATH uring-connect-wq:ADDR:PORT (the
    /// same with IOSQE_ASYNC: performed by an io-wq worker thread) uring-open-sqpoll:PATH
    /// uring-connect-sqpoll:ADDR:PORT (issued by the ring's SQPOLL thread) flood:N,open,PATH /
    /// flood:N,connect,ADDR:PORT (one thread pinned to each CPU makes N attempts; fails unless
    /// every one got EPERM) api:SOCKET:JSON (send the request line JSON on the daemon socket
    /// SOCKET; the result is the daemon's one-line answer) api-setuid:UID:SOCKET:JSON (connect,
    /// setuid(UID), then send) api-orphan:SOCKET:DIR:JSON (connect, fork; the child keeps the
    /// connection, waits until this process has exited and DIR/go exists, sends JSON and writes
    /// the answer to DIR/answer) fake-daemon:SOCKET (serve SOCKET, answering every line with
    /// `registered`, until this process exits).
    /// Other processes, terminals, mounts: seize:PID (PTRACE_SEIZE,
    /// interrupt, detach) memw:PID (open /proc/PID/mem for writing) vmread:PID / vmwrite:PID (one byte by
    /// process_vm_readv/writev at an unmapped address: EFAULT once allowed) getfd:PID
    /// (pidfd_open + pidfd_getfd of its fd 0) traceme:- (PTRACE_TRACEME: the caller's parent
    /// becomes its tracer) trace-child:- (fork a child, PTRACE_ATTACH it, wait, detach)
    /// traceme-child:- (fork a child that calls PTRACE_TRACEME and stops; wait, kill it)
    /// tiocsti:- / tioclinux:- (the ioctl on a fresh pty pair from openpty) mount:DIR (a tmpfs)
    /// bind:FROM,TO umount:DIR chroot:DIR pivot:DIR userns:- (unshare(CLONE_NEWUSER))
    /// nsmount:DIR (unshare(CLONE_NEWUSER|CLONE_NEWNS), then a tmpfs on DIR) treemove:FROM,TO
    /// (open_tree(OPEN_TREE_CLONE) of FROM, move_mount to TO) session:- (succeeds if this
    /// process leads its own session and has no controlling terminal); chroot, pivot, userns and
    /// nsmount run in a forked child, which reports its errno (the caller keeps its root and
    /// namespaces). landlock:FILE (restrict this process with the Landlock envelope in FILE,
    /// JSON, as `enforcer run` does).
    /// Other syscall ABIs and shared descriptor tables (try_abi.rs): compat-open:PATH
    /// compat-unlink:PATH (through int 0x80) x32:- (getpid through the x32 ABI) clone-files:-
    /// (a child sharing the descriptor table) clone3:- (fork by clone3) spawn:- (a thread and a
    /// child the usual way) guard:- (install the launcher's seccomp filter).
    /// Sockets: socket:FAMILY,TYPE,PROTOCOL (socket(2) with these numbers, then close)
    /// listen:ADDR:PORT (bind and listen on a TCP socket; port 0: the kernel picks)
    /// listen-unbound:- (listen on a TCP socket never bound: the kernel binds 0.0.0.0:<any>)
    /// ping:ADDR (an ICMP echo sent from a datagram "ping" socket).
    /// Objects without a path: reopen-own:pipe|eventfd|memfd (make one, then open
    /// /proc/self/fd/N of it for reading and for writing, as a jobserver client does)
    /// memfd-ops:- (memfd_create, ftruncate, fchmod: what shared-memory users do).
    pub ops: Vec<String>,
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn result_line(op: &str, arg: &str, r: Result<(), std::io::Error>) -> String {
    let errno = match &r {
        Ok(()) => 0,
        Err(e) => errno_of(e),
    };
    let message = match &r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    serde_json::json!({ "op": op, "arg": arg, "errno": errno, "result": message }).to_string()
}

fn cstr(p: &str) -> std::io::Result<CString> {
    CString::new(p).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_with(path: &str, flags: libc::c_int) -> std::io::Result<()> {
    let c = cstr(path)?;
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    check(fd)?;
    unsafe { libc::close(fd) };
    Ok(())
}

fn two(arg: &str) -> std::io::Result<(&str, &str)> {
    arg.split_once(',')
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn exec(arg: &str) -> std::io::Result<()> {
    let mut parts = arg.split(',');
    let prog = parts.next().unwrap_or_default();
    // Its stdout must not mix with our one-JSON-line-per-operation output. Sent to our stderr
    // (a dup): Stdio::null() would open /dev/null, an open the agent may well be denied.
    let status = std::process::Command::new(prog)
        .args(parts)
        .stdout(std::io::stderr())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("exited with {status}")))
    }
}

/// Every operation `perform` knows (checked before any is performed).
const OPS: &[&str] = &[
    "open",
    "write",
    "rw",
    "create",
    "thread-open",
    "exec",
    "unlink",
    "mkdir",
    "rmdir",
    "rename",
    "symlink",
    "link",
    "chown",
    "mknod",
    "hold",
    "holdr",
    "reopen",
    "reopenw",
    "ftruncate",
    "truncate",
    "chmod",
    "chdir",
    "openat",
    "copy",
    "memfdexec",
    "execfd",
    "connect",
    "udp",
    "udpmmsg",
    "tfo",
    "unix",
    "unixdgram",
    "bpf",
    "kill",
    "ptrace",
    "openx",
    "execheld",
    "uring-open",
    "uring-open-wq",
    "uring-open-sqpoll",
    "uring-connect",
    "uring-connect-wq",
    "uring-connect-sqpoll",
    "flood",
    "api",
    "api-setuid",
    "api-orphan",
    "fake-daemon",
    "seize",
    "memw",
    "vmread",
    "vmwrite",
    "getfd",
    "traceme",
    "trace-child",
    "traceme-child",
    "tiocsti",
    "tioclinux",
    "mount",
    "bind",
    "umount",
    "chroot",
    "pivot",
    "userns",
    "nsmount",
    "treemove",
    "session",
    "landlock",
    "compat-open",
    "compat-unlink",
    "x32",
    "clone-files",
    "clone3",
    "spawn",
    "guard",
    "unix-lazy",
    "socket",
    "listen",
    "listen-unbound",
    "reopen-own",
    "memfd-ops",
    "ping",
    "unix-badaddr",
    "unixdgram-lazy-msg",
    "unixdgram-badmsg",
    "unixmmsg",
    "handle-open",
];

/// Fork; the child execs the program behind `fd` (`execveat(fd, "", AT_EMPTY_PATH)`, which is
/// what `fexecve` does) with `argv`; the parent waits. Stdout goes to our stderr, like `exec`. A
/// refused exec is reported with its errno (sent back through a close-on-exec pipe), a program
/// that ran with its exit status.
fn fork_exec_fd(fd: libc::c_int, argv: &[&str]) -> std::io::Result<()> {
    use std::os::unix::process::ExitStatusExt as _;
    let args = argv
        .iter()
        .map(|a| cstr(a))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    let empty = c"";
    let mut pipe = [0 as libc::c_int; 2];
    check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Only async-signal-safe calls between fork and exec.
        unsafe {
            libc::dup2(2, 1);
            libc::syscall(
                libc::SYS_execveat,
                fd,
                empty.as_ptr(),
                ptrs.as_ptr(),
                environ,
                libc::AT_EMPTY_PATH,
            );
            let errno = *libc::__errno_location();
            libc::write(pipe[1], &errno as *const _ as *const _, 4);
            libc::_exit(127);
        }
    }
    unsafe { libc::close(pipe[1]) };
    let mut errno = 0 as libc::c_int;
    let n = if pid > 0 {
        unsafe { libc::read(pipe[0], &mut errno as *mut _ as *mut _, 4) }
    } else {
        0
    };
    unsafe { libc::close(pipe[0]) };
    check(pid)?;
    let mut status = 0;
    check(unsafe { libc::waitpid(pid, &mut status, 0) })?;
    if n == 4 {
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    let status = std::process::ExitStatus::from_raw(status);
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("exited with {status}")))
    }
}

/// `openx:HEX`: the bytes of a path written in hex (two digits per byte).
fn hex_bytes(hex: &str) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

/// `ptrace:PID`: attach (the tracee stops), wait for the stop, detach (it runs on).
fn ptrace_attach_detach(arg: &str) -> std::io::Result<()> {
    let pid: libc::pid_t = arg
        .parse()
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let null = std::ptr::null_mut::<libc::c_void>();
    check(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) } as libc::c_int)?;
    let mut status = 0;
    check(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) })?;
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) } as libc::c_int)
}

/// `memfdexec:PATH[,ARG...]` / `execfd:PATH[,ARG...]`.
fn exec_via_fd(arg: &str, memfd: bool) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let argv: Vec<&str> = arg.split(',').collect();
    let path = argv[0];
    let fd = if memfd {
        let name = c"enforcer-try-ops";
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        check(raw)?;
        let mut mem = unsafe { std::fs::File::from_raw_fd(raw) };
        std::io::copy(&mut std::fs::File::open(path)?, &mut mem)?;
        OwnedFd::from(mem)
    } else {
        let c = cstr(path)?;
        let raw = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        check(raw)?;
        unsafe { OwnedFd::from_raw_fd(raw) }
    };
    fork_exec_fd(fd.as_raw_fd(), &argv)
}

/// `openat:DIR,REL`: REL resolved by the kernel against a descriptor of DIR.
fn openat(arg: &str) -> std::io::Result<()> {
    let (dir, rel) = two(arg)?;
    let (d, r) = (cstr(dir)?, cstr(rel)?);
    let dfd = unsafe {
        libc::open(
            d.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    check(dfd)?;
    let fd = unsafe { libc::openat(dfd, r.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let res = check(fd);
    unsafe {
        if fd >= 0 {
            libc::close(fd);
        }
        libc::close(dfd);
    }
    res
}

/// `reopen:PATH` / `reopenw:PATH`: a new open of a held descriptor through `/proc/self/fd/N`.
fn reopen(held: &Held, arg: &str, flags: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (_, f) = held
        .iter()
        .find(|(p, _)| p == arg)
        .ok_or_else(|| std::io::Error::other(format!("{arg} is not held")))?;
    open_with(&format!("/proc/self/fd/{}", f.as_raw_fd()), flags)
}

fn socket_addr(arg: &str) -> std::io::Result<SocketAddr> {
    arg.parse()
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The raw `sockaddr` of `addr` for the libc calls below.
pub(crate) fn raw_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as _,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as _,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// `udpmmsg:ADDR` (one datagram through sendmmsg) and `tfo:ADDR` (sendto with MSG_FASTOPEN on
/// an unconnected TCP socket: the connect happens inside sendto).
fn send_raw(arg: &str, tfo: bool) -> std::io::Result<()> {
    let addr = socket_addr(arg)?;
    let (mut ss, len) = raw_sockaddr(&addr);
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let kind = if tfo {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_DGRAM
    };
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    let mut payload = *b"enforcer";
    let res = if tfo {
        let n = unsafe {
            libc::sendto(
                fd,
                payload.as_ptr() as *const _,
                payload.len(),
                libc::MSG_FASTOPEN,
                &ss as *const _ as *const libc::sockaddr,
                len,
            )
        };
        check(n as libc::c_int)
    } else {
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr() as *mut _,
            iov_len: payload.len(),
        };
        let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        msg.msg_hdr.msg_name = &mut ss as *mut _ as *mut _;
        msg.msg_hdr.msg_namelen = len;
        msg.msg_hdr.msg_iov = &mut iov;
        msg.msg_hdr.msg_iovlen = 1;
        check(unsafe { libc::sendmmsg(fd, &mut msg, 1, 0) })
    };
    unsafe { libc::close(fd) };
    res
}

/// Descriptors kept open by `hold:PATH`, for `ftruncate:PATH` in a later step.
type Held = Vec<(String, std::fs::File)>;

fn ftruncate(held: &Held, arg: &str) -> std::io::Result<()> {
    match held.iter().find(|(p, _)| p == arg) {
        Some((_, f)) => f.set_len(0),
        None => std::fs::OpenOptions::new()
            .write(true)
            .open(arg)?
            .set_len(0),
    }
}

fn perform(op: &str, arg: &str, held: &mut Held) -> std::io::Result<()> {
    use crate::try_uring::Via;
    let timeout = Duration::from_secs(3);
    match op {
        "open" => open_with(arg, libc::O_RDONLY),
        "write" => open_with(arg, libc::O_WRONLY),
        "rw" => open_with(arg, libc::O_RDWR),
        "create" => open_with(arg, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC),
        "exec" => exec(arg),
        // The same open from a new thread of this process (threads inherit the agent).
        "thread-open" => {
            let path = arg.to_string();
            std::thread::spawn(move || open_with(&path, libc::O_RDONLY))
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")))
        }
        "unlink" => std::fs::remove_file(arg),
        "mkdir" => std::fs::create_dir(arg),
        "rmdir" => std::fs::remove_dir(arg),
        "rename" => two(arg).and_then(|(a, b)| std::fs::rename(a, b)),
        "symlink" => two(arg).and_then(|(a, b)| std::os::unix::fs::symlink(a, b)),
        "link" => two(arg).and_then(|(a, b)| std::fs::hard_link(a, b)),
        "chown" => {
            let c = cstr(arg)?;
            check(unsafe { libc::chown(c.as_ptr(), libc::getuid(), libc::getgid()) })
        }
        "mknod" => {
            let c = cstr(arg)?;
            check(unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o600, 0) })
        }
        "hold" => {
            let f = std::fs::OpenOptions::new().write(true).open(arg)?;
            held.push((arg.to_string(), f));
            Ok(())
        }
        "holdr" => {
            let f = std::fs::File::open(arg)?;
            held.push((arg.to_string(), f));
            Ok(())
        }
        "reopen" => reopen(held, arg, libc::O_RDONLY),
        "reopenw" => reopen(held, arg, libc::O_WRONLY),
        "chdir" => std::env::set_current_dir(arg),
        "openat" => openat(arg),
        "copy" => two(arg).and_then(|(a, b)| std::fs::copy(a, b).map(drop)),
        "memfdexec" => exec_via_fd(arg, true),
        "execfd" => exec_via_fd(arg, false),
        "udpmmsg" => send_raw(arg, false),
        "tfo" => send_raw(arg, true),
        // bpf(BPF_PROG_GET_NEXT_ID) from id 0: harmless, needs CAP_SYS_ADMIN, never allowed to
        // an agent. The argument is ignored.
        "bpf" => {
            let mut attr = [0u8; 128];
            let r = unsafe { libc::syscall(libc::SYS_bpf, 11, attr.as_mut_ptr(), attr.len()) };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
        "ftruncate" => ftruncate(held, arg),
        "kill" => {
            let pid: libc::pid_t = arg
                .parse()
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            check(unsafe { libc::kill(pid, libc::SIGKILL) })
        }
        "ptrace" => ptrace_attach_detach(arg),
        "openx" => {
            let bytes = hex_bytes(arg)?;
            let c =
                CString::new(bytes).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            check(fd)?;
            unsafe { libc::close(fd) };
            Ok(())
        }
        "execheld" => {
            use std::os::fd::AsRawFd as _;
            let argv: Vec<&str> = arg.split(',').collect();
            let (_, f) = held
                .iter()
                .find(|(p, _)| p == argv[0])
                .ok_or_else(|| std::io::Error::other(format!("{} is not held", argv[0])))?;
            fork_exec_fd(f.as_raw_fd(), &argv)
        }
        "truncate" => {
            let c = cstr(arg)?;
            check(unsafe { libc::truncate(c.as_ptr(), 0) })
        }
        "chmod" => {
            let c = cstr(arg)?;
            check(unsafe { libc::chmod(c.as_ptr(), 0o600) })
        }
        "connect" => {
            let addr = socket_addr(arg)?;
            TcpStream::connect_timeout(&addr, timeout).map(drop)
        }
        "udp" => {
            let addr = socket_addr(arg)?;
            let bind: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .expect("literal");
            let sock = UdpSocket::bind(bind)?;
            sock.send_to(b"enforcer", addr).map(drop)
        }
        "unix" => {
            if let Some(name) = arg.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt as _;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                UnixStream::connect_addr(&addr).map(drop)
            } else {
                UnixStream::connect(Path::new(arg)).map(drop)
            }
        }
        "flood" => crate::try_flood::flood(arg),
        "api-orphan" => api_orphan(arg),
        "fake-daemon" => fake_daemon(arg),
        "uring-open" => crate::try_uring::open(arg, Via::Inline),
        "uring-open-wq" => crate::try_uring::open(arg, Via::Worker),
        "uring-open-sqpoll" => crate::try_uring::open(arg, Via::SqPoll),
        "uring-connect" => {
            socket_addr(arg).and_then(|a| crate::try_uring::connect(&a, Via::Inline))
        }
        "uring-connect-wq" => {
            socket_addr(arg).and_then(|a| crate::try_uring::connect(&a, Via::Worker))
        }
        "uring-connect-sqpoll" => {
            socket_addr(arg).and_then(|a| crate::try_uring::connect(&a, Via::SqPoll))
        }
        "socket" | "listen" | "listen-unbound" | "ping" => socket_op(op, arg),
        "reopen-own" => reopen_own(arg),
        "memfd-ops" => {
            let fd = unsafe { libc::memfd_create(c"enforcer-test".as_ptr(), libc::MFD_CLOEXEC) };
            check(fd)?;
            let r = check(unsafe { libc::ftruncate(fd, 4096) })
                .and_then(|()| check(unsafe { libc::fchmod(fd, 0o600) }));
            unsafe { libc::close(fd) };
            r
        }
        "unixdgram" => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            sock.send_to(b"enforcer", std::ffi::OsStr::from_bytes(arg.as_bytes()))
                .map(drop)
        }
        "seize" | "memw" | "vmread" | "vmwrite" | "getfd" | "traceme" | "trace-child"
        | "traceme-child" | "tiocsti" | "tioclinux" => process_op(op, arg),
        "mount" | "bind" | "umount" | "chroot" | "pivot" | "userns" | "nsmount" | "treemove" => {
            mount_op(op, arg)
        }
        "session" => own_session(),
        "landlock" => landlock(arg),
        "compat-open" => crate::try_abi::compat_open(arg),
        "compat-unlink" => crate::try_abi::compat_unlink(arg),
        "x32" => crate::try_abi::x32_getpid(),
        "clone-files" => crate::try_abi::clone_files(),
        "clone3" => crate::try_abi::clone3(),
        "spawn" => crate::try_abi::spawn(),
        "guard" => crate::try_abi::guard(),
        "unix-lazy" => crate::try_failclosed::unix_lazy(arg),
        "unix-badaddr" => crate::try_failclosed::unix_badaddr(arg),
        "unixdgram-lazy-msg" => crate::try_failclosed::unixdgram_lazy_msg(arg),
        "unixdgram-badmsg" => crate::try_failclosed::unixdgram_badmsg(),
        "unixmmsg" => crate::try_failclosed::unixmmsg(arg),
        "handle-open" => crate::try_failclosed::handle_open(arg),
        _ => Err(std::io::Error::other(format!("unknown operation {op:?}"))),
    }
}

/// `landlock:FILE`: restrict this process (and what it starts) with the Landlock envelope in
/// FILE (JSON, as the daemon's `registered` answer carries it), exactly as `enforcer run` does.
fn landlock(file: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let envelope: enforcer::policy::envelope::Envelope =
        serde_json::from_str(&text).map_err(std::io::Error::other)?;
    enforcer::kernel::landlock::apply(&envelope)
        .map(drop)
        .map_err(std::io::Error::other)
}

/// `api:SOCKET:JSON`: one raw request line on the API socket, written by this process itself
/// (the agent is the peer), and the daemon's answer as the result (errno 0 when the exchange
/// worked, whatever the answer says).
fn api_line(arg: &str, setuid: Option<u32>) -> String {
    let exchange = || -> std::io::Result<String> {
        let (path, request) = arg
            .split_once(':')
            .ok_or_else(|| std::io::Error::other("expected api:SOCKET:JSON"))?;
        let stream = UnixStream::connect(path)?;
        if let Some(uid) = setuid {
            check(unsafe { libc::setuid(uid) })?;
        }
        api_exchange(stream, request)
    };
    match exchange() {
        Ok(answer) => serde_json::json!({ "op": "api", "arg": arg, "errno": 0, "result": answer }),
        Err(e) => serde_json::json!({
            "op": "api", "arg": arg, "errno": errno_of(&e), "result": e.to_string()
        }),
    }
    .to_string()
}

fn api_exchange(mut stream: UnixStream, request: &str) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    Ok(answer.trim_end().to_owned())
}

/// `api-orphan:SOCKET:DIR:JSON`: the connection outlives the process that made it (so its pid
/// can be reused). The child polls for the parent's exit and DIR/go for at most 2 minutes.
fn api_orphan(arg: &str) -> std::io::Result<()> {
    let mut parts = arg.splitn(3, ':');
    let (Some(path), Some(dir), Some(request)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(std::io::Error::other("expected api-orphan:SOCKET:DIR:JSON"));
    };
    let mut stream = UnixStream::connect(path)?;
    // One answered request first: the daemon has accepted and bound this connection before the
    // pid can be reused (what happens between connect and accept is another case).
    stream.write_all(b"{\"request\":\"grants\"}\n")?;
    let mut first = String::new();
    std::io::BufReader::new(stream.try_clone()?).read_line(&mut first)?;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: try-ops is single-threaded here; the child only uses std file and socket calls.
    let pid = unsafe { libc::fork() };
    check(pid)?;
    if pid > 0 {
        return Ok(());
    }
    let dir = Path::new(dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while (unsafe { libc::getppid() } == parent || !dir.join("go").exists())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = api_exchange(stream, request).unwrap_or_else(|e| format!("error: {e}"));
    let _ = std::fs::write(dir.join("answer.tmp"), answer)
        .and_then(|()| std::fs::rename(dir.join("answer.tmp"), dir.join("answer")));
    // SAFETY: ends the forked child without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

/// `fake-daemon:SOCKET`: something that is not the daemon answering like one.
fn fake_daemon(path: &str) -> std::io::Result<()> {
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut line = String::new();
            let reader = stream.try_clone().map(std::io::BufReader::new);
            if reader.and_then(|mut r| r.read_line(&mut line)).is_ok() {
                let _ = stream.write_all(
                    b"{\"result\":\"registered\",\"agent\":\"fake\",\"session\":\"0000000000000001\",\"policy_version\":1}\n",
                );
            }
        }
    });
    Ok(())
}

fn pid_arg(arg: &str) -> std::io::Result<libc::pid_t> {
    arg.parse()
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn check_long(ret: libc::c_long) -> std::io::Result<libc::c_long> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An unmapped address in any process (the first page is never mapped): an allowed
/// process_vm_readv/writev fails there with EFAULT and changes nothing.
const UNMAPPED: usize = 0x10;

/// Operations on other processes and on terminals (see `--help`).
fn process_op(op: &str, arg: &str) -> std::io::Result<()> {
    let null = std::ptr::null_mut::<libc::c_void>();
    match op {
        "seize" => {
            let pid = pid_arg(arg)?;
            check_long(unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, null, null) })?;
            // Detaching needs a stopped tracee: interrupt it (no signal is queued) and wait.
            check_long(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, null, null) })?;
            let mut status = 0;
            check(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) })?;
            check_long(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) }).map(drop)
        }
        "memw" => open_with(&format!("/proc/{}/mem", pid_arg(arg)?), libc::O_RDWR),
        "vmread" | "vmwrite" => {
            let pid = pid_arg(arg)?;
            let mut byte = 0u8;
            let local = libc::iovec {
                iov_base: &mut byte as *mut u8 as *mut libc::c_void,
                iov_len: 1,
            };
            let remote = libc::iovec {
                iov_base: UNMAPPED as *mut libc::c_void,
                iov_len: 1,
            };
            let n = unsafe {
                if op == "vmread" {
                    libc::process_vm_readv(pid, &local, 1, &remote, 1, 0)
                } else {
                    libc::process_vm_writev(pid, &local, 1, &remote, 1, 0)
                }
            };
            check_long(n as libc::c_long).map(drop)
        }
        "getfd" => {
            let pidfd =
                check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid_arg(arg)?, 0) })?
                    as libc::c_int;
            let r = check_long(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) });
            unsafe { libc::close(pidfd) };
            unsafe { libc::close(r? as libc::c_int) };
            Ok(())
        }
        "traceme" => {
            check_long(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) }).map(drop)
        }
        "trace-child" => {
            let child = unsafe { libc::fork() };
            if child == 0 {
                loop {
                    unsafe { libc::pause() };
                }
            }
            check(child)?;
            let traced = (|| {
                check_long(unsafe { libc::ptrace(libc::PTRACE_ATTACH, child, null, null) })?;
                let mut status = 0;
                check(unsafe { libc::waitpid(child, &mut status, libc::__WALL) })?;
                check_long(unsafe { libc::ptrace(libc::PTRACE_DETACH, child, null, null) })
                    .map(drop)
            })();
            unsafe { libc::kill(child, libc::SIGKILL) };
            let mut status = 0;
            unsafe { libc::waitpid(child, &mut status, libc::__WALL) };
            traced
        }
        "traceme-child" => {
            let child = unsafe { libc::fork() };
            if child == 0 {
                unsafe {
                    if libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) < 0 {
                        libc::_exit(*libc::__errno_location());
                    }
                    libc::raise(libc::SIGSTOP);
                    libc::_exit(0);
                }
            }
            check(child)?;
            let mut status = 0;
            check(unsafe { libc::waitpid(child, &mut status, libc::__WALL) })?;
            if libc::WIFSTOPPED(status) {
                // Traced and stopped: the parent is its tracer.
                unsafe { libc::kill(child, libc::SIGKILL) };
                unsafe { libc::waitpid(child, &mut status, libc::__WALL) };
                return Ok(());
            }
            child_status(status)
        }
        _ => {
            let (mut master, mut slave) = (0, 0);
            let null_mut = std::ptr::null_mut();
            check(unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    null_mut,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            })?;
            let r = if op == "tiocsti" {
                let c = b'x';
                check(unsafe { libc::ioctl(slave, libc::TIOCSTI, &c) })
            } else {
                // TIOCLINUX subcode 3 (TIOCL_GETSHIFTSTATE... any): refused before the driver.
                let mut sub = [6u8, 0];
                check(unsafe { libc::ioctl(slave, libc::TIOCLINUX, sub.as_mut_ptr()) })
            };
            unsafe {
                libc::close(master);
                libc::close(slave);
            }
            r
        }
    }
}

/// `session:-`: this process leads its own session (`enforcer run` detached it) and has no
/// controlling terminal.
fn own_session() -> std::io::Result<()> {
    let (sid, pid) = (unsafe { libc::getsid(0) }, unsafe { libc::getpid() });
    if sid != pid {
        return Err(std::io::Error::other(format!(
            "session {sid} is not led by this process ({pid})"
        )));
    }
    let tty = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if tty >= 0 {
        unsafe { libc::close(tty) };
        return Err(std::io::Error::other(
            "a controlling terminal is still open",
        ));
    }
    Ok(())
}

/// A forked child's wait status as this operation's result: exit code 0 is success, another
/// code is the errno it reported, a signal is reported as such.
fn child_status(status: libc::c_int) -> std::io::Result<()> {
    if libc::WIFSIGNALED(status) {
        return Err(std::io::Error::other(format!(
            "the child was killed by signal {}",
            libc::WTERMSIG(status)
        )));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Run `f` in a forked child (only raw system calls in it) and report its errno.
fn in_child(f: impl FnOnce() -> libc::c_int) -> std::io::Result<()> {
    let child = unsafe { libc::fork() };
    if child == 0 {
        let errno = f();
        unsafe { libc::_exit(errno) };
    }
    check(child)?;
    let mut status = 0;
    check(unsafe { libc::waitpid(child, &mut status, 0) })?;
    child_status(status)
}

/// The errno of a failed raw call (0 when it succeeded).
fn errno_if(ret: libc::c_long) -> libc::c_int {
    if ret < 0 {
        unsafe { *libc::__errno_location() }
    } else {
        0
    }
}

/// Make a pipe, eventfd or memfd and reopen it through `/proc/self/fd` for reading and writing
/// (see `--help`).
fn reopen_own(kind: &str) -> std::io::Result<()> {
    let fds: Vec<libc::c_int> = match kind {
        "pipe" => {
            let mut p = [0; 2];
            check(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) })?;
            p.to_vec()
        }
        "eventfd" => {
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            check(fd)?;
            vec![fd]
        }
        "memfd" => {
            let fd = unsafe { libc::memfd_create(c"enforcer-test".as_ptr(), libc::MFD_CLOEXEC) };
            check(fd)?;
            vec![fd]
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("reopen-own: unknown kind {kind}"),
            ))
        }
    };
    let mut result = Ok(());
    for &fd in &fds {
        for flags in [libc::O_RDONLY, libc::O_WRONLY] {
            if result.is_ok() {
                result = open_with(&format!("/proc/self/fd/{fd}"), flags | libc::O_NONBLOCK);
            }
        }
    }
    for fd in fds {
        unsafe { libc::close(fd) };
    }
    result
}

/// Socket kinds and listening (see `--help`).
fn socket_op(op: &str, arg: &str) -> std::io::Result<()> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad {op}:{arg}"));
    match op {
        "socket" => {
            let n: Vec<i32> = arg
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            let [family, stype, protocol] = n[..] else {
                return Err(bad());
            };
            let fd = unsafe { libc::socket(family, stype | libc::SOCK_CLOEXEC, protocol) };
            check(fd)?;
            unsafe { libc::close(fd) };
            Ok(())
        }
        "listen" => std::net::TcpListener::bind(arg).map(drop),
        "listen-unbound" => {
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            check(fd)?;
            let r = check(unsafe { libc::listen(fd, 1) });
            unsafe { libc::close(fd) };
            r
        }
        "ping" => {
            let ip: std::net::Ipv4Addr = arg.parse().map_err(|_| bad())?;
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_ICMP,
                )
            };
            check(fd)?;
            // An echo request: type 8, code 0, checksum and id filled in by the kernel.
            let echo = [8u8, 0, 0, 0, 0, 0, 0, 1];
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            let r = unsafe {
                libc::sendto(
                    fd,
                    echo.as_ptr() as *const libc::c_void,
                    echo.len(),
                    0,
                    &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            let r = if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            };
            unsafe { libc::close(fd) };
            r
        }
        _ => Err(bad()),
    }
}

/// Mounts, roots and namespaces (see `--help`).
fn mount_op(op: &str, arg: &str) -> std::io::Result<()> {
    let tmpfs = c"tmpfs";
    let none = c"none";
    let null = std::ptr::null::<libc::c_void>();
    match op {
        "mount" => {
            let dir = cstr(arg)?;
            check(unsafe { libc::mount(none.as_ptr(), dir.as_ptr(), tmpfs.as_ptr(), 0, null) })
        }
        "bind" => {
            let (from, to) = two(arg)?;
            let (from, to) = (cstr(from)?, cstr(to)?);
            check(unsafe {
                libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    null,
                )
            })
        }
        "umount" => {
            let dir = cstr(arg)?;
            check(unsafe { libc::umount2(dir.as_ptr(), 0) })
        }
        "chroot" => {
            let dir = cstr(arg)?;
            in_child(|| errno_if(unsafe { libc::chroot(dir.as_ptr()) } as libc::c_long))
        }
        "pivot" => {
            let dir = cstr(arg)?;
            in_child(|| unsafe {
                errno_if(libc::syscall(
                    libc::SYS_pivot_root,
                    dir.as_ptr(),
                    dir.as_ptr(),
                ))
            })
        }
        "userns" => in_child(|| errno_if(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as _)),
        "nsmount" => {
            let dir = cstr(arg)?;
            in_child(|| unsafe {
                let e = errno_if(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as _);
                if e != 0 {
                    return e;
                }
                errno_if(libc::mount(none.as_ptr(), dir.as_ptr(), tmpfs.as_ptr(), 0, null) as _)
            })
        }
        _ => {
            // treemove:FROM,TO
            let (from, to) = two(arg)?;
            let (from, to) = (cstr(from)?, cstr(to)?);
            const OPEN_TREE_CLONE: libc::c_uint = 1;
            const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
            let tree = check_long(unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
                )
            })? as libc::c_int;
            let r = check_long(unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    tree,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            });
            unsafe { libc::close(tree) };
            r.map(drop)
        }
    }
}

fn parse(raw: &str) -> anyhow::Result<(String, String)> {
    let (op, arg) = raw
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("operation {raw:?}: expected OP:ARG (see --help)"))?;
    anyhow::ensure!(
        OPS.contains(&op),
        "operation {raw:?}: unknown operation {op:?} (see --help)"
    );
    Ok((op.to_string(), arg.to_string()))
}

pub fn run(args: TryOpsArgs) -> anyhow::Result<ExitCode> {
    // Validate every operation before doing any: bad input changes nothing.
    let parsed = args
        .ops
        .iter()
        .map(|raw| parse(raw))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = std::io::stdout().lock();
    if args.wait_stdin {
        writeln!(out, "ready {}", std::process::id())?;
        out.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let mut held = Held::new();
    let mut listed = parsed.into_iter();
    loop {
        let (op, arg) = if args.step {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line)? == 0 {
                break;
            }
            match line.trim_end() {
                "" => match listed.next() {
                    Some(next) => next,
                    None => break,
                },
                given => parse(given)?,
            }
        } else {
            match listed.next() {
                Some(next) => next,
                None => break,
            }
        };
        let line = if op == "api" {
            api_line(&arg, None)
        } else if op == "api-setuid" {
            match arg
                .split_once(':')
                .map(|(uid, rest)| (uid.parse::<u32>(), rest))
            {
                Some((Ok(uid), rest)) => api_line(rest, Some(uid)),
                _ => result_line(
                    &op,
                    &arg,
                    Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
                ),
            }
        } else {
            result_line(&op, &arg, perform(&op, &arg, &mut held))
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
