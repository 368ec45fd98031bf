//! The daemon's state machine. Synchronous and backend-agnostic: the async service calls it,
//! tests drive it with a mock backend and an in-memory policy source.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use enforcer_common::MAX_CHAIN;
use tokio::sync::broadcast;

use super::{
    dns::LookupResult,
    grants::GrantBook,
    policy_source::{HostRefresh, PolicySource},
    procs,
    roles::{Caller, RoleGroups},
    state::{AuditEnd, DaemonState, StateFile},
    DaemonError,
};
use crate::{
    api::{peer, server::Peer},
    audit::{
        chain,
        clock::{self, BootClock},
        encode::EventEncoder,
        history::{PolicyHistory, PolicyNames, DEFAULT_VERSIONS_KEPT},
        record::{agent_name, chain_ids, session_hex, EventContext},
        writer::AuditWriter,
        DaemonRecord, LostRecord, Record,
    },
    kernel::{Backend, RawEvent},
    policy::compile::CompiledPolicy,
};

/// Live records buffered per subscriber before it is told it lagged.
const LIVE_BUFFER: usize = 4096;
/// Kernel loss counters are read at most this often.
const LOSS_POLL: Duration = Duration::from_millis(500);
/// Events taken from the kernel at a time. Their ring-buffer space is released only once they
/// are in the log, so smaller batches give the kernel its space back sooner.
const BATCH_EVENTS: usize = 8192;
/// Batches per [`Daemon::pump`] call at most, so a flood cannot starve the event loop.
const BATCHES_PER_PUMP: usize = 32;

pub struct CoreOptions {
    pub host: String,
    pub policy_dir: String,
    /// Where the last policy version and reported losses are kept; `None` in tests.
    pub state: Option<StateFile>,
    /// Look processes up in /proc (executables, status counts); off in tests with fake pids.
    pub inspect_procs: bool,
    /// Grants kept across restarts (the policy given to `start` was compiled with them).
    pub grants: GrantBook,
    /// The groups that give API roles (daemon/roles.rs).
    pub roles: RoleGroups,
}

/// Counters behind `status` and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// (agent, op, verdict) -> decisions.
    pub decisions: BTreeMap<(String, String, String), u64>,
    /// agent -> events the kernel could not deliver.
    pub losses: BTreeMap<String, u64>,
    pub reloads: u64,
    pub reload_failures: u64,
    pub last_reload_error: Option<String>,
}

pub struct Daemon {
    backend: Box<dyn Backend>,
    source: Box<dyn PolicySource>,
    /// The running policy, and the names of recent versions (for events stamped with them).
    policy: Arc<CompiledPolicy>,
    history: PolicyHistory,
    version: u32,
    audit: AuditWriter,
    live: broadcast::Sender<Arc<str>>,
    options: CoreOptions,
    saved: DaemonState,
    stats: Stats,
    started_ns: i128,
    started: Instant,
    last_loss_poll: Option<Instant>,
    raw: Vec<RawEvent>,
    grants: GrantBook,
    /// When a grant expires or a time window the kernel holds ends: then the expired grants
    /// are logged and the next windows written (`refresh_due`).
    refresh_at: Option<jiff::Timestamp>,
    encoder: EventEncoder,
    /// Kernel loss counts written (or queued) as `lost` records; saved to the state file as
    /// reported only once the records are in the file.
    losses_logged: BTreeMap<u32, u64>,
    /// The Landlock envelope each launcher session was sent (by session id), so status and
    /// reloads can say which sessions run under an older one (a domain only shrinks).
    envelopes: HashMap<String, crate::policy::envelope::Envelope>,
}

/// What one [`Daemon::pump`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Records written (events and `lost` records).
    pub records: usize,
    /// The kernel may hold more events: pump again soon.
    pub more: bool,
}

/// What a registration gives the launcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub session: String,
    pub policy_version: u32,
    /// The Landlock envelope the launcher applies (backends that use them).
    pub envelope: Option<crate::policy::envelope::Envelope>,
    /// Whether the launcher installs the seccomp filter (`kernel::seccomp`).
    pub syscall_guard: bool,
}

/// Outcome of a reload that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub version: u32,
    /// False when the new policy compiled to exactly the running one (nothing applied).
    pub changed: bool,
}

impl Daemon {
    /// Apply `policy` (already loaded from `source`) as the first version of this run and write
    /// the start and backend records. Kernel state adopted from a previous run is not cleared:
    /// the apply replaces its rules atomically.
    pub fn start(
        mut backend: Box<dyn Backend>,
        source: Box<dyn PolicySource>,
        policy: CompiledPolicy,
        audit: AuditWriter,
        mut options: CoreOptions,
    ) -> Result<Self, DaemonError> {
        let grants = std::mem::take(&mut options.grants);
        let mut saved = match &options.state {
            Some(state) => state.load()?,
            None => DaemonState::default(),
        };
        let log_tail = log_tail_report(&audit, saved.audit_end.take());
        // Above the adopted kernel's version too: versions never repeat, even when the state
        // directory was lost.
        let adopted_version = backend.adopted().map_or(0, |a| a.policy_version);
        let version = saved
            .policy_version
            .max(adopted_version)
            .wrapping_add(1)
            .max(1);
        // On adopted state this is one atomic slot switch: the previous policy enforces until
        // the new one does.
        // Shared with the backend: one copy of the running policy, not two.
        let policy = Arc::new(policy);
        backend.apply_shared(policy.clone(), version)?;
        let mut history = PolicyHistory::new(DEFAULT_VERSIONS_KEPT);
        if let Some(state) = &options.state {
            // Events of the previous daemon's versions may still be in the adopted ring buffer.
            history.restore(&state.versions_dir());
        }
        history.push(version, Arc::new(PolicyNames::of(&policy)));
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let mut daemon = Daemon {
            backend,
            source,
            policy,
            history,
            version,
            audit,
            live,
            options,
            stats: Stats::default(),
            started_ns: clock::now_ns(),
            started: Instant::now(),
            last_loss_poll: None,
            raw: Vec::new(),
            grants,
            refresh_at: None,
            encoder: EventEncoder::default(),
            losses_logged: saved.losses_reported.clone(),
            envelopes: Default::default(),
            saved,
        };
        daemon.plan_refresh();
        daemon.save_state()?;
        daemon.persist_names();
        let status = daemon.backend.status();
        let table = serde_json::to_value(&status).ok();
        let mut message = format!(
            "policy {} applied on the {} backend ({})",
            daemon.source.describe(),
            status.backend,
            status.kernel
        );
        if let Some(unclean) = unclean_end(daemon.audit.previous_record()) {
            tracing::warn!("{unclean}");
            message.push_str("; ");
            message.push_str(&unclean);
        }
        for problem in &log_tail.problems {
            tracing::warn!("audit log: {problem}");
            message.push_str("; audit log: ");
            message.push_str(problem);
        }
        let detail = serde_json::json!({ "log_tail": log_tail.detail });
        daemon.log_daemon("start", |r| {
            r.policy_version = Some(version);
            r.message = Some(message);
            r.detail = Some(detail);
        })?;
        daemon.log_restarted()?;
        daemon.log_daemon("backend", |r| r.detail = table)?;
        // Parsing and compiling a large policy leaves most of its peak heap free but mapped.
        release_freed_heap();
        Ok(daemon)
    }

    /// The `restarted` record: this daemon adopted pinned kernel state, so agents stayed
    /// confined, but no daemon logged live from `down_since` until now (events of that window
    /// follow: they waited in the pinned ring buffer).
    fn log_restarted(&mut self) -> Result<(), DaemonError> {
        let Some(adoption) = self.backend.adopted() else {
            return Ok(());
        };
        let down_since = (adoption.last_heartbeat_boot_ns != 0).then(|| {
            clock::format_rfc3339_ns(BootClock::sample().wall_ns(adoption.last_heartbeat_boot_ns))
        });
        let previous = match adoption.previous_pid {
            Some(pid) => format!("daemon pid {pid} ended without stopping (crash or SIGKILL)"),
            None => "the previous daemon stopped cleanly".to_owned(),
        };
        let mut message = format!(
            "adopted the kernel state pinned in {}: {previous}; the kernel enforced policy version {} meanwhile; {} agent threads stay agents",
            adoption.pin_dir.display(),
            adoption.policy_version,
            adoption.agent_threads
        );
        if !adoption.relinked.is_empty() {
            message.push_str(&format!(
                "; attached again (their link pins were missing): {}",
                adoption.relinked.join(", ")
            ));
        }
        tracing::info!("{message}");
        let (version, detail) = (self.version, serde_json::to_value(&adoption).ok());
        self.log_daemon("restarted", |r| {
            r.policy_version = Some(version);
            r.down_since = down_since;
            r.message = Some(message);
            r.detail = detail;
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Validate and compile the policy again, then apply it as version + 1. Any error leaves the
    /// running policy and version untouched (and is logged as `reload-failed`). Unless `force`,
    /// a policy identical to the running one is not applied again.
    pub fn reload(&mut self, trigger: &str, force: bool) -> Result<Reloaded, DaemonError> {
        self.reload_by(trigger, force, None)
    }

    /// [`Daemon::reload`] asked for over the API by `by` (named in the records).
    pub fn reload_by(
        &mut self,
        trigger: &str,
        force: bool,
        by: Option<(&Peer, &Caller)>,
    ) -> Result<Reloaded, DaemonError> {
        let peer_record = by.map(|(peer, caller)| authorize::peer_record(peer, caller));
        let trigger = match by {
            Some((peer, _)) => format!("{trigger} ({})", authorize::peer_text(peer)),
            None => trigger.to_owned(),
        };
        let result = self.try_reload(force);
        match &result {
            Ok(outcome) if outcome.changed => {
                self.stats.reloads += 1;
                let version = outcome.version;
                self.log_daemon("reload", |r| {
                    r.policy_version = Some(version);
                    r.message = Some(format!("trigger: {trigger}"));
                    r.peer = peer_record;
                })?;
            }
            Ok(_) => {}
            Err(e) => {
                self.stats.reload_failures += 1;
                self.stats.last_reload_error = Some(e.to_string());
                let (version, message) = (self.version, format!("trigger: {trigger}: {e}"));
                self.log_daemon("reload-failed", |r| {
                    r.policy_version = Some(version);
                    r.message = Some(message);
                    r.peer = peer_record;
                })?;
            }
        }
        result
    }

    fn try_reload(&mut self, force: bool) -> Result<Reloaded, DaemonError> {
        let policy = self
            .source
            .load(self.grants.grants())
            .map_err(DaemonError::Policy)?;
        if !force && policy == **self.policy() {
            return Ok(Reloaded {
                version: self.version,
                changed: false,
            });
        }
        let version = self.install(policy)?;
        Ok(Reloaded {
            version,
            changed: true,
        })
    }

    /// Apply `policy` as the next version (one atomic slot switch in the kernel).
    fn install(&mut self, policy: CompiledPolicy) -> Result<u32, DaemonError> {
        let version = self.version.wrapping_add(1).max(1);
        let policy = Arc::new(policy);
        self.backend.apply_shared(policy.clone(), version)?;
        self.version = version;
        self.history
            .push(version, Arc::new(PolicyNames::of(&policy)));
        self.policy = policy;
        self.plan_refresh();
        self.save_state()?;
        self.persist_names();
        self.note_widened_envelopes()?;
        // The previous policy and the new one's parse and compile intermediates are freed now.
        release_freed_heap();
        Ok(version)
    }

    /// When the answer for a host name of the running policy expires (`None`: none).
    pub fn next_host_refresh(&self) -> Option<Instant> {
        self.source.next_host_refresh()
    }

    /// The host names due at `now`, for the caller to look up off the event loop.
    pub fn host_refresh(&self, now: Instant) -> Option<HostRefresh> {
        self.source.host_refresh(now)
    }

    /// Answers for [`Daemon::host_refresh`], received at `now`; reload when an address set
    /// changed.
    pub fn hosts_resolved(
        &mut self,
        answers: Vec<(String, LookupResult)>,
        now: Instant,
    ) -> Result<Option<Reloaded>, DaemonError> {
        if !self.source.hosts_resolved(answers, now) {
            return Ok(None);
        }
        self.reload("host name answers changed", false).map(Some)
    }

    /// Register the calling process as `agent` (the launcher, right before it execs). `caller`
    /// is what [`Daemon::authorize`] found: an agent member may only start a sub-agent.
    pub fn register(
        &mut self,
        peer: &Peer,
        caller: &Caller,
        agent: &str,
        pid: u32,
    ) -> Result<Registration, DaemonError> {
        let refuse = |m: String| Err(DaemonError::Register(m));
        match peer.pid {
            Some(caller) if caller == pid => {}
            Some(caller) => return refuse(format!("pid {pid} is not the caller (the caller is pid {caller}); a launcher can only register itself")),
            None => return refuse("the caller's pid is not visible to the daemon (other pid namespace)".into()),
        }
        if self.options.inspect_procs {
            // The pid names the process that connected (pidfd or start time), and that process
            // still runs as the uid it connected with: a process of another uid (a setuid
            // program the socket was handed to) is not registered.
            peer.still_connected_process()
                .map_err(DaemonError::Register)?;
            let (real, effective) = peer::process_uids(pid).map_err(DaemonError::Register)?;
            if real != peer.uid || effective != peer.uid {
                return refuse(format!(
                    "pid {pid} runs as uid {real} (effective {effective}) but connected as uid {}: a process of another uid cannot be registered",
                    peer.uid
                ));
            }
        }
        let policy = self.policy().clone();
        let Some(info) = policy.agent_by_name(agent) else {
            let names: Vec<&str> = policy.agents.iter().map(|a| a.name.as_str()).collect();
            return refuse(format!(
                "no agent named {agent:?} in policy version {} (agents: {})",
                self.version,
                names.join(", ")
            ));
        };
        let mut chain = Vec::new();
        if let Some(member) = caller.member.filter(|m| m.state.is_none()) {
            return refuse(format!(
                "process {pid} is an agent member the process table had no room for (thread {} is doomed): it cannot start agents",
                member.tid
            ));
        }
        if let Some(state) = caller.member.and_then(|m| m.state) {
            // Inside an agent: only a delegation (the chain grows by one, rights only narrow).
            let depth = (state.depth as usize).min(MAX_CHAIN);
            chain.extend_from_slice(&state.chain[..depth]);
            let name_of = |id: u32| {
                policy
                    .agent(id)
                    .map_or_else(|| format!("#{id}"), |a| a.name.clone())
            };
            let current = chain
                .iter()
                .map(|&id| name_of(id))
                .collect::<Vec<_>>()
                .join(">");
            let inner = state.agent();
            let refusal = if inner == info.id {
                Some(format!("it already is agent {agent:?}"))
            } else if depth >= MAX_CHAIN {
                Some(format!(
                    "the chain {current} is at the depth limit ({MAX_CHAIN} agents)"
                ))
            } else if !policy.agent(inner).is_some_and(|a| a.delegates_to(info.id)) {
                Some(format!(
                    "agent {:?} does not delegate to {agent:?} (its policy's `delegate` list)",
                    name_of(inner)
                ))
            } else {
                None
            };
            if let Some(why) = refusal {
                let message = format!(
                    "process {pid} of chain {current} (session {}) cannot start agent {agent:?}: {why}",
                    session_hex(state.session)
                );
                let (name, session) = (name_of(inner), session_hex(state.session));
                self.log_daemon("register-refused", |r| {
                    r.agent = Some(name);
                    r.session = Some(session);
                    r.message = Some(message.clone());
                })?;
                return refuse(message);
            }
        }
        chain.push(info.id);
        let session = new_session_id();
        self.backend.register_chain(pid, &chain, session)?;
        if self.options.inspect_procs {
            // Checked again after the fact: a pid reused in the microseconds between the check
            // above and the map update is reported (that stranger is now confined, which fails
            // closed) and the launcher is told.
            if let Err(e) = peer.still_connected_process() {
                tracing::error!("registration of pid {pid} as {agent:?}: {e}");
                return refuse(e);
            }
        }
        let names: Vec<String> = chain
            .iter()
            .map(|&id| {
                policy
                    .agent(id)
                    .map_or_else(|| format!("#{id}"), |a| a.name.clone())
            })
            .collect();
        let hex = session_hex(session);
        let launched = if chain.len() > 1 {
            format!(
                "pid {pid} (uid {}) launched as chain {}",
                peer.uid,
                names.join(">")
            )
        } else {
            format!("pid {pid} (uid {}) launched", peer.uid)
        };
        let record_peer = authorize::peer_record(peer, caller);
        self.log_daemon("register", |r| {
            r.agent = names.last().cloned();
            r.session = Some(hex.clone());
            r.message = Some(launched.clone());
            r.peer = Some(record_peer);
        })?;
        let envelope = if self.backend.uses_envelope() {
            crate::policy::envelope::compute(&policy, agent, self.version)
        } else {
            None
        };
        if let Some(envelope) = &envelope {
            self.remember_envelope(hex.clone(), envelope.clone());
        }
        // Agents in audit mode only observe: nothing is killed for them.
        let syscall_guard = self.backend.uses_syscall_guard()
            && policy
                .agents
                .iter()
                .find(|a| a.name == agent)
                .is_some_and(|a| a.mode != crate::policy::compile::Mode::Audit);
        Ok(Registration {
            session: hex,
            policy_version: self.version,
            envelope,
            syscall_guard,
        })
    }

    /// Keep the envelope a session was sent; forget those of sessions without live processes
    /// once there are many, so the table stays bounded by the live sessions.
    fn remember_envelope(&mut self, session: String, envelope: crate::policy::envelope::Envelope) {
        const PRUNE_AT: usize = 4096;
        if self.envelopes.len() >= PRUNE_AT {
            let live: std::collections::HashSet<String> =
                procs::agent_members(self.backend.as_ref())
                    .into_iter()
                    .map(|(_, st)| session_hex(st.session))
                    .collect();
            self.envelopes.retain(|s, _| live.contains(s));
        }
        self.envelopes.insert(session, envelope);
    }

    /// The envelope session `session` was sent, and whether the running policy's envelope of
    /// its agent is wider (it applies only to agents launched after it).
    pub fn session_envelope(
        &self,
        session: &str,
    ) -> Option<(&crate::policy::envelope::Envelope, bool)> {
        let sent = self.envelopes.get(session)?;
        let now = crate::policy::envelope::compute(self.policy(), &sent.agent, self.version);
        let older = now.is_some_and(|n| sent.is_narrower_than(&n));
        Some((sent, older))
    }

    /// After a new policy version: say which agents' envelopes widened while sessions run under
    /// the older one (their Landlock domain cannot grow).
    fn note_widened_envelopes(&mut self) -> Result<(), DaemonError> {
        let mut older: BTreeMap<String, (u32, usize)> = BTreeMap::new();
        for (session, sent) in &self.envelopes {
            if let Some((_, true)) = self.session_envelope(session) {
                let e = older
                    .entry(sent.agent.clone())
                    .or_insert((sent.policy_version, 0));
                e.0 = e.0.min(sent.policy_version);
                e.1 += 1;
            }
        }
        let version = self.version;
        for (agent, (since, sessions)) in older {
            let message = format!(
                "the Landlock envelope of agent {agent:?} is wider in policy version {version}: it applies to agents launched from now on; {sessions} running session(s) keep the envelope they started with (from version {since} on)"
            );
            tracing::info!("{message}");
            self.log_daemon("envelope-widened", |r| {
                r.agent = Some(agent.clone());
                r.policy_version = Some(version);
                r.message = Some(message.clone());
            })?;
        }
        Ok(())
    }

    /// Move kernel events and loss counts into the audit log and to live subscribers.
    ///
    /// At least once: a batch of events is released in the kernel ring buffer only after its
    /// lines are in the file (`write(2)` done). A daemon killed in between leaves the batch to
    /// the next daemon, which writes it again (same `ring_pos`). While the log cannot be
    /// written no events are taken: they wait in the ring buffer, and what does not fit there
    /// is counted by the kernel and reported as `lost` once writing works again.
    pub fn pump(&mut self) -> Result<Pumped, DaemonError> {
        let mut pumped = Pumped::default();
        let events = self.pump_events(&mut pumped);
        let due = self.last_loss_poll.is_none_or(|t| t.elapsed() >= LOSS_POLL);
        if due {
            self.last_loss_poll = Some(Instant::now());
            // Lets the next daemon say since when none ran, should this one die (also while
            // the log cannot be written).
            self.backend.heartbeat(true)?;
            if events.is_ok() {
                let lost = self.loss_records()?;
                pumped.records += lost.len();
                self.write(lost)?;
            }
        }
        events.map(|()| pumped)
    }

    fn pump_events(&mut self, pumped: &mut Pumped) -> Result<(), DaemonError> {
        if self.audit.queued() > 0 {
            self.write(Vec::new())?;
        }
        for _ in 0..BATCHES_PER_PUMP {
            self.raw.clear();
            self.backend.read_events(BATCH_EVENTS, &mut self.raw)?;
            if self.raw.is_empty() {
                break;
            }
            pumped.records += self.log_events()?;
            pumped.more = self.raw.len() == BATCH_EVENTS;
            if !pumped.more {
                break;
            }
        }
        Ok(())
    }

    /// Encode `self.raw` straight into the audit writer and write it.
    fn log_events(&mut self) -> Result<usize, DaemonError> {
        let inspect = self.options.inspect_procs;
        // One /proc lookup per process and batch: the batch is read at one instant, so this is
        // what a lookup per event would find (docs/events.md: `exe` is when the daemon read it).
        let exes: RefCell<HashMap<u32, Option<Arc<str>>>> = RefCell::default();
        let exe_of = |tgid: u32| -> Option<Arc<str>> {
            if !inspect {
                return None;
            }
            exes.borrow_mut()
                .entry(tgid)
                .or_insert_with(|| procs::exe_of(tgid).map(Arc::from))
                .clone()
        };
        let ctx = EventContext {
            host: &self.options.host,
            clock: BootClock::sample(),
            policies: &self.history,
            exe_of: &exe_of,
        };
        // Decisions by (version, agent, op, verdict) for this batch, named once per key below.
        let mut decided: HashMap<(u32, u32, u32, u32), u64> = HashMap::new();
        let mark = self.audit.mark();
        for raw in &self.raw {
            let encoder = &mut self.encoder;
            self.audit
                .push_with(|seq, out| encoder.encode(out, seq, raw, &ctx));
            let h = &raw.header;
            let agent = chain_ids(h).last().copied().unwrap_or(NO_AGENT_KEY);
            *decided
                .entry((h.policy_version, agent, h.op, h.verdict))
                .or_default() += 1;
        }
        for ((version, agent, op, verdict), n) in decided {
            let policy = self.history.get(version).map(|p| p.as_ref());
            let agent = if agent == NO_AGENT_KEY {
                String::new()
            } else {
                agent_name(policy, agent).into_owned()
            };
            let key = (
                agent,
                crate::audit::names::op_name(op),
                crate::audit::names::verdict_name(verdict),
            );
            *self.stats.decisions.entry(key).or_default() += n;
        }
        self.flush_audit(mark)?;
        Ok(self.raw.len())
    }

    /// `lost` records for kernel loss counters that grew since they were last logged.
    fn loss_records(&mut self) -> Result<Vec<Record>, DaemonError> {
        let mut out = Vec::new();
        for (agent, total) in self.backend.losses()? {
            let logged = self.losses_logged.get(&agent).copied().unwrap_or(0);
            // A counter below what was logged was recreated (kernel state reloaded): all new.
            let delta = if total >= logged {
                total - logged
            } else {
                total
            };
            if delta == 0 {
                continue;
            }
            self.losses_logged.insert(agent, total);
            let name = self
                .policy()
                .agent(agent)
                .map_or_else(|| format!("#{agent}"), |a| a.name.clone());
            *self.stats.losses.entry(name.clone()).or_default() += delta;
            out.push(Record::Lost(LostRecord {
                seq: 0,
                time: clock::format_rfc3339_ns(clock::now_ns()),
                host: self.options.host.clone(),
                count: delta,
                agent: (agent != 0).then_some(name),
                source: "kernel".into(),
                total: Some(total),
                prev: None,
            }));
        }
        Ok(out)
    }

    fn write(&mut self, mut records: Vec<Record>) -> Result<(), DaemonError> {
        if records.is_empty() && self.audit.queued() == 0 {
            return Ok(());
        }
        let mark = self.audit.mark();
        for record in &mut records {
            self.audit.push_record(record);
        }
        self.flush_audit(mark)
    }

    /// Send the lines queued since `mark` to live subscribers and write everything queued. Once
    /// nothing is left queued, whatever was read from the kernel is in the file: release it in
    /// the ring buffer and save the loss counts logged as reported.
    fn flush_audit(&mut self, mark: usize) -> Result<(), DaemonError> {
        self.broadcast(mark);
        let written = self.audit.flush();
        // Records the log had no room for while it could not be written: say so right after
        // the ones it kept.
        if let Some(count) = self.audit.take_refused() {
            let mark = self.audit.mark();
            self.audit.push_record(&mut Record::Lost(LostRecord {
                seq: 0,
                time: clock::format_rfc3339_ns(clock::now_ns()),
                host: self.options.host.clone(),
                count,
                agent: None,
                source: "audit-log".into(),
                total: None,
                prev: None,
            }));
            self.broadcast(mark);
            let _ = self.audit.flush();
        }
        if self.audit.queued() == 0 {
            self.backend.release_events()?;
            if self.saved.losses_reported != self.losses_logged {
                self.saved.losses_reported = self.losses_logged.clone();
                self.save_state()?;
            }
        }
        Ok(written?)
    }

    fn broadcast(&self, mark: usize) {
        if self.live.receiver_count() > 0 {
            for line in self.audit.lines_since(mark) {
                let _ = self.live.send(Arc::from(line));
            }
        }
    }

    fn log_daemon(
        &mut self,
        event: &str,
        fill: impl FnOnce(&mut DaemonRecord),
    ) -> Result<(), DaemonError> {
        let mut record = DaemonRecord {
            time: clock::format_rfc3339_ns(clock::now_ns()),
            host: self.options.host.clone(),
            event: event.to_owned(),
            pid: std::process::id(),
            ..DaemonRecord::default()
        };
        fill(&mut record);
        self.write(vec![Record::Daemon(record)])
    }

    fn persist_names(&self) {
        if let Some(state) = &self.options.state {
            if let Err(e) = self.history.persist(&state.versions_dir(), self.version) {
                tracing::warn!("saving the names of policy version {}: {e}", self.version);
            }
        }
    }

    fn save_state(&mut self) -> Result<(), DaemonError> {
        self.saved.policy_version = self.version;
        match &self.options.state {
            Some(file) => file.save(&self.saved),
            None => Ok(()),
        }
    }

    /// Start a live subscription: records with `seq >= next_seq` arrive on the receiver.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<Arc<str>>) {
        (self.audit.next_seq(), self.live.subscribe())
    }

    /// Flush unsynced audit data when its interval is due (timer).
    pub fn sync_audit(&mut self) -> Result<(), DaemonError> {
        Ok(self.audit.sync_if_due()?)
    }

    /// Drain what is left, log the stop, fsync. Kernel state stays pinned and enforcing.
    pub fn stop(mut self, why: &str) -> Result<(), DaemonError> {
        // The loss counters once more too: everything up to the stop is accounted for in the log.
        self.last_loss_poll = None;
        while self.pump()?.more {}
        self.backend.heartbeat(false)?;
        let message = format!("{why}; kernel state stays pinned and enforcing");
        let version = self.version;
        self.log_daemon("stop", |r| {
            r.policy_version = Some(version);
            r.message = Some(message);
        })?;
        self.audit.sync()?;
        // Where the log ends now: the next start checks it still does.
        let (seq, hash) = self.audit.chain_head();
        if self.audit.queued() == 0 {
            self.saved.audit_end = Some(AuditEnd {
                seq,
                hash: chain::hex(&hash),
            });
            self.save_state()?;
        }
        Ok(())
    }
}

/// Decision-counter key of events without an agent chain (counted under the agent "").
const NO_AGENT_KEY: u32 = u32::MAX;

/// What the `start` record says about the end of the log it found (`detail.log_tail`, see
/// docs/events.md "Hash chain"), and the problems among it, for the message.
struct LogTailReport {
    detail: serde_json::Value,
    problems: Vec<String>,
}

fn log_tail_report(audit: &AuditWriter, previous_end: Option<AuditEnd>) -> LogTailReport {
    let tail = audit.opened_tail();
    let last_seq = audit.next_seq() - 1;
    let last_hash = tail.last_hash.as_ref().map(chain::hex);
    let mut problems = Vec::new();
    let (mut truncated, mut altered) = (false, false);
    if tail.torn_bytes > 0 {
        problems.push(format!(
            "the log ended inside a line ({} bytes after the last complete record, seq {last_seq}): cut by a crash or truncated; the line is kept and ended",
            tail.torn_bytes
        ));
    }
    if let Some(end) = previous_end {
        if end.seq > last_seq {
            truncated = true;
            problems.push(format!(
                "records are missing at its end: the previous daemon stopped after seq {} (hash {}), the log now ends at seq {last_seq}",
                end.seq, end.hash
            ));
        } else if end.seq < last_seq
            || last_hash.as_deref() != Some(end.hash.as_str())
            || tail.torn_bytes > 0
        {
            altered = true;
            problems.push(format!(
                "its end changed while no daemon ran: the previous daemon stopped after seq {} (hash {}), the log now ends at seq {last_seq} (hash {})",
                end.seq,
                end.hash,
                last_hash.as_deref().unwrap_or("none")
            ));
        }
    }
    let mut detail = serde_json::json!({
        "last_seq": last_seq,
        "last_hash": last_hash,
        "torn_bytes": tail.torn_bytes,
    });
    if truncated || altered {
        detail["truncated"] = truncated.into();
        detail["altered"] = altered.into();
        detail["reason"] = problems.last().cloned().into();
    }
    LogTailReport { detail, problems }
}

/// How the previous daemon run ended, if not with its `stop` record: a crash or SIGKILL. The
/// kernel went on enforcing meanwhile; this names the window in which nothing was logged live.
fn unclean_end(last: Option<&Record>) -> Option<String> {
    match last? {
        Record::Daemon(d) if d.event == "stop" => None,
        last => Some(format!(
            "the previous daemon did not stop cleanly: its last record is seq {} at {} (no daemon ran from then until now)",
            last.seq(),
            last.time()
        )),
    }
}

/// A random, non-zero session id (0 means "no session" in the kernel).
fn new_session_id() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        // SAFETY: the buffer is valid and writable for its full length.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        assert_eq!(n, 8, "getrandom failed");
        let id = u64::from_ne_bytes(bytes);
        if id != 0 {
            return id;
        }
    }
}

/// Return the heap the allocator keeps after a policy load to the kernel. glibc's malloc keeps
/// freed memory mapped in its arenas (one per thread that allocated): parsing and compiling
/// 100,000 rules peaks at about twice what the compiled policy holds (69 MB of heap in use for
/// a 36 MB policy), and without this the daemon's RSS stays near that peak for good
/// (docs/benchmarks.md measures it).
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the arenas' locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

mod authorize;
mod grant_ops;
mod status;
pub use status::enforcement_name;

#[cfg(test)]
#[path = "core_tests.rs"]
pub(crate) mod tests;
