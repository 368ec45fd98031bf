//! `enforcer try-ops` (hidden): performs file, exec and network operations and reports what the
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
    /// tfo:ADDR:PORT (TCP sendto with MSG_FASTOPEN, no connect) kill:PID (SIGKILL) ptrace:PID
    /// (PTRACE_ATTACH, wait for the stop, PTRACE_DETACH) openx:HEX (open for reading the path
    /// whose bytes are HEX: any byte, newlines too) execheld:PATH[,ARG...] (fork,
    /// execveat(held descriptor of PATH, "", AT_EMPTY_PATH): PATH may be deleted by now)
    /// uring-open:PATH uring-connect:ADDR:PORT (the open / a tcp connect submitted to an
    /// io_uring, answered in the completion) uring-open-wq:PATH uring-connect-wq:ADDR:PORT (the
    /// same with IOSQE_ASYNC: performed by an io-wq worker thread) uring-open-sqpoll:PATH
    /// uring-connect-sqpoll:ADDR:PORT (issued by the ring's SQPOLL thread) flood:N,open,PATH /
    /// flood:N,connect,ADDR:PORT (one thread pinned to each CPU makes N attempts; fails unless
    /// every one got EPERM)
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
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

fn open_with(path: &str, flags: libc::c_int) -> std::io::Result<()> {
    let c = cstr(path)?;
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    check(fd)?;
    unsafe { libc::close(fd) };
    Ok(())
}

fn two(arg: &str) -> std::io::Result<(&str, &str)> {
    arg.split_once(',').ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn exec(arg: &str) -> std::io::Result<()> {
    let mut parts = arg.split(',');
    let prog = parts.next().unwrap_or_default();
    // Its stdout must not mix with our one-JSON-line-per-operation output. Sent to our stderr
    // (a dup): Stdio::null() would open /dev/null, an open the agent may well be denied.
    let status = std::process::Command::new(prog).args(parts).stdout(std::io::stderr()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("exited with {status}")))
    }
}

/// Every operation `perform` knows (checked before any is performed).
const OPS: &[&str] = &[
    "open", "write", "rw", "create", "thread-open", "exec", "unlink", "mkdir", "rmdir", "rename", "symlink", "link", "chown",
    "mknod", "hold", "holdr", "reopen", "reopenw", "ftruncate", "truncate", "chmod", "chdir", "openat", "copy",
    "memfdexec", "execfd", "connect", "udp", "udpmmsg", "tfo", "unix", "unixdgram", "bpf", "kill", "ptrace", "openx", "execheld",
    "uring-open", "uring-open-wq", "uring-open-sqpoll", "uring-connect", "uring-connect-wq", "uring-connect-sqpoll", "flood",
];

/// Fork; the child execs the program behind `fd` (`execveat(fd, "", AT_EMPTY_PATH)`, which is
/// what `fexecve` does) with `argv`; the parent waits. Stdout goes to our stderr, like `exec`. A
/// refused exec is reported with its errno (sent back through a close-on-exec pipe), a program
/// that ran with its exit status.
fn fork_exec_fd(fd: libc::c_int, argv: &[&str]) -> std::io::Result<()> {
    use std::os::unix::process::ExitStatusExt as _;
    let args = argv.iter().map(|a| cstr(a)).collect::<std::io::Result<Vec<_>>>()?;
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
            libc::syscall(libc::SYS_execveat, fd, empty.as_ptr(), ptrs.as_ptr(), environ, libc::AT_EMPTY_PATH);
            let errno = *libc::__errno_location();
            libc::write(pipe[1], &errno as *const _ as *const _, 4);
            libc::_exit(127);
        }
    }
    unsafe { libc::close(pipe[1]) };
    let mut errno = 0 as libc::c_int;
    let n = if pid > 0 { unsafe { libc::read(pipe[0], &mut errno as *mut _ as *mut _, 4) } } else { 0 };
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
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())).collect()
}

/// `ptrace:PID`: attach (the tracee stops), wait for the stop, detach (it runs on).
fn ptrace_attach_detach(arg: &str) -> std::io::Result<()> {
    let pid: libc::pid_t = arg.parse().map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
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
    let dfd = unsafe { libc::open(d.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
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
    let (_, f) = held.iter().find(|(p, _)| p == arg).ok_or_else(|| std::io::Error::other(format!("{arg} is not held")))?;
    open_with(&format!("/proc/self/fd/{}", f.as_raw_fd()), flags)
}

fn socket_addr(arg: &str) -> std::io::Result<SocketAddr> {
    arg.parse().map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The raw `sockaddr` of `addr` for the libc calls below.
pub(super) fn raw_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as _,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as _,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// `udpmmsg:ADDR` (one datagram through sendmmsg) and `tfo:ADDR` (sendto with MSG_FASTOPEN on
/// an unconnected TCP socket: the connect happens inside sendto).
fn send_raw(arg: &str, tfo: bool) -> std::io::Result<()> {
    let addr = socket_addr(arg)?;
    let (mut ss, len) = raw_sockaddr(&addr);
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let kind = if tfo { libc::SOCK_STREAM } else { libc::SOCK_DGRAM };
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    let mut payload = *b"enforcer";
    let res = if tfo {
        let n = unsafe {
            libc::sendto(fd, payload.as_ptr() as *const _, payload.len(), libc::MSG_FASTOPEN, &ss as *const _ as *const libc::sockaddr, len)
        };
        check(n as libc::c_int)
    } else {
        let mut iov = libc::iovec { iov_base: payload.as_mut_ptr() as *mut _, iov_len: payload.len() };
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
        None => std::fs::OpenOptions::new().write(true).open(arg)?.set_len(0),
    }
}

fn perform(op: &str, arg: &str, held: &mut Held) -> std::io::Result<()> {
    use super::try_uring::Via;
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
            if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
        }
        "ftruncate" => ftruncate(held, arg),
        "kill" => {
            let pid: libc::pid_t = arg.parse().map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            check(unsafe { libc::kill(pid, libc::SIGKILL) })
        }
        "ptrace" => ptrace_attach_detach(arg),
        "openx" => {
            let bytes = hex_bytes(arg)?;
            let c = CString::new(bytes).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            check(fd)?;
            unsafe { libc::close(fd) };
            Ok(())
        }
        "execheld" => {
            use std::os::fd::AsRawFd as _;
            let argv: Vec<&str> = arg.split(',').collect();
            let (_, f) = held.iter().find(|(p, _)| p == argv[0]).ok_or_else(|| std::io::Error::other(format!("{} is not held", argv[0])))?;
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
            let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
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
        "flood" => super::try_flood::flood(arg),
        "uring-open" => super::try_uring::open(arg, Via::Inline),
        "uring-open-wq" => super::try_uring::open(arg, Via::Worker),
        "uring-open-sqpoll" => super::try_uring::open(arg, Via::SqPoll),
        "uring-connect" => socket_addr(arg).and_then(|a| super::try_uring::connect(&a, Via::Inline)),
        "uring-connect-wq" => socket_addr(arg).and_then(|a| super::try_uring::connect(&a, Via::Worker)),
        "uring-connect-sqpoll" => socket_addr(arg).and_then(|a| super::try_uring::connect(&a, Via::SqPoll)),
        "unixdgram" => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            sock.send_to(b"enforcer", std::ffi::OsStr::from_bytes(arg.as_bytes())).map(drop)
        }
        _ => Err(std::io::Error::other(format!("unknown operation {op:?}"))),
    }
}

fn parse(raw: &str) -> anyhow::Result<(String, String)> {
    let (op, arg) = raw
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("operation {raw:?}: expected OP:ARG (see --help)"))?;
    anyhow::ensure!(OPS.contains(&op), "operation {raw:?}: unknown operation {op:?} (see --help)");
    Ok((op.to_string(), arg.to_string()))
}

pub fn run(args: TryOpsArgs) -> anyhow::Result<ExitCode> {
    // Validate every operation before doing any: bad input changes nothing.
    let parsed = args.ops.iter().map(|raw| parse(raw)).collect::<anyhow::Result<Vec<_>>>()?;
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
        let r = perform(&op, &arg, &mut held);
        writeln!(out, "{}", result_line(&op, &arg, r))?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
