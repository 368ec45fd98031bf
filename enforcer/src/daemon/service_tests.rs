//! The API end to end over a real unix socket: server, peer credentials, core, client.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::PathBuf,
};

use super::*;
use crate::{
    api::{client::ApiClient, ApiError},
    audit::writer::tests::tempdir,
    daemon::core::tests::start_in,
};

fn raw_exchange(socket: &PathBuf, lines: &[&str]) -> Vec<String> {
    let stream = UnixStream::connect(socket).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    lines
        .iter()
        .map(|line| {
            writer.write_all(line.as_bytes()).unwrap();
            let mut reply = String::new();
            reader.read_line(&mut reply).unwrap();
            reply
        })
        .collect()
}

#[test]
fn api_requests_over_the_socket() {
    let dir = tempdir();
    let mut h = start_in(&dir);
    let socket = dir.join("run/api.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(async { server::bind(&socket, &Default::default()) })
        .expect("bind");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode");

    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let client_socket = socket.clone();
    let client = std::thread::spawn(move || {
        let me = std::process::id();
        // Bad requests get precise errors and the connection stays usable.
        let replies = raw_exchange(
            &client_socket,
            &[
                "{\"request\":\"shutdown\"}\n",
                "{\"request\":\"register\",\"agent\":\"coder\"}\n",
                "{\"request\":\"status\"}\n",
            ],
        );
        assert!(
            replies[0].contains("\"result\":\"error\"")
                && replies[0].contains("unknown variant `shutdown`"),
            "{}",
            replies[0]
        );
        assert!(replies[1].contains("missing field `pid`"), "{}", replies[1]);
        assert!(
            replies[2].contains("\"result\":\"status\""),
            "{}",
            replies[2]
        );

        let mut c = ApiClient::connect(&client_socket).unwrap();
        let err = c
            .call(&Request::Register {
                agent: "coder".into(),
                pid: me + 1,
            })
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Refused(m) if m.contains("not the caller")),
            "{err}"
        );

        let mut live = ApiClient::connect(&client_socket).unwrap();
        let Response::Subscribed { next_seq } = live.call(&Request::Subscribe {}).unwrap() else {
            panic!("not subscribed")
        };

        let reply = c
            .call(&Request::Register {
                agent: "coder".into(),
                pid: me,
            })
            .expect("own pid registers");
        assert!(
            matches!(&reply, Response::Registered { agent, .. } if agent == "coder"),
            "{reply:?}"
        );
        let err = c
            .call(&Request::Register {
                agent: "helper".into(),
                pid: me,
            })
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Refused(m) if m.contains("does not delegate to \"helper\"")),
            "{err}"
        );

        let line = live.next_line().unwrap().expect("a live record");
        let record: crate::audit::Record = serde_json::from_str(&line).unwrap();
        assert_eq!(
            record.seq(),
            next_seq,
            "the stream starts exactly at next_seq"
        );
        assert!(line.contains("\"event\":\"register\""), "{line}");
        done_tx.send(()).unwrap();
    });

    runtime.block_on(async {
        let (calls_tx, mut calls) = mpsc::channel(8);
        tokio::spawn(server::serve(
            listener,
            calls_tx,
            "testhost".into(),
            Limiter::new(Default::default()),
        ));
        loop {
            tokio::select! {
                Some(call) = calls.recv() => handle_calls(&mut h.daemon, call, &mut calls),
                _ = &mut done_rx => break,
            }
        }
    });
    client.join().expect("client assertions");
    let registered = h
        .kernel
        .lock()
        .unwrap()
        .procs
        .get(&std::process::id())
        .copied();
    assert_eq!(
        registered.map(|s| s.agent()),
        Some(1),
        "the caller is agent 1 (coder) in the kernel"
    );

    // A second daemon must not take over a live socket.
    let err = runtime
        .block_on(async { server::bind(&socket, &Default::default()) })
        .expect_err("second bind must fail");
    assert!(err.to_string().contains("already listening"), "{err}");
}

/// The connection cap, the idle timeout and the per-uid rate answer with precise errors, and a
/// flood of status requests waiting together is answered from one report.
#[test]
fn api_limits_answer_precisely() {
    let dir = tempdir();
    let mut h = start_in(&dir);
    let socket = dir.join("run/api.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(async { server::bind(&socket, &Default::default()) })
        .expect("bind");
    let limiter = Limiter::new(crate::api::limits::Limits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(1),
        requests_per_second: 1,
        request_burst: 3,
    });
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let client_socket = socket.clone();
    let client = std::thread::spawn(move || {
        let connect = || {
            let s = UnixStream::connect(&client_socket).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        };
        let read_line = |s: &UnixStream| {
            let mut line = String::new();
            let _ = BufReader::new(s).read_line(&mut line);
            line
        };
        let silent = connect();
        let busy = connect();
        std::thread::sleep(Duration::from_millis(100));
        let refused = read_line(&connect());
        assert!(
            refused.contains("too many connections: 2 are open (api.max_connections)"),
            "{refused}"
        );
        let timed_out = read_line(&silent);
        assert!(
            timed_out.contains("no complete request within 1 s (api.idle_timeout_secs)"),
            "{timed_out}"
        );
        drop(silent);
        std::thread::sleep(Duration::from_millis(100));
        // A burst of 3, then the rate: the 4th request at once is refused, the connection
        // stays usable.
        let replies = raw_exchange(&client_socket, &["{\"request\":\"status\"}\n"; 4]);
        for reply in &replies[..3] {
            assert!(reply.contains("\"result\":\"status\""), "{reply}");
        }
        let me = nix::unistd::getuid();
        assert!(
            replies[3].contains(&format!(
                "rate limit: uid {me} sent more than 1 requests per second (burst 3"
            )),
            "{}",
            replies[3]
        );
        drop(busy);
        done_tx.send(()).unwrap();
    });
    runtime.block_on(async {
        let (calls_tx, mut calls) = mpsc::channel(8);
        tokio::spawn(server::serve(
            listener,
            calls_tx,
            "testhost".into(),
            limiter,
        ));
        loop {
            tokio::select! {
                Some(call) = calls.recv() => handle_calls(&mut h.daemon, call, &mut calls),
                _ = &mut done_rx => break,
            }
        }
    });
    client.join().expect("client assertions");
}

#[test]
fn client_reports_a_missing_daemon_clearly() {
    let dir = tempdir();
    let err = ApiClient::connect(&dir.join("none.sock"))
        .err()
        .expect("no daemon");
    assert!(err.to_string().contains("daemon is not running"), "{err}");
}

#[test]
fn policy_directory_changes_send_a_reload_hint() {
    let dir = tempdir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (tx, mut rx) = mpsc::channel(1);
        let _watcher = watch_policy_dir(&dir, tx).expect("watching a directory");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/agent.toml"), "[agent]\n").unwrap();
        let hint = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(
            matches!(hint, Ok(Some(()))),
            "no reload hint within 5 s of a policy file change"
        );
    });
    let err = watch_policy_dir(&dir.join("missing"), mpsc::channel(1).0)
        .expect_err("a missing directory");
    assert!(err.to_string().contains("missing"), "{err}");
}

/// Auditors and admins reach the socket through ACL entries (the file's group is `api.group`).
#[test]
fn role_groups_get_acl_entries_on_the_socket() {
    let dir = tempdir();
    let socket = dir.join("run/api.sock");
    let groups = RoleGroups {
        launcher: None,
        auditor: Some(("auditors".into(), 4321)),
        admin: Some(("admins".into(), 4322)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _listener = runtime
        .block_on(async { server::bind(&socket, &groups) })
        .expect("bind");
    for (path, group_perm) in [(&socket, 6u16), (&dir.join("run"), 1)] {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let mut buf = [0u8; 128];
        // SAFETY: valid strings and buffer.
        let n = unsafe {
            libc::getxattr(
                c_path.as_ptr(),
                c"system.posix_acl_access".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert!(
            n > 0,
            "{}: no ACL: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        // version, then (tag u16, perm u16, id u32) entries.
        let entries: Vec<(u16, u16, u32)> = buf[4..n as usize]
            .chunks_exact(8)
            .map(|e| {
                (
                    u16::from_le_bytes([e[0], e[1]]),
                    u16::from_le_bytes([e[2], e[3]]),
                    u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                )
            })
            .collect();
        let named: Vec<(u16, u32)> = entries
            .iter()
            .filter(|e| e.0 == 0x08)
            .map(|e| (e.1, e.2))
            .collect();
        assert_eq!(
            named,
            [(group_perm, 4321), (group_perm, 4322)],
            "{}",
            path.display()
        );
        assert!(
            entries.iter().any(|e| e.0 == 0x20 && e.1 == 0),
            "others get nothing: {entries:?}"
        );
    }
}
