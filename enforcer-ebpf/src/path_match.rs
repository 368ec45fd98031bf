//! Path evaluation, exactly as docs/kernel-maps.md specifies: the main LPM lookup, one lookup
//! per wildcard depth, then basename and suffix lookups; first deny wins, then first allow.
//!
//! The path is in `s.event.target` (from `bpf_d_path`), `len` bytes including its NUL.

use aya_ebpf::maps::lpm_trie::Key;
use enforcer_common::*;

use crate::{
    maps::{NAME_RULES, PATH_RULES},
    scratch::Scratch,
};

const MASK: usize = PATH_BUF_BYTES - 1;

/// What the candidates said, per access kind: the first deny and the first allow seen.
#[derive(Clone, Copy, Default)]
pub struct Acc {
    pub deny_seen: u32,
    pub allow_seen: u32,
    pub deny_rule: [u32; ACCESS_KINDS],
    pub allow_rule: [u32; ACCESS_KINDS],
}

impl Acc {
    #[inline(always)]
    pub fn add(&mut self, v: &PathRule) {
        for k in 0..ACCESS_KINDS {
            let bit = 1u32 << k;
            if v.deny & bit != 0 && self.deny_seen & bit == 0 {
                self.deny_seen |= bit;
                self.deny_rule[k] = v.deny_rule[k];
            }
            if v.allow & bit != 0 && self.allow_seen & bit == 0 {
                self.allow_seen |= bit;
                self.allow_rule[k] = v.allow_rule[k];
            }
        }
    }

    /// Verdict for the requested `ACCESS_*` bits, checked in kind order: the first kind that is
    /// denied (explicitly, or by default with rule 0) decides; if all are allowed, the allow
    /// rule of the first requested kind is reported.
    #[inline(always)]
    pub fn decide(&self, access: u32) -> (bool, u32) {
        let mut first_allow = 0u32;
        let mut have_allow = false;
        for k in 0..ACCESS_KINDS {
            let bit = 1u32 << k;
            if access & bit == 0 {
                continue;
            }
            if self.deny_seen & bit != 0 {
                return (false, self.deny_rule[k]);
            }
            if self.allow_seen & bit == 0 {
                return (false, RULE_DEFAULT_DENY);
            }
            if !have_allow {
                have_allow = true;
                first_allow = self.allow_rule[k];
            }
        }
        (have_allow, first_allow)
    }
}

#[inline(always)]
fn byte(s: &Scratch, i: usize) -> u8 {
    s.event.target[i & MASK]
}

/// Evaluate the path in `s.event.target` (`len` bytes incl. NUL, 1..=PATH_BUF_BYTES).
#[inline(always)]
pub fn evaluate(s: &mut Scratch, ruleset: u32, cfg: &AgentConfig, len: usize) -> Acc {
    let mut acc = Acc::default();
    lookup_main(s, ruleset, len, &mut acc);
    if cfg.wildcard_depths != 0 {
        lookup_wildcards(s, ruleset, len, cfg.wildcard_depths, &mut acc);
    }
    lookup_names(s, ruleset, len, &mut acc);
    acc
}

/// Also used by exec matching with the matcher ruleset.
#[inline(always)]
pub fn set_main_key(s: &mut Scratch, ruleset: u32, len: usize) -> *const Key<PathData> {
    let klen = if len > PATH_KEY_BYTES { PATH_KEY_BYTES } else { len };
    s.event.header.target_len = (32 + 8 * klen) as u32;
    s.event.header._pad = u32::from_ne_bytes(ruleset.to_be_bytes());
    &s.event.header.target_len as *const u32 as *const Key<PathData>
}

#[inline(always)]
fn lookup_main(s: &mut Scratch, ruleset: u32, len: usize, acc: &mut Acc) {
    let key = set_main_key(s, ruleset, len);
    if let Some(v) = PATH_RULES.get(unsafe { &*key }) {
        acc.add(v);
    }
}

#[inline(always)]
fn lookup_wildcards(s: &mut Scratch, ruleset: u32, len: usize, depths: u32, acc: &mut Acc) {
    // Deepest wildcard depth decides how many '/' we need to know about.
    let mut need = 0u32;
    for d in 1..=MAX_WILDCARD_DEPTH {
        if depths & (1 << (d - 1)) != 0 {
            need = d + 1;
        }
    }
    let mut n = 0u32;
    for i in 0..PATH_BUF_BYTES {
        if i + 1 >= len || n >= need || n as usize >= s.slashes.len() {
            break;
        }
        if byte(s, i) == b'/' {
            s.slashes[n as usize] = i as u16;
            n += 1;
        }
    }
    let mut done = 0u32;
    for d in 1..=MAX_WILDCARD_DEPTH {
        if depths & (1 << (d - 1)) == 0 || n < d || done >= MAX_WILDCARD_DEPTHS {
            continue;
        }
        done += 1;
        let start = s.slashes[(d - 1) as usize & 15] as usize + 1;
        let end = if n > d { s.slashes[d as usize & 15] as usize } else { len - 1 };
        if end <= start || end >= len {
            continue;
        }
        // P' = P[..start] + "*" + P[end..], NUL included.
        let vlen = start + 1 + (len - end);
        for j in 0..PATH_KEY_BYTES {
            if j >= vlen {
                break;
            }
            let c = if j < start {
                byte(s, j)
            } else if j == start {
                b'*'
            } else {
                byte(s, end + (j - start - 1))
            };
            s.variant.path[j] = c;
        }
        let klen = if vlen > PATH_KEY_BYTES { PATH_KEY_BYTES } else { vlen };
        s.variant.prefix_len = (32 + 8 * klen) as u32;
        s.variant.ruleset_be = ruleset.to_be_bytes();
        let key = &s.variant as *const _ as *const Key<PathData>;
        if let Some(v) = PATH_RULES.get(unsafe { &*key }) {
            acc.add(v);
        }
    }
}

#[inline(always)]
fn name_lookup(s: &mut Scratch, ruleset: u32, kind: u32, from: usize, to: usize, acc: &mut Acc) {
    let n = to - from;
    if n == 0 || n > NAME_KEY_BYTES {
        return;
    }
    s.name.ruleset = ruleset;
    s.name.kind = kind;
    for j in 0..NAME_KEY_BYTES {
        s.name.name[j] = if j < n { byte(s, from + j) } else { 0 };
    }
    if let Some(v) = unsafe { NAME_RULES.get(&s.name) } {
        acc.add(v);
    }
}

#[inline(always)]
fn lookup_names(s: &mut Scratch, ruleset: u32, len: usize, acc: &mut Acc) {
    if len < 3 {
        return; // "/" has no basename
    }
    let last = len - 1; // index of the NUL
    // Basename start: after the last '/', searched backwards at most NAME_MAX + 1 bytes.
    let mut bstart = 0usize;
    // Up to MAX_SUFFIX_TRIES dot positions, rightmost first.
    let mut dots = [0usize; MAX_SUFFIX_TRIES as usize];
    let mut ndots = 0usize;
    for k in 1..=256usize {
        if k > last {
            break;
        }
        let i = last - k;
        let c = byte(s, i);
        if c == b'/' {
            bstart = i + 1;
            break;
        }
        if c == b'.' && ndots < dots.len() {
            dots[ndots] = i;
            ndots += 1;
        }
    }
    if bstart == 0 || bstart >= last {
        return;
    }
    name_lookup(s, ruleset, NAME_EXACT, bstart, last, acc);
    // Left to right among the (at most four) rightmost dots: longest suffix first.
    for t in 0..MAX_SUFFIX_TRIES as usize {
        if t >= ndots {
            break;
        }
        let i = dots[(ndots - 1 - t) & 3];
        name_lookup(s, ruleset, NAME_SUFFIX, i, last, acc);
    }
}
