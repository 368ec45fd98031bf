use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use enforcer_common::{EventHeader, ProcState, OP_OPEN, VERDICT_DENY};

use super::*;
use crate::{
    audit::{reader::read_log, record::tests::test_policy, writer::Rotation},
    kernel::{BackendStatus, KernelError},
};

/// What the mock kernel saw and holds; shared with the test after the backend is boxed.
#[derive(Default)]
pub(crate) struct Kernel {
    pub(crate) applied: Vec<(u32, CompiledPolicy)>,
    pub(crate) procs: HashMap<u32, ProcState>,
    /// The ring buffer: events not released yet, oldest first (a restarted daemon reads them again).
    pub(crate) pending: Vec<RawEvent>,
    next_ring_pos: u64,
    /// Simulates SIGKILL right after a write: releases are not done.
    pub(crate) ignore_releases: bool,
    pub(crate) losses: Vec<(u32, u64)>,
    pub(crate) failures: Vec<(u32, u64)>,
    pub(crate) fail_next_apply: bool,
    pub(crate) adoption: Option<crate::kernel::pin::Adoption>,
    /// `heartbeat(running)` calls, in order.
    pub(crate) heartbeats: Vec<bool>,
    pub(crate) fill: Vec<crate::kernel::fill::MapFill>,
    /// Threads in the doomed table.
    pub(crate) doomed: Vec<u32>,
    /// Every process-table lookup fails (the role check must fail closed).
    pub(crate) fail_lookups: bool,
    /// Launcher sessions get a Landlock envelope (as on the fallback).
    pub(crate) uses_envelope: bool,
}

impl Kernel {
    /// Queue an event like the kernel's ring buffer output (positions grow by the record size).
    pub(crate) fn queue(&mut self, header: EventHeader, target: &[u8]) -> u64 {
        let ring_pos = self.next_ring_pos;
        self.next_ring_pos +=
            (8 + enforcer_common::EVENT_HEADER_BYTES + target.len()).next_multiple_of(8) as u64;
        self.pending.push(RawEvent {
            header,
            target: target.to_vec(),
            ring_pos,
        });
        ring_pos
    }
}

/// The mock kernel and this reader's read position in its ring (in `pending`).
pub(crate) struct MockBackend(pub(crate) Arc<Mutex<Kernel>>, usize);

impl Backend for MockBackend {
    fn apply_shared(
        &mut self,
        policy: Arc<CompiledPolicy>,
        version: u32,
    ) -> Result<(), KernelError> {
        let mut k = self.0.lock().unwrap();
        if std::mem::take(&mut k.fail_next_apply) {
            return Err(KernelError::Map {
                map: "PATH_RULES".into(),
                reason: "full".into(),
            });
        }
        k.applied.push((version, CompiledPolicy::clone(&policy)));
        Ok(())
    }
    fn register_chain(&mut self, pid: u32, chain: &[u32], session: u64) -> Result<(), KernelError> {
        let mut state = ProcState {
            session,
            depth: chain.len() as u32,
            joined_by: enforcer_common::JOIN_LAUNCHER,
            ..Default::default()
        };
        state.chain[..chain.len()].copy_from_slice(chain);
        self.0.lock().unwrap().procs.insert(pid, state);
        Ok(())
    }
    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError> {
        let k = self.0.lock().unwrap();
        if k.fail_lookups {
            return Err(KernelError::Map {
                map: "PROCS".into(),
                reason: "lookup failed".into(),
            });
        }
        Ok(k.procs.get(&tid).copied())
    }
    fn doomed(&self, tid: u32) -> Result<bool, KernelError> {
        Ok(self.0.lock().unwrap().doomed.contains(&tid))
    }
    fn read_events(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        let k = self.0.lock().unwrap();
        let take = k.pending.len().saturating_sub(self.1).min(max);
        out.extend_from_slice(&k.pending[self.1..self.1 + take]);
        self.1 += take;
        Ok(())
    }
    fn release_events(&mut self) -> Result<(), KernelError> {
        let mut k = self.0.lock().unwrap();
        if !k.ignore_releases {
            k.pending.drain(..self.1);
            self.1 = 0;
        }
        Ok(())
    }
    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        Ok(self.0.lock().unwrap().losses.clone())
    }

    fn failures(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        Ok(self.0.lock().unwrap().failures.clone())
    }
    fn map_fill(&self) -> Result<Vec<crate::kernel::fill::MapFill>, KernelError> {
        Ok(self.0.lock().unwrap().fill.clone())
    }
    fn adopted(&self) -> Option<crate::kernel::pin::Adoption> {
        self.0.lock().unwrap().adoption.clone()
    }
    fn uses_envelope(&self) -> bool {
        self.0.lock().unwrap().uses_envelope
    }
    fn heartbeat(&mut self, running: bool) -> Result<(), KernelError> {
        self.0.lock().unwrap().heartbeats.push(running);
        Ok(())
    }
    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "mock".into(),
            kernel: "test".into(),
            features: vec![],
            rules: vec![],
        }
    }
}

/// A policy source whose next answer the test sets.
pub(crate) struct Source(pub(crate) Arc<Mutex<Result<CompiledPolicy, String>>>);

impl PolicySource for Source {
    fn load(&mut self, _grants: &[crate::policy::grant::Grant]) -> Result<CompiledPolicy, String> {
        self.0.lock().unwrap().clone()
    }
    fn describe(&self) -> String {
        "test policies".into()
    }
}

pub(crate) struct Harness {
    pub(crate) daemon: Daemon,
    pub(crate) kernel: Arc<Mutex<Kernel>>,
    pub(crate) next: Arc<Mutex<Result<CompiledPolicy, String>>>,
    pub(crate) log: std::path::PathBuf,
}

fn policy_v(rule_text: &str) -> CompiledPolicy {
    test_policy(&["coder", "helper"], &[(1, rule_text, "/work/**")])
}

pub(crate) fn start_in(dir: &Path) -> Harness {
    start_on(dir, Kernel::default())
}

fn start_on(dir: &Path, kernel: Kernel) -> Harness {
    start_shared(dir, Arc::new(Mutex::new(kernel)))
}

/// A daemon on a kernel an earlier daemon of the test used (a restart: pinned state adopted).
fn start_shared(dir: &Path, kernel: Arc<Mutex<Kernel>>) -> Harness {
    let next = Arc::new(Mutex::new(Ok(policy_v("coder.toml:1"))));
    let log = dir.join("audit.jsonl");
    let audit = AuditWriter::open(&log, Rotation::default()).unwrap();
    let options = CoreOptions {
        host: "testhost".into(),
        policy_dir: "/p".into(),
        state: Some(StateFile::new(&dir.join("state"))),
        inspect_procs: false,
        grants: Default::default(),
        roles: test_role_groups(),
    };
    let initial = next.lock().unwrap().clone().unwrap();
    let daemon = Daemon::start(
        Box::new(MockBackend(kernel.clone(), 0)),
        Box::new(Source(next.clone())),
        initial,
        audit,
        options,
    )
    .expect("daemon start with a mock backend");
    Harness {
        daemon,
        kernel,
        next,
        log,
    }
}

fn records(log: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    read_log(log, &mut |r| out.push(r), &mut |e| panic!("{e}")).unwrap();
    out
}

fn daemon_events(log: &Path) -> Vec<String> {
    records(log)
        .into_iter()
        .filter_map(|r| match r {
            Record::Daemon(d) => Some(d.event),
            _ => None,
        })
        .collect()
}

fn peer(pid: u32) -> Peer {
    Peer::unbound(Some(pid), 1000, 1000)
}

/// What the service does with a `register` request: the role check, then the registration.
trait RegisterAs {
    fn register_as(
        &mut self,
        peer: Peer,
        agent: &str,
        pid: u32,
    ) -> Result<Registration, DaemonError>;
}

impl RegisterAs for Daemon {
    fn register_as(
        &mut self,
        peer: Peer,
        agent: &str,
        pid: u32,
    ) -> Result<Registration, DaemonError> {
        let caller = self.authorize(&peer, "register")?;
        self.register(&peer, &caller, agent, pid)
    }
}

#[test]
fn start_applies_version_1_and_logs_start_and_backend() {
    let dir = crate::audit::writer::tests::tempdir();
    let h = start_in(&dir);
    assert_eq!(h.daemon.version(), 1);
    assert_eq!(h.kernel.lock().unwrap().applied.len(), 1);
    assert_eq!(daemon_events(&h.log), vec!["start", "backend"]);
}

#[test]
fn invalid_edit_is_rejected_whole_and_the_old_policy_stays() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    *h.next.lock().unwrap() = Err("p.toml:3:7: unknown field `raed`".into());
    let err = h
        .daemon
        .reload("SIGHUP", true)
        .expect_err("an invalid policy must not reload");
    assert!(err.to_string().contains("p.toml:3:7"), "{err}");
    assert_eq!(
        h.daemon.version(),
        1,
        "version must not change on a rejected reload"
    );
    assert_eq!(
        h.kernel.lock().unwrap().applied.len(),
        1,
        "nothing may be applied to the kernel"
    );
    assert_eq!(h.daemon.policy().rules[0].text_id, "coder.toml:1");
    assert_eq!(h.daemon.stats().reload_failures, 1);
    assert_eq!(
        daemon_events(&h.log).last().map(String::as_str),
        Some("reload-failed")
    );
}

#[test]
fn kernel_apply_failure_keeps_the_version() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    *h.next.lock().unwrap() = Ok(policy_v("coder.toml:2"));
    h.kernel.lock().unwrap().fail_next_apply = true;
    assert!(h.daemon.reload("test", false).is_err());
    assert_eq!(h.daemon.version(), 1);
    assert_eq!(h.daemon.policy().rules[0].text_id, "coder.toml:1");
}

#[test]
fn valid_reload_bumps_the_version_and_identical_ones_do_nothing() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    assert_eq!(
        h.daemon.reload("file change", false).unwrap(),
        Reloaded {
            version: 1,
            changed: false
        }
    );
    *h.next.lock().unwrap() = Ok(policy_v("coder.toml:2"));
    assert_eq!(
        h.daemon.reload("file change", false).unwrap(),
        Reloaded {
            version: 2,
            changed: true
        }
    );
    assert_eq!(
        h.daemon.reload("SIGHUP", true).unwrap(),
        Reloaded {
            version: 3,
            changed: true
        }
    );
    let applied: Vec<u32> = h
        .kernel
        .lock()
        .unwrap()
        .applied
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(applied, vec![1, 2, 3]);
}

#[test]
fn versions_continue_after_a_restart() {
    let dir = crate::audit::writer::tests::tempdir();
    {
        let mut h = start_in(&dir);
        *h.next.lock().unwrap() = Ok(policy_v("coder.toml:2"));
        h.daemon.reload("test", false).unwrap();
        h.daemon.stop("test").unwrap();
    }
    let h = start_in(&dir);
    assert_eq!(
        h.daemon.version(),
        3,
        "a restarted daemon must not reuse version numbers"
    );
    let seqs: Vec<u64> = records(&h.log).iter().map(Record::seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq must continue across restarts: {seqs:?}"
    );
}

#[test]
fn events_of_an_older_version_resolve_against_that_version() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    *h.next.lock().unwrap() = Ok(policy_v("coder.toml:99"));
    h.daemon.reload("test", false).unwrap();
    let mut header = EventHeader {
        op: OP_OPEN,
        verdict: VERDICT_DENY,
        rule: 1,
        policy_version: 1,
        depth: 1,
        ..Default::default()
    };
    header.chain[0] = 1;
    h.kernel.lock().unwrap().queue(header, b"/work/x");
    assert_eq!(h.daemon.pump().unwrap().records, 1);
    let event = records(&h.log).into_iter().find_map(|r| {
        if let Record::Event(e) = r {
            Some(e)
        } else {
            None
        }
    });
    let event = event.expect("the event is in the log");
    assert_eq!(
        (event.rule.as_str(), event.policy_version),
        ("coder.toml:1", 1)
    );
    let key = ("coder".to_string(), "open".to_string(), "deny".to_string());
    assert_eq!(h.daemon.stats().decisions.get(&key), Some(&1));
}

fn deny_event(path_index: u32) -> EventHeader {
    let mut header = EventHeader {
        op: OP_OPEN,
        verdict: VERDICT_DENY,
        rule: 1,
        policy_version: 1,
        depth: 1,
        pid: path_index,
        tgid: path_index,
        ..Default::default()
    };
    header.chain[0] = 1;
    header
}

fn events(log: &Path) -> Vec<crate::audit::EventRecord> {
    records(log)
        .into_iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn events_written_but_not_released_when_the_daemon_dies_are_written_again_by_the_next() {
    let dir = crate::audit::writer::tests::tempdir();
    let h = start_in(&dir);
    let kernel = h.kernel.clone();
    let positions: Vec<u64> = (0..3)
        .map(|i| {
            kernel
                .lock()
                .unwrap()
                .queue(deny_event(i), format!("/work/{i}").as_bytes())
        })
        .collect();
    let mut h = h;
    // SIGKILL right after the write(2), before the release.
    kernel.lock().unwrap().ignore_releases = true;
    assert_eq!(h.daemon.pump().unwrap().records, 3);
    assert_eq!(
        kernel.lock().unwrap().pending.len(),
        3,
        "nothing may be released that the kernel then forgets"
    );
    drop(h);
    kernel.lock().unwrap().ignore_releases = false;
    let mut h = start_shared(&dir, kernel.clone());
    kernel.lock().unwrap().queue(deny_event(3), b"/work/3");
    h.daemon.pump().unwrap();
    assert!(
        kernel.lock().unwrap().pending.is_empty(),
        "written events are released"
    );
    let logged: Vec<(u64, Option<String>)> = events(&h.log)
        .into_iter()
        .map(|e| (e.ring_pos.unwrap(), e.path))
        .collect();
    let mut expected: Vec<(u64, Option<String>)> = Vec::new();
    for round in [&positions[..], &positions[..]] {
        expected.extend(
            round
                .iter()
                .enumerate()
                .map(|(i, p)| (*p, Some(format!("/work/{i}")))),
        );
    }
    let last = logged.last().unwrap().0;
    expected.push((last, Some("/work/3".into())));
    assert_eq!(
        logged, expected,
        "the unreleased batch must come again, with the same ring_pos"
    );
    // seq numbers the lines: every line has its own, duplicates included.
    let seqs: Vec<u64> = records(&h.log).iter().map(Record::seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn while_the_log_cannot_be_written_no_event_is_taken_and_none_released() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let kernel = h.kernel.clone();
    kernel.lock().unwrap().queue(deny_event(0), b"/work/0");
    kernel.lock().unwrap().queue(deny_event(1), b"/work/1");
    let real = h.daemon.audit.replace_file(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    );
    let err = h
        .daemon
        .pump()
        .expect_err("a full disk is an error")
        .to_string();
    assert!(err.contains("No space left"), "{err}");
    kernel.lock().unwrap().queue(deny_event(2), b"/work/2");
    assert!(h.daemon.pump().is_err());
    assert_eq!(
        kernel.lock().unwrap().pending.len(),
        3,
        "nothing released while the log is not written"
    );
    assert_eq!(
        h.daemon.audit.queued(),
        2,
        "the third event stays in the kernel, not in memory"
    );
    h.daemon.audit.replace_file(real);
    h.daemon.pump().unwrap();
    assert!(kernel.lock().unwrap().pending.is_empty());
    let paths: Vec<String> = events(&h.log).into_iter().filter_map(|e| e.path).collect();
    assert_eq!(paths, ["/work/0", "/work/1", "/work/2"]);
}

#[test]
fn kernel_losses_count_as_reported_only_once_their_record_is_in_the_file() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let kernel = h.kernel.clone();
    kernel.lock().unwrap().losses = vec![(1, 5)];
    h.daemon.audit.replace_file(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    );
    assert!(h.daemon.pump().is_err());
    drop(h); // killed with the lost record still queued in memory
    let h = start_shared(&dir, kernel.clone());
    let mut h = h;
    h.daemon.pump().unwrap();
    let lost: Vec<(u64, Option<u64>)> = records(&h.log)
        .into_iter()
        .filter_map(|r| match r {
            Record::Lost(l) => Some((l.count, l.total)),
            _ => None,
        })
        .collect();
    assert_eq!(
        lost,
        [(5, Some(5))],
        "the next daemon reports the losses the killed one could not write"
    );
}

#[test]
fn losses_are_logged_as_deltas_once() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    h.kernel.lock().unwrap().losses = vec![(1, 5), (2, 0)];
    h.daemon.pump().unwrap();
    h.daemon.last_loss_poll = None;
    h.kernel.lock().unwrap().losses = vec![(1, 7), (2, 0)];
    h.daemon.pump().unwrap();
    h.daemon.last_loss_poll = None;
    h.daemon.pump().unwrap();
    let lost: Vec<(u64, Option<String>)> = records(&h.log)
        .into_iter()
        .filter_map(|r| {
            if let Record::Lost(l) = r {
                Some((l.count, l.agent))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        lost,
        vec![(5, Some("coder".into())), (2, Some("coder".into()))]
    );
    drop(h);
    // A restarted daemon must not report the same kernel losses again.
    let mut h = start_in(&dir);
    h.kernel.lock().unwrap().losses = vec![(1, 7)];
    h.daemon.pump().unwrap();
    let lost = records(&h.log)
        .into_iter()
        .filter(|r| matches!(r, Record::Lost(_)))
        .count();
    assert_eq!(
        lost, 2,
        "losses already reported were reported again after a restart"
    );
}

#[test]
fn register_checks_caller_agent_and_membership() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let err = h
        .daemon
        .register_as(peer(10), "coder", 11)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pid 11 is not the caller"), "{err}");
    let err = h
        .daemon
        .register_as(peer(10), "nobody", 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no agent named \"nobody\"") && err.contains("coder, helper"),
        "{err}"
    );
    assert!(
        h.kernel.lock().unwrap().procs.is_empty(),
        "refused registrations must change nothing"
    );

    let r = h.daemon.register_as(peer(10), "helper", 10).unwrap();
    let (session, version) = (r.session, r.policy_version);
    assert_eq!(r.envelope, None, "the mock backend uses no envelope");
    assert_eq!((session.len(), version), (16, 1));
    let state = h.kernel.lock().unwrap().procs[&10];
    assert_eq!(
        (state.agent(), session_hex(state.session)),
        (2, session.clone())
    );

    let err = h
        .daemon
        .register_as(peer(10), "coder", 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("process 10 of chain helper")
            && err.contains(&session)
            && err.contains("agent \"helper\" does not delegate to \"coder\""),
        "{err}"
    );
    assert_eq!(
        h.kernel.lock().unwrap().procs[&10].agent(),
        2,
        "membership must not change"
    );
    assert_eq!(
        daemon_events(&h.log).last().map(String::as_str),
        Some("register-refused")
    );
}

#[test]
fn a_delegating_agent_starts_a_narrower_chain_up_to_the_depth_limit() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    // coder (1) and helper (2) delegate to each other: chains may alternate, never grow past 4.
    let mut p = policy_v("coder.toml:2");
    p.agents[0].config.delegate_lo = 1 << 2;
    p.agents[1].config.delegate_lo = 1 << 1;
    *h.next.lock().unwrap() = Ok(p);
    h.daemon.reload("test", false).unwrap();

    let first = h.daemon.register_as(peer(10), "coder", 10).unwrap().session;
    let err = h
        .daemon
        .register_as(peer(10), "coder", 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("it already is agent \"coder\""), "{err}");
    let mut sessions = vec![first];
    for (agent, depth) in [("helper", 2), ("coder", 3), ("helper", 4)] {
        let session = h.daemon.register_as(peer(10), agent, 10).unwrap().session;
        let state = h.kernel.lock().unwrap().procs[&10];
        assert_eq!(state.depth, depth, "{agent}");
        assert!(!sessions.contains(&session), "every run is a new session");
        sessions.push(session);
    }
    assert_eq!(h.kernel.lock().unwrap().procs[&10].chain, [1, 2, 1, 2]);
    let err = h
        .daemon
        .register_as(peer(10), "coder", 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chain coder>helper>coder>helper") && err.contains("depth limit (4 agents)"),
        "{err}"
    );
    assert_eq!(
        h.kernel.lock().unwrap().procs[&10].depth,
        4,
        "refused: never widened, never changed"
    );
    assert_eq!(
        daemon_events(&h.log).last().map(String::as_str),
        Some("register-refused")
    );
}

#[test]
fn subscribers_get_records_from_next_seq_on() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let (next_seq, mut rx) = h.daemon.subscribe();
    h.daemon.register_as(peer(5), "coder", 5).unwrap();
    let line = rx.try_recv().expect("a live record");
    let record: Record = serde_json::from_str(&line).unwrap();
    assert_eq!(record.seq(), next_seq);
    assert_eq!(h.daemon.status().subscribers, 1);
}

#[test]
fn status_reports_version_agents_and_counters() {
    let dir = crate::audit::writer::tests::tempdir();
    let h = start_in(&dir);
    let status = h.daemon.status();
    assert_eq!(
        (status.policy_version, status.backend.as_str()),
        (1, "mock")
    );
    let names: Vec<&str> = status.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["coder", "helper"]);
    h.kernel.lock().unwrap().fill = vec![crate::kernel::fill::MapFill {
        map: "PROCS".into(),
        entries: 2,
        capacity: 64,
    }];
    let maps = h.daemon.status().maps;
    assert_eq!(
        maps.iter()
            .map(|m| (m.map.as_str(), m.entries, m.capacity))
            .collect::<Vec<_>>(),
        [("PROCS", 2, 64)],
        "the backend's fill levels reach the report"
    );
}

#[test]
fn status_names_the_kernels_failure_points() {
    let dir = crate::audit::writer::tests::tempdir();
    let h = start_in(&dir);
    h.kernel.lock().unwrap().failures = vec![
        (enforcer_common::FAIL_PATH_COPY, 0),
        (enforcer_common::FAIL_USER_SOCKADDR, 3),
        (15, 1),
    ];
    let failures = h.daemon.status().failures;
    assert_eq!(
        failures
            .iter()
            .map(|f| (f.point.as_str(), f.count))
            .collect::<Vec<_>>(),
        [("path-copy", 0), ("user-sockaddr", 3), ("#15", 1)],
        "every point the kernel reports, by its stable name (an unnamed one by number)"
    );
}

#[test]
fn events_of_the_previous_daemon_resolve_after_a_restart() {
    let dir = crate::audit::writer::tests::tempdir();
    {
        let mut h = start_in(&dir);
        *h.next.lock().unwrap() = Ok(policy_v("coder.toml:2"));
        h.daemon.reload("test", false).unwrap();
        h.daemon.stop("test").unwrap();
    }
    let mut h = start_in(&dir);
    assert_eq!(h.daemon.version(), 3);
    // An event of version 2 still in the (adopted) ring buffer.
    let mut header = EventHeader {
        op: OP_OPEN,
        verdict: VERDICT_DENY,
        rule: 1,
        policy_version: 2,
        depth: 1,
        ..Default::default()
    };
    header.chain[0] = 1;
    h.kernel.lock().unwrap().queue(header, b"/work/y");
    h.daemon.pump().unwrap();
    let event = records(&h.log).into_iter().find_map(|r| {
        if let Record::Event(e) = r {
            Some(e)
        } else {
            None
        }
    });
    let event = event.expect("the event is in the log");
    assert_eq!(
        (event.rule.as_str(), event.agent.as_deref()),
        ("coder.toml:2", Some("coder"))
    );
    assert!(event.flags.is_empty(), "{:?}", event.flags);
}

#[test]
fn a_restart_after_a_crash_says_so_in_the_start_record() {
    let dir = crate::audit::writer::tests::tempdir();
    let start_message = |log: &Path| {
        records(log)
            .into_iter()
            .filter_map(|r| {
                if let Record::Daemon(d) = r {
                    (d.event == "start").then_some(d.message)
                } else {
                    None
                }
            })
            .next_back()
            .flatten()
            .unwrap_or_default()
    };
    {
        let h = start_in(&dir);
        drop(h); // no stop record: a crash
    }
    let h = start_in(&dir);
    let message = start_message(&h.log);
    assert!(
        message.contains("did not stop cleanly") && message.contains("seq 2"),
        "{message}"
    );
    h.daemon.stop("test").unwrap();
    let h = start_in(&dir);
    assert!(
        !start_message(&h.log).contains("did not stop cleanly"),
        "a clean stop must not be reported as a crash"
    );
}

#[test]
fn adopting_pinned_state_logs_restarted_with_the_downtime_and_versions_above_the_kernels() {
    let dir = crate::audit::writer::tests::tempdir();
    let boot_now = {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    let adoption = crate::kernel::pin::Adoption {
        pin_dir: "/sys/fs/bpf/x".into(),
        previous_pid: Some(4242),
        last_heartbeat_boot_ns: boot_now - 3_000_000_000,
        relinked: vec!["file_open".into()],
        adoptions: 0,
        policy_version: 7,
        agent_threads: 3,
        procs_capacity: 65536,
        ring_released_pos: 0,
    };
    let mut h = start_on(
        &dir,
        Kernel {
            adoption: Some(adoption),
            ..Kernel::default()
        },
    );
    // The state dir is fresh (says version 0), the kernel ran version 7: never reuse a number.
    assert_eq!(h.daemon.version(), 8);
    assert_eq!(daemon_events(&h.log), ["start", "restarted", "backend"]);
    let restarted = records(&h.log)
        .into_iter()
        .find_map(|r| match r {
            Record::Daemon(d) if d.event == "restarted" => Some(d),
            _ => None,
        })
        .unwrap();
    let message = restarted.message.clone().unwrap();
    assert!(
        message.contains("daemon pid 4242 ended without stopping")
            && message.contains("3 agent threads")
            && message.contains("file_open"),
        "{message}"
    );
    let down = clock::parse_rfc3339(restarted.down_since.as_deref().unwrap()).unwrap();
    let ago = clock::now_ns() - down;
    assert!(
        (2_500_000_000..10_000_000_000).contains(&ago),
        "down_since is {ago} ns ago, expected about 3 s"
    );
    // Heartbeats while running, and a clean stop marks the state as stopped.
    h.daemon.pump().unwrap();
    h.daemon.stop("SIGTERM").unwrap();
    let heartbeats = h.kernel.lock().unwrap().heartbeats.clone();
    let (last, running) = heartbeats.split_last().unwrap();
    assert!(
        !last && !running.is_empty() && running.iter().all(|&r| r),
        "{heartbeats:?}"
    );
}

#[test]
fn a_fresh_install_writes_no_restarted_record() {
    let dir = crate::audit::writer::tests::tempdir();
    let h = start_in(&dir);
    assert!(!daemon_events(&h.log).contains(&"restarted".to_string()));
}

/// When a window the kernel holds ends, the daemon applies again (writing the next window); not
/// before.
#[test]
fn a_window_end_applies_the_policy_again() {
    use crate::policy::when::Condition;
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let now = jiff::Timestamp::now();
    let mut windowed = policy_v("coder.toml:1");
    windowed.conditions = vec![Condition::Between {
        start: now,
        end: now + jiff::SignedDuration::from_millis(300),
    }];
    *h.next.lock().unwrap() = Ok(windowed);
    h.daemon.reload("test", false).unwrap();
    assert_eq!(h.kernel.lock().unwrap().applied.len(), 2);
    h.daemon.refresh_due().unwrap();
    assert_eq!(
        h.kernel.lock().unwrap().applied.len(),
        2,
        "nothing is due before the window ends"
    );
    std::thread::sleep(Duration::from_millis(350));
    h.daemon.refresh_due().unwrap();
    assert_eq!(
        h.kernel.lock().unwrap().applied.len(),
        3,
        "the window's end applies again"
    );
    let last = records(&h.log).into_iter().rev().find_map(|r| match r {
        Record::Daemon(d) if d.event == "reload" => d.message,
        _ => None,
    });
    assert_eq!(last.as_deref(), Some("trigger: time window boundary"));
    // The ended window never opens again: nothing more is due.
    h.daemon.refresh_due().unwrap();
    assert_eq!(h.kernel.lock().unwrap().applied.len(), 3);
}

fn test_role_groups() -> RoleGroups {
    RoleGroups {
        launcher: Some(("launchers".into(), 1000)),
        auditor: Some(("auditors".into(), 1001)),
        admin: Some(("admins".into(), 1002)),
    }
}

fn api_refused(log: &Path) -> Vec<DaemonRecord> {
    records(log)
        .into_iter()
        .filter_map(|r| match r {
            Record::Daemon(d) if d.event == "api-refused" => Some(d),
            _ => None,
        })
        .collect()
}

const EVERY_VERB: [&str; 7] = [
    "register",
    "status",
    "grants",
    "subscribe",
    "grant",
    "revoke",
    "reload",
];

#[test]
fn an_agent_member_may_only_register_even_as_root() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    // Root and in the admin group: an agent member all the same.
    let root_agent = Peer {
        groups: vec![1002],
        ..Peer::unbound(Some(10), 0, 0)
    };
    h.daemon
        .register_as(root_agent.clone(), "coder", 10)
        .unwrap();
    let session = session_hex(h.kernel.lock().unwrap().procs[&10].session);
    for verb in EVERY_VERB {
        let result = h.daemon.authorize(&root_agent, verb);
        if verb == "register" {
            assert!(
                result.is_ok(),
                "register (of a sub-agent) goes on to the delegation check"
            );
            continue;
        }
        let err = result.expect_err(verb).to_string();
        assert!(
            err.starts_with(&format!("permission denied: {verb} needs the "))
                && err.contains("(pid 10, uid 0, gid 0) is a member of agent \"coder\"")
                && err.contains(&session),
            "{err}"
        );
    }
    let refused = api_refused(&h.log);
    let verbs: Vec<&str> = refused.iter().filter_map(|r| r.verb.as_deref()).collect();
    assert_eq!(
        verbs,
        ["status", "grants", "subscribe", "grant", "revoke", "reload"]
    );
    for r in &refused {
        assert_eq!(r.agent.as_deref(), Some("coder"));
        assert_eq!(r.session.as_deref(), Some(session.as_str()));
        let p = r.peer.as_ref().expect("peer");
        assert_eq!((p.pid, p.uid, p.gid), (Some(10), 0, 0));
        assert_eq!(p.roles, ["agent-member"]);
    }
    // A thread in the doomed table is an agent member too.
    h.kernel.lock().unwrap().doomed.push(20);
    let err = h
        .daemon
        .authorize(&Peer::unbound(Some(20), 0, 0), "grant")
        .unwrap_err()
        .to_string();
    assert!(err.contains("doomed"), "{err}");
}

#[test]
fn launcher_auditor_admin_and_nobody() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let with_groups = |uid, gid, groups: &[u32]| Peer {
        groups: groups.to_vec(),
        ..Peer::unbound(Some(30), uid, gid)
    };
    let cases: [(&str, Peer, &[&str]); 5] = [
        (
            "launcher by gid",
            with_groups(1000, 1000, &[]),
            &["register", "status", "grants"],
        ),
        (
            "auditor by supplementary group",
            with_groups(1500, 1500, &[1001]),
            &["status", "grants", "subscribe"],
        ),
        ("admin group", with_groups(1500, 1500, &[1002]), &EVERY_VERB),
        ("root", with_groups(0, 0, &[]), &EVERY_VERB),
        ("nobody", with_groups(1500, 1500, &[7]), &[]),
    ];
    for (who, peer, may) in cases {
        for verb in EVERY_VERB {
            let result = h.daemon.authorize(&peer, verb);
            assert_eq!(
                result.is_ok(),
                may.contains(&verb),
                "{who} {verb}: {result:?}"
            );
        }
    }
    let err = h
        .daemon
        .authorize(&with_groups(1000, 1000, &[]), "grant")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "permission denied: grant needs the admin role; the caller (pid 30, uid 1000, gid 1000) has the role launcher"
    );
    let err = h
        .daemon
        .authorize(&with_groups(1500, 1500, &[]), "status")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no role (roles come from uid 0, api.group \"launchers\" (gid 1000)"),
        "{err}"
    );
    // A refused request changes nothing and is logged with the caller.
    let last = api_refused(&h.log).pop().expect("api-refused record");
    assert_eq!(last.verb.as_deref(), Some("status"));
    assert_eq!(last.agent, None);
    assert_eq!(last.peer.as_ref().map(|p| p.uid), Some(1500));
}

#[test]
fn unidentifiable_callers_get_nothing() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    // Another pid namespace: root or not, the daemon cannot tell whether it is an agent.
    let hidden = Peer::unbound(None, 0, 0);
    for verb in EVERY_VERB {
        let err = h.daemon.authorize(&hidden, verb).unwrap_err().to_string();
        assert!(err.contains("not visible to the daemon"), "{err}");
    }
    // A failing kernel lookup fails closed, for root too.
    h.kernel.lock().unwrap().fail_lookups = true;
    let err = h
        .daemon
        .authorize(&Peer::unbound(Some(40), 0, 0), "status")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot be identified") && err.contains("lookup failed"),
        "{err}"
    );
    assert_eq!(api_refused(&h.log).len(), EVERY_VERB.len() + 1);
}

#[test]
fn accepted_grant_revoke_reload_name_the_peer() {
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_in(&dir);
    let admin = Peer::unbound(Some(50), 0, 0);
    let caller = h.daemon.authorize(&admin, "grant").unwrap();
    let (g, _) = h
        .daemon
        .grant(
            &admin,
            &caller,
            "coder",
            "file.read /tmp/x",
            Duration::from_secs(60),
            None,
        )
        .unwrap();
    h.daemon.revoke(g.id, &admin, &caller).unwrap();
    h.daemon
        .reload_by("API request", true, Some((&admin, &caller)))
        .unwrap();
    let named: Vec<(String, Option<u32>)> = records(&h.log)
        .into_iter()
        .filter_map(|r| match r {
            Record::Daemon(d)
                if ["grant", "grant-revoked", "reload"].contains(&d.event.as_str()) =>
            {
                Some((d.event, d.peer.and_then(|p| p.pid)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        named,
        [
            ("grant".to_owned(), Some(50)),
            ("grant-revoked".to_owned(), Some(50)),
            ("reload".to_owned(), Some(50))
        ]
    );
}

/// The real loader behind the daemon: a reload whose policy directory gained an include that
/// leaves the root, a FIFO, or an oversized set is rejected whole; the running policy stays,
/// and no line of the outside file reaches the `reload-failed` record or the status.
#[test]
fn a_reload_with_an_escaping_or_blocking_include_is_rejected_whole() {
    use crate::daemon::{dns::tests::FakeLookup, policy_source::PolicyDir};

    let dir = crate::audit::writer::tests::tempdir();
    let root = dir.join("policies");
    std::fs::create_dir_all(root.join("sets")).unwrap();
    std::fs::write(
        dir.join("secret.toml"),
        "[set]\nname = \"s\"\nleaked = \"do-not-echo\"\n",
    )
    .unwrap();
    let agent = |include: &str| {
        std::fs::write(
            root.join("coder.toml"),
            format!(
                "include = [{include:?}]\n[agent]\nname = \"coder\"\n[file]\nread = [\"/work/**\"]\n"
            ),
        )
        .unwrap();
    };
    std::fs::write(root.join("sets/ok.toml"), "[set]\nname = \"ok\"\n").unwrap();
    agent("sets/ok.toml");
    let mut source = PolicyDir::new(
        &root,
        Duration::from_secs(60),
        Arc::new(FakeLookup::default()),
    );
    let initial = source.load(&[]).unwrap_or_else(|e| panic!("{e}"));
    let kernel = Arc::new(Mutex::new(Kernel::default()));
    let log = dir.join("audit.jsonl");
    let mut daemon = Daemon::start(
        Box::new(MockBackend(kernel.clone(), 0)),
        Box::new(source),
        initial,
        AuditWriter::open(&log, Rotation::default()).unwrap(),
        CoreOptions {
            host: "testhost".into(),
            policy_dir: root.display().to_string(),
            state: None,
            inspect_procs: false,
            grants: Default::default(),
            roles: RoleGroups::default(),
        },
    )
    .expect("daemon start");

    let make_fifo = |path: &Path| {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    };
    let make_big = |path: &Path| {
        std::fs::File::create(path)
            .unwrap()
            .set_len(crate::policy::MAX_POLICY_FILE_BYTES + 1)
            .unwrap();
    };
    let make_nothing = |_: &Path| {};
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make<'_>, &str); 3] = [
        (
            "../secret.toml",
            &make_nothing,
            "outside the policy directory",
        ),
        ("sets/pipe.toml", &make_fifo, "not a regular file (a FIFO)"),
        ("sets/big.toml", &make_big, "larger than"),
    ];
    for (include, make, expected) in cases {
        let target = root.join(include);
        make(&target);
        agent(include);
        let err = daemon
            .reload("test", true)
            .expect_err("the reload must be refused")
            .to_string();
        assert!(err.contains(expected), "{include}: {err}");
        assert_eq!(daemon.version(), 1, "{include}: the version stays");
        assert_eq!(
            kernel.lock().unwrap().applied.len(),
            1,
            "{include}: nothing applied"
        );
        if target.starts_with(&root) {
            std::fs::remove_file(&target).unwrap();
        }
    }
    let status = format!("{:?}", daemon.stats());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("do-not-echo") && !status.contains("do-not-echo"));
    assert_eq!(
        daemon_events(&log)
            .iter()
            .filter(|e| *e == "reload-failed")
            .count(),
        3
    );
    agent("sets/ok.toml");
    assert_eq!(daemon.reload("test", true).unwrap().version, 2);
}

/// The `start` record states where it found the log's end: after a clean stop the chain goes
/// on and verifies; records removed from the end while no daemon ran are reported by the next
/// start (the state file holds the stop's seq and hash) and make `--verify` fail there.
#[test]
fn a_restart_states_the_log_tail_and_detects_a_truncated_one() {
    use crate::audit::verify::verify_log;
    let start_detail = |log: &Path| {
        records(log)
            .into_iter()
            .filter_map(|r| match r {
                Record::Daemon(d) if d.event == "start" => d.detail,
                _ => None,
            })
            .next_back()
            .expect("a start record")
    };
    let dir = crate::audit::writer::tests::tempdir();
    let h = start_in(&dir);
    let log = h.log.clone();
    h.daemon.stop("test").unwrap();
    let tail = start_detail(&log)["log_tail"].clone();
    assert_eq!(tail["last_seq"], 0, "{tail}");
    assert!(tail["last_hash"].is_null(), "{tail}");

    let h = start_in(&dir);
    h.daemon.stop("test").unwrap();
    let tail = start_detail(&log)["log_tail"].clone();
    assert_eq!(tail["torn_bytes"], 0, "{tail}");
    assert!(tail.get("truncated").is_none(), "a clean restart: {tail}");
    assert_eq!(tail["last_hash"].as_str().map(str::len), Some(64), "{tail}");
    let intact = verify_log(&log).unwrap().unwrap_or_else(|b| panic!("{b}"));
    assert!(intact.from_genesis, "{intact}");

    // Remove the last two records (the stop and the record before it) while no daemon runs.
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    let kept = &kept[..kept.len() - 2];
    std::fs::write(&log, format!("{}\n", kept.join("\n"))).unwrap();
    assert!(
        verify_log(&log).unwrap().is_ok(),
        "a cut at a line end alone is invisible in the file"
    );
    let h = start_in(&dir);
    h.daemon.stop("test").unwrap();
    let tail = start_detail(&log)["log_tail"].clone();
    assert_eq!(tail["truncated"], true, "{tail}");
    let broken = verify_log(&log)
        .unwrap()
        .expect_err("the start record reports the cut");
    assert!(
        broken.reason.contains("records are missing at its end"),
        "{broken}"
    );
}

#[test]
fn a_widening_reload_names_the_sessions_under_the_older_envelope() {
    use crate::policy::envelope::Reach;
    let dir = crate::audit::writer::tests::tempdir();
    let mut h = start_on(
        &dir,
        Kernel {
            uses_envelope: true,
            ..Kernel::default()
        },
    );
    let r = h.daemon.register_as(peer(10), "coder", 10).unwrap();
    let envelope = r.envelope.expect("the launcher is sent an envelope");
    assert_eq!(envelope.read, Reach::Within(vec!["/work".into()]));
    assert_eq!(envelope.policy_version, 1);
    assert!(matches!(
        h.daemon.session_envelope(&r.session),
        Some((_, false))
    ));
    // The same envelope under new rule ids: nothing to say.
    *h.next.lock().unwrap() = Ok(policy_v("coder.toml:7"));
    h.daemon.reload("test", false).unwrap();
    assert!(!daemon_events(&h.log)
        .iter()
        .any(|e| e == "envelope-widened"));
    // Wider: the running session keeps its envelope, and the daemon says so.
    *h.next.lock().unwrap() = Ok(test_policy(
        &["coder", "helper"],
        &[
            (1, "coder.toml:1", "/work/**"),
            (1, "coder.toml:2", "/data/**"),
        ],
    ));
    h.daemon.reload("test", false).unwrap();
    assert!(matches!(
        h.daemon.session_envelope(&r.session),
        Some((_, true))
    ));
    assert!(daemon_events(&h.log)
        .iter()
        .any(|e| e == "envelope-widened"));
    let later = h.daemon.register_as(peer(11), "coder", 11).unwrap();
    assert_eq!(
        later.envelope.map(|e| e.read),
        Some(Reach::Within(vec!["/data".into(), "/work".into()])),
        "a launch after the reload gets the wider envelope"
    );
}
