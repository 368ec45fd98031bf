//! `enforcer-testkit bench --quick` still runs end to end (workers, attach/detach, policy, report).
//! It asserts the shape of the report, never a timing: benchmarks are not timed tests.

use std::process::Command;

use enforcer_tests::{
    agent::{enforcer_bin, testkit_bin},
    kernel_label, require_root,
};

fn quick(backend: &str) {
    // The benchmark starts `enforcer daemon` and `enforcer run` from ENFORCER_BIN.
    let out = Command::new(testkit_bin())
        .args(["bench", "--backend", backend, "--quick"])
        .env("ENFORCER_BIN", enforcer_bin())
        .output()
        .expect("run enforcer-testkit bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "enforcer-testkit bench --backend {backend} --quick failed on {}: {stderr}\n{stdout}",
        kernel_label()
    );
    let begin = stdout
        .find("@@ENFORCER-BENCH-BEGIN@@")
        .expect("report start marker");
    let end = stdout
        .find("@@ENFORCER-BENCH-END@@")
        .expect("report end marker");
    let report = &stdout[begin..end];
    println!("{report}");
    for op in [
        "open+close allowed, 1 components",
        "open+close denied, 16 components",
        "exec busybox true",
        "TCP connect",
        "UDP sendto",
    ] {
        for variant in ["confined agent", "non-agent"] {
            assert!(
                report
                    .lines()
                    .any(|l| l.contains(op) && l.contains(variant)),
                "no row for {op} / {variant} in:\n{report}"
            );
        }
    }
    // The allowed operations must have worked with the programs attached: a benchmark of a
    // failing operation would measure the failure path.
    for line in report.lines().filter(|l| {
        l.contains("allowed") || l.contains("exec") || l.contains("TCP") || l.contains("UDP")
    }) {
        assert!(
            line.contains("| ok |"),
            "an allowed operation failed under {backend}: {line}"
        );
    }
}

#[test]
fn quick_fallback_runs() {
    require_root();
    quick("fallback");
}

/// Where BPF LSM works (decided by `enforcer probe`, which tries), the LSM run too.
#[test]
fn quick_lsm_runs_where_lsm_works() {
    require_root();
    let probe = Command::new(enforcer_bin())
        .arg("probe")
        .output()
        .expect("enforcer probe");
    if !probe.status.success()
        || !String::from_utf8_lossy(&probe.stdout).contains("enforcement: BPF LSM")
    {
        enforcer_tests::not_applicable(
            "quick_lsm_runs_where_lsm_works",
            "BPF LSM is not usable on this kernel (enforcer probe)",
        );
        return;
    }
    quick("lsm");
}
