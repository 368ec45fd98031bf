//! Agent identity on BPF LSM: the shared body in tests/src/identity.rs (inheritance, exe-match
//! joins, no switching), then new namespaces and pid reuse (tests/src/identity_escape.rs).

use enforcer_tests::{identity, lsm_or_na};

#[test]
fn descendants_inherit_exe_match_joins_no_switching() {
    let Some(mut backend) =
        lsm_or_na("lsm_identity::descendants_inherit_exe_match_joins_no_switching")
    else {
        return;
    };
    identity::descendants_inherit_exe_match_joins_no_switching(&mut backend, true);
}
