//! Exec differential test on the BPF LSM backend (bprm_check_security); the cases are in
//! `enforcer_tests::execdiff`.

use enforcer_tests::{execdiff, lsm_or_na};

#[test]
fn kernel_matches_reference_evaluator_for_exec() {
    let Some(mut backend) =
        lsm_or_na("lsm_exec_differential::kernel_matches_reference_evaluator_for_exec")
    else {
        return;
    };
    execdiff::run(&mut backend, true);
}
