//! Prometheus text exposition (format 0.0.4) of the daemon's counters, served at `/metrics`.

use std::fmt::Write as _;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::api::protocol::StatusReport;

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
            .map(|m| format!("enforcer_map_capacity{{map=\"{}\"}} {}", escape(&m.map), m.capacity))
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

/// Answer every HTTP request on `listener` with the current metrics (fetched from the core).
pub async fn serve(listener: TcpListener, snapshots: mpsc::Sender<oneshot::Sender<String>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            // The request itself does not matter (every path serves the metrics); read its head
            // so the client is not reset while still sending.
            let mut head = [0u8; 2048];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut head))
                .await;
            let (tx, rx) = oneshot::channel();
            let body = match snapshots.send(tx).await {
                Ok(()) => rx.await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::{AgentReport, DecisionCount, LossCount, MapFillReport};

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
            tokio::spawn(serve(listener, tx));
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
            agents: vec![AgentReport {
                name: "coder".into(),
                processes: 3,
                ..Default::default()
            }],
            maps: vec![
                MapFillReport {
                    map: "PROCS".into(),
                    entries: 7,
                    capacity: 65536,
                },
                MapFillReport {
                    map: "NET_RULES".into(),
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
