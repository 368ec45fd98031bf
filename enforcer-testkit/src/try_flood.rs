//! `try-ops flood:N,KIND,TARGET` (adversarial case 4): one thread per CPU of this process's
//! affinity mask, each pinned to its
//! CPU, makes `N` denied attempts as fast as it can, so that every CPU writes decision records
//! into the ring buffer at once (and, unread, overflows it). Succeeds only if every attempt was
//! refused with EPERM: a full ring buffer must not change a decision.

use std::{net::SocketAddr, path::PathBuf};

use nix::{
    sched::{sched_getaffinity, sched_setaffinity, CpuSet},
    unistd::Pid,
};

/// What each attempt is: an open for reading of a path, or a TCP connect to an address.
#[derive(Clone)]
enum Attempt {
    Open(PathBuf),
    Connect(SocketAddr),
}

impl Attempt {
    /// The errno of one attempt (0: it succeeded). std's open (O_RDONLY | O_CLOEXEC) and TCP
    /// connect are one system call each, with nothing allocated for short paths.
    fn errno(&self) -> i32 {
        let result = match self {
            Attempt::Open(path) => std::fs::File::open(path).map(drop),
            Attempt::Connect(addr) => std::net::TcpStream::connect(addr).map(drop),
        };
        result.err().map_or(0, |e| e.raw_os_error().unwrap_or(-1))
    }
}

fn invalid() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EINVAL)
}

/// `N,open,PATH` or `N,connect,ADDR:PORT`.
pub fn flood(arg: &str) -> std::io::Result<()> {
    let mut parts = arg.splitn(3, ',');
    let (n, kind, target) = (
        parts.next().ok_or_else(invalid)?,
        parts.next().ok_or_else(invalid)?,
        parts.next().ok_or_else(invalid)?,
    );
    let n: u64 = n.parse().map_err(|_| invalid())?;
    let attempt = match kind {
        "open" => Attempt::Open(target.into()),
        "connect" => Attempt::Connect(target.parse().map_err(|_| invalid())?),
        _ => return Err(invalid()),
    };
    let cpus = allowed_cpus()?;
    let workers: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let attempt = attempt.clone();
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut set = CpuSet::new();
                set.set(cpu).map_err(std::io::Error::other)?;
                // Pid 0: this thread. Pinned, so each CPU's share of the ring traffic is its own.
                sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::other)?;
                let mut not_refused = 0;
                for _ in 0..n {
                    if attempt.errno() != libc::EPERM {
                        not_refused += 1;
                    }
                }
                Ok(not_refused)
            })
        })
        .collect();
    let mut not_refused = 0;
    for w in workers {
        not_refused += w
            .join()
            .map_err(|_| std::io::Error::other("flood thread panicked"))??;
    }
    if not_refused == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{not_refused} of {} attempts on {} CPUs were not refused with EPERM",
            n * cpus.len() as u64,
            cpus.len()
        )))
    }
}

/// The CPUs this process may run on. Not `available_parallelism`: that reads cgroup files, opens
/// a kill-mode agent would die of before the flood starts.
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(std::io::Error::other)?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}
