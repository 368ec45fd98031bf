//! End to end: `enforcer demo` starts the daemon, runs a scripted agent under `enforcer run`,
//! and checks every allow and deny against the policy and the audit log (launcher -> daemon ->
//! kernel -> audit log). Runs on every kernel: the daemon must pick BPF LSM where it really runs
//! and the fallback backend elsewhere (the host, and 6.12 booted without `bpf` in lsm=).

#[test]
fn demo_end_to_end() {
    enforcer_tests::require_root();
    let kernel = enforcer_tests::kernel_label();
    let expected_backend = if kernel == "host" || kernel.ends_with("-nolsm") { "fallback" } else { "lsm" };
    let policies = std::env::var_os("ENFORCER_POLICIES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"));
    let out = std::process::Command::new(enforcer_tests::agent::enforcer_bin())
        .arg("demo")
        .env("ENFORCER_POLICIES", &policies)
        .output()
        .expect("run enforcer demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "enforcer demo failed: {}", out.status);
    assert!(
        stdout.contains(&format!("backend={expected_backend} ")),
        "on kernel {kernel} the daemon must choose the {expected_backend} backend"
    );
    assert!(stdout.contains("every operation was allowed or denied as the policy says"), "demo summary missing");
    println!("checked: demo on kernel {kernel} with backend {expected_backend}");
}
