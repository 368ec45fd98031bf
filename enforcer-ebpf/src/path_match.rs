//! Path evaluation, exactly as docs/kernel-maps.md specifies: the main LPM lookup, one lookup
//! per wildcard depth, then basename and suffix lookups; first deny wins, then first allow.
//!
//! The path is in `s.event.target` (from `bpf_d_path`), `len` bytes including its NUL.

use aya_ebpf::maps::lpm_trie::Key;
use enforcer_common::*;

use crate::{
    maps::{CONDS, NAME_RULES, PATH_RULES},
    scratch::Scratch,
};

const MASK: usize = PATH_BUF_BYTES - 1;

/// What the candidates said, per access kind: the first deny and the first allow seen. Lives
/// in the per-CPU scratch and is only touched through volatile accesses: held in registers, every
/// combination of seen-bits would be a separate verifier state across ten candidates.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Acc {
    /// Non-zero: a wildcard component could not be delimited within the key window (fail closed).
    pub undecidable: u32,
    pub deny_seen: u32,
    pub allow_seen: u32,
    pub deny_rule: [u32; ACCESS_KINDS],
    pub allow_rule: [u32; ACCESS_KINDS],
}

#[inline(always)]
fn acc_reset(s: &mut Scratch) {
    vset!(s.acc.undecidable, 0);
    vset!(s.acc.deny_seen, 0);
    vset!(s.acc.allow_seen, 0);
}

#[inline(always)]
fn acc_add(s: &mut Scratch, v: &PathRule) {
    for k in 0..ACCESS_KINDS {
        let bit = 1u32 << k;
        let seen = vget!(s.acc.deny_seen);
        if v.deny & bit != 0 && seen & bit == 0 {
            vset!(s.acc.deny_seen, seen | bit);
            vset!(s.acc.deny_rule[k], v.deny_rule[k]);
        }
        let seen = vget!(s.acc.allow_seen);
        if v.allow & bit != 0 && seen & bit == 0 {
            let rule = open_allow(s, v, k);
            // A closed conditional allow is absent: a later candidate or the default decides.
            if rule != 0 {
                vset!(s.acc.allow_seen, seen | bit);
                vset!(s.acc.allow_rule[k], rule);
            }
        }
    }
}

/// The candidate's allow of kind `k` that applies now: `allow_rule[k]` unless its condition is
/// closed, then `next_rule[k]` unless that one's is; 0 = none (docs/kernel-maps.md). The
/// conditions were judged once for the decision ([`refresh_conds`]): here only bits are read,
/// no helper call (a lookup per candidate and kind grew the chain member's stack frame past
/// the 512-byte limit of the call chain, and the verifier's work with it).
#[inline(always)]
fn open_allow(s: &Scratch, v: &PathRule, k: usize) -> u32 {
    if cond_is_open(s, v.allow_cond[k]) {
        v.allow_rule[k]
    } else if cond_is_open(s, v.next_cond[k]) {
        v.next_rule[k] // 0 when there is none
    } else {
        0
    }
}

#[inline(always)]
fn cond_is_open(s: &Scratch, cond: u32) -> bool {
    cond == 0 || vget!(s.conds_open[((cond >> 5) & 7) as usize]) & (1u32 << (cond & 31)) != 0
}

/// Judge every condition of the parked slot once, before the chain's members look their rules
/// up: `CONDS[slot * MAX_CONDS]` (condition 0, never a window) holds their count in `start_ns`;
/// a condition is open when its window contains the boot clock now. A missing entry stays
/// closed (fail closed). One `bpf_loop` iteration per condition (none without conditions).
#[inline(always)]
pub fn refresh_conds(s: &mut Scratch) {
    for w in 0..8 {
        vset!(s.conds_open[w], 0);
    }
    vset!(s.ncond, 0);
    vset!(s.now_ns, unsafe {
        aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns()
    });
    let ran = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            MAX_CONDS,
            cond_step as *const () as *mut _,
            core::ptr::null_mut(),
            0,
        )
    };
    if ran < 0 {
        // Conditions left closed would only drop allows, but a loop that did not run is a
        // failure like any other: undecidable (see decide::fail).
        crate::decide::fail(s, FAIL_LOOP);
    }
}

/// `bpf_loop` callback of [`refresh_conds`]: step 0 reads the count, step `c` judges condition
/// `c`. 1 ends the loop.
extern "C" fn cond_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::scratch::get() else {
        return 1;
    };
    let slot = vget!(s.cur.slot) & 1;
    let c = (i as u32) & (MAX_CONDS - 1);
    if c == 0 {
        let n = CONDS.get(slot * MAX_CONDS).map_or(0, |w| w.start_ns);
        vset!(
            s.ncond,
            if n >= MAX_CONDS as u64 {
                MAX_CONDS - 1
            } else {
                n as u32
            }
        );
        return if n == 0 { 1 } else { 0 };
    }
    if c > vget!(s.ncond) {
        return 1;
    }
    if let Some(w) = CONDS.get(slot * MAX_CONDS + c) {
        if w.contains(vget!(s.now_ns)) {
            let word = ((c >> 5) & 7) as usize;
            vset!(
                s.conds_open[word],
                vget!(s.conds_open[word]) | (1u32 << (c & 31))
            );
        }
    }
    0
}

/// Verdict for the requested `ACCESS_*` bits, checked in kind order: the first kind that is
/// denied (explicitly, or by default with rule 0) decides; if all are allowed, the allow rule of
/// the first requested kind is reported.
#[inline(always)]
pub fn decide(s: &Scratch, access: u32) -> (bool, u32) {
    if vget!(s.acc.undecidable) != 0 {
        return (false, RULE_DEFAULT_DENY);
    }
    let deny_seen = vget!(s.acc.deny_seen);
    let allow_seen = vget!(s.acc.allow_seen);
    let mut first_allow = 0u32;
    let mut have_allow = false;
    for k in 0..ACCESS_KINDS {
        let bit = 1u32 << k;
        if access & bit == 0 {
            continue;
        }
        if deny_seen & bit != 0 {
            return (false, vget!(s.acc.deny_rule[k]));
        }
        if allow_seen & bit == 0 {
            return (false, RULE_DEFAULT_DENY);
        }
        if !have_allow {
            have_allow = true;
            first_allow = vget!(s.acc.allow_rule[k]);
        }
    }
    (have_allow, first_allow)
}

pub fn undecidable(s: &Scratch) -> bool {
    vget!(s.acc.undecidable) != 0
}

/// What does not depend on the ruleset, once per path: the first `need` slashes (wildcard
/// components), the basename and its dots. A chain scans once with its members' largest `need`.
#[inline(always)]
pub fn scan(s: &mut Scratch, need: u32, len: usize) {
    scan_slashes(s, need, len);
    scan_tail(s, len);
}

/// Every lookup of one ruleset into `s.acc` (then [`decide`]), from the results of [`scan`] (which must have been run with a
/// `need` at least this ruleset's). No `bpf_loop` in here: a chain runs it once per member from
/// a `bpf_loop` callback, and nested callbacks cost the 6.1 verifier dearly.
#[inline(always)]
pub fn lookups(s: &mut Scratch, ruleset: u32, list: [u8; 4], len: usize) {
    acc_reset(s);
    // A scan that failed (decide::fail) leaves every member undecidable.
    if vget!(s.failed) != 0 {
        vset!(s.acc.undecidable, 1);
    }
    lookup_main(s, ruleset, len);
    if !lookup_wildcards(s, ruleset, list) {
        vset!(s.acc.undecidable, 1);
    }
    lookup_names(s, ruleset);
}

/// Also used by exec matching with the matcher ruleset.
#[inline(always)]
pub fn set_main_key(s: &mut Scratch, ruleset: u32, len: usize) -> *const Key<PathData> {
    let klen = if len > PATH_KEY_BYTES {
        PATH_KEY_BYTES
    } else {
        len
    };
    s.event.header.target_len = (32 + 8 * klen) as u32;
    s.event.header._pad = u32::from_ne_bytes(ruleset.to_be_bytes());
    &s.event.header.target_len as *const u32 as *const Key<PathData>
}

#[inline(always)]
fn lookup_main(s: &mut Scratch, ruleset: u32, len: usize) {
    let key = set_main_key(s, ruleset, len);
    if let Some(v) = PATH_RULES.get(unsafe { &*key }) {
        acc_add(s, v);
    }
}

/// Copy `n` (<= `max`) bytes of the path from `from` into `dst`. A bounded helper copy instead
/// of a byte loop keeps the verifier's work small. Offset and size pass through memory, so LLVM
/// cannot re-derive them from the path length without the masks the verifier needs.
#[inline(always)]
fn copy_from_path(s: &mut Scratch, from: usize, dst: *mut u8, n: usize, max: usize) -> bool {
    vset!(s.offset, n as u32);
    let n = vget!(s.offset) as usize & 0x1ff;
    if n == 0 {
        return true;
    }
    if n > max {
        return false;
    }
    vset!(s.offset, from as u32);
    let from = vget!(s.offset) as usize & MASK;
    let src = unsafe { s.event.target.as_ptr().add(from) };
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            dst as *mut _,
            n as u32,
            src as *const _,
        ) == 0
    }
}

/// Locate the first `need` slashes of the path (0: no wildcard rules, nothing to do).
#[inline(always)]
fn scan_slashes(s: &mut Scratch, need: u32, len: usize) {
    // Counters live in scratch memory (volatile): as registers they would be tracked per value,
    // per iteration. The scan stops at the path's NUL rather than comparing against its length,
    // which would split the length's range in the verifier on every iteration.
    vset!(s.need, need);
    vset!(s.nslash, 0);
    vset!(s.hit_nul, 0);
    vset!(s.nulpos, (len - 1) as u32);
    if need == 0 {
        return;
    }
    // One byte per bpf_loop iteration: the verifier checks the step once, not 252 times.
    let ran = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            PATH_KEY_BYTES as u32,
            slash_step as *const () as *mut _,
            core::ptr::null_mut(),
            0,
        )
    };
    if ran < 0 {
        crate::decide::fail(s, FAIL_LOOP);
    }
}

/// One lookup per wildcard depth in `list`. Returns false when a wildcard component cannot be
/// delimited inside the key window (a component straddling byte 252): the caller fails closed.
#[inline(always)]
fn lookup_wildcards(s: &mut Scratch, ruleset: u32, list: [u8; 4]) -> bool {
    for d in list {
        let d = d as u32;
        if d == 0 {
            break;
        }
        if !wildcard_variant(s, ruleset, d) {
            return false;
        }
    }
    true
}

/// `bpf_loop` callback of the wildcard scan: byte `i` of the path. 1 ends the scan.
extern "C" fn slash_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::scratch::get() else {
        return 1;
    };
    let i = i as usize;
    if i >= PATH_KEY_BYTES {
        return 1;
    }
    let c = s.event.target[i];
    if c == 0 {
        vset!(s.hit_nul, 1);
        return 1;
    }
    let n = vget!(s.nslash);
    if n >= vget!(s.need) || n >= 18 {
        return 1;
    }
    if c == b'/' {
        vset!(s.slashes[(n % 20) as usize], i as u16);
        vset!(s.nslash, n + 1);
    }
    0
}

/// Look up P with component `d` replaced by `*`. Everything comes from scratch memory so each
/// call starts from the same verifier state.
#[inline(always)]
fn wildcard_variant(s: &mut Scratch, ruleset: u32, d: u32) -> bool {
    let n = vget!(s.nslash);
    let whole = vget!(s.hit_nul) != 0 || n >= vget!(s.need);
    if n < d {
        // Fewer than d components: fine if the whole path was seen, undecidable otherwise.
        return whole;
    }
    let start = vget!(s.slashes[((d - 1) & 15) as usize]) as usize + 1;
    let nul = vget!(s.nulpos) as usize & MASK;
    let end = if n > d {
        vget!(s.slashes[(d & 15) as usize]) as usize
    } else if vget!(s.hit_nul) != 0 {
        nul
    } else {
        return false; // component d runs past the window
    };
    if start >= PATH_KEY_BYTES || end <= start || end > nul {
        return true;
    }
    // P' = P[..start] + "*" + P[end..] (NUL included), cut to the key window.
    let pre = start & 0xff;
    let dst = s.variant.path.as_mut_ptr();
    if !copy_from_path(s, 0, dst, pre, PATH_KEY_BYTES) {
        // The variant cannot be built: its rule would be skipped. Undecidable instead.
        crate::decide::fail(s, FAIL_PATH_COPY);
        return false;
    }
    s.variant.path[pre] = b'*';
    let rest = nul + 1 - end;
    let room = PATH_KEY_BYTES - 1 - pre;
    let take = if rest < room { rest } else { room };
    let dst = unsafe { s.variant.path.as_mut_ptr().add(pre + 1) };
    if !copy_from_path(s, end, dst, take & 0xff, PATH_KEY_BYTES) {
        crate::decide::fail(s, FAIL_PATH_COPY);
        return false;
    }
    let vlen = pre + 1 + take;
    s.variant.prefix_len = (32 + 8 * vlen) as u32;
    s.variant.ruleset_be = ruleset.to_be_bytes();
    let key = &s.variant as *const _ as *const Key<PathData>;
    if let Some(v) = PATH_RULES.get(unsafe { &*key }) {
        acc_add(s, v);
    }
    true
}

const TAIL: usize = NAME_KEY_BYTES + 1;

/// Look up `tail[rel..TAIL]` (a basename or suffix) in NAME_RULES.
#[inline(always)]
fn name_lookup(s: &mut Scratch, ruleset: u32, kind: u32, rel: usize) {
    if rel >= TAIL {
        return;
    }
    let n = TAIL - rel;
    if n > NAME_KEY_BYTES {
        return;
    }
    s.name.ruleset = ruleset;
    s.name.kind = kind;
    // Word stores, volatile so LLVM does not turn them back into a memset byte loop.
    let words = s.name.name.as_mut_ptr() as *mut u32;
    for i in 0..NAME_KEY_BYTES / 4 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    let src = unsafe { s.tail.as_ptr().add(rel & 63) };
    let dst = s.name.name.as_mut_ptr();
    // Through memory, so LLVM cannot re-derive the size as `61 - rel` without the mask.
    vset!(s.offset, n as u32);
    let n = vget!(s.offset) as usize & 63;
    if n == 0 || n > NAME_KEY_BYTES {
        return;
    }
    if unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            dst as *mut _,
            n as u32,
            src as *const _,
        )
    } != 0
    {
        // The name's rule would be skipped: undecidable instead.
        crate::decide::fail(s, FAIL_NAME_READ);
        vset!(s.acc.undecidable, 1);
        return;
    }
    if let Some(v) = unsafe { NAME_RULES.get(&s.name) } {
        acc_add(s, v);
    }
}

/// `bpf_loop` callback of the basename scan: step `k` looks at `tail[TAIL - 1 - k]`. 1 ends it.
extern "C" fn tail_step(k: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::scratch::get() else {
        return 1;
    };
    let k = k as usize;
    if k >= TAIL {
        return 1;
    }
    let j = TAIL - 1 - k;
    let c = s.tail[j & 63];
    if c == b'/' {
        vset!(s.bstart, (j + 1) as u32);
        return 1;
    }
    if c == 0 {
        return 1; // before the start of a short path (cannot happen: paths start with '/')
    }
    let nd = vget!(s.ndots);
    if c == b'.' && nd < 4 {
        vset!(s.dots[(nd & 3) as usize], j as u32);
        vset!(s.ndots, nd + 1);
    }
    0
}

/// Right-align the last NAME_KEY_BYTES + 1 bytes of the path in `s.tail` and find the basename
/// start and the (at most four) rightmost dots. Names and suffixes longer than NAME_KEY_BYTES
/// never match, so only those bytes matter: the '/' before a short basename, and the dots.
#[inline(always)]
fn scan_tail(s: &mut Scratch, len: usize) {
    vset!(s.bstart, 0);
    vset!(s.ndots, 0);
    if len < 3 {
        return; // "/" has no basename
    }
    let last = len - 1; // index of the NUL
    let take = if last < TAIL { last } else { TAIL };
    // Right-align the tail: tail[TAIL - 1] is the byte before the NUL.
    let words = s.tail.as_mut_ptr() as *mut u32;
    for i in 0..64 / 4 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    vset!(s.offset, (TAIL - take) as u32);
    let dst = unsafe { s.tail.as_mut_ptr().add(vget!(s.offset) as usize & 63) };
    if !copy_from_path(s, last - take, dst, take & 63, TAIL) {
        // No basename, no suffix: their rules would be skipped. Undecidable instead.
        crate::decide::fail(s, FAIL_PATH_COPY);
        return;
    }
    // Right to left, one byte per bpf_loop iteration (verified once).
    let ran = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            TAIL as u32,
            tail_step as *const () as *mut _,
            core::ptr::null_mut(),
            0,
        )
    };
    if ran < 0 {
        crate::decide::fail(s, FAIL_LOOP);
    }
}

/// Basename and suffix rules, from what [`scan_tail`] found.
#[inline(always)]
fn lookup_names(s: &mut Scratch, ruleset: u32) {
    let bstart = vget!(s.bstart) as usize;
    if bstart != 0 {
        name_lookup(s, ruleset, NAME_EXACT, bstart & 63);
    }
    // Left to right among the (at most four) rightmost dots: longest suffix first.
    let ndots = vget!(s.ndots) as usize & 7;
    for t in 0..MAX_SUFFIX_TRIES as usize {
        if t >= ndots {
            break;
        }
        let rel = vget!(s.dots[(ndots - 1 - t) & 3]) as usize;
        name_lookup(s, ruleset, NAME_SUFFIX, rel & 63);
    }
}
