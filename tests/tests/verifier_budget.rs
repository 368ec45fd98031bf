//! The decision pipeline's verifier cost, measured on any kernel: `verifier_probe` runs the same
//! code as the `file_open` LSM hook behind a tracepoint, which every kernel will verify;
//! `verifier_probe_walk` adds the dentry walk the path hooks (unlink, rename...) use. Both are
//! test-only programs: they are in the object tests/build.rs builds (the shipped programs plus
//! the probes), never in the one `enforcer` embeds.

use aya::programs::TracePoint;
use enforcer::kernel::{loaded, LoadOptions};
use enforcer_tests::probe_object::PROBE_OBJECT;

/// Well under the kernel's 1,000,000-instruction limit, leaving room for kernel differences.
const BUDGET: u32 = 400_000;

/// Load `prog` and return the instructions the verifier processed.
fn verified_insns(prog: &str) -> u32 {
    enforcer_tests::require_root();
    let mut ebpf = loaded::load_object_bytes(PROBE_OBJECT, &LoadOptions::default(), None)
        .expect("load object");
    let p: &mut TracePoint = ebpf
        .program_mut(prog)
        .unwrap_or_else(|| panic!("{prog} missing"))
        .try_into()
        .expect("tracepoint");
    if let Err(e) = p.load() {
        panic!("{prog} fails verification: {e:#}");
    }
    let info = p.info().expect("program info");
    info.verified_instruction_count()
        .expect("verified_insns (kernel 5.16+)")
}

#[test]
fn decision_pipeline_fits_the_verifier() {
    let insns = verified_insns("verifier_probe");
    println!("verifier processed {insns} instructions for the decision pipeline (budget {BUDGET})");
    assert!(
        insns < BUDGET,
        "decision pipeline costs {insns} verifier instructions, over the {BUDGET} budget"
    );
}

/// What the dentry walk may add to the decision: its step runs under bpf_loop and is verified
/// once, not once per component (as a bounded loop it added ~60k instructions per walk, and a
/// rename walks twice). Measured: ~1.7k on 6.12 and 6.18, ~37k on 6.1, where the difference
/// also counts the decision verified again after the walk (before 6.4 precision tracking gives
/// up at BPF-to-BPF calls, here the chain members' lookup function, so fewer states prune).
const WALK_BUDGET: u32 = 45_000;

#[test]
fn dentry_walk_fits_the_verifier() {
    let insns = verified_insns("verifier_probe_walk");
    let pipeline = verified_insns("verifier_probe");
    let walk = insns.saturating_sub(pipeline);
    println!("verifier processed {insns} instructions for the dentry walk + decision, the walk ~{walk} (budget {WALK_BUDGET})");
    assert!(
        insns < BUDGET,
        "dentry walk + decision costs {insns} verifier instructions, over the {BUDGET} budget"
    );
    assert!(
        walk < WALK_BUDGET,
        "the dentry walk costs ~{walk} verifier instructions, over its {WALK_BUDGET} budget"
    );
}

/// The fallback's tracepoint programs (which run everywhere) stay within the same budget: every
/// `fb_*` program of the object, so a new one cannot be forgotten here.
#[test]
fn fallback_programs_fit_the_verifier() {
    let mut over = Vec::new();
    let fallback: Vec<&str> = enforcer_common::PROGRAMS
        .iter()
        .copied()
        .filter(|p| p.starts_with("fb_"))
        .collect();
    assert!(fallback.len() >= 12, "the fallback programs: {fallback:?}");
    for prog in fallback {
        let insns = verified_insns(prog);
        println!("verifier processed {insns} instructions for {prog} (budget {BUDGET})");
        if insns >= BUDGET {
            over.push(format!("{prog}: {insns}"));
        }
    }
    assert!(
        over.is_empty(),
        "over the {BUDGET} verifier-instruction budget: {over:?}"
    );
}
