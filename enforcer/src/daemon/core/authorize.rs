//! The role check every API request passes first (the table is daemon/roles.rs). Agent
//! membership is looked up in the kernel's maps at request time, never in a daemon-side cache:
//! a process that became an agent after it connected is an agent member for its next request.

use super::Daemon;
use crate::{
    api::{peer, server::Peer},
    audit::record::{session_hex, PeerRecord},
    daemon::{
        roles::{self, Caller, Membership},
        DaemonError,
    },
};

impl Daemon {
    /// Whether `peer` may call `verb`: the caller's roles, or a `permission denied` error that
    /// names the role missing (also written as an `api-refused` record).
    pub fn authorize(&mut self, peer: &Peer, verb: &str) -> Result<Caller, DaemonError> {
        let (caller, refusal) = match self.identify(peer) {
            Ok(caller) if caller.may(verb) => return Ok(caller),
            Ok(caller) => {
                let why = format!(
                    "{verb} needs {}; the caller ({}) {}",
                    roles::needed(verb),
                    peer_text(peer),
                    self.describe(&caller)
                );
                (caller, why)
            }
            Err(e) => (
                Caller::nobody(),
                format!(
                    "{verb} needs {}; the caller ({}) cannot be identified, so it has no role: {e}",
                    roles::needed(verb),
                    peer_text(peer)
                ),
            ),
        };
        self.log_refused(peer, verb, &caller, &refusal)?;
        Err(DaemonError::Refused(refusal))
    }

    /// The caller's roles now. Fails (no role at all) when the kernel lookup fails or the
    /// peer's pid no longer names the process that connected.
    fn identify(&self, peer: &Peer) -> Result<Caller, String> {
        let Some(pid) = peer.pid else {
            return Err(
                "its pid is not visible to the daemon (another pid namespace), so the daemon cannot tell whether it is an agent member".into(),
            );
        };
        // A thread of the peer may be recorded when its leader is not (the leader exited).
        let tids = if self.options.inspect_procs {
            peer::threads_of(pid)?
        } else {
            vec![pid]
        };
        let mut member = None;
        for tid in tids {
            let state = self
                .backend
                .proc_state(tid)
                .map_err(|e| format!("looking it up in the kernel's process table: {e}"))?;
            if state.is_some() {
                member = Some(Membership { tid, state });
                break;
            }
            let doomed = self
                .backend
                .doomed(tid)
                .map_err(|e| format!("looking it up in the kernel's doomed table: {e}"))?;
            if doomed {
                member = Some(Membership { tid, state: None });
                break;
            }
        }
        // After the lookups: if the pid is still the peer's process, what they found was the
        // peer's (a pid cannot come back to a process that has exited).
        if self.options.inspect_procs {
            peer.still_connected_process()?;
        }
        Ok(Caller::of(peer, member, &self.options.roles))
    }

    /// "is a member of agent ..." or "has the role launcher".
    fn describe(&self, caller: &Caller) -> String {
        let Some(member) = caller.member else {
            return roles::describe_roles(caller, &self.options.roles);
        };
        let Some(state) = member.state else {
            return format!(
                "is an agent member (thread {} is in the kernel's doomed table: a child of an agent the process table had no room for); agent members may only register the sub-agents their policy delegates to",
                member.tid
            );
        };
        let (agent, chain) = self.chain_names(&state);
        format!(
            "is a member of agent {agent:?} (chain {chain}, session {}); agent members may only register the sub-agents their policy delegates to",
            session_hex(state.session)
        )
    }

    /// The innermost agent's name and the chain `outer>inner` of `state`.
    pub(super) fn chain_names(&self, state: &enforcer_common::ProcState) -> (String, String) {
        let depth = (state.depth as usize).min(enforcer_common::MAX_CHAIN);
        let names: Vec<String> = state.chain[..depth]
            .iter()
            .map(|&id| {
                self.policy
                    .agent(id)
                    .map_or_else(|| format!("#{id}"), |a| a.name.clone())
            })
            .collect();
        (names.last().cloned().unwrap_or_default(), names.join(">"))
    }

    fn log_refused(
        &mut self,
        peer: &Peer,
        verb: &str,
        caller: &Caller,
        message: &str,
    ) -> Result<(), DaemonError> {
        tracing::warn!("API request refused: {message}");
        let (agent, session) = match caller.member.and_then(|m| m.state) {
            Some(state) => (
                Some(self.chain_names(&state).0),
                Some(session_hex(state.session)),
            ),
            None => (None, None),
        };
        let record_peer = peer_record(peer, caller);
        self.log_daemon("api-refused", |r| {
            r.verb = Some(verb.to_owned());
            r.peer = Some(record_peer);
            r.agent = agent;
            r.session = session;
            r.message = Some(message.to_owned());
        })
    }
}

/// "pid 123, uid 1000, gid 1000".
pub(crate) fn peer_text(peer: &Peer) -> String {
    let pid = peer
        .pid
        .map_or_else(|| "pid not visible".to_owned(), |p| format!("pid {p}"));
    format!("{pid}, uid {}, gid {}", peer.uid, peer.gid)
}

pub(crate) fn peer_record(peer: &Peer, caller: &Caller) -> PeerRecord {
    PeerRecord {
        pid: peer.pid,
        uid: peer.uid,
        gid: peer.gid,
        roles: caller.roles.iter().map(|r| r.name().to_owned()).collect(),
    }
}
