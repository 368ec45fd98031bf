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
    /// unixdgram:PATH (sendto)
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

/// Descriptors kept open by `hold:PATH`, for `ftruncate:PATH` in a later step.
type Held = Vec<(String, std::fs::File)>;

fn ftruncate(held: &Held, arg: &str) -> std::io::Result<()> {
    match held.iter().find(|(p, _)| p == arg) {
        Some((_, f)) => f.set_len(0),
        None => std::fs::OpenOptions::new().write(true).open(arg)?.set_len(0),
    }
}

fn perform(op: &str, arg: &str, held: &mut Held) -> std::io::Result<()> {
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
        "ftruncate" => ftruncate(held, arg),
        "truncate" => {
            let c = cstr(arg)?;
            check(unsafe { libc::truncate(c.as_ptr(), 0) })
        }
        "chmod" => {
            let c = cstr(arg)?;
            check(unsafe { libc::chmod(c.as_ptr(), 0o600) })
        }
        "connect" => {
            let addr: SocketAddr = arg.parse().map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            TcpStream::connect_timeout(&addr, timeout).map(drop)
        }
        "udp" => {
            let addr: SocketAddr = arg.parse().map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
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
