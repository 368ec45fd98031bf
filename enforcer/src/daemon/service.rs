//! The daemon's event loop: one task owns the [`Daemon`] core; the API server, the metrics
//! endpoint, signals, the policy-directory watcher and timers feed it through channels, so
//! every state change happens in one place, in order.

use std::{io::Write as _, path::Path, sync::Arc, time::Duration};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    config::DaemonConfig,
    core::{enforcement_name, CoreOptions, Daemon},
    dns::{answers_for, SystemResolver},
    grants::GrantBook,
    lock, metrics,
    policy_source::{PolicyDir, PolicySource},
    privileges, protect,
    roles::RoleGroups,
    state::StateFile,
    DaemonError,
};
use crate::{
    api::{
        limits::Limiter,
        protocol::{Request, Response},
        server::{self, ApiCall, CallReply},
    },
    audit::writer::AuditWriter,
    kernel::{self, LoadOptions},
};

/// How often the ring buffer is drained. Events wait at most this long to reach the log.
const PUMP_INTERVAL: Duration = Duration::from_millis(50);
/// Editors write a file in several steps; reload once the directory has been quiet this long.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(250);

/// Run the daemon until SIGTERM/SIGINT. Prints one `ready` line on stdout once the policy is
/// applied and the API socket accepts connections (tests and scripts wait for it), and sends
/// systemd `READY=1` then (`Type=notify`).
/// `config_file`: the configuration file read, if any (protected from agents like the rest of
/// the daemon's state, see protect.rs).
pub fn run(config: &DaemonConfig, config_file: Option<&Path>) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| DaemonError::Io {
            what: "starting the async runtime".into(),
            cause,
        })?;
    runtime.block_on(serve(config, config_file))
}

async fn serve(config: &DaemonConfig, config_file: Option<&Path>) -> Result<(), DaemonError> {
    // First, so that a SIGHUP during a slow start (loading programs can take minutes under
    // emulation) is a reload request rather than the default action, termination.
    let signal_error = |cause| DaemonError::Io {
        what: "installing signal handlers".into(),
        cause,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_error)?;

    // Refuse an invalid policy before touching the kernel or the socket.
    let mut source = PolicyDir::new(
        &config.policy_dir,
        Duration::from_secs(config.dns_refresh_secs),
        Arc::new(SystemResolver),
    )
    .protecting(protect::protected_paths(config, config_file));
    // Grants of a previous run that have not expired yet apply again.
    let grants = GrantBook::open(&config.state_dir)?;
    let policy = source.load(grants.grants()).map_err(DaemonError::Policy)?;
    tracing::info!(
        agents = policy.agents.len(),
        rules = policy.rules.len(),
        "policy {} is valid",
        source.describe()
    );

    // One daemon per state directory and audit log, checked before anything is changed: a
    // second daemon stops here, naming the first one's pid.
    let _locks = lock::acquire(config)?;

    // Bind before loading the kernel side: a second daemon on the same socket stops here too.
    let role_groups = RoleGroups::resolve(&config.api).map_err(|reason| {
        DaemonError::Api(crate::api::ApiError::Setup {
            path: config.api.socket.clone(),
            reason,
        })
    })?;
    let listener = server::bind(&config.api.socket, &role_groups)?;
    let _socket_guard = RemoveOnDrop(&config.api.socket);

    tracing::info!(choice = ?config.backend, pin_dir = %config.pin_dir.display(), "loading the kernel side");
    let loading = std::time::Instant::now();
    let backend = kernel::open_backend(&LoadOptions {
        choice: config.backend,
        pin_dir: Some(config.pin_dir.clone()),
        max_procs: config.max_agent_processes,
    })?;
    tracing::info!(
        "kernel side loaded in {:.1}s",
        loading.elapsed().as_secs_f64()
    );
    let audit = AuditWriter::open(&config.audit.path, config.rotation())?;
    let host = hostname();
    let options = CoreOptions {
        host: host.clone(),
        policy_dir: config.policy_dir.display().to_string(),
        state: Some(StateFile::new(&config.state_dir)),
        inspect_procs: true,
        grants,
        roles: role_groups,
    };
    let mut daemon = Daemon::start(backend, Box::new(source), policy, audit, options)?;
    log_enforcement_table(&daemon);

    let (calls_tx, mut calls) = mpsc::channel::<ApiCall>(CALLS_WAITING);
    let limits = config.limits();
    tokio::spawn(server::serve(
        listener,
        calls_tx,
        Arc::from(host.as_str()),
        Limiter::new(limits),
    ));

    let (metrics_tx, mut metrics_requests) = mpsc::channel::<oneshot::Sender<String>>(16);
    if let Some(addr) = config.metrics.listen {
        let listener = metrics::bind(addr)
            .await
            .map_err(|cause| DaemonError::Metrics { addr, cause })?;
        tokio::spawn(metrics::serve(listener, metrics_tx, Limiter::new(limits)));
        tracing::info!("metrics at http://{addr}/metrics");
    }

    // Everything that needs more than the kept capabilities is done: the kernel side is loaded
    // (or adopted) and attached, the socket and metrics port are bound. Before the watcher
    // starts its thread: capabilities belong to threads, and later ones inherit the drop.
    let kept = privileges::drop_to_kept()?;
    tracing::info!("capabilities dropped; kept: {}", privileges::names(&kept));
    // An edit made while the kernel side loaded is picked up by one check right away (a
    // policy that compiles to the running one is not applied again).
    let (changes_tx, mut changes) = mpsc::channel::<()>(1);
    let _watcher = watch_policy_dir(&config.policy_dir, changes_tx.clone())?;
    let _ = changes_tx.try_send(());

    let mut pump = tokio::time::interval(PUMP_INTERVAL);
    pump.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reload_at: Option<Instant> = None;
    let mut pump_errors = Throttle::default();
    // The kernel held more events than one pump takes: pump again without waiting for the tick.
    let mut more_events = false;
    // Lookups block (a load waits for them anyway); refreshes run on the blocking pool, one
    // round at a time, each when the first of its answers expires.
    let (answers_tx, mut answers) = mpsc::channel(1);
    let mut resolving = false;

    println!(
        "enforcer daemon ready: socket={} policy_version={} backend={} audit_log={}",
        config.api.socket.display(),
        daemon.version(),
        daemon.backend().status().backend,
        config.audit.path.display()
    );
    let _ = std::io::stdout().flush();
    // The same moment for systemd (`Type=notify`): the programs are attached (or adopted) and
    // proven by the canary, the policy is applied and the socket accepts `enforcer run`.
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!(
            "enforcing policy version {} with the {} backend",
            daemon.version(),
            daemon.backend().status().backend
        )),
    ]);

    let why = loop {
        let dns_due = if resolving {
            None
        } else {
            daemon.next_host_refresh()
        };
        // In this order, not at random: a stop first, then the ring buffer's turn is never
        // lost to a flood of requests (at most one status build or one other request per
        // turn, see handle_calls); an extra pump for a full ring waits for the requests.
        tokio::select! {
            biased;
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = pump.tick() => more_events = pump_events(&mut daemon, &mut pump_errors),
            Some(call) = calls.recv() => handle_calls(&mut daemon, call, &mut calls),
            Some(reply) = metrics_requests.recv() => {
                // One report for every scrape waiting now.
                let text = metrics::render(&daemon.status());
                let _ = reply.send(text.clone());
                while let Ok(reply) = metrics_requests.try_recv() {
                    let _ = reply.send(text.clone());
                }
            }
            Some(()) = changes.recv() => reload_at = Some(Instant::now() + WATCH_DEBOUNCE),
            _ = sleep_until(reload_at), if reload_at.is_some() => {
                reload_at = None;
                report_reload(daemon.reload("policy directory changed", false));
            }
            _ = sleep_until(dns_due.map(Instant::from_std)), if dns_due.is_some() => {
                if let Some(refresh) = daemon.host_refresh(std::time::Instant::now()) {
                    resolving = true;
                    let answers = answers_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let fresh = refresh.lookup.lookup(&refresh.names);
                        let _ = answers.blocking_send(answers_for(&refresh.names, fresh));
                    });
                }
            }
            Some(fresh) = answers.recv() => {
                resolving = false;
                match daemon.hosts_resolved(fresh, std::time::Instant::now()) {
                    Ok(Some(r)) => tracing::info!(version = r.version, changed = r.changed, "host name answers changed"),
                    Ok(None) => {}
                    Err(e) => tracing::error!("re-applying after host name changes: {e}"),
                }
            }
            _ = sighup.recv() => report_reload(daemon.reload("SIGHUP", true)),
            _ = std::future::ready(()), if more_events => more_events = pump_events(&mut daemon, &mut pump_errors),
        }
    };
    tracing::info!("{why}: stopping; kernel state stays pinned and enforcing");
    notify(&[sd_notify::NotifyState::Stopping]);
    daemon.stop(why)
}

/// Tell the service manager, if one started the daemon with `NOTIFY_SOCKET` (nothing
/// otherwise). A failure is logged, never fatal: enforcement does not depend on it.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("notifying the service manager (NOTIFY_SOCKET): {e}");
    }
}

/// One [`Daemon::pump`] and a due fsync; whether the kernel may hold more events right now.
fn pump_events(daemon: &mut Daemon, errors: &mut Throttle) -> bool {
    let result = daemon
        .pump()
        .and_then(|pumped| daemon.sync_audit().map(|()| pumped.more))
        .and_then(|more| daemon.refresh_due().map(|_| more));
    errors.report(result.as_ref().err().map(|e| e.to_string()));
    result.unwrap_or(false)
}

async fn sleep_until(at: Option<Instant>) {
    tokio::time::sleep_until(at.unwrap_or_else(Instant::now)).await
}

fn report_reload(result: Result<super::core::Reloaded, DaemonError>) {
    match result {
        Ok(r) if r.changed => tracing::info!(version = r.version, "policy reloaded"),
        Ok(_) => tracing::debug!("policy unchanged"),
        Err(e) => tracing::error!("reload rejected, the running policy stays: {e}"),
    }
}

/// API requests waiting for the core at most (senders wait beyond).
const CALLS_WAITING: usize = 64;

/// Handle `first`, then the status requests already waiting behind it, from one status report
/// serialized once (a flood of status requests costs one build per turn of the loop, not one
/// per request), up to the first other request, which is handled and ends the turn.
fn handle_calls(daemon: &mut Daemon, first: ApiCall, calls: &mut mpsc::Receiver<ApiCall>) {
    let mut status = None;
    let mut next = Some(first);
    for _ in 0..CALLS_WAITING {
        let Some(call) = next.take() else { break };
        let is_status = matches!(call.request, Request::Status {});
        handle_call(daemon, call, &mut status);
        if !is_status {
            break;
        }
        next = calls.try_recv().ok();
    }
}

/// Answer one request. `status`: the status response already built in this turn of the loop
/// (reused by a status request, built by the first one; nothing else happens between them).
pub(crate) fn handle_call(daemon: &mut Daemon, call: ApiCall, status: &mut Option<Arc<str>>) {
    let error = |e: DaemonError| {
        CallReply::plain(Response::Error {
            message: e.to_string(),
        })
    };
    // Every verb passes the role table first (daemon/roles.rs); a refusal is already logged.
    let caller = match daemon.authorize(&call.peer, call.request.verb()) {
        Ok(caller) => caller,
        Err(e) => {
            let _ = call.reply.send(error(e));
            return;
        }
    };
    let peer = &call.peer;
    let reply = match call.request {
        Request::Register { agent, pid } => match daemon.register(peer, &caller, &agent, pid) {
            Ok(registration) => {
                let session = registration.session;
                tracing::info!(agent, pid, session, "agent process registered");
                CallReply::plain(Response::Registered {
                    agent,
                    session,
                    policy_version: registration.policy_version,
                    envelope: registration.envelope,
                    syscall_guard: registration.syscall_guard,
                })
            }
            Err(e) => {
                tracing::warn!(agent, pid, "{e}");
                error(e)
            }
        },
        Request::Status {} => CallReply::encoded(
            status
                .get_or_insert_with(|| {
                    server::encode(&Response::Status(Box::new(daemon.status()))).into()
                })
                .clone(),
        ),
        Request::Subscribe {} => {
            let (next_seq, stream) = daemon.subscribe();
            CallReply {
                stream: Some(stream),
                ..CallReply::plain(Response::Subscribed { next_seq })
            }
        }
        Request::Grant {
            agent,
            rule,
            seconds,
            reason,
        } => {
            match daemon.grant(
                peer,
                &caller,
                &agent,
                &rule,
                Duration::from_secs(seconds),
                reason,
            ) {
                Ok((grant, policy_version)) => CallReply::plain(Response::Granted {
                    grant,
                    policy_version,
                }),
                Err(e) => {
                    tracing::warn!(agent, rule, "{e}");
                    error(e)
                }
            }
        }
        Request::Grants {} => CallReply::plain(Response::Grants {
            grants: daemon.grants().to_vec(),
        }),
        Request::Revoke { id } => match daemon.revoke(id, peer, &caller) {
            Ok((grant, policy_version)) => CallReply::plain(Response::Revoked {
                grant,
                policy_version,
            }),
            Err(e) => error(e),
        },
        Request::Reload {} => match daemon.reload_by("API request", true, Some((peer, &caller))) {
            Ok(r) => CallReply::plain(Response::Reloaded {
                policy_version: r.version,
                changed: r.changed,
            }),
            Err(e) => error(e),
        },
    };
    let _ = call.reply.send(reply);
}

fn log_enforcement_table(daemon: &Daemon) {
    let status = daemon.backend().status();
    tracing::info!(
        backend = status.backend,
        kernel = status.kernel,
        version = daemon.version(),
        "kernel backend ready"
    );
    for (feature, result) in &status.features {
        match result {
            Ok(()) => tracing::info!("feature {feature}: available"),
            Err(why) => tracing::warn!("feature {feature}: unavailable: {why}"),
        }
    }
    for rule in &status.rules {
        tracing::info!(
            "agent {} rule {}: {} ({})",
            rule.agent,
            rule.rule,
            enforcement_name(rule.enforcement),
            rule.why
        );
    }
}

/// Watch the policy directory; any change (not mere reads) sends a reload hint.
fn watch_policy_dir(
    dir: &Path,
    changes: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !matches!(event.kind, EventKind::Access(_)) {
                // A full channel already holds a pending hint; that is enough.
                let _ = changes.try_send(());
            }
        }
    })
    .map_err(|e| DaemonError::Watch {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|e| DaemonError::Watch {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(watcher)
}

/// Logs a recurring error (the pump runs 20 times a second) when it starts, at most every
/// [`THROTTLE_EVERY`] while it lasts (with how often it happened), and when it stops.
#[derive(Default)]
struct Throttle {
    current: Option<(String, Instant, u64)>,
}

const THROTTLE_EVERY: Duration = Duration::from_secs(10);

impl Throttle {
    fn report(&mut self, error: Option<String>) {
        match (error, &mut self.current) {
            (None, None) => {}
            (None, Some((message, _, _))) => {
                tracing::info!("recovered from: moving kernel events to the audit log: {message}");
                self.current = None;
            }
            (Some(error), Some((message, last, repeats))) if *message == error => {
                *repeats += 1;
                if last.elapsed() >= THROTTLE_EVERY {
                    tracing::error!(
                        "moving kernel events to the audit log: {error} (again, {repeats} times)"
                    );
                    *last = Instant::now();
                    *repeats = 0;
                }
            }
            (Some(error), _) => {
                tracing::error!("moving kernel events to the audit log: {error}");
                self.current = Some((error, Instant::now(), 0));
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Removes the API socket file when the daemon stops, so launchers get "not running".
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
