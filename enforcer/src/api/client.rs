//! Blocking API client. No threads and no async runtime: `enforcer run` uses it right before
//! `exec`, and a multi-threaded launcher would exec with other threads' state half-done.

use std::{
    io::{BufRead, BufReader, Write},
    os::{fd::AsRawFd as _, unix::net::UnixStream},
    path::{Path, PathBuf},
};

use super::{
    protocol::{Request, Response},
    ApiError,
};

/// The socket to use: the flag, else `$ENFORCER_SOCKET`, else the default path.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("ENFORCER_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::paths::API_SOCKET))
}

pub struct ApiClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl ApiClient {
    pub fn connect(path: &Path) -> Result<Self, ApiError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ApiError::NotRunning {
                    path: path.to_path_buf(),
                }
            }
            std::io::ErrorKind::PermissionDenied => ApiError::PermissionDenied {
                path: path.to_path_buf(),
            },
            _ => ApiError::Io {
                path: path.to_path_buf(),
                cause: e,
            },
        })?;
        Ok(ApiClient {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
        })
    }

    /// Check that the process serving the socket runs as root, as the daemon does (loading BPF
    /// programs needs it). The uid is the kernel's record of the listening process
    /// (`SO_PEERCRED`), not anything the server says: a socket served by any other uid (a fake
    /// daemon behind `--socket` or `$ENFORCER_SOCKET`) is refused before a request is sent.
    pub fn verify_daemon(&self) -> Result<(), ApiError> {
        let uid = super::peer::server_uid(self.reader.get_ref().as_raw_fd()).map_err(|reason| {
            ApiError::Setup {
                path: self.path.clone(),
                reason,
            }
        })?;
        if uid != 0 {
            return Err(ApiError::NotTheDaemon {
                path: self.path.clone(),
                uid,
            });
        }
        Ok(())
    }

    /// Send one request and read its response. `Response::Error` becomes `ApiError::Refused`.
    pub fn call(&mut self, request: &Request) -> Result<Response, ApiError> {
        let mut line = serde_json::to_string(request).expect("requests always serialize");
        line.push('\n');
        self.reader
            .get_mut()
            .write_all(line.as_bytes())
            .map_err(|e| self.io(e))?;
        let reply = self.next_line()?.ok_or(ApiError::Closed)?;
        match serde_json::from_str::<Response>(&reply) {
            Ok(Response::Error { message }) => Err(ApiError::Refused(message)),
            Ok(response) => Ok(response),
            Err(e) => Err(ApiError::BadResponse(format!("{e}: {}", reply.trim_end()))),
        }
    }

    /// The next line the daemon sends (subscriptions); `None` when it closed the connection.
    pub fn next_line(&mut self) -> Result<Option<String>, ApiError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line)),
            Err(e) => Err(self.io(e)),
        }
    }

    fn io(&self, cause: std::io::Error) -> ApiError {
        ApiError::Io {
            path: self.path.clone(),
            cause,
        }
    }
}
