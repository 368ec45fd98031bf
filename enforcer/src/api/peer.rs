//! Who is on the other end of an API connection, as the kernel recorded it when the peer called
//! `connect()`: its credentials (`SO_PEERCRED`), its supplementary groups (`SO_PEERGROUPS`) and a
//! binding to the process itself, so that a pid reused by another process after the peer exited
//! is never mistaken for the peer. Nothing here comes from what the request says.

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Arc,
};

/// `SO_PEERGROUPS` (Linux 4.13) and `SO_PEERPIDFD` (Linux 6.5) on x86-64 and the other
/// architectures with the generic socket option numbers.
const SO_PEERGROUPS: libc::c_int = 59;
const SO_PEERPIDFD: libc::c_int = 77;
/// More supplementary groups than this (the kernel allows 65536) are refused, not truncated.
const MAX_PEER_GROUPS: usize = 65536;

/// Ties a peer's pid to the process that connected.
#[derive(Clone, Debug)]
pub enum Binding {
    /// A pidfd of the connecting process (`SO_PEERPIDFD`): it never names another process.
    Pidfd(Arc<OwnedFd>),
    /// The process's start time (field 22 of /proc/PID/stat, clock ticks since boot), read at
    /// accept: a later process with the same pid has a later start time. For kernels before 6.5.
    StartTime(u64),
}

/// The caller as the kernel saw it at `connect()`.
#[derive(Clone, Debug)]
pub struct Peer {
    /// `None` if the peer is in a pid namespace the daemon cannot see into.
    pub pid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups at `connect()` (`SO_PEERGROUPS`).
    pub groups: Vec<u32>,
    /// `None` only when the pid is not visible (or in unit tests, which run no processes).
    pub binding: Option<Binding>,
}

impl Peer {
    /// A peer with credentials only (unit tests; they run with `inspect_procs` off).
    pub fn unbound(pid: Option<u32>, uid: u32, gid: u32) -> Peer {
        Peer {
            pid,
            uid,
            gid,
            groups: Vec::new(),
            binding: None,
        }
    }

    /// Read the peer's credentials and bind its pid. An error means the connection must be
    /// dropped: a peer the daemon cannot identify gets nothing.
    pub fn of_socket(fd: RawFd) -> Result<Peer, String> {
        let cred = peer_cred(fd)?;
        // pid 0: the peer's pid has no number in the daemon's pid namespace.
        let pid = u32::try_from(cred.pid).ok().filter(|&p| p != 0);
        let groups = peer_groups(fd)?;
        let binding = match pid {
            None => None,
            Some(pid) => Some(match peer_pidfd(fd)? {
                Some(pidfd) => Binding::Pidfd(Arc::new(pidfd)),
                // Before 6.5 only. The start time is read now, at accept: a peer that exited
                // between its connect() and this accept, its pid already reused, would bind
                // the stranger (docs/daemon.md says so).
                None => Binding::StartTime(start_time(pid).map_err(|e| {
                    format!("pid {pid} (the peer) cannot be bound, it may have exited: {e}")
                })?),
            }),
        };
        Ok(Peer {
            pid,
            uid: cred.uid,
            gid: cred.gid,
            groups,
            binding,
        })
    }

    /// Whether the peer's gid or one of its supplementary groups is `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Ok if the peer's pid still names the process that connected (call it after reading
    /// anything keyed by that pid: then what was read belonged to the peer).
    pub fn still_connected_process(&self) -> Result<(), String> {
        let Some(pid) = self.pid else {
            return Err(
                "the caller's pid is not visible to the daemon (other pid namespace)".into(),
            );
        };
        match &self.binding {
            None => Err(format!("pid {pid} (the caller) is not bound to a process")),
            Some(Binding::Pidfd(fd)) => {
                // Signal 0 checks existence only; a zombie still holds its pid, so success
                // means the pid has not been reused.
                // SAFETY: a plain syscall on a descriptor this process owns.
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        0,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                let error = std::io::Error::last_os_error();
                // EPERM: the process exists but the daemon may not signal it (another uid, and
                // the running daemon has dropped CAP_KILL): the pidfd names that very process,
                // so it is still the caller. Only ESRCH says it has exited.
                if ret == 0 || error.raw_os_error() == Some(libc::EPERM) {
                    Ok(())
                } else {
                    Err(format!("pid {pid} (the caller) has exited: {error}"))
                }
            }
            Some(Binding::StartTime(started)) => match start_time(pid) {
                Ok(now) if now == *started => Ok(()),
                Ok(now) => Err(format!(
                    "pid {pid} is not the caller any more: the caller started at tick {started}, pid {pid} now is a process started at tick {now} (pid reused)"
                )),
                Err(e) => Err(format!("pid {pid} (the caller) has exited: {e}")),
            },
        }
    }

    /// How the pid is bound, for messages and `status`.
    pub fn binding_name(&self) -> &'static str {
        match self.binding {
            Some(Binding::Pidfd(_)) => "pidfd",
            Some(Binding::StartTime(_)) => "start-time",
            None => "none",
        }
    }
}

fn getsockopt_into(fd: RawFd, option: libc::c_int, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `buf` is valid for `len` bytes and the kernel writes at most that many.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(len as usize)
}

fn peer_cred(fd: RawFd) -> Result<libc::ucred, String> {
    let mut buf = [0u8; size_of::<libc::ucred>()];
    let n = getsockopt_into(fd, libc::SO_PEERCRED, &mut buf)
        .map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if n != buf.len() {
        return Err(format!("SO_PEERCRED returned {n} bytes"));
    }
    // SAFETY: the buffer holds a complete `ucred` written by the kernel (plain integers).
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<libc::ucred>()) })
}

/// The supplementary groups recorded at `connect()`: the kernel's copy, so neither a later
/// `setgroups` nor a pid reused since can change what the daemon sees.
fn peer_groups(fd: RawFd) -> Result<Vec<u32>, String> {
    let mut buf = vec![0u8; 256 * 4];
    loop {
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: `buf` is valid for `len` bytes.
        let ret = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if ret == 0 {
            return Ok(buf[..len as usize]
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect());
        }
        let e = std::io::Error::last_os_error();
        // ERANGE: `len` now says how much is needed.
        if e.raw_os_error() == Some(libc::ERANGE) && (len as usize) <= MAX_PEER_GROUPS * 4 {
            buf.resize((len as usize).max(buf.len() * 2), 0);
            continue;
        }
        return Err(format!("SO_PEERGROUPS: {e}"));
    }
}

/// `SO_PEERPIDFD`, or `None` where the kernel does not have it (before 6.5: ENOPROTOOPT).
/// Tried on every connection: the answer is the kernel's, not a cached guess. Any other error
/// (the peer process has exited since its connect(): EINVAL or ESRCH) is an error, never a
/// reason to fall back to the start time of whatever process has the pid now.
fn peer_pidfd(fd: RawFd) -> Result<Option<OwnedFd>, String> {
    let mut buf = [0u8; 4];
    let n = match getsockopt_into(fd, SO_PEERPIDFD, &mut buf) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "SO_PEERPIDFD: {e} (the connecting process has exited)"
            ))
        }
    };
    let pidfd = i32::from_ne_bytes(buf);
    if n != 4 || pidfd < 0 {
        return Err(format!("SO_PEERPIDFD returned {n} bytes, fd {pidfd}"));
    }
    // SAFETY: the kernel just gave this process a new descriptor; nobody else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot. The comm
/// field (2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn start_time(pid: u32) -> Result<u64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_start_time(&text).ok_or_else(|| format!("/proc/{pid}/stat: no start time in {text:?}"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts with field 3 (state); field 22 is the 20th from there.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The real and effective uid of process `pid` now (/proc/PID/status `Uid:`).
pub fn process_uids(pid: u32) -> Result<(u32, u32), String> {
    let file = File::open(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    use std::io::BufRead as _;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        if let Some(rest) = line.strip_prefix("Uid:") {
            let mut ids = rest.split_whitespace().map(str::parse::<u32>);
            if let (Some(Ok(real)), Some(Ok(effective))) = (ids.next(), ids.next()) {
                return Ok((real, effective));
            }
        }
    }
    Err(format!("/proc/{pid}/status: no Uid line"))
}

/// The thread ids of process `pid` (/proc/PID/task), its own pid first.
pub fn threads_of(pid: u32) -> Result<Vec<u32>, String> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?;
    let mut tids = vec![pid];
    for entry in entries {
        let entry = entry.map_err(|e| format!("/proc/{pid}/task: {e}"))?;
        if let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            if tid != pid {
                tids.push(tid);
            }
        }
    }
    Ok(tids)
}

/// The uid of the process serving the socket `fd` is connected to (its `SO_PEERCRED`: the
/// credentials it had when it called `listen()`).
pub fn server_uid(fd: RawFd) -> Result<u32, String> {
    Ok(peer_cred(fd)?.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_counts_fields_after_the_comm() {
        let stat =
            "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("12 (x) S 1"), None);
        let own = start_time(std::process::id()).expect("own start time");
        assert!(own > 0);
    }

    #[test]
    fn a_socket_pair_peer_is_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let peer = Peer::of_socket(a.as_raw_fd()).expect("peer");
        assert_eq!(peer.pid, Some(std::process::id()));
        // SAFETY: getuid/getgid cannot fail.
        assert_eq!(peer.uid, unsafe { libc::getuid() });
        assert!(peer.in_group(unsafe { libc::getgid() }));
        assert!(peer.binding.is_some());
        peer.still_connected_process().expect("still this process");
        let stale = Peer {
            binding: Some(Binding::StartTime(1)),
            ..peer
        };
        let err = stale.still_connected_process().unwrap_err();
        assert!(err.contains("pid reused"), "{err}");
    }
}
