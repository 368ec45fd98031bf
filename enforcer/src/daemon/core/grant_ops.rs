//! Grants on the running daemon: give, list, revoke, and expire them, each with its audit
//! record. A grant is applied like a policy edit (compiled with the policy, one atomic slot
//! switch), so a grant the policy cannot take changes nothing.

use std::time::Duration;

use jiff::Timestamp;

use super::Daemon;
use crate::{
    api::server::Peer,
    daemon::{roles::Caller, DaemonError},
    policy::{
        grant::{parse_rule, Grant},
        when::next_refresh,
    },
};

/// Longest grant: a grant is a temporary exception, not a way around editing the policy.
pub const MAX_GRANT: Duration = Duration::from_secs(7 * 24 * 3600);
/// After a failed refresh (policy directory broken meanwhile), try again this much later.
const REFRESH_RETRY: Duration = Duration::from_secs(10);

impl Daemon {
    pub fn grants(&self) -> &[Grant] {
        self.grants.grants()
    }

    /// Give `agent` the allow `rule` for `duration`. Returns the grant and the policy version
    /// that carries it. Any error changes nothing.
    pub fn grant(
        &mut self,
        peer: &Peer,
        caller: &Caller,
        agent: &str,
        rule: &str,
        duration: Duration,
        reason: Option<String>,
    ) -> Result<(Grant, u32), DaemonError> {
        let refuse = |m: String| Err(DaemonError::Grant(m));
        if self.policy.agent_by_name(agent).is_none() {
            let names: Vec<&str> = self.policy.agents.iter().map(|a| a.name.as_str()).collect();
            return refuse(format!(
                "no agent named {agent:?} in policy version {} (agents: {})",
                self.version,
                names.join(", ")
            ));
        }
        if duration.is_zero() || duration > MAX_GRANT {
            return refuse(format!(
                "duration {}: a grant lasts from 1s to {}",
                humantime::format_duration(duration),
                humantime::format_duration(MAX_GRANT)
            ));
        }
        if let Err(e) = parse_rule(rule) {
            return refuse(e);
        }
        let now = Timestamp::now();
        let expires = now
            .checked_add(
                jiff::SignedDuration::try_from(duration)
                    .map_err(|e| DaemonError::Grant(e.to_string()))?,
            )
            .map_err(|e| DaemonError::Grant(e.to_string()))?;
        let g = self
            .grants
            .draft(agent, rule, now, expires, reason, peer.uid);
        if let Err(e) = g.to_rule() {
            return refuse(e);
        }
        let policy = self
            .source
            .load(&self.grants.with(&g))
            .map_err(|e| DaemonError::Grant(format!("the policy does not take it:\n{e}")))?;
        // In the book first: a grant the kernel holds must be one the daemon knows about.
        self.grants.add(g.clone())?;
        let version = match self.install(policy) {
            Ok(v) => v,
            Err(e) => {
                self.grants.remove(g.id)?;
                return Err(e);
            }
        };
        let message = format!(
            "{} {} for {} until {}{}",
            g.text_id(),
            g.rule,
            humantime::format_duration(duration),
            g.expires,
            g.reason
                .as_deref()
                .map(|r| format!(" (reason: {r})"))
                .unwrap_or_default()
        );
        tracing::info!(agent, "{message}");
        let by = Some(super::authorize::peer_record(peer, caller));
        self.log_grant("grant", &g, version, message, by)?;
        Ok((g, version))
    }

    /// End grant `id` now. Its rule leaves the kernel with the next policy version.
    pub fn revoke(
        &mut self,
        id: u32,
        peer: &Peer,
        caller: &Caller,
    ) -> Result<(Grant, u32), DaemonError> {
        let Some(g) = self.grants.remove(id)? else {
            let ids: Vec<String> = self
                .grants
                .grants()
                .iter()
                .map(|g| g.id.to_string())
                .collect();
            return Err(DaemonError::Grant(format!(
                "no grant {id} (live grants: {})",
                if ids.is_empty() {
                    "none".into()
                } else {
                    ids.join(", ")
                }
            )));
        };
        let policy = match self.source.load(self.grants.grants()) {
            Ok(p) => p,
            Err(e) => {
                // Keep it: the kernel still holds it until it expires, so must the book.
                self.grants.add(g)?;
                return Err(DaemonError::Grant(format!("revoking grant {id}: the policy does not load, the grant stays until it expires:\n{e}")));
            }
        };
        let version = match self.install(policy) {
            Ok(v) => v,
            Err(e) => {
                self.grants.add(g)?;
                return Err(e);
            }
        };
        let message = format!(
            "{} {} revoked before {} by {}",
            g.text_id(),
            g.rule,
            g.expires,
            super::authorize::peer_text(peer)
        );
        let by = Some(super::authorize::peer_record(peer, caller));
        self.log_grant("grant-revoked", &g, version, message, by)?;
        Ok((g, version))
    }

    /// Called often (the pump timer): once a grant expired or a time window the kernel holds
    /// ended, log the expiries and apply again (the kernel has already closed them by itself).
    pub fn refresh_due(&mut self) -> Result<(), DaemonError> {
        let now = Timestamp::now();
        if self.refresh_at.is_none_or(|t| now < t) {
            return Ok(());
        }
        let expired = self.grants.take_expired(now)?;
        for g in &expired {
            let message = format!("{} {} expired at {}", g.text_id(), g.rule, g.expires);
            tracing::info!(agent = g.agent, "{message}");
            let version = self.version;
            self.log_grant("grant-expired", g, version, message, None)?;
        }
        let trigger = if expired.is_empty() {
            "time window boundary"
        } else {
            "grant expired"
        };
        if self.reload(trigger, true).is_err() {
            self.refresh_at = now
                .checked_add(jiff::SignedDuration::try_from(REFRESH_RETRY).unwrap_or_default())
                .ok();
        }
        Ok(())
    }

    /// The next instant `refresh_due` has work.
    pub(super) fn plan_refresh(&mut self) {
        let now = Timestamp::now();
        let window = next_refresh(&self.policy.conditions, now);
        self.refresh_at = [window, self.grants.next_expiry()]
            .into_iter()
            .flatten()
            .min();
    }

    fn log_grant(
        &mut self,
        event: &str,
        g: &Grant,
        version: u32,
        message: String,
        by: Option<crate::audit::record::PeerRecord>,
    ) -> Result<(), DaemonError> {
        let detail = serde_json::to_value(g).ok();
        self.log_daemon(event, |r| {
            r.peer = by;
            r.policy_version = Some(version);
            r.agent = Some(g.agent.clone());
            r.message = Some(message);
            r.detail = detail;
        })
    }
}
