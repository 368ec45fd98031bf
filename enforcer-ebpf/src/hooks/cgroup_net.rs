//! Network enforcement without BPF LSM: cgroup v2 `connect4/6` and `sendmsg4/6` programs,
//! attached at the cgroup2 root so every process passes through them whatever cgroup it moves to
//! (agents are recognised by `PROCS`, exactly as in the LSM hooks). They return 0 to refuse
//! (the caller gets EPERM) and 1 to let the operation go on. Same rules, same events.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use enforcer_common::*;

use crate::{
    decide, identity,
    net_match::{v4_mapped, NetTarget},
    scratch,
};

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;

#[cgroup_sock_addr(connect4)]
pub fn cg_connect4(ctx: SockAddrContext) -> i32 {
    verdict(try_sock_addr(&ctx, OP_CONNECT, AF_INET))
}

#[cgroup_sock_addr(connect6)]
pub fn cg_connect6(ctx: SockAddrContext) -> i32 {
    verdict(try_sock_addr(&ctx, OP_CONNECT, AF_INET6))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn cg_sendmsg4(ctx: SockAddrContext) -> i32 {
    verdict(try_sock_addr(&ctx, OP_SENDMSG, AF_INET))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn cg_sendmsg6(ctx: SockAddrContext) -> i32 {
    verdict(try_sock_addr(&ctx, OP_SENDMSG, AF_INET6))
}

/// cgroup sock_addr programs must return exactly 0 or 1: through `black_box` so LLVM cannot
/// compute it from the LSM-style code in a way the verifier cannot bound.
#[inline(always)]
fn verdict(r: Result<i32, i32>) -> i32 {
    let denied = match r {
        Ok(v) | Err(v) => v != 0,
    };
    if denied {
        core::hint::black_box(0i64) as i32
    } else {
        core::hint::black_box(1i64) as i32
    }
}

/// Returns the LSM-style code (0 or -EPERM).
#[inline(always)]
fn try_sock_addr(ctx: &SockAddrContext, op: u32, family: u16) -> Result<i32, i32> {
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    // Context fields must be read with direct loads of their exact size.
    let sa = ctx.sock_addr;
    let (stype, protocol, port_be) = unsafe { ((*sa).type_, (*sa).protocol, (*sa).user_port) };
    // A datagram "ping" socket (IPPROTO_ICMP/ICMPV6) is judged by `/icmp` rules, at port 0.
    let icmp = stype == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6);
    let proto = match stype {
        SOCK_STREAM => PROTO_TCP,
        SOCK_DGRAM if icmp => PROTO_ICMP,
        SOCK_DGRAM => PROTO_UDP,
        _ => 0,
    };
    let addr = if family == AF_INET {
        v4_mapped(unsafe { (*sa).user_ip4 }.to_ne_bytes())
    } else {
        let w = unsafe {
            [
                (*sa).user_ip6[0],
                (*sa).user_ip6[1],
                (*sa).user_ip6[2],
                (*sa).user_ip6[3],
            ]
        };
        let mut a = [0u8; 16];
        a[0..4].copy_from_slice(&w[0].to_ne_bytes());
        a[4..8].copy_from_slice(&w[1].to_ne_bytes());
        a[8..12].copy_from_slice(&w[2].to_ne_bytes());
        a[12..16].copy_from_slice(&w[3].to_ne_bytes());
        a
    };
    // user_port holds the port in network byte order in its low 16 bits.
    let t = NetTarget {
        family,
        port: if icmp {
            0
        } else {
            u16::from_be(port_be as u16)
        },
        proto,
        addr,
    };
    decide::begin(s, op, ACCESS_CONNECT, 0, 0, t);
    Ok(decide::net_op(s))
}
