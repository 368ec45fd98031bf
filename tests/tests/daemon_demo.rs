//! End to end: `enforcer demo` starts the daemon, runs a scripted agent under `enforcer run`,
//! and checks every allow and deny against the policy and the audit log (launcher -> daemon ->
//! kernel -> audit log). Runs on every kernel: the daemon must pick BPF LSM where it really runs
//! and the fallback backend elsewhere (the host, and 6.12 booted without `bpf` in lsm=).

#[test]
fn demo_end_to_end() {
    enforcer_tests::require_root();
    let kernel = enforcer_tests::kernel_label();
    let expected_backend = if kernel == "host" || kernel.ends_with("-nolsm") {
        "fallback"
    } else {
        "lsm"
    };
    let policies = std::env::var_os("ENFORCER_POLICIES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"));
    let out = std::process::Command::new(enforcer_tests::agent::enforcer_bin())
        .arg("demo")
        .arg("--agent-bin")
        .arg(enforcer_tests::agent::testkit_bin())
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
    assert!(
        stdout.contains("every operation was allowed or denied as the policy says"),
        "demo summary missing"
    );
    assert!(
        stdout.contains("launched as chain demo-agent>demo-subagent"),
        "the demo agent must start its sub-agent through the daemon"
    );

    // Map fill levels, scraped from the daemon's metrics while the agent was registered.
    let series = |kind: &str, map: &str| -> u64 {
        let prefix = format!("enforcer_map_{kind}{{map=\"{map}\"}} ");
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| {
                panic!("no enforcer_map_{kind} series for {map} in the demo's metrics")
            })
    };
    for map in [
        "PROCS",
        "DOOMED",
        "AGENTS",
        "PATH_RULES",
        "NAME_RULES",
        "NET_RULES",
        "EXE_MATCH",
        "CGROUP_MATCH",
    ] {
        let (entries, capacity) = (series("entries", map), series("capacity", map));
        assert!(
            capacity > 0 && entries <= capacity,
            "{map}: {entries} entries of {capacity}"
        );
    }
    assert!(
        series("entries", "PROCS") >= 1,
        "the registered agent is not counted in the kernel's process table"
    );
    assert_eq!(
        series("capacity", "PROCS"),
        65536,
        "the process table's max_entries (max_agent_processes default)"
    );
    assert_eq!(
        series("entries", "AGENTS"),
        2,
        "the demo policy has two agents (demo-agent, demo-subagent)"
    );
    assert!(
        series("entries", "PATH_RULES") >= 1 && series("entries", "NET_RULES") >= 1,
        "the demo policy's rules are counted"
    );
    println!("checked: demo on kernel {kernel} with backend {expected_backend}");
}
