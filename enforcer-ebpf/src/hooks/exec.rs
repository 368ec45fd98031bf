//! `bprm_check_security`: the file actually being executed (not argv[0]). Also where a process
//! that execs a `match.exe` binary becomes that agent. Scripts: this hook runs once for the script
//! (checked as a read, flagged SCRIPT) and once more for its interpreter (checked as an exec).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_d_path},
    macros::lsm,
    programs::LsmContext,
};
use enforcer_common::*;

use crate::{
    decide,
    identity::{self, Current},
    maps::EXE_MATCH,
    offsets::get as off,
    path_match,
    scratch::{self, Scratch},
};

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    match try_bprm_check_security(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_bprm_check_security(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 1) {
        return Ok(decide::ret_code(true));
    }
    let cfg0 = identity::config();
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    let is_agent = identity::park_current(s);
    if !is_agent && cfg0.flags & CONFIG_HAVE_EXE_MATCH == 0 {
        return Ok(0);
    }
    let bprm: *const u8 = ctx.arg(0);
    // A direct load (not a probe read) keeps `file` a trusted BTF pointer for bpf_d_path.
    let file: *const u8 = unsafe { *(bprm.add(off::OFF_BPRM_FILE()) as *const *const u8) };
    let ret = unsafe {
        bpf_d_path(
            file.add(off::OFF_FILE_F_PATH()) as *mut _,
            s.event.target.as_mut_ptr() as *mut _,
            PATH_BUF_BYTES as u32,
        )
    };
    let mut flags = 0;
    if !is_agent {
        match exe_match(s, &cfg0, ret) {
            Some(c) => identity::park(s, c),
            None => return Ok(0),
        }
    } else if cfg0.flags & CONFIG_HAVE_EXE_MATCH != 0 {
        flags = delegate(s, &cfg0, ret);
    }
    // Unreadable: a script could be judged as a plain exec (decide::fail denies instead).
    let head: [u8; 2] =
        match unsafe { bpf_probe_read_kernel(bprm.add(off::OFF_BPRM_BUF()) as *const [u8; 2]) } {
            Ok(h) => h,
            Err(_) => {
                decide::fail(s, FAIL_EXEC_HEAD);
                [0; 2]
            }
        };
    if head == *b"#!" {
        return Ok(decide::path_op(
            s,
            OP_OPEN,
            ACCESS_READ,
            0,
            EVENT_FLAG_SCRIPT | flags,
            ret,
        ));
    }
    Ok(decide::path_op(s, OP_EXEC, ACCESS_EXEC, 0, flags, ret))
}

/// A non-agent execs a binary some agent's `match.exe` names: it becomes that agent, for good.
#[inline(always)]
pub fn exe_match(s: &mut Scratch, cfg0: &Config, d_path_ret: i64) -> Option<Current> {
    if d_path_ret <= 0 || d_path_ret as usize > PATH_BUF_BYTES {
        return None;
    }
    let key = path_match::set_main_key(s, ruleset(cfg0.active_slot, NO_AGENT), d_path_ret as usize);
    let m = EXE_MATCH.get(unsafe { &*key })?;
    let pid_tgid = bpf_get_current_pid_tgid();
    let state = ProcState {
        session: identity::new_session((pid_tgid >> 32) as u32),
        session_start_ns: unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() },
        chain: [m.agent, 0, 0, 0],
        depth: 1,
        joined_by: JOIN_EXE,
    };
    let mut cur = identity::for_state(pid_tgid as u32, state, cfg0);
    if !identity::record(cur.tid, &state) {
        cur.flags |= EVENT_FLAG_PROC_TABLE_FULL;
    }
    cur.joined = JOIN_EXE;
    Some(cur)
}

/// An agent process execs a binary of agent C's `match.exe`: if its (innermost) agent delegates
/// to C and the chain has room, the process becomes the chain `...>C` with a new session (its
/// rights can only narrow: every member still judges). Otherwise it stays as it was and the
/// exec event says so. The exec itself is then judged with the new chain. Returns event flags.
/// Updates the parked `s.cur` field by field: a second `Current` on the stack would not fit
/// beside the member loop's frame on 6.1 (combined stack limit 512 bytes).
#[inline(always)]
pub fn delegate(s: &mut Scratch, cfg0: &Config, d_path_ret: i64) -> u32 {
    if d_path_ret <= 0 || d_path_ret as usize > PATH_BUF_BYTES {
        return 0;
    }
    let key = path_match::set_main_key(s, ruleset(cfg0.active_slot, NO_AGENT), d_path_ret as usize);
    let Some(m) = EXE_MATCH.get(unsafe { &*key }) else {
        return 0;
    };
    let to = m.agent;
    if to == vget!(s.cur.agent) {
        return 0;
    }
    let depth = vget!(s.cur.state.depth) as usize;
    if depth == 0
        || depth >= MAX_CHAIN
        || to >= 64
        || vget!(s.cur.cfg.delegate_lo) & (1u64 << to) == 0
    {
        return EVENT_FLAG_DELEGATION_REFUSED;
    }
    match depth {
        1 => vset!(s.cur.state.chain[1], to),
        2 => vset!(s.cur.state.chain[2], to),
        _ => vset!(s.cur.state.chain[3], to),
    }
    vset!(s.cur.state.depth, depth as u32 + 1);
    let pid_tgid = bpf_get_current_pid_tgid();
    vset!(
        s.cur.state.session,
        identity::new_session((pid_tgid >> 32) as u32)
    );
    vset!(s.cur.state.session_start_ns, unsafe {
        aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns()
    });
    let slot = vget!(s.cur.slot);
    let mut cfg = identity::agent_config(slot, to);
    let state = vget!(s.cur.state);
    cfg.flags = crate::chain::combined_flags(slot, &state, cfg.flags);
    vset!(s.cur.cfg, cfg);
    vset!(s.cur.agent, to);
    vset!(s.cur.rule_agent, to);
    vset!(s.cur.joined, JOIN_EXE);
    if !identity::record(vget!(s.cur.tid), &state) {
        // Not recorded: the next operation would see the old chain. Deny this exec instead.
        vset!(s.cur.flags, vget!(s.cur.flags) | EVENT_FLAG_PROC_TABLE_FULL);
        vset!(s.cur.doomed, 1);
    }
    0
}
