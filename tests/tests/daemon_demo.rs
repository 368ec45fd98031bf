//! End to end: `enforcer demo` starts the daemon, runs a scripted agent under `enforcer run`,
//! and checks every allow and deny against the policy and the audit log (launcher -> daemon ->
//! kernel -> audit log). Needs a kernel where BPF LSM works.

#[test]
fn demo_end_to_end() {
    // The daemon needs BPF LSM (the fallback backend is not built yet): check and report first.
    let Some(backend) = enforcer_tests::lsm_or_na("daemon_demo::demo_end_to_end") else { return };
    drop(backend);
    let out = std::process::Command::new(enforcer_tests::agent::enforcer_bin())
        .arg("demo")
        .output()
        .expect("run enforcer demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "enforcer demo failed: {}", out.status);
    assert!(stdout.contains("every operation was allowed or denied as the policy says"), "demo summary missing");
}
