//! Turning a policy answer into a verdict, an event and a return value, the same way for every
//! hook: audit-mode agents are never blocked, unresolvable inputs fail closed.
//!
//! The acting agent (`s.cur`) and the record being built (`s.rec`) live in scratch memory, read
//! through volatile accesses: hooks reach this code along several paths carrying different
//! constants, and parking them in memory lets the verifier merge those paths into one state.

use enforcer_common::*;

use crate::{
    chain,
    emit::{emit, should_log, Record},
    maps::{count, count_fail},
    net_match::NetTarget,
    scratch::Scratch,
};

pub const EPERM: i32 = 1;

/// The hook's return value. Through `black_box` so LLVM cannot turn `deny ? -1 : 0` into
/// arithmetic (`-(x & 1)`) whose range the verifier cannot see: LSM returns must be provably in
/// [-4095, 0]. The value is 64-bit so the register holds a sign-extended -1, not 0xffffffff.
#[inline(always)]
pub fn ret_code(deny: bool) -> i32 {
    if deny {
        core::hint::black_box(-(EPERM as i64)) as i32
    } else {
        core::hint::black_box(0i64) as i32
    }
}

/// Start a record in `s.rec`.
#[inline(always)]
pub fn begin(s: &mut Scratch, op: u32, access: u32, open_flags: u32, flags: u32, net: NetTarget) {
    vset!(
        s.rec,
        Record {
            op,
            verdict: 0,
            rule: RULE_DEFAULT_DENY,
            flags,
            access,
            open_flags,
            target_len: 0,
            net
        }
    );
}

/// Finish a network decision: the target is in `s.rec.net` (see [`begin`]); every member of
/// the agent's chain judges it.
#[inline(always)]
pub fn net_op(s: &mut Scratch) -> i32 {
    let (allow, rule) = chain::net(s);
    finish(s, allow, rule)
}

/// Something inside the program failed while deciding for the parked agent (a helper, a copy, a
/// `bpf_loop`, an input that could not be read): count it at `point` (`FAILS[FAIL_*]`) and make
/// the decision undecidable: [`conclude`] then denies with `RULE_DEFAULT_DENY` and flags the
/// event `EVENT_FLAG_INTERNAL_FAILURE` (docs/kernel-maps.md, "Failure points"). Only called
/// after the task was found to be an agent: a non-agent is never denied for a failure.
#[inline(always)]
pub fn fail(s: &mut Scratch, point: u32) {
    count_fail(point);
    vset!(s.failed, 1);
}

/// Finish the decision in `s.rec` for a hook that can fail the operation: pick the verdict
/// from the agent's mode, log it, return the hook's value.
#[inline(always)]
pub fn finish(s: &mut Scratch, allow: bool, rule: u32) -> i32 {
    ret_code(conclude(s, allow, rule, true) == VERDICT_DENY)
}

/// Finish the decision for a hook that only observes (tracepoints, after the fact): a deny is
/// a kill for agents with `on_violation = "kill"` (and for processes we could not record),
/// otherwise a logged would-deny. Returns true when the caller must SIGKILL the current task.
#[inline(always)]
pub fn finish_observed(s: &mut Scratch, allow: bool, rule: u32) -> bool {
    conclude(s, allow, rule, false) == VERDICT_KILL
}

#[inline(always)]
fn conclude(s: &mut Scratch, allow: bool, rule: u32, blocks: bool) -> u32 {
    let doomed = vget!(s.cur.doomed) != 0;
    let agent_flags = vget!(s.cur.cfg.flags);
    // An internal failure during this decision: undecidable, which denies (fail closed).
    let failed = vget!(s.failed) != 0;
    let rule = if failed { RULE_DEFAULT_DENY } else { rule };
    if failed {
        vset!(
            s.rec.flags,
            vget!(s.rec.flags) | EVENT_FLAG_INTERNAL_FAILURE
        );
    }
    let deny = !allow || doomed || failed;
    let verdict = if !deny {
        VERDICT_ALLOW
    } else if agent_flags & AGENT_AUDIT != 0 && !doomed {
        VERDICT_AUDIT_DENY
    } else if blocks {
        VERDICT_DENY
    } else if agent_flags & AGENT_KILL != 0 || doomed {
        VERDICT_KILL
    } else {
        VERDICT_AUDIT_DENY
    };
    vset!(s.rec.verdict, verdict);
    vset!(s.rec.rule, rule);
    vset!(s.rec.flags, vget!(s.rec.flags) | vget!(s.cur.flags));
    if deny {
        count(STAT_DENIED);
    }
    let joined = vget!(s.cur.joined);
    if joined != 0 {
        emit(s, OP_JOIN, VERDICT_ALLOW, 0, joined);
    }
    let op = vget!(s.rec.op);
    if should_log(agent_flags, op, verdict) {
        emit(s, op, verdict, rule, vget!(s.rec.access));
    }
    verdict
}

/// Decide an operation on the path `bpf_d_path` wrote into `s.event.target` (`d_path_ret` is its
/// return value: length incl. NUL, or a negative error). The agent is parked in `s.cur`.
#[inline(always)]
pub fn path_op(
    s: &mut Scratch,
    op: u32,
    access: u32,
    open_flags: u32,
    extra_flags: u32,
    d_path_ret: i64,
) -> i32 {
    begin(s, op, access, open_flags, extra_flags, NetTarget::default());
    strip_deleted(s, d_path_ret);
    // Through memory: both outcomes reach the decision as one verifier state.
    let d_path_ret = vget!(s.cut_len);
    ret_code(path_decide(s, d_path_ret, true) == VERDICT_DENY)
}

/// An unlinked file reached through a descriptor (a `/proc/self/fd` reopen, an exec of a
/// deleted binary) has `bpf_d_path`'s ` (deleted)` after its name: cut it (flagged), so the file
/// is judged by the name it had - an exact or `**/*.EXT` deny must not miss it. (The dentry walk
/// of the path hooks and of the fallback names it by its last name already.) Patterns cannot
/// contain the suffix (the compiler refuses them), so the cut never turns a deny into an allow.
/// `len` is bpf_d_path's return (length with the NUL, or < 0); the new one goes to `s.cut_len`.
#[inline(always)]
fn strip_deleted(s: &mut Scratch, len: i64) {
    vset!(s.cut_len, len);
    let n = DELETED_SUFFIX.len();
    if len < (n + 2) as i64 || len > PATH_BUF_BYTES as i64 {
        return;
    }
    // Masked: the verifier must see the bound.
    let start = core::hint::black_box(len as usize - 1 - n) & (PATH_BUF_BYTES - 1);
    let base = s.event.target.as_mut_ptr();
    let mut i = 0;
    while i < n {
        // SAFETY: start + i < PATH_BUF_BYTES + n: inside the target and the slack after it.
        if unsafe { core::ptr::read_volatile(base.add(start + i)) } != DELETED_SUFFIX[i] {
            return;
        }
        i += 1;
    }
    unsafe { core::ptr::write_volatile(base.add(start), 0) };
    vset!(s.rec.flags, vget!(s.rec.flags) | EVENT_FLAG_DELETED);
    vset!(s.cut_len, len - n as i64);
}

/// An operation on an object without a path (pathless.rs): an open of one, or a truncate,
/// chmod or chown of one (through a descriptor, or a `/proc/<pid>/fd` link). Allowed when the
/// process holds its `inode` in another descriptor than `skip_fd`, denied otherwise; no path
/// rule is consulted. The object's name (`len` bytes with the NUL, or <= 0) is in
/// `s.event.target`. Returns the verdict.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn pathless_op(
    s: &mut Scratch,
    op: u32,
    access: u32,
    open_flags: u32,
    inode: u64,
    len: i64,
    skip_fd: u32,
    blocks: bool,
) -> u32 {
    begin(
        s,
        op,
        access,
        open_flags,
        EVENT_FLAG_PATHLESS,
        NetTarget::default(),
    );
    if len > 1 && len as usize <= PATH_BUF_BYTES {
        vset!(s.rec.target_len, len as usize - 1);
    }
    let held = crate::pathless::held(s, inode, skip_fd);
    let rule = if held {
        RULE_HELD_OBJECT
    } else {
        RULE_DEFAULT_DENY
    };
    conclude(s, held, rule, blocks)
}

/// `path_op` for a hook that only observes: true when the caller must SIGKILL the current task.
#[inline(always)]
pub fn path_op_observed(
    s: &mut Scratch,
    op: u32,
    access: u32,
    open_flags: u32,
    extra_flags: u32,
    path_ret: i64,
) -> bool {
    begin(s, op, access, open_flags, extra_flags, NetTarget::default());
    path_decide(s, path_ret, false) == VERDICT_KILL
}

/// A unix socket path already in `s.event.target` (`len` bytes incl. NUL).
#[inline(always)]
pub fn path_op_net(s: &mut Scratch, op: u32, len: usize, net: NetTarget) -> i32 {
    begin(s, op, ACCESS_CONNECT, 0, 0, net);
    ret_code(path_decide(s, len as i64, true) == VERDICT_DENY)
}

/// `path_op_net` for a hook that only observes: true when the caller must SIGKILL.
#[inline(always)]
pub fn path_op_net_observed(s: &mut Scratch, op: u32, len: usize, net: NetTarget) -> bool {
    begin(s, op, ACCESS_CONNECT, 0, 0, net);
    path_decide(s, len as i64, false) == VERDICT_KILL
}

#[inline(always)]
fn path_decide(s: &mut Scratch, d_path_ret: i64, blocks: bool) -> u32 {
    path_decide_as(s, d_path_ret, blocks, false)
}

/// A file operation the kernel already refused (EACCES/EXDEV: outside the agent's Landlock
/// envelope, docs/landlock.md), decided on the path as the caller wrote it. It never happened,
/// so it is never reported as allowed: when that name is allowed (an alias the envelope saw
/// through: a symlink, `/proc/self/root`...), the real target lies outside every hierarchy the
/// policy can allow, which is what `default-deny` means.
#[inline(always)]
pub fn path_op_refused(
    s: &mut Scratch,
    op: u32,
    access: u32,
    open_flags: u32,
    extra_flags: u32,
    path_ret: i64,
) {
    begin(s, op, access, open_flags, extra_flags, NetTarget::default());
    path_decide_as(s, path_ret, true, true);
}

#[inline(always)]
fn path_decide_as(s: &mut Scratch, d_path_ret: i64, blocks: bool, refused: bool) -> u32 {
    if d_path_ret <= 0 || d_path_ret as usize > PATH_BUF_BYTES {
        // Fail closed: a path we cannot see cannot be allowed.
        vset!(s.rec.flags, vget!(s.rec.flags) | EVENT_FLAG_PATH_UNRESOLVED);
        count(STAT_PATH_UNRESOLVED);
        return conclude(s, false, RULE_DEFAULT_DENY, blocks);
    }
    let len = d_path_ret as usize;
    if len > PATH_KEY_BYTES {
        vset!(s.rec.flags, vget!(s.rec.flags) | EVENT_FLAG_PATH_TRUNCATED);
    }
    vset!(s.rec.target_len, len - 1);
    let (allow, rule) = chain::path(s, len);
    if refused {
        let rule = if allow { RULE_DEFAULT_DENY } else { rule };
        return conclude(s, false, rule, blocks);
    }
    conclude(s, allow, rule, blocks)
}
