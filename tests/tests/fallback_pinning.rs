//! The fallback backend's kernel state outlives its process: with a pin directory, programs,
//! maps and links are pinned in bpffs; when the backend is dropped (its process's descriptors
//! closed) a registered agent stays confined, a new load adopts the pinned state (the agent is
//! still in the process table), and only an uninstall ends the confinement. The pinned event
//! ring buffer is read at least once: events read but not released before the backend went
//! away are read again, at the same ring positions, by the next one. Runs on every kernel, the
//! host included. (daemon_restart does the same through a whole daemon, SIGKILLed and
//! restarted, with whichever backend it chooses.)

use enforcer::kernel::{fallback::FallbackBackend, pin, Backend, LoadOptions, RawEvent};
use enforcer_common::OP_CONNECT;
use enforcer_tests::{compile, kernel_label, Agent, EPERM};

/// The agent's connect events among those queued, read without releasing them.
fn read_unreleased(backend: &mut FallbackBackend, pid: u32) -> Vec<RawEvent> {
    let mut events = Vec::new();
    backend
        .read_events(usize::MAX, &mut events)
        .expect("read events");
    events.retain(|e| e.header.tgid == pid && e.header.op == OP_CONNECT);
    events
}

#[test]
fn pinned_state_outlives_the_backend_and_is_adopted() {
    enforcer_tests::require_root();
    let pin_dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/enforcer-test-pins-{}",
        std::process::id()
    ));
    let opts = LoadOptions {
        pin_dir: Some(pin_dir.clone()),
        ..LoadOptions::default()
    };
    let denied_port = 9; // nothing listens: EPERM from the cgroup hook, ECONNREFUSED without it
    let compiled = compile("[agent]\nname = \"pinned-agent\"\n");
    let unreleased;
    let agent_id = compiled.agent_by_name("pinned-agent").expect("agent").id;
    let op = format!("connect:127.0.0.1:{denied_port}");
    let mut agent = Agent::spawn(&[op.clone(), op.clone(), op.clone(), op.clone(), op], true);
    {
        let mut backend = FallbackBackend::load(&opts, None)
            .unwrap_or_else(|e| panic!("pinned load on {}: {e}", kernel_label()));
        assert!(
            backend.adopted().is_none(),
            "a fresh pin directory is a fresh install"
        );
        backend.apply(&compiled, 1).expect("apply");
        backend.register(agent.pid, agent_id, 71).expect("register");
        agent.start();
        assert_eq!(agent.step().errno, EPERM, "denied while the backend runs");
        unreleased = read_unreleased(&mut backend, agent.pid);
        assert_eq!(unreleased.len(), 1, "one event for the denied connect");
        // A clean stop of the owning process: descriptors closed, pins stay. The event read is
        // not released (as when a daemon is killed before its batch is written).
        backend.heartbeat(false).expect("mark stopped");
    }
    assert_eq!(
        agent.step().errno,
        EPERM,
        "still denied with no process holding the programs"
    );
    {
        let backend = FallbackBackend::load(&opts, None)
            .unwrap_or_else(|e| panic!("adoption on {}: {e}", kernel_label()));
        let adoption = backend.adopted().expect("the pinned state is adopted");
        assert!(
            adoption.agent_threads >= 1,
            "the agent is still in the pinned process table: {adoption:?}"
        );
        assert!(
            adoption.relinked.is_empty(),
            "every pinned link survived: {adoption:?}"
        );
        assert_eq!(
            backend
                .proc_state(agent.pid)
                .expect("procs")
                .map(|s| s.agent()),
            Some(agent_id),
            "still the agent"
        );
        assert_eq!(agent.step().errno, EPERM, "denied after adoption");
        let mut backend = backend;
        let again = read_unreleased(&mut backend, agent.pid);
        assert!(
            adoption.ring_released_pos <= unreleased[0].ring_pos,
            "adopted from {} past the unreleased event",
            adoption.ring_released_pos
        );
        assert_eq!(
            again.len(),
            3,
            "the unreleased event, the one of the ownerless time, and the new one: {again:?}"
        );
        assert_eq!(
            again[0], unreleased[0],
            "the unreleased event is read again, same ring position, same content"
        );
        assert!(
            again.windows(2).all(|w| w[0].ring_pos < w[1].ring_pos),
            "ring positions grow: {again:?}"
        );
        backend.release_events().expect("release");
        backend.heartbeat(false).expect("mark stopped");
    }
    {
        let mut backend = FallbackBackend::load(&opts, None)
            .unwrap_or_else(|e| panic!("second adoption on {}: {e}", kernel_label()));
        assert_eq!(
            agent.step().errno,
            EPERM,
            "denied after the second adoption"
        );
        let after_release = read_unreleased(&mut backend, agent.pid);
        assert_eq!(
            after_release.len(),
            1,
            "released events are not read again, only the new one: {after_release:?}"
        );
        backend.heartbeat(false).expect("mark stopped");
    }
    assert!(
        pin::uninstall(&pin_dir).expect("uninstall"),
        "something was installed"
    );
    let r = agent.step();
    assert_ne!(
        r.errno, EPERM,
        "after uninstall the connect reaches the network stack: {r:?}"
    );
    agent.finish();
    println!("checked on {}: pinned fallback state enforces with no owner, is adopted with the agent intact, uninstall ends it", kernel_label());
}
