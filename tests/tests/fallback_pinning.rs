//! The fallback backend's kernel state outlives its process: with a pin directory, programs,
//! maps and links are pinned in bpffs; when the backend is dropped (its process's descriptors
//! closed) a registered agent stays confined, a new load adopts the pinned state (the agent is
//! still in the process table), and only an uninstall ends the confinement. Runs on every
//! kernel, the host included. (daemon_restart does the same through a whole daemon, SIGKILLed
//! and restarted, with whichever backend it chooses.)

use enforcer::kernel::{fallback::FallbackBackend, pin, Backend, LoadOptions};
use enforcer_tests::{compile, kernel_label, Agent, EPERM};

#[test]
fn pinned_state_outlives_the_backend_and_is_adopted() {
    enforcer_tests::require_root();
    let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/enforcer-test-pins-{}", std::process::id()));
    let opts = LoadOptions { pin_dir: Some(pin_dir.clone()), ..LoadOptions::default() };
    let denied_port = 9; // nothing listens: EPERM from the cgroup hook, ECONNREFUSED without it
    let compiled = compile("[agent]\nname = \"pinned-agent\"\n");
    let agent_id = compiled.agent_by_name("pinned-agent").expect("agent").id;
    let op = format!("connect:127.0.0.1:{denied_port}");
    let mut agent = Agent::spawn(&[op.clone(), op.clone(), op.clone(), op], true);
    {
        let mut backend = FallbackBackend::load(&opts, None).unwrap_or_else(|e| panic!("pinned load on {}: {e}", kernel_label()));
        assert!(backend.adopted().is_none(), "a fresh pin directory is a fresh install");
        backend.apply(&compiled, 1).expect("apply");
        backend.register(agent.pid, agent_id, 71).expect("register");
        agent.start();
        assert_eq!(agent.step().errno, EPERM, "denied while the backend runs");
        // A clean stop of the owning process: descriptors closed, pins stay.
        backend.heartbeat(false).expect("mark stopped");
    }
    assert_eq!(agent.step().errno, EPERM, "still denied with no process holding the programs");
    {
        let backend = FallbackBackend::load(&opts, None).unwrap_or_else(|e| panic!("adoption on {}: {e}", kernel_label()));
        let adoption = backend.adopted().expect("the pinned state is adopted");
        assert!(adoption.agent_threads >= 1, "the agent is still in the pinned process table: {adoption:?}");
        assert!(adoption.relinked.is_empty(), "every pinned link survived: {adoption:?}");
        assert_eq!(backend.proc_state(agent.pid).expect("procs").map(|s| s.agent()), Some(agent_id), "still the agent");
        assert_eq!(agent.step().errno, EPERM, "denied after adoption");
        let mut backend = backend;
        backend.heartbeat(false).expect("mark stopped");
    }
    assert!(pin::uninstall(&pin_dir).expect("uninstall"), "something was installed");
    let r = agent.step();
    assert_ne!(r.errno, EPERM, "after uninstall the connect reaches the network stack: {r:?}");
    agent.finish();
    println!("checked on {}: pinned fallback state enforces with no owner, is adopted with the agent intact, uninstall ends it", kernel_label());
}
