//! Network evaluation: one LPM lookup on the (IPv4-mapped) address, then the prefix's port rules
//! in order: first deny wins, else first allow, else default deny. A conditional rule (an allow
//! with a time window or a grant) counts only while the boot clock is inside its window.

use aya_ebpf::maps::lpm_trie::Key;
use enforcer_common::*;

use crate::{
    maps::{CONDS, NET_RULES},
    scratch::Scratch,
};

/// A network destination as the events carry it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct NetTarget {
    pub family: u16,
    pub port: u16,
    pub proto: u32,
    pub addr: [u8; 16],
}

#[inline(always)]
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

#[inline(always)]
pub fn evaluate(s: &mut Scratch, ruleset: u32, t: &NetTarget) -> (bool, u32) {
    s.net.prefix_len = 32 + 128;
    s.net.data = NetData {
        ruleset_be: ruleset.to_be_bytes(),
        addr: t.addr,
    };
    let key = &s.net as *const _ as *const Key<NetData>;
    let Some(v) = NET_RULES.get(unsafe { &*key }) else {
        return (false, RULE_DEFAULT_DENY);
    };
    let n = v.count as usize;
    let mut allow_rule = 0u32;
    let mut allowed = false;
    for i in 0..NET_RULES_PER_PREFIX {
        if i >= n {
            break;
        }
        let r = &v.rules[i];
        if t.port < r.port_lo || t.port > r.port_hi || r.proto & t.proto == 0 {
            continue;
        }
        if r.cond != 0 && !cond_open(vget!(s.cur.slot), r.cond) {
            continue;
        }
        if r.action == ACTION_DENY {
            return (false, r.rule);
        }
        if r.action == ACTION_ALLOW && !allowed {
            allowed = true;
            allow_rule = r.rule;
        }
    }
    (
        allowed,
        if allowed {
            allow_rule
        } else {
            RULE_DEFAULT_DENY
        },
    )
}

/// Whether condition `cond` of `slot` is open now. A missing entry is closed (fail closed).
#[inline(always)]
fn cond_open(slot: u32, cond: u32) -> bool {
    let Some(w) = CONDS.get((slot & 1) * MAX_CONDS + (cond & (MAX_CONDS - 1))) else {
        return false;
    };
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() };
    w.contains(now)
}
