//! The measured processes. Each variant (baseline, confined agent, non-agent) is a separate
//! `enforcer-testkit bench-worker` process so that agent membership, which is per process and permanent,
//! can differ; all run the same code. The driver asks for a batch of one operation on stdin and
//! gets one line back: `<first errno> <failures> <ns> <ns> ...`, one duration per operation.

use std::{
    ffi::CString,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};

/// One benchmarked operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// open(O_RDONLY) + close.
    Open(String),
    /// posix_spawn + waitpid of a static binary run as `true` (busybox's applet).
    Exec(String),
    /// socket + connect to 127.0.0.1:port + close (with RST, so no TIME_WAIT piles up).
    Tcp(u16),
    /// sendto of one byte to 127.0.0.1:port from one unconnected UDP socket.
    Udp(u16),
}

impl Op {
    fn request(&self, n: usize) -> String {
        match self {
            Op::Open(p) => format!("open {p} {n}\n"),
            Op::Exec(p) => format!("exec {p} {n}\n"),
            Op::Tcp(port) => format!("tcp {port} {n}\n"),
            Op::Udp(port) => format!("udp {port} {n}\n"),
        }
    }
}

/// What one batch returned.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// errno of the first failed operation (0: none failed).
    pub errno: i32,
    pub failures: usize,
    pub ns: Vec<f64>,
}

/// The driver's handle on a worker process.
pub struct Worker {
    pub pid: u32,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    pub fn spawn() -> anyhow::Result<Worker> {
        let exe = std::env::current_exe().context("locating the enforcer-testkit executable")?;
        Self::spawn_with(Command::new(&exe))
    }

    /// `cmd` followed by `bench-worker`: `enforcer run ... -- enforcer-testkit` makes it a
    /// daemon's agent.
    pub fn spawn_with(mut cmd: Command) -> anyhow::Result<Worker> {
        let program = cmd.get_program().to_owned();
        let mut child = cmd
            .arg("bench-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} ... bench-worker", program.to_string_lossy()))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let pid = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok());
        let Some(pid) = pid else {
            bail!("bench-worker did not say ready: {line:?}")
        };
        Ok(Worker {
            pid,
            child,
            stdin,
            stdout,
        })
    }

    pub fn run(&mut self, op: &Op, n: usize) -> anyhow::Result<Batch> {
        self.stdin.write_all(op.request(n).as_bytes())?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let mut next = || words.next().context("short reply from bench-worker");
        let errno = next()?.parse()?;
        let failures = next()?.parse()?;
        let ns = line
            .split_whitespace()
            .skip(2)
            .map(str::parse)
            .collect::<Result<Vec<f64>, _>>()?;
        if ns.len() != n {
            bail!(
                "bench-worker returned {} samples for {n}: {line:?}",
                ns.len()
            );
        }
        Ok(Batch {
            errno,
            failures,
            ns,
        })
    }
}

impl Worker {
    /// Give the worker a login uid (audit's process-tree identity, inherited by children).
    pub fn set_loginuid(&mut self, auid: u32) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("loginuid {auid} 0\n").as_bytes())?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim() != "ok" {
            bail!("setting the worker's loginuid: {}", line.trim());
        }
        Ok(())
    }

    /// Move the worker into the loaded AppArmor profile `name` (aa_change_profile: the worker
    /// writes `changeprofile NAME` to its own attr file). Removing the profile makes it
    /// unconfined again.
    pub fn change_profile(&mut self, name: &str) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("changeprofile {name}\n").as_bytes())?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim() != "ok" {
            bail!(
                "moving the worker into AppArmor profile {name}: {}",
                line.trim()
            );
        }
        Ok(())
    }

    /// The worker's AppArmor label as the kernel reports it (`unconfined`, `NAME (enforce)`).
    pub fn apparmor_label(&self) -> anyhow::Result<String> {
        let path = format!("/proc/{}/attr/apparmor/current", self.pid);
        let label = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(label.trim_end_matches(['\n', '\0']).to_string())
    }

    /// Open `path` at `rate` per second (0: as fast as possible) for `millis`; returns the
    /// number of opens done and the seconds they took.
    pub fn pace(&mut self, path: &str, rate: u64, millis: u64) -> anyhow::Result<(u64, f64)> {
        self.stdin
            .write_all(format!("pace {path} {rate} {millis}\n").as_bytes())?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut w = line.split_whitespace();
        let (Some(n), Some(ns)) = (w.next(), w.next()) else {
            bail!("bad pace reply {line:?}")
        };
        Ok((n.parse()?, ns.parse::<f64>()? / 1e9))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"quit\n");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

// ---- the worker process ----

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// One operation; returns 0 or the errno.
struct Runner {
    udp: i32,
}

impl Runner {
    fn open(path: &CString) -> i32 {
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return last_errno();
        }
        unsafe { libc::close(fd) };
        0
    }

    fn exec(path: &CString) -> i32 {
        let arg0 = c"true";
        let argv = [arg0.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
        let envp = [std::ptr::null_mut::<libc::c_char>()];
        let mut pid = 0;
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if rc != 0 {
            return rc;
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // A killed or failing child (an exec the fallback killed, a denied exec) is a failure.
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            0
        } else if libc::WIFSIGNALED(status) {
            -libc::WTERMSIG(status)
        } else {
            libc::WEXITSTATUS(status).max(1)
        }
    }

    fn loopback(port: u16) -> libc::sockaddr_in {
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = port.to_be();
        a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        a
    }

    fn tcp(port: u16) -> i32 {
        let addr = Self::loopback(port);
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return last_errno();
        }
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = unsafe { libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) };
        let errno = if rc < 0 { last_errno() } else { 0 };
        // Linger 0: close sends RST, so 100k connects leave no TIME_WAIT sockets behind.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const _ as *const libc::c_void,
                size_of::<libc::linger>() as u32,
            );
            libc::close(fd);
        }
        errno
    }

    fn udp(&self, port: u16) -> i32 {
        let addr = Self::loopback(port);
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = unsafe {
            libc::sendto(
                self.udp,
                b"x".as_ptr() as *const libc::c_void,
                1,
                0,
                &addr as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if rc < 0 {
            last_errno()
        } else {
            0
        }
    }
}

/// `pace PATH RATE MILLIS`: the event generator of the pipeline benchmark. Checks the clock
/// every 64 opens and sleeps off any lead, so the offered rate is steady, not bursty.
fn pace(line: &str) -> anyhow::Result<String> {
    let mut w = line.split_whitespace().skip(1);
    let (Some(path), Some(rate), Some(millis)) = (w.next(), w.next(), w.next()) else {
        bail!("bad request {line:?}")
    };
    let path = CString::new(path)?;
    let (rate, millis): (u64, u64) = (rate.parse()?, millis.parse()?);
    let start = Instant::now();
    let limit = std::time::Duration::from_millis(millis);
    let mut done: u64 = 0;
    loop {
        for _ in 0..64 {
            Runner::open(&path);
        }
        done += 64;
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return Ok(format!("{done} {}\n", elapsed.as_nanos()));
        }
        if rate > 0 {
            let due = std::time::Duration::from_secs_f64(done as f64 / rate as f64);
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
}

fn batch(runner: &Runner, line: &str) -> anyhow::Result<String> {
    if line.starts_with("pace ") {
        return pace(line);
    }
    if let Some(rest) = line.strip_prefix("loginuid ") {
        let auid = rest.split_whitespace().next().unwrap_or_default();
        return Ok(match std::fs::write("/proc/self/loginuid", auid) {
            Ok(()) => "ok\n".into(),
            Err(e) => format!("{e}\n"),
        });
    }
    if let Some(name) = line.strip_prefix("changeprofile ") {
        // One write(2) of the whole command, as libapparmor's aa_change_profile does.
        let command = format!("changeprofile {}", name.trim());
        return Ok(
            match std::fs::write("/proc/self/attr/apparmor/current", command) {
                Ok(()) => "ok\n".into(),
                Err(e) => format!("{e}\n"),
            },
        );
    }
    let mut w = line.split_whitespace();
    let (Some(kind), Some(arg), Some(n)) = (w.next(), w.next(), w.next()) else {
        bail!("bad request {line:?}")
    };
    let n: usize = n.parse()?;
    let path = CString::new(arg)?;
    let port: u16 = arg.parse().unwrap_or(0);
    let op: Box<dyn Fn() -> i32> = match kind {
        "open" => Box::new(|| Runner::open(&path)),
        "exec" => Box::new(|| Runner::exec(&path)),
        "tcp" => Box::new(move || Runner::tcp(port)),
        "udp" => Box::new(move || runner.udp(port)),
        _ => bail!("unknown operation {kind}"),
    };
    let (mut first, mut failures) = (0, 0);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let rc = op();
        out.push(start.elapsed().as_nanos() as u64);
        if rc != 0 {
            failures += 1;
            if first == 0 {
                first = rc;
            }
        }
    }
    let mut reply = format!("{first} {failures}");
    for ns in out {
        reply.push(' ');
        reply.push_str(&ns.to_string());
    }
    reply.push('\n');
    Ok(reply)
}

/// `enforcer-testkit bench-worker`: serve batches until `quit` or end of input.
pub fn serve() -> anyhow::Result<()> {
    let udp = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if udp < 0 {
        bail!("udp socket: {}", std::io::Error::last_os_error());
    }
    let runner = Runner { udp };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", std::process::id())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim() == "quit" {
            break;
        }
        out.write_all(batch(&runner, &line)?.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}
