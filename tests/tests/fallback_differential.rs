//! File differential test on the fallback backend (sys_exit_open* tracepoints, paths from the
//! dentry walk, audit mode); the cases are in `enforcer_tests::filediff`. Runs on every kernel.

use enforcer_tests::{fallback, filediff};

#[test]
fn kernel_matches_reference_evaluator() {
    let mut backend = fallback("fallback_differential::kernel_matches_reference_evaluator");
    filediff::run(&mut backend, false);
}
