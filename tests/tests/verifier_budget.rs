//! The decision pipeline's verifier cost, measured on any kernel: `verifier_probe` runs the same
//! code as the `file_open` LSM hook behind a tracepoint, which every kernel will verify.

use aya::programs::TracePoint;
use enforcer::kernel::{lsm, LoadOptions};

/// Well under the kernel's 1,000,000-instruction limit, leaving room for kernel differences.
const BUDGET: u32 = 400_000;

#[test]
fn decision_pipeline_fits_the_verifier() {
    enforcer_tests::require_root();
    let mut ebpf = lsm::load_object(&LoadOptions::default(), None).expect("load object");
    let p: &mut TracePoint = ebpf.program_mut("verifier_probe").expect("verifier_probe").try_into().expect("tracepoint");
    if let Err(e) = p.load() {
        panic!("the decision pipeline fails verification: {e:#}");
    }
    let info = p.info().expect("program info");
    let insns = info.verified_instruction_count().expect("verified_insns (kernel 5.16+)");
    println!("verifier processed {insns} instructions for the decision pipeline (budget {BUDGET})");
    assert!(insns < BUDGET, "decision pipeline costs {insns} verifier instructions, over the {BUDGET} budget");
}
