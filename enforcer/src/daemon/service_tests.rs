//! The API end to end over a real unix socket: server, peer credentials, core, client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::*;
use crate::api::client::ApiClient;
use crate::api::ApiError;
use crate::audit::writer::tests::tempdir;
use crate::daemon::core::tests::start_in;

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
        .block_on(async { server::bind(&socket, None) })
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
        tokio::spawn(server::serve(listener, calls_tx, "testhost".into()));
        loop {
            tokio::select! {
                Some(call) = calls.recv() => handle_call(&mut h.daemon, call),
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
        .block_on(async { server::bind(&socket, None) })
        .expect_err("second bind must fail");
    assert!(err.to_string().contains("already listening"), "{err}");
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
