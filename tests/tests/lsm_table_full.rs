//! Fail closed when the process table is full: a child of an agent that cannot be recorded is
//! "doomed" - denied everything until it exits - never an unconfined process.

use enforcer::kernel::{lsm::LsmBackend, Backend, LoadOptions};
use enforcer_common::*;
use enforcer_tests::{compile, events, lsm_or_na, Agent, TempDir};

#[test]
fn full_process_table_denies_unrecorded_children() {
    // Checks (and reports) BPF LSM support first, then loads with a tiny process table.
    let Some(probe) = lsm_or_na("lsm_table_full::full_process_table_denies_unrecorded_children")
    else {
        return;
    };
    drop(probe);
    let mut backend = LsmBackend::load(&LoadOptions {
        max_procs: 8,
        ..LoadOptions::default()
    })
    .expect("load with 8 slots");
    let dir = TempDir::new("table-full");
    let d = dir.path().display().to_string();
    let readable = dir.file("readable.txt", "ok");
    let tool = dir.join("bin/busybox");
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::copy(enforcer_tests::fixtures::busybox(), &tool).unwrap();
    let compiled = compile(&format!(
        "[agent]\nname = \"full-agent\"\n[file]\nread = [\"{d}/**\", \"/dev/null\"]\n[exec]\nallow = [\"{d}/bin/**\"]\n"
    ));
    let agent_id = compiled.agent_by_name("full-agent").unwrap().id;
    backend.apply(&compiled, 1).expect("apply");
    // The shell holds 12 background sleepers (more than the 8 slots), then tries to read a file
    // it may read: with the table full, that `cat` is an unrecorded child and must be denied.
    let script = format!(
        "i=0; while [ $i -lt 12 ]; do {tool} sleep 3 & i=$((i+1)); done; {tool} cat {readable} || exit 3; exit 0"
    );
    let agent = Agent::spawn(&[format!("exec:{tool},sh,-c,{script}")], false);
    backend.register(agent.pid, agent_id, 3).expect("register");
    let r = agent.go(1);
    assert!(
        r[0].result.contains("exit status: 3"),
        "the unrecorded child's read must be denied: {:?}",
        r[0]
    );
    let e = events::wait_for(&mut backend, "denial flagged PROC_TABLE_FULL", |e| {
        e.header.flags & EVENT_FLAG_PROC_TABLE_FULL != 0
    });
    assert_eq!(
        e.header.verdict, VERDICT_DENY,
        "doomed processes are denied, even for an audit-free allow"
    );
    println!("checked: with the process table full, an agent's unrecorded child is denied (EPERM) and the event says PROC_TABLE_FULL");
}
