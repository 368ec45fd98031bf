//! The daemon's configuration: `/etc/enforcer/enforcer.toml` (every field optional), then
//! command-line flags on top. Errors name the file, line and column, or the flag.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{api::limits::Limits, audit::writer::Rotation, kernel::BackendChoice, paths};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}:{line}:{col}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{origin}: `{field}`: {message}")]
    Invalid {
        origin: String,
        field: &'static str,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Directory of agent policies (`*.toml`, recursively).
    pub policy_dir: PathBuf,
    pub backend: BackendChoice,
    /// `tracing` filter for the daemon's own log on stderr (`info`, `debug`, `enforcer=trace`).
    pub log_level: String,
    /// Capacity of the kernel's agent process table (threads of all agents together).
    pub max_agent_processes: u32,
    /// bpffs directory for pinned programs, maps and links.
    pub pin_dir: PathBuf,
    /// Small state that must outlive the daemon: last policy version, reported loss counters.
    pub state_dir: PathBuf,
    /// The longest a host name's answer is used before it is asked again, whatever its TTL
    /// (seconds); also the interval for answers without a TTL (/etc/hosts).
    pub dns_refresh_secs: u64,
    pub audit: AuditConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub rotate_bytes: u64,
    pub retain: u32,
    pub fsync_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub socket: PathBuf,
    /// Launchers: may start agents (`enforcer run`) and read status and grants. Also the
    /// socket file's group.
    pub group: Option<String>,
    /// Auditors: may follow every agent's events (`enforcer events --follow`) and read status.
    pub auditor_group: Option<String>,
    /// Admins besides uid 0: every request (grant, revoke, reload too).
    pub admin_group: Option<String>,
    /// Connections open at once (the metrics endpoint has the same cap, counted apart).
    pub max_connections: usize,
    /// Seconds a connection may take to send a complete request (slow or silent clients).
    pub idle_timeout_secs: u64,
    /// Requests per second per peer uid (metrics: per client address), on average...
    pub requests_per_second: u32,
    /// ...and in a burst.
    pub request_burst: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` for Prometheus text metrics at `/metrics`; unset: no metrics endpoint.
    pub listen: Option<SocketAddr>,
}

/// The levels `log_level` may name (alone, or after `target=`).
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            policy_dir: paths::POLICY_DIR.into(),
            backend: BackendChoice::Auto,
            log_level: "info".into(),
            max_agent_processes: enforcer_common::PROCS_ENTRIES,
            pin_dir: paths::PIN_DIR.into(),
            state_dir: paths::STATE_DIR.into(),
            dns_refresh_secs: 60,
            audit: AuditConfig::default(),
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        let rotation = Rotation::default();
        AuditConfig {
            path: paths::AUDIT_LOG.into(),
            rotate_bytes: rotation.max_bytes,
            retain: rotation.retain,
            fsync_interval_ms: rotation.fsync_interval.as_millis() as u64,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: paths::API_SOCKET.into(),
            group: None,
            auditor_group: None,
            admin_group: None,
            max_connections: Limits::default().max_connections,
            idle_timeout_secs: Limits::default().idle_timeout.as_secs(),
            requests_per_second: Limits::default().requests_per_second,
            request_burst: Limits::default().request_burst,
        }
    }
}

/// Command-line overrides; each one replaces the config file's value.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    #[arg(long, value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_agent_processes: Option<u32>,
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, value_name = "SECS")]
    pub dns_refresh_secs: Option<u64>,
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    #[arg(long, value_name = "BYTES")]
    pub audit_rotate_bytes: Option<u64>,
    #[arg(long, value_name = "N")]
    pub audit_retain: Option<u32>,
    #[arg(long, value_name = "MS")]
    pub audit_fsync_interval_ms: Option<u64>,
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// `api.group`: launchers (run agents, read status).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// `api.auditor_group`: auditors (follow events, read status).
    #[arg(long, value_name = "GROUP")]
    pub auditor_group: Option<String>,
    /// `api.admin_group`: admins besides root (grant, revoke, reload too).
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,
    #[arg(long, value_name = "N")]
    pub api_max_connections: Option<usize>,
    #[arg(long, value_name = "SECS")]
    pub api_idle_timeout_secs: Option<u64>,
    #[arg(long, value_name = "N")]
    pub api_requests_per_second: Option<u32>,
    #[arg(long, value_name = "N")]
    pub api_request_burst: Option<u32>,
    /// `host:port` for Prometheus metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Smallest rotation size: below this a single large event record could not fit a file.
pub const MIN_ROTATE_BYTES: u64 = 64 * 1024;

impl DaemonConfig {
    /// Parse config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: DaemonConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |span| line_col(text, span.start));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                col,
                message: e.message().to_owned(),
            }
        })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Read `path`. A missing file is an error only when `required` (it was given explicitly);
    /// the default location may be absent, then built-in defaults apply.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(cause) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                cause,
            }),
        }
    }

    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        macro_rules! set {
            ($flag:expr => $field:expr) => {
                if let Some(v) = &$flag {
                    $field = v.clone();
                }
            };
        }
        set!(o.policy_dir => self.policy_dir);
        set!(o.backend => self.backend);
        set!(o.log_level => self.log_level);
        set!(o.max_agent_processes => self.max_agent_processes);
        set!(o.pin_dir => self.pin_dir);
        set!(o.state_dir => self.state_dir);
        set!(o.dns_refresh_secs => self.dns_refresh_secs);
        set!(o.audit_log => self.audit.path);
        set!(o.audit_rotate_bytes => self.audit.rotate_bytes);
        set!(o.audit_retain => self.audit.retain);
        set!(o.audit_fsync_interval_ms => self.audit.fsync_interval_ms);
        set!(o.socket => self.api.socket);
        set!(o.api_max_connections => self.api.max_connections);
        set!(o.api_idle_timeout_secs => self.api.idle_timeout_secs);
        set!(o.api_requests_per_second => self.api.requests_per_second);
        set!(o.api_request_burst => self.api.request_burst);
        if let Some(group) = &o.socket_group {
            self.api.group = Some(group.clone());
        }
        if let Some(group) = &o.auditor_group {
            self.api.auditor_group = Some(group.clone());
        }
        if let Some(group) = &o.admin_group {
            self.api.admin_group = Some(group.clone());
        }
        if let Some(addr) = o.metrics_listen {
            self.metrics.listen = Some(addr);
        }
        self.validate("command line")
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, message: String| {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                field,
                message,
            })
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid(
                "log_level",
                format!("{:?} is not a log filter: {e}", self.log_level),
            );
        }
        // The filter syntax takes any word as a module name (`verbose` would enable everything
        // of a module nobody has): every directive is a level or names one with `=`.
        if let Some(word) =
            self.log_level.split(',').map(str::trim).find(|d| {
                !d.contains('=') && !LOG_LEVELS.contains(&d.to_ascii_lowercase().as_str())
            })
        {
            return invalid(
                "log_level",
                format!(
                    "{word:?} is not a level (one of {}) nor `target=level`",
                    LOG_LEVELS.join(", ")
                ),
            );
        }
        if self.audit.rotate_bytes < MIN_ROTATE_BYTES {
            return invalid(
                "audit.rotate_bytes",
                format!(
                    "{} is below the minimum {MIN_ROTATE_BYTES}",
                    self.audit.rotate_bytes
                ),
            );
        }
        if !(1..=1 << 22).contains(&self.max_agent_processes) {
            return invalid(
                "max_agent_processes",
                format!("{} is outside 1..=4194304", self.max_agent_processes),
            );
        }
        if self.dns_refresh_secs == 0 {
            return invalid("dns_refresh_secs", "must be at least 1".into());
        }
        for (field, path) in [
            ("policy_dir", &self.policy_dir),
            ("pin_dir", &self.pin_dir),
            ("state_dir", &self.state_dir),
            ("audit.path", &self.audit.path),
            ("api.socket", &self.api.socket),
        ] {
            if !path.is_absolute() {
                return invalid(field, format!("{} is not an absolute path", path.display()));
            }
        }
        for (field, value, max) in [
            (
                "api.max_connections",
                self.api.max_connections as u64,
                65536,
            ),
            ("api.idle_timeout_secs", self.api.idle_timeout_secs, 3600),
            (
                "api.requests_per_second",
                u64::from(self.api.requests_per_second),
                1_000_000,
            ),
            (
                "api.request_burst",
                u64::from(self.api.request_burst),
                1_000_000,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return invalid(field, format!("{value} is outside 1..={max}"));
            }
        }
        for (field, group) in [
            ("api.group", &self.api.group),
            ("api.auditor_group", &self.api.auditor_group),
            ("api.admin_group", &self.api.admin_group),
        ] {
            if group.as_deref() == Some("") {
                return invalid(field, "must not be empty (leave it out: nobody)".into());
            }
        }
        Ok(())
    }

    /// The limits of the API socket and the metrics endpoint (api/limits.rs).
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.api.max_connections,
            idle_timeout: Duration::from_secs(self.api.idle_timeout_secs),
            requests_per_second: self.api.requests_per_second,
            request_burst: self.api.request_burst,
        }
    }

    pub fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.audit.rotate_bytes,
            retain: self.audit.retain,
            fsync_interval: Duration::from_millis(self.audit.fsync_interval_ms),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../packaging/enforcer.toml");

    #[test]
    fn the_shipped_sample_parses() {
        let config = DaemonConfig::parse(SAMPLE, Path::new("enforcer.toml"))
            .expect("packaging/enforcer.toml");
        assert_eq!(config.audit.path, PathBuf::from(paths::AUDIT_LOG));
        assert_eq!(config.api.group.as_deref(), Some("enforcer"));
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(
            DaemonConfig::parse("", Path::new("c.toml")).unwrap(),
            DaemonConfig::default()
        );
    }

    #[test]
    fn parse_errors_point_at_file_line_and_column() {
        let text = "policy_dir = \"/p\"\n[audit]\nretain = \"ten\"\n";
        let err = DaemonConfig::parse(text, Path::new("/etc/e.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/e.toml:3:10: "), "{err}");
        assert!(err.contains("u32") || err.contains("integer"), "{err}");

        let err = DaemonConfig::parse("[api]\nsockt = \"/x\"\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("e.toml:2:1: ") && err.contains("unknown field `sockt`"),
            "{err}"
        );

        let err = DaemonConfig::parse("backend = \"ebpf\"\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("e.toml:1:11: ") && err.contains("auto"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let err = DaemonConfig::parse("[audit]\nrotate_bytes = 10\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "e.toml: `audit.rotate_bytes`: 10 is below the minimum 65536"
        );
        let err = DaemonConfig::parse("policy_dir = \"rel/dir\"\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`policy_dir`") && err.contains("not an absolute path"),
            "{err}"
        );
        let err = DaemonConfig::parse("log_level = \"info,[\"\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`log_level`"), "{err}");
        let err = DaemonConfig::parse("log_level = \"verbose\"\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`log_level`") && err.contains("\"verbose\" is not a level"),
            "{err}"
        );
        for ok in [
            "debug",
            "WARN",
            "info,enforcer=trace",
            "enforcer::daemon=debug",
        ] {
            DaemonConfig::parse(&format!("log_level = {ok:?}\n"), Path::new("e.toml"))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn flags_override_the_file_and_are_validated() {
        let mut config = DaemonConfig::parse(
            "policy_dir = \"/a\"\n[api]\nsocket = \"/s\"\n",
            Path::new("c"),
        )
        .unwrap();
        let overrides = Overrides {
            policy_dir: Some("/b".into()),
            audit_log: Some("/tmp/x.jsonl".into()),
            socket_group: Some("wheel".into()),
            metrics_listen: Some("127.0.0.1:9100".parse().unwrap()),
            backend: Some(BackendChoice::Fallback),
            ..Overrides::default()
        };
        config.apply(&overrides).unwrap();
        assert_eq!(config.policy_dir, PathBuf::from("/b"));
        assert_eq!(
            config.api.socket,
            PathBuf::from("/s"),
            "a flag not given keeps the file's value"
        );
        assert_eq!(config.audit.path, PathBuf::from("/tmp/x.jsonl"));
        assert_eq!(config.api.group.as_deref(), Some("wheel"));
        assert_eq!(config.backend, BackendChoice::Fallback);
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );

        let err = config.apply(&Overrides {
            audit_retain: Some(3),
            audit_rotate_bytes: Some(1),
            ..Default::default()
        });
        let err = err.unwrap_err().to_string();
        assert_eq!(
            err,
            "command line: `audit.rotate_bytes`: 1 is below the minimum 65536"
        );
    }

    #[test]
    fn api_limits_parse_and_are_bounded() {
        let config = DaemonConfig::parse(
            "[api]\nmax_connections = 8\nidle_timeout_secs = 3\nrequests_per_second = 5\nrequest_burst = 7\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(
            config.limits(),
            Limits {
                max_connections: 8,
                idle_timeout: Duration::from_secs(3),
                requests_per_second: 5,
                request_burst: 7,
            }
        );
        assert_eq!(DaemonConfig::default().limits(), Limits::default());
        let err = DaemonConfig::parse("[api]\nmax_connections = 0\n", Path::new("e.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "e.toml: `api.max_connections`: 0 is outside 1..=65536");
        let mut config = DaemonConfig::default();
        let err = config
            .apply(&Overrides {
                api_idle_timeout_secs: Some(0),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "command line: `api.idle_timeout_secs`: 0 is outside 1..=3600"
        );
    }

    #[test]
    fn missing_default_file_is_fine_missing_explicit_file_is_not() {
        let missing = Path::new("/nonexistent/enforcer.toml");
        assert_eq!(
            DaemonConfig::load(missing, false).unwrap(),
            DaemonConfig::default()
        );
        let err = DaemonConfig::load(missing, true).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/enforcer.toml: "), "{err}");
    }
}
