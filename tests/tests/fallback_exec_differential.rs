//! Exec differential test on the fallback backend (sched_process_exec, audit mode: verdicts
//! from the events); the cases are in `enforcer_tests::execdiff`. Runs on every kernel.

use enforcer_tests::{execdiff, fallback};

#[test]
fn kernel_matches_reference_evaluator_for_exec() {
    let mut backend =
        fallback("fallback_exec_differential::kernel_matches_reference_evaluator_for_exec");
    execdiff::run(&mut backend, false);
}
