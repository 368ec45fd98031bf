//! The adversarial suite's report lines (`tests/tests/adversarial_*.rs`): one line per case and
//! backend, `ADVERSARIAL <case> <backend> <pass|limitation: why>`, printed only after the case's
//! assertions held (docs/testing.md, "The adversarial suite").

/// A case whose evasion attempt was stopped (blocked, or killed in kill mode) and reported.
pub fn pass(case: &str, backend: &str) {
    println!("ADVERSARIAL {case} {backend} pass");
}

/// A case this backend cannot stop; the test asserted exactly the documented behaviour.
pub fn limitation(case: &str, backend: &str, why: &str) {
    println!(
        "ADVERSARIAL {case} {backend} limitation: {}",
        why.replace('\n', " ")
    );
}
