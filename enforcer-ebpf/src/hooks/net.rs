//! `socket_connect` and `socket_sendmsg`: IPv4, IPv6 (IPv4-mapped meets IPv4 rules) and unix
//! sockets (paths and abstract names). `sendmsg` with an address covers datagrams sent without
//! connect() and TCP fast open, which never pass through connect.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf},
    macros::lsm,
    programs::LsmContext,
};
use enforcer_common::*;

use crate::{
    decide, identity,
    kmem::read,
    net_match::{v4_mapped, NetTarget},
    offsets::get as off,
    scratch::{self, Scratch},
};

const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
pub const SUN_PATH_BYTES: usize = 108;

#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    match try_socket_connect(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_socket_connect(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 3) {
        return Ok(decide::ret_code(true));
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let sock: *const u8 = ctx.arg(0);
    let addr: *const u8 = ctx.arg(1);
    let addrlen: i32 = ctx.arg(2);
    Ok(sockaddr_op(s, OP_CONNECT, sock, addr, addrlen))
}

#[lsm(hook = "socket_sendmsg")]
pub fn socket_sendmsg(ctx: LsmContext) -> i32 {
    match try_socket_sendmsg(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_socket_sendmsg(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 3) {
        return Ok(decide::ret_code(true));
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let sock: *const u8 = ctx.arg(0);
    let msg: *const u8 = ctx.arg(1);
    // An unreadable msghdr is not "no address": it denies (fail closed), like an unreadable
    // address.
    let Ok(name) =
        (unsafe { bpf_probe_read_kernel(msg.add(off::OFF_MSGHDR_MSG_NAME()) as *const *const u8) })
    else {
        decide::fail(s, FAIL_NET_DEST);
        return Ok(unreadable(s, OP_SENDMSG, NetTarget::default()));
    };
    if name.is_null() {
        return Ok(0); // connected socket: decided at connect()
    }
    let Ok(namelen) =
        (unsafe { bpf_probe_read_kernel(msg.add(off::OFF_MSGHDR_MSG_NAMELEN()) as *const i32) })
    else {
        decide::fail(s, FAIL_NET_DEST);
        return Ok(unreadable(s, OP_SENDMSG, NetTarget::default()));
    };
    Ok(sockaddr_op(s, OP_SENDMSG, sock, name, namelen))
}

#[inline(always)]
fn unreadable(s: &mut Scratch, op: u32, t: NetTarget) -> i32 {
    decide::begin(s, op, ACCESS_CONNECT, 0, EVENT_FLAG_ADDR_UNREADABLE, t);
    decide::finish(s, false, RULE_DEFAULT_DENY)
}

#[inline(always)]
fn sockaddr_op(s: &mut Scratch, op: u32, sock: *const u8, addr: *const u8, addrlen: i32) -> i32 {
    let Some(family) = read::<u16>(addr) else {
        decide::fail(s, FAIL_NET_DEST);
        return unreadable(s, op, NetTarget::default());
    };
    // An unknown socket type would match no port rule (a default deny); an unreadable one is a
    // failure: counted, and the decision denies whatever the rules say (decide::fail).
    let stype = match read::<u16>(unsafe { sock.add(off::OFF_SOCKET_TYPE()) }) {
        Some(t) => t,
        None => {
            decide::fail(s, FAIL_NET_DEST);
            0
        }
    };
    let proto = match stype {
        SOCK_STREAM => PROTO_TCP,
        SOCK_DGRAM if family == AF_INET || family == AF_INET6 => dgram_proto(s, sock),
        SOCK_DGRAM => PROTO_UDP,
        _ => 0,
    };
    let mut t = NetTarget {
        family,
        port: 0,
        proto,
        addr: [0; 16],
    };
    match family {
        AF_INET => {
            if addrlen < 8 {
                return unreadable(s, op, t);
            }
            let (Some(port), Some(a4)) = (
                read::<u16>(unsafe { addr.add(2) }),
                read::<[u8; 4]>(unsafe { addr.add(4) }),
            ) else {
                decide::fail(s, FAIL_NET_DEST);
                return unreadable(s, op, t);
            };
            t.port = icmp_port(proto, port);
            t.addr = v4_mapped(a4);
        }
        AF_INET6 => {
            if addrlen < 24 {
                return unreadable(s, op, t);
            }
            let (Some(port), Some(a6)) = (
                read::<u16>(unsafe { addr.add(2) }),
                read::<[u8; 16]>(unsafe { addr.add(8) }),
            ) else {
                decide::fail(s, FAIL_NET_DEST);
                return unreadable(s, op, t);
            };
            t.port = icmp_port(proto, port);
            t.addr = a6;
        }
        AF_UNIX => return unix_op(s, op, addr, addrlen, t),
        // Other families (netlink, packet, AF_UNSPEC disconnect...) are not egress we police.
        _ => return 0,
    }
    decide::begin(s, op, ACCESS_CONNECT, 0, 0, t);
    decide::net_op(s)
}

/// A datagram socket is UDP unless its protocol is ICMP: a "ping" socket, judged by `/icmp`
/// rules, never by UDP ones. An unreadable protocol is a failure (denied).
#[inline(always)]
fn dgram_proto(s: &mut Scratch, sock: *const u8) -> u32 {
    let protocol = read::<*const u8>(unsafe { sock.add(off::OFF_SOCKET_SK()) })
        .filter(|sk| !sk.is_null())
        .and_then(|sk| read::<u16>(unsafe { sk.add(off::OFF_SOCK_PROTOCOL()) }));
    match protocol.map(u32::from) {
        Some(IPPROTO_ICMP | IPPROTO_ICMPV6) => PROTO_ICMP,
        Some(_) => PROTO_UDP,
        None => {
            decide::fail(s, FAIL_NET_DEST);
            PROTO_UDP
        }
    }
}

/// ICMP has no ports (the address's port field is the echo id): judged as port 0.
#[inline(always)]
fn icmp_port(proto: u32, port_be: u16) -> u16 {
    if proto == PROTO_ICMP {
        0
    } else {
        u16::from_be(port_be)
    }
}

/// Unix socket: the path (or `@abstract` name) goes through the path rules with ACCESS_CONNECT.
#[inline(always)]
fn unix_op(s: &mut Scratch, op: u32, addr: *const u8, addrlen: i32, t: NetTarget) -> i32 {
    let n = addrlen as i64 - 2;
    if n <= 0 || n > SUN_PATH_BYTES as i64 {
        return unreadable(s, op, t);
    }
    // The address always lives in a kernel sockaddr_storage (128 bytes): a fixed read is safe.
    // Read into scratch memory: the 512-byte stack has no room for it.
    if unsafe { bpf_probe_read_kernel_buf(addr.add(2), &mut s.unix_path[..SUN_PATH_BYTES]) }
        .is_err()
    {
        decide::fail(s, FAIL_NET_DEST);
        return unreadable(s, op, t);
    }
    let (len, relative) = unix_target(s, n as usize);
    let t = NetTarget {
        family: AF_UNIX,
        ..t
    };
    let flag = unix_unjudged(s, relative);
    if flag != 0 {
        decide::begin(s, op, ACCESS_CONNECT, 0, flag, t);
        unsafe { core::ptr::write_volatile(&mut s.rec.target_len, len) };
        return decide::finish(s, false, RULE_DEFAULT_DENY);
    }
    decide::path_op_net(s, op, len + 1, t)
}

/// A unix path the kernel resolves only after this hook, so that its text cannot be judged:
/// relative (`EVENT_FLAG_RELATIVE_PATH`), or with an empty, `.` or `..` component
/// (`EVENT_FLAG_PATH_UNRESOLVED`: `/allowed/../denied.sock` must not match `/allowed/**`).
/// Returns the flag to fail closed with, or 0. Needs the target from `unix_target`.
#[inline(always)]
pub fn unix_unjudged(s: &mut Scratch, relative: bool) -> u32 {
    if relative {
        return EVENT_FLAG_RELATIVE_PATH;
    }
    if s.event.target[0] != b'/' {
        return 0; // an abstract name (`@...`): any bytes, not a path
    }
    // The scan reads `s.user_path`; the target (at most 108 bytes) is NUL-terminated in its
    // first 128 bytes.
    let copied = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            s.user_path.as_mut_ptr() as *mut _,
            128,
            s.event.target.as_ptr() as *const _,
        )
    };
    if copied != 0 {
        decide::fail(s, FAIL_PATH_COPY);
        return EVENT_FLAG_PATH_UNRESOLVED;
    }
    if super::observe_syscalls::unnormalized(s, 0) {
        return EVENT_FLAG_PATH_UNRESOLVED;
    }
    0
}

/// `n` bytes of `sun_path` are in `s.unix_path`: write the target (`@name` for an abstract
/// socket) into `s.event.target`. Returns its length (no NUL) and whether it is a relative
/// path (which cannot be decided: fail closed).
#[inline(always)]
pub fn unix_target(s: &mut Scratch, n: usize) -> (usize, bool) {
    let first = s.unix_path[0];
    let abstract_name = first == 0;
    vset!(s.unix_n, n as u32);
    vset!(s.unix_abstract, abstract_name as u32);
    // The length so far, in memory: the copy is a bpf_loop (verified once, not 108 times).
    vset!(s.offset, 0);
    let ran = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            SUN_PATH_BYTES as u32,
            unix_step as *const () as *mut _,
            core::ptr::null_mut(),
            0,
        )
    };
    if ran < 0 {
        // No name copied: the empty target must not be judged (decide::fail denies).
        decide::fail(s, FAIL_LOOP);
    }
    let len = vget!(s.offset) as usize & 127;
    s.event.target[len] = 0;
    (len, !abstract_name && first != b'/')
}

/// `bpf_loop` callback: byte `i` of sun_path into the target. 1 ends the copy.
extern "C" fn unix_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch::get() else { return 1 };
    let i = i as usize;
    if i >= SUN_PATH_BYTES || i >= vget!(s.unix_n) as usize {
        return 1;
    }
    let abstract_name = vget!(s.unix_abstract) != 0;
    let c = s.unix_path[i];
    if !abstract_name && c == 0 {
        return 1;
    }
    s.event.target[i] = if i == 0 && abstract_name { b'@' } else { c };
    vset!(s.offset, (i + 1) as u32);
    0
}
