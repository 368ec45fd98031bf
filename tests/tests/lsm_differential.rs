//! File differential test on the BPF LSM backend (file_open, paths from bpf_d_path); the cases
//! are in `enforcer_tests::filediff`.

use enforcer_tests::{filediff, lsm_or_na};

#[test]
fn kernel_matches_reference_evaluator() {
    let Some(mut backend) = lsm_or_na("lsm_differential::kernel_matches_reference_evaluator")
    else {
        return;
    };
    filediff::run(&mut backend, true);
}
