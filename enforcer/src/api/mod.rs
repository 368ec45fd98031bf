//! The daemon's API: a unix socket speaking JSON lines (one request, one response; `subscribe`
//! then streams audit records). `protocol` defines the messages, `server` accepts connections
//! and checks peer credentials inside the daemon (`peer`: credentials, groups and the pid
//! binding the kernel recorded), `client` is the blocking client used by
//! `enforcer run` (which must stay single-threaded until it execs), `status` and `events`;
//! `limits` keeps clients from starving the daemon (connection cap, rate, accept back-off).

pub mod client;
pub mod limits;
pub mod peer;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

pub use protocol::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the enforcer daemon is not running (nothing listens on {})", path.display())]
    NotRunning { path: PathBuf },
    #[error("permission denied on {}: the API socket is for root and the group set as `api.group` in the daemon's config", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("the daemon sent something that is not a response: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Refused(String),
    #[error("API socket {}: {reason}", path.display())]
    Setup { path: PathBuf, reason: String },
    #[error("{} is served by a process of uid {uid}, not by root: it is not the enforcer daemon (which runs as root)", path.display())]
    NotTheDaemon { path: PathBuf, uid: u32 },
}
