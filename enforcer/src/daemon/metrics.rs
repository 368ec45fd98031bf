//! Prometheus text exposition (format 0.0.4) of the daemon's counters, served at `/metrics`.

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

use crate::api::{
    limits::{AcceptBackoff, Limiter, PeerKey, Permit},
    protocol::StatusReport,
};

/// Render the counters and gauges of a status report.
pub fn render(status: &StatusReport) -> String {
    let mut out = String::new();
    let section = |out: &mut String, name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };
    section(
        &mut out,
        "enforcer_decisions_total",
        "counter",
        "Kernel decisions logged, by agent, operation and verdict.",
        status
            .decisions
            .iter()
            .map(|d| {
                format!(
                    "enforcer_decisions_total{{agent=\"{}\",op=\"{}\",verdict=\"{}\"}} {}",
                    escape(&d.agent),
                    escape(&d.op),
                    escape(&d.verdict),
                    d.count
                )
            })
            .collect(),
    );
    section(
        &mut out,
        "enforcer_events_lost_total",
        "counter",
        "Events the kernel could not put in the ring buffer, by agent.",
        status
            .losses
            .iter()
            .map(|l| {
                format!(
                    "enforcer_events_lost_total{{agent=\"{}\"}} {}",
                    escape(&l.agent),
                    l.count
                )
            })
            .collect(),
    );
    section(
        &mut out,
        "enforcer_kernel_failures_total",
        "counter",
        "Internal failures inside the kernel programs, by failure point: each denied the decision (fail closed).",
        status
            .failures
            .iter()
            .map(|f| {
                format!(
                    "enforcer_kernel_failures_total{{point=\"{}\"}} {}",
                    escape(&f.point),
                    f.count
                )
            })
            .collect(),
    );
    section(
        &mut out,
        "enforcer_reloads_total",
        "counter",
        "Policy reloads applied.",
        vec![format!("enforcer_reloads_total {}", status.reloads)],
    );
    section(
        &mut out,
        "enforcer_reload_failures_total",
        "counter",
        "Policy reloads rejected (invalid policy or kernel error).",
        vec![format!(
            "enforcer_reload_failures_total {}",
            status.reload_failures
        )],
    );
    section(
        &mut out,
        "enforcer_policy_version",
        "gauge",
        "Version of the applied policy.",
        vec![format!("enforcer_policy_version {}", status.policy_version)],
    );
    section(
        &mut out,
        "enforcer_agent_processes",
        "gauge",
        "Live processes that are members of each agent.",
        status
            .agents
            .iter()
            .map(|a| {
                format!(
                    "enforcer_agent_processes{{agent=\"{}\"}} {}",
                    escape(&a.name),
                    a.processes
                )
            })
            .collect(),
    );
    section(
        &mut out,
        "enforcer_subscribers",
        "gauge",
        "Live event stream subscribers.",
        vec![format!("enforcer_subscribers {}", status.subscribers)],
    );
    section(
        &mut out,
        "enforcer_audit_backlog_records",
        "gauge",
        "Audit records waiting to be written (the log cannot take them: disk full, I/O errors).",
        vec![format!(
            "enforcer_audit_backlog_records {}",
            status.audit_backlog
        )],
    );
    section(
        &mut out,
        "enforcer_map_entries",
        "gauge",
        "Entries in use in the kernel maps whose capacity limits enforcement (rule maps: the running policy's slot).",
        status
            .maps
            .iter()
            .map(|m| format!("enforcer_map_entries{{map=\"{}\"}} {}", escape(&m.map), m.entries))
            .collect(),
    );
    section(
        &mut out,
        "enforcer_map_capacity",
        "gauge",
        "Entries those maps can take (rule maps: per policy slot, half of max_entries).",
        status
            .maps
            .iter()
            .map(|m| {
                format!(
                    "enforcer_map_capacity{{map=\"{}\"}} {}",
                    escape(&m.map),
                    m.capacity
                )
            })
            .collect(),
    );
    out
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Answer every HTTP request on `listener` with the current metrics (fetched from the core),
/// with the API's limits (api/limits.rs; clients are counted by address): a client over the
/// connection cap gets 503, over its rate 429, and one that has not sent a complete request
/// head within the idle timeout 408.
pub async fn serve(
    listener: TcpListener,
    snapshots: mpsc::Sender<oneshot::Sender<String>>,
    limiter: Arc<Limiter>,
) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                backoff.after_error("metrics endpoint", &e).await;
                continue;
            }
        };
        backoff.succeeded();
        let permit = match limiter.admit() {
            Ok(permit) => permit,
            Err(refusal) => {
                // A short answer fits the socket's send buffer: never waits for the client.
                let _ = stream
                    .try_write(http("503 Service Unavailable", &refusal.to_string()).as_bytes());
                continue;
            }
        };
        tokio::spawn(answer(
            stream,
            PeerKey::Addr(addr.ip()),
            snapshots.clone(),
            limiter.clone(),
            permit,
        ));
    }
}

/// Longest request head read; the request itself does not matter (every path serves the
/// metrics), it is read so the client is not reset while still sending.
const MAX_HEAD: usize = 8192;

async fn answer(
    mut stream: TcpStream,
    peer: PeerKey,
    snapshots: mpsc::Sender<oneshot::Sender<String>>,
    limiter: Arc<Limiter>,
    _permit: Permit,
) {
    let idle = limiter.limits().idle_timeout;
    let response = match tokio::time::timeout(idle, read_head(&mut stream)).await {
        Err(_) => http(
            "408 Request Timeout",
            &format!(
                "no complete request within {} s (api.idle_timeout_secs)",
                idle.as_secs()
            ),
        ),
        Ok(Err(e)) => http("400 Bad Request", &format!("unreadable request: {e}")),
        Ok(Ok(())) => match limiter.request(peer) {
            Err(refusal) => http("429 Too Many Requests", &refusal.to_string()),
            Ok(()) => {
                let (tx, rx) = oneshot::channel();
                match snapshots.send(tx).await {
                    Ok(()) => match rx.await {
                        Ok(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Err(_) => http("503 Service Unavailable", "the daemon is stopping"),
                    },
                    Err(_) => http("503 Service Unavailable", "the daemon is stopping"),
                }
            }
        },
    };
    let _ = tokio::time::timeout(idle, stream.write_all(response.as_bytes())).await;
}

/// Read until the end of the request head (an empty line), at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the end of the request head",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(());
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("request head longer than {MAX_HEAD} bytes"),
            ));
        }
    }
}

/// A plain-text HTTP answer that closes the connection.
fn http(status: &str, message: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}\n",
        message.len() + 1
    )
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::{
        AgentReport, DecisionCount, FailureCount, LossCount, MapFillReport,
    };

    #[test]
    fn serves_the_text_over_http() {
        use std::io::{Read, Write};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(bind("127.0.0.1:0".parse().unwrap()))
            .expect("bind on loopback");
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<String>>(1);
        let response = runtime.block_on(async {
            tokio::spawn(serve(listener, tx, Limiter::new(Default::default())));
            let client = tokio::task::spawn_blocking(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut response = String::new();
                stream
                    .read_to_string(&mut response)
                    .expect("the response within 10 s");
                response
            });
            let reply = rx.recv().await.expect("a metrics request reaches the core");
            reply
                .send(render(&StatusReport {
                    policy_version: 9,
                    ..Default::default()
                }))
                .unwrap();
            client.await.expect("the HTTP client")
        });
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("Content-Type: text/plain; version=0.0.4"),
            "{response}"
        );
        assert!(
            response.contains("\r\n\r\n# HELP enforcer_decisions_total"),
            "{response}"
        );
        assert!(
            response.lines().any(|l| l == "enforcer_policy_version 9"),
            "{response}"
        );
    }

    #[test]
    fn the_endpoint_has_a_connection_cap_an_idle_timeout_and_a_rate() {
        use std::io::{Read, Write};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(bind("127.0.0.1:0".parse().unwrap()))
            .expect("bind on loopback");
        let addr = listener.local_addr().unwrap();
        let limiter = Limiter::new(crate::api::limits::Limits {
            max_connections: 1,
            idle_timeout: std::time::Duration::from_secs(1),
            requests_per_second: 1,
            request_burst: 1,
        });
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<String>>(4);
        let answers = runtime.block_on(async {
            tokio::spawn(serve(listener, tx, limiter));
            tokio::spawn(async move {
                while let Some(reply) = rx.recv().await {
                    let _ = reply.send("enforcer_policy_version 1\n".into());
                }
            });
            tokio::task::spawn_blocking(move || {
                let read_all = |s: &mut std::net::TcpStream| {
                    let mut text = String::new();
                    let _ = s.read_to_string(&mut text);
                    text
                };
                let connect = || {
                    let s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                        .unwrap();
                    s
                };
                // A silent client holds the only place, so the next one is refused at once...
                let mut silent = connect();
                std::thread::sleep(std::time::Duration::from_millis(100));
                let mut second = connect();
                let refused = read_all(&mut second);
                // ...and the silent one is closed after the idle timeout.
                let timed_out = read_all(&mut silent);
                drop(silent);
                std::thread::sleep(std::time::Duration::from_millis(100));
                let mut ok = connect();
                ok.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
                let served = read_all(&mut ok);
                drop(ok);
                std::thread::sleep(std::time::Duration::from_millis(100));
                let mut fast = connect();
                fast.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
                let limited = read_all(&mut fast);
                [refused, timed_out, served, limited]
            })
            .await
            .expect("the HTTP client")
        });
        let [refused, timed_out, served, limited] = answers;
        assert!(
            refused.starts_with("HTTP/1.1 503 ") && refused.contains("api.max_connections"),
            "{refused}"
        );
        assert!(
            timed_out.starts_with("HTTP/1.1 408 ")
                && timed_out.contains("no complete request within 1 s"),
            "{timed_out}"
        );
        assert!(
            served.starts_with("HTTP/1.1 200 ") && served.ends_with("enforcer_policy_version 1\n"),
            "{served}"
        );
        assert!(
            limited.starts_with("HTTP/1.1 429 ") && limited.contains("rate limit: 127.0.0.1"),
            "{limited}"
        );
    }

    #[test]
    fn renders_counters_with_escaped_labels() {
        let status = StatusReport {
            policy_version: 4,
            reloads: 3,
            reload_failures: 1,
            decisions: vec![DecisionCount {
                agent: "co\"der".into(),
                op: "open".into(),
                verdict: "deny".into(),
                count: 9,
            }],
            losses: vec![LossCount {
                agent: "coder".into(),
                count: 2,
            }],
            failures: vec![
                FailureCount {
                    point: "path-copy".into(),
                    count: 0,
                },
                FailureCount {
                    point: "user-sockaddr".into(),
                    count: 5,
                },
            ],
            agents: vec![AgentReport {
                name: "coder".into(),
                processes: 3,
                ..Default::default()
            }],
            maps: vec![
                MapFillReport {
                    map: enforcer_common::MAP_PROCS.into(),
                    entries: 7,
                    capacity: 65536,
                },
                MapFillReport {
                    map: enforcer_common::MAP_NET_RULES.into(),
                    entries: 12,
                    capacity: 32768,
                },
            ],
            ..Default::default()
        };
        let text = render(&status);
        for expected in [
            "# TYPE enforcer_decisions_total counter",
            "enforcer_decisions_total{agent=\"co\\\"der\",op=\"open\",verdict=\"deny\"} 9",
            "enforcer_events_lost_total{agent=\"coder\"} 2",
            "# TYPE enforcer_kernel_failures_total counter",
            "enforcer_kernel_failures_total{point=\"path-copy\"} 0",
            "enforcer_kernel_failures_total{point=\"user-sockaddr\"} 5",
            "enforcer_reloads_total 3",
            "enforcer_reload_failures_total 1",
            "enforcer_policy_version 4",
            "enforcer_agent_processes{agent=\"coder\"} 3",
            "enforcer_audit_backlog_records 0",
            "# TYPE enforcer_map_entries gauge",
            "enforcer_map_entries{map=\"PROCS\"} 7",
            "enforcer_map_entries{map=\"NET_RULES\"} 12",
            "# TYPE enforcer_map_capacity gauge",
            "enforcer_map_capacity{map=\"PROCS\"} 65536",
            "enforcer_map_capacity{map=\"NET_RULES\"} 32768",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing line {expected:?} in:\n{text}"
            );
        }
    }
}
