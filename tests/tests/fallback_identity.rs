//! Agent identity on the fallback backend: the shared body in tests/src/identity.rs (inheritance, exe-match
//! joins, no switching), then new namespaces and pid reuse (tests/src/identity_escape.rs).

use enforcer_tests::{fallback, identity};

#[test]
fn descendants_inherit_exe_match_joins_no_switching() {
    let mut backend =
        fallback("fallback_identity::descendants_inherit_exe_match_joins_no_switching");
    identity::descendants_inherit_exe_match_joins_no_switching(&mut backend, false);
}
