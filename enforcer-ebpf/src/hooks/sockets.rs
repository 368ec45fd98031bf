//! Sockets beyond connect: which kinds an agent may create (`socket_create`), and where it may
//! accept connections from (`socket_listen`). A raw, packet, vsock or ICMP socket carries data
//! past every connect rule, and a listening socket serves whoever connects in: both are denied
//! unless the agent's `net.sockets` names the kind (`socket_permission` in enforcer-common, one
//! definition for both backends) or `net.listen` allows the bound address.
//!
//! The fallback judges the same calls from the `socket` and `listen` syscall tracepoints
//! ([`fb_sys_enter_net`], `PROC_SOCKET` / `PROC_LISTEN` in `FB_SYSCALLS`) with [`socket_op`] and
//! [`listen_op`]; it cannot refuse, it kills or logs. A program of its own, not a branch of
//! observe_process.rs's: together they passed 6.1's 512-byte stack and 400k-instruction budget.

use aya_ebpf::{
    macros::{lsm, tracepoint},
    programs::{LsmContext, TracePointContext},
};
use enforcer_common::*;

use super::{
    observe,
    observe_syscalls::{arg, kill_if},
};
use crate::{
    chain, decide, identity,
    kmem::read,
    maps::FB_SYSCALLS,
    net_match::{v4_mapped, NetTarget},
    offsets::get as off,
    scratch::{self, Scratch},
};

const SOCK_STREAM: u16 = 1;

/// `socket_create(int family, int type, int protocol, int kern)`: kernel-internal sockets
/// (`kern`) are the kernel's own, not the agent's.
#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    match try_socket_create(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_socket_create(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 4) {
        return Ok(decide::ret_code(true));
    }
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return Ok(0);
    }
    let family: i32 = ctx.arg(0);
    let stype: i32 = ctx.arg(1);
    let protocol: i32 = ctx.arg(2);
    // Every socket a process makes passes here: the kind first (no map lookup), the identity
    // only for the kinds that need a permission.
    let need = socket_permission(family as u16, stype as u32, protocol as u32);
    if need == 0 {
        return Ok(0);
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let allow = socket_op(s, family as u16, stype as u32, protocol as u32, need);
    Ok(decide::finish(s, allow, RULE_DEFAULT_DENY))
}

/// Begin the record of a socket of a kind that needs permission `need` for the parked agent;
/// returns whether it is allowed (every member of its chain names the kind: chain.rs combines
/// the `AGENT_ALLOW_*` bits).
#[inline(always)]
pub fn socket_op(s: &mut Scratch, family: u16, stype: u32, protocol: u32, need: u32) -> bool {
    let allow = vget!(s.cur.cfg.flags) & need != 0;
    let t = NetTarget {
        family,
        port: stype as u16,
        proto: protocol,
        addr: [0; 16],
    };
    decide::begin(s, OP_SOCKET, 0, 0, 0, t);
    allow
}

/// `socket_listen(struct socket *sock, int backlog)`.
#[lsm(hook = "socket_listen")]
pub fn socket_listen(ctx: LsmContext) -> i32 {
    match try_socket_listen(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_socket_listen(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 2) {
        return Ok(decide::ret_code(true));
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let sock: *const u8 = ctx.arg(0);
    match listen_op(s, sock) {
        Some((allow, rule)) => Ok(decide::finish(s, allow, rule)),
        None => Ok(0),
    }
}

/// Judge a listen on `sock` (a `struct socket *`) for the parked agent: the bound address and
/// port of an IPv4/IPv6 stream socket through every chain member's net rules with
/// [`PROTO_LISTEN`]. Leaves the record begun; returns `(allow, rule)` to finish with, or None
/// for a socket listen rules do not judge (unix: its name is a file, or an abstract name, see
/// docs/policy.md; other families were judged when the socket was made). An unreadable socket
/// is a failure: denied.
#[inline(always)]
pub fn listen_op(s: &mut Scratch, sock: *const u8) -> Option<(bool, u32)> {
    let mut t = NetTarget {
        family: 0,
        port: 0,
        proto: PROTO_LISTEN,
        addr: [0; 16],
    };
    let sk: Option<*const u8> = read(unsafe { sock.add(off::OFF_SOCKET_SK()) });
    let stype: Option<u16> = read(unsafe { sock.add(off::OFF_SOCKET_TYPE()) });
    let (Some(sk), Some(stype)) = (sk, stype) else {
        return Some(failed(s, t));
    };
    if sk.is_null() {
        return Some(failed(s, t));
    }
    let Some(family) = read::<u16>(unsafe { sk.add(off::OFF_SOCK_FAMILY()) }) else {
        return Some(failed(s, t));
    };
    t.family = family;
    if (family != AF_INET && family != AF_INET6) || stype != SOCK_STREAM {
        return None;
    }
    let Some(port) = read::<u16>(unsafe { sk.add(off::OFF_SOCK_NUM()) }) else {
        return Some(failed(s, t));
    };
    t.port = port;
    if family == AF_INET {
        let Some(a4) = read::<[u8; 4]>(unsafe { sk.add(off::OFF_SOCK_RCV_SADDR()) }) else {
            return Some(failed(s, t));
        };
        t.addr = v4_mapped(a4);
    } else {
        let Some(a6) = read::<[u8; 16]>(unsafe { sk.add(off::OFF_SOCK_V6_RCV_SADDR()) }) else {
            return Some(failed(s, t));
        };
        t.addr = a6;
    }
    decide::begin(s, OP_LISTEN, ACCESS_CONNECT, 0, 0, t);
    Some(chain::net(s))
}

#[inline(always)]
fn failed(s: &mut Scratch, t: NetTarget) -> (bool, u32) {
    decide::fail(s, FAIL_NET_DEST);
    decide::begin(
        s,
        OP_LISTEN,
        ACCESS_CONNECT,
        0,
        EVENT_FLAG_ADDR_UNREADABLE,
        t,
    );
    (false, RULE_DEFAULT_DENY)
}

/// The fallback: `sys_enter_socket` and `sys_enter_listen`.
#[tracepoint]
pub fn fb_sys_enter_net(ctx: TracePointContext) -> u32 {
    match try_fb_enter_net(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_fb_enter_net(ctx: &TracePointContext) -> Result<u32, u32> {
    let s = scratch::get().ok_or(0u32)?;
    let nr = unsafe { ctx.read_at::<i32>(off::TP_SYS_ENTER_NR()) }.map_err(|_| 0u32)? as u32;
    let Some(shape) = (unsafe { FB_SYSCALLS.get(&nr) }) else {
        return Ok(0);
    };
    // One conclusion for both calls: verified once (two copies passed 6.1's budget).
    let (allow, rule) = match shape.proc_kind {
        PROC_SOCKET => {
            let (family, stype, protocol) =
                (arg(ctx, 0) as u16, arg(ctx, 1) as u32, arg(ctx, 2) as u32);
            // The kind first: a plain TCP/UDP/unix socket decides nothing (and must not record
            // a cgroup member first seen here, whose join event would never be sent).
            let need = socket_permission(family, stype, protocol);
            if need == 0 || !identity::park_current(s) {
                return Ok(0);
            }
            (
                socket_op(s, family, stype, protocol, need),
                RULE_DEFAULT_DENY,
            )
        }
        PROC_LISTEN => {
            // listen(fd, backlog): the socket behind the descriptor. No such descriptor, or not
            // a socket: the call fails in the kernel (ENOTSOCK), nothing to judge.
            let Some(sock) = observe::file_of_fd(arg(ctx, 0) as u32).and_then(socket_of_file)
            else {
                return Ok(0);
            };
            if !identity::park_current(s) {
                return Ok(0);
            }
            match listen_op(s, sock) {
                Some(decision) => decision,
                None => return Ok(0),
            }
        }
        _ => return Ok(0),
    };
    kill_if(decide::finish_observed(s, allow, rule));
    Ok(0)
}

/// The `struct socket *` of an open socket file: its inode is a socket (S_IFSOCK), whose
/// `private_data` is the socket (for any other file it is something else).
#[inline(always)]
fn socket_of_file(file: *const u8) -> Option<*const u8> {
    const S_IFMT: u16 = 0o170000;
    const S_IFSOCK: u16 = 0o140000;
    let inode = crate::pathless::inode_of_file(file) as *const u8;
    if inode.is_null() {
        return None;
    }
    let mode: u16 = read(unsafe { inode.add(off::OFF_INODE_I_MODE()) })?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let sock: *const u8 = read(unsafe { file.add(off::OFF_FILE_PRIVATE_DATA()) })?;
    (!sock.is_null()).then_some(sock)
}
