//! The daemon's event loop: one task owns the [`Daemon`] core; the API server, the metrics
//! endpoint, signals, the policy-directory watcher and timers feed it through channels, so
//! every state change happens in one place, in order.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::config::DaemonConfig;
use super::core::{enforcement_name, CoreOptions, Daemon};
use super::dns::{answers_for, SystemResolver};
use super::grants::GrantBook;
use super::policy_source::{PolicyDir, PolicySource};
use super::state::StateFile;
use super::{metrics, protect, DaemonError};
use crate::api::protocol::{Request, Response};
use crate::api::server::{self, ApiCall, CallReply};
use crate::audit::writer::AuditWriter;
use crate::kernel::{self, LoadOptions};

/// How often the ring buffer is drained. Events wait at most this long to reach the log.
const PUMP_INTERVAL: Duration = Duration::from_millis(50);
/// Editors write a file in several steps; reload once the directory has been quiet this long.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(250);

/// Run the daemon until SIGTERM/SIGINT. Prints one `ready` line on stdout once the policy is
/// applied and the API socket accepts connections (tests and scripts wait for it).
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
    // Watch right after the load: an edit made while the kernel side loads is picked up then.
    let (changes_tx, mut changes) = mpsc::channel::<()>(1);
    let _watcher = watch_policy_dir(&config.policy_dir, changes_tx)?;

    // Bind before loading the kernel side: a second daemon stops here, changing nothing.
    let listener = server::bind(&config.api.socket, config.api.group.as_deref())?;
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
    };
    let mut daemon = Daemon::start(backend, Box::new(source), policy, audit, options)?;
    log_enforcement_table(&daemon);

    let (calls_tx, mut calls) = mpsc::channel::<ApiCall>(64);
    tokio::spawn(server::serve(listener, calls_tx, Arc::from(host.as_str())));

    let (metrics_tx, mut metrics_requests) = mpsc::channel::<oneshot::Sender<String>>(16);
    if let Some(addr) = config.metrics.listen {
        let listener = metrics::bind(addr)
            .await
            .map_err(|cause| DaemonError::Metrics { addr, cause })?;
        tokio::spawn(metrics::serve(listener, metrics_tx));
        tracing::info!("metrics at http://{addr}/metrics");
    }

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

    let why = loop {
        let dns_due = if resolving { None } else { daemon.next_host_refresh() };
        tokio::select! {
            _ = pump.tick() => more_events = pump_events(&mut daemon, &mut pump_errors),
            _ = std::future::ready(()), if more_events => more_events = pump_events(&mut daemon, &mut pump_errors),
            Some(call) = calls.recv() => handle_call(&mut daemon, call),
            Some(reply) = metrics_requests.recv() => {
                let _ = reply.send(metrics::render(&daemon.status()));
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
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    tracing::info!("{why}: stopping; kernel state stays pinned and enforcing");
    daemon.stop(why)
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

pub(crate) fn handle_call(daemon: &mut Daemon, call: ApiCall) {
    let error = |e: DaemonError| {
        CallReply::plain(Response::Error {
            message: e.to_string(),
        })
    };
    let reply = match call.request {
        Request::Register { agent, pid } => match daemon.register(call.peer, &agent, pid) {
            Ok((session, policy_version)) => {
                tracing::info!(agent, pid, session, "agent process registered");
                CallReply::plain(Response::Registered {
                    agent,
                    session,
                    policy_version,
                })
            }
            Err(e) => {
                tracing::warn!(agent, pid, "{e}");
                error(e)
            }
        },
        Request::Status {} => CallReply::plain(Response::Status(Box::new(daemon.status()))),
        Request::Subscribe {} => {
            let (next_seq, stream) = daemon.subscribe();
            CallReply {
                response: Response::Subscribed { next_seq },
                stream: Some(stream),
            }
        }
        Request::Grant { agent, rule, seconds, reason } => {
            match daemon.grant(call.peer, &agent, &rule, Duration::from_secs(seconds), reason) {
                Ok((grant, policy_version)) => CallReply::plain(Response::Granted { grant, policy_version }),
                Err(e) => {
                    tracing::warn!(agent, rule, "{e}");
                    error(e)
                }
            }
        }
        Request::Grants {} => CallReply::plain(Response::Grants { grants: daemon.grants().to_vec() }),
        Request::Revoke { id } => match daemon.revoke(id) {
            Ok((grant, policy_version)) => CallReply::plain(Response::Revoked { grant, policy_version }),
            Err(e) => error(e),
        },
        Request::Reload {} => match daemon.reload("API request", true) {
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
