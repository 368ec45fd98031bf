//! End to end: enforcement outlives the daemon. A registered agent loops over allowed and
//! denied operations (tests/src/workload.rs: opens and connects on BPF LSM, connects on the
//! fallback - what each backend refuses with EPERM) while the daemon is SIGKILLed and restarted:
//! nothing changes for the agent, the restarted daemon adopts the pinned state (the agent stays
//! an agent), the events of the downtime reach the audit log after a `restarted` record, pinned
//! state of another build is refused, and `--uninstall` (refused while a daemon runs) ends the
//! confinement. Runs on every kernel with the backend the daemon chooses there.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData};
use enforcer_tests::{
    daemon::*,
    workload::{RuleIds, Step, Workload},
    Agent, DaemonBackend, EPERM,
};
use serde_json::Value;

const TEST: &str = "daemon_restart::enforcement_survives_a_killed_daemon_and_is_adopted";
const AGENT: &str = "restart-agent";

const UP: u8 = 0;
const DOWN: u8 = 1;
const RESTARTING: u8 = 2;
const ADOPTED: u8 = 3;
const PHASES: [&str; 4] = ["daemon up", "daemon killed", "daemon restarting", "adopted"];

const IDS: RuleIds = RuleIds {
    allow: "allowed",
    deny: "denied",
};

struct Done {
    phase: u8,
    step: Step,
    errno: i32,
}

/// The agent's loop: the workload's steps one after the other, each denied one with a target of
/// its own (so it has exactly one audit event to find).
fn agent_loop(
    mut agent: Agent,
    work: Arc<Workload>,
    backend: DaemonBackend,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> (Agent, Vec<Done>) {
    let mut done = Vec::new();
    let mut index = 0;
    while !stop.load(Ordering::SeqCst) {
        let p = phase.load(Ordering::SeqCst);
        let step = work.step(backend, index);
        let r = agent.op(&step.op);
        // The phase must not have changed during the op for it to count as that phase's.
        if phase.load(Ordering::SeqCst) == p {
            done.push(Done {
                phase: p,
                step,
                errno: r.errno,
            });
            count.fetch_add(1, Ordering::SeqCst);
        }
        index += 1;
        // A restart takes up to minutes under emulation: a slower pace then keeps the log (and
        // the checks) small, and still leaves no 25 ms unprobed.
        std::thread::sleep(Duration::from_millis(if p == RESTARTING { 25 } else { 3 }));
    }
    (agent, done)
}

fn wait_count(count: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "the agent made no progress: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn daemon_records<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "daemon" && r["event"] == event)
        .collect()
}

fn set_layout(pin_dir: &Path, value: Option<u64>) -> u64 {
    let map = Map::from_map_data(
        MapData::from_pin(pin_dir.join("maps/PIN_META")).expect("open pinned PIN_META"),
    )
    .expect("map");
    let mut meta: Array<MapData, u64> = Array::try_from(map).expect("PIN_META is an array of u64");
    let old = meta.get(&0, 0).expect("read layout");
    if let Some(v) = value {
        meta.set(0, v, 0).expect("write layout");
    }
    old
}

#[test]
fn enforcement_survives_a_killed_daemon_and_is_adopted() {
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("restart");
    let root = setup.dir.path().to_path_buf();
    let work = Arc::new(Workload::new(&root));
    std::fs::write(
        setup.policy_dir.join("agent.toml"),
        work.policy(AGENT, IDS, false),
    )
    .unwrap();

    let (mut first, backend) = setup.start_first(TEST);
    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    let agent_pid = agent.pid;
    agent.start();

    let (phase, stop, count) = (
        Arc::new(AtomicU8::new(UP)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let looping = {
        let (work, phase, stop, count) = (work.clone(), phase.clone(), stop.clone(), count.clone());
        std::thread::spawn(move || agent_loop(agent, work, backend, phase, stop, count))
    };
    wait_count(&count, 40, "while the daemon runs");

    first.kill();
    let killed_at = enforcer::audit::clock::now_ns();
    phase.store(DOWN, Ordering::SeqCst);
    let down_count = count.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    wait_count(&count, down_count + 40, "while no daemon runs");

    phase.store(RESTARTING, Ordering::SeqCst);
    let second = setup.start();
    phase.store(ADOPTED, Ordering::SeqCst);
    let adopted_count = count.load(Ordering::SeqCst);
    wait_count(&count, adopted_count + 40, "after the restart");
    stop.store(true, Ordering::SeqCst);
    let (mut agent, done) = looping.join().expect("agent loop");

    // 1. The kernel never stopped deciding: every denied operation EPERM, every allowed one
    //    allowed.
    for p in [UP, DOWN, RESTARTING, ADOPTED] {
        let n = done.iter().filter(|d| d.phase == p).count();
        println!("{}: {n} operations", PHASES[p as usize]);
        if p != RESTARTING {
            assert!(
                n >= 20,
                "too few operations while {}: {n}",
                PHASES[p as usize]
            );
        }
    }
    for d in &done {
        assert_eq!(
            d.errno,
            d.step.class.errno(),
            "{} while {}: errno {}",
            d.step.describe(),
            PHASES[d.phase as usize],
            d.errno
        );
    }

    // 2. The restarted daemon adopted the pinned state and says so.
    let log = second.log_text();
    assert!(
        log.contains("adopted the kernel state pinned in"),
        "the restarted daemon's log does not say it adopted:\n{log}"
    );
    let status = setup.status();
    assert_eq!(
        status.backend,
        backend.name(),
        "the restarted daemon runs another backend"
    );
    let member = status
        .agents
        .iter()
        .find(|a| a.name == AGENT)
        .expect("agent in status");
    assert!(
        member.processes >= 1,
        "after the restart the agent process is not an agent any more: {status:?}"
    );

    // 3. Every denied operation has its event, the downtime's included (they waited in the
    //    pinned ring buffer), the batch the killed daemon was moving to the log included (the
    //    ring buffer releases a batch only once it is written), and the downtime is on record.
    let denied: Vec<&Done> = done
        .iter()
        .filter(|d| d.step.class.errno() == EPERM)
        .collect();
    let records = setup.wait_records("an event for every denied operation", 120, |records| {
        let keys: HashSet<String> = records
            .iter()
            .filter(|r| r["type"] == "event")
            .filter_map(Step::key_of)
            .collect();
        denied.iter().all(|d| keys.contains(&d.step.target_key()))
    });
    let restarted = daemon_records(&records, "restarted");
    assert_eq!(
        restarted.len(),
        1,
        "one restarted record expected: {restarted:?}"
    );
    let restarted = restarted[0];
    let down_since = restarted["down_since"]
        .as_str()
        .expect("restarted record without down_since");
    let down_ns =
        enforcer::audit::clock::parse_rfc3339(down_since).expect("down_since is RFC 3339");
    assert!(
        down_ns <= killed_at,
        "down_since {down_since} is after the kill"
    );
    assert!(
        killed_at - down_ns < 2_000_000_000,
        "down_since {down_since} is more than 2 s before the kill"
    );
    let message = restarted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("daemon pid {} ended without stopping", first.pid)),
        "restarted record: {restarted}"
    );
    assert!(
        restarted["detail"]["agent_threads"].as_u64().unwrap_or(0) >= 1,
        "restarted record: {restarted}"
    );
    let starts = daemon_records(&records, "start");
    assert_eq!(starts.len(), 2, "two start records expected");
    assert!(
        starts[1]["policy_version"].as_u64() > starts[0]["policy_version"].as_u64(),
        "policy versions must increase across the restart"
    );
    assert!(restarted["seq"].as_u64() > starts[1]["seq"].as_u64());
    let mut events_of: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in records.iter().filter(|r| r["type"] == "event") {
        if let Some(key) = Step::key_of(r) {
            events_of.entry(key).or_default().push(r);
        }
    }
    let adopted_from = restarted["detail"]["ring_released_pos"]
        .as_u64()
        .expect("restarted detail has ring_released_pos");
    let mut downtime_events = 0;
    let mut repeated = 0;
    for d in &denied {
        let events = events_of
            .get(&d.step.target_key())
            .cloned()
            .unwrap_or_default();
        // Written twice only if the kill came between writing its batch and releasing it: then
        // the copy follows the restarted record, with the same ring_pos (one kernel decision).
        let positions: HashSet<u64> = events
            .iter()
            .map(|e| e["ring_pos"].as_u64().expect("event has ring_pos"))
            .collect();
        assert_eq!(
            positions.len(),
            1,
            "{} while {}: {} kernel decisions: {events:?}",
            d.step.describe(),
            PHASES[d.phase as usize],
            positions.len()
        );
        if events.len() > 1 {
            repeated += 1;
            assert!(
                events.len() == 2 && d.phase == UP,
                "only a batch of the killed daemon may repeat: {events:?}"
            );
            assert!(
                events[1]["seq"].as_u64() > restarted["seq"].as_u64()
                    && positions.iter().all(|&p| p >= adopted_from),
                "{events:?}"
            );
        }
        let e = events[0];
        let rule = IDS.rule(d.step.class, d.step.kind);
        assert_eq!(
            (
                e["verdict"].as_str(),
                e["rule"].as_str(),
                e["agent"].as_str(),
                e["pid"].as_u64()
            ),
            (
                Some("deny"),
                Some(rule.as_str()),
                Some(AGENT),
                Some(agent_pid as u64)
            ),
            "{}: event {e}",
            d.step.describe()
        );
        if d.phase == DOWN {
            downtime_events += 1;
            assert!(
                e["time"].as_str().unwrap_or_default() > down_since,
                "an event of the downtime is older than down_since: {e}"
            );
            assert!(
                e["seq"].as_u64() > restarted["seq"].as_u64(),
                "downtime events come after the restarted record: {e}"
            );
        }
    }
    println!("{} denied operations, {downtime_events} of them while no daemon ran: each has its event ({repeated} written again after the restart: the killed daemon's unreleased batch)", denied.len());
    assert!(
        !records.iter().any(|r| r["type"] == "lost"),
        "events were lost"
    );
    let mut second = second;
    second.stop();

    // 4. Pinned state of another build is refused, and keeps enforcing meanwhile.
    let ours = set_layout(&setup.pin_dir, Some(0x0bad_0bad));
    let refusal = setup.start_fails();
    assert!(
        refusal.contains("installed by another enforcer build") && refusal.contains("--uninstall"),
        "refusal does not explain itself:\n{refusal}"
    );
    // Denied steps of every kind the backend refuses, past the loop's indices.
    let later: Vec<Step> = (1_000_000..1_000_006)
        .map(|i| work.step(backend, i))
        .filter(|s| s.class.errno() == EPERM)
        .collect();
    for step in &later {
        let r = agent.op(&step.op);
        assert_eq!(
            r.errno,
            EPERM,
            "after a refused start the pinned state must still enforce: {}",
            step.describe()
        );
    }
    set_layout(&setup.pin_dir, Some(ours));

    // 5. After a clean stop a new daemon adopts too, and says the last one stopped cleanly.
    let mut third = setup.start();
    let records = setup.records();
    let restarted = daemon_records(&records, "restarted");
    assert_eq!(restarted.len(), 2, "a second restarted record expected");
    assert!(
        restarted[1]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("stopped cleanly"),
        "{}",
        restarted[1]
    );

    // 6. Uninstall: refused while a daemon runs; then every hook is gone.
    let out = setup
        .command()
        .arg("--uninstall")
        .output()
        .expect("run --uninstall");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("in use by a running daemon"),
        "uninstall with a running daemon: {}\n{text}",
        out.status
    );
    third.stop();
    let said = setup.uninstall();
    assert!(
        said.contains("removed pinned kernel state"),
        "uninstall said: {said}"
    );
    assert!(
        !setup.pin_dir.exists(),
        "{} still exists after uninstall",
        setup.pin_dir.display()
    );
    for step in &later {
        let r = agent.op(&step.op);
        assert_eq!(
            r.errno,
            0,
            "after uninstall the former agent is no longer confined: {} {r:?}",
            step.describe()
        );
    }
    agent.finish();
    enforcer_tests::adversarial::pass("2-daemon-sigkill/denied-loop-adopted", backend.name());
}
