//! Network differential test on the BPF LSM backend (socket_connect / socket_sendmsg); the cases
//! are in `enforcer_tests::netdiff`.

use enforcer_tests::{lsm_or_na, netdiff};

#[test]
fn kernel_matches_reference_evaluator_for_connect() {
    let Some(mut backend) =
        lsm_or_na("lsm_net_differential::kernel_matches_reference_evaluator_for_connect")
    else {
        return;
    };
    netdiff::run(&mut backend);
}
