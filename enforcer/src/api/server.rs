//! The daemon side of the API socket. Connections are handled on their own tasks; every request
//! is passed to the daemon core as an [`ApiCall`] together with the caller's kernel-verified
//! credentials (SO_PEERCRED), so the core alone decides and changes state.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::protocol::{parse_request, Request, Response, MAX_REQUEST_BYTES};
use super::ApiError;
use crate::audit::{clock, LostRecord, Record};

/// Who is on the other end, as the kernel saw it when the connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `None` if the peer is in a pid namespace the daemon cannot see into.
    pub pid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
}

pub struct ApiCall {
    pub request: Request,
    pub peer: Peer,
    pub reply: oneshot::Sender<CallReply>,
}

pub struct CallReply {
    pub response: Response,
    /// For `subscribe`: the live record stream, subscribed atomically with `next_seq`.
    pub stream: Option<broadcast::Receiver<Arc<str>>>,
}

impl CallReply {
    pub fn plain(response: Response) -> Self {
        CallReply {
            response,
            stream: None,
        }
    }
}

/// Socket mode: owner (root) and the configured group may connect, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// Create the socket at `path`, owned by root and `group` (a group name), mode 0660. Refuses
/// when another daemon already answers there; removes a stale socket file otherwise.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, ApiError> {
    let setup = |reason: String| ApiError::Setup {
        path: path.to_path_buf(),
        reason,
    };
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|e| setup(format!("looking up group {name:?}: {e}")))?
                .ok_or_else(|| setup(format!("group {name:?} does not exist")))?
                .gid,
        ),
        None => None,
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        // The directory closes the window between bind() and chmod() below.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| setup(format!("creating {}: {e}", dir.display())))?;
        if let Some(gid) = gid {
            nix::unistd::chown(dir, None, Some(gid))
                .map_err(|e| setup(format!("chown {}: {e}", dir.display())))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(setup(
                "another enforcer daemon is already listening there".into(),
            ));
        }
        std::fs::remove_file(path).map_err(|e| setup(format!("removing the stale socket: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| setup(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| setup(format!("chmod: {e}")))?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| setup(format!("chown: {e}")))?;
    }
    Ok(listener)
}

/// Accept connections until the core's call channel closes.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<ApiCall>, host: Arc<str>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("API socket accept failed: {e}");
                continue;
            }
        };
        if calls.is_closed() {
            return;
        }
        tokio::spawn(handle_connection(stream, calls.clone(), host.clone()));
    }
}

async fn handle_connection(stream: UnixStream, calls: mpsc::Sender<ApiCall>, host: Arc<str>) {
    let peer = match stream.peer_cred() {
        Ok(cred) => Peer {
            pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
            uid: cred.uid(),
            gid: cred.gid(),
        },
        Err(e) => {
            tracing::warn!("API connection without peer credentials: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                let _ = send(
                    &mut write,
                    &Response::Error {
                        message: format!("unreadable request: {e}"),
                    },
                )
                .await;
                return;
            }
        };
        if n == 0 {
            return;
        }
        if !line.ends_with('\n') && line.len() > MAX_REQUEST_BYTES {
            let message = format!("request longer than {MAX_REQUEST_BYTES} bytes");
            let _ = send(&mut write, &Response::Error { message }).await;
            return;
        }
        let request = match parse_request(&line) {
            Ok(request) => request,
            Err(message) => {
                if send(&mut write, &Response::Error { message })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if calls
            .send(ApiCall {
                request,
                peer,
                reply: reply_tx,
            })
            .await
            .is_err()
        {
            let _ = send(
                &mut write,
                &Response::Error {
                    message: "the daemon is stopping".into(),
                },
            )
            .await;
            return;
        }
        let Ok(reply) = reply_rx.await else { return };
        if send(&mut write, &reply.response).await.is_err() {
            return;
        }
        if let Some(stream) = reply.stream {
            stream_records(stream, &mut write, &mut reader, &host).await;
            return;
        }
    }
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(response).expect("responses always serialize");
    line.push('\n');
    write.write_all(line.as_bytes()).await
}

/// Forward live records until the subscriber hangs up or the daemon stops. A subscriber too slow
/// for the broadcast buffer is told how many records it missed (they are in the log).
async fn stream_records(
    mut records: broadcast::Receiver<Arc<str>>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    host: &str,
) {
    let mut ignored = [0u8; 256];
    loop {
        tokio::select! {
            received = records.recv() => {
                let line: Arc<str> = match received {
                    Ok(line) => line,
                    Err(broadcast::error::RecvError::Lagged(count)) => {
                        let lost = Record::Lost(LostRecord {
                            seq: 0,
                            time: clock::format_rfc3339_ns(clock::now_ns()),
                            host: host.to_owned(),
                            count,
                            agent: None,
                            source: "subscriber".into(),
                            total: None,
                        });
                        let mut text = serde_json::to_string(&lost).expect("records always serialize");
                        text.push('\n');
                        text.into()
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if write.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            read = reader.read(&mut ignored) => {
                // The subscriber sends nothing more; EOF or an error means it is gone.
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}
