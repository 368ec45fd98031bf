//! The daemon side of the API socket. Connections are handled on their own tasks; every request
//! is passed to the daemon core as an [`ApiCall`] together with the caller's kernel-verified
//! credentials (SO_PEERCRED), so the core alone decides and changes state.

use std::{
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt, PermissionsExt},
    },
    path::Path,
    sync::Arc,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{broadcast, mpsc, oneshot},
};

pub use super::peer::Peer;
use super::{
    limits::{AcceptBackoff, Limiter, PeerKey, Permit},
    protocol::{parse_request, Request, Response, MAX_REQUEST_BYTES},
    ApiError,
};
use crate::{
    audit::{clock, LostRecord, Record},
    daemon::roles::RoleGroups,
};

pub struct ApiCall {
    pub request: Request,
    pub peer: Peer,
    pub reply: oneshot::Sender<CallReply>,
}

pub struct CallReply {
    pub response: Response,
    /// For `subscribe`: the live record stream, subscribed atomically with `next_seq`.
    pub stream: Option<broadcast::Receiver<Arc<str>>>,
    /// The response already serialized (one status answers every status request that was
    /// waiting, see daemon/service.rs): sent instead of `response`.
    pub encoded: Option<Arc<str>>,
}

impl CallReply {
    pub fn plain(response: Response) -> Self {
        CallReply {
            response,
            stream: None,
            encoded: None,
        }
    }

    /// A response line shared by several callers (no copy per caller).
    pub fn encoded(line: Arc<str>) -> Self {
        CallReply {
            encoded: Some(line),
            ..Self::plain(Response::Error {
                message: String::new(),
            })
        }
    }
}

/// `response` as one JSON line.
pub fn encode(response: &Response) -> String {
    let mut line = serde_json::to_string(response).expect("responses always serialize");
    line.push('\n');
    line
}

/// Socket mode: owner (root) and the configured group may connect, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// Create the socket at `path`, owned by root and the launcher group, mode 0660, with an ACL
/// entry for each other role group (auditors and admins must reach the socket too; the role
/// table decides what each may ask). Refuses when another daemon already answers there;
/// removes a stale socket file otherwise.
pub fn bind(path: &Path, groups: &RoleGroups) -> Result<UnixListener, ApiError> {
    let setup = |reason: String| ApiError::Setup {
        path: path.to_path_buf(),
        reason,
    };
    let gid = groups
        .launcher
        .as_ref()
        .map(|(_, gid)| nix::unistd::Gid::from_raw(*gid));
    let mut others: Vec<u32> = [&groups.auditor, &groups.admin]
        .into_iter()
        .flatten()
        .map(|(_, gid)| *gid)
        .filter(|g| Some(*g) != gid.map(|g| g.as_raw()))
        .collect();
    others.sort_unstable();
    others.dedup();
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
        set_group_acl(dir, 0o7, 0o5, 0o1, &others)
            .map_err(|e| setup(format!("ACL on {}: {e}", dir.display())))?;
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
    set_group_acl(path, 0o6, 0o6, 0o6, &others).map_err(|e| setup(format!("ACL: {e}")))?;
    Ok(listener)
}

/// Give the groups `gids` the permission `group_perm` on `path` with a POSIX access ACL (the
/// kernel's `system.posix_acl_access` format: a version, then tag/perm/id entries sorted by
/// tag and id), keeping `owner_perm` and `owner_group_perm` and nothing for others. No ACL is
/// written when `gids` is empty (the mode alone says it all).
fn set_group_acl(
    path: &Path,
    owner_perm: u16,
    owner_group_perm: u16,
    group_perm: u16,
    gids: &[u32],
) -> Result<(), String> {
    const VERSION: u32 = 2;
    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const NO_ID: u32 = u32::MAX;
    if gids.is_empty() {
        return Ok(());
    }
    let mut acl = VERSION.to_le_bytes().to_vec();
    let mut entry = |tag: u16, perm: u16, id: u32| {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    };
    entry(USER_OBJ, owner_perm, NO_ID);
    entry(GROUP_OBJ, owner_group_perm, NO_ID);
    for gid in gids {
        entry(GROUP, group_perm, *gid);
    }
    entry(MASK, owner_group_perm | group_perm, NO_ID);
    entry(OTHER, 0, NO_ID);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "path holds a NUL byte".to_owned())?;
    // SAFETY: both strings are NUL-terminated and `acl` is valid for its length.
    let ret = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    if ret != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "giving groups {gids:?} access (api.auditor_group, api.admin_group) needs POSIX ACLs on this file system: {e}"
        ));
    }
    Ok(())
}

/// Accept connections until the core's call channel closes. Connections beyond the cap are
/// answered with an error and closed; a failing accept (EMFILE...) backs off (api/limits.rs).
pub async fn serve(
    listener: UnixListener,
    calls: mpsc::Sender<ApiCall>,
    host: Arc<str>,
    limiter: Arc<Limiter>,
) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                backoff.after_error("API socket", &e).await;
                continue;
            }
        };
        backoff.succeeded();
        if calls.is_closed() {
            return;
        }
        match limiter.admit() {
            Ok(permit) => {
                tokio::spawn(handle_connection(
                    stream,
                    calls.clone(),
                    host.clone(),
                    limiter.clone(),
                    permit,
                ));
            }
            // One short line fits the socket's send buffer: never waits for the client.
            Err(refusal) => {
                let _ = stream.try_write(
                    encode(&Response::Error {
                        message: refusal.to_string(),
                    })
                    .as_bytes(),
                );
            }
        }
    }
}

async fn handle_connection(
    stream: UnixStream,
    calls: mpsc::Sender<ApiCall>,
    host: Arc<str>,
    limiter: Arc<Limiter>,
    _permit: Permit,
) {
    let idle = limiter.limits().idle_timeout;
    // Read at accept, as close to the peer's connect() as the daemon gets: the pid binding
    // (pidfd or start time) is what later requests are checked against.
    let peer = match Peer::of_socket(stream.as_raw_fd()) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::warn!("API connection refused, the peer cannot be identified: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let mut bounded = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        let Ok(read) = tokio::time::timeout(idle, bounded.read_line(&mut line)).await else {
            let message = format!(
                "no complete request within {} s (api.idle_timeout_secs); closing",
                idle.as_secs()
            );
            let _ = send(&mut write, &Response::Error { message }).await;
            return;
        };
        let n = match read {
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
        if let Err(refusal) = limiter.request(PeerKey::Uid(peer.uid)) {
            let message = refusal.to_string();
            if send(&mut write, &Response::Error { message })
                .await
                .is_err()
            {
                return;
            }
            continue;
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
                peer: peer.clone(),
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
        let sent = match &reply.encoded {
            Some(line) => write.write_all(line.as_bytes()).await,
            None => send(&mut write, &reply.response).await,
        };
        if sent.is_err() {
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
    write.write_all(encode(response).as_bytes()).await
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
                            prev: None,
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
