//! Sub-agent chains (P>C): the intersection of every member's rules decided in the kernel, exec
//! and launcher delegation, refusals, the depth limit and sessions. One body for both backends
//! (tests/src/chains.rs).

use enforcer_tests::{chains, fallback, lsm_or_na};

#[test]
fn lsm() {
    let Some(mut backend) = lsm_or_na("subagents::lsm") else {
        return;
    };
    chains::run(&mut backend, true);
}

#[test]
fn fallback_backend() {
    let mut backend = fallback("subagents::fallback_backend");
    chains::run(&mut backend, false);
}
