//! Event pipeline: a real daemon, an agent opening a denied file at stepped rates, and the audit
//! log read back. Per step every generated open must be either a line in the log or counted in a
//! `lost` record (the kernel's LOSSES counters); anything else is unaccounted loss.

use std::{
    fmt::Write as _,
    io::{BufRead as _, Seek as _},
    process::Command,
    time::{Duration, Instant},
};

use super::{daemon::BenchDaemon, report::verdict, worker::Worker};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// Requested opens per second (0: as fast as the agent can).
    pub requested: u64,
    /// Opens the agent did and the rate it achieved.
    pub generated: u64,
    pub offered_per_s: f64,
    /// Event lines for those opens in the audit log.
    pub written: u64,
    /// From the start of the step to the last line written.
    pub written_per_s: f64,
    /// Sum of `lost` records with source kernel.
    pub lost: u64,
    /// generated - written - lost (must be 0).
    pub unaccounted: i64,
    /// Daemon CPU (user + system) per written event, microseconds.
    pub cpu_us_per_event: f64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PipelineReport {
    pub backend: String,
    pub steps: Vec<Step>,
}

/// Reads the audit log from where the last call stopped.
struct LogReader {
    path: std::path::PathBuf,
    offset: u64,
}

impl LogReader {
    /// (event lines for `target`, kernel-lost count) since the last call.
    fn read(&mut self, target: &str) -> anyhow::Result<(u64, u64)> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(std::io::SeekFrom::Start(self.offset))?;
        let mut reader = std::io::BufReader::new(f);
        let (mut events, mut lost) = (0, 0);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break; // a half-written last line is read next time
            }
            self.offset += n as u64;
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match v["type"].as_str() {
                Some("event") if v["path"].as_str() == Some(target) => events += 1,
                Some("lost") if v["source"].as_str() == Some("kernel") => {
                    lost += v["count"].as_u64().unwrap_or(0)
                }
                _ => {}
            }
        }
        Ok((events, lost))
    }

    fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

pub fn run(quick: bool, log: &mut dyn FnMut(&str)) -> anyhow::Result<PipelineReport> {
    // The agent is this executable (`bench-worker`), started by `enforcer run`.
    let exe = std::fs::canonicalize(std::env::current_exe()?)?;
    let enforcer = crate::enforcer_bin()?;
    let dir = std::env::temp_dir().join(format!("enforcer-bench-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let denied = dir.join("denied");
    std::fs::write(&denied, b"x")?;
    let denied = std::fs::canonicalize(&denied)?
        .to_string_lossy()
        .into_owned();
    // Audit mode on the fallback: the denied open still happens and is logged as audit-deny;
    // with BPF LSM it fails with EPERM and is logged as deny. Either way: one event per open.
    let policy = format!(
        "[agent]\nname = \"bench\"\non_violation = \"audit\"\n\n[file]\nread = [\"/srv/nothing\"]\n\n[exec]\nallow = [{:?}]\n",
        exe.to_string_lossy()
    );
    let result = (|| {
        let daemon = BenchDaemon::start("pipeline", &[("bench.toml", &policy)])?;
        let backend = std::fs::read_to_string(&daemon.audit_log)
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).ok()?["backend"]
                        .as_str()
                        .map(String::from)
                })
            });
        let mut run = Command::new(&enforcer);
        run.arg("run")
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["--agent", "bench", "--"])
            .arg(&exe);
        let mut worker = Worker::spawn_with(run)?;
        let mut reader = LogReader {
            path: daemon.audit_log.clone(),
            offset: 0,
        };
        let rates: &[u64] = if quick {
            &[20_000, 0]
        } else {
            &[50_000, 100_000, 200_000, 400_000, 800_000, 0]
        };
        let millis = if quick { 300 } else { 2_000 };
        // Drain whatever start-up produced (the exec of the worker, its library opens).
        settle(&mut reader)?;
        reader.read(&denied)?;
        let mut steps = Vec::new();
        for &rate in rates {
            let cpu0 = daemon.cpu_seconds()?;
            let start = Instant::now();
            let (generated, secs) = worker.pace(&denied, rate, millis)?;
            let last_growth = settle(&mut reader)?;
            let cpu = daemon.cpu_seconds()? - cpu0;
            let (written, lost) = reader.read(&denied)?;
            let busy = last_growth.duration_since(start).as_secs_f64().max(secs);
            let step = Step {
                requested: rate,
                generated,
                offered_per_s: generated as f64 / secs,
                written,
                written_per_s: written as f64 / busy,
                lost,
                unaccounted: generated as i64 - written as i64 - lost as i64,
                cpu_us_per_event: if written > 0 {
                    cpu * 1e6 / written as f64
                } else {
                    0.0
                },
            };
            log(&format!("pipeline: {step:?}"));
            steps.push(step);
        }
        drop(worker);
        Ok(PipelineReport {
            backend: backend.unwrap_or_else(|| "see daemon".into()),
            steps,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Wait until the audit log has not grown for 1.5 s (the daemon writes kernel loss counts every
/// 500 ms); returns when it last grew.
fn settle(reader: &mut LogReader) -> anyhow::Result<Instant> {
    let mut size = reader.len();
    let mut grew = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while grew.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
        let now = reader.len();
        if now != size {
            size = now;
            grew = Instant::now();
        }
        if Instant::now() > deadline {
            anyhow::bail!("the audit log kept growing for 120 s");
        }
    }
    Ok(grew)
}

/// Events one daemon CPU-second handles at this step's cost per event.
fn capacity(step: &Step) -> f64 {
    if step.cpu_us_per_event > 0.0 {
        1e6 / step.cpu_us_per_event
    } else {
        0.0
    }
}

impl PipelineReport {
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| event pipeline (open of a denied file, one event each) | generated | offered/s | lines written | written/s | kernel lost (counted) | unaccounted | daemon CPU per event | capacity: events per daemon CPU-second |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for st in &self.steps {
            let req = if st.requested == 0 {
                "as fast as one agent can".to_string()
            } else {
                format!("requested {}/s", st.requested)
            };
            let _ = writeln!(
                s,
                "| {req} | {} | {:.0} | {} | {:.0} | {} | {} | {:.2} us | {:.0} |",
                st.generated,
                st.offered_per_s,
                st.written,
                st.written_per_s,
                st.lost,
                st.unaccounted,
                st.cpu_us_per_event,
                capacity(st)
            );
        }
        let exact = self.steps.iter().all(|s| s.unaccounted == 0);
        let lossless_max = self
            .steps
            .iter()
            .filter(|s| s.lost == 0 && s.unaccounted == 0)
            .map(|s| s.written_per_s)
            .fold(0.0, f64::max);
        let first_loss = self
            .steps
            .iter()
            .find(|s| s.lost > 0)
            .map(|s| format!("{:.0}/s offered", s.offered_per_s))
            .unwrap_or_else(|| "none in any step".into());
        let best = self
            .steps
            .iter()
            .map(|s| s.written_per_s)
            .fold(0.0, f64::max);
        // At full load (the fastest steps) the daemon's fixed costs are spread thinnest.
        let loaded_capacity = self
            .steps
            .iter()
            .filter(|s| s.written > 0)
            .map(capacity)
            .fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "\nLoss accounting: {} (every generated event is a line or counted in a `lost` record). Highest rate written without loss: {:.0}/s; losses start at: {}. Target >= 500k events/s with exact accounting: {} (measured written/s, bounded by what one agent offers here). Daemon capacity (1e6 / CPU us per event, best step): {:.0} events per daemon CPU-second.",
            if exact { "exact" } else { "**NOT exact**" },
            lossless_max,
            first_loss,
            if exact { verdict(-best, -500_000.0) } else { "**missed**" },
            loaded_capacity
        );
        s
    }
}
