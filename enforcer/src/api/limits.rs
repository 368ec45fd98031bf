//! What keeps clients of the API socket and the metrics endpoint from starving the daemon: a cap
//! on open connections, a per-peer request rate (token bucket), and a bounded back-off when
//! accepting fails (EMFILE must not turn the accept loop into a busy loop). The idle timeout is
//! applied where requests are read (api/server.rs, daemon/metrics.rs). docs/daemon.md, "Limits".

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The configured limits (`[api]` in the daemon's configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Connections open at once; one more is answered with an error and closed.
    pub max_connections: usize,
    /// A connection that has not sent a complete request this long after it was opened (or
    /// after its last answer) is answered with an error and closed. Not applied to a
    /// subscription's stream.
    pub idle_timeout: Duration,
    /// Requests per second per peer, on average...
    pub requests_per_second: u32,
    /// ...and at most this many in a burst.
    pub request_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(10),
            requests_per_second: 100,
            request_burst: 200,
        }
    }
}

/// Who a rate limit counts: API peers by uid (an agent that forks gets no more), metrics
/// clients by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Uid(u32),
    Addr(IpAddr),
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerKey::Uid(uid) => write!(f, "uid {uid}"),
            PeerKey::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections: {limit} are open (api.max_connections); try again later")]
    Connections { limit: usize },
    #[error(
        "rate limit: {peer} sent more than {rate} requests per second (burst {burst}, api.requests_per_second / api.request_burst); retry in {} ms",
        retry_after.as_millis().max(1)
    )]
    Rate {
        peer: PeerKey,
        rate: u32,
        burst: u32,
        retry_after: Duration,
    },
}

/// Peers whose bucket is kept; past this, full buckets (peers that have been quiet long enough
/// to have their whole burst back) are forgotten.
const MAX_PEERS: usize = 4096;

pub struct Limiter {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: usize,
    buckets: HashMap<PeerKey, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One admitted connection; dropping it frees its place.
pub struct Permit(Arc<Limiter>);

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.open = state.open.saturating_sub(1);
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Arc<Limiter> {
        Arc::new(Limiter {
            limits,
            state: Mutex::default(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection, or the refusal to answer it with.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Refusal> {
        let mut state = self.lock();
        if state.open >= self.limits.max_connections {
            return Err(Refusal::Connections {
                limit: self.limits.max_connections,
            });
        }
        state.open += 1;
        Ok(Permit(self.clone()))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// May `peer` make a request now?
    pub fn request(&self, peer: PeerKey) -> Result<(), Refusal> {
        self.request_at(peer, Instant::now())
    }

    pub(crate) fn request_at(&self, peer: PeerKey, now: Instant) -> Result<(), Refusal> {
        let rate = f64::from(self.limits.requests_per_second.max(1));
        let burst = f64::from(self.limits.request_burst.max(1));
        let refill = |b: &Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            (b.tokens + elapsed * rate).min(burst)
        };
        let mut state = self.lock();
        if state.buckets.len() >= MAX_PEERS && !state.buckets.contains_key(&peer) {
            state.buckets.retain(|_, b| refill(b) < burst);
        }
        let bucket = state.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refill(bucket);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            return Ok(());
        }
        bucket.tokens = tokens;
        Err(Refusal::Rate {
            peer,
            rate: self.limits.requests_per_second,
            burst: self.limits.request_burst,
            retry_after: Duration::from_secs_f64((1.0 - tokens) / rate),
        })
    }
}

/// Bounded exponential back-off for a failing `accept` (EMFILE, ENFILE, ENOMEM...): the loop
/// sleeps 10 ms, 20 ms, ... up to 1 s between attempts, and logs at most once per
/// [`AcceptBackoff::LOG_EVERY`] (with how many failures it did not log).
pub struct AcceptBackoff {
    delay: Option<Duration>,
    logged: Option<Instant>,
    unlogged: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);
    pub const LOG_EVERY: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        AcceptBackoff {
            delay: None,
            logged: None,
            unlogged: 0,
        }
    }

    /// An accept failed at `now`: how long to sleep, and `Some(failures not logged since the
    /// last log)` when this one should be logged.
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.delay = Some(delay);
        let due = self
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::LOG_EVERY);
        if due {
            self.logged = Some(now);
            let skipped = std::mem::take(&mut self.unlogged);
            (delay, Some(skipped))
        } else {
            self.unlogged += 1;
            (delay, None)
        }
    }

    /// An accept succeeded: the next failure starts from the shortest delay again.
    pub fn succeeded(&mut self) {
        self.delay = None;
    }

    /// Sleep after a failed accept, logging as [`AcceptBackoff::failed`] says.
    pub async fn after_error(&mut self, what: &str, error: &std::io::Error) {
        let (delay, log) = self.failed(Instant::now());
        if let Some(skipped) = log {
            tracing::warn!(
                "{what}: accept failed: {error} ({skipped} more failures since the last message); retrying in {} ms",
                delay.as_millis()
            );
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: usize, rate: u32, burst: u32) -> Arc<Limiter> {
        Limiter::new(Limits {
            max_connections: max,
            idle_timeout: Duration::from_secs(1),
            requests_per_second: rate,
            request_burst: burst,
        })
    }

    #[test]
    fn connections_beyond_the_cap_are_refused_until_one_closes() {
        let l = limiter(2, 10, 10);
        let a = l.admit().expect("first");
        let _b = l.admit().expect("second");
        let refused = l.admit().err().expect("third refused");
        assert_eq!(refused, Refusal::Connections { limit: 2 });
        assert_eq!(
            refused.to_string(),
            "too many connections: 2 are open (api.max_connections); try again later"
        );
        drop(a);
        assert_eq!(l.open(), 1);
        l.admit().expect("a place is free again");
    }

    #[test]
    fn a_burst_then_the_rate_per_peer() {
        let l = limiter(1, 10, 3);
        let t0 = Instant::now();
        let peer = PeerKey::Uid(1000);
        for _ in 0..3 {
            l.request_at(peer, t0).expect("within the burst");
        }
        let Err(Refusal::Rate { retry_after, .. }) = l.request_at(peer, t0) else {
            panic!("the 4th request at once is refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // Another peer has its own bucket.
        l.request_at(PeerKey::Uid(0), t0).expect("other peer");
        // 10 per second: one more after 100 ms, not after 50.
        assert!(l.request_at(peer, t0 + Duration::from_millis(50)).is_err());
        l.request_at(peer, t0 + Duration::from_millis(150))
            .expect("refilled");
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            l.request_at(peer, later).expect("burst again");
        }
        let refused = l.request_at(peer, later).expect_err("burst is the cap");
        assert_eq!(
            refused.to_string(),
            "rate limit: uid 1000 sent more than 10 requests per second (burst 3, api.requests_per_second / api.request_burst); retry in 100 ms"
        );
    }

    #[test]
    fn quiet_peers_are_forgotten_when_the_table_is_full() {
        let l = limiter(1, 1000, 1);
        let t0 = Instant::now();
        for uid in 0..MAX_PEERS as u32 {
            l.request_at(PeerKey::Uid(uid), t0).expect("first request");
        }
        assert_eq!(l.lock().buckets.len(), MAX_PEERS);
        l.request_at(PeerKey::Uid(1 << 20), t0 + Duration::from_secs(1))
            .expect("new peer");
        assert_eq!(l.lock().buckets.len(), 1, "refilled buckets were dropped");
    }

    #[test]
    fn accept_backoff_doubles_up_to_a_second_and_logs_once_per_interval() {
        let mut b = AcceptBackoff::new();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        let mut logs = Vec::new();
        for i in 0..10 {
            let (d, log) = b.failed(t0 + Duration::from_millis(i));
            delays.push(d.as_millis());
            logs.push(log);
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(logs[0], Some(0));
        assert!(logs[1..].iter().all(Option::is_none));
        let (_, log) = b.failed(t0 + AcceptBackoff::LOG_EVERY);
        assert_eq!(log, Some(9), "the next log says how many it skipped");
        b.succeeded();
        assert_eq!(b.failed(t0).0, AcceptBackoff::FIRST);
    }
}
