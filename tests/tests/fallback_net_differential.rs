//! Network differential test on the fallback backend (cgroup connect4/6, sendmsg4/6); the cases
//! are in `enforcer_tests::netdiff`. Runs on every kernel, the host included.

use enforcer_tests::{fallback, netdiff};

#[test]
fn kernel_matches_reference_evaluator_for_connect() {
    let mut backend =
        fallback("fallback_net_differential::kernel_matches_reference_evaluator_for_connect");
    netdiff::run(&mut backend);
}
